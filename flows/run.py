"""`stroppy-test-run`: one test, from validation to teardown. Orchestration only; the rules live in stroppy_domain.

Steps: validate, capacity (a slot of the target's run limit; the host's CPUs where machines share one host), reserve
network, plan, create machines, wait for edge agents, start services (and register their exporters with the metrics
store), install stroppy, run the load, results (the verdict), report (load series, Grafana, raw files, the markdown
artifact), teardown. Every resource is written to the ledger before it is created; teardown runs in `finally`, and
from the `on_crashed`/`on_cancellation` hooks when the flow's process dies. Every step's limit comes from
`stroppy_domain.bounds`; what differs by target comes from `infra.targets`.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Failed, State

from flows.capacity import held_to, hold_capacity, open_load_window, runs_beside
from flows.edge import InstalledTool, LoadOutcome, LoadRequest
from flows.heartbeat import RunHeartbeat
from flows.keep import finish_run, teardown
from flows.progress import RunTimeline, bounded
from flows.reporting import RunResult, base_manifest, judge, report_run
from flows.run_steps import RunStep, injected_step, run_steps
from flows.runner_flows import (
    hold_load_on_runner,
    install_stroppy_on_runner,
    load_request,
    run_load_on_runner,
    runner_binary,
    runner_output_dir,
)
from flows.teardown import (
    LEDGER_FLOW_RUN,
    LEDGER_QUEUES,
    LEDGER_SCRAPE,
    LEDGER_SUBNET,
    LEDGER_TARGET,
    metrics_store,
    tear_down,
)
from infra.connections import redis_client
from infra.edge_queues import create_queues, wait_until_ready
from infra.images import planner_settings
from infra.ledger import RunLedger
from infra.prefect_sync import called_sync, refuse_missing_secrets
from infra.reservations import SubnetReservations
from infra.result_storage import prepare_run_directory
from infra.retries import retry_transient
from infra.settings import OrchestrationSettings
from infra.targets import check_address_space, open_target, target_module
from infra.targets.base import RunSpec, SharedHost, machine_queue_name
from stroppy_domain.bounds import RunBounds, run_bounds
from stroppy_domain.capacity import CpuGrant
from stroppy_domain.checks import Verdict
from stroppy_domain.history import fingerprint
from stroppy_domain.load import load_steps, secret_references
from stroppy_domain.model import DEFAULT_TARGET, BenchmarkTest, Driver, Isolation, Target
from stroppy_domain.placement import lay_out, plan_run, with_runner_password
from stroppy_domain.services import generate_password
from stroppy_domain.timeseries import scrape_targets
from stroppy_domain.validation import validate_suite


def run_id_for(flow_run_id: Any) -> str:
    """A run's id, derived from its flow run, so hooks and the suite can find it without the flow's state."""
    return "run-" + str(flow_run_id).replace("-", "")[:12]


def _teardown_hook(flow: object, flow_run: Any, state: object) -> None:
    """On crash or cancellation: Prefect calls this by keyword, in a new process when the run's own was killed."""
    del flow, state
    tear_down(run_id_for(flow_run.id))


@task(cache_policy=NO_CACHE, retry_condition_fn=retry_transient)
def validate_and_open_ledger(
    test: BenchmarkTest, target: Target, run_id: str, flow_run_id: str, settings: OrchestrationSettings
) -> SharedHost | None:
    """Validate the test as a suite of one on `target`, against the size of the target's host when its machines
    share one; then open the run's ledger with its flow run in it. Returns that host (None: each machine is its own).

    Raises InvalidSuiteError when the test cannot be run (or not on that host, or names a Secret block that is not
    saved), ResultStorageError when the run's results directory cannot be written, TargetError when the target's
    engine does not answer or its address space overlaps a network the target has, and LedgerError when the ledger
    cannot be written."""
    host = target_module(target).shared_host(settings)
    planner = planner_settings(settings)
    check_address_space(target, planner.address_space(target).base_cidr, settings)
    if host is not None:
        planner = planner.model_copy(update={"host_capacity": {target: host.capacity}})
    suite = {"name": "run", "target": str(target), "tests": [test.model_dump(mode="json", by_alias=True)]}
    validate_suite(suite, settings=planner)
    refuse_missing_secrets(secret_references(test))
    prepare_run_directory(settings.results_dir / run_id)
    with redis_client(settings) as client:
        ledger = RunLedger(client, run_id)
        ledger.open(settings.ledger_ttl_s)
        ledger.record(LEDGER_FLOW_RUN, flow_run_id)
    return host


