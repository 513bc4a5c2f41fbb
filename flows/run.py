"""`stroppy-test-run`: one test, from validation to teardown. Orchestration only; the rules live in stroppy_domain.

Steps (DESIGN.md): validate, ledger, reserve network, plan, create machines, wait for edge agents, start services
(and register their exporters with the metrics store), run the load, results (the verdict), report (load series,
Grafana, raw files, the markdown artifact), teardown. Every resource is written to the ledger before it is created;
teardown runs in `finally`, and from the `on_crashed`/`on_cancellation` hooks when the flow's process dies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Failed, State
from pydantic import BaseModel, Field

from blocks.grafana import GrafanaConnection
from flows.connections import redis_connection, results_bucket, saved_block
from flows.edge import LOAD_FILES_PREFIX, InstallRequest, LoadOutcome, LoadRequest
from flows.settings import OrchestrationSettings
from flows.targets import machine_images, runner_directory, target_bounds, target_settings
from flows.teardown import (
    LEDGER_FLOW_RUN,
    LEDGER_QUEUES,
    LEDGER_SCRAPE,
    LEDGER_SUBNET,
    LEDGER_TARGET,
    TeardownReport,
    metrics_store,
    tear_down,
)
from infra.edge_queues import create_queues, dispatch, edge_tags, wait_until_ready
from infra.grafana import RUN_OVERVIEW, Grafana
from infra.images import default_planner_settings
from infra.ledger import RunLedger
from infra.reservations import SubnetReservations
from infra.result_storage import LocalResultStorage, ResultStorage, ResultStorageError, S3ResultStorage
from infra.stroppy_release import ReleaseLock, release_url
from infra.targets import open_target
from infra.targets.base import RunSpec, machine_queue_name
from stroppy_domain.checks import ThresholdCheck, Verdict, evaluate
from stroppy_domain.load import SUMMARY_FILE, LoadStep, load_steps
from stroppy_domain.model import BenchmarkTest, Driver, Target
from stroppy_domain.placement import lay_out, plan_run, with_runner_password
from stroppy_domain.plan import RunPlan
from stroppy_domain.reports import Phase, RunFacts, run_markdown, run_versions, slug
from stroppy_domain.results import LoadMetrics, SummaryError, measure
from stroppy_domain.services import generate_password
from stroppy_domain.timeseries import (
    K6_METRICS_FILE,
    PGBENCH_LOG_PREFIX,
    Series,
    k6_csv_series,
    pgbench_log_series,
    scrape_targets,
)
from stroppy_domain.validation import validate_suite

RUN_LOAD_DEPLOYMENT = "run-load/edge"
INSTALL_DEPLOYMENT = "install-stroppy/edge"


class RunStep(StrEnum):
    VALIDATE = "validate"
    RESERVE = "reserve"
    PLAN = "plan"
    CREATE_MACHINES = "create_machines"
    WAIT_FOR_AGENTS = "wait_for_agents"
    START_SERVICES = "start_services"
    INSTALL = "install"
    RUN_LOAD = "run_load"
    RESULTS = "results"
    REPORT = "report"


class InjectedFailure(RuntimeError):  # noqa: N818 - reads as the condition it reports
    """A failure asked for with `inject_failure_at`, to exercise teardown from a given step."""


class RunResult(BaseModel):
    run_id: str
    test_name: str
    target: Target
    subnet: str
    machines: dict[str, str] = Field(description="Machine name -> IP.")
    connection: str = Field(description="Where the load connected (no password).")
    load: LoadOutcome
    output_dir: str
    started_at: datetime
    phases: list[Phase] = Field(description="Each step's wall-clock window, up to the results.")
    step_seconds: dict[str, float]
    verdict: Verdict
    reason: str = Field(default="", description="Why the verdict is not PASSED.")
    checks: list[ThresholdCheck] = Field(default_factory=list)
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict, description="Metric -> aggregate -> value.")
    versions: dict[str, str] = Field(default_factory=dict, description="Load tool and database software.")
    images: list[str] = Field(default_factory=list, description="Container images of the run's services.")
    grafana_url: str | None = Field(default=None, description="The run overview dashboard; absent without Grafana.")
    dashboards: dict[str, str] = Field(default_factory=dict, description="Every dashboard of the run, by title.")
    archive: str | None = Field(default=None, description="Where the run's raw files are kept.")
    report_error: str = Field(default="", description="Why the report could not be completed, if it could not.")


def run_id_for(flow_run_id: Any) -> str:
    """A run's id, derived from its flow run, so hooks and the suite can find it without the flow's state."""
    return "run-" + str(flow_run_id).replace("-", "")[:12]


def _teardown_hook(flow: object, flow_run: Any, state: object) -> None:
    """On crash or cancellation: Prefect calls this by keyword, in a new process when the run's own was killed."""
    del flow, state
    tear_down(run_id_for(flow_run.id))


