"""Summary parsing (k6 shapes A, B, C and pgbench) and threshold verdicts, from the k6 reference's own example."""

from __future__ import annotations

import json

import pytest

from stroppy_domain.checks import Verdict, check, evaluate
from stroppy_domain.model import ThresholdRule
from stroppy_domain.results import MetricType, SummaryError, parse_k6_summary, parse_pgbench_report

SHAPE_A = {
    "state": {"testRunDurationMs": 600123.4},
    "metrics": {
        "tpcc_new_order_duration": {
            "type": "trend", "contains": "time",
            "values": {"avg": 41.2, "min": 3.1, "med": 35.0, "max": 910.4, "p(90)": 77.9, "p(95)": 96.3,
                       "p(99)": 180.2},
            "thresholds": {"p(90)<5000": {"ok": True}},
        },
        "checks": {"type": "rate", "contains": "default", "values": {"rate": 0.982, "passes": 9820, "fails": 180},
                   "thresholds": {"rate>0.99": {"ok": False}}},
        "iterations": {"type": "counter", "contains": "default", "values": {"count": 10000, "rate": 16.66}},
    },
}  # fmt: skip
SHAPE_B = {
    "metrics": {
        "tpcc_new_order_duration": {"avg": 41.2, "min": 3.1, "med": 35.0, "max": 910.4, "p(90)": 77.9, "p(95)": 96.3,
                                    "p(99)": 180.2, "thresholds": {"p(90)<5000": False}},
        "checks": {"value": 0.982, "passes": 9820, "fails": 180, "thresholds": {"rate>0.99": True}},
        "iterations": {"count": 10000, "rate": 16.66},
        "tx_duration{type:new_order}": {"avg": 12.5, "p(95)": 30.0},
        "tx_error_rate": {"value": 0, "passes": 0, "fails": 0},
        "tx_error_rate{kind:a}": {"value": 0.5, "passes": 1, "fails": 1},
        "tx_count": {"count": 0, "rate": 0},
        "tx_tps": {"value": 0, "min": 0, "max": 0},
        "tx_empty_duration": {"avg": 0, "min": 0, "med": 0, "max": 0, "p(95)": 0},
    }
}  # fmt: skip
SHAPE_C = {
    "version": "1.0.0",
    "results": {
        "checks": {"metrics": [{"name": "checks", "type": "rate", "contains": "default",
                                "values": {"matches": 9820, "total": 10000, "rate": 0.982}}], "results": []},
        "metrics": [{"name": "iterations", "type": "counter", "contains": "default", "values": {"count": 10000}}],
    },
}  # fmt: skip


@pytest.mark.parametrize("document", [SHAPE_A, SHAPE_B], ids=["handleSummary", "summary-export"])
def test_shapes_a_and_b_read_the_same(document: dict) -> None:
    parsed = parse_k6_summary(json.dumps(document))
    assert parsed.metrics["checks"].type is MetricType.RATE
    assert parsed.metrics["checks"].values["rate"] == 0.982
    assert parsed.metrics["iterations"].type is MetricType.COUNTER
    assert parsed.metrics["tpcc_new_order_duration"].values["p(95)"] == 96.3
    reported = {(t.metric, t.expression): t.passed for t in parsed.thresholds}
    assert reported == {("tpcc_new_order_duration", "p(90)<5000"): True, ("checks", "rate>0.99"): False}


def test_the_new_machine_readable_shape_has_metrics_but_no_thresholds() -> None:
    parsed = parse_k6_summary(json.dumps(SHAPE_C))
    assert parsed.metrics["checks"].values["rate"] == 0.982
    assert parsed.metrics["iterations"].values == {"count": 10000.0}
    assert parsed.thresholds == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "not JSON"), ("[]", "JSON object"), ('{"metrics": {}}', "no metrics"), ('{"metrics": {"x": 3}}', "object")],
)
def test_unreadable_summaries_say_why(text: str, reason: str) -> None:
    with pytest.raises(SummaryError, match=reason):
        parse_k6_summary(text)


PGBENCH = """pgbench (17.12 (Debian 17.12-0+deb13u1))
transaction type: <builtin: TPC-B (sort of)>
number of clients: 2
number of transactions actually processed: 13627
number of failed transactions: 0 (0.000%)
latency average = 1.467 ms
latency stddev = 0.654 ms
initial connection time = 4.321 ms
tps = 1362.702835 (without initial connection time)
"""


