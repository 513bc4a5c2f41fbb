"""Our reading of k6 thresholds against the real k6 (the `k6` dev dependency, offline, no network).

Small scripts add chosen samples (with tags) to custom metrics of every type and declare thresholds; k6 judges them
and writes its summary twice: shape A through `handleSummary`, shape B through `--summary-export`. We parse both with
`parse_k6_summary`, drop k6's own verdicts, judge each threshold with `check`/`evaluate`, and require the same
verdict as k6's, threshold by threshold, and the same overall verdict as k6's exit code. A second table runs what
k6 refuses before the run starts, and requires our validation to refuse it too, naming the threshold's path.

The metric names are stroppy's (a script may give them any type), so the same thresholds also go through our
suite validation for a stroppy tpcc/tx test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from stroppy_domain.checks import Verdict, check, evaluate
from stroppy_domain.errors import InvalidSuiteError
from stroppy_domain.load import trend_stats
from stroppy_domain.model import Thresholds
from stroppy_domain.results import LoadMetrics, parse_k6_summary
from stroppy_domain.stroppy_v5 import SUMMARY_TREND_STATS
from stroppy_domain.thresholds import canonical_metric_name, parse_assertion, stat_key
from stroppy_domain.validation import validate_suite
from tests.conftest import fresh_suite

K6 = Path(sys.executable).parent / "k6"
pytestmark = pytest.mark.skipif(not K6.exists(), reason="the k6 dev dependency is not installed")

TREND, NUMBERS, RATE, COUNTER, GAUGE = (
    "tx_total_duration", "tx_queries_per_tx", "tx_error_rate", "tx_count", "tx_tps",
)  # fmt: skip
EMPTY_RATE, EMPTY_TREND, EMPTY_COUNTER, EMPTY_GAUGE = (
    "run_query_error_rate", "run_query_duration", "run_query_count", "insert_progress_rows_per_second",
)  # fmt: skip
METRICS = {
    TREND: "new Trend('{}', true)", NUMBERS: "new Trend('{}')", RATE: "new Rate('{}')", COUNTER: "new Counter('{}')",
    GAUGE: "new Gauge('{}')", EMPTY_RATE: "new Rate('{}')", EMPTY_TREND: "new Trend('{}', true)",
    EMPTY_COUNTER: "new Counter('{}')", EMPTY_GAUGE: "new Gauge('{}')",
}  # fmt: skip
"""What each metric of the scripts is; the `EMPTY_*` ones never get a sample."""
SAMPLES: list[tuple[str, float, dict[str, str]]] = [
    *[(TREND, value, {"kind": "a"}) for value in (0.5, 1, 2, 3)],
    *[(TREND, value, {"kind": "b", "phase": "x"}) for value in (5, 8, 13)],
    *[(TREND, value, {"kind": "b"}) for value in (21, 34, 55.25)],
    *[(NUMBERS, value, {}) for value in (-3, 0, 7, 7, 100.125)],
    *[(RATE, value, {"ok": "yes"}) for value in (1, 1, 1)],
    (RATE, 0, {"ok": "no"}),
    *[(COUNTER, value, {"kind": "a"}) for value in (1, 2)],
    (COUNTER, 3.5, {"kind": "b"}),
    (GAUGE, 4, {"kind": "a"}),
    (GAUGE, 2.5, {"kind": "b"}),
]
TREND_AGGREGATIONS = ["avg", "min", "max", "med", "p(0)", "p(50)", "p(90)", "p(95)", "p(99)", "p(99.9)", "p(100)",
                      "p(12.3456789)"]  # fmt: skip
JUDGED: dict[str, list[str]] = {
    TREND: TREND_AGGREGATIONS,
    NUMBERS: ["avg", "min", "max", "med", "p(90)", "p(99.9)"],
    f"{TREND}{{kind:a}}": ["avg", "max", "p(95)", "p(99.9)"],
    f"{TREND}{{ kind : b }}": ["avg", "min", "p(99.9)"],
    f"{TREND}{{kind:b,phase:x}}": ["avg", "max", "p(95)"],
    f'{TREND}{{phase:"x"}}': ["min", "med"],
    f"{TREND}{{kind:none}}": ["avg", "max", "p(95)"],
    RATE: ["rate"],
    f"{RATE}{{ok:yes}}": ["rate"],
    f"{RATE}{{ok:never}}": ["rate"],
    COUNTER: ["count"],
    f"{COUNTER}{{kind:a}}": ["count"],
    GAUGE: ["value"],
    f"{GAUGE}{{kind:b}}": ["value"],
    EMPTY_RATE: ["rate"],
    EMPTY_TREND: ["avg", "min", "med", "p(95)", "p(99.9)"],
    EMPTY_COUNTER: ["count", "rate"],
    EMPTY_GAUGE: ["value"],
    "checks": ["rate"],
    "iterations": ["count"],
}
"""Each (sub)metric with the aggregations judged at, just below and just above the value k6 measured, with every
operator. `{kind:none}` and `{ok:never}` match no sample; `checks` has none either (the scripts run no check)."""
OPERATORS = [">", ">=", "<", "<=", "==", "===", "!="]
FAR = {COUNTER: ["rate>0", "rate<1000000000"], "iterations": ["rate>0"]}
"""A counter's rate is its count over the run's duration, which no script fixes: judged far from its value."""
SPACED = {TREND: [" avg < 100", "p(95)  >=  1", "max<= 55.25", "min ===0.5 ", "med != 8"], RATE: [" rate >= 0.75 "]}
"""The spaces k6's grammar allows, around the aggregation and the operator."""


