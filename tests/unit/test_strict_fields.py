"""The field rules of a suite, strict where it matters: every rule accepts the forms users write and refuses, with
its path, each value that could never be valid (issue 13)."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from stroppy_domain.errors import InvalidSuiteError
from stroppy_domain.model import InputModel, Suite, check_backup_path, check_cron, check_env, parse_postgres_url
from stroppy_domain.model import text_problem as problem_of
from stroppy_domain.settings import AddressSpace, ImageCatalogue
from stroppy_domain.validation import validate_suite
from tests.conftest import fresh_suite

Mutation = Callable[[dict[str, Any]], None]
INSTANCE = ("tests", 0, "database", "instance")
CLUSTER = ("tests", 1, "database", "cluster")
HARDWARE = {"cores": 2, "memory_gb": 4, "disk_gb": 20}
IP, CP, LP = "tests[0].database.instance", "tests[1].database.cluster", "tests[0].stroppy"
CONF, URL = f"{IP}.settings.postgresql_conf", "tests[0].database.existing.connection_string"
BACKUP_PATH, SCHEDULE = f"{IP}.sidecars.backup.storage.local.path", f"{IP}.sidecars.backup.schedule"
CHECK = "tests[0].thresholds.checks[0]"
BOOL, TEXT, LESS, RUN_SET, NOT_K6 = (
    "not a boolean",
    "control character",
    "less than or equal to",
    "set by the run",
    "k6",
)


def set_at(*path: str | int, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value  # type: ignore[index]

    return mutate


def inst(*path: str | int, value: Any) -> Mutation:
    return set_at(*INSTANCE, *path, value=value)


def clus(*path: str | int, value: Any) -> Mutation:
    return set_at(*CLUSTER, *path, value=value)


def load(**fields: Any) -> Mutation:
    (name, value), *_ = fields.items()
    return set_at("tests", 0, "stroppy", name, value=value)


def backup(**fields: Any) -> Mutation:
    return inst("sidecars", value={"backup": {"storage": {"local": {"path": "/var/backups/pg"}}, **fields}})


def local_path(path: str) -> Mutation:
    return inst("sidecars", value={"backup": {"storage": {"local": {"path": path}}}})


def conf(settings: dict[str, Any]) -> Mutation:
    return inst("settings", value={"postgresql_conf": settings})


def existing(url: str, block: str | None = "db-password") -> Mutation:
    return set_at("tests", 0, "database", value={"existing": {"connection_string": url, "password_block": block}})


def thresholds(value: Any) -> Mutation:
    return set_at("tests", 0, "thresholds", value=value)


def rule(**fields: Any) -> Mutation:
    return thresholds({"checks": [{"threshold": "rate>0.9", **fields}]})


def issues_of(mutation: Mutation) -> list[tuple[str, str]]:
    data = fresh_suite()
    mutation(data)
    with pytest.raises(InvalidSuiteError) as caught:
        validate_suite(data)
    return [(issue.path, issue.message) for issue in caught.value.issues]


def suite_after(mutation: Mutation) -> Suite:
    data = fresh_suite()
    mutation(data)
    return validate_suite(data)


S3 = {"bucket": "dumps", "credentials_block": "aws"}
RUN_OWNED = (
    "DRIVER_URL",
    "PGPASSFILE",
    "SCALE_FACTOR",
    "DURATION",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGSSLMODE",
    "PGCONNECT_TIMEOUT",
    "PGPASSWORD",
    "PATH",
    "HOME",
)
FILE_OR_COMMAND = (
    ("include", "configuration files"),
    ("include_dir", "configuration files"),
    ("include_if_exists", "configuration files"),
    ("config_file", "managed by stroppy-flows"),
    ("external_pid_file", "configuration files"),
    ("port", "managed by stroppy-flows"),
    ("archive_command", "shell command"),
    ("ssl_passphrase_command", "shell command"),
)
# fmt: off
REFUSED: list[tuple[str, Mutation, str, str]] = [
    # (rule, mutation, path, message fragment)
    # 1. no coercion
    ("bool count", inst("hardware", value={**HARDWARE, "cores": True}), f"{IP}.hardware.cores", BOOL),
    ("bool replicas", clus("topology", "replicas", value=True), f"{CP}.topology.replicas", BOOL),
    ("bool clients", load(clients=True), f"{LP}.clients", BOOL),
    ("bool scale", load(scale=False), f"{LP}.scale", BOOL),
    ("bool port", clus("addons", "pgbouncer", "port", value=True), f"{CP}.addons.pgbouncer.port", BOOL),
    ("bool etcd size", clus("addons", "etcd", "size", value=True), f"{CP}.addons.etcd.size", BOOL),
    ("bool version", inst("settings", value={"version": True}), f"{IP}.settings.version", BOOL),
    ("bool duration", load(duration=True), f"{LP}.duration", BOOL),
    ("bool index", clus("replica_overrides", value=[{"index": False}]), f"{CP}.replica_overrides[0].index", BOOL),
    ("text count", load(clients="8"), f"{LP}.clients", "not text"),
    ("text version", inst("settings", value={"version": "17"}), f"{IP}.settings.version", "not text"),
    ("fraction", load(scale=2.5), f"{LP}.scale", "whole number"),
    ("infinite", load(scale=float("inf")), f"{LP}.scale", "whole number"),
    ("fractional duration", load(duration=90.5), f"{LP}.duration", "whole seconds"),
    ("number as flag", clus("topology", "monitor", value=1), f"{CP}.topology.monitor", "true or false"),
    ("text as flag", rule(abortOnFail="true"), f"{CHECK}.abortOnFail", "true or false"),
    # 2. ranges
    ("port 0", inst("sidecars", value={"node_exporter": {"port": 0}}), f"{IP}.sidecars.node_exporter.port",
     "greater than or equal to 1"),
    ("port 65536", inst("sidecars", value={"postgres_exporter": {"port": 65536}}),
     f"{IP}.sidecars.postgres_exporter.port", f"{LESS} 65535"),
    ("etcd peer port", clus("addons", "etcd", "client_port", value=65535), f"{CP}.addons.etcd.client_port", "65534"),
    ("zero replicas", clus("topology", "replicas", value=0), f"{CP}.topology.replicas", "greater than or equal to 1"),
    ("zero clients", load(clients=0), f"{LP}.clients", "greater than or equal to 1"),
    ("index bound", clus("replica_overrides", value=[{"index": 15}]), f"{CP}.replica_overrides[0].index", f"{LESS} 14"),
    ("negative abort delay", rule(delayAbortEval=-5), f"{CHECK}.delayAbortEval", "more than 0"),
    ("zero duration", load(duration="0s"), f"{LP}.duration", "more than 0"),
    ("endless retention", backup(retention="9000h"), f"{IP}.sidecars.backup.retention", "at most 8784h"),
    ("non-ASCII duration digits", load(duration="\u0665m"), f"{LP}.duration", "expected a duration"),
    # 3. text that can never be valid
    ("NUL in a description", set_at("description", value="a\0b"), "description", "NUL byte"),
    ("C1 control in a description", set_at("tests", 0, "description", value="a\x85b"), "tests[0].description", "line"),
    ("line break in an env value", load(env={"A": "1\n2"}), f"{LP}.env.A", "single line"),
    ("tab in an S3 prefix", clus("addons", "backup", value={"storage": {"s3": {**S3, "prefix": "a\tb"}}}),
     f"{CP}.addons.backup.storage.s3.prefix", TEXT),
    ("line separator in a conf value", conf({"work_mem": "4MB\u2028port = 1"}), f"{CONF}.work_mem", "line break"),
    ("control in a metric tag", thresholds({"m{a:\x1b}": ["rate>0.9"]}), "tests[0].thresholds.m{a:\x1b}.[key]", "k6"),
    ("NUL in a block name", existing("postgres://u@h/db", "pw\0"), "tests[0].database.existing.password_block", "Pre"),
    # 4. run-owned environment
    *[(f"env {name}", load(env={name: "x"}), f"{LP}.env.{name}", RUN_SET) for name in RUN_OWNED],
    ("env LD_PRELOAD", load(env={"LD_PRELOAD": "/x.so"}), f"{LP}.env.LD_PRELOAD", "LD_*"),
    ("env name", load(env={"A-B": "x"}), f"{LP}.env.A-B.[key]", "environment variable name"),
    # 5. backups
    ("command substitution", local_path("/var/backups/$(reboot)"), BACKUP_PATH, "found '$'"),
    ("percent", local_path("/var/backups/%H"), BACKUP_PATH, "found '%'"),
    ("line break", local_path("/var/backups\n* * * * * root id"), BACKUP_PATH, "found '\\n'"),
    ("dot dot", local_path("/var/backups/../../etc"), BACKUP_PATH, "'..'"),
    ("system directory", local_path("/etc/cron.d"), BACKUP_PATH, "outside the directories backups may live in"),
    ("the root", local_path("/"), BACKUP_PATH, "/ is outside"),
    ("relative", local_path("backups"), BACKUP_PATH, "absolute"),
    ("postgres volume", local_path("/var/lib/postgresql/data"), BACKUP_PATH, "is outside"),
    ("cron 99", backup(schedule="99 99 99 99 99"), SCHEDULE, "minute field must be 0-59"),
    ("cron hour", backup(schedule="0 24 * * *"), SCHEDULE, "hour field must be 0-23"),
    ("cron day", backup(schedule="0 0 0 * *"), SCHEDULE, "day of month field must be 1-31"),
    ("cron month", backup(schedule="0 0 * 13 *"), SCHEDULE, "month field must be 1-12"),
    ("cron weekday", backup(schedule="0 0 * * 8"), SCHEDULE, "day of week field must be 0-7"),
    ("cron step 0", backup(schedule="*/0 * * * *"), SCHEDULE, "step must be"),
    ("cron backwards", backup(schedule="30-10 * * * *"), SCHEDULE, "runs backwards"),
    ("cron line break", backup(schedule="0 2 * * *\n* * * * * root id"), SCHEDULE, "cron pattern"),
    ("cron percent", backup(schedule="0 2 * * %"), SCHEDULE, "cron pattern"),
    # 6. postgresql.conf
    *[(f"conf {name}", conf({name: "x"}), f"{CONF}.{name}", fragment) for name, fragment in FILE_OR_COMMAND],
    ("conf NUL value", conf({"work_mem": "4MB\0"}), f"{CONF}.work_mem", "NUL byte"),
    ("conf quote-newline value", conf({"work_mem": "4MB\\'\nport = 1"}), f"{CONF}.work_mem", "line break"),
    ("conf infinite value", conf({"random_page_cost": float("inf")}), f"{CONF}.random_page_cost", "finite"),
    ("override conf", clus("replica_overrides", value=[{"index": 0, "postgresql_conf": {"hba_file": "/x"}}]),
     f"{CP}.replica_overrides[0].postgresql_conf.hba_file", "managed by"),
    # 7. existing databases
    ("password in userinfo", existing("postgres://u:pw@h/db"), URL, "password_block"),
    ("empty password", existing("postgres://u:@h/db"), URL, "password_block"),
    ("password parameter", existing("postgres://u@h/db?sslmode=disable&password=x"), URL, "password_block"),
    ("password parameter in capitals", existing("postgres://u@h/db?PASSWORD=x"), URL, "password_block"),
    ("encoded password parameter", existing("postgres://u@h/db?pass%77ord=x"), URL, "password_block"),
    ("sslpassword", existing("postgres://u@h/db?sslpassword=x"), URL, "password_block"),
    ("encoded NUL user", existing("postgres://u%00@h/db"), URL, "decoded user"),
    ("encoded line break database", existing("postgres://u@h/db%0Ax"), URL, "decoded database name"),
    ("not UTF-8", existing("postgres://u@h/%FF"), URL, "UTF-8"),
    ("line break", existing("postgres://u@h/db\n"), URL, "single line"),
    ("port 0", existing("postgres://u@h:0/db"), URL, "port 0"),
    ("two hosts", existing("postgres://u@h1,h2/db"), URL, "not a host name"),
    ("bad IPv6", existing("postgres://u@[::zz]/db"), URL, "postgres://USER@HOST"),
    ("IPv6 zone", existing("postgres://u@[fe80::1%25eth0]/db"), URL, "zone"),
    ("fragment", existing("postgres://u@h/db#x"), URL, "fragment"),
    ("another scheme", existing("mysql://u@h/db"), URL, "postgres://USER@HOST"),
    ("slash in database", existing("postgres://u@h/db/x"), URL, "%2F"),
    ("parameter the load drops", existing("postgres://u@h/db?sslrootcert=/x"), URL, "'sslrootcert' is not passed on"),
    ("certificate check without a CA", existing("postgres://u@h/db?sslmode=verify-full"), URL, "sslmode='verify-full'"),
    ("parameter twice", existing("postgres://u@h/db?sslmode=require&sslmode=disable"), URL, "given twice"),
    ("timeout not a number", existing("postgres://u@h/db?connect_timeout=soon"), URL, "whole seconds"),
    ("unknown session kind", existing("postgres://u@h/db?target_session_attrs=rw"), URL, "target_session_attrs"),
    # 8. thresholds
    ("trailing line break", thresholds({"checks": ["rate>0.9\n"]}), f"{CHECK}.threshold", NOT_K6),
    ("Arabic-Indic digit", thresholds({"checks": ["rate>0.\u0669"]}), f"{CHECK}.threshold", NOT_K6),
    ("fullwidth operator", thresholds({"checks": ["p(95)\uff1c200"]}), f"{CHECK}.threshold", NOT_K6),
    ("infinite number", thresholds({"checks": ["avg<" + "9" * 400]}), f"{CHECK}.threshold", "finite"),
    ("metric with line break", thresholds({"checks\n": ["rate>0.9"]}), "tests[0].thresholds.checks\n.[key]", "metric"),
    ("stroppy version digits", load(version="v\u0665.0.0"), f"{LP}.version", "release"),
]
# fmt: on


@pytest.mark.parametrize(("mutation", "path", "fragment"), [case[1:] for case in REFUSED], ids=[c[0] for c in REFUSED])
def test_each_invalid_value_is_refused_with_its_path(mutation: Mutation, path: str, fragment: str) -> None:
    issues = issues_of(mutation)
    assert any(found == path and fragment in message for found, message in issues), issues


ACCEPTED: list[tuple[str, Mutation]] = [
    ("whole float count (a form, JSON 1e2)", load(scale=1e2)),
    ("whole float version", inst("settings", value={"version": 17.0})),
    ("whole float duration", load(duration=60.0)),
    ("multi-line description", set_at("description", value="first line\n\tsecond line\r\n")),
    ("quotes and backslashes in a conf value", conf({"search_path": "'a\\b', \"x\"", "x.y": 1.5, "fsync": False})),
    ("env the run does not set", load(env={"POOL_SIZE": "4", "PGOPTIONS": "-c x=1", "K6_OUT": "json"})),
    ("cron lists, ranges, steps", backup(schedule="*/15 0-23/2 1,15 1-12 0-7")),
    ("backup directories", local_path("/srv/dumps/")),
    ("IPv6 host", existing("postgres://u@[::1]:5432/db")),
    ("encoded names", existing("postgres://us%40er@h/d%2Fb?sslmode=require")),
    ("threshold spacing", thresholds({"tx_count{ tag : v }": ["p(99.9) <= 1500.5", {"threshold": "rate>0"}]})),
]


@pytest.mark.parametrize("mutation", [case[1] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_the_forms_users_write_are_accepted(mutation: Mutation) -> None:
    suite_after(mutation)


def test_accepted_values_are_normalised() -> None:
    suite = suite_after(load(scale=1e2))
    assert suite.tests[0].stroppy.scale == 100 and type(suite.tests[0].stroppy.scale) is int
    instance = suite_after(local_path("/srv//dumps/./x/")).tests[0].database.instance
    assert instance is not None and instance.sidecars.backup is not None
    assert instance.sidecars.backup.storage.local is not None
    assert instance.sidecars.backup.storage.local.path == "/srv/dumps/x"
    database = suite_after(existing("postgresql://Us%65r@DB.Example:6000/d%2fb?sslmode=require")).tests[0].database
    assert database.existing is not None
    assert database.existing.connection_string == "postgres://User@db.example:6000/d%2Fb?sslmode=require"
    endpoint = database.existing.endpoint
    assert (endpoint.host, endpoint.port, endpoint.user, endpoint.dbname) == ("db.example", 6000, "User", "d/b")
    ipv6 = suite_after(existing("postgres://u@[0:0::1]/db")).tests[0].database.existing
    assert ipv6 is not None and ipv6.endpoint.host == "::1" and ipv6.connection_string == "postgres://u@[::1]/db"


def test_a_normalised_suite_validates_to_itself() -> None:
    """What a run sends on (the test dumped as JSON) validates again to the same test."""
    suite = suite_after(existing("postgres://us%40er@[::1]:6000/d%2Fb"))
    again = validate_suite(suite.model_dump(mode="json", by_alias=True))
    assert again == suite


@pytest.mark.parametrize(
    ("text", "free_text", "problem"),
    [("plain", False, None), ("é and ü", False, None), ("two\nlines", True, None),
     ("two\nlines", False, "line break (U+000A) at character 4"), ("tab\there", False, "control character (U+0009)"),
     ("nul\0", True, "the NUL byte (U+0000) at character 4"), ("bell\x07", True, "control character (U+0007)"),
     ("del\x7f", False, "control character (U+007F)"), ("sep\u2029", True, "line break (U+2029)")],
)  # fmt: skip
def test_text_problems(text: str, free_text: bool, problem: str | None) -> None:
    found = problem_of(text, free_text)
    assert found == problem if problem is None else problem in (found or "")


@pytest.mark.parametrize(
    ("schedule", "error"),
    [
        ("0 2 * * *", None), ("59 23 31 12 7", None), ("*/5 1-5/2 1,2,3 */3 0", None),
        ("60 * * * *", "minute"), ("* 24 * * *", "hour"), ("* * 32 * *", "day of month"), ("* * * 0 *", "month"),
        ("* * * * 8", "day of week"), ("*/60 * * * *", "step"), ("5-1 * * * *", "backwards"), ("* * * *", "five"),
        ("0 2 * * *\n", "five"), ("\u0665 2 * * *", "five"), ("100 * * * *", "five"),
    ],
)  # fmt: skip
def test_cron_fields_are_in_range(schedule: str, error: str | None) -> None:
    if error is None:
        assert check_cron(schedule) == schedule
    else:
        with pytest.raises(ValueError, match=error):
            check_cron(schedule)


@pytest.mark.parametrize(
    ("path", "normal"),
    [("/var/backups/postgres", "/var/backups/postgres"), ("/srv/b/", "/srv/b"), ("//srv/./dumps//", "/srv/dumps"),
     ("/data/stroppy-backups/a.b_c-d", "/data/stroppy-backups/a.b_c-d"), ("/var/backups", "/var/backups"),
     ("/mnt/etc", "/mnt/etc"), ("/backups", "/backups")],
)  # fmt: skip
def test_backup_paths_are_normalised(path: str, normal: str) -> None:
    assert check_backup_path(path) == normal


@pytest.mark.parametrize(
    ("path", "error"),
    [("", "absolute"), ("x/y", "absolute"), ("/a b", "found ' '"), ("/a'b", "found \"'\""), ("/a;b", "found ';'"),
     ("/a\0", "found '\\x00'"), ("/a/../b", "'..'"), ("/usr", "/usr is outside"), ("/usr/local/x", "outside"),
     ("/proc/1", "outside"), ("/tmp", "outside"), ("/.", "/ is outside"), ("/var/backupsx", "outside"),
     ("/srvx/a", "outside"), ("/var/lib/stroppy-backups", "outside"),
     ("/" + "a" * 1100, "longer than 1024")],
)  # fmt: skip
def test_backup_paths_that_cannot_be_valid(path: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        check_backup_path(path)


def test_run_owned_env_names_every_variable_the_run_sets() -> None:
    with pytest.raises(ValueError, match="DRIVER_URL, DURATION, HOME, PATH") as caught:
        check_env({"PATH": "/x"})
    assert "PGPASSFILE" in str(caught.value)
    assert check_env({"VUS": "2", "path": "lowercase is another variable"})


def test_postgres_urls_are_taken_apart() -> None:
    endpoint = parse_postgres_url("postgres://a%3Ab@[2001:db8::1]:7000/my%20db")
    assert (endpoint.host, endpoint.port, endpoint.user, endpoint.dbname) == ("2001:db8::1", 7000, "a:b", "my db")
    assert endpoint.url() == "postgres://a%3Ab@[2001:db8::1]:7000/my%20db"
    bare = parse_postgres_url("postgres://h")
    assert (bare.host, bare.port, bare.user, bare.dbname) == ("h", None, None, None)


def test_settings_files_are_strict_too() -> None:
    with pytest.raises(ValueError, match="not an image reference"):
        ImageCatalogue(etcd="quay.io/coreos/etcd:v3.5.17\n")
    with pytest.raises(ValueError, match="not a boolean"):
        AddressSpace.model_validate({"base_cidr": "10.0.0.0/16", "prefix": True})


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in found:
            found.append(annotation)
            for field in annotation.model_fields.values():
                visit(field.annotation)
        for argument in typing.get_args(annotation):
            visit(argument)

    visit(root)
    return found


def _scalar(annotation: Any) -> Any:
    """The type without Optional and Annotated."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in {typing.Union, types.UnionType}:
            annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
        else:
            return annotation


def _messages_at(model: type[BaseModel], name: str, value: object) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate({name: value})
    return [error["msg"] for error in caught.value.errors() if error["loc"][:1] == (name,)]


@pytest.mark.parametrize("model", _models(Suite), ids=lambda model: model.__name__)
def test_every_model_of_a_suite_is_strict(model: type[BaseModel]) -> None:
    """Every model checks its text (`InputModel`); every number refuses booleans; every flag takes only booleans."""
    assert issubclass(model, InputModel)
    for name, field in model.model_fields.items():
        scalar = _scalar(field.annotation)
        numeric = scalar is int or (
            typing.get_origin(scalar) is typing.Literal and all(type(v) is int for v in typing.get_args(scalar))
        )
        if numeric:
            assert any("boolean" in message for message in _messages_at(model, name, True)), f"{model.__name__}.{name}"
        if scalar is bool:
            assert any("true or false" in message for message in _messages_at(model, name, 1)), (
                f"{model.__name__}.{name}"
            )
