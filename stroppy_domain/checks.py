"""Thresholds against measured metrics: each check with its observed value, and the verdict they decide."""

from __future__ import annotations

import operator
from collections.abc import Callable
from enum import StrEnum

from stroppy_domain.model import Model, Thresholds
from stroppy_domain.results import LoadMetrics, MetricType
from stroppy_domain.thresholds import Assertion, Operator, canonical_metric_name, parse_assertion

_COMPARE: dict[Operator, Callable[[float, float], bool]] = {
    Operator.GT: operator.gt,
    Operator.GE: operator.ge,
    Operator.LT: operator.lt,
    Operator.LE: operator.le,
    Operator.EQ: operator.eq,
    Operator.NE: operator.ne,
}
_ALLOWED = {
    MetricType.TREND: {"avg", "min", "max", "med", "p"},
    MetricType.COUNTER: {"count", "rate"},
    MetricType.GAUGE: {"value"},
    MetricType.RATE: {"rate"},
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


def _key(assertion: Assertion) -> str:
    if assertion.percentile is None:
        return assertion.aggregation
    percentile = assertion.percentile
    return f"p({int(percentile) if percentile.is_integer() else percentile})"


def check(metric_name: str, expression: str, metrics: LoadMetrics) -> ThresholdCheck:
    assertion = parse_assertion(expression)
    wanted = canonical_metric_name(metric_name)
    metric = next((m for name, m in metrics.metrics.items() if canonical_metric_name(name) == wanted), None)
    if metric is None:
        return ThresholdCheck(metric=metric_name, expression=expression, observed=None, passed=False,
                              reason="the load reported no such metric")  # fmt: skip
    if assertion.aggregation not in _ALLOWED[metric.type]:
        return ThresholdCheck(metric=metric_name, expression=expression, observed=None, passed=False,
                              reason=f"'{assertion.aggregation}' does not apply to a {metric.type} metric")  # fmt: skip
    observed = metric.values.get(_key(assertion))
    if observed is None:
        return ThresholdCheck(metric=metric_name, expression=expression, observed=None, passed=False,
                              reason=f"the summary has no {_key(assertion)} for this metric")  # fmt: skip
    passed = _COMPARE[assertion.operator](observed, assertion.number)
    return ThresholdCheck(metric=metric_name, expression=expression, observed=observed, passed=passed)


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
