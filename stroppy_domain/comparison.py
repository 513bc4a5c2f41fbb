"""Repetitions and comparisons within a suite: in which order the runs go, what the repetitions of a test add up to,
and whether a candidate differs from its baseline beyond noise. Pure: values in, verdicts out.

How a comparison decides. Throughput and latency are ratios at heart ("15% faster"), and their run-to-run noise grows
with their size, so the runs are compared on the logarithm of their values: Welch's two-sample t-test (scipy) between
the candidate's and the baseline's log values gives a 95% confidence interval for the difference, which, exponentiated,
is an interval for the ratio of their geometric means; the change and its interval are reported in percent. Welch's
rather than Student's test: two topologies need not be equally noisy. Then, with `min_effect` the smallest change that
matters (an equivalence margin, as in a TOST procedure):

- the interval excludes 0 and the change is at least `min_effect`: `better` or `worse`;
- the interval excludes 0 but the change is smaller than `min_effect`: `negligible` (real, too small to matter);
- the interval lies inside ±`min_effect`: `equivalent` (any difference is too small to matter);
- otherwise: `inconclusive`, the runs cannot tell them apart; more repetitions narrow the interval.

A test's repetitions are summed up by their median (robust to one odd run) and the 95% t-interval of their mean.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from typing import Literal

from stroppy_domain.model import BenchmarkTest, Comparison, Driver, MetricChoice, Model, Suite
from stroppy_domain.thresholds import parse_assertion

CONFIDENCE = 0.95
MIN_RUNS = 2
"""Runs of each side below which no interval can be computed."""
HEADLINE = {Driver.PGBENCH: ("tps", "value"), Driver.STROPPY: ("iterations", "rate")}
"""What a repeated test is summed up by when nothing in the suite names a metric of it."""


def run_order(suite: Suite) -> list[tuple[int, int]]:
    """Every run of the suite as (test index, repetition from 1), in the order they start: a test's repetitions one
    after another, except for tests compared with each other, whose runs alternate (A B A B ...) so that a drift of
    the host over the suite hits all of them alike."""
    index_of = {test.name: index for index, test in enumerate(suite.tests)}
    group_of = list(range(len(suite.tests)))

    def root(index: int) -> int:
        while group_of[index] != index:
            index = group_of[index]
        return index

    for comparison in suite.compare:
        members = [index_of[name] for name in [comparison.baseline, *comparison.candidates] if name in index_of]
        for member in members[1:]:
            group_of[root(member)] = root(members[0])
    order: list[tuple[int, int]] = []
    started: set[int] = set()
    for index in range(len(suite.tests)):
        group = root(index)
        if group in started:
            continue
        started.add(group)
        members = [member for member in range(len(suite.tests)) if root(member) == group]
        for repetition in range(1, max(suite.tests[member].repeat for member in members) + 1):
            order += [(member, repetition) for member in members if repetition <= suite.tests[member].repeat]
    return order


def comparison_problems(suite: Suite) -> Iterator[tuple[tuple[str | int, ...], str, object]]:
    """(path, message, value) for each comparison naming a test the suite does not have, or a test twice."""
    names = [test.name for test in suite.tests]
    for index, comparison in enumerate(suite.compare):
        named = [("baseline",), *(("candidates", position) for position in range(len(comparison.candidates)))]
        seen: set[str] = set()
        for location, name in zip(named, [comparison.baseline, *comparison.candidates], strict=True):
            path = ("compare", index, *location)
            if name not in names:
                yield path, f"no test of the suite is named so; its tests: {', '.join(names)}", name
            elif name in seen:
                yield path, "each test once in a comparison", name
            seen.add(name)


def summed_metrics(test: BenchmarkTest, suite: Suite) -> list[tuple[str, str]]:
    """(metric, aggregate) pairs a test's repetitions are summed up by: those its comparisons, regression rule and
    thresholds name, else its driver's headline."""
    chosen: list[MetricChoice] = [c for c in suite.compare if test.name in (c.baseline, *c.candidates)]
    if test.regression is not None:
        chosen.append(test.regression)
    pairs = [(choice.metric, choice.aggregate) for choice in chosen]
    for metric, rules in test.thresholds.items():
        pairs += [(metric, parse_assertion(rule.threshold).aggregation) for rule in rules]
    return list(dict.fromkeys(pairs)) or [HEADLINE[test.stroppy.driver]]


class Repetitions(Model):
    """One metric over the repetitions of a test that measured it."""

    test: str
    metric: str
    aggregate: str
    runs: int
    values: list[float]
    median: float | None
    ci_low: float | None
    """The 95% confidence interval of the mean; None with fewer than two values."""
    ci_high: float | None


def repetitions(test: str, metric: str, aggregate: str, values: list[float]) -> Repetitions:
    from scipy import stats  # noqa: PLC0415  # SciPy (the `history` extra) loads only when a suite sums up

    low = high = None
    if len(values) >= MIN_RUNS:
        mean, error = statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
        margin = float(stats.t.ppf((1 + CONFIDENCE) / 2, len(values) - 1)) * error
        low, high = mean - margin, mean + margin
    return Repetitions(
        test=test, metric=metric, aggregate=aggregate, runs=len(values), values=values,
        median=statistics.median(values) if values else None, ci_low=low, ci_high=high,
    )  # fmt: skip


ComparisonVerdictName = Literal["better", "worse", "negligible", "equivalent", "inconclusive", "insufficient_runs"]


