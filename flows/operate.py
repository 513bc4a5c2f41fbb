"""Operating a local installation from the command line: `up`, `down`, `status`, and `run SUITE` with live progress.

`up`/`down` drive the scripts of the checkout (scripts/stack.sh); `status` asks each part directly, with a timeout;
`run` submits a suite to the `stroppy-test-suite/suite` deployment, prints each test's steps as they happen, and
ends with a results table and the suite's exit code (0 when every test passed).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
from pydantic import BaseModel

from flows.errors import OperateError
from flows.progress import current_step
from flows.setup import MASTER_POOL
from infra.connections import redis_client
from infra.prefect_sync import called_sync
from infra.settings import REPOSITORY, OrchestrationSettings
from stroppy_domain.reports import aligned

SUITE_DEPLOYMENT = "stroppy-test-suite/suite"
STACK_SCRIPT = REPOSITORY / "scripts" / "stack.sh"
CHECK_TIMEOUT_S = 5
STACK_TIMEOUT_S = 1800


class ComponentStatus(BaseModel):
    name: str
    up: bool
    detail: str


def stack(action: str) -> int:
    """`scripts/stack.sh start|stop` of the checkout, its output streamed through.

    Raises OperateError outside a checkout, or when the script does not finish within its bound."""
    if not STACK_SCRIPT.is_file():
        raise OperateError(f"{STACK_SCRIPT} not found: `up` and `down` work from a checkout of stroppy-flows")
    try:
        return subprocess.run(["bash", str(STACK_SCRIPT), action], timeout=STACK_TIMEOUT_S, check=False).returncode
    except subprocess.TimeoutExpired:
        raise OperateError(f"scripts/stack.sh {action} did not finish within {STACK_TIMEOUT_S} s") from None


def _probe(name: str, check: Callable[[], str]) -> ComponentStatus:
    try:
        return ComponentStatus(name=name, up=True, detail=check())
    except Exception as error:  # any failure of a probe is that component being down, reported with its reason
        return ComponentStatus(name=name, up=False, detail=f"{type(error).__name__}: {error}"[:200])


def _prefect_api() -> str:
    from prefect.settings import PREFECT_API_URL  # noqa: PLC0415

    url = PREFECT_API_URL.value()
    if not url:
        raise OperateError("PREFECT_API_URL is not set")
    httpx.get(f"{url}/health", timeout=CHECK_TIMEOUT_S).raise_for_status()
    return url


def _redis(settings: OrchestrationSettings) -> str:
    with redis_client(settings) as client:
        client.ping()
        return str(client.connection_pool.connection_kwargs.get("host", "redis"))


def _victoria_metrics(settings: OrchestrationSettings) -> str:
    httpx.get(f"{settings.metrics_url}/health", timeout=CHECK_TIMEOUT_S).raise_for_status()
    return settings.metrics_url


def _docker_engine() -> str:
    """The engine the Docker target uses (its `DockerHost` block, else the environment's)."""
    from infra.targets.docker import docker_client  # noqa: PLC0415 - the SDK loads only for this probe

    with docker_client() as client:
        return f"engine {client.version()['Version']}"


def _images() -> str:
    from infra.images import ImageSet, missing_images  # noqa: PLC0415
    from infra.targets.docker import docker_client  # noqa: PLC0415

    wanted = ImageSet.for_checkout()
    with docker_client() as client:
        missing = missing_images(client, wanted)
    if missing:
        raise OperateError(f"not built: {', '.join(missing)} (python -m infra.images build)")
    return f"{wanted.db_node}, {wanted.edge}"


def _master_worker() -> str:
    from prefect.client.orchestration import get_client  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(MASTER_POOL)
        workers = client.read_workers_for_work_pool(MASTER_POOL)
    online = [worker.name for worker in workers if str(worker.status).upper().endswith("ONLINE")]
    if not online:
        raise OperateError(f"no worker polls {MASTER_POOL} (pool status {pool.status})")
    return ", ".join(online)


def status(settings: OrchestrationSettings) -> list[ComponentStatus]:
    return [
        _probe("prefect server", _prefect_api),
        _probe("master worker", _master_worker),
        _probe("redis", lambda: _redis(settings)),
        _probe("victoria-metrics", lambda: _victoria_metrics(settings)),
        _probe("docker engine", _docker_engine),
        _probe("images", _images),
    ]


def render_status(components: list[ComponentStatus]) -> str:
    return "\n".join(aligned([(c.name, "up" if c.up else "DOWN", c.detail) for c in components]))


class _Progress:
    """Prints a line whenever a test reaches a new step or state."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.seen: dict[str, str] = {}

    def report(self, test: str, where: str) -> None:
        if self.seen.get(test) != where:
            self.seen[test] = where
            self.write(f"  {test}: {where}")


def _child_progress(client: Any, parent: UUID, progress: _Progress) -> None:
    """Each test run's state, or the step its progress artifact names while it runs."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId  # noqa: PLC0415

    children = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent]))
    )
    for child in children:
        test = (child.parameters.get("test") or {}).get("name", child.name)
        if child.state is not None and child.state.is_final():
            progress.report(test, f"{child.state.name}" + (f" ({child.state.message})" if child.state.message else ""))
            continue
        step = current_step(client, child.id)
        progress.report(test, f"step {step}" if step else (child.state.name if child.state else "submitted"))