@task(cache_policy=NO_CACHE, retry_condition_fn=retry_transient)
def reserve_subnet(run_id: str, target: Target, machines: int, settings: OrchestrationSettings) -> str:
    """Ledger first, then a lease on a subnet for `machines` machines in the target's address space.

    Raises LedgerError when the ledger cannot be written, SubnetsExhausted when every subnet is leased,
    ReservationStoreUnavailable when Redis does not answer, and ReservationError when the lease is refused."""
    space = planner_settings(settings).address_space(target)
    with redis_client(settings) as client:
        RunLedger(client, run_id).record(
            LEDGER_SUBNET, {"target": str(target), "base_cidr": space.base_cidr, "prefix": space.prefix}
        )
        reservation = SubnetReservations(client, target, space).reserve(run_id, machines, settings.reservation_ttl_s)
    return reservation.subnet


@task(cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_transient)
def plan_topology(
    test: BenchmarkTest,
    target: Target,
    subnet: str,
    run_id: str,
    grant: CpuGrant | None,
    settings: OrchestrationSettings,
) -> RunSpec:
    """The run's spec on `subnet`, its machines on the CPUs of `grant`, an existing database's password given to
    the runner.

    Raises PlanningError naming a field that cannot be planned, and SubnetError when `subnet` is too small."""
    plan = plan_run(test, target, subnet, planner_settings(settings), generate_password)
    existing = test.database.existing
    if existing is not None and existing.password_block is not None:
        # Called from a sync task: Prefect loads the block synchronously.
        plan = with_runner_password(plan, called_sync(Secret.load(existing.password_block)).get())
    expires_at = datetime.now(UTC) + timedelta(seconds=settings.ledger_ttl_s)
    cpusets = {machine.name: grant.cpuset(machine.name) or "" for machine in plan.machines} if grant else {}
    return RunSpec(run_id=run_id, plan=plan, expires_at=expires_at, cpusets=cpusets)


@task(cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_transient)
def create_machines(run: RunSpec, target: Target, settings: OrchestrationSettings) -> list[str]:
    """Ledger first, then one queue per machine that runs an agent, then the machines (whose agents poll those
    queues).

    Raises LedgerError when the ledger cannot be written, and TargetError when the target cannot be opened or does
    not create the machines."""
    agents = run.plan.agent_machines(target_module(target).SERVICES_NEED_AGENTS)
    queues = [machine_queue_name(run.run_id, machine.name) for machine in agents]
    with open_target(target, settings) as backend:
        with redis_client(settings) as client:
            ledger = RunLedger(client, run.run_id)
            ledger.record(LEDGER_TARGET, {"name": str(target), "state": backend.state_location(run.run_id)})
            ledger.record(LEDGER_QUEUES, queues)
        create_queues(queues)
        backend.create_machines(run)
    return queues


@task(cache_policy=NO_CACHE)
def wait_for_agents(queues: list[str], timeout_s: float) -> None:
    """Wait for every machine's agent. Raises EdgeAgentsNotReady naming the queues not polled in `timeout_s`."""
    wait_until_ready(queues, timeout_s)


@task(cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_transient)
def start_services(run: RunSpec, target: Target, settings: OrchestrationSettings) -> None:
    """Start the planned services. Raises TargetError when they do not become healthy or the target refuses."""
    with open_target(target, settings) as backend:
        backend.start_services(run)


@task(cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_transient)
def watch_exporters(run: RunSpec, settings: OrchestrationSettings) -> int:
    """Ledger first, then the scrape registration, so teardown always finds what to unregister.

    Raises LedgerError when the ledger cannot be written."""
    targets = scrape_targets(run.run_id, run.plan)
    with redis_client(settings) as client:
        RunLedger(client, run.run_id).record(LEDGER_SCRAPE, {"targets": len(targets)})
    metrics_store(settings).register_targets(run.run_id, targets)
    return len(targets)


