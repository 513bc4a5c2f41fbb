"""What the runner executes for a test's load: the commands of each driver, their environment and time bounds.

The connection's password never appears here: the commands read it from the runner's password file
(`PGPASSFILE`), which the target writes onto the runner machine.
"""

from __future__ import annotations

from pydantic import Field

from stroppy_domain.errors import StroppyError
from stroppy_domain.model import BenchmarkTest, Driver, Model
from stroppy_domain.plan import Connection
from stroppy_domain.services import LOAD_PASSFILE
from stroppy_domain.timeseries import K6_METRICS_FILE

PROGRESS_INTERVAL_S = 5
INIT_TIMEOUT_S = 1800
GENERATE_TIMEOUT_S = 300


class LoadStep(Model):
    """One command of a load, run on the runner machine in the run's output directory."""

    name: str
    argv: list[str]
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: int = Field(gt=0)
    measured: bool = Field(default=False, description="The measurement itself: never retried.")


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


def load_timeouts_s(test: BenchmarkTest, margin_s: int) -> list[int]:
    """The bound of each step of the test's load, in order: the preparation (pgbench's initialisation or stroppy's
    generation), then the measured run."""
    prepare_s = INIT_TIMEOUT_S if test.stroppy.driver is Driver.PGBENCH else GENERATE_TIMEOUT_S
    return [prepare_s, test.stroppy.duration + margin_s]


def pgbench_steps(test: BenchmarkTest, connection: Connection, margin_s: int) -> list[LoadStep]:
    """TPC-B with pgbench: initialise at the test's scale, then a timed run with progress and per-transaction logs."""
    load = test.stroppy
    env = libpq_env(connection)
    jobs = max(1, min(load.clients, test.runner_hardware.cores))
    prepare_s, run_s = load_timeouts_s(test, margin_s)
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


SUPPORTED_STROPPY_MAJORS = (2, 5)
SUMMARY_FILE = "summary.json"


def stroppy_major(version: str) -> int:
    """The major of a stroppy release such as `v5.0.0`; raises LoadError when this project does not support it."""
    major = int(version.lstrip("v").split(".", 1)[0])
    if major not in SUPPORTED_STROPPY_MAJORS:
        supported = ", ".join(str(number) for number in SUPPORTED_STROPPY_MAJORS)
        raise LoadError(f"stroppy.version: stroppy {version} is major {major}; supported majors are {supported}")
    return major


def stroppy_steps(test: BenchmarkTest, connection: Connection, binary: str, margin_s: int) -> list[LoadStep]:
    """stroppy's k6-based CLI: generate the workload's script, then run it with the k6 summary exported.

    The database is named by `DRIVER_URL` without a password; pgx reads it from `PGPASSFILE`. Both majors run the
    generated files from the output directory and have k6 write every sample to a CSV file (the load's time series);
    major 5 (k6 1.x inside) also asks for k6's full summary mode.

    Raises LoadError when the test names no stroppy version, or one of an unsupported major.
    """
    load = test.stroppy
    if load.version is None:
        raise LoadError("stroppy.version: the stroppy driver needs the release to install")
    major = stroppy_major(load.version)
    workload = str(load.workload)
    env = load.env | {
        "DRIVER_URL": connection.dsn(),
        "PGPASSFILE": LOAD_PASSFILE,
        "SCALE_FACTOR": str(load.scale),
        "DURATION": f"{load.duration}s",
    }
    script, sql = f"{workload}.ts", f"{workload}.sql"
    prepare_s, run_s = load_timeouts_s(test, margin_s)
    k6_arguments = ["--summary-export", SUMMARY_FILE, "--out", f"csv={K6_METRICS_FILE}"]
    if major >= 5:
        k6_arguments = ["--summary-mode", "full", *k6_arguments]
    return [
        LoadStep(
            name="stroppy-gen", argv=[binary, "gen", "--workdir", ".", "--preset", workload], env=env,
            timeout_s=prepare_s,
        ),
        LoadStep(
            name="stroppy-run", argv=[binary, "run", script, sql, "--", *k6_arguments], env=env,
            timeout_s=run_s, measured=True,
        ),
    ]  # fmt: skip


def load_steps(test: BenchmarkTest, connection: Connection, margin_s: int, stroppy_binary: str = "") -> list[LoadStep]:
    """The steps of the test's driver. Raises LoadError for a stroppy load without a version or of an unsupported
    major."""
    if test.stroppy.driver is Driver.PGBENCH:
        return pgbench_steps(test, connection, margin_s)
    return stroppy_steps(test, connection, stroppy_binary, margin_s)