def script(thresholds: dict[str, list[str]]) -> str:
    metrics = "\n".join(f"const m_{name} = {kind.format(name)};" for name, kind in METRICS.items())
    table = ", ".join(f"{name}: m_{name}" for name in METRICS)
    return f"""import {{ Trend, Rate, Counter, Gauge }} from 'k6/metrics';
{metrics}
const METRICS = {{ {table} }};
const SAMPLES = {json.dumps(SAMPLES)};
export const options = {{ vus: 1, iterations: 1, thresholds: {json.dumps(thresholds)} }};
export default function () {{ for (const [name, value, tags] of SAMPLES) METRICS[name].add(value, tags); }}
export function handleSummary(data) {{ return {{ [__ENV.SHAPE_A]: JSON.stringify(data) }}; }}
"""


@dataclass(frozen=True)
class K6Run:
    exit_code: int
    stderr: str
    shape_a: LoadMetrics | None
    shape_b: LoadMetrics | None


def run_k6(directory: Path, thresholds: dict[str, list[str]], stats: list[str]) -> K6Run:
    directory.mkdir(parents=True, exist_ok=True)
    path, a_file, b_file = directory / "script.js", directory / "a.json", directory / "b.json"
    path.write_text(script(thresholds))
    argv = [str(K6), "run", "--quiet", "--no-color", "--summary-export", str(b_file),
            "--summary-trend-stats", ",".join(stats), "-e", f"SHAPE_A={a_file}", str(path)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=directory, check=False)
    return K6Run(
        exit_code=done.returncode,
        stderr=done.stderr,
        shape_a=parse_k6_summary(a_file.read_text()) if a_file.exists() else None,
        shape_b=parse_k6_summary(b_file.read_text()) if b_file.exists() else None,
    )


def as_thresholds(table: dict[str, list[str]]) -> Thresholds:
    return TypeAdapter(Thresholds).validate_python(table)


def number(value: float) -> str:
    """`value` in the grammar both k6 and we accept: digits, an optional point and digits, no exponent."""
    text = repr(float(value))
    return text if "e" not in text else f"{value:.6f}"


def around(value: float) -> list[str]:
    """Just below, exactly at and just above `value`: the neighbouring doubles where they print without exponent."""
    below, above = math.nextafter(value, -math.inf), math.nextafter(value, math.inf)
    if "e" in repr(below) or "e" in repr(above):
        below, above = value - 1e-6, value + 1e-6
    return [number(below), number(value), number(above)]


def strip(metrics: LoadMetrics) -> LoadMetrics:
    """The summary without k6's verdicts: what we read on our own."""
    return metrics.model_copy(update={"thresholds": []})


