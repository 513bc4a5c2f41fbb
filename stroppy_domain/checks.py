"""Thresholds against measured metrics: each check with its observed value, and the verdict they decide."""

from __future__ import annotations

import operator
from collections.abc import Callable
from enum import StrEnum

from stroppy_domain.model import Model, Thresholds
from stroppy_domain.results import LoadMetrics, MetricType
from stroppy_domain.thresholds import (
    Operator,
    aggregation_problem,
    canonical_metric_name,
    parse_assertion,
    stat_key,
)

_COMPARE: dict[Operator, Callable[[float, float], bool]] = {
    Operator.GT: operator.gt,
    Operator.GE: operator.ge,
    Operator.LT: operator.lt,
    Operator.LE: operator.le,
    Operator.EQ: operator.eq,
    Operator.NE: operator.ne,
}


class Verdict(StrEnum):
    PASSED = "PASSED"
    FAILED = "FAILED"
    ERROR = "ERROR"


class ThresholdCheck(Model):
    metric: str
    expression: str
    observed: float | None
    passed: bool
    reason: str = ""


def _samples(values: dict[str, float]) -> float | None:
    """How many samples a rate metric had: passes + fails (shapes A and B), total (the machine-readable shape)."""
    if "total" in values:
        return values["total"]
    if "passes" in values and "fails" in values:
        return values["passes"] + values["fails"]
    return None


def check(metric_name: str, expression: str, metrics: LoadMetrics) -> ThresholdCheck:
    """One threshold against the summary, read as k6 reads it (`metrics.Thresholds.Run`):

    - a rate without samples is not judged and passes (k6 skips it rather than divide by zero); a counter, gauge or
      trend without samples is judged on the zeros the summary shows;
    - an aggregation the metric's type does not take fails, saying that k6 refuses such a threshold before the run;
    - a statistic the summary lacks (a percentile `--summary-trend-stats` did not ask for) fails, naming it."""
    assertion = parse_assertion(expression)
    wanted = canonical_metric_name(metric_name)
    metric = next((m for name, m in metrics.metrics.items() if canonical_metric_name(name) == wanted), None)

    def result(observed: float | None, passed: bool, reason: str = "") -> ThresholdCheck:
        return ThresholdCheck(metric=metric_name, expression=expression, observed=observed, passed=passed,
                              reason=reason)  # fmt: skip

    if metric is None:
        return result(None, False, "the load reported no such metric")
    problem = aggregation_problem(metric.type, assertion)
    if problem is not None:
        return result(None, False, f"{problem} before the run (exit 104)")
    if metric.type is MetricType.RATE and _samples(metric.values) == 0:
        return result(None, True, "the rate has no samples; k6 does not judge it")
    key = stat_key(assertion)
    observed = metric.values.get(key)
    if observed is None:
        return result(None, False, f"the summary has no {key} for this metric (not in --summary-trend-stats)")
    return result(observed, _COMPARE[assertion.operator](observed, assertion.number))


def evaluate(thresholds: Thresholds, metrics: LoadMetrics) -> tuple[Verdict, list[ThresholdCheck]]:
    """Every threshold of the test, plus those the load tool judged itself; FAILED when any did not pass.

    Where the load tool (k6) judged a threshold of the test, its verdict stands and the observed value is read from
    the summary; the others are checked here."""
    reported = {(canonical_metric_name(item.metric), item.expression): item.passed for item in metrics.thresholds}
    checks = []
    for name, rules in thresholds.items():
        for rule in rules:
            item = check(name, rule.threshold, metrics)
            judged = reported.pop((canonical_metric_name(name), rule.threshold), None)
            if judged is not None:
                item = item.model_copy(update={"passed": judged, "reason": "judged by k6"})
            checks.append(item)
    checks += [
        ThresholdCheck(
            metric=item.metric,
            expression=item.expression,
            observed=None,
            passed=item.passed,
            reason="as reported by the load tool",
        )
        for item in metrics.thresholds
        if (canonical_metric_name(item.metric), item.expression) in reported
    ]
    return (Verdict.PASSED if all(item.passed for item in checks) else Verdict.FAILED), checks
