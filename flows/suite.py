"""`stroppy-test-suite`: every test of a suite as its own `stroppy-test-run`, with bounded parallelism.

One test failing does not stop the others. The suite returns every result and ends FAILED when any test did not
complete, so `prefect deployment run ... --watch` exits non-zero while the full result stays readable.
"""

from __future__ import annotations

import asyncio
import json

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import arun_deployment
from prefect.exceptions import MissingResult
from prefect.states import Completed, Failed, State

from flows.keep import kept_until
from flows.reporting import RunResult
from flows.run import run_id_for
from flows.suite_report import write_suite_report
from flows.suite_result import SuiteResult, TestOutcome
from flows.teardown import tear_down
from infra.edge_queues import cancel_flow_run
from infra.settings import OrchestrationSettings
from infra.targets import target_module
from stroppy_domain.bounds import run_bounds, suite_wait_s
from stroppy_domain.comparison import run_order, sum_up
from stroppy_domain.errors import StroppyError
from stroppy_domain.model import BenchmarkTest, Suite
from stroppy_domain.reports import SuiteRow, against_history, comparisons_markdown, slug

__all__ = ["SuiteResult", "TestOutcome", "run_suite", "run_wait_s"]

RUN_POLL_S = 1.0
"""How often the suite reads the state of each test run it waits for: one small API call. A 200th of the run's bound
(13 s for a 30 s pgbench load) held the suite's end, and with a parallelism limit the next test's start, that long
after the run ended."""

TEST_RUN_DEPLOYMENT = "stroppy-test-run/run"


async def _failed_run_data(state: State | None) -> object:
    """What a failed run kept: its RunResult when a threshold or its results failed it, else its exception."""
    if state is None or not state.is_failed():
        return None
    try:
        return await state.aresult(raise_on_failure=False)
    except MissingResult as error:
        return error


def _row(outcome: TestOutcome) -> SuiteRow:
    run = outcome.result
    return SuiteRow(
        test=outcome.test_name, repetition=outcome.repetition_label,
        state=outcome.state, verdict=str(run.verdict) if run else "-",
        history=against_history(run.regression) if run else "",
        run_id=outcome.run_id or "-", message=outcome.message or "", grafana=(run.grafana_url or "") if run else "",
    )  # fmt: skip


def run_wait_s(test: BenchmarkTest, suite: Suite, settings: OrchestrationSettings) -> float:
    """How long the suite waits for the test's run: past every limit the run itself has.

    Raises TargetError when this installation has no backend for the test's target."""
    target = target_module(suite.target_of(test)).bounds(settings)
    return suite_wait_s(
        run_bounds(test, target, settings.install_timeout_s, settings.load_margin_s, settings.target_slot_wait_s)
    )


def _job_variables(settings: OrchestrationSettings) -> dict[str, object] | None:
    """A testing aid set on the suite's own flow run reaches its test runs the same way (never a form field)."""
    if not settings.inject_failure_at:
        return None
    return {"env": {"STROPPY_INJECT_FAILURE_AT": json.dumps(settings.inject_failure_at)}}