def k6_verdicts(run: K6Run) -> dict[tuple[str, str], bool]:
    """(summary key, expression) -> passed, from shape A, after checking that shape B says the same."""
    assert run.shape_a is not None and run.shape_b is not None, run.stderr
    a = {(item.metric, item.expression): item.passed for item in run.shape_a.thresholds}
    b = {(item.metric, item.expression): item.passed for item in run.shape_b.thresholds}
    assert a == b
    return a


@dataclass(frozen=True)
class Judged:
    thresholds: dict[str, list[str]]
    measured: K6Run
    judged: K6Run
    passing: K6Run
    verdicts: dict[tuple[str, str], bool]


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    """Three runs of the same samples: one to measure each value, one judging every operator around each value,
    one with only the thresholds k6 passed."""
    directory = tmp_path_factory.mktemp("k6")
    placeholders = {name: [f"{aggregation}>-1000000" for aggregation in aggs] for name, aggs in JUDGED.items()}
    measured = run_k6(directory / "measure", placeholders, trend_stats(as_thresholds(placeholders)))
    assert measured.shape_a is not None, measured.stderr
    table: dict[str, list[str]] = {}
    for name, aggregations in JUDGED.items():
        values = measured.shape_a.metrics[_summary_key(measured, name)].values
        table[name] = [
            f"{aggregation}{operator}{text}"
            for aggregation in aggregations
            for text in around(values[stat_key(parse_assertion(f"{aggregation}>0"))])
            for operator in OPERATORS
        ]
        table[name] += FAR.get(name, []) + SPACED.get(name, [])
    run = run_k6(directory / "judge", table, trend_stats(as_thresholds(table)))
    verdicts = k6_verdicts(run)
    passed = {name: [e for e in exprs if verdicts[_summary_key(run, name), e]] for name, exprs in table.items()}
    passing = run_k6(directory / "pass", passed, trend_stats(as_thresholds(passed)))
    return Judged(table, measured, run, passing, verdicts)


def _summary_key(run: K6Run, name: str) -> str:
    """The key k6 gives the threshold's (sub)metric in its summary (it trims the filter, keeps the quotes)."""
    assert run.shape_a is not None
    wanted = canonical_metric_name(name)
    return next(key for key in run.shape_a.metrics if canonical_metric_name(key) == wanted)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", [*JUDGED])
def test_our_verdict_is_k6s_for_every_operator_at_the_boundary(judged: Judged, name: str) -> None:
    run = judged.judged
    assert run.shape_a is not None and run.shape_b is not None
    key = _summary_key(run, name)
    for shape in (run.shape_a, run.shape_b):
        ours = {expression: check(name, expression, strip(shape)) for expression in judged.thresholds[name]}
        differing = {
            expression: (judged.verdicts[key, expression], result.observed, result.reason)
            for expression, result in ours.items()
            if result.passed != judged.verdicts[key, expression]
        }
        assert not differing, f"k6's verdict, our observed value and reason where we differ: {differing}"


@pytest.mark.timeout(120)
def test_our_overall_verdict_is_k6s_exit_code(judged: Judged) -> None:
    assert (judged.judged.exit_code, judged.passing.exit_code) == (99, 0), judged.judged.stderr
    for run, verdict in ((judged.judged, Verdict.FAILED), (judged.passing, Verdict.PASSED)):
        assert run.shape_a is not None and run.shape_b is not None
        thresholds = as_thresholds(judged.thresholds if run is judged.judged else _passing(judged))
        for shape in (run.shape_a, run.shape_b):
            assert evaluate(thresholds, strip(shape))[0] is verdict
            assert evaluate(thresholds, shape)[0] is verdict


def _passing(judged: Judged) -> dict[str, list[str]]:
    key = {name: _summary_key(judged.judged, name) for name in judged.thresholds}
    return {name: [e for e in exprs if judged.verdicts[key[name], e]] for name, exprs in judged.thresholds.items()}


