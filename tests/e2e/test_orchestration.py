"""The whole stack: Prefect server, master worker, edge agents in machine containers, Redis and the Docker engine.

Start it with `bash scripts/control-plane.sh start` (scripts/test.sh does). Runs go through the deployments, as
users and CI start them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import docker
import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from flows.reporting import RunResult
from flows.run import run_id_for
from flows.suite import SuiteResult
from flows.teardown import metrics_store
from infra.connections import redis_connection
from infra.cpu_leases import KEY_PREFIX as CPU_KEY_PREFIX
from infra.edge_queues import EDGE_POOL
from infra.grafana import dashboards, panel_queries
from infra.history_store import LocalHistoryStore
from infra.ledger import open_ledgers
from infra.reservations import SubnetReservations
from infra.settings import OrchestrationSettings
from infra.targets.base import LABEL_RUN_ID
from stroppy_domain.history import HistoryRecord, fingerprint
from stroppy_domain.model import Isolation, Target
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.validation import validate_suite
from tests.conftest import api_headers
from tests.standin.grafana_standin import GrafanaStandIn

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.redis]

API_URL = os.environ["PREFECT_API_URL"]
HARDWARE = {"cores": 1, "memory_gb": 1, "disk_gb": 10}
INSTANCE = {"instance": {"hardware": HARDWARE}}
PATRONI_BEHIND_PGBOUNCER = {
    "cluster": {
        "topology": {"settings": {"patroni": {}}, "master_hardware": HARDWARE, "replica_hardware": HARDWARE,
                     "replicas": 1, "monitor": True},
        "addons": {"etcd": {"size": 1, "placement": {"colocate": {"scope": "master"}}},
                   "pgbouncer": {"placement": {"colocate": {"scope": "master"}}, "monitor": True}},
    }
}  # fmt: skip
PREFECT = Path(sys.executable).parent / "prefect"
RATE_INTERVAL = "30s"


def pgbench_test(name: str, database: dict, duration: int = 8) -> dict[str, Any]:
    """A short pgbench test; its machines want 3 cores, more than a 2-core CI host has, so they share its CPUs."""
    load = {"driver": "pgbench", "workload": "tpcb", "scale": 1, "duration": duration, "clients": 2}
    return {"name": name, "isolation": "shared", "stroppy": load, "database": database}


def leftovers(run_id: str) -> dict[str, list[str]]:
    """Everything that still carries the run's id: containers, networks, volumes, its subnet, its CPUs, its
    ledger, its queues."""
    engine = docker.from_env(timeout=60)
    selector = {"label": f"{LABEL_RUN_ID}={run_id}"}
    client = redis_connection(OrchestrationSettings()).get_client()
    space = PlannerSettings().address_space(Target.DOCKER)
    try:
        return {
            "containers": [c.name for c in engine.containers.list(all=True, filters=selector)],
            "networks": [n.name for n in engine.networks.list(filters=selector)],
            "volumes": [v.name for v in engine.volumes.list(filters=selector)],
            "subnets": [
                r.subnet for r in SubnetReservations(client, Target.DOCKER, space).list() if r.run_id == run_id
            ],
            "cpus": [
                key.decode()
                for key in client.scan_iter(f"{CPU_KEY_PREFIX}:*")
                if client.hexists(key, run_id)  # expired or not: teardown must have released it
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


NOTHING = {"containers": [], "networks": [], "volumes": [], "subnets": [], "cpus": [], "ledgers": [], "queues": []}


def run_suite(
    tests: list[dict],
    inject: dict[str, str] | None = None,
    timeout_s: int = 1500,
    env: dict[str, str] | None = None,
    **suite_fields: Any,
) -> tuple[FlowRun, SuiteResult]:
    """Run a suite through its deployment; `env` goes to the suite's flow run (the master's settings for it)."""
    suite = {"name": "e2e", "tests": tests} | suite_fields
    # The testing aid is an environment job variable of the suite's run, never a parameter of the deployment's form.
    env = (env or {}) | ({"STROPPY_INJECT_FAILURE_AT": json.dumps(inject)} if inject else {})
    job_variables = {"env": env} if env else None
    flow_run: FlowRun = run_deployment(
        "stroppy-test-suite/suite",
        parameters={"suite": suite},
        timeout=timeout_s,
        poll_interval=2,
        job_variables=job_variables,
    )
    assert flow_run.state is not None and flow_run.state.is_final(), flow_run.state
    result = flow_run.state.result(raise_on_failure=False)
    assert isinstance(result, SuiteResult), result
    return flow_run, result


def run_suite_from_ci(tests: list[dict], name: str) -> tuple[int, str, FlowRun, SuiteResult]:
    """The way CI starts a suite: `prefect deployment run ... --watch`; returns its exit code and the suite's result."""
    parameters = json.dumps({"suite": {"name": name, "tests": tests}})
    command = [str(PREFECT), "deployment", "run", "stroppy-test-suite/suite", "--params", parameters, "--watch",
               "--watch-interval", "2", "--watch-timeout", "1500"]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=1600, check=False)
    output = finished.stdout + finished.stderr
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert match, output
    flow_run = asyncio.run(_read_flow_run(match.group(1)))
    result = flow_run.state.result(raise_on_failure=False)
    assert isinstance(result, SuiteResult), (result, output)
    return finished.returncode, output, flow_run, result


