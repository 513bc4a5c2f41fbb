"""Machines dying mid-load, on the whole stack; each fault ends with nothing left and a clear reason.

- The runner's container killed: its agent stops polling, and the run fails at once, naming the machine.
- The master's machine dying: every master worker and the run's flow-run process are killed with SIGKILL, so
  nothing of the master can mark the run or tear it down. Prefect's flow-run heartbeats stop, the automation
  `stroppy-flows setup` created marks the run CRASHED, and a reaper pass (here in-process: the master is still
  dead) tears down everything the run left. The master is started again afterwards, for the tests after it.
- Redis crashing mid-load: it comes back from its append-only file with every lease and ledger; the run completes.
- The Prefect server restarted mid-load: every client (the run's flow, the workers, the machines' agents) waits for
  it, the dispatcher does not take the agent's silence while the API was away for a lost machine, and the run
  completes.
- The results directory read-only when a run starts: the run fails at validation, naming it, before anything is
  created; full while the runner loads into it: the run fails with "No space left on device" and tears down.
- Two suites with the same test names at once keep to their own runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import docker
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from flows.reaper import reap
from flows.run import run_id_for
from flows.setup import SILENT_AFTER_S
from flows.suite import SuiteResult
from infra.result_storage import PROBE_BYTES
from infra.settings import OrchestrationSettings
from tests.conftest import REPO
from tests.e2e.test_orchestration import (
    INSTANCE,
    NOTHING,
    _flow_run_processes,
    _runner_is_loading,
    leftovers,
    pgbench_test,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.redis, pytest.mark.timeout(900)]

WORKER_PIDFILES = REPO / ".state"
"""Where the stack's master workers (`master-worker-<i>.pid`, STROPPY_MASTER_WORKERS of them) have their pid files."""
SERVER_PIDFILE = REPO / ".state" / "prefect-server.pid"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
CRASHED_WITHIN_S = 120
"""The issue's bound from the kill to CRASHED: `SILENT_AFTER_S` without a heartbeat, and Prefect's evaluation."""


RUNNER_LOST_WITHIN_S = 30


def _wait_for_load(run_id: str) -> None:
    deadline = time.monotonic() + 300
    while not leftovers(run_id)["containers"] or not _runner_is_loading(run_id):
        assert time.monotonic() < deadline, "the run never reached its load"
        time.sleep(2)


async def _load_task_ended(flow_run_id: UUID) -> datetime | None:
    """When the run's load step ended, if it has."""
    async with get_client() as client:
        tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    ended = [t.end_time for t in tasks if t.name.startswith("run_load_on_runner") and t.end_time is not None]
    return ended[0] if ended else None


def test_a_runner_killed_mid_load_fails_its_run_at_once_naming_the_machine() -> None:
    flow_run: FlowRun = run_deployment(
        "stroppy-test-run/run", parameters={"test": pgbench_test("runner-lost", INSTANCE, duration=120)}, timeout=0
    )
    run_id = run_id_for(flow_run.id)
    _wait_for_load(run_id)
    engine = docker.from_env(timeout=60)
    try:
        engine.containers.get(f"stroppy-{run_id}-stroppy-runner").kill()
    finally:
        engine.close()
    killed_at = datetime.now(UTC)
    while (state := asyncio.run(_state(flow_run.id)))[0] not in ("FAILED", "CRASHED", "COMPLETED"):
        assert datetime.now(UTC) - killed_at < timedelta(seconds=180), f"still {state} after the runner died"
        time.sleep(2)
    kind, message = state
    assert kind == "FAILED" and "machine stroppy-runner is gone" in message, state
    ended = asyncio.run(_load_task_ended(flow_run.id))
    assert ended is not None and (ended - killed_at).total_seconds() <= RUNNER_LOST_WITHIN_S, (ended, killed_at)
    print(f"runner killed: its load step failed {(ended - killed_at).total_seconds():.1f} s later")
    assert leftovers(run_id) == NOTHING


async def _state(flow_run_id: UUID) -> tuple[str, str]:
    async with get_client() as client:
        state = (await client.read_flow_run(flow_run_id)).state
    return (state.type.value, state.message or "") if state else ("NONE", "")


