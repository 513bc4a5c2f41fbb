"""The k6 threshold grammar: `p(95)<200`, `rate>0.99`, `count>=1000`, with tag filters on the metric name.

Only syntax lives here; evaluation against measured metrics comes with the results parser.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

_TAG_TEXT = r"[^{}:\x00-\x1f\x7f-\x9f\u2028\u2029]"
_METRIC = re.compile(rf"[A-Za-z_][A-Za-z0-9_.]*(\{{{_TAG_TEXT}+:{_TAG_TEXT}*\}})?")
_ASSERTION = re.compile(
    r" *(?P<aggregation>count|rate|value|avg|min|max|med|p\((?P<percentile>[0-9]+(\.[0-9]+)?)\))"
    r" *(?P<operator>===|==|!=|>=|<=|>|<) *(?P<number>-?[0-9]+(\.[0-9]+)?) *"
)
"""Matched whole (`fullmatch`): ASCII digits, spaces between the parts and nothing else; no line breaks, tabs or
other Unicode digits and lookalikes, which k6 would read differently or not at all."""


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
    """Parse one k6 threshold expression, or raise ValueError saying what the grammar accepts (or that its number
    or percentile is out of range)."""
    match = _ASSERTION.fullmatch(expression)
    if match is None:
        raise ValueError(
            "not a k6 threshold expression; expected AGGREGATION OPERATOR NUMBER with AGGREGATION one of "
            "count, rate, value, avg, min, max, med, p(N) and OPERATOR one of >, >=, <, <=, ==, ===, !="
        )
    percentile = match.group("percentile")
    if percentile is not None and not 0 <= float(percentile) <= 100:
        raise ValueError("a percentile must lie between 0 and 100")
    number = float(match.group("number"))
    if not math.isfinite(number):
        raise ValueError("a threshold's number must be finite")
    operator = match.group("operator")
    return Assertion(
        aggregation="p" if percentile is not None else match.group("aggregation"),
        operator=Operator("==" if operator == "===" else operator),
        number=number,
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
    """A metric name with an optional `{tag:value}` filter, as k6 accepts it.

    Raises ValueError for anything else, a line break or control character included."""
    if not _METRIC.fullmatch(name):
        raise ValueError("expected a k6 metric name such as 'http_req_duration' or 'tpcc_duration{type:new_order}'")
    return name