@pytest.mark.timeout(120)
def test_k6_skips_a_rate_without_samples_and_judges_the_zeros_of_other_empty_metrics(judged: Judged) -> None:
    """A rate with no samples passes whatever its threshold; an empty trend, counter or gauge is judged as 0."""
    verdicts = judged.verdicts
    for name in (EMPTY_RATE, f"{RATE}{{ok:never}}", "checks"):
        key = _summary_key(judged.judged, name)
        assert all(verdicts[key, e] for e in judged.thresholds[name]), name
    for name in (EMPTY_TREND, EMPTY_COUNTER, EMPTY_GAUGE, f"{TREND}{{kind:none}}"):
        key = _summary_key(judged.judged, name)
        assert not all(verdicts[key, e] for e in judged.thresholds[name]), name
        assert verdicts[key, f"{JUDGED[name][0]}==0.0"] and not verdicts[key, f"{JUDGED[name][0]}!=0.0"]


@pytest.mark.timeout(120)
def test_the_suite_validation_takes_every_threshold_k6_judged(judged: Judged) -> None:
    data = fresh_suite()
    data["tests"][0]["thresholds"] = judged.thresholds
    validate_suite(data)


@pytest.mark.timeout(120)
def test_the_driver_asks_for_every_percentile_the_thresholds_use(judged: Judged, tmp_path: Path) -> None:
    """With the workload's statistics only, the summary lacks the thresholds' other percentiles (k6 still judges
    them); `trend_stats` adds each under the key the summary uses, so every one is there to read."""
    table = {TREND: ["p(99.9)<1000", "p(12.3456789)<1000", "p(95)<1000"]}
    assert trend_stats(as_thresholds(table))[len(SUMMARY_TREND_STATS) :] == ["p(99.9)", "p(12.3456789)"]
    run = run_k6(tmp_path, table, list(SUMMARY_TREND_STATS))
    assert run.exit_code == 0 and run.shape_a is not None, run.stderr
    lacking = check(TREND, "p(99.9)<1000", strip(run.shape_a))
    assert not lacking.passed and lacking.reason.startswith("the summary has no p(99.9) for this metric")
    assert evaluate(as_thresholds(table), run.shape_a)[0] is Verdict.PASSED  # k6 judged it: its verdict stands
    assert judged.judged.shape_a is not None
    values = judged.judged.shape_a.metrics[TREND].values
    assert {stat_key(parse_assertion(f"{a}>0")) for a in TREND_AGGREGATIONS} <= set(values)


REFUSED = [
    # tag filters: k6's ParseMetricName
    (f"{TREND}{{kind:}}", "avg<1", 104, "[key]"),
    (f"{TREND}{{kind:a,}}", "avg<1", 104, "[key]"),
    (f"{TREND}{{kind:a,b}}", "avg<1", 104, "[key]"),
    (f"{TREND}{{kind}}", "avg<1", 104, "[key]"),
    (f"{TREND}{{}}", "avg<1", 104, "[key]"),
    (f"{TREND}{{kind:a,,phase:x}}", "avg<1", 104, "[key]"),
    (f"{TREND}{{:a}}", "avg<1", 2, "[key]"),  # k6 1.1.0 panics on an empty tag key
    (f"{TREND}{{kind:a}} ", "avg<1", 104, "[key]"),
    (f"{TREND} {{kind:a}}", "avg<1", 104, "[key]"),
    # names no metric can have, or that the script lacks
    ("tx.total", "avg<1", 104, "[key]"),
    ("x", "avg<1", 104, "[key]"),
    ("no_such_metric", "avg<1", 104, ""),
    # the expression's grammar
    *[(TREND, expression, 104, "[0].threshold")
      for expression in ("avg<", "avg<<1", "avg", "sum<1", "p95<1", "p( 95 )<1", "AVG<1", "avg=<1", "avg=1", "avg<>1",
                         "avg<=1<2", "")],
    # an aggregation k6's own metrics do not take
    *[(metric, expression, 104, "[0].threshold")
      for metric, expression in (("checks", "avg>0"), ("checks", "p(95)<1"), ("iterations", "p(95)>0"),
                                 ("iterations", "value>0"), ("vus", "count<1"), ("vus", "rate<1"),
                                 ("iteration_duration", "rate<1"), ("iteration_duration", "count<1"))],
    # a percentile outside 0..100: k6 takes it, then panics judging it (109) once the trend has samples
    (TREND, "p(101)<1", 109, "[0].threshold"),
    (TREND, "p(-1)<1", 109, "[0].threshold"),
]  # fmt: skip
"""What k6 refuses (before the run: 104; or by crashing: 2, 109): (metric, expression, k6's exit code, the path
under the test's thresholds where our validation reports it)."""


