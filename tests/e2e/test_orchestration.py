"""The whole stack: Prefect server, master worker, edge agents in machine containers, Redis and the Docker engine.

Start it with `bash scripts/control-plane.sh start` (scripts/test.sh does). Runs go through the deployments, as
users and CI start them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from blocks.redis import RedisConnection
from flows.run import run_id_for
from flows.settings import OrchestrationSettings
from flows.suite import SuiteResult
from infra.edge_queues import EDGE_POOL
from infra.ledger import open_ledgers
from infra.reservations import SubnetReservations
from infra.targets.base import LABEL_RUN_ID
from stroppy_domain.model import Target
from stroppy_domain.settings import PlannerSettings

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.redis]

API_URL = os.environ["PREFECT_API_URL"]
HARDWARE = {"cores": 1, "memory_gb": 1, "disk_gb": 10}
INSTANCE = {"instance": {"hardware": HARDWARE}}
PATRONI_BEHIND_PGBOUNCER = {
    "cluster": {
        "topology": {"settings": {"patroni": {}}, "master_hardware": HARDWARE, "replica_hardware": HARDWARE,
                     "replicas": 1},
        "addons": {"etcd": {"size": 1, "placement": {"colocate": {"scope": "master"}}},
                   "pgbouncer": {"placement": {"colocate": {"scope": "master"}}}},
    }
}  # fmt: skip


def pgbench_test(name: str, database: dict, duration: int = 8) -> dict[str, Any]:
    load = {"driver": "pgbench", "workload": "tpcb", "scale": 1, "duration": duration, "clients": 2}
    return {"name": name, "stroppy": load, "database": database}


@pytest.fixture(scope="module", autouse=True)
def control_plane() -> None:
    try:
        httpx.get(f"{API_URL}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        pytest.fail(f"no Prefect server at {API_URL}; start it with `bash scripts/control-plane.sh start`: {error}")


def leftovers(run_id: str) -> dict[str, list[str]]:
    """Everything that still carries the run's id: containers, networks, volumes, its subnet, its ledger."""
    engine = docker.from_env(timeout=60)
    selector = {"label": f"{LABEL_RUN_ID}={run_id}"}
    client = RedisConnection(url=OrchestrationSettings().redis_url).client()
    space = PlannerSettings().address_space(Target.DOCKER)
    try:
        return {
            "containers": [c.name for c in engine.containers.list(all=True, filters=selector)],
            "networks": [n.name for n in engine.networks.list(filters=selector)],
            "volumes": [v.name for v in engine.volumes.list(filters=selector)],
            "subnets": [
                r.subnet for r in SubnetReservations(client, Target.DOCKER, space).list() if r.run_id == run_id
            ],
            "ledgers": [ledger for ledger in open_ledgers(client) if ledger == run_id],
            "queues": asyncio.run(_queues_of(run_id)),
        }
    finally:
        engine.close()
        client.close()


async def _queues_of(run_id: str) -> list[str]:
    async with get_client() as client:
        queues = await client.read_work_queues(work_pool_name=EDGE_POOL)
    return [queue.name for queue in queues if queue.name.startswith(f"{run_id}-")]


NOTHING = {"containers": [], "networks": [], "volumes": [], "subnets": [], "ledgers": [], "queues": []}


def run_suite(
    tests: list[dict], inject: dict[str, str] | None = None, timeout_s: int = 1500
) -> tuple[FlowRun, SuiteResult]:
    suite = {"name": "e2e", "tests": tests}
    flow_run: FlowRun = run_deployment(
        "stroppy-test-suite/suite",
        parameters={"suite": suite, "inject_failure_at": inject},
        timeout=timeout_s,
        poll_interval=2,
    )
    assert flow_run.state is not None and flow_run.state.is_final(), flow_run.state
    result = flow_run.state.result(raise_on_failure=False)
    assert isinstance(result, SuiteResult), result
    return flow_run, result