def _kill_the_master(flow_run_id: UUID) -> None:
    """SIGKILL every master worker's process group (any of them may have taken the run) and the run's flow process
    (in a session of its own)."""
    pidfiles = sorted(WORKER_PIDFILES.glob("master-worker-*.pid"))
    assert pidfiles, "the stack runs no master worker"
    for pidfile in pidfiles:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pidfile.read_text()), signal.SIGKILL)
    pids = _flow_run_processes(str(flow_run_id))
    assert pids, "the run's flow process was not found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def test_a_dead_master_leaves_a_crashed_run_that_the_reaper_tears_down() -> None:
    assert SILENT_AFTER_S < CRASHED_WITHIN_S
    flow_run: FlowRun = run_deployment(
        "stroppy-test-run/run", parameters={"test": pgbench_test("orphaned", INSTANCE, duration=120)}, timeout=0
    )
    run_id = run_id_for(flow_run.id)
    try:
        _wait_for_load(run_id)
        _kill_the_master(flow_run.id)
        killed_at = time.monotonic()
        while (state := asyncio.run(_state(flow_run.id)))[0] != "CRASHED":
            assert time.monotonic() - killed_at < CRASHED_WITHIN_S + 60, f"still {state} after the master died"
            time.sleep(5)
        crashed_after_s = time.monotonic() - killed_at
        assert crashed_after_s <= CRASHED_WITHIN_S, f"CRASHED only {crashed_after_s:.0f} s after the kill"
        print(f"master killed: the run was CRASHED {crashed_after_s:.0f} s later")
        assert leftovers(run_id)["containers"], "nothing of the master tore it down: the reaper must"

        report = reap(grace_minutes=15)

        (reaped,) = [item for item in report.reaped if item.run_id == run_id]
        assert "ended CRASHED" in reaped.reason, reaped.reason
        assert leftovers(run_id) == NOTHING
    finally:
        subprocess.run(["bash", str(REPO / "scripts" / "control-plane.sh"), "start"], check=True, timeout=300)


def _restart_redis() -> None:
    """SIGKILL the stack's Redis (a crash: nothing flushed on the way out) and start it again on its data."""
    pid = int((REPO / ".state" / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, "Redis did not die"
        time.sleep(0.2)
    subprocess.run(["bash", str(REPO / "scripts" / "services.sh"), "start"], check=True, timeout=120)


def test_a_run_outlives_a_redis_crash_mid_load_with_its_leases_and_ledger() -> None:
    flow_run: FlowRun = run_deployment(
        "stroppy-test-run/run", parameters={"test": pgbench_test("redis-restarted", INSTANCE, duration=20)}, timeout=0
    )
    run_id = run_id_for(flow_run.id)
    _wait_for_load(run_id)
    held = {kind: found for kind, found in leftovers(run_id).items() if kind in ("subnets", "cpus", "ledgers")}
    assert all(held.values()), held
    _restart_redis()
    after = {kind: found for kind, found in leftovers(run_id).items() if kind in ("subnets", "cpus", "ledgers")}
    assert after == held, "the restarted Redis lost what the run holds"
    deadline = time.monotonic() + 300
    while (state := asyncio.run(_state(flow_run.id)))[0] not in FINAL:
        assert time.monotonic() < deadline, f"still {state}"
        time.sleep(2)
    assert state[0] == "COMPLETED", state
    assert leftovers(run_id) == NOTHING


def _restart_the_server() -> float:
    """Stop the Prefect server (SIGTERM to its process group, SIGKILL after 30 s) and start it again on its
    database; returns how long it was away."""
    pid = int(SERVER_PIDFILE.read_text())
    os.killpg(pid, signal.SIGTERM)
    stopped = time.monotonic()
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() - stopped > 30:
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.2)
    SERVER_PIDFILE.unlink()
    subprocess.run(["bash", str(REPO / "scripts" / "control-plane.sh"), "start"], check=True, timeout=300)
    return time.monotonic() - stopped


def test_a_run_outlives_a_prefect_server_restart_mid_load() -> None:
    flow_run: FlowRun = run_deployment(
        "stroppy-test-run/run", parameters={"test": pgbench_test("server-restarted", INSTANCE, duration=45)}, timeout=0
    )
    run_id = run_id_for(flow_run.id)
    _wait_for_load(run_id)
    away_s = _restart_the_server()
    print(f"Prefect server restarted mid-load: away {away_s:.0f} s")
    deadline = time.monotonic() + 400
    while (state := asyncio.run(_state(flow_run.id)))[0] not in FINAL:
        assert time.monotonic() < deadline, f"still {state}"
        time.sleep(2)
    assert state[0] == "COMPLETED", state
    assert leftovers(run_id) == NOTHING


@contextmanager
def _mounted(options: str, at: Path) -> Iterator[None]:
    """A small tmpfs with `options` on `at` (a run's results directory, made before its run makes it), unmounted
    afterwards, with what the run wrote into it."""
    at.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(at)], check=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(at)], check=True, timeout=30)
        shutil.rmtree(at, ignore_errors=True)


