"""The one rendering layer: every value written into a script, a crontab, a configuration file, a password file or
a connection URL goes through the function of that format here, which quotes it by the format's rules or refuses it.

Templates lay a file out; these functions decide how each value is written into it. Values the planner computes
(addresses, ports, fixed paths) go through them too: they come out unchanged, and a planner bug cannot become an
injection. A refusal is a RenderError saying what the format cannot hold; it never echoes the value, which may be a
password (at most the one control character found). The service renderers turn it into a PlanningError naming the
suite field the value came from.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import yaml
from pydantic import SecretStr

from stroppy_domain.errors import StroppyError
from stroppy_domain.model_rules import INCLUDE_DIRECTIVES


class RenderError(StroppyError, ValueError):
    """A value its format cannot hold; the message says why, without the value."""


_LINE_BREAKING = frozenset({"Cc", "Cs", "Zl", "Zp"})
"""Control characters (NUL, newline, escape...), lone surrogates (no UTF-8 file holds them) and line separators."""


def _refuse_control(value: str, where: str) -> None:
    for char in value:
        if unicodedata.category(char) in _LINE_BREAKING:
            raise RenderError(f"{where} cannot hold control characters or line breaks (found {char!r})")


def _refuse_nul(value: str, where: str) -> None:
    if "\x00" in value:
        raise RenderError(f"{where} cannot hold a NUL byte")
    if any(unicodedata.category(char) == "Cs" for char in value):
        raise RenderError(f"{where} cannot hold a lone surrogate, which no UTF-8 file can")


# --- POSIX shell -----------------------------------------------------------------------------------------------

_SHELL_BARE = re.compile(r"[A-Za-z0-9@%+=:,./_-]+")
"""The characters `shlex.quote` leaves bare: a word of them reads the same bare, in single and in double quotes."""


def shell_word(value: str) -> str:
    """`value` as one shell word (`shlex.quote`), unchanged when it needs no quoting.

    Raises RenderError for a NUL byte or a lone surrogate, which no script can hold."""
    _refuse_nul(value, "a shell word")
    return shlex.quote(value)


def shell_in_double_quotes(value: str) -> str:
    """`value` for a place between double quotes in a script: `\\`, `$`, `"` and the backquote keep their meaning
    there (POSIX, Shell Command Language 2.2.3), so each is escaped with a backslash; unchanged when it has none.

    Raises RenderError for a NUL byte or a lone surrogate."""
    _refuse_nul(value, "a shell string")
    return re.sub(r'([\\$"`])', r"\\\1", value)


def shell_plain(value: object) -> str:
    """`value` formatted, for a value the planner computed: it must read the same bare, in single and in double
    quotes, so it needs no quoting wherever a template puts it.

    Raises RenderError when it holds any other character."""
    text = format(value)
    if not _SHELL_BARE.fullmatch(text):
        raise RenderError("a value placed in a script unquoted may hold only letters, digits and '@%+=:,./_-'")
    return text


# --- cron ------------------------------------------------------------------------------------------------------

_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_CRON_ELEMENT = re.compile(r"(?:\*|(?P<start>[0-9]{1,2})(?:-(?P<end>[0-9]{1,2}))?)(?:/(?P<step>[0-9]{1,2}))?")
_ACCOUNT = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def cron_schedule(schedule: str) -> str:
    """The five fields of a cron schedule, each a list of `*`, `N` or `N-M`, optionally `/STEP`, within its range.

    Raises RenderError for anything else: a value out of range, a reversed range, a zero step, a sixth field."""
    fields = schedule.split(" ")
    if len(fields) != len(_CRON_FIELDS):
        raise RenderError("a cron schedule is five fields separated by single spaces: minute hour day month weekday")
    for text, (name, low, high) in zip(fields, _CRON_FIELDS, strict=True):
        for element in text.split(","):
            match = _CRON_ELEMENT.fullmatch(element)
            if match is None:
                raise RenderError(f"the {name} field {text!r} is not '*', N, N-M or one of them followed by /STEP")
            start, end, step = (match.group(key) for key in ("start", "end", "step"))
            numbers = [int(number) for number in (start, end) if number is not None]
            if any(not low <= number <= high for number in numbers):
                raise RenderError(f"the {name} field {text!r} is outside {low}-{high}")
            if len(numbers) == 2 and numbers[0] > numbers[1]:
                raise RenderError(f"the {name} field {text!r} has a range that ends before it starts")
            if step is not None and not 1 <= int(step) <= high:
                raise RenderError(f"the {name} field {text!r} has a step outside 1-{high}")
    return schedule


def cron_command(command: str) -> str:
    """A shell command for a crontab line, with every `%` escaped as `\\%` (cron turns an unescaped one into a
    newline and feeds the rest to the command's input).

    Raises RenderError for a control character or a line break (which would end the line), and for a backslash:
    cron implementations disagree on what a backslash before another character means (Debian's drops one of two,
    cronie keeps both), so no escaping of one is portable."""
    _refuse_control(command, "a cron command")
    if "\\" in command:
        raise RenderError("a cron command cannot hold a backslash, which cron implementations read differently")
    if not command.strip():
        raise RenderError("a cron command cannot be empty")
    return command.replace("%", "\\%")


def cron_word(value: str) -> str:
    """`value` as one shell word of a crontab command (`shell_word`), before `cron_command` escapes its `%`: every
    value a crontab template holds comes from here or `cron_schedule`, so the template keeps its lines.

    Raises RenderError as `shell_word` and `cron_command` do."""
    word = shell_word(value)
    cron_command(word)
    return word


def cron_line(schedule: str, user: str, command: str) -> str:
    """One line of a system crontab (`/etc/cron.d`): schedule, user, command; see `cron_schedule` and `cron_command`.

    Raises RenderError for a bad schedule or command, or a user that is not an account name."""
    if not _ACCOUNT.fullmatch(user):
        raise RenderError("a crontab user must be an account name")
    return f"{cron_schedule(schedule)} {user} {cron_command(command)}\n"


def crontab(text: str) -> str:
    """A crontab laid out by a template, every line rendered again by `cron_line`: the template places the values
    (from `cron_schedule` and `cron_word`, which hold no line break), this escapes the commands and checks that the
    layout kept six fields before each command.

    Raises RenderError as `cron_line` does, or for a line with fewer fields."""
    lines = []
    for line in text.rstrip("\n").split("\n"):
        parts = line.split(" ", len(_CRON_FIELDS) + 1)
        if len(parts) != len(_CRON_FIELDS) + 2:
            raise RenderError("a crontab line needs five schedule fields, a user and a command")
        lines.append(cron_line(" ".join(parts[: len(_CRON_FIELDS)]), parts[-2], parts[-1]))
    return "".join(lines)


# --- postgresql.conf -------------------------------------------------------------------------------------------

CONF_NAME = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")
"""A setting name as postgresql.conf's scanner reads one (an identifier, or two joined by one dot), lower case."""


def conf_name(name: str) -> str:
    """A postgresql.conf setting name. Raises RenderError for one that is not an identifier (or two joined by a
    dot), and for an include directive."""
    if not CONF_NAME.fullmatch(name):
        raise RenderError("a postgresql.conf name is lower-case letters, digits and '_', with at most one '.'")
    if name in INCLUDE_DIRECTIVES:
        raise RenderError(f"'{name}' reads another file into postgresql.conf and cannot be set")
    return name


def conf_value(value: str) -> str:
    """`value` as a postgresql.conf string: in single quotes, with `'` doubled and `\\` doubled, because the file's
    scanner reads backslash escapes inside quoted strings (PostgreSQL's own `escape_single_quotes_ascii`, and
    Patroni's writer, do the same).

    Raises RenderError for a control character or a line break: a quoted string ends at the line."""
    _refuse_control(value, "a postgresql.conf value")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def postgresql_conf(parameters: Mapping[str, str]) -> str:
    """A postgresql.conf with one `name = 'value'` line per parameter, in order.

    Raises RenderError for a name or value `conf_name` or `conf_value` refuses."""
    return "".join(f"{conf_name(name)} = {conf_value(value)}\n" for name, value in parameters.items())


# --- libpq: connection strings, URLs, password files ------------------------------------------------------------

_CONNINFO_KEYWORD = re.compile(r"[a-z_]+")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"(?!.{{254}}){_LABEL}(?:\.{_LABEL})*\.?", re.ASCII)