def validation_issues(metric: str, expression: str) -> list[tuple[str, str]]:
    data = fresh_suite()
    data["tests"][0]["thresholds"] = {metric: [expression]}
    with pytest.raises(InvalidSuiteError) as caught:
        validate_suite(data)
    return [(issue.path, issue.message) for issue in caught.value.issues]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("metric", "expression", "exit_code", "where"), REFUSED, ids=[f"{case[0]} {case[1]}" for case in REFUSED]
)
def test_what_k6_refuses_our_validation_refuses(
    tmp_path: Path, metric: str, expression: str, exit_code: int, where: str
) -> None:
    run = run_k6(tmp_path, {metric: [expression]}, list(SUMMARY_TREND_STATS))
    assert run.exit_code == exit_code, run.stderr
    path = f"tests[0].thresholds.{metric}" + ("." + where if where == "[key]" else where)
    issues = validation_issues(metric, expression)
    assert any(found == path for found, _ in issues), issues


UNKNOWN_TYPES = [(RATE, "p(95)<1"), (RATE, "avg<1"), (TREND, "rate<1"), (TREND, "count<1"), (COUNTER, "avg<1"),
                 (COUNTER, "value<1"), (GAUGE, "count<1"), (GAUGE, "max<1")]  # fmt: skip
"""Aggregations the metric's type does not take, on metrics whose type only the script knows."""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("metric", "expression"), UNKNOWN_TYPES)
def test_an_aggregation_the_type_does_not_take_k6_refuses_and_check_says_so(
    tmp_path: Path, judged: Judged, metric: str, expression: str
) -> None:
    run = run_k6(tmp_path, {metric: [expression]}, list(SUMMARY_TREND_STATS))
    assert run.exit_code == 104 and "unsupported aggregation method" in run.stderr, run.stderr
    assert judged.measured.shape_b is not None
    result = check(metric, expression, strip(judged.measured.shape_b))
    assert not result.passed and "does not apply" in result.reason and "k6 refuses it" in result.reason


STRICTER = [
    (TREND, "avg<1e3"), (TREND, "avg<+1"), (TREND, "avg<.5"), (TREND, "avg<5."), (TREND, "avg\t<1"),
    (TREND, "avg<1\n"), (f"{TREND}{{kind: }}", "avg<1"),
    (f"{TREND}{{kind:a:b}}", "avg<1"), (f"{TREND}{{kind:a}}{{x:y}}", "avg<1"),
]  # fmt: skip
"""What k6 takes but our validation refuses on purpose: numbers and spaces beyond the documented grammar,
and tag filters that match no sample or read ambiguously."""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("metric", "expression"), STRICTER, ids=[f"{m} {e!r}" for m, e in STRICTER])
def test_what_we_refuse_beyond_k6(tmp_path: Path, metric: str, expression: str) -> None:
    run = run_k6(tmp_path, {metric: [expression]}, list(SUMMARY_TREND_STATS))
    assert run.exit_code in (0, 99), run.stderr
    assert validation_issues(metric, expression)


@pytest.mark.timeout(60)
def test_two_names_of_one_submetric_k6_judges_only_one_of_and_validation_refuses(tmp_path: Path) -> None:
    table = {f"{TREND}{{kind:a}}": ["avg<1000"], f"{TREND}{{ kind : 'a' }}": ["avg>1000"]}
    run = run_k6(tmp_path, table, list(SUMMARY_TREND_STATS))
    assert run.shape_a is not None, run.stderr
    judged_by_k6 = [item.expression for item in run.shape_a.thresholds if item.metric.startswith(f"{TREND}{{")]
    assert len(judged_by_k6) == 1 and run.exit_code == (0 if judged_by_k6 == ["avg<1000"] else 99)
    data = fresh_suite()
    data["tests"][0]["thresholds"] = table
    with pytest.raises(InvalidSuiteError, match="names the same"):
        validate_suite(data)
