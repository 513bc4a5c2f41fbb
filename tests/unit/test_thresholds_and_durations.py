"""The k6 threshold grammar and k6-style durations."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from stroppy_domain.durations import Seconds, parse_duration
from stroppy_domain.thresholds import (
    Operator,
    aggregation_problem,
    canonical_metric_name,
    check_metric_name,
    parse_assertion,
    stat_key,
)

ASSERTIONS = [
    ("p(95)<200", "p", Operator.LT, 200.0, 95.0),
    ("p(99.9) <= 1500.5", "p", Operator.LE, 1500.5, 99.9),
    ("rate>0.99", "rate", Operator.GT, 0.99, None),
    ("count>=1000", "count", Operator.GE, 1000.0, None),
    ("avg<100", "avg", Operator.LT, 100.0, None),
    ("med!=3", "med", Operator.NE, 3.0, None),
    ("value===1", "value", Operator.EQ, 1.0, None),
    ("max==2", "max", Operator.EQ, 2.0, None),
    ("min > -1", "min", Operator.GT, -1.0, None),
]


@pytest.mark.parametrize(("text", "aggregation", "operator", "number", "percentile"), ASSERTIONS)
def test_parse_assertion(text: str, aggregation: str, operator: Operator, number: float, percentile: float) -> None:
    parsed = parse_assertion(text)
    assert (parsed.aggregation, parsed.operator, parsed.number, parsed.percentile) == (
        aggregation,
        operator,
        number,
        percentile,
    )


@pytest.mark.parametrize("text", ["p95<200", "rate>>1", "avg", "<3", "sum<3", "p(101)<3", "rate>abc", ""])
def test_bad_assertions(text: str) -> None:
    with pytest.raises(ValueError, match=r"k6 threshold|percentile"):
        parse_assertion(text)


@pytest.mark.parametrize(
    "name",
    ["http_req_duration", "tpcc_new_order{type:new_order}", "checks", "mm{a:b,c:d}", "mm{ a : 'b' }", "mm{a:b c}",
     "_x", "m" * 129],
)  # fmt: skip
def test_metric_names(name: str) -> None:
    assert check_metric_name(name) == name


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("checks", "checks"), ("m{ a : b }", "m{a:b}"), ("m{a:b, c:d}", "m{a:b,c:d}"), ("m{a:b c}", "m{a:b c}"),
     # k6 makes one submetric of a set of tags: trimmed of spaces and quotes, in any order, the last value kept
     ("m{kind : b}", "m{kind:b}"), ("m{ kind:'a' }", "m{kind:a}"), ('m{"kind":"a"}', "m{kind:a}"),
     ("m{b:2, a:1}", "m{a:1,b:2}"), ("m{a:1,a:2}", "m{a:2}")],
)  # fmt: skip
def test_canonical_metric_names(name: str, canonical: str) -> None:
    assert canonical_metric_name(name) == canonical


@pytest.mark.parametrize(
    "name",
    ["bad name", "1abc", "mm{tag}", "mm{a:b}{c:d}",
     # k6 refuses these filters (exit 104), or crashes on them (an empty key)
     "mm{kind:}", "mm{kind:a,}", "mm{kind:a,b}", "mm{}", "mm{kind:a,,b:c}", "mm{:a}", "mm{kind:a} ", "mm {kind:a}",
     # no metric k6 can create has these names (exit 104)
     "a.b", "x", "m" * 130, "m-1",
     # k6 takes these filters, but they match no sample or read ambiguously
     "mm{kind: }", "mm{'':a}", "mm{kind:a:b}", "mm{kind:a"],
)  # fmt: skip
def test_bad_metric_names(name: str) -> None:
    with pytest.raises(ValueError, match=r"metric name|tag filter"):
        check_metric_name(name)


@pytest.mark.parametrize(
    ("metric_type", "expression", "problem"),
    [("trend", "p(99.9)<1", None), ("trend", "count<1", "'count' does not apply to a trend metric, which takes avg, "
      "min, max, med, p(N)"), ("rate", "p(95)<1", "'p(95)' does not apply to a rate metric, which takes rate"),
     ("rate", "rate<1", None), ("counter", "rate>1", None), ("counter", "value>1", "takes count, rate"),
     ("gauge", "value>1", None), ("gauge", "max>1", "takes value")],
)  # fmt: skip
def test_aggregations_by_metric_type(metric_type: str, expression: str, problem: str | None) -> None:
    found = aggregation_problem(metric_type, parse_assertion(expression))
    assert found == problem if problem is None else problem in (found or "")


@pytest.mark.parametrize(
    ("expression", "key"),
    [("avg<1", "avg"), ("p(95)<1", "p(95)"), ("p(95.0)<1", "p(95)"), ("p(99.90)<1", "p(99.9)"),
     ("p(12.3456789)<1", "p(12.3456789)"), ("p(0.001)<1", "p(0.001)")],
)  # fmt: skip
def test_stat_keys_are_the_summary_keys(expression: str, key: str) -> None:
    assert stat_key(parse_assertion(expression)) == key


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("5m", 300), ("1h30m", 5400), ("1h0m5s", 3605)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "1m1h", " "])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text",
    ["p(95)<200\n", "rate>0.9\r", "\tp(95)<200", "p(95)<\u0662\u0660\u0660", "p(\u0669\u0665)<200", "p(95)\uff1c200",
     "rate\u2265 0.9", "avg<1\u00a0", "count>=1e3"],
)  # fmt: skip
def test_line_breaks_other_digits_and_lookalikes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="k6 threshold"):
        parse_assertion(text)


def test_a_threshold_number_is_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_assertion("avg<" + "9" * 400)


@pytest.mark.parametrize("name", ["checks\n", "m{a:b}\n", "m{a:\n}", "m{a\u2028:b}", "m\u0661"])
def test_metric_names_are_one_line(name: str) -> None:
    with pytest.raises(ValueError, match="metric name"):
        check_metric_name(name)


@pytest.mark.parametrize("text", ["\u0665m", "5m\n", "1234567890s", "5 m"])
def test_durations_are_ascii_and_bounded(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "error"),
    [(True, "boolean"), (False, "boolean"), (1.5, "whole seconds"), (0, "more than 0"), ("0s", "more than 0"),
     (-5, "more than 0"), ("8785h", "at most 8784h"), (float("nan"), "whole seconds")],
)  # fmt: skip
def test_duration_fields_refuse_what_is_never_a_duration(value: object, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        TypeAdapter(Seconds).validate_python(value)


@pytest.mark.parametrize(
    ("value", "seconds"), [("5m", 300), (" 5m ", 300), (300, 300), (300.0, 300), ("8784h", 31622400)]
)
def test_duration_fields_take_the_forms_users_write(value: object, seconds: int) -> None:
    assert TypeAdapter(Seconds).validate_python(value) == seconds
