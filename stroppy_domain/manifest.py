"""What a run really ran, read from the running system rather than the request: the server's version and settings,
the project's revision and the load tool's checksum. The host's kernel and CPU are in the host evidence."""

from __future__ import annotations

import json

from pydantic import Field

from stroppy_domain.errors import StroppyError
from stroppy_domain.model import Model


class ManifestError(StroppyError, ValueError):
    """The database's facts cannot be read as the facts query writes them; the message says why."""


class Manifest(Model):
    postgres_version: str | None = Field(default=None, description="`server_version` as the server reports it.")
    postgres_settings: dict[str, str] = Field(
        default_factory=dict, description="Every setting not at its built-in default (pg_settings)."
    )
    facts_error: str = Field(default="", description="Why the server's facts are missing, when they are.")
    project_version: str
    project_commit: str = Field(description="The master's git commit, or why it is unknown.")
    load_tool_sha256: str | None = Field(default=None, description="The pinned stroppy release's checksum.")
    image_ids: dict[str, str] = Field(default_factory=dict, description="Each image's content ID, by reference.")


def parse_postgres_facts(text: str) -> tuple[str, dict[str, str]]:
    """`{"server_version": ..., "settings": {name: setting}}` as psql printed it (load.FACTS_QUERY).

    Raises ManifestError when it is not that JSON object."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(f"the database's facts are not JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("server_version"), str):
        raise ManifestError("the database's facts hold no server_version")
    settings = document.get("settings")
    if not isinstance(settings, dict) or not all(isinstance(value, str) for value in settings.values()):
        raise ManifestError("the database's facts hold no settings object of text values")
    return document["server_version"], settings
