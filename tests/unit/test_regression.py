"""The verdict on a history's last run (`stroppy_domain.regression`), on small hand-made histories whose answer can be
worked out by hand: baseline medians and changed means are chosen to be exact in binary floating point."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from scipy.stats import ttest_ind

from stroppy_domain.checks import Verdict
from stroppy_domain.errors import InvalidSuiteError
from stroppy_domain.history import HistoryRecord
from stroppy_domain.model import RegressionRule, Target
from stroppy_domain.regression import Baseline, History, RegressionVerdict, history_of, judge_history
from stroppy_domain.reports import against_history, run_markdown
from stroppy_domain.validation import validate_suite
from tests.unit.test_reports import facts

START = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
STEADY = [1000, 1010, 990, 1005, 995, 1000, 1002, 998]
"""Eight runs whose median is exactly 1000 and whose run-to-run noise is under 1%."""


def history_data(values: list[float], higher_is_better: bool = True, tolerance: float = 5) -> dict[str, Any]:
    return {
        "metric": "tps",
        "higher_is_better": higher_is_better,
        "tolerance_percent": tolerance,
        "runs": [
            {"run_id": f"r{index}", "started_at": (START + timedelta(days=index)).isoformat(), "value": value}
            for index, value in enumerate(values)
        ],
    }


def judge(values: list[float], higher_is_better: bool = True, tolerance: float = 5) -> Any:
    return judge_history(History.model_validate(history_data(values, higher_is_better, tolerance)))


@pytest.mark.parametrize(
    ("values", "higher_is_better", "tolerance", "verdict", "change_percent", "started_at", "baseline"),
    [
        pytest.param(
            [*STEADY, 900, 905, 895],
            True,
            5,
            "regression",
            -10.0,
            "r8",
            Baseline(runs=8, median=1000, first_run="r0", last_run="r7"),
            id="tps-drops-10%-three-runs-ago",
        ),
        pytest.param(
            [*STEADY, 1100, 1105, 1095],
            True,
            5,
            "improvement",
            10.0,
            "r8",
            Baseline(runs=8, median=1000, first_run="r0", last_run="r7"),
            id="tps-rises-10%",
        ),
        pytest.param(
            [*STEADY, 1003, 997],
            True,
            3,
            "no_change",
            -0.3,
            None,
            Baseline(runs=9, median=1000, first_run="r0", last_run="r8"),
            id="noise-only",
        ),
        pytest.param(
            [1000, 1001, 999, 1000, 1001, 999, 1000, 980, 981, 979],
            True,
            5,
            "no_change",
            -2.0,
            "r7",
            Baseline(runs=7, median=1000, first_run="r0", last_run="r6"),
            id="significant-2%-drop-within-5%-tolerance",
        ),
        pytest.param(
            [8, 8.5, 7.5, 8, 8.25, 7.75, 10, 10.5, 9.5],
            False,
            5,
            "regression",
            25.0,
            "r6",
            Baseline(runs=6, median=8, first_run="r0", last_run="r5"),
            id="latency-rises-25%-lower-is-better",
        ),
        pytest.param(
            [8, 8.5, 7.5, 8, 8.25, 7.75, 6, 6.5, 5.5],
            False,
            5,
            "improvement",
            -25.0,
            "r6",
            Baseline(runs=6, median=8, first_run="r0", last_run="r5"),
            id="latency-falls-25%-lower-is-better",
        ),
        pytest.param(
            [*STEADY, 1001, 999, 900, 905, 895, 900],
            True,
            5,
            "regression",
            -10.0,
            "r10",
            Baseline(runs=10, median=1000, first_run="r0", last_run="r9"),
            id="change-began-four-runs-ago",
        ),
        pytest.param(
            [*STEADY, 1001, 999, 1000, 1000, 900, 900],
            True,
            5,
            "regression",
            -10.0,
            "r12",
            Baseline(runs=12, median=1000, first_run="r0", last_run="r11"),
            id="change-began-two-runs-ago",
        ),
        pytest.param(
            [*STEADY, 800],
            True,
            5,
            "regression",
            -20.0,
            "r8",
            Baseline(runs=8, median=1000, first_run="r0", last_run="r7"),
            id="only-the-last-run-dropped",
        ),
        pytest.param(
            [1000, 1000, 1000, 1000],
            True,
            5,
            "no_change",
            0.0,
            None,
            Baseline(runs=3, median=1000, first_run="r0", last_run="r2"),
            id="four-runs-is-enough",
        ),
    ],
)
def test_the_last_run_is_judged_against_the_runs_before_the_change(
    values: list[float],
    higher_is_better: bool,
    tolerance: float,
    verdict: str,
    change_percent: float | None,
    started_at: str | None,
    baseline: Baseline,
) -> None:
    result = judge(values, higher_is_better, tolerance)
    assert (result.verdict, result.change_percent, result.change_started_at_run, result.baseline) == (
        verdict,
        change_percent,
        started_at,
        baseline,
    )


@pytest.mark.parametrize(
    ("values", "baseline_runs"),
    [
        pytest.param([], 0, id="empty"),
        pytest.param([1000], 0, id="single-run"),
        pytest.param([1000, 900, 800], 2, id="three-runs"),
    ],
)
def test_too_short_a_history_is_insufficient_never_an_error(values: list[float], baseline_runs: int) -> None:
    result = judge(values)
    assert (result.verdict, result.change_percent, result.change_started_at_run, result.p_value) == (
        "insufficient_history",
        None,
        None,
        None,
    )
    assert result.baseline.runs == baseline_runs
    assert result.reason == f"{len(values)} run(s); judging the last one needs at least 3 before it"


@pytest.mark.parametrize(
    ("values", "verdict", "change_percent", "p_value"),
    [
        pytest.param([1000.1] * 10, "no_change", 0.0, 1.0, id="constant-with-rounding-in-the-mean"),
        pytest.param([0.0] * 6, "no_change", None, 1.0, id="constant-zero"),
        pytest.param([1000] * 6 + [900] * 2, "regression", -10.0, 0.0, id="constant-then-constant-lower"),
        pytest.param([0] * 5 + [5] * 2, "improvement", None, 0.0, id="from-a-zero-baseline-no-percentage"),
    ],
)
def test_runs_without_noise_are_judged_without_dividing_by_zero(
    values: list[float], verdict: str, change_percent: float | None, p_value: float
) -> None:
    result = judge(values)
    assert (result.verdict, result.change_percent, result.p_value) == (verdict, change_percent, p_value)


def test_the_reason_says_the_size_the_start_the_baseline_and_the_tolerance() -> None:
    result = judge([1000] * 6 + [900] * 2)
    assert result.reason == (
        "tps regression: -10.00% since run 'r6' (2 run(s)) against the median of 6 run(s) before it, "
        "significant (p = 0 after scanning 5 splits), beyond the tolerance of 5%"
    )


def test_the_p_value_is_scipys_two_sample_t_test_times_the_splits_scanned() -> None:
    """Eleven runs leave six split points; the change at run 8 is the most significant of them."""
    changed = [900, 905, 895]
    result = judge([*STEADY, *changed])
    assert result.p_value == pytest.approx(6 * ttest_ind(STEADY, changed).pvalue, rel=1e-12)


def test_a_long_history_is_judged_against_its_recent_past() -> None:
    """Runs older than the 50 before the earliest split point do not count, however different they were."""
    result = judge([500.0] * 100 + [1000.0] * 60 + [900.0] * 3)
    assert (result.verdict, result.change_percent, result.change_started_at_run, result.baseline) == (
        "regression",
        -10.0,
        "r160",
        Baseline(runs=53, median=1000, first_run="r107", last_run="r159"),
    )


def with_run(change: dict[str, Any], index: int = 1) -> dict[str, Any]:
    data = history_data(STEADY)
    data["runs"][index] = {**data["runs"][index], **change}
    return data


@pytest.mark.parametrize(
    ("data", "location", "message"),
    [
        pytest.param(
            with_run({"started_at": "2026-04-01T00:00:00+00:00"}),
            ("runs", 1, "started_at"),
            "runs must be in time order, oldest first; this one started before runs[0] (2026-05-01T02:00:00+00:00)",
            id="out-of-order",
        ),
        pytest.param(
            with_run({"run_id": "r0"}),
            ("runs", 1, "run_id"),
            "each run once; this id is also runs[0]",
            id="repeated-run-id",
        ),
        pytest.param(
            with_run({"value": float("nan")}, 3), ("runs", 3, "value"), "Input should be a finite number", id="nan"
        ),
        pytest.param(
            with_run({"samples": [1.0, float("inf")]}),
            ("runs", 1, "samples", 1),
            "Input should be a finite number",
            id="infinite-sample",
        ),
        pytest.param(
            with_run({"value": "1000"}), ("runs", 1, "value"), "Input should be a valid number", id="value-as-text"
        ),
        pytest.param(
            with_run({"run_id": ""}),
            ("runs", 1, "run_id"),
            "String should have at least 1 character",
            id="empty-run-id",
        ),
        pytest.param(
            with_run({"started_at": 1700000000}),
            ("runs", 1, "started_at"),
            "Value error, expected an ISO-8601 date and time with a timezone, such as '2026-05-01T02:00:00Z'",
            id="epoch-seconds",
        ),
        pytest.param(
            with_run({"started_at": "2026-05-02T02:00:00"}),
            ("runs", 1, "started_at"),
            "Input should have timezone info",
            id="no-timezone",
        ),
        pytest.param(
            {**history_data(STEADY), "tolerance_percent": -5},
            ("tolerance_percent",),
            "Input should be greater than 0",
            id="negative-tolerance",
        ),
        pytest.param(
            {**history_data(STEADY), "higher_is_better": "yes"},
            ("higher_is_better",),
            "Value error, expected true or false",
            id="flag-as-text",
        ),
        pytest.param(
            {**history_data(STEADY), "window": 10}, ("window",), "Extra inputs are not permitted", id="unknown-key"
        ),
        pytest.param(
            with_run({"stddev": 3}), ("runs", 1, "stddev"), "Extra inputs are not permitted", id="unknown-key-in-a-run"
        ),
    ],
)
def test_bad_input_is_refused_at_its_path(data: dict[str, Any], location: tuple[str | int, ...], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        History.model_validate(data)
    assert [(error["loc"], error["msg"]) for error in refused.value.errors()] == [(location, message)]


def _record(run_id: str, day: int, metrics: dict[str, dict[str, float]]) -> HistoryRecord:
    return HistoryRecord(
        run_id=run_id, test="t", fingerprint="0123456789abcdef", target=Target.DOCKER, verdict=Verdict.PASSED,
        started_at=datetime(2026, 5, 1, tzinfo=UTC) + timedelta(days=day), metrics=metrics,
    )  # fmt: skip


def test_a_rule_reads_its_metric_from_the_records_and_skips_those_without_it() -> None:
    records = [
        _record("run-1", 0, {"tps": {"value": 100.0}}),
        _record("run-2", 1, {"latency": {"avg": 3.0}}),  # the driver changed: no tps
        _record("run-3", 2, {"tps": {"value": float("nan")}}),
        _record("run-4", 3, {"tps": {"value": 90.0, "count": 5.0}}),
    ]
    rule = RegressionRule(metric="tps", max_drop=5)
    history = history_of(records, rule)
    assert (history.metric, history.higher_is_better, history.tolerance_percent) == ("tps value", True, 5.0)
    assert [(run.run_id, run.value) for run in history.runs] == [("run-1", 100.0), ("run-4", 90.0)]
    slower = {"metric": "latency", "aggregate": "avg", "max_drop": "10%", "higher_is_better": False}
    latency = history_of(records, RegressionRule.model_validate(slower))
    assert [run.value for run in latency.runs] == [3.0] and latency.higher_is_better is False


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"metric": "tps", "max_drop": "5%"}, None),
        ({"metric": "tps", "max_drop": 2.5, "aggregate": "p(95)", "higher_is_better": False}, None),
        ({"metric": "tps", "max_drop": "five"}, "expected a percentage such as 5%"),
        ({"metric": "tps", "max_drop": 0}, "greater than 0"),
        ({"metric": "tps", "max_drop": True}, "not a boolean"),
        ({"metric": "tps", "max_drop": "5%", "aggregate": "p95"}, "aggregate"),
        ({"metric": "a.b", "max_drop": "5%"}, "metric"),
        ({"max_drop": "5%"}, "metric"),
    ],
)
def test_a_regression_rule_is_validated_with_its_path(rule: dict[str, object], problem: str | None) -> None:
    test = {"name": "t", "stroppy": {"driver": "pgbench", "workload": "tpcb"}, "regression": rule,
            "database": {"instance": {"hardware": {"cores": 1, "memory_gb": 1, "disk_gb": 10}}}}  # fmt: skip
    if problem is None:
        assert validate_suite({"name": "s", "tests": [test]}).tests[0].regression == RegressionRule.model_validate(rule)
        return
    with pytest.raises(InvalidSuiteError, match=rf"tests\[0\]\.regression\..*{re.escape(problem)}"):
        validate_suite({"name": "s", "tests": [test]})


@pytest.mark.parametrize(
    ("verdict", "change", "cell"),
    [
        ("regression", -7.24, "regression -7.2%"),
        ("improvement", 3.0, "improvement +3.0%"),
        ("no_change", None, "no_change"),
    ],
)
def test_the_suite_table_says_how_a_run_compares_with_history(verdict: str, change: float | None, cell: str) -> None:
    judged = RegressionVerdict(
        metric="tps value", verdict=verdict, change_percent=change, change_started_at_run=None, p_value=None,
        baseline=Baseline(runs=0, median=None, first_run=None, last_run=None), reason="why",
    )  # fmt: skip
    assert against_history(judged) == cell
    assert against_history(None) == ""
    assert "## Against its history\n\nwhy" in run_markdown(facts(regression=judged))
