"""The k6 threshold grammar: `p(95)<200`, `rate>0.99`, `count>=1000`, with tag filters on the metric name.

Syntax lives here, with what k6 decides before a run: the names and tag filters it takes, the aggregations each type
of metric takes, and the key of each statistic in its summary. Evaluation against measured metrics is in `checks`;
tests/integration/test_k6_conformance.py holds both to the real k6.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

_METRIC_BASE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{1,128}")
"""k6's rule for a metric's name (2 to 129 ASCII letters, digits and underscores, not starting with a digit): k6
refuses to create any other, so a threshold on any other name can never find its metric."""
_TAG_TEXT = re.compile(r"[^{}:,\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_QUOTES_AND_SPACES = " \"'"
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


def _tag_part(text: str) -> str:
    """A tag's key or value as k6 compares it: spaces trimmed, then quotes (`metrics.Metric.AddSubmetric`)."""
    return text.strip().strip("\"'")


def canonical_metric_name(name: str) -> str:
    """`name{ tag : 'value', other:x }` -> `name{other:x,tag:value}`: the submetric k6 makes of a threshold's name
    is the set of its tags, each key and value trimmed of spaces and quotes, a key given twice taking its last value
    (`metrics.Metric.AddSubmetric`). So a threshold and a summary key that differ only in spaces, quotes or the
    order of their tags name the same submetric. Lenient: it never raises, whatever k6 wrote."""
    base, brace, filters = name.partition("{")
    if not brace:
        return name.strip()
    tags: dict[str, str] = {}
    for pair in filters.rstrip().removesuffix("}").split(","):
        key, _, value = pair.partition(":")
        if pair.strip():
            tags[_tag_part(key)] = _tag_part(value)
    return base.strip() + "{" + ",".join(f"{key}:{value}" for key, value in sorted(tags.items())) + "}"


def _filter_problem(filters: str) -> str | None:
    """Why k6 would refuse (or never match) the tag filter between the braces, or None."""
    for tag in filters.split(","):
        key, colon, value = tag.partition(":")
        if not colon or not _TAG_TEXT.fullmatch(key) or not _TAG_TEXT.fullmatch(value):
            return (
                f"the tag filter {tag!r} is not KEY:VALUE; k6 refuses a filter with an empty part, a tag without a "
                "value, or a brace, colon, comma or control character in a key or value"
            )
        if not key.strip(_QUOTES_AND_SPACES) or not value.strip(_QUOTES_AND_SPACES):
            return f"the tag filter {tag!r} has an empty key or value, which no sample carries"
    return None


def check_metric_name(name: str) -> str:
    """A metric name with an optional `{tag:value,...}` filter, as k6 accepts it.

    k6 parses it in `metrics.ParseMetricName`.

    Raises ValueError for anything else: a name k6 cannot create, a filter k6 refuses (`{kind:}`, `{kind:a,}`,
    `{kind:a,b}`) or one that matches no sample (`{kind: }`), a line break or control character."""
    base, brace, rest = name.partition("{")
    if not _METRIC_BASE.fullmatch(base) or (brace and not rest.endswith("}")):
        raise ValueError(
            "expected a k6 metric name (2 to 129 letters, digits and underscores) with an optional tag filter, "
            "such as 'http_req_duration' or 'tpcc_duration{type:new_order}'"
        )
    problem = _filter_problem(rest[:-1]) if brace else None
    if problem is not None:
        raise ValueError(f"metric name {name!r}: {problem}")
    return name


AGGREGATIONS: dict[str, tuple[str, ...]] = {
    "counter": ("count", "rate"),
    "gauge": ("value",),
    "rate": ("rate",),
    "trend": ("avg", "min", "max", "med", "p"),
}
"""The aggregations k6 lets a threshold use on each type of metric; any other fails the run before it starts
(`metrics.Threshold` validation, exit 104)."""

K6_BUILTIN_TYPES: dict[str, str] = {
    "checks": "rate", "data_received": "counter", "data_sent": "counter", "dropped_iterations": "counter",
    "group_duration": "trend", "iteration_duration": "trend", "iterations": "counter", "vus": "gauge",
    "vus_max": "gauge", "http_reqs": "counter", "http_req_failed": "rate", "http_req_duration": "trend",
}  # fmt: skip
"""The types of k6's own metrics, which every script has."""


def aggregation_problem(metric_type: str, assertion: Assertion) -> str | None:
    """Why k6 refuses `assertion` on a metric of `metric_type` (before the run, exit 104), or None."""
    allowed = AGGREGATIONS[metric_type]
    if assertion.aggregation in allowed:
        return None
    takes = ", ".join("p(N)" if name == "p" else name for name in allowed)
    return f"'{stat_key(assertion)}' does not apply to a {metric_type} metric, which takes {takes}; k6 refuses it"


def stat_key(assertion: Assertion) -> str:
    """The key of the assertion's statistic in k6's summary, as `--summary-trend-stats` names it: `avg`, `p(95)`,
    `p(99.9)` (Go's shortest `%g`, never rounded to fewer digits)."""
    if assertion.percentile is None:
        return assertion.aggregation
    percentile = assertion.percentile
    return f"p({int(percentile) if percentile.is_integer() else percentile!r})"