def _final_state(flow_run_id: UUID, timeout_s: float = 400) -> tuple[str, str]:
    deadline = time.monotonic() + timeout_s
    while (state := asyncio.run(_state(flow_run_id)))[0] not in FINAL:
        assert time.monotonic() < deadline, f"still {state}"
        time.sleep(2)
    return state


def test_a_read_only_results_directory_fails_the_run_before_it_creates_anything() -> None:
    flow_run: FlowRun = run_deployment(
        "stroppy-test-run/run", parameters={"test": pgbench_test("results-read-only", INSTANCE, duration=5)}, timeout=0
    )
    run_id = run_id_for(flow_run.id)
    run_dir = OrchestrationSettings().results_dir / run_id
    with _mounted("ro,size=1m", run_dir):
        kind, message = _final_state(flow_run.id)
    assert kind == "FAILED" and f"the results directory {run_dir} cannot be written (Read-only file system)" in message
    assert leftovers(run_id) == NOTHING


def test_a_results_directory_that_fills_up_mid_load_fails_the_run_which_still_tears_down() -> None:
    flow_run: FlowRun = run_deployment(
        "stroppy-test-run/run", parameters={"test": pgbench_test("results-full", INSTANCE, duration=20)}, timeout=0
    )
    run_id = run_id_for(flow_run.id)
    # Room for the run's own probe, not for its load's per-transaction logs.
    with _mounted(f"size={2 * PROBE_BYTES}", OrchestrationSettings().results_dir / run_id):
        kind, message = _final_state(flow_run.id)
        assert kind == "FAILED" and "No space left on device" in message, (kind, message)
        assert leftovers(run_id) == NOTHING


def test_two_suites_with_the_same_names_at_once_keep_to_their_own_runs() -> None:
    flow_runs = [
        run_deployment(
            "stroppy-test-suite/suite", timeout=0,
            parameters={"suite": {"name": "twins", "tests": [_twin(clients)]}},
        )
        for clients in (1, 2)
    ]  # fmt: skip
    results = [_suite_result(flow_run.id) for flow_run in flow_runs]
    runs = [result.outcomes[0] for result in results]
    assert all(outcome.state == "COMPLETED" and outcome.result for outcome in runs), runs
    assert runs[0].run_id != runs[1].run_id
    for clients, outcome in zip((1, 2), runs, strict=True):
        measured = next(step for step in outcome.result.load.steps if step.name == "pgbench-run")
        assert f"number of clients: {clients}" in measured.output_tail, (clients, measured.output_tail)
        assert outcome.result.report_error == "" and leftovers(outcome.run_id) == NOTHING
    assert results[0].report != results[1].report, "each suite keeps its own report"
    assert runs[0].result.fingerprint != runs[1].result.fingerprint


def _twin(clients: int) -> dict[str, Any]:
    test = pgbench_test("twin", INSTANCE, duration=3)
    return test | {"stroppy": test["stroppy"] | {"clients": clients}}


def _suite_result(flow_run_id: UUID, timeout_s: float = 600) -> SuiteResult:
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state is not None and flow_run.state.is_final():
                break
            assert time.monotonic() < deadline, f"suite {flow_run_id} still {flow_run.state}"
            time.sleep(2)
    result = flow_run.state.result(raise_on_failure=False)
    assert isinstance(result, SuiteResult), result
    return result
