"""Prefect retries a run's task only when its error is retryable: a refused credential or a missing image fails at
once, a timeout or an engine that did not answer is tried again (in-process flows on the real Prefect server)."""

from __future__ import annotations

import pytest
from prefect import Task, flow, task
from prefect.cache_policies import NO_CACHE

import flows.reporting
import flows.run
import flows.runner_flows
from infra.retries import retry_transient
from infra.targets.base import TargetError
from stroppy_domain.bounds import StepLimit

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ATTEMPTS: list[str] = []


@task(cache_policy=NO_CACHE, retry_condition_fn=retry_transient)
def fails_with(message: str, retryable: bool) -> None:
    ATTEMPTS.append(message)
    raise TargetError(message, retryable=retryable)


@flow(name="retry-condition-check", persist_result=False)
def attempt(message: str, retryable: bool) -> None:
    flows.run.bounded(fails_with, StepLimit(timeout_s=30, retries=2, retry_delays_s=[0]))(message, retryable)


@pytest.mark.parametrize(("retryable", "tries"), [(False, 1), (True, 3)])
def test_a_task_is_retried_only_for_a_retryable_error(retryable: bool, tries: int) -> None:
    ATTEMPTS.clear()
    state = attempt(f"retryable={retryable}", retryable, return_state=True)
    assert state.is_failed()
    assert [f"retryable={retryable}"] * tries == ATTEMPTS


def test_every_retried_step_of_a_run_retries_only_retryable_errors() -> None:
    tasks = [
        value
        for module in (flows.run, flows.runner_flows, flows.reporting)
        for value in vars(module).values()
        if isinstance(value, Task) and value.__module__ == module.__name__
    ]
    assert {t.name for t in tasks} >= {"create_machines", "start_services", "reserve_subnet", "report_run"}
    measured = [t for t in tasks if t.name == "run_load_on_runner"]
    assert [t.retries for t in measured] == [0], "the measurement is never retried"
    assert [t.name for t in tasks if t not in measured and t.retry_condition_fn is not retry_transient] == [
        "wait_for_agents"  # never retried: its wait is already the whole bound
    ]