@task(retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE, timeout_seconds=60)
def reserve_subnet(run_id: str, target: Target, machines: int, settings: OrchestrationSettings) -> str:
    space = default_planner_settings().address_space(target)
    client = redis_connection(settings).client()
    try:
        RunLedger(client, run_id).record(
            LEDGER_SUBNET, {"target": str(target), "base_cidr": space.base_cidr, "prefix": space.prefix}
        )
        reservation = SubnetReservations(client, target, space).reserve(run_id, machines, settings.reservation_ttl_s)
    finally:
        client.close()
    return reservation.subnet


@task(retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE, timeout_seconds=60)
def validate_and_open_ledger(
    test: BenchmarkTest, run_id: str, flow_run_id: str, settings: OrchestrationSettings
) -> None:
    validate_suite({"name": "run", "tests": [test.model_dump(mode="json", by_alias=True)]})
    client = redis_connection(settings).client()
    try:
        ledger = RunLedger(client, run_id)
        ledger.open(settings.ledger_ttl_s)
        ledger.record(LEDGER_FLOW_RUN, flow_run_id)
    finally:
        client.close()


@task(retries=0, cache_policy=NO_CACHE, persist_result=False, timeout_seconds=60)
def plan_topology(test: BenchmarkTest, target: Target, subnet: str, run_id: str, ttl_s: int) -> RunSpec:
    plan = plan_run(test, target, subnet, default_planner_settings(), generate_password)
    existing = test.database.existing
    if existing is not None and existing.password_block is not None:
        plan = with_runner_password(plan, Secret.load(existing.password_block).get())
    return RunSpec(run_id=run_id, plan=plan, expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s))


@task(retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE, persist_result=False)
def create_machines(run: RunSpec, target: Target, settings: OrchestrationSettings) -> list[str]:
    """Ledger first, then one queue per machine, then the machines (whose agents poll those queues)."""
    queues = [machine_queue_name(run.run_id, machine.name) for machine in run.plan.machines]
    backend = open_target(target, target_settings(target, settings))
    try:
        client = redis_connection(settings).client()
        try:
            ledger = RunLedger(client, run.run_id)
            ledger.record(LEDGER_TARGET, {"name": str(target), "state": backend.state_location(run.run_id)})
            ledger.record(LEDGER_QUEUES, queues)
        finally:
            client.close()
        asyncio.run(create_queues(queues))
        backend.create_machines(run)
    finally:
        backend.close()
    return queues


@task(retries=0, cache_policy=NO_CACHE)
def wait_for_agents(queues: list[str], timeout_s: float) -> float:
    return asyncio.run(wait_until_ready(queues, timeout_s))


def _bring_up(
    run: RunSpec,
    target: Target,
    settings: OrchestrationSettings,
    step: Callable[[RunStep], AbstractContextManager[None]],
) -> None:
    """Machines, their agents, their services: each step bounded as the target needs."""
    with step(RunStep.CREATE_MACHINES):
        bounds = target_bounds(target, settings)
        queues = create_machines.with_options(timeout_seconds=bounds.create_machines_s)(run, target, settings)
    with step(RunStep.WAIT_FOR_AGENTS):
        wait_for_agents.with_options(timeout_seconds=bounds.agents_ready_s + 30)(queues, bounds.agents_ready_s)
    with step(RunStep.START_SERVICES):
        start_services.with_options(timeout_seconds=bounds.start_services_s)(run, target, settings)
        watch_exporters(run, settings)


