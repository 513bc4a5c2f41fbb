"""A client of this checkout's local control plane (scripts/control-plane.sh) finds the auth string its server
requires: the server listens beyond loopback for the machines, so it is never open, and the string is kept in the
state directory (`$STROPPY_STATE_DIR/prefect/api-auth`, default `.state/`), readable by its owner only."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from urllib.parse import urlsplit

from infra.settings import REPOSITORY

AUTH_FILE = Path("prefect") / "api-auth"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def auth_file(environ: MutableMapping[str, str] = os.environ) -> Path:
    return Path(environ.get("STROPPY_STATE_DIR", REPOSITORY / ".state")) / AUTH_FILE


def use_local_auth(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Put the local control plane's auth string in `environ` when its API URL is on this machine and no auth is
    set; call it before Prefect is imported, which reads its settings once. The string never goes to another host.
    Returns whether it was set."""
    host = urlsplit(environ.get("PREFECT_API_URL", "")).hostname
    if host not in LOOPBACK or "PREFECT_API_AUTH_STRING" in environ or "PREFECT_API_KEY" in environ:
        return False
    path = auth_file(environ)
    if not path.is_file():
        return False
    environ["PREFECT_API_AUTH_STRING"] = path.read_text().strip()
    return True
