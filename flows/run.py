"""`stroppy-test-run`: one test, from validation to teardown. Orchestration only; the rules live in stroppy_domain.

Steps (DESIGN.md): validate, ledger, reserve network, plan, create machines, wait for edge agents, start services,
run the load, results, teardown. Every resource is written to the ledger before it is created; teardown runs in
`finally`, and from the `on_crashed`/`on_cancellation` hooks when the flow's process dies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.runtime import flow_run as current_flow_run
from pydantic import BaseModel, Field

from blocks.redis import RedisConnection
from flows.edge import InstallRequest, LoadOutcome, LoadRequest
from flows.settings import OrchestrationSettings
from flows.teardown import LEDGER_QUEUES, LEDGER_SUBNET, LEDGER_TARGET, TeardownReport, target_settings, tear_down
from infra.edge_queues import create_queues, wait_until_ready
from infra.images import default_planner_settings
from infra.ledger import RunLedger
from infra.reservations import SubnetReservations
from infra.stroppy_release import ReleaseLock, release_url
from infra.targets import open_target
from infra.targets.base import RunSpec, machine_queue_name
from stroppy_domain.load import LoadStep, load_steps
from stroppy_domain.model import BenchmarkTest, Driver, Target
from stroppy_domain.placement import lay_out, plan_run, with_runner_password
from stroppy_domain.plan import RunPlan
from stroppy_domain.services import generate_password
from stroppy_domain.validation import validate_suite

RUN_LOAD_DEPLOYMENT = "run-load/edge"
INSTALL_DEPLOYMENT = "install-stroppy/edge"
DISPATCH_POLL_S = 1.0


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
    step_seconds: dict[str, float]


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
    client = RedisConnection(url=settings.redis_url).client()
    try:
        RunLedger(client, run_id).record(
            LEDGER_SUBNET, {"target": str(target), "base_cidr": space.base_cidr, "prefix": space.prefix}
        )
        reservation = SubnetReservations(client, target, space).reserve(run_id, machines, settings.reservation_ttl_s)
    finally:
        client.close()
    return reservation.subnet


@task(retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE, persist_result=False, timeout_seconds=600)
def create_machines(run: RunSpec, target: Target, settings: OrchestrationSettings) -> None:
    backend = open_target(target, target_settings(target, settings))
    try:
        backend.create_machines(run)
    finally:
        backend.close()


@task(retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE, persist_result=False, timeout_seconds=900)
def start_services(run: RunSpec, target: Target, settings: OrchestrationSettings) -> None:
    backend = open_target(target, target_settings(target, settings))
    try:
        backend.start_services(run)
    finally:
        backend.close()


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
) -> RunResult:
    """Provision the test's topology, run its load on the runner machine, and always tear everything down.

    `inject_failure_at` is a testing aid: the run fails on purpose at that step, to exercise teardown.
    """
    log = get_run_logger()
    settings = OrchestrationSettings()
    run_id = run_id_for(current_flow_run.id)
    timings: dict[str, float] = {}

    @contextmanager
    def step(name: RunStep):  # noqa: ANN202 - a generator-based context manager
        started = time.monotonic()
        log.info("step %s", name)
        if inject_failure_at == name:
            raise InjectedFailure(f"failure injected at step {name}")
        yield
        timings[str(name)] = round(time.monotonic() - started, 2)

    redis_client = RedisConnection(url=settings.redis_url).client()
    ledger = RunLedger(redis_client, run_id)
    try:
        with step(RunStep.VALIDATE):
            validate_suite({"name": "run", "tests": [test.model_dump(mode="json", by_alias=True)]})
            ledger.open(settings.ledger_ttl_s)
        with step(RunStep.RESERVE):
            subnet = reserve_subnet(run_id, target, len(lay_out(test).machines), settings)
        with step(RunStep.PLAN):
            plan: RunPlan = plan_run(test, target, subnet, default_planner_settings(), generate_password)
            existing = test.database.existing
            if existing is not None and existing.password_block is not None:
                plan = with_runner_password(plan, Secret.load(existing.password_block).get())
            run = RunSpec(
                run_id=run_id, plan=plan, expires_at=datetime.now(UTC) + timedelta(seconds=settings.ledger_ttl_s)
            )
        with step(RunStep.CREATE_MACHINES):
            ledger.record(LEDGER_TARGET, {"name": str(target)})
            queues = [machine_queue_name(run_id, machine.name) for machine in plan.machines]
            ledger.record(LEDGER_QUEUES, queues)
            asyncio.run(create_queues(queues))
            create_machines(run, target, settings)
        with step(RunStep.WAIT_FOR_AGENTS):
            asyncio.run(wait_until_ready(queues, settings.agents_ready_timeout_s))
        with step(RunStep.START_SERVICES):
            start_services(run, target, settings)
        with step(RunStep.INSTALL):
            binary = _dispatch_install(run_id, test, plan, settings) if test.stroppy.driver is Driver.STROPPY else ""
        with step(RunStep.RUN_LOAD):
            output_dir = settings.results_dir / run_id / "load"
            steps = load_steps(test, plan.connection, settings.load_margin_s, binary)
            outcome = _dispatch_load(run_id, steps, plan, output_dir, settings)
        with step(RunStep.RESULTS):
            result = RunResult(
                run_id=run_id, test_name=test.name, target=target, subnet=subnet,
                machines={machine.name: machine.ip for machine in plan.machines},
                connection=plan.connection.dsn(), load=outcome, output_dir=str(output_dir), step_seconds=timings,
            )  # fmt: skip
        return result
    finally:
        started = time.monotonic()
        report: TeardownReport = tear_down(run_id, settings)
        log.info("teardown in %.1f s: %s", time.monotonic() - started, report.model_dump())
        redis_client.close()


def _dispatch(deployment: str, parameters: dict[str, Any], queue: str, bound_s: float) -> Any:
    """Run an edge flow on one machine's queue and return its result; it is never retried from here."""
    child = run_deployment(
        deployment, parameters=parameters, work_queue_name=queue, timeout=bound_s, poll_interval=DISPATCH_POLL_S
    )
    if child.state is None or not child.state.is_final():
        raise TimeoutError(f"{deployment} on {queue} did not finish within {bound_s:.0f} s (state {child.state})")
    if not child.state.is_completed():
        raise RuntimeError(f"{deployment} on {queue} ended {child.state.name}: {child.state.message}")
    return child.state.result()


