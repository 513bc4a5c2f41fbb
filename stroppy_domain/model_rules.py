"""Field rules of a suite for values that end up in what machines run: a backup's cron schedule and directory,
postgresql.conf settings, the load's environment and an existing database's URL.

Each rule refuses, at validation and with the path, what could never be valid where the value goes; the renderers
still quote what they write. `stroppy_domain.model` re-exports these; import from there.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from pydantic import AfterValidator, BeforeValidator, Field

from stroppy_domain.model_base import (
    BLOCK_NAME_PATTERN,
    CRON_PATTERN,
    ENV_NAME_PATTERN,
    GUC_PATTERN,
    InputModel,
    refusal,
    refuse,
    text_problem,
)

_CRON_RANGES = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))


def check_cron(schedule: str) -> str:
    """Each field in range: minute 0-59, hour 0-23, day of month 1-31, month 1-12, day of week 0-7.

    Raises ValueError naming the field that is out of range (or when `schedule` is not five cron fields)."""
    if not re.fullmatch(CRON_PATTERN, schedule):
        raise ValueError("expected five cron fields (numbers, ranges a-b, lists a,b, steps /n, *)")
    for text, (name, low, high) in zip(schedule.split(" "), _CRON_RANGES, strict=True):
        for item in text.split(","):
            span, _, step = item.partition("/")
            if step and not 1 <= int(step) <= high:
                raise ValueError(f"the {name} field's step must be 1-{high}; got {step}")
            if span == "*":
                continue
            first, _, last = span.partition("-")
            for number in (first, last or first):
                if not low <= int(number) <= high:
                    raise ValueError(f"the {name} field must be {low}-{high}; got {number}")
            if int(first) > int(last or first):
                raise ValueError(f"the {name} range {span} runs backwards")
    return schedule


CronSchedule = Annotated[str, Field(pattern=CRON_PATTERN), AfterValidator(check_cron)]

BACKUP_ROOTS = ("/backups", "/data", "/mnt", "/srv", "/var/backups")
"""Where backup directories may live: none of them holds a system directory or a service's own files."""
MAX_PATH = 1024


def check_backup_path(path: str) -> str:
    """Letters, digits and `._-/` only, no `..`, inside /backups, /data, /mnt, /srv or /var/backups.

    Returns it normalised (no `.` segments, repeated or trailing `/`). Raises ValueError saying what is wrong."""
    if not path.startswith("/"):
        raise ValueError("must be an absolute directory such as /var/backups/postgres")
    wrong = re.search(r"[^A-Za-z0-9._/-]", path)
    if wrong is not None:
        raise ValueError(f"may hold only letters, digits, '.', '_', '-' and '/'; found {wrong.group()!r}")
    segments = [segment for segment in path.split("/") if segment not in {"", "."}]
    if ".." in segments:
        raise ValueError("must not contain '..'; write the directory itself")
    normal = "/" + "/".join(segments)
    if len(normal) > MAX_PATH:
        raise ValueError(f"is longer than {MAX_PATH} characters")
    if not any(normal == root or normal.startswith(root + "/") for root in BACKUP_ROOTS):
        roots = ", ".join(BACKUP_ROOTS)
        raise ValueError(f"{normal} is outside the directories backups may live in ({roots}); e.g. /var/backups/pg")
    return normal


BackupPath = Annotated[str, AfterValidator(check_backup_path)]

RESERVED_POSTGRESQL_CONF = frozenset(
    {
        "listen_addresses",
        "port",
        "hba_file",
        "ident_file",
        "config_file",
        "data_directory",
        "unix_socket_directories",
        "password_encryption",
        "primary_conninfo",
        "primary_slot_name",
        "hot_standby",
        "wal_level",
    }
)
"""postgresql.conf keys the planner owns: changing them would break replication, access rules or health checks."""
INCLUDE_DIRECTIVES = frozenset({"include", "include_dir", "include_if_exists"})
"""postgresql.conf lines that read another file instead of setting a parameter."""
FILE_SETTINGS = INCLUDE_DIRECTIVES | {
    "config_file", "hba_file", "ident_file", "data_directory", "external_pid_file",
}  # fmt: skip
"""postgresql.conf names that include other files or move the server's own files."""
COMMAND_SETTINGS = frozenset(
    {"archive_command", "archive_cleanup_command", "recovery_end_command", "restore_command", "ssl_passphrase_command"}
)
"""postgresql.conf settings whose value is a shell command the server runs."""


