"""The steps of a test run, in the order a target takes them, and the step a test asks to fail at (a testing aid)."""

from __future__ import annotations

from enum import StrEnum

from flows.progress import InjectedFailure
from infra.settings import OrchestrationSettings
from infra.targets import target_module
from stroppy_domain.model import BenchmarkTest, Target


class RunStep(StrEnum):
    VALIDATE = "validate"
    CAPACITY = "capacity"
    RESERVE = "reserve"
    PLAN = "plan"
    CREATE_MACHINES = "create_machines"
    WAIT_FOR_AGENTS = "wait_for_agents"
    START_SERVICES = "start_services"
    INSTALL = "install"
    RUN_LOAD = "run_load"
    RESULTS = "results"
    REPORT = "report"


def run_steps(target: Target) -> list[RunStep]:
    """The steps in the order a run on `target` takes them: where the target starts services itself, the agents
    (needed only from the load on) boot while the services start and are waited for after them."""
    steps = list(RunStep)
    if not target_module(target).SERVICES_NEED_AGENTS:
        agents = steps.pop(steps.index(RunStep.WAIT_FOR_AGENTS))
        steps.insert(steps.index(RunStep.START_SERVICES) + 1, agents)
    return steps


def injected_step(test: BenchmarkTest, settings: OrchestrationSettings) -> RunStep | None:
    """The step `inject_failure_at` names for `test`, if any. Raises InjectedFailure when it names no step of a run."""
    step = settings.inject_failure_at.get(test.name)
    if step is None:
        return None
    try:
        return RunStep(step)
    except ValueError:
        steps = ", ".join(RunStep)
        raise InjectedFailure(
            f"STROPPY_INJECT_FAILURE_AT names step {step!r} for {test.name}; steps: {steps}"
        ) from None
