"""What the runner executes for a test's load: the commands of each driver, their environment and time bounds.

The connection's password never appears here: the commands read it from the runner's password file
(`PGPASSFILE`), which the target writes onto the runner machine.
"""

from __future__ import annotations

import json

from pydantic import Field

from stroppy_domain import stroppy_v5
from stroppy_domain.errors import StroppyError
from stroppy_domain.model import BenchmarkTest, Driver, Model, SecretRef, Thresholds
from stroppy_domain.plan import Connection
from stroppy_domain.services import LOAD_PASSFILE
from stroppy_domain.thresholds import parse_assertion, stat_key
from stroppy_domain.timeseries import K6_METRICS_FILE

PROGRESS_INTERVAL_S = 5
INIT_TIMEOUT_S = 1800


class LoadStep(Model):
    """One command of a load, run on the runner machine in the run's output directory."""

    name: str
    argv: list[str]
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, str] = Field(
        default_factory=dict,
        description="Variables whose values the runner reads from these Secret blocks (variable -> block name) into "
        "the step's environment; their values are masked in its output.",
    )
    timeout_s: int = Field(gt=0)
    measured: bool = Field(default=False, description="The measurement itself: never retried.")
    files: dict[str, str] = Field(
        default_factory=dict, description="Files the step reads, written into the output directory before it runs."
    )
    verdict_exits: list[int] = Field(
        default_factory=list, description="Exit codes that end the step with a verdict (FAILED), not an error."
    )


class LoadError(StroppyError, ValueError):
    """A load that cannot be built for this test; names the field."""


LIBPQ_PARAMETER_ENV = {
    "sslmode": "PGSSLMODE",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}
"""Each libpq parameter a connection may carry, as the environment variable libpq reads it from."""


def libpq_env(connection: Connection) -> dict[str, str]:
    """What libpq (pgbench, psql) reads the connection from; the password stays in the password file."""
    parameters = {"connect_timeout": "10"} | connection.parameters
    return {
        "PGHOST": connection.host,
        "PGPORT": str(connection.port),
        "PGUSER": connection.user,
        "PGDATABASE": connection.dbname,
        "PGPASSFILE": LOAD_PASSFILE,
    } | {LIBPQ_PARAMETER_ENV[key]: value for key, value in parameters.items()}


FACTS_FILE = "postgres.json"
FACTS_TIMEOUT_S = 60
FACTS_QUERY = (
    "select json_build_object('server_version', current_setting('server_version'), 'settings', "
    "coalesce((select json_object_agg(name, setting order by name) from pg_settings "
    "where source not in ('default', 'override', 'client', 'session')), '{}'::json))"
)
"""What the server really runs: its version and every setting not at its built-in default, as the server reports it
(`pg_settings.source`: a configuration file, the command line, ALTER SYSTEM, ...; not this session's own)."""


def load_timeouts_s(test: BenchmarkTest, margin_s: int) -> list[int]:
    """The bound of each step of the test's load, in order: the preparation (creating and loading the schema), the
    database's facts, then the measured run."""
    return [INIT_TIMEOUT_S, FACTS_TIMEOUT_S, test.stroppy.duration + margin_s]


def facts_step(connection: Connection) -> LoadStep:
    """Read the database's facts into `FACTS_FILE` with psql, as the load connects; before the measured run, whose
    verdict may end the load."""
    return LoadStep(
        name="postgres-facts",
        argv=["psql", "--no-psqlrc", "--quiet", "--tuples-only", "--no-align", f"--output={FACTS_FILE}",
              "--command", FACTS_QUERY],
        env=libpq_env(connection),
        timeout_s=FACTS_TIMEOUT_S,
    )  # fmt: skip


def pgbench_steps(test: BenchmarkTest, connection: Connection, margin_s: int) -> list[LoadStep]:
    """TPC-B with pgbench: initialise at the test's scale, then a timed run with progress and per-transaction logs."""
    load = test.stroppy
    env = libpq_env(connection)
    jobs = max(1, min(load.clients, test.runner_hardware.cores))
    prepare_s, _, run_s = load_timeouts_s(test, margin_s)
    return [
        LoadStep(
            name="pgbench-init",
            argv=["pgbench", "--initialize", f"--scale={load.scale}", "--quiet"],
            env=env,
            timeout_s=prepare_s,
        ),
        LoadStep(
            name="pgbench-run",
            argv=[
                "pgbench", f"--client={load.clients}", f"--jobs={jobs}", f"--time={load.duration}",
                f"--progress={PROGRESS_INTERVAL_S}", "--report-per-command", "--log", "--log-prefix=pgbench_log",
            ],
            env=env,
            timeout_s=run_s,
            measured=True,
        ),
    ]  # fmt: skip


SUMMARY_FILE = "summary.json"
K6_OPTIONS_FILE = "k6-options.json"


