"""What the runner machine holds for the load: the password file its PostgreSQL driver reads."""

from __future__ import annotations

from pydantic import SecretStr

from stroppy_domain.plan import SecretFile
from stroppy_domain.services.common import LOAD_PASSFILE, pgpass_line


def load_passfile(host: str, port: int, user: str, database: str, password: str) -> SecretFile:
    """The runner's password file for the load's connection."""
    return SecretFile(
        path=LOAD_PASSFILE, content=SecretStr(pgpass_line(host, port, database, user, SecretStr(password)))
    )
