"""Every time limit of a run comes from one model, and the suite's wait for a run outlasts all of the run's own."""

from __future__ import annotations

import pytest

from infra.settings import OrchestrationSettings
from infra.targets import PACKAGES, target_module
from stroppy_domain.bounds import (
    MAX_POLL_S,
    MIN_POLL_S,
    SCHEDULING_MARGIN_S,
    StepLimit,
    TargetBounds,
    poll_interval_s,
    run_bounds,
    suite_wait_s,
)
from stroppy_domain.model import BenchmarkTest, Target

_DURATION = BenchmarkTest.model_fields["stroppy"].annotation.model_fields["duration"]  # type: ignore[union-attr]
MAX_DURATION_S: int = next(rule.le for rule in _DURATION.metadata if getattr(rule, "le", None) is not None)
DURATIONS = sorted({*range(1, 121), *(int(1.37**k) for k in range(1, 40)), MAX_DURATION_S - 1, MAX_DURATION_S})
DURATIONS = [d for d in DURATIONS if d <= MAX_DURATION_S]


def a_test(driver: str, duration: int) -> BenchmarkTest:
    stroppy = {"driver": driver, "workload": "tpcb/tx", "duration": duration}
    if driver == "stroppy":
        stroppy["version"] = "v5.7.3"
    hardware = {"cores": 1, "memory_gb": 1, "disk_gb": 10}
    return BenchmarkTest.model_validate(
        {"name": "t", "stroppy": stroppy, "database": {"instance": {"hardware": hardware}}}
    )


def the_targets_own_limits(test: BenchmarkTest, target: TargetBounds, settings: OrchestrationSettings) -> float:
    """What the run waits at most, counted step by step from what each step's task is given."""
    bounds = run_bounds(test, target, settings.install_timeout_s, settings.load_margin_s)
    waits = [
        bounds.create_machines.worst_case_s,
        bounds.wait_for_agents.worst_case_s,
        bounds.start_services.worst_case_s,
        bounds.run_load.worst_case_s,
        bounds.report.worst_case_s,
        bounds.teardown.worst_case_s,
    ]
    if test.stroppy.driver.value == "stroppy":
        waits.append(bounds.install.worst_case_s)
    assert bounds.agents_ready_s < bounds.wait_for_agents.timeout_s, "the agents' wait ends inside its step"
    assert bounds.load_dispatch_s < bounds.run_load.timeout_s, "the dispatcher gives up inside the load's step"
    assert bounds.install_dispatch_s < bounds.install.timeout_s or test.stroppy.driver.value != "stroppy"
    return sum(waits)


@pytest.mark.parametrize("target", list(PACKAGES), ids=str)
@pytest.mark.parametrize("driver", ["pgbench", "stroppy"])
def test_the_suite_waits_longer_than_the_run_can_take_for_every_duration(target: Target, driver: str) -> None:
    settings = OrchestrationSettings()
    target_bounds = target_module(target).bounds(settings)
    for duration in DURATIONS:
        test = a_test(driver, duration)
        bounds = run_bounds(test, target_bounds, settings.install_timeout_s, settings.load_margin_s)
        own = the_targets_own_limits(test, target_bounds, settings)
        assert bounds.total_s >= own, (target, driver, duration)
        assert suite_wait_s(bounds) >= bounds.total_s + SCHEDULING_MARGIN_S > own, (target, driver, duration)
        # the load's own step outlasts the load itself
        assert bounds.run_load.timeout_s > duration + settings.load_margin_s


def test_the_cloud_targets_creation_fits_inside_the_suites_wait() -> None:
    """The case the old fixed 1800 s suite wait got wrong: a cloud create step alone may take 2160 s."""
    settings = OrchestrationSettings()
    cloud = target_module(Target.YANDEX_CLOUD).bounds(settings)
    assert cloud.create_machines_s > 1800
    bounds = run_bounds(a_test("pgbench", 60), cloud, settings.install_timeout_s, settings.load_margin_s)
    assert suite_wait_s(bounds) > 2 * cloud.create_machines_s + cloud.agents_ready_s + cloud.start_services_s


@pytest.mark.parametrize(
    ("limit", "worst"),
    [
        (StepLimit(timeout_s=60), 60),
        (StepLimit(timeout_s=60, retries=1, retry_delays_s=[5]), 125),
        (StepLimit(timeout_s=60, retries=2, retry_delays_s=[1, 4]), 185),
        (StepLimit(timeout_s=10, retries=3, retry_delays_s=[2]), 46),
        (StepLimit(timeout_s=10, retries=2), 30),
    ],
)
def test_a_steps_worst_case_counts_every_attempt_and_delay(limit: StepLimit, worst: float) -> None:
    assert limit.worst_case_s == worst


@pytest.mark.parametrize(
    ("wait_s", "poll_s"),
    [(3, MIN_POLL_S), (200, 1.0), (1000, 5.0), (24 * 3600, MAX_POLL_S), (10 * 24 * 3600, MAX_POLL_S)],
)
def test_long_waits_poll_rarely_and_short_ones_often(wait_s: float, poll_s: float) -> None:
    assert poll_interval_s(wait_s) == poll_s


def test_a_day_long_test_is_polled_at_most_a_few_thousand_times() -> None:
    settings = OrchestrationSettings()
    bounds = run_bounds(
        a_test("pgbench", MAX_DURATION_S), target_module(Target.DOCKER).bounds(settings), 300, settings.load_margin_s
    )
    wait = suite_wait_s(bounds)
    assert wait / poll_interval_s(wait) < 5000


@pytest.mark.parametrize("slot_wait_s", [0, 60, 3600, 86400])
def test_the_suite_waits_out_the_runs_wait_for_a_slot_of_its_targets_limit(slot_wait_s: float) -> None:
    settings = OrchestrationSettings()
    target = target_module(Target.DOCKER).bounds(settings)
    test = a_test("pgbench", 60)
    without = run_bounds(test, target, settings.install_timeout_s, settings.load_margin_s)
    bounds = run_bounds(test, target, settings.install_timeout_s, settings.load_margin_s, slot_wait_s)
    assert bounds.target_slot_wait_s == slot_wait_s < bounds.target_slot.timeout_s
    assert suite_wait_s(bounds) - suite_wait_s(without) == bounds.target_slot.timeout_s - without.target_slot.timeout_s
    assert suite_wait_s(bounds) > slot_wait_s + the_targets_own_limits(test, target, settings)


@pytest.mark.parametrize("target", list(PACKAGES), ids=str)
@pytest.mark.parametrize("driver", ["pgbench", "stroppy"])
def test_a_held_load_outwaits_every_step_between_the_machines_and_the_load(target: Target, driver: str) -> None:
    settings = OrchestrationSettings()
    bounds = run_bounds(a_test(driver, 60), target_module(target).bounds(settings), settings.install_timeout_s, 30)
    between = [bounds.wait_for_agents, bounds.start_services, bounds.watch_exporters, bounds.install, bounds.reserve]
    assert bounds.load_hold_s >= sum(step.worst_case_s for step in between)
    assert bounds.load_hold_s >= bounds.start_services.timeout_s + bounds.wait_for_agents.timeout_s > 0
