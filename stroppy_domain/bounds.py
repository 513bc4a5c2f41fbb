"""Every time limit of a run, in one place: each step's limit comes from the settings, the test and the target, and
the suite's wait for a run is derived from the sum of them, so it always outlasts the run's own limits.

A run's tasks take their timeouts and retries from `RunBounds`; the suite waits `suite_wait_s`, which exceeds the
worst case of every step, retries and their delays included, plus the time Prefect takes to start the run.
"""

from __future__ import annotations

import math

from pydantic import Field

from stroppy_domain.load import load_timeouts_s
from stroppy_domain.model import BenchmarkTest, Driver, Model

QUICK_STEP_S = 60
"""Steps that talk only to the master's own services (Redis, the Prefect API, the metrics store)."""
AGENTS_GRACE_S = 30
"""Beyond the wait for edge agents, for the task that waits to report why it stopped."""
REPORT_STEP_S = 300
TEARDOWN_STEP_S = 600
INSTALL_ATTEMPTS = 4
"""A stroppy download is retried inside the install flow; its bound covers every attempt."""
SCHEDULING_MARGIN_S = 300
"""What Prefect may take to start a run's flow process and to report its final state to the suite."""
MIN_POLL_S = 1.0
MAX_POLL_S = 30.0
POLLS_PER_WAIT = 200
"""A wait polls about this many times, whatever its length: once a second for short runs, every 30 s for a day."""


class TargetBounds(Model):
    """How long the steps that wait on a target may take: machine containers start in seconds, cloud machines are
    applied by Terraform, boot and install the agent first."""

    create_machines_s: float = Field(gt=0)
    agents_ready_s: float = Field(gt=0)
    start_services_s: float = Field(gt=0)
    capacity_wait_s: float = Field(
        default=0, ge=0, description="How long a run may wait for the host's CPUs; 0 where machines are own hosts."
    )


class StepLimit(Model):
    """One step's time limit and retries; its worst case is every attempt running to its limit."""

    timeout_s: float = Field(gt=0)
    retries: int = Field(default=0, ge=0)
    retry_delays_s: list[float] = Field(default_factory=list)

    @property
    def worst_case_s(self) -> float:
        # As Prefect applies them: the n-th retry waits the n-th delay, or the last one when the list is shorter.
        last = len(self.retry_delays_s) - 1
        delays = [self.retry_delays_s[min(i, last)] for i in range(self.retries)] if self.retry_delays_s else []
        return self.timeout_s * (self.retries + 1) + sum(delays)


def _quick(retries: int = 0, delays: list[float] | None = None) -> StepLimit:
    return StepLimit(timeout_s=QUICK_STEP_S, retries=retries, retry_delays_s=delays or [])


class RunBounds(Model):
    """The limit of every step of one test's run."""

    validate_step: StepLimit = Field(default_factory=lambda: _quick(1, [2]))
    target_slot: StepLimit = Field(
        default_factory=_quick, description="The wait for a slot of the target's run limit, and asking for it."
    )
    target_slot_wait_s: float = Field(default=0, ge=0, description="How long the wait for a slot itself lasts.")
    capacity: StepLimit = Field(default_factory=lambda: _quick(2, [1, 4]))
    capacity_wait_s: float = Field(default=0, ge=0, description="How long the wait for CPUs itself lasts.")
    reserve: StepLimit = Field(default_factory=lambda: _quick(2, [1, 4]))
    plan: StepLimit = Field(default_factory=_quick)
    create_machines: StepLimit
    wait_for_agents: StepLimit
    agents_ready_s: float = Field(gt=0, description="How long the agents' wait itself lasts, inside its step.")
    start_services: StepLimit
    watch_exporters: StepLimit = Field(default_factory=lambda: _quick(2, [1, 4]))
    install: StepLimit
    install_dispatch_s: float = Field(gt=0, description="How long the dispatcher waits for the install's flow run.")
    load_dispatch_s: float = Field(gt=0, description="How long the dispatcher waits for the load's flow run.")
    run_load: StepLimit
    report: StepLimit = Field(
        default_factory=lambda: StepLimit(timeout_s=REPORT_STEP_S, retries=2, retry_delays_s=[2, 5])
    )
    teardown: StepLimit = Field(
        default_factory=lambda: StepLimit(timeout_s=TEARDOWN_STEP_S, retries=2, retry_delays_s=[2, 10])
    )

    def steps(self) -> dict[str, StepLimit]:
        return {name: value for name, value in self if isinstance(value, StepLimit)}

    @property
    def total_s(self) -> float:
        """The longest a run can take with every step at its limit on every attempt."""
        return sum(step.worst_case_s for step in self.steps().values())

    @property
    def load_hold_s(self) -> int:
        """How long the load's flow, dispatched as soon as the machines exist, may wait on the runner for the go: the
        steps between, each at its limit on every attempt (the load window is opened with the reservation's)."""
        between = (self.wait_for_agents, self.start_services, self.watch_exporters, self.install, self.reserve)
        return math.ceil(sum(step.worst_case_s for step in between))


def run_bounds(
    test: BenchmarkTest, target: TargetBounds, install_timeout_s: float, load_margin_s: int, slot_wait_s: float = 0
) -> RunBounds:
    """Each step's limit for `test` on a target with `target`'s bounds, where a run waits at most `slot_wait_s` for a
    slot of its target's run limit."""
    load_s = sum(load_timeouts_s(test, load_margin_s)) + load_margin_s
    install_dispatch_s = install_timeout_s * INSTALL_ATTEMPTS
    return RunBounds(
        target_slot=StepLimit(timeout_s=slot_wait_s + QUICK_STEP_S),
        target_slot_wait_s=slot_wait_s,
        capacity=StepLimit(timeout_s=target.capacity_wait_s + QUICK_STEP_S, retries=1, retry_delays_s=[5]),
        capacity_wait_s=target.capacity_wait_s,
        create_machines=StepLimit(timeout_s=target.create_machines_s, retries=1, retry_delays_s=[5]),
        wait_for_agents=StepLimit(timeout_s=target.agents_ready_s + AGENTS_GRACE_S),
        agents_ready_s=target.agents_ready_s,
        start_services=StepLimit(timeout_s=target.start_services_s, retries=1, retry_delays_s=[5]),
        install=StepLimit(
            timeout_s=install_dispatch_s + QUICK_STEP_S if test.stroppy.driver is Driver.STROPPY else QUICK_STEP_S,
            retries=1,
            retry_delays_s=[5],
        ),
        install_dispatch_s=install_dispatch_s,
        load_dispatch_s=load_s,
        run_load=StepLimit(timeout_s=load_s + load_margin_s),
    )


def suite_wait_s(bounds: RunBounds) -> float:
    """How long the suite waits for one run: past the run's worst case, so the run's own limits fire first."""
    return bounds.total_s + SCHEDULING_MARGIN_S


def poll_interval_s(wait_s: float) -> float:
    """How often a wait of `wait_s` checks on what it waits for."""
    return min(MAX_POLL_S, max(MIN_POLL_S, wait_s / POLLS_PER_WAIT))
