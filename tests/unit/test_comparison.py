"""Repetitions and comparisons in a suite (stroppy_domain.comparison): order, sums, verdicts, validation."""

from __future__ import annotations

import math
from typing import Any

import pytest
from scipy import stats

from stroppy_domain.comparison import compare, repetitions, run_order, sum_up, summed_metrics
from stroppy_domain.errors import InvalidSuiteError
from stroppy_domain.history import fingerprint
from stroppy_domain.model import Comparison, Isolation, Target
from stroppy_domain.reports import comparisons_markdown
from stroppy_domain.validation import validate_suite

HARDWARE = {"cores": 1, "memory_gb": 1, "disk_gb": 10}


def _test(name: str, repeat: int = 1, **extra: Any) -> dict[str, Any]:
    load = {"driver": "pgbench", "workload": "tpcb", "duration": 5}
    database = {"instance": {"hardware": HARDWARE}}
    return {"name": name, "repeat": repeat, "isolation": "shared", "stroppy": load, "database": database} | extra


def _suite(tests: list[dict[str, Any]], compare: list[dict[str, Any]] | None = None) -> Any:
    return validate_suite({"name": "s", "tests": tests, "compare": compare or []})


def _comparing(baseline: str, *candidates: str, **rule: Any) -> dict[str, Any]:
    return {"baseline": baseline, "candidates": list(candidates), "metric": "tps", "min_effect": "3%"} | rule


