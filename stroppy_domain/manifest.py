"""What a run really ran, read from the running system rather than the request: the server's version and settings,
the versions its services report, the project's revision, the load tool's checksum, and each image's content ID and
package list. The host's kernel and CPU are in the host evidence."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from pydantic import Field

from stroppy_domain.errors import StroppyError
from stroppy_domain.model import Model


class ManifestError(StroppyError, ValueError):
    """The database's facts cannot be read as the facts query writes them; the message says why."""


class PackageList(Model):
    """An image's packages as `dpkg-query` listed them at build time; the list itself is in the run's archive."""

    count: int
    sha256: str
    file: str = Field(description="Where the list is in the run's raw files.")


class Manifest(Model):
    postgres_version: str | None = Field(default=None, description="`server_version` as the server reports it.")
    postgres_settings: dict[str, str] = Field(
        default_factory=dict, description="Every setting not at its built-in default (pg_settings)."
    )
    facts_error: str = Field(default="", description="Why the server's facts are missing, when they are.")
    project_version: str
    project_commit: str = Field(description="The master's git commit, or why it is unknown.")
    load_tool_sha256: str | None = Field(default=None, description="The pinned stroppy release's checksum.")
    load_tool_version: str | None = Field(default=None, description="What the installed stroppy says it is.")
    load_tool_binary_sha256: str | None = Field(default=None, description="The installed stroppy binary's checksum.")
    image_ids: dict[str, str] = Field(default_factory=dict, description="Each image's content ID, by reference.")
    image_packages: dict[str, PackageList] = Field(
        default_factory=dict, description="Each image's Debian packages, as recorded when it was built, by reference."
    )
    service_versions: dict[str, str] = Field(
        default_factory=dict,
        description="`<service> on <machine>` -> the version the running service reports (Patroni, etcd, "
        "PgBouncer, the exporters), as the metrics store scraped it.",
    )
    service_versions_error: str = Field(default="", description="Why the services' versions are missing.")


def package_list(text: str, file: str) -> PackageList:
    """The summary of a `name=version` per line list."""
    lines = [line for line in text.splitlines() if line.strip()]
    return PackageList(count=len(lines), sha256=hashlib.sha256(text.encode()).hexdigest(), file=file)


def _patroni_version(number: str) -> str:
    """Patroni's gauge is its version without periods, two digits each after the major: 040007 is 4.0.7."""
    value = int(float(number))
    return f"{value // 10000}.{value // 100 % 100}.{value % 100}"


VersionReader = Callable[[dict[str, str], str], str | None]

VERSION_METRICS: dict[str, tuple[str, VersionReader]] = {
    "node_exporter_build_info": ("node_exporter", lambda labels, _: labels.get("version")),
    "postgres_exporter_build_info": ("postgres_exporter", lambda labels, _: labels.get("version")),
    "pgbouncer_exporter_build_info": ("pgbouncer_exporter", lambda labels, _: labels.get("version")),
    "pgbouncer_version_info": ("pgbouncer", lambda labels, _: labels.get("version", "").removeprefix("PgBouncer ")),
    "etcd_server_version": ("etcd", lambda labels, _: labels.get("server_version")),
    "patroni_version": ("patroni", lambda _, value: _patroni_version(value)),
}
"""Each series that says a service's version, the service it names, and how to read the version from its labels
and value."""

VERSIONS_QUERY = 'last_over_time({{__name__=~"' + "|".join(VERSION_METRICS) + '", run_id="{run_id}"}}[{window_s}s])'
"""The latest sample of every version series of a run, over a window as long as the run."""


def service_versions(series: list[dict[str, Any]]) -> dict[str, str]:
    """`<service> on <machine>` -> version, from the result of `VERSIONS_QUERY` (Prometheus' instant query result:
    `metric` labels and `value` [time, text]); a series it cannot read is skipped."""
    versions = {}
    for entry in series:
        labels = entry.get("metric", {})
        known = VERSION_METRICS.get(labels.get("__name__", ""))
        if known is None:
            continue
        service, read = known
        try:
            version = read(labels, str(entry.get("value", [0, "0"])[1]))
        except (ValueError, IndexError):
            continue
        if version:
            versions[f"{service} on {labels.get('machine', '?')}"] = version
    return versions


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