async def _read_flow_run(flow_run_id: str) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(flow_run_id)


def latest_artifact(key: str) -> dict[str, Any]:
    response = httpx.get(f"{API_URL}/artifacts/{key}/latest", headers=api_headers(), timeout=10)
    response.raise_for_status()
    return response.json()


def assert_reported(run: RunResult, grafana: GrafanaStandIn) -> None:
    """The run's report: Grafana links and annotations, archived raw files, its markdown artifact."""
    assert run.grafana_url and run.grafana_url.startswith(grafana.url + "/d/stroppy-run-overview/"), run.grafana_url
    assert f"var-run_id={run.run_id}" in run.grafana_url
    assert sorted(run.dashboards) == sorted(board["title"] for board in dashboards())
    phases = {tag for a in grafana.state.annotations if run.run_id in a["tags"] for tag in a["tags"]}
    assert {"phase:start_services", "phase:run_load", "phase:results"} <= phases
    archive = Path(run.archive)
    for name in ("plan.json", "result.json", "pgbench-run.log"):
        assert (archive / name).is_file(), name
    assert any(path.name.startswith("pgbench_log") for path in (archive / "load").iterdir())
    plan = (archive / "plan.json").read_text()
    assert '"content": "**********"' in plan, "secret files must be masked in the archived plan"
    report = latest_artifact(f"run-{run.test_name}")
    assert report["type"] == "markdown" and report["data"].startswith(f"# {run.test_name}: {run.verdict}")
    assert run.grafana_url in report["data"]
    assert not metrics_store(OrchestrationSettings()).targets_file(run.run_id).exists()


def assert_dashboards_show(run: RunResult) -> None:
    """Every panel query of every dashboard, with the run's id (the trend: its fingerprint), returns series from the
    real VictoriaMetrics."""
    store = metrics_store(OrchestrationSettings())
    start, end = run.started_at - timedelta(seconds=30), datetime.now(UTC)
    empty = []
    for board in dashboards():
        for title, expression in panel_queries(board):
            query = expression.replace("$run_id", run.run_id).replace("$__rate_interval", RATE_INTERVAL)
            query = query.replace("$fingerprint", run.fingerprint).replace("$metric", ".*")
            if not store.query_range(query.replace("$__interval", "5s"), start, end, 5):
                empty.append(f"{board['title']} / {title}: {query}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_a_suite_of_two_tests_completes_from_ci_with_numbers_dashboards_and_reports(grafana: GrafanaStandIn) -> None:
    tests = [pgbench_test("single", INSTANCE), pgbench_test("patroni", PATRONI_BEHIND_PGBOUNCER)]
    returncode, output, flow_run, result = run_suite_from_ci(tests, "e2e-ci-passing")
    assert returncode == 0, output
    assert "finished successfully in 'Completed'" in output
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
        assert_reported(run, grafana)
        assert run.isolation is not None and run.isolation.isolation == "shared", run.isolation
        assert run.isolation.unenforced == ["disk_gb"] and set(run.isolation.memory_gb.values()) == {1, 4}
        recorded = HistoryRecord.model_validate_json(Path(run.history or "").read_text())
        assert (recorded.run_id, recorded.fingerprint, recorded.verdict) == (run.run_id, run.fingerprint, "PASSED")
        assert recorded.per_second["stroppy_load_throughput"].samples >= 5, recorded.per_second
        assert leftovers(run.run_id) == NOTHING
    assert by_name["patroni"].result.connection.endswith(":6432/stroppy?sslmode=disable")
    assert_dashboards_show(by_name["patroni"].result)
    table = latest_artifact("suite-e2e-ci-passing")
    rows = json.loads(table["data"])
    assert sorted((row["test"], row["state"], row["verdict"]) for row in rows) == [
        ("patroni", "COMPLETED", "PASSED"), ("single", "COMPLETED", "PASSED")
    ]  # fmt: skip
    assert all(row["grafana"].startswith(grafana.url) for row in rows)


def test_a_failing_threshold_makes_the_ci_command_fail_and_keeps_the_result(grafana: GrafanaStandIn) -> None:
    slow = pgbench_test("slow", INSTANCE, duration=3) | {"thresholds": {"tps": ["value>1000000"]}}
    returncode, output, flow_run, result = run_suite_from_ci([slow], "e2e-ci-failing")
    assert returncode != 0, output
    assert "finished in state 'Failed'" in output
    assert flow_run.state.is_failed()
    (outcome,) = result.outcomes
    assert outcome.state == "FAILED" and outcome.message.startswith("FAILED: thresholds not met: tps value>1000000")
    (threshold,) = outcome.result.checks
    assert not threshold.passed and 0 < threshold.observed < 1000000
    assert outcome.result.metrics["transactions"]["count"] > 0
    assert_reported(outcome.result, grafana)
    assert "| tps | `value>1000000` |" in latest_artifact("run-slow")["data"]
    (row,) = json.loads(latest_artifact("suite-e2e-ci-failing")["data"])
    assert (row["test"], row["state"], row["verdict"]) == ("slow", "FAILED", "FAILED")
    assert leftovers(outcome.run_id) == NOTHING


def test_a_run_far_below_its_history_fails_as_a_regression_with_the_change_and_its_baseline() -> None:
    slow = pgbench_test("history", INSTANCE, duration=3) | {"regression": {"metric": "tps", "max_drop": "5%"}}
    test = validate_suite({"name": "e2e", "tests": [slow]}).tests[0]
    print_ = fingerprint(test, Target.DOCKER, Isolation.SHARED)
    root = OrchestrationSettings().history_dir
    shutil.rmtree(root / "runs" / print_, ignore_errors=True)  # earlier runs of this test on this checkout
    store = LocalHistoryStore(root)
    seeded = datetime.now(UTC) - timedelta(days=10)
    for night, tps in enumerate([100000, 101000, 99000, 100500, 99500, 100200, 99800]):
        store.append(
            HistoryRecord(
                run_id=f"run-seed-{print_[:8]}-{night}", test="history", fingerprint=print_, target=Target.DOCKER,
                started_at=seeded + timedelta(days=night), verdict="PASSED", metrics={"tps": {"value": tps}},
            )
        )  # fmt: skip
    flow_run, result = run_suite([slow])
    (outcome,) = result.outcomes
    assert flow_run.state.is_failed() and outcome.state == "FAILED" and outcome.result is not None, outcome
    run = outcome.result
    assert run.fingerprint == print_ and run.regression is not None, run
    assert run.regression.verdict == "regression" and run.regression.change_started_at_run == run.run_id
    assert run.regression.baseline.runs == 7 and run.regression.baseline.median == 100000
    assert run.verdict == "FAILED" and "tps value regression: -9" in run.reason, run.reason
    assert "## Against its history" in latest_artifact("run-history")["data"]
    (row,) = json.loads(latest_artifact("suite-e2e")["data"])
    assert row["history"].startswith("regression -9"), row
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "stroppy-flows"), "history", "history", "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    (own,) = [item for item in json.loads(listed.stdout)["fingerprints"] if item["fingerprint"] == print_]
    assert own["runs"][-1]["run_id"] == run.run_id and own["runs"][-1]["change"].startswith("regression -9"), own
    recorded = HistoryRecord.model_validate_json(Path(run.history or "").read_text())
    assert recorded.verdict == "FAILED" and store.latest(print_, 1) == [recorded]
    assert leftovers(outcome.run_id) == NOTHING


