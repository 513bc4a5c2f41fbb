"""`stroppy-test-suite`: every test of a suite as its own `stroppy-test-run`, with bounded parallelism.

One test failing does not stop the others. The suite returns every result and ends FAILED when any test did not
complete, so `prefect deployment run ... --watch` exits non-zero while the full result stays readable.
"""

from __future__ import annotations

import asyncio

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import MissingResult
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from flows.run import RunResult, RunStep, run_id_for
from flows.settings import OrchestrationSettings
from flows.teardown import tear_down
from stroppy_domain.model import Suite
from stroppy_domain.reports import SuiteRow, slug

TEST_RUN_DEPLOYMENT = "stroppy-test-run/run"
PROVISIONING_BOUND_S = 1800


class TestOutcome(BaseModel):
    __test__ = False  # a result model, not a pytest class

    test_name: str
    run_id: str | None
    state: str
    message: str | None = None
    result: RunResult | None = None


class SuiteResult(BaseModel):
    suite: str
    outcomes: list[TestOutcome]

    @property
    def failed(self) -> list[TestOutcome]:
        return [outcome for outcome in self.outcomes if outcome.state != "COMPLETED"]


async def _failed_run_data(state: State | None) -> object:
    """What a failed run kept: its RunResult when a threshold or its results failed it, else its exception."""
    if state is None or not state.is_failed():
        return None
    try:
        return await state.result(raise_on_failure=False)
    except MissingResult as error:
        return error


def _row(outcome: TestOutcome) -> SuiteRow:
    run = outcome.result
    return SuiteRow(
        test=outcome.test_name, state=outcome.state, verdict=str(run.verdict) if run else "-",
        run_id=outcome.run_id or "-", message=outcome.message or "", grafana=(run.grafana_url or "") if run else "",
    )  # fmt: skip


@flow(name="stroppy-test-suite", persist_result=True)
async def test_suite(suite: Suite, inject_failure_at: dict[str, RunStep] | None = None) -> State:
    """Run the suite's tests; `inject_failure_at` (test name -> step) is a testing aid for the teardown paths."""
    log = get_run_logger()
    settings = OrchestrationSettings()
    limit = asyncio.Semaphore(settings.max_parallel_tests)
    failures = inject_failure_at or {}

    async def one(test_index: int) -> TestOutcome:
        test = suite.tests[test_index]
        bound = PROVISIONING_BOUND_S + test.stroppy.duration + settings.load_margin_s
        try:
            async with limit:
                child: FlowRun = await run_deployment(
                    TEST_RUN_DEPLOYMENT,
                    parameters={
                        "test": test.model_dump(mode="json", by_alias=True),
                        "target": str(suite.target_of(test)),
                        "inject_failure_at": failures.get(test.name),
                    },
                    timeout=bound,
                    poll_interval=1,
                )
        except Exception as error:  # the run could not even be created: report it as this test's failure
            return TestOutcome(test_name=test.name, run_id=None, state="FAILED", message=f"not started: {error}")
        run_id = run_id_for(child.id)
        state = child.state
        if state is None or not state.is_completed():
            # The run's own teardown may not have happened (its process killed, or still running at the bound).
            message = state.message if state else "no state"
            try:
                await asyncio.to_thread(tear_down, run_id, settings)
            except Exception as error:  # the other tests go on; this one reports it, and the reaper retries later
                message = f"{message}; teardown after it failed too: {error}"
            data = await _failed_run_data(state)
            return TestOutcome(
                test_name=test.name, run_id=run_id, state=state.type.value if state else "UNKNOWN",
                message=message, result=data if isinstance(data, RunResult) else None,
            )  # fmt: skip
        return TestOutcome(
            test_name=test.name, run_id=run_id, state="COMPLETED", result=await state.result(raise_on_failure=False)
        )

    outcomes = await asyncio.gather(*(one(index) for index in range(len(suite.tests))))
    result = SuiteResult(suite=suite.name, outcomes=list(outcomes))
    for outcome in result.outcomes:
        log.info("%s: %s %s", outcome.test_name, outcome.state, outcome.message or "")
    await acreate_table_artifact(
        key=f"suite-{slug(suite.name)}",
        table=[_row(outcome).model_dump() for outcome in result.outcomes],
        description=f"{suite.name}: {len(result.outcomes) - len(result.failed)} of {len(result.outcomes)} completed",
    )
    if result.failed:
        names = ", ".join(outcome.test_name for outcome in result.failed)
        return Failed(message=f"{len(result.failed)} of {len(result.outcomes)} test(s) failed: {names}", data=result)
    return Completed(message=f"all {len(result.outcomes)} test(s) completed", data=result)