def conninfo(parameters: Mapping[str, str]) -> str:
    """A libpq `keyword=value` connection string. A value that is empty or holds a space, `'` or `\\` is put in
    single quotes with `'` and `\\` escaped by a backslash, as libpq's parser reads them; others stay bare.

    Raises RenderError for a keyword that is not lower-case letters and '_', and for a NUL byte."""
    words = []
    for keyword, value in parameters.items():
        if not _CONNINFO_KEYWORD.fullmatch(keyword):
            raise RenderError("a connection string keyword is lower-case letters and '_'")
        _refuse_nul(value, "a connection string value")
        quoted = value == "" or re.search(r"[\s'\\]", value) is not None
        words.append(f"{keyword}=" + ("'" + re.sub(r"(['\\])", r"\\\1", value) + "'" if quoted else value))
    return " ".join(words)


def url_host(host: str) -> str:
    """`host` for a URL: an IPv4 address or a host name as it is, an IPv6 address in brackets.

    Raises RenderError for anything else (a socket path, a scoped IPv6 address, a name with other characters)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.fullmatch(host):
            raise RenderError("a database host must be a host name or an IPv4 or IPv6 address") from None
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            raise RenderError("a scoped IPv6 address (with '%zone') cannot be used as a database host")
        return f"[{host}]"
    return host


def _url_part(value: str, what: str) -> str:
    _refuse_nul(value, f"a URL's {what}")
    return quote(value, safe="")


def postgres_url_address(host: str, port: int, dbname: str, params: Mapping[str, str] | None = None) -> str:
    """`HOST:PORT/DBNAME?PARAMS` of a PostgreSQL URL, every part percent-encoded where it needs it.

    Raises RenderError as `url_host` does, and for a NUL byte, which libpq refuses in a URL."""
    query = "&".join(
        f"{_url_part(key, 'parameter')}={_url_part(value, 'parameter')}" for key, value in (params or {}).items()
    )
    address = f"{url_host(host)}:{int(port)}/{_url_part(dbname, 'database name')}"
    return f"{address}?{query}" if query else address


def postgres_url(user: str, host: str, port: int, dbname: str, password: SecretStr | None = None, **params: str) -> str:
    """`postgres://USER[:PASSWORD]@HOST:PORT/DBNAME?PARAMS`, user, password and database percent-encoded (RFC 3986;
    libpq and pgx decode them) and an IPv6 host in brackets.

    Raises RenderError as `postgres_url_address` does, and for a NUL byte in the user or the password."""
    userinfo = _url_part(user, "user")
    if password is not None:
        userinfo += ":" + _url_part(password.get_secret_value(), "password")
    return f"postgres://{userinfo}@{postgres_url_address(host, port, dbname, params)}"


def pgpass_field(value: str) -> str:
    """One field of a libpq password file: `\\` and `:` escaped with a backslash, and a field that is only `*`
    escaped too, so it names `*` instead of matching anything.

    Raises RenderError for a line break, a carriage return or a NUL byte: libpq reads the file line by line and
    strips line ends, whatever precedes them."""
    if any(char in value for char in "\n\r\x00"):
        raise RenderError("a password file field cannot hold a line break or a NUL byte")
    _refuse_nul(value, "a password file field")
    escaped = re.sub(r"([\\:])", r"\\\1", value)
    return "\\*" if escaped == "*" else escaped


def pgpass_line(host: str, port: int, database: str | None, user: str, password: SecretStr) -> str:
    """One line of a libpq password file; `database` None matches any database. A host starting with `#` is
    escaped, since libpq skips a line that starts with one.

    Raises RenderError as `pgpass_field` does."""
    first = pgpass_field(host)
    if first.startswith("#"):
        first = "\\" + first
    fields = [first, str(int(port)), "*" if database is None else pgpass_field(database), pgpass_field(user)]
    return ":".join([*fields, pgpass_field(password.get_secret_value())]) + "\n"


# --- PgBouncer, pg_hba, SQL, YAML ------------------------------------------------------------------------------

_PGBOUNCER_TOKEN = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_.:/-]*")
_HBA_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")
"""Not starting with '/', which makes a user or database token a regular expression (PostgreSQL 16 and later)."""


def pgbouncer_value(value: object) -> str:
    """`value` formatted for pgbouncer.ini, on either side of `=` or in a `[databases]` connection string. PgBouncer's
    ini and connection-string parsers quote differently, so only bare tokens are written.

    Raises RenderError for anything but letters, digits and '_.:/-' (not starting with '-' or ':')."""
    text = format(value)
    if not _PGBOUNCER_TOKEN.fullmatch(text):
        raise RenderError("a pgbouncer.ini value may hold only letters, digits and '_.:/-'")
    return text


def pgbouncer_auth_line(user: str, password: SecretStr) -> str:
    """One line of PgBouncer's auth_file: `"user" "password"`, a `"` inside either doubled.

    Raises RenderError for a control character or a line break in either."""
    fields = [user, password.get_secret_value()]
    for field in fields:
        _refuse_control(field, "a PgBouncer auth_file field")
    return " ".join('"' + field.replace('"', '""') + '"' for field in fields) + "\n"


def hba_line(*tokens: str) -> str:
    """One pg_hba.conf rule from its tokens, each written bare, so that keywords (`all`, `replication`) keep their
    meaning and nothing reads as a quoted name, a `+group`, an `@file` inclusion, a list or a comment.

    Raises RenderError for a token holding anything but letters, digits and '_.:/-', or starting with one of '.:/-'."""
    for token in tokens:
        if not _HBA_TOKEN.fullmatch(token):
            raise RenderError("a pg_hba.conf token may hold only letters, digits and '_.:/-'")
    return " ".join(tokens)


_SQL_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def sql_identifier(name: str) -> str:
    """A role or database name written bare in SQL. Raises RenderError unless it is lower case, needing no quotes."""
    if not _SQL_IDENTIFIER.fullmatch(name):
        raise RenderError("an SQL name written bare is lower-case letters, digits and '_'")
    return name


def sql_literal(value: SecretStr) -> str:
    """A (secret) string as an SQL literal: in single quotes with `'` doubled (standard-conforming strings).

    Raises RenderError for a control character, a line break or a backslash, which psql and the server read
    differently depending on settings."""
    text = value.get_secret_value()
    _refuse_control(text, "an SQL string")
    if "\\" in text:
        raise RenderError("an SQL string here cannot hold a backslash")
    return "'" + text.replace("'", "''") + "'"


def yaml_document(data: Mapping[str, Any]) -> str:
    """`data` as YAML that a YAML loader reads back equal, in the order given: `yaml.safe_dump` quotes and escapes
    every string that needs it, control characters included. Never refuses."""
    return yaml.safe_dump(dict(data), sort_keys=False)