def _dispatch_install(run_id: str, test: BenchmarkTest, plan: RunPlan, settings: OrchestrationSettings) -> str:
    version = test.stroppy.version or ""
    release = ReleaseLock.read(settings.release_lock).pinned(version, settings.release_lock)
    gateway = str(ipaddress.IPv4Network(plan.subnet).network_address + 1)
    request = InstallRequest(
        release=release,
        url=release_url(settings.release_url, version, gateway),
        directory=f"/opt/stroppy-runs/{run_id}",
        timeout_s=settings.install_timeout_s,
    )
    queue = machine_queue_name(run_id, plan.runner.name)
    return _dispatch(
        INSTALL_DEPLOYMENT, {"request": request.model_dump(mode="json")}, queue, settings.install_timeout_s * 4
    )


def _dispatch_load(
    run_id: str, steps: list[LoadStep], plan: RunPlan, output_dir: Path, settings: OrchestrationSettings
) -> LoadOutcome:
    request = LoadRequest(run_id=run_id, steps=steps, output_dir=str(output_dir))
    queue = machine_queue_name(run_id, plan.runner.name)
    bound = sum(step.timeout_s for step in steps) + settings.load_margin_s
    return _dispatch(RUN_LOAD_DEPLOYMENT, {"request": request.model_dump(mode="json")}, queue, bound)