@flow(name="stroppy-test-suite", persist_result=True)
async def run_suite(suite: Suite) -> State:
    """Run the suite's tests, at most `STROPPY_MAX_PARALLEL_TESTS` at once; each test's run is a child flow run."""
    log = get_run_logger()
    settings = OrchestrationSettings()
    limit = asyncio.Semaphore(settings.max_parallel_tests)

    async def one(test_index: int, repetition: int) -> TestOutcome:
        test = suite.tests[test_index]
        named = {"test_name": test.name, "repetition": repetition, "repeat": test.repeat}
        try:
            bound = run_wait_s(test, suite, settings)
            async with limit:
                child: FlowRun = await arun_deployment(
                    TEST_RUN_DEPLOYMENT,
                    parameters={
                        "test": suite.resolved(test).model_dump(mode="json", by_alias=True),
                        "target": str(suite.target_of(test)),
                    },
                    timeout=bound,
                    poll_interval=RUN_POLL_S,
                    job_variables=_job_variables(settings),
                )
        except Exception as error:  # the run could not even be created: report it as this test's failure
            return TestOutcome(**named, run_id=None, state="FAILED", message=f"not started: {error}")
        run_id = run_id_for(child.id)
        state = child.state
        if state is None or not state.is_completed():
            # The run's own teardown may not have happened (its process killed, or still running at the bound).
            message = state.message if state else "no state"
            if state is None or not state.is_final():
                # Stopped first, so its own steps do not race the teardown below.
                started = state is not None and state.is_running()
                await asyncio.to_thread(cancel_flow_run, child.id, started, "its suite stopped waiting")
                message = f"still {state.name if state else 'unscheduled'} after {bound:.0f} s; cancelled"
            try:
                kept = await asyncio.to_thread(kept_until, run_id, settings)
                if kept is None:
                    await asyncio.to_thread(tear_down, run_id, settings)
                else:  # its test keeps failures for a look: `stroppy-flows release` or the reaper ends it
                    message = f"{message}; kept until {kept:%Y-%m-%d %H:%M} UTC"
            except Exception as error:  # the other tests go on; this one reports it, and the reaper retries later
                message = f"{message}; teardown after it failed too: {error}"
            data = await _failed_run_data(state)
            return TestOutcome(
                **named, run_id=run_id, state=state.type.value if state else "UNKNOWN",
                message=message, result=data if isinstance(data, RunResult) else None,
            )  # fmt: skip
        result = await state.aresult(raise_on_failure=False)
        return TestOutcome(**named, run_id=run_id, state="COMPLETED", result=result)

    # Tasks wait on the semaphore in the order they start: the runs' order (compared tests interleaved).
    outcomes = await asyncio.gather(*(one(index, repetition) for index, repetition in run_order(suite)))
    result = SuiteResult(suite=suite.name, outcomes=list(outcomes))
    for outcome in result.outcomes:
        log.info("%s #%d: %s %s", outcome.test_name, outcome.repetition, outcome.state, outcome.message or "")
    await _sum_up(suite, result)
    await acreate_table_artifact(
        key=f"suite-{slug(suite.name)}",
        table=[_row(outcome).model_dump() for outcome in result.outcomes],
        description=f"{suite.name}: {len(result.outcomes) - len(result.failed)} of {len(result.outcomes)} completed",
    )
    await _write_report(suite, result, settings)
    if result.failed:
        names = ", ".join(outcome.test_name for outcome in result.failed)
        return Failed(message=f"{len(result.failed)} of {len(result.outcomes)} test(s) failed: {names}", data=result)
    return Completed(message=f"all {len(result.outcomes)} test(s) completed", data=result)


async def _write_report(suite: Suite, result: SuiteResult, settings: OrchestrationSettings) -> None:
    """Write the suite's HTML report into the archive and say where it is (or why there is none) in `result`."""
    state = "FAILED" if result.failed else "COMPLETED"
    key = f"suite-{slug(suite.name)}-{str(runtime.flow_run.id).replace('-', '')[:12]}"
    try:
        result.report = await asyncio.to_thread(write_suite_report, suite, result, state, key, settings)
        get_run_logger().info("the suite's report: %s", result.report)
    except (StroppyError, OSError) as error:  # the runs' own results and artifacts stand without it
        result.report_error = f"the suite's HTML report could not be written: {error}"
        get_run_logger().warning(result.report_error)


async def _sum_up(suite: Suite, result: SuiteResult) -> None:
    """Fill in the repetitions and comparisons of `result` and publish them as the suite's markdown artifact."""
    if not suite.compare and all(test.repeat == 1 for test in suite.tests):
        return
    measured = [(o.test_name, o.result.metrics) for o in result.outcomes if o.result is not None]
    try:
        result.repetitions, result.comparisons = sum_up(suite, measured)
    except ImportError as error:  # SciPy is the `history` extra; the runs' own results stand without it
        result.summary_error = f"repetitions and comparisons need the `history` extra: {error}"
        get_run_logger().warning(result.summary_error)
        return
    for verdict in result.comparisons:
        get_run_logger().info("%s against %s: %s", verdict.candidate, verdict.baseline, verdict.summary)
    await acreate_markdown_artifact(
        key=f"suite-{slug(suite.name)}-comparisons",
        markdown=comparisons_markdown(suite.name, result.repetitions, result.comparisons),
        description=f"{suite.name}: repetitions and comparisons",
    )