def submit_suite(suite: dict[str, Any], timeout_s: float, poll_s: float, write: Callable[[str], None] = print) -> int:
    """Submit the suite, follow it, print its results; the exit code is 0 only when the suite completed.

    Raises OperateError when the suite's deployment does not exist, the Prefect API refuses or does not answer the
    submission, or the suite has not ended after `timeout_s` (it keeps running)."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.deployments import run_deployment  # noqa: PLC0415
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError  # noqa: PLC0415
    from prefect.utilities.urls import url_for  # noqa: PLC0415

    from flows.suite import SuiteResult  # noqa: PLC0415

    try:
        # Called from the sync CLI: Prefect creates the flow run synchronously.
        flow_run = called_sync(run_deployment(SUITE_DEPLOYMENT, parameters={"suite": suite}, timeout=0))
    except ObjectNotFound:
        raise OperateError(
            f"no deployment {SUITE_DEPLOYMENT}: deploy with `prefect deploy --all` (`up` does)"
        ) from None
    except (PrefectHTTPStatusError, httpx.HTTPError) as error:
        raise OperateError(f"the Prefect API refused or did not answer the suite: {error}") from None
    write(f"suite {suite.get('name')}: flow run {flow_run.name} ({url_for(flow_run) or flow_run.id})")
    progress = _Progress(write)
    deadline = time.monotonic() + timeout_s

    with get_client(sync_client=True) as client:
        while True:
            final = client.read_flow_run(flow_run.id)
            _child_progress(client, flow_run.id, progress)
            if final.state is not None and final.state.is_final():
                break
            if time.monotonic() > deadline:
                state = final.state.name if final.state else "unscheduled"
                raise OperateError(f"suite still {state} after {timeout_s:.0f} s; it keeps running")
            time.sleep(poll_s)
    result = final.state.result(raise_on_failure=False)
    write(
        f"suite {suite.get('name')}: {final.state.name}" + (f" ({final.state.message})" if final.state.message else "")
    )
    if isinstance(result, SuiteResult):
        write(render_results(result))
    return 0 if final.state.is_completed() else 1


def _key_number(outcome: Any) -> str:
    run = outcome.result
    if run is None:
        return "-"
    tps = run.metrics.get("tps", {}).get("value")
    if tps is not None:
        return f"tps {tps:.1f}"
    transactions = run.metrics.get("tx_count", {}).get("rate")  # stroppy v5: commits and rollbacks
    if transactions is not None:
        return f"tx/s {transactions:.1f}"
    iterations = run.metrics.get("iterations", {}).get("rate")
    return f"iterations/s {iterations:.1f}" if iterations is not None else "-"


def render_results(result: Any) -> str:
    """The suite's runs as a table, then its comparisons and where its HTML report is (or why there is none)."""
    rows: list[tuple[str, ...]] = [("TEST", "STATE", "VERDICT", "KEY NUMBER", "GRAFANA / REASON")]
    for outcome in result.outcomes:
        run = outcome.result
        link = (run.grafana_url if run else None) or (outcome.message or "")
        name = f"{outcome.test_name} {outcome.repetition_label}".rstrip()
        rows.append((name, outcome.state, str(run.verdict) if run else "-", _key_number(outcome), link))
    lines = aligned(rows)
    lines += [f"{v.candidate} against {v.baseline}: {v.summary}" for v in result.comparisons]
    lines.append(f"report: {result.report}" if result.report else result.report_error or "report: none")
    return "\n".join(lines)