ORDERS = [
    ("one run each", [("a", 1), ("b", 1)], [], [(0, 1), (1, 1)]),
    ("repetitions one after another", [("a", 2), ("b", 2)], [], [(0, 1), (0, 2), (1, 1), (1, 2)]),
    ("compared tests alternate", [("a", 3), ("b", 3)], [_comparing("a", "b")],
     [(0, 1), (1, 1), (0, 2), (1, 2), (0, 3), (1, 3)]),
    ("the shorter side drops out", [("a", 3), ("b", 1)], [_comparing("a", "b")], [(0, 1), (1, 1), (0, 2), (0, 3)]),
    ("an uncompared test keeps its place", [("x", 2), ("a", 2), ("b", 2)], [_comparing("b", "a")],
     [(0, 1), (0, 2), (1, 1), (2, 1), (1, 2), (2, 2)]),
    ("comparisons sharing a test make one group", [("a", 2), ("b", 1), ("c", 2)],
     [_comparing("a", "b"), _comparing("c", "b")], [(0, 1), (1, 1), (2, 1), (0, 2), (2, 2)]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("tests", "comparisons", "expected"), [case[1:] for case in ORDERS], ids=[c[0] for c in ORDERS]
)
def test_runs_start_in_order_with_compared_tests_interleaved(
    tests: list[tuple[str, int]], comparisons: list[dict[str, Any]], expected: list[tuple[int, int]]
) -> None:
    assert run_order(_suite([_test(name, repeat) for name, repeat in tests], comparisons)) == expected


BASELINE = [1000.0, 1010.0, 990.0]
VERDICTS = [
    ("a clear gain", BASELINE, [1072.0, 1080.0, 1065.0], {}, "better", "+7.2% tps value, 95% CI +5.1% .. +9.5%"),
    ("a gain in a latency is worse", BASELINE, [1072.0, 1080.0, 1065.0], {"higher_is_better": False}, "worse",
     "+7.2%"),
    ("a clear loss", BASELINE, [900.0, 905.0, 895.0], {}, "worse", "-10.0% tps value"),
    ("no difference that matters", BASELINE, [1005.0, 1000.0, 1003.0], {}, "equivalent",
     "no difference of 3% or more"),
    ("real but smaller than what matters", [1000.0, 1001.0, 999.0, 1000.0], [1010.0, 1011.0, 1009.0, 1010.0], {},
     "negligible", "+1.0% tps value"),
    ("too noisy to tell", [1000.0, 1100.0, 900.0], [1005.0, 1200.0, 903.0], {}, "inconclusive",
     "cannot tell them apart"),
    ("one run a side", [1000.0], [1005.0, 1010.0], {}, "insufficient_runs", "each side needs at least 2"),
    ("a value of 0", [0.0, 1.0], [1.0, 2.0], {}, "inconclusive", "not all above 0"),
    ("no noise at all", [100.0, 100.0], [110.0, 110.0], {}, "better", "+10.0% tps value, 95% CI +10.0% .. +10.0%"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("baseline", "candidate", "rule", "verdict", "said"), [case[1:] for case in VERDICTS], ids=[c[0] for c in VERDICTS]
)
def test_a_candidate_is_judged_on_its_change_and_interval(
    baseline: list[float], candidate: list[float], rule: dict[str, Any], verdict: str, said: str
) -> None:
    judged = compare(Comparison.model_validate(_comparing("a", "b", **rule)), "b", baseline, candidate)
    assert (judged.verdict, judged.baseline_runs, judged.candidate_runs) == (verdict, len(baseline), len(candidate))
    assert said in judged.summary, judged.summary


def test_the_interval_is_welchs_on_the_log_values() -> None:
    candidate = [1072.0, 1080.0, 1065.0, 1090.0]
    judged = compare(Comparison.model_validate(_comparing("a", "b")), "b", BASELINE, candidate)
    welch = stats.ttest_ind(
        [math.log(v) for v in candidate], [math.log(v) for v in BASELINE], equal_var=False
    )  # fmt: skip
    interval = welch.confidence_interval(0.95)
    assert judged.ci_low_percent == pytest.approx(math.expm1(interval.low) * 100)
    assert judged.ci_high_percent == pytest.approx(math.expm1(interval.high) * 100)
    assert judged.p_value == pytest.approx(welch.pvalue)
    geometric = math.exp(sum(map(math.log, candidate)) / 4) / math.exp(sum(map(math.log, BASELINE)) / 3)
    assert judged.change_percent == pytest.approx((geometric - 1) * 100)


def test_repetitions_give_the_median_and_the_t_interval_of_the_mean() -> None:
    summed = repetitions("a", "tps", "value", [1000.0, 1010.0, 990.0, 1300.0])
    assert (summed.runs, summed.median) == (4, 1005.0)
    low, high = stats.t.interval(0.95, 3, loc=1075.0, scale=stats.sem([1000.0, 1010.0, 990.0, 1300.0]))
    assert (summed.ci_low, summed.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert repetitions("a", "tps", "value", [1000.0]).ci_low is None
    assert repetitions("a", "tps", "value", []).median is None


def test_a_repeated_test_is_summed_up_by_what_the_suite_names_else_its_headline() -> None:
    regression = {"metric": "latency", "aggregate": "avg", "max_drop": "5%", "higher_is_better": False}
    suite = _suite(
        [_test("a", 2, thresholds={"failed": ["count<1"]}, regression=regression), _test("b", 2), _test("c", 2)],
        [_comparing("a", "b", metric="tps")],
    )
    a, b, c = suite.tests
    assert summed_metrics(a, suite) == [("tps", "value"), ("latency", "avg"), ("failed", "count")]
    assert summed_metrics(b, suite) == [("tps", "value")]
    assert summed_metrics(c, suite) == [("tps", "value")]  # pgbench's headline
    stroppy = _test("d", 2) | {"stroppy": {"driver": "stroppy", "workload": "tpcb/tx", "version": "v5.1.0"}}
    assert summed_metrics(_suite([stroppy]).tests[0], _suite([stroppy])) == [("iterations", "rate")]


def test_a_suite_sums_up_its_runs_and_compares_them() -> None:
    suite = _suite([_test("a", 3), _test("b", 3), _test("once")], [_comparing("a", "b")])
    runs = [("a", {"tps": {"value": v}}) for v in BASELINE]
    runs += [("b", {"tps": {"value": v}}) for v in (1072.0, 1080.0, math.nan, 1065.0)]
    runs += [("once", {"tps": {"value": 5.0}})]
    repeated, (verdict,) = sum_up(suite, runs)
    assert [(r.test, r.runs, r.median) for r in repeated] == [("a", 3, 1000.0), ("b", 3, 1072.0)]
    assert (verdict.candidate, verdict.verdict, verdict.candidate_runs) == ("b", "better", 3)
    markdown = comparisons_markdown("s", repeated, [verdict])
    assert "| b | a | tps value | 3 vs 3 | better | +7.2% tps value, 95% CI +5.1% .. +9.5%" in markdown
    assert "| a | tps value | 3 | 1000 |" in markdown


PROBLEMS = [
    ("an unknown baseline", _comparing("z", "b"), "compare[0].baseline", "no test of the suite is named so"),
    ("an unknown candidate", _comparing("a", "b", "y"), "compare[0].candidates[1]", "its tests: a, b"),
    ("a test twice", _comparing("a", "b", "a"), "compare[0].candidates[1]", "each test once"),
    ("no candidate", _comparing("a"), "compare[0].candidates", "at least 1 item"),
    ("no effect size", {"baseline": "a", "candidates": ["b"], "metric": "tps"}, "compare[0].min_effect", "missing"),
]  # fmt: skip


@pytest.mark.parametrize(("comparison", "path", "said"), [c[1:] for c in PROBLEMS], ids=[c[0] for c in PROBLEMS])
def test_a_comparison_is_refused_at_its_path(comparison: dict[str, Any], path: str, said: str) -> None:
    with pytest.raises(InvalidSuiteError) as refused:
        _suite([_test("a"), _test("b")], [comparison])
    (issue,) = refused.value.issues
    assert issue.path == path and said in issue.message, refused.value


@pytest.mark.parametrize("repeat", [0, 21, True, "3"])
def test_repeat_is_a_whole_number_from_1_to_20(repeat: object) -> None:
    with pytest.raises(InvalidSuiteError, match=r"tests\[0\]\.repeat"):
        _suite([_test("a", repeat)])  # type: ignore[arg-type]


def test_repetitions_are_runs_of_the_same_setup() -> None:
    once, thrice = _suite([_test("a")]).tests[0], _suite([_test("a", 3)]).tests[0]
    assert fingerprint(once, Target.DOCKER, Isolation.SHARED) == fingerprint(thrice, Target.DOCKER, Isolation.SHARED)


def test_a_suite_keeps_failures_unless_a_test_says_its_own_and_keeping_is_not_measured() -> None:
    suite = validate_suite(
        {"name": "s", "keep_on_failure": "2h", "tests": [_test("a"), _test("b", keep_on_failure="10m")]}
    )
    a, b = (suite.resolved(test) for test in suite.tests)
    assert (a.keep_on_failure, b.keep_on_failure, a.isolation) == (7200, 600, Isolation.SHARED)
    plain = _suite([_test("a")]).tests[0]
    assert fingerprint(plain, Target.DOCKER, Isolation.SHARED) == fingerprint(a, Target.DOCKER, Isolation.SHARED)
    with pytest.raises(InvalidSuiteError, match=r"tests\[0\]\.keep_on_failure"):
        _suite([_test("a", keep_on_failure="0s")])
