"""What the runner machine holds for the load: the password file its PostgreSQL driver reads."""

from __future__ import annotations

from pydantic import SecretStr

from stroppy_domain.plan import SecretFile
from stroppy_domain.services.common import LOAD_PASSFILE
from stroppy_domain.services.render import pgpass_line


def load_passfile(host: str, port: int, user: str, database: str, password: str) -> SecretFile:
    """The runner's password file for the load's connection.

    Raises RenderError for a host, user, database or password a password file cannot hold (a line break, NUL)."""
    return SecretFile(
        path=LOAD_PASSFILE, content=SecretStr(pgpass_line(host, port, database, user, SecretStr(password)))
    )