STEPS = [
    "validate", "capacity", "reserve", "plan", "create_machines", "start_services", "wait_for_agents", "install",
    "run_load", "results", "report",
]  # fmt: skip


def test_a_failure_at_any_step_fails_that_test_only_and_leaves_nothing() -> None:
    tests = [pgbench_test(f"fail-{step.replace('_', '-')}", INSTANCE, duration=3) for step in STEPS]
    tests.append(pgbench_test("healthy", INSTANCE, duration=3))
    inject = {f"fail-{step.replace('_', '-')}": step for step in STEPS}
    flow_run, result = run_suite(tests, inject)
    assert flow_run.state.is_failed()
    assert flow_run.state.message.startswith(f"{len(STEPS)} of {len(tests)} test(s) failed")
    by_name = {outcome.test_name: outcome for outcome in result.outcomes}
    assert by_name["healthy"].state == "COMPLETED"
    assert by_name["healthy"].result.verdict == "PASSED"
    reported_late = by_name["fail-report"].result
    assert reported_late.verdict == "PASSED" and "failure injected at step report" in reported_late.report_error
    for step in STEPS:
        outcome = by_name[f"fail-{step.replace('_', '-')}"]
        assert outcome.state == "FAILED", (step, outcome)
        assert f"failure injected at step {step}" in outcome.message
    for outcome in result.outcomes:
        assert leftovers(outcome.run_id) == NOTHING, outcome.test_name


def _flow_run_processes(flow_run_id: str) -> list[int]:
    """The run's flow process, by the process id its worker recorded on the flow run, while it lives."""
    with get_client(sync_client=True) as client:
        pid = client.read_flow_run(UUID(flow_run_id)).infrastructure_pid
    return [int(pid)] if pid and Path(f"/proc/{pid}").is_dir() else []


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
        return runner.status == "running" and runner.exec_run(["pgrep", "-f", "pgbench --client"]).exit_code == 0
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as error:
        if error.status_code == 409:  # created and not started yet, or stopped between the listing and the exec
            return False
        raise
    finally:
        engine.close()
