"""What the runner executes for a test's load: the commands of each driver, their environment and time bounds.

The connection's password never appears here: the commands read it from the runner's password file
(`PGPASSFILE`), which the target writes onto the runner machine.
"""

from __future__ import annotations

from pydantic import Field

from stroppy_domain.model import BenchmarkTest, Driver, Model
from stroppy_domain.plan import Connection
from stroppy_domain.services import LOAD_PASSFILE

PROGRESS_INTERVAL_S = 5
INIT_TIMEOUT_S = 1800


class LoadStep(Model):
    """One command of a load, run on the runner machine in the run's output directory."""

    name: str
    argv: list[str]
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: int = Field(gt=0)
    measured: bool = Field(default=False, description="The measurement itself: never retried.")


class LoadError(ValueError):
    """A load that cannot be built for this test; names the field."""


def _libpq_env(connection: Connection) -> dict[str, str]:
    return {
        "PGHOST": connection.host,
        "PGPORT": str(connection.port),
        "PGUSER": connection.user,
        "PGDATABASE": connection.dbname,
        "PGPASSFILE": LOAD_PASSFILE,
        "PGSSLMODE": "disable",
        "PGCONNECT_TIMEOUT": "10",
    }


def pgbench_steps(test: BenchmarkTest, connection: Connection, margin_s: int) -> list[LoadStep]:
    """TPC-B with pgbench: initialise at the test's scale, then a timed run with progress and per-transaction logs."""
    load = test.stroppy
    env = _libpq_env(connection)
    jobs = max(1, min(load.clients, test.runner_hardware.cores))
    return [
        LoadStep(
            name="pgbench-init",
            argv=["pgbench", "--initialize", f"--scale={load.scale}", "--quiet"],
            env=env,
            timeout_s=INIT_TIMEOUT_S,
        ),
        LoadStep(
            name="pgbench-run",
            argv=[
                "pgbench", f"--client={load.clients}", f"--jobs={jobs}", f"--time={load.duration}",
                f"--progress={PROGRESS_INTERVAL_S}", "--report-per-command", "--log", "--log-prefix=pgbench_log",
            ],
            env=env,
            timeout_s=load.duration + margin_s,
            measured=True,
        ),
    ]  # fmt: skip


def load_steps(test: BenchmarkTest, connection: Connection, margin_s: int) -> list[LoadStep]:
    if test.stroppy.driver is Driver.PGBENCH:
        return pgbench_steps(test, connection, margin_s)
    raise LoadError(f"stroppy.driver: the {test.stroppy.driver} driver is not available in this installation yet")