def test_pgbench_report() -> None:
    parsed = parse_pgbench_report(PGBENCH)
    assert parsed.metrics["tps"].values == {"value": 1362.702835}
    assert parsed.metrics["transactions"].values == {"count": 13627.0}
    assert parsed.metrics["latency"].values == {"avg": 1.467, "stddev": 0.654}
    assert parsed.metrics["failed_transactions"].values == {"count": 0.0}


def test_an_unfinished_pgbench_run_is_an_error() -> None:
    with pytest.raises(SummaryError, match="lacks transactions, tps, latency_avg_ms"):
        parse_pgbench_report("progress: 5.0 s, 1321.0 tps, lat 1.505 ms stddev 0.606, 0 failed\n")


CHECKS = [
    ("tpcc_new_order_duration", "p(95)<200", 96.3, True, ""),
    ("tpcc_new_order_duration", "p(99)<100", 180.2, False, ""),
    ("tpcc_new_order_duration", "avg<=41.2", 41.2, True, ""),
    ("checks", "rate>0.99", 0.982, False, ""),
    ("iterations", "count>=10000", 10000.0, True, ""),
    ("iterations", "avg<1", None, False, "does not apply to a counter"),
    ("tpcc_new_order_duration", "p(99.9)<1", None, False, "no p(99.9)"),
    ("absent", "rate>0", None, False, "no such metric"),
    ("tx_duration{type:new_order}", "p(95)<50", 30.0, True, ""),
    ("tx_duration{ type : new_order }", "avg<10", 12.5, False, ""),
    ("tx_duration{type:payment}", "avg<10", None, False, "no such metric"),
    # what k6 does with metrics without samples: a rate is not judged, the others are judged on zeros
    ("tx_error_rate", "rate>0.5", None, True, "no samples; k6 does not judge it"),
    ("tx_error_rate", "rate<0.5", None, True, "no samples"),
    ("tx_error_rate{kind:a}", "rate>0.5", 0.5, False, ""),
    ("tx_count", "count>0", 0.0, False, ""),
    ("tx_tps", "value>=0", 0.0, True, ""),
    ("tx_empty_duration", "p(95)>0", 0.0, False, ""),
    # what k6 refuses before the run: said so
    ("tx_error_rate", "p(95)<1", None, False, "'p(95)' does not apply to a rate metric, which takes rate; k6 refuses"),
    ("tx_tps", "max<1", None, False, "which takes value; k6 refuses it before the run (exit 104)"),
    # submetrics named as k6 names them in its summary: spaces, quotes and the order of tags do not matter
    ("tx_duration{ type : 'new_order' }", "avg<20", 12.5, True, ""),
]


@pytest.mark.parametrize(("metric", "expression", "observed", "passed", "reason"), CHECKS)
def test_checks(metric: str, expression: str, observed: float | None, passed: bool, reason: str) -> None:
    result = check(metric, expression, parse_k6_summary(json.dumps(SHAPE_B)))
    assert (result.observed, result.passed) == (observed, passed)
    assert reason in result.reason


def test_a_rate_without_samples_in_the_machine_readable_shape_is_not_judged() -> None:
    document = {"version": "1.0.0", "results": {"metrics": [
        {"name": "tx_error_rate", "type": "rate", "values": {"matches": 0, "total": 0, "rate": 0}}]}}  # fmt: skip
    result = check("tx_error_rate", "rate>0.9", parse_k6_summary(json.dumps(document)))
    assert (result.observed, result.passed) == (None, True)


def test_a_failing_threshold_fails_the_verdict_and_reported_ones_count() -> None:
    metrics = parse_k6_summary(json.dumps(SHAPE_A))
    verdict, checks = evaluate({"tpcc_new_order_duration": [ThresholdRule(threshold="p(95)<200")]}, metrics)
    assert verdict is Verdict.FAILED
    assert [(c.metric, c.expression, c.passed) for c in checks] == [
        ("tpcc_new_order_duration", "p(95)<200", True),
        ("tpcc_new_order_duration", "p(90)<5000", True),
        ("checks", "rate>0.99", False),
    ]
    verdict, _ = evaluate({"transactions": [ThresholdRule(threshold="count>1")]}, parse_pgbench_report(PGBENCH))
    assert verdict is Verdict.PASSED
