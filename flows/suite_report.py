"""The suite's offline HTML report (stroppy_domain.suite_report): gathered from the runs' results and the tests'
histories, written beside the runs' raw files and stored in the same archive (a local directory or the S3 block)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from flows.reporting import history_store, result_storage
from flows.suite_result import SuiteResult, TestOutcome
from infra.history_store import HistoryStoreError
from infra.settings import OrchestrationSettings
from stroppy_domain.comparison import summed_metrics
from stroppy_domain.history import HistoryRecord
from stroppy_domain.model import BenchmarkTest, Suite
from stroppy_domain.regression import HISTORY_RUNS, change_points, history_of
from stroppy_domain.reports import against_history
from stroppy_domain.suite_report import RunSection, SuiteReport, Trend, TrendPoint, suite_html

REPORT_FILE = "report.html"


def write_suite_report(suite: Suite, result: SuiteResult, state: str, key: str, settings: OrchestrationSettings) -> str:
    """Write and archive the report of `result` under `key`; returns where the HTML file is kept.

    Raises ResultStorageError when the archive refuses it, OSError when it cannot be written locally."""
    runs = [_section(outcome) for outcome in result.outcomes]
    prints = {o.test_name: o.result.fingerprint for o in result.outcomes if o.result and o.result.fingerprint}
    report = SuiteReport(
        suite=suite.name, state=state, generated_at=datetime.now(UTC), runs=runs, repetitions=result.repetitions,
        comparisons=result.comparisons,
        trends=[_trend(test, suite, prints[test.name], settings) for test in suite.tests if test.name in prints],
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="stroppy-suite-report-") as directory:
        (Path(directory) / REPORT_FILE).write_text(suite_html(report))
        stored = result_storage(settings).store(key, Path(directory))
    return f"{stored.rstrip('/')}/{REPORT_FILE}"


def _section(outcome: TestOutcome) -> RunSection:
    run = outcome.result
    section = RunSection(
        test=outcome.test_name, repetition=outcome.repetition_label,
        run_id=outcome.run_id or "-", state=outcome.state, verdict=outcome.state, reason=outcome.message or "",
    )  # fmt: skip
    if run is None:
        return section
    return section.model_copy(
        update={
            "verdict": str(run.verdict), "reason": run.reason or section.reason, "checks": run.checks,
            "metrics": run.metrics, "against_history": against_history(run.regression), "charts": run.charts,
            "links": run.dashboards | ({"Raw files": run.archive} if run.archive else {}),
        }
    )  # fmt: skip


def _trend(test: BenchmarkTest, suite: Suite, fingerprint: str, settings: OrchestrationSettings) -> Trend:
    """The test's first summed-up metric over its fingerprint's recent runs, with where its changes began (when the
    test has a regression rule to judge them by). A history that cannot be read gives a trend that says why."""
    metric, aggregate = summed_metrics(test, suite)[0]
    try:
        records: list[HistoryRecord] = history_store(settings).latest(fingerprint, HISTORY_RUNS)
    except HistoryStoreError as error:
        return Trend(test=test.name, metric=f"{metric} {aggregate}", points=[], error=str(error))
    points = [
        TrendPoint(run_id=record.run_id, started_at=record.started_at, value=value)
        for record in records
        if (value := record.metrics.get(metric, {}).get(aggregate)) is not None
    ]
    changes: list[str] = []
    if test.regression is not None and (test.regression.metric, test.regression.aggregate) == (metric, aggregate):
        changes = list(change_points(history_of(records, test.regression)))
    return Trend(test=test.name, metric=f"{metric} {aggregate}", points=points, changes=changes)
