"""The k6 threshold grammar: `p(95)<200`, `rate>0.99`, `count>=1000`, with tag filters on the metric name.

Only syntax lives here; evaluation against measured metrics comes with the results parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_METRIC = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(\{[^{}:]+:[^{}]*\})?$")
_ASSERTION = re.compile(
    r"^\s*(?P<aggregation>count|rate|value|avg|min|max|med|p\((?P<percentile>\d+(\.\d+)?)\))"
    r"\s*(?P<operator>===|==|!=|>=|<=|>|<)\s*(?P<number>-?\d+(\.\d+)?)\s*$"
)


class Operator(StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="


@dataclass(frozen=True)
class Assertion:
    """One parsed threshold expression."""

    aggregation: str
    operator: Operator
    number: float
    percentile: float | None = None


def parse_assertion(expression: str) -> Assertion:
    """Parse one k6 threshold expression, or raise ValueError saying what the grammar accepts."""
    match = _ASSERTION.match(expression)
    if match is None:
        raise ValueError(
            "not a k6 threshold expression; expected AGGREGATION OPERATOR NUMBER with AGGREGATION one of "
            "count, rate, value, avg, min, max, med, p(N) and OPERATOR one of >, >=, <, <=, ==, ===, !="
        )
    percentile = match.group("percentile")
    if percentile is not None and not 0 <= float(percentile) <= 100:
        raise ValueError("a percentile must lie between 0 and 100")
    operator = match.group("operator")
    return Assertion(
        aggregation="p" if percentile is not None else match.group("aggregation"),
        operator=Operator("==" if operator == "===" else operator),
        number=float(match.group("number")),
        percentile=float(percentile) if percentile is not None else None,
    )


def canonical_metric_name(name: str) -> str:
    """`name{ tag : value, other:x }` -> `name{tag:value,other:x}`: k6 trims each tag's key and value, so a
    threshold and a summary key that differ only in spaces name the same submetric."""
    base, brace, filters = name.partition("{")
    if not brace:
        return name.strip()
    pairs = [pair.split(":", 1) for pair in filters.rstrip().removesuffix("}").split(",") if pair.strip()]
    return base.strip() + "{" + ",".join(":".join(part.strip() for part in pair) for pair in pairs) + "}"


def check_metric_name(name: str) -> str:
    """A metric name with an optional `{tag:value}` filter, as k6 accepts it."""
    if not _METRIC.match(name):
        raise ValueError("expected a k6 metric name such as 'http_req_duration' or 'tpcc_duration{type:new_order}'")
    return name