def test_a_suite_of_two_tests_completes_with_real_load_numbers() -> None:
    flow_run, result = run_suite([pgbench_test("single", INSTANCE), pgbench_test("patroni", PATRONI_BEHIND_PGBOUNCER)])
    assert flow_run.state.is_completed(), [(o.test_name, o.state, o.message) for o in result.outcomes]
    by_name = {outcome.test_name: outcome for outcome in result.outcomes}
    assert sorted(by_name) == ["patroni", "single"]
    for outcome in result.outcomes:
        run = outcome.result
        assert run is not None
        measured = next(step for step in run.load.steps if step.name == "pgbench-run")
        tps_lines = [line for line in measured.output_tail if line.startswith("tps = ")]
        assert tps_lines and float(tps_lines[0].split()[2]) > 0, measured.output_tail
        assert any(name.startswith("pgbench_log") for name in run.load.files)
        assert all((Path(run.output_dir) / name).is_file() for name in run.load.files)
        assert leftovers(run.run_id) == NOTHING
    assert by_name["patroni"].result.connection.endswith(":6432/stroppy?sslmode=disable")


STEPS = [
    "validate", "reserve", "plan", "create_machines", "wait_for_agents", "start_services", "install", "run_load",
    "results",
]  # fmt: skip


def test_a_failure_at_any_step_fails_that_test_only_and_leaves_nothing() -> None:
    tests = [pgbench_test(f"fail-{step.replace('_', '-')}", INSTANCE, duration=3) for step in STEPS]
    tests.append(pgbench_test("healthy", INSTANCE, duration=3))
    tests.append(pgbench_test("slow", INSTANCE, duration=3) | {"thresholds": {"tps": ["value>1000000"]}})
    inject = {f"fail-{step.replace('_', '-')}": step for step in STEPS}
    flow_run, result = run_suite(tests, inject)
    assert flow_run.state.is_failed()
    assert flow_run.state.message.startswith(f"{len(STEPS) + 1} of {len(tests)} test(s) failed")
    by_name = {outcome.test_name: outcome for outcome in result.outcomes}
    assert by_name["healthy"].state == "COMPLETED"
    assert by_name["healthy"].result.verdict == "PASSED"
    slow = by_name["slow"]
    assert slow.state == "FAILED" and slow.message.startswith("FAILED: thresholds not met: tps value>1000000")
    (threshold,) = slow.result.checks
    assert not threshold.passed and 0 < threshold.observed < 1000000
    assert slow.result.metrics["transactions"]["count"] > 0
    for step in STEPS:
        outcome = by_name[f"fail-{step.replace('_', '-')}"]
        assert outcome.state == "FAILED", (step, outcome)
        assert f"failure injected at step {step}" in outcome.message
    for outcome in result.outcomes:
        assert leftovers(outcome.run_id) == NOTHING, outcome.test_name


def _flow_run_processes(flow_run_id: str) -> list[int]:
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


def test_a_run_killed_mid_load_is_still_torn_down() -> None:
    flow_run: FlowRun = run_deployment(
        "stroppy-test-run/run",
        parameters={"test": pgbench_test("killed", INSTANCE, duration=120)},
        timeout=0,
    )
    run_id = run_id_for(flow_run.id)
    deadline = time.monotonic() + 300
    while not leftovers(run_id)["containers"] or not _runner_is_loading(run_id):
        assert time.monotonic() < deadline, "the run never reached its load"
        time.sleep(2)
    pids = _flow_run_processes(str(flow_run.id))
    assert pids, "the run's flow process was not found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 180
    while leftovers(run_id) != NOTHING:
        assert time.monotonic() < deadline, f"still left after SIGKILL: {leftovers(run_id)}"
        time.sleep(2)


def _runner_is_loading(run_id: str) -> bool:
    engine = docker.from_env(timeout=60)
    try:
        runner = engine.containers.get(f"stroppy-{run_id}-stroppy-runner")
        return runner.exec_run(["pgrep", "-f", "pgbench --client"]).exit_code == 0
    except docker.errors.NotFound:
        return False
    finally:
        engine.close()