def stroppy_major(version: str) -> int:
    """The major of a stroppy release such as `v5.7.3`; raises LoadError when this project does not support it."""
    major = int(version.lstrip("v").split(".", 1)[0])
    if major != stroppy_v5.MAJOR:
        raise LoadError(
            f"stroppy.version: stroppy {version} is major {major}; only major {stroppy_v5.MAJOR} is supported "
            "(v2 ran k6 scripts from `gen` with DRIVER_URL and dropped k6's exit codes; pin a v5 release)"
        )
    return major


def k6_options(thresholds: Thresholds) -> str:
    """The test's thresholds as a k6 options file, so that k6 itself judges them (and exits 99 when one fails)."""
    rules = {
        metric: [
            {"threshold": rule.threshold, "abortOnFail": rule.abort_on_fail}
            | ({"delayAbortEval": f"{rule.delay_abort_eval}s"} if rule.delay_abort_eval is not None else {})
            for rule in metric_rules
        ]
        for metric, metric_rules in thresholds.items()
    }
    return json.dumps({"thresholds": rules}, indent=2)


def trend_stats(thresholds: Thresholds) -> list[str]:
    """The workload's summary statistics plus every percentile a threshold asks for, each named as the summary
    names it (`stat_key`), so the summary holds every statistic the thresholds judge."""
    stats = list(stroppy_v5.SUMMARY_TREND_STATS)
    for rules in thresholds.values():
        for rule in rules:
            assertion = parse_assertion(rule.threshold)
            if assertion.percentile is not None:
                stat = stat_key(assertion)
                stats += [stat] if stat not in stats else []
    return stats


def stroppy_steps(
    test: BenchmarkTest, connection: Connection, binary: str, margin_s: int, workdir: str
) -> list[LoadStep]:
    """stroppy v5 (see `stroppy_domain.stroppy_v5`): load the schema, then measure `clients` VUs for the duration,
    with k6 exporting its summary, judging the test's thresholds and writing every sample as CSV under `workdir`.

    The password stays in the runner's password file: the URL has none and pgx reads `PGPASSFILE`. Raises LoadError
    when the test names no stroppy version, or one of an unsupported major."""
    load = test.stroppy
    if load.version is None:
        raise LoadError("stroppy.version: the stroppy driver needs the release to install")
    stroppy_major(load.version)
    env = {"PGPASSFILE": LOAD_PASSFILE}
    url = connection.dsn()
    prepare_s, _, run_s = load_timeouts_s(test, margin_s)
    # stroppy reads the process environment before its `-e` values: a secret travels only in the former.
    plain = {name: value for name, value in load.env.items() if isinstance(value, str)}
    secrets = secret_env(test)
    knobs = plain | {"VUS": str(load.clients), "DURATION": f"{load.duration}s", "SCALE_FACTOR": str(load.scale)}
    options = K6_OPTIONS_FILE if test.thresholds else None
    arguments = stroppy_v5.k6_arguments(workdir, SUMMARY_FILE, K6_METRICS_FILE, options, trend_stats(test.thresholds))
    return [
        LoadStep(
            name="stroppy-prepare", env=env, secret_env=secrets, timeout_s=prepare_s,
            argv=stroppy_v5.prepare_argv(binary, load.workload, url, load.scale, plain),
        ),
        LoadStep(
            name="stroppy-run", env=env, secret_env=secrets, timeout_s=run_s, measured=True,
            argv=stroppy_v5.measure_argv(binary, load.workload, url, knobs, arguments),
            files={K6_OPTIONS_FILE: k6_options(test.thresholds)} if options else {},
            verdict_exits=list(stroppy_v5.VERDICT_EXITS),
        ),
    ]  # fmt: skip


def secret_env(test: BenchmarkTest) -> dict[str, str]:
    """The Secret block each secret of the load's environment names, by its variable."""
    return {name: value.secret for name, value in test.stroppy.env.items() if isinstance(value, SecretRef)}


def secret_references(test: BenchmarkTest) -> dict[str, str]:
    """The Secret block each secret of the load's environment names, by its path in the test (`stroppy.env.X`)."""
    return {f"stroppy.env.{name}": block for name, block in secret_env(test).items()}


def load_steps(
    test: BenchmarkTest, connection: Connection, margin_s: int, stroppy_binary: str = "", workdir: str = "."
) -> list[LoadStep]:
    """The steps of the test's driver, with the database's facts read between its preparation and its measured run;
    `workdir` is the runner's directory for the load's files. Raises LoadError for a stroppy load without a version
    or of an unsupported major."""
    if test.stroppy.driver is Driver.PGBENCH:
        prepare, measure = pgbench_steps(test, connection, margin_s)
    else:
        prepare, measure = stroppy_steps(test, connection, stroppy_binary, margin_s, workdir)
    return [prepare, facts_step(connection), measure]
