"""Two master workers serve `stroppy-master` (STROPPY_MASTER_WORKERS=2, scripts/test.sh): one killed with SIGKILL
mid-suite leaves the other taking the suite's next run, and the target's run limit gives back every slot."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectAlreadyExists
from prefect.states import Scheduled

from flows.suite import SuiteResult
from infra.target_slots import limit_name
from infra.targets.base import LABEL_RUN_ID
from stroppy_domain.model import Target
from tests.conftest import REPO
from tests.e2e.test_orchestration import INSTANCE, NOTHING, leftovers, pgbench_test

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.redis, pytest.mark.timeout(900)]

STATE = REPO / ".state"
FIRST_RUN_WITHIN_S = 300
SUITE_WITHIN_S = 600


def _run_ids_with_containers(engine: docker.DockerClient) -> set[str]:
    return {c.labels[LABEL_RUN_ID] for c in engine.containers.list(all=True, filters={"label": LABEL_RUN_ID})}


def _submitted(log: Path) -> list[str]:
    """The run ids (`run-` and the flow run's first 12 hex digits) a worker's log says it submitted."""
    found = re.findall(r"[Ss]ubmitting flow run '([0-9a-f-]{36})'", log.read_text(errors="replace"))
    return ["run-" + flow_run_id.replace("-", "")[:12] for flow_run_id in found]


def _active_slots(target: Target) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(limit_name(target)).active_slots


def test_a_master_worker_killed_mid_suite_leaves_the_other_serving_new_runs() -> None:
    killed, survivor = STATE / "master-worker-1.pid", STATE / "master-worker-2.pid"
    assert killed.is_file() and survivor.is_file(), "the stack runs two master workers (STROPPY_MASTER_WORKERS=2)"
    engine = docker.from_env(timeout=60)
    before = _run_ids_with_containers(engine)
    tests = [pgbench_test("first", INSTANCE, duration=15), pgbench_test("second", INSTANCE, duration=5)]
    suite: FlowRun = run_deployment(
        "stroppy-test-suite/suite",
        parameters={"suite": {"name": "e2e-workers", "tests": tests}},
        timeout=0,
        job_variables={"env": {"STROPPY_MAX_PARALLEL_TESTS": "1"}},
    )
    try:
        deadline = time.monotonic() + FIRST_RUN_WITHIN_S
        while not (started := _run_ids_with_containers(engine) - before):
            assert time.monotonic() < deadline, "the suite's first run made no machine"
            time.sleep(1)
        # The first run's machines are up: its flow-run process lives in a session of its own and goes on.
        os.killpg(int(killed.read_text()), signal.SIGKILL)
        deadline = time.monotonic() + SUITE_WITHIN_S
        with get_client(sync_client=True) as client:
            while not (state := client.read_flow_run(suite.id).state) or not state.is_final():
                assert time.monotonic() < deadline, f"the suite is still {state}"
                time.sleep(2)
        assert state.is_completed(), state
        result = state.result(raise_on_failure=False)
        assert isinstance(result, SuiteResult), result
        assert [(o.test_name, o.state) for o in result.outcomes] == [("first", "COMPLETED"), ("second", "COMPLETED")]
        first, second = (outcome.run_id for outcome in result.outcomes)
        assert started == {first}, (started, first)
        assert second in _submitted(STATE / "master-worker-2.log"), "the surviving worker did not take the next run"
        for run_id in (first, second):
            assert leftovers(run_id) == NOTHING
        assert _active_slots(Target.DOCKER) == 0, "a run kept its slot of the target's limit"
    finally:
        engine.close()
        subprocess.run(["bash", str(REPO / "scripts" / "control-plane.sh"), "workers"], check=True, timeout=120)


STOPPED_WITHIN_S = 30
STARTED_WITHIN_S = 120
WOKEN_WITHIN_S = 30
"""Far below the probe worker's poll interval, `SLOW_POLL_S`."""
SLOW_POLL_S = 600


@contextlib.contextmanager
def _background_worker(pool: str, log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`stroppy-flows master-worker` on a pool of its own, started as scripts/control-plane.sh starts it (a
    non-interactive shell's background job inherits SIGINT ignored); killed and its pool deleted on the way out."""
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    command = [str(Path(sys.executable).parent / "stroppy-flows"), "master-worker", "--pool", pool, "--name", pool]
    inherited = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with log.open("w") as output:
            worker = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=os.environ | (env or {}))
    finally:
        signal.signal(signal.SIGINT, inherited)
    try:
        deadline = time.monotonic() + STARTED_WITHIN_S
        while "started!" not in log.read_text(errors="replace"):
            assert worker.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, f"the worker did not start:\n{log.read_text(errors='replace')}"
            time.sleep(0.5)
        yield worker
    finally:
        worker.kill()
        worker.wait(timeout=STOPPED_WITHIN_S)
        with get_client(sync_client=True) as client:
            client.delete_work_pool(pool)


def test_a_master_worker_started_in_the_background_stops_on_sigterm(tmp_path: Path) -> None:
    """Prefect's worker stops on SIGTERM by sending itself SIGINT, which a background job ignores (it never stopped
    before; the stack's stop killed it)."""
    log = tmp_path / "worker.log"
    with _background_worker("e2e-stop-probe", log) as worker:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=STOPPED_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker still ran {STOPPED_WITHIN_S} s after SIGTERM:\n{log.read_text(errors='replace')}")


def test_a_worker_polls_at_once_when_a_flow_run_is_scheduled_on_its_pool(tmp_path: Path) -> None:
    """The event stream wakes it: a worker polling every 10 minutes reads a run scheduled on its pool within
    seconds. The run is due in an hour, so the poll submits nothing."""
    pool = "e2e-wake-probe"
    log = tmp_path / "worker.log"
    slow = {"PREFECT_WORKER_QUERY_SECONDS": str(SLOW_POLL_S)}
    with _background_worker(pool, log, slow), get_client(sync_client=True) as client:
        deadline = time.monotonic() + STARTED_WITHIN_S
        while (polled := client.read_work_queue_by_name("default", work_pool_name=pool).last_polled) is None:
            assert time.monotonic() < deadline, "the worker never polled its pool"
            time.sleep(0.5)
        deployment = client.create_deployment(
            flow_id=client.create_flow_from_name(pool), name=pool, work_pool_name=pool, entrypoint="flows.reaper:reap"
        )
        try:
            scheduled = client.create_flow_run_from_deployment(
                deployment, state=Scheduled(scheduled_time=datetime.now(UTC) + timedelta(hours=1))
            )
            deadline = time.monotonic() + WOKEN_WITHIN_S
            while client.read_work_queue_by_name("default", work_pool_name=pool).last_polled == polled:
                assert time.monotonic() < deadline, (
                    f"no poll within {WOKEN_WITHIN_S} s of a scheduled run:\n{log.read_text(errors='replace')}"
                )
                time.sleep(0.5)
            client.delete_flow_run(scheduled.id)
        finally:
            client.delete_deployment(deployment)