def _scalar_to_text(value: object) -> object:
    """postgresql.conf values arrive as YAML scalars (`200`, `on`, `0.9`); PostgreSQL reads them as text.

    Raises ValueError for a number that is not finite (`.inf`, `.nan`)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expected a finite number")
    if isinstance(value, int | float):
        return str(value)
    return value


def check_conf_names(conf: dict[str, str]) -> dict[str, str]:
    """Settings stroppy-flows manages, and those that include files or run shell commands, are refused.

    Raises ValidationError naming each refused setting."""
    errors = []
    for name in sorted(conf):
        if name in RESERVED_POSTGRESQL_CONF:
            errors.append(refusal("is managed by stroppy-flows and cannot be set", (name,), conf[name]))
        elif name in FILE_SETTINGS:
            errors.append(refusal("names configuration files; stroppy-flows writes them itself", (name,), conf[name]))
        elif name in COMMAND_SETTINGS:
            errors.append(refusal("runs a shell command on the database machine; not allowed", (name,), conf[name]))
    refuse(errors, "postgresql_conf")
    return conf


GucValue = Annotated[str, BeforeValidator(_scalar_to_text), Field(min_length=1)]
PostgresqlConf = Annotated[dict[Annotated[str, Field(pattern=GUC_PATTERN)], GucValue], AfterValidator(check_conf_names)]

RUN_OWNED_ENV = frozenset(
    {
        "DRIVER_URL", "DURATION", "SCALE_FACTOR", "PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE",
        "PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE", "PGSSLMODE", "PGCONNECT_TIMEOUT", "PATH", "HOME",
    }
)  # fmt: skip
"""What the run sets for the load itself (from the test's fields and its connection), or must not be replaced."""


class SecretRef(InputModel):
    """A value kept in a Prefect Secret block: the runner reads it when the load starts and hands it to the load's
    process environment, so it is never in the run's parameters, its commands or its logs."""

    secret: str = Field(pattern=BLOCK_NAME_PATTERN, description="The Secret block that holds the value.")


EnvValue = str | SecretRef


def check_env(env: dict[str, EnvValue]) -> dict[str, EnvValue]:
    """Variables the run sets itself (DRIVER_URL, DURATION, SCALE_FACTOR, PGHOST, PGUSER, ...) and LD_* are refused.

    Raises ValidationError naming each refused variable."""
    owned = ", ".join(sorted(RUN_OWNED_ENV))
    errors = []
    for name in sorted(env):
        if name in RUN_OWNED_ENV:
            errors.append(
                refusal(f"is set by the run itself and cannot be overridden (it sets {owned})", (name,), env[name])
            )
        elif name.startswith("LD_"):
            errors.append(refusal("changes which code the load runs; LD_* variables are refused", (name,), env[name]))
    refuse(errors, "env")
    return env


LoadEnv = Annotated[dict[Annotated[str, Field(pattern=ENV_NAME_PATTERN)], EnvValue], AfterValidator(check_env)]

_HOSTNAME = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?")
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


CONNECTION_PARAMETERS: dict[str, tuple[str, ...]] = {
    # verify-ca and verify-full need a CA certificate file on the runner, which nothing puts there.
    "sslmode": ("disable", "allow", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
    "connect_timeout": (),
    "application_name": (),
}
"""The libpq parameters an existing database's URL may carry, with their allowed values (none listed: checked
apart); the load passes each on, in its URL and as the matching PG* variable."""
MAX_APPLICATION_NAME = 63


def _check_parameter(key: str, value: str) -> None:
    """Raises ValueError unless `key=value` is a parameter the load passes on, with a value libpq accepts."""
    if key not in CONNECTION_PARAMETERS:
        known = ", ".join(CONNECTION_PARAMETERS)
        raise ValueError(f"parameter {key!r} is not passed on to the load; a URL may carry {known}")
    allowed = CONNECTION_PARAMETERS[key]
    if allowed and value not in allowed:
        raise ValueError(f"{key}={value!r} is not one of {', '.join(allowed)}")
    if key == "connect_timeout" and not (value.isascii() and value.isdigit() and 1 <= int(value) <= 3600):
        raise ValueError(f"connect_timeout={value!r} must be whole seconds, 1-3600")
    if key == "application_name" and not (value.isprintable() and len(value) <= MAX_APPLICATION_NAME):
        raise ValueError(f"application_name must be printable and at most {MAX_APPLICATION_NAME} characters")


@dataclass(frozen=True)
class Endpoint:
    """An existing database's URL taken apart: the host without brackets, the user and database decoded, and the
    libpq parameters it carries."""

    host: str
    port: int | None
    user: str | None
    dbname: str | None
    parameters: dict[str, str] = field(default_factory=dict)

    def url(self) -> str:
        """`postgres://USER@HOST:PORT/DB?PARAMS`, each part encoded once, IPv6 hosts in brackets."""
        user = f"{quote(self.user, safe='')}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        dbname = f"/{quote(self.dbname, safe='')}" if self.dbname else ""
        query = urlencode(self.parameters, quote_via=quote)
        return f"postgres://{user}{host}{port}{dbname}" + (f"?{query}" if query else "")


def _decoded(text: str, what: str) -> str:
    """Percent-decoded `text`. Raises ValueError when it is not UTF-8 or decodes to a control character."""
    try:
        decoded = unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"the {what} is not percent-encoded UTF-8") from None
    problem = text_problem(decoded)
    if problem is not None:
        raise ValueError(f"the decoded {what} {problem}")
    return decoded


def _host(host: str, bracketed: bool) -> str:
    """Raises ValueError unless `host` is a DNS name, an IPv4 address, or (in brackets) an IPv6 address."""
    if bracketed:
        if "%" in host:
            raise ValueError(f"[{host}]: an IPv6 zone is not supported")
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"[{host}] is not an IPv6 address") from None
    if not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name or address")
    return host