class ComparisonVerdict(Model):
    baseline: str
    candidate: str
    metric: str
    aggregate: str
    baseline_runs: int
    candidate_runs: int
    change_percent: float | None
    """The candidate's geometric mean against the baseline's, in percent: negative when the value went down."""
    ci_low_percent: float | None
    ci_high_percent: float | None
    p_value: float | None
    verdict: ComparisonVerdictName
    summary: str


def compare(
    comparison: Comparison, candidate: str, baseline_values: list[float], candidate_values: list[float]
) -> ComparisonVerdict:
    """The verdict on `candidate` against `comparison.baseline`, from the metric's value in each of their runs."""
    label = f"{comparison.metric} {comparison.aggregate}"
    facts = {
        "baseline": comparison.baseline, "candidate": candidate, "metric": comparison.metric,
        "aggregate": comparison.aggregate, "baseline_runs": len(baseline_values),
        "candidate_runs": len(candidate_values),
    }  # fmt: skip
    unjudged = {"change_percent": None, "ci_low_percent": None, "ci_high_percent": None, "p_value": None}
    if min(len(baseline_values), len(candidate_values)) < MIN_RUNS:
        summary = (
            f"{label}: cannot tell, {len(candidate_values)} run(s) against {len(baseline_values)}; each side needs "
            f"at least {MIN_RUNS} (say `repeat: 3` or more on both tests)"
        )
        return ComparisonVerdict(**facts, **unjudged, verdict="insufficient_runs", summary=summary)
    if min(baseline_values + candidate_values) <= 0:
        summary = f"{label}: cannot compare values that are not all above 0"
        return ComparisonVerdict(**facts, **unjudged, verdict="inconclusive", summary=summary)
    change, low, high, p_value = _log_ratio_interval(baseline_values, candidate_values)
    verdict = _verdict(change, low, high, comparison)
    interval = f"95% CI {low:+.1f}% .. {high:+.1f}%"
    meaning = {
        "better": f"better, beyond the {comparison.min_effect:g}% that matters",
        "worse": f"worse, beyond the {comparison.min_effect:g}% that matters",
        "negligible": f"a real change, smaller than the {comparison.min_effect:g}% that matters",
        "equivalent": f"no difference of {comparison.min_effect:g}% or more",
        "inconclusive": "the runs cannot tell them apart",
    }[verdict]
    summary = f"{change:+.1f}% {label}, {interval}: {meaning}"
    return ComparisonVerdict(
        **facts, change_percent=change, ci_low_percent=low, ci_high_percent=high, p_value=p_value, verdict=verdict,
        summary=summary,
    )  # fmt: skip


def _log_ratio_interval(baseline: list[float], candidate: list[float]) -> tuple[float, float, float, float]:
    """The change from the baseline's geometric mean to the candidate's, its 95% interval (all in percent) and the
    p-value of Welch's test on the log values."""
    from scipy import stats  # noqa: PLC0415

    logs_baseline, logs_candidate = [math.log(v) for v in baseline], [math.log(v) for v in candidate]
    difference = statistics.fmean(logs_candidate) - statistics.fmean(logs_baseline)
    if statistics.pstdev(logs_baseline) == 0 and statistics.pstdev(logs_candidate) == 0:
        # No noise at all: the difference is exact (SciPy would answer NaN).
        low = high = difference
        p_value = 1.0 if difference == 0 else 0.0
    else:
        test = stats.ttest_ind(logs_candidate, logs_baseline, equal_var=False)
        interval = test.confidence_interval(CONFIDENCE)
        low, high, p_value = float(interval.low), float(interval.high), float(test.pvalue)
    return _percent(difference), _percent(low), _percent(high), p_value


def _percent(log_ratio: float) -> float:
    return math.expm1(log_ratio) * 100


def _verdict(change: float, low: float, high: float, comparison: Comparison) -> ComparisonVerdictName:
    margin = comparison.min_effect
    if low > 0 or high < 0:
        if abs(change) < margin:
            return "negligible"
        return "better" if (change > 0) == comparison.higher_is_better else "worse"
    if -margin < low and high < margin:
        return "equivalent"
    return "inconclusive"


def compare_runs(suite: Suite, values: dict[tuple[str, str, str], list[float]]) -> list[ComparisonVerdict]:
    """Every comparison of `suite`, each candidate against its baseline; `values` holds, by (test, metric,
    aggregate), the value of each run that measured it."""
    verdicts = []
    for comparison in suite.compare:
        key = (comparison.metric, comparison.aggregate)
        baseline = values.get((comparison.baseline, *key), [])
        verdicts += [
            compare(comparison, name, baseline, values.get((name, *key), [])) for name in comparison.candidates
        ]
    return verdicts


def sum_up(
    suite: Suite, runs: list[tuple[str, dict[str, dict[str, float]]]]
) -> tuple[list[Repetitions], list[ComparisonVerdict]]:
    """The repetitions of each repeated test and the verdict of each comparison, from the runs that measured
    something: (test name, its metrics as metric -> aggregate -> value)."""
    values: dict[tuple[str, str, str], list[float]] = {}
    for test, metrics in runs:
        for metric, aggregates in metrics.items():
            for aggregate, value in aggregates.items():
                if math.isfinite(value):
                    values.setdefault((test, metric, aggregate), []).append(value)
    repeated = [
        repetitions(test.name, metric, aggregate, values.get((test.name, metric, aggregate), []))
        for test in suite.tests
        if test.repeat > 1
        for metric, aggregate in summed_metrics(test, suite)
    ]
    return repeated, compare_runs(suite, values)
