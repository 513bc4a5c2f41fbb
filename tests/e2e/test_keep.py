"""A failed run kept for a look (`keep_on_failure`) on the whole stack: its machines stay up and answer with the
password from the Secret block its report names, the reaper leaves it, `stroppy-flows runs` lists it, and
`stroppy-flows release RUN` tears it down to nothing."""

from __future__ import annotations

import psycopg
import pytest
from prefect.blocks.system import Secret

from flows.keep import KEPT_SECRET_PREFIX
from flows.reaper import reap
from infra.connections import saved_block
from tests.e2e.test_operate import cli
from tests.e2e.test_orchestration import INSTANCE, NOTHING, latest_artifact, leftovers, pgbench_test, run_suite

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.redis, pytest.mark.timeout(900)]


def test_a_failed_run_kept_for_a_look_stays_until_it_is_released() -> None:
    failing = pgbench_test("kept", INSTANCE, duration=3) | {"thresholds": {"tps": ["value>1000000"]}}
    flow_run, result = run_suite([failing], keep_on_failure="10m")
    (outcome,) = result.outcomes
    assert flow_run.state.is_failed() and outcome.state == "FAILED", outcome
    run_id = outcome.run_id
    try:
        held = leftovers(run_id)
        assert held["containers"] and held["ledgers"] == [run_id] and held["subnets"], held
        assert run_id not in [item.run_id for item in reap(grace_minutes=15).reaped], "kept runs are not reaped"

        said = latest_artifact(f"kept-{run_id}")["data"]
        connection = outcome.result.connection  # postgresql://stroppy@HOST:PORT/stroppy?sslmode=disable
        host_port = connection.split("@", 1)[1].split("/", 1)[0]
        assert f"connect to {host_port}" in said and f"Secret block {KEPT_SECRET_PREFIX}{run_id}" in said, said
        password = saved_block(Secret, f"{KEPT_SECRET_PREFIX}{run_id}")
        assert password is not None and password.get() not in said
        host, port = host_port.rsplit(":", 1)
        with psycopg.connect(
            host=host, port=int(port), user="stroppy", dbname="stroppy", password=password.get(), connect_timeout=10
        ) as database:
            assert database.execute("SELECT count(*) FROM pgbench_accounts").fetchone()[0] > 0, "the failed data"

        listed = cli("runs")
        assert listed.returncode == 0, listed.stderr
        (line,) = [row for row in listed.stdout.splitlines() if row.startswith(run_id)]
        assert "FAILED" in line and line.split()[-2:] != ["-", "-"], line  # kept until a time

        released = cli("release", run_id, timeout=300)
        assert released.returncode == 0, released.stdout + released.stderr
        assert leftovers(run_id) == NOTHING
        assert saved_block(Secret, f"{KEPT_SECRET_PREFIX}{run_id}") is None
        again = cli("release", run_id)
        assert again.returncode == 1 and f"no run {run_id} holds anything" in again.stderr, again.stderr
    finally:
        cli("release", run_id, timeout=300)