def parse_postgres_url(url: str) -> Endpoint:
    """The parts of `postgres://USER@HOST:PORT/DB[?PARAMS]`.

    Raises ValueError when `url` is not such a URL, or carries a password (in its user part or a `password` or
    `sslpassword` parameter), a fragment, a control character (written or percent-encoded), port 0, a host, user
    or database name that cannot be valid, or a parameter the load does not pass on (see `CONNECTION_PARAMETERS`)
    or gives twice."""
    problem = text_problem(url)
    if problem is not None:
        raise ValueError(problem)  # urlsplit would drop tabs and line breaks silently
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ValueError(f"expected postgres://USER@HOST:PORT/DBNAME ({error})") from None
    if parts.scheme.lower() not in {"postgres", "postgresql"} or not parts.hostname:
        raise ValueError("expected postgres://USER@HOST:PORT/DBNAME")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is not None or {key.strip().lower() for key, _ in query} & _SECRET_PARAMETERS:
        raise ValueError(
            "a connection string must not carry a password; store it in a Secret block "
            "and name the block in password_block"
        )
    if parts.fragment:
        raise ValueError("a connection string has no '#' fragment")
    parameters: dict[str, str] = {}
    for key, value in query:
        if text_problem(key + value) is not None:
            raise ValueError(f"the decoded parameter {key!r} holds a control character")
        if key in parameters:
            raise ValueError(f"parameter {key!r} is given twice")
        _check_parameter(key, value)
        parameters[key] = value
    if port == 0:
        raise ValueError("port 0 is not a port a database listens on; use 1-65535")
    host = _host(parts.hostname, bracketed=parts.netloc.rpartition("@")[2].startswith("["))
    dbname = parts.path.removeprefix("/")
    if "/" in dbname:
        raise ValueError("the database name is one path segment; encode a '/' in it as %2F")
    return Endpoint(
        host=host,
        port=port,
        user=_decoded(parts.username, "user") if parts.username else None,
        dbname=_decoded(dbname, "database name") if dbname else None,
        parameters=parameters,
    )


def normal_postgres_url(url: str) -> str:
    """`url` rewritten from its parts: scheme `postgres`, host in lowercase, user and database encoded once.

    Raises ValueError as `parse_postgres_url` does."""
    return parse_postgres_url(url).url()