@task(retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE, persist_result=False)
def start_services(run: RunSpec, target: Target, settings: OrchestrationSettings) -> None:
    backend = open_target(target, target_settings(target, settings))
    try:
        backend.start_services(run)
    finally:
        backend.close()


@task(retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE, persist_result=False, timeout_seconds=60)
def watch_exporters(run: RunSpec, settings: OrchestrationSettings) -> int:
    """Ledger first, then the scrape registration, so teardown always finds what to unregister."""
    targets = scrape_targets(run.run_id, run.plan)
    client = redis_connection(settings).client()
    try:
        RunLedger(client, run.run_id).record(LEDGER_SCRAPE, {"targets": len(targets)})
    finally:
        client.close()
    metrics_store(settings).register_targets(run.run_id, targets)
    return len(targets)


@task(retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def install_stroppy_on_runner(run: RunSpec, test: BenchmarkTest, settings: OrchestrationSettings) -> str:
    """Idempotent (a fresh download into the run's own directory), so one retry is safe."""
    return _dispatch_install(run.run_id, test, run.plan, settings)


@task(retries=0, cache_policy=NO_CACHE)
def run_load_on_runner(run: RunSpec, steps: list[LoadStep], output_dir: Path, settings: OrchestrationSettings) -> Any:
    """The measurement: never retried."""
    return _dispatch_load(run.run_id, steps, run.plan, output_dir, settings)


@task(retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE, timeout_seconds=300)
def report_run(result: RunResult, run: RunSpec, settings: OrchestrationSettings) -> RunResult:
    """Load series into the metrics store, Grafana, raw files, the markdown artifact. Every part is idempotent."""
    output_dir = Path(result.output_dir)
    metrics_store(settings).import_series(result.run_id, _load_series(output_dir))
    ended_at = datetime.now(UTC)
    connection = saved_block(GrafanaConnection, settings.grafana_block)
    if connection is not None:
        grafana = Grafana(
            connection.url, connection.token.get_secret_value(), connection.folder, connection.datasource_url,
            connection.timeout_s,
        )  # fmt: skip
        grafana.provision()
        grafana.annotate(result.run_id, result.test_name, result.phases)
        dashboards = grafana.links(result.run_id, result.started_at, ended_at)
        result = result.model_copy(update={"dashboards": dashboards, "grafana_url": dashboards[RUN_OVERVIEW]})
    run_dir = settings.results_dir / result.run_id
    _write_run_files(run_dir, run.plan, result)
    result = result.model_copy(update={"archive": _result_storage(settings).store(result.run_id, run_dir)})
    facts = RunFacts(
        **result.model_dump(include=set(RunFacts.model_fields) - {"ended_at", "target"}),
        target=str(result.target), ended_at=ended_at,
    )  # fmt: skip
    create_markdown_artifact(
        key=f"run-{slug(result.test_name)}",
        markdown=run_markdown(facts),
        description=f"{result.run_id}: {result.verdict}",
    )
    return result


@task(retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE, timeout_seconds=600)
def teardown(run_id: str, settings: OrchestrationSettings) -> TeardownReport:
    return tear_down(run_id, settings)


@flow(
    name="stroppy-test-run",
    persist_result=True,
    on_crashed=[_teardown_hook],
    on_cancellation=[_teardown_hook],
)
def test_run(
    test: BenchmarkTest,
    target: Target = Target.DOCKER,
    inject_failure_at: RunStep | None = None,
) -> RunResult | State:
    """Provision the test's topology, run its load on the runner machine, and always tear everything down.

    A verdict other than PASSED ends the run FAILED, with the full result kept as its data.

    `inject_failure_at` is a testing aid: the run fails on purpose at that step, to exercise teardown.
    """
    log = get_run_logger()
    settings = OrchestrationSettings()
    run_id = run_id_for(current_flow_run.id)
    started_at = datetime.now(UTC)
    timings: dict[str, float] = {}
    phases: list[Phase] = []

    @contextmanager
    def step(name: RunStep):  # noqa: ANN202 - a generator-based context manager
        started, phase_start = time.monotonic(), datetime.now(UTC)
        log.info("step %s", name)
        if inject_failure_at == name:
            raise InjectedFailure(f"failure injected at step {name}")
        yield
        timings[str(name)] = round(time.monotonic() - started, 2)
        phases.append(Phase(name=str(name), started_at=phase_start, ended_at=datetime.now(UTC)))

    try:
        with step(RunStep.VALIDATE):
            validate_and_open_ledger(test, run_id, str(current_flow_run.id), settings)
        with step(RunStep.RESERVE):
            subnet = reserve_subnet(run_id, target, len(lay_out(test).machines), settings)
        with step(RunStep.PLAN):
            run: RunSpec = plan_topology(test, target, subnet, run_id, settings.ledger_ttl_s)
        _bring_up(run, target, settings, step)
        with step(RunStep.INSTALL):
            binary = _install_stroppy(run, test, settings)
        with step(RunStep.RUN_LOAD):
            output_dir = settings.results_dir / run_id / "load"
            steps = load_steps(test, run.plan.connection, settings.load_margin_s, binary)
            bound = sum(load_step.timeout_s for load_step in steps) + 2 * settings.load_margin_s
            outcome = run_load_on_runner.with_options(timeout_seconds=bound)(run, steps, output_dir, settings)
        with step(RunStep.RESULTS):
            result = _judge(test, run, outcome, output_dir)
        result = result.model_copy(
            update={
                "started_at": started_at, "phases": list(phases), "step_seconds": dict(timings),
                "images": sorted({*result.images, *machine_images(target, settings)}),
            }
        )  # fmt: skip
        try:
            with step(RunStep.REPORT):
                result = report_run(result, run, settings)
        except Exception as error:  # the verdict stands; the run still fails, saying why its report is missing
            result = result.model_copy(update={"report_error": str(error)})
            return Failed(message=f"{result.verdict}, but its report failed: {error}", data=result)
        if result.verdict is not Verdict.PASSED:
            return Failed(message=f"{result.verdict}: {result.reason}", data=result)
        return result
    finally:
        started = time.monotonic()
        report: TeardownReport = teardown(run_id, settings)
        log.info("teardown in %.1f s: %s", time.monotonic() - started, report.model_dump())


def _install_stroppy(run: RunSpec, test: BenchmarkTest, settings: OrchestrationSettings) -> str:
    """The stroppy binary's path on the runner, or "" for a driver that needs no install."""
    if test.stroppy.driver is not Driver.STROPPY:
        return ""
    install = install_stroppy_on_runner.with_options(timeout_seconds=settings.install_timeout_s * 4 + 60)
    return install(run, test, settings)


def _judge(test: BenchmarkTest, run: RunSpec, outcome: LoadOutcome, output_dir: Path) -> RunResult:
    """Parse what the load measured and check the test's thresholds; unreadable output is an ERROR verdict."""
    summary = output_dir / SUMMARY_FILE
    report = "\n".join(outcome.steps[-1].output_tail) if outcome.steps else ""
    checks: list[ThresholdCheck] = []
    try:
        metrics = measure(str(test.stroppy.driver), summary.read_text() if summary.is_file() else None, report)
    except SummaryError as error:
        verdict, reason, metrics = Verdict.ERROR, f"the load's results cannot be read: {error}", LoadMetrics()
    else:
        verdict, checks = evaluate(test.thresholds, metrics)
        failed = [f"{c.metric} {c.expression} (observed {c.observed})" for c in checks if not c.passed]
        reason = ("thresholds not met: " + "; ".join(failed)) if failed else ""
    plan = run.plan
    return RunResult(
        run_id=run.run_id, test_name=test.name, target=plan.target, subnet=plan.subnet,
        machines={machine.name: machine.ip for machine in plan.machines}, connection=plan.connection.dsn(),
        load=outcome, output_dir=str(output_dir), started_at=datetime.now(UTC), phases=[], step_seconds={},
        verdict=verdict, reason=reason, checks=checks,
        metrics={name: metric.values for name, metric in metrics.metrics.items()},
        versions=run_versions(test), images=sorted({c.image for m in plan.machines for c in m.containers}),
    )  # fmt: skip


def _load_series(output_dir: Path) -> list[Series]:
    """The load's per-second series from whichever files its driver wrote (pgbench logs or k6 CSV output)."""
    series: list[Series] = []
    for path in sorted(output_dir.glob(f"{PGBENCH_LOG_PREFIX}.*")):
        with path.open() as lines:
            series += pgbench_log_series(lines)
    k6_file = output_dir / K6_METRICS_FILE
    if k6_file.is_file():
        with k6_file.open(newline="") as lines:
            series += k6_csv_series(lines)
    return series


def _write_run_files(run_dir: Path, plan: RunPlan, result: RunResult) -> None:
    """Beside the load's files: the plan (passwords masked), every rendered config, each step's output, the result."""
    (run_dir / "configs").mkdir(parents=True, exist_ok=True)
    (run_dir / "plan.json").write_text(plan.model_dump_json(indent=1))
    for machine in plan.machines:
        for container in machine.containers:
            for file in container.files:
                target = run_dir / "configs" / machine.name / str(container.kind) / file.path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(file.content)
    for load_step in result.load.steps:
        (run_dir / f"{load_step.name}.log").write_text("\n".join(load_step.output_tail) + "\n")
    (run_dir / "result.json").write_text(result.model_dump_json(indent=1))


def _result_storage(settings: OrchestrationSettings) -> ResultStorage:
    bucket = results_bucket(settings)
    return S3ResultStorage(bucket) if bucket is not None else LocalResultStorage(settings.archive_dir)


def _dispatch_install(run_id: str, test: BenchmarkTest, plan: RunPlan, settings: OrchestrationSettings) -> str:
    version = test.stroppy.version or ""
    release = ReleaseLock.read(settings.release_lock).pinned(version, settings.release_lock)
    gateway = str(ipaddress.IPv4Network(plan.subnet).network_address + 1)
    request = InstallRequest(
        release=release,
        url=release_url(settings.release_url, version, gateway),
        directory=str(runner_directory(plan.target, run_id) / "stroppy"),
        timeout_s=settings.install_timeout_s,
    )
    queue = machine_queue_name(run_id, plan.runner.name)
    return dispatch(
        INSTALL_DEPLOYMENT, {"request": request.model_dump(mode="json")}, queue, settings.install_timeout_s * 4,
        tags=edge_tags(run_id),
    )  # fmt: skip


def _dispatch_load(
    run_id: str, steps: list[LoadStep], plan: RunPlan, output_dir: Path, settings: OrchestrationSettings
) -> LoadOutcome:
    """On Docker the runner writes into the shared `output_dir`; a cloud runner uploads its files to the results
    bucket, and they are fetched into `output_dir` from there."""
    shared = plan.target is Target.DOCKER
    request = LoadRequest(
        run_id=run_id,
        steps=steps,
        output_dir=str(output_dir if shared else runner_directory(plan.target, run_id) / LOAD_FILES_PREFIX),
        upload_block=None if shared else settings.archive_s3_block,
    )
    queue = machine_queue_name(run_id, plan.runner.name)
    bound = sum(step.timeout_s for step in steps) + settings.load_margin_s
    outcome = dispatch(
        RUN_LOAD_DEPLOYMENT, {"request": request.model_dump(mode="json")}, queue, bound, tags=edge_tags(run_id)
    )
    if not shared:
        bucket = results_bucket(settings)
        if bucket is None:
            raise ResultStorageError(f"the S3Bucket block {settings.archive_s3_block!r} the load files went to is gone")
        S3ResultStorage(bucket).fetch(f"{run_id}/{LOAD_FILES_PREFIX}", output_dir)
    return outcome
