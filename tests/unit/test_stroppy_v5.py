"""stroppy v5's catalogue, its exit codes as verdicts, and k6's own threshold verdicts taking precedence."""

from __future__ import annotations

import json

import pytest

from stroppy_domain import stroppy_v5
from stroppy_domain.checks import Verdict, evaluate
from stroppy_domain.model import BenchmarkTest
from stroppy_domain.results import parse_k6_summary
from stroppy_domain.timeseries import LOAD_ERRORS, LOAD_THROUGHPUT, k6_csv_series
from stroppy_domain.validation import validate_suite

EXITS = [
    # (exit code, output tail, thresholds already failed, expected reason fragment or None)
    (0, [], False, None),
    (99, [], True, None),  # the failed thresholds say why
    (99, [], False, "k6 exited 99"),
    (108, ['level=error msg="test aborted: validate_population: 1 check(s) failed:"'], False,
     "aborted the test (k6 exit 108): level=error msg=\"test aborted: validate_population"),
    (108, [], True, "the workload aborted the test (k6 exit 108)"),
    (104, ["invalid"], False, None),  # not a verdict: the run step already failed as an error
]  # fmt: skip


@pytest.mark.parametrize(("code", "tail", "failed", "expected"), EXITS)
def test_exit_codes_are_verdicts(code: int, tail: list[str], failed: bool, expected: str | None) -> None:
    reason = stroppy_v5.exit_verdict(code, tail, failed)
    assert reason == expected if expected is None else expected in (reason or "")


def make_test(thresholds: dict) -> BenchmarkTest:
    hardware = {"cores": 1, "memory_gb": 1, "disk_gb": 1}
    test = {"name": "t", "stroppy": {"version": "v5.7.3", "workload": "tpcb/tx"}, "thresholds": thresholds,
            "database": {"instance": {"hardware": hardware}}}  # fmt: skip
    return validate_suite({"name": "s", "tests": [test]}).tests[0]


def test_k6s_verdict_stands_and_the_observed_value_comes_from_the_summary() -> None:
    summary = {
        "metrics": {
            "tx_total_duration": {"avg": 3.0, "p(95)": 7.5, "thresholds": {"p(95)<5": True}},  # crossed
            "tx_error_rate": {"value": 0.0, "passes": 0, "fails": 10, "thresholds": {"rate<0.01": False}},
        }
    }
    test = make_test({"tx_total_duration": ["p(95)<5"], "tx_error_rate": ["rate<0.01"]})
    verdict, checks = evaluate(test.thresholds, parse_k6_summary(json.dumps(summary)))
    assert verdict is Verdict.FAILED
    by_metric = {check.metric: check for check in checks}
    assert (by_metric["tx_total_duration"].passed, by_metric["tx_total_duration"].observed) == (False, 7.5)
    assert by_metric["tx_total_duration"].reason == "judged by k6"
    assert by_metric["tx_error_rate"].passed and len(checks) == 2


def test_k6s_pass_overrides_a_stricter_reading_here() -> None:
    """k6 skips a threshold on a Rate with no samples; where it says passed, the test passes."""
    summary = {"metrics": {"tx_error_rate": {"passes": 0, "fails": 0, "thresholds": {"rate<0.01": False}}}}
    verdict, checks = evaluate(make_test({"tx_error_rate": ["rate<0.01"]}).thresholds,
                               parse_k6_summary(json.dumps(summary)))  # fmt: skip
    assert verdict is Verdict.PASSED and checks[0].reason == "judged by k6"


CSV = """metric_name,timestamp,metric_value,check,error,error_code,group,scenario
iteration_duration,100,250.0,,,,,replay
tx_total_duration,100,2.0,,,,,replay
tx_total_duration,100,4.0,,,,,replay
tx_error_rate,100,0,,,,,replay
tx_error_rate,101,1,,,,,replay
tx_total_duration,101,3.0,,,,,replay
"""


def test_v5s_transactions_make_the_load_series() -> None:
    series = {(s.name, tuple(sorted(s.labels.items()))): s for s in k6_csv_series(CSV.splitlines(keepends=True))}
    throughput = series[(LOAD_THROUGHPUT, ())]
    assert throughput.timestamps_ms == [100_000, 101_000] and throughput.values == [2.0, 1.0]
    assert series[(LOAD_ERRORS, ())].values == [0.0, 1.0]


@pytest.mark.parametrize(
    ("workload", "metric", "allowed"),
    [
        ("tpcb/tx", "tx_total_duration", True),
        ("tpcb/tx", "tx_count{tx_action:commit}", True),
        ("tpcb/tx", "checks", True),
        ("tpcb/tx", "tpcc_new_order_duration", False),
        ("tpcc/procs", "tpcc_new_order_duration", True),
        ("tpcc/tx", "http_req_duration", False),
    ],
)
def test_thresholds_name_metrics_the_workload_defines(workload: str, metric: str, allowed: bool) -> None:
    assert (stroppy_v5.metric_problem(workload, metric) is None) is allowed