@flow(name="stroppy-test-run", persist_result=True, on_crashed=[_teardown_hook], on_cancellation=[_teardown_hook])
def run_test(test: BenchmarkTest, target: Target = DEFAULT_TARGET) -> RunResult | State:
    """Provision the test's topology, run its load on the runner machine, and always tear everything down.

    A verdict other than PASSED ends the run FAILED, with the full result kept as its data.

    Raises the error of a step that failed (TargetError, EdgeFlowFailed and the like) once teardown has run; a
    failed report does not raise (the run ends FAILED, saying why). Raises InjectedFailure at the step that
    `inject_failure_at` names for this test, or before any step when it names no step of a run.
    """
    settings = OrchestrationSettings()
    run_id = run_id_for(current_flow_run.id)
    started_at = datetime.now(UTC)
    timeline = RunTimeline([str(step) for step in run_steps(target)], get_run_logger(), injected_step(test, settings))
    step = timeline.step
    bounds = run_bounds(
        test, target_module(target).bounds(settings), settings.install_timeout_s, settings.load_margin_s,
        settings.target_slot_wait_s,
    )  # fmt: skip
    heartbeat = RunHeartbeat(run_id, settings, get_run_logger()).start()
    slot = ExitStack()
    planned: RunSpec | None = None
    passed = False
    try:
        with step(RunStep.VALIDATE):
            host = bounded(validate_and_open_ledger, bounds.validate_step)(
                test, target, run_id, str(current_flow_run.id), settings
            )
        with step(RunStep.CAPACITY):
            grant = hold_capacity(slot, run_id, test, target, host, bounds, settings)
        with step(RunStep.RESERVE):
            machines = len(lay_out(test).machines)
            subnet = bounded(reserve_subnet, bounds.reserve)(run_id, target, machines, settings)
        with step(RunStep.PLAN):
            run: RunSpec = bounded(plan_topology, bounds.plan)(test, target, subnet, run_id, grant, settings)
            planned = run
            steps = load_steps(
                test, run.plan.connection, settings.load_margin_s, runner_binary(run, test),
                runner_output_dir(run, settings),
            )  # fmt: skip
            load = load_request(run, steps, settings, bounds.load_hold_s)
        held = _bring_up(run, target, settings, bounds, step, load)
        with step(RunStep.INSTALL):
            installed = _install(run, test, bounds, settings)
        with step(RunStep.RUN_LOAD):
            bounded(open_load_window, bounds.reserve)(run_id, host, settings)
            outcome: LoadOutcome = bounded(run_load_on_runner, bounds.run_load)(
                run, load, bounds.load_dispatch_s, settings, held
            )
            beside = bounded(runs_beside, bounds.reserve)(run_id, settings)
        with step(RunStep.RESULTS):
            result = judge(
                test, run, outcome, settings.results_dir / run_id / "load", beside, settings.noise_limits,
                base_manifest(test, settings, installed),
            )  # fmt: skip
        result = result.model_copy(
            update={
                "started_at": started_at, "phases": list(timeline.phases), "step_seconds": dict(timeline.timings),
                "images": sorted({*result.images, *target_module(target).machine_images(settings)}),
                "isolation": held_to(run, grant, host),
                "fingerprint": fingerprint(test, target, test.isolation or Isolation.EXCLUSIVE),
            }
        )  # fmt: skip
        try:
            with step(RunStep.REPORT):
                result = bounded(report_run, bounds.report)(result, run, settings, test.regression)
        except Exception as error:  # the verdict stands; the run still fails, saying why its report is missing
            result = result.model_copy(update={"report_error": str(error)})
            timeline.progress.finish(f"{result.verdict}, report failed")
            return Failed(message=f"{result.verdict}, but its report failed: {error}", data=result)
        timeline.progress.finish(str(result.verdict))
        if result.verdict is not Verdict.PASSED:
            return Failed(message=f"{result.verdict}: {result.reason}", data=result)
        passed = True
        return result
    finally:
        heartbeat.stop()
        _end(run_id, planned, None if passed else test.keep_on_failure, slot, timeline, bounds, settings)


def _end(
    run_id: str,
    planned: RunSpec | None,
    keep_s: float | None,
    slot: ExitStack,
    timeline: RunTimeline,
    bounds: RunBounds,
    settings: OrchestrationSettings,
) -> None:
    """Tear the run down (or keep it), give the target's slot back once its machines are gone (or kept), and wait
    for its progress to reach the API."""
    try:
        with slot:
            finish_run(run_id, planned, keep_s, bounded(teardown, bounds.teardown), settings, get_run_logger())
    finally:
        timeline.progress.close()


def _install(
    run: RunSpec, test: BenchmarkTest, bounds: RunBounds, settings: OrchestrationSettings
) -> InstalledTool | None:
    """The stroppy release on the runner, where the test's driver is stroppy."""
    if test.stroppy.driver is not Driver.STROPPY:
        return None
    return bounded(install_stroppy_on_runner, bounds.install)(run, test, bounds.install_dispatch_s, settings)


def _bring_up(
    run: RunSpec,
    target: Target,
    settings: OrchestrationSettings,
    bounds: RunBounds,
    step: Any,
    load: LoadRequest,
) -> UUID:
    """Machines (and, once they exist, the load's flow, held on the runner: returns its flow run's id), then their
    agents and their services in the target's order (`run_steps`): each step bounded as the target needs."""
    with step(RunStep.CREATE_MACHINES):
        queues = bounded(create_machines, bounds.create_machines)(run, target, settings)
        held = hold_load_on_runner(run, load)

    def agents() -> None:
        bounded(wait_for_agents, bounds.wait_for_agents)(queues, bounds.agents_ready_s)

    def services() -> None:
        bounded(start_services, bounds.start_services)(run, target, settings)
        bounded(watch_exporters, bounds.watch_exporters)(run, settings)

    steps = {RunStep.WAIT_FOR_AGENTS: agents, RunStep.START_SERVICES: services}
    for each in run_steps(target):
        if each in steps:
            with step(each):
                steps[each]()
    return held
