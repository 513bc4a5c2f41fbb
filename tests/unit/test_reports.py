"""Run reports: Grafana links scoped to a run, the markdown a run shows, the versions it names."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from stroppy_domain.checks import ThresholdCheck, Verdict
from stroppy_domain.reports import Dashboard, RunFacts, dashboard_url, run_markdown, run_versions, slug
from stroppy_domain.validation import validate_suite
from tests.conftest import fresh_suite

START = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
END = datetime(2026, 11, 26, 12, 3, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Stroppy: run overview", "stroppy-run-overview"), ("TPC-C 1000 wh", "tpc-c-1000-wh"), ("***", "unnamed")],
)
def test_slug(text: str, expected: str) -> None:
    assert slug(text) == expected


@pytest.mark.parametrize("base", ["https://grafana.example.com", "https://grafana.example.com/"])
def test_dashboard_url_scopes_the_dashboard_to_the_run_and_its_window(base: str) -> None:
    url = dashboard_url(base, Dashboard(uid="stroppy-run-overview", title="Stroppy: run overview"), "run-1", START, END)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://grafana.example.com/d/stroppy-run-overview/stroppy-run-overview"
    )
    assert parse_qs(parts.query) == {"var-run_id": ["run-1"], "from": ["1795694400000"], "to": ["1795694600000"]}


def facts(**changes: object) -> RunFacts:
    base = RunFacts(
        test_name="tpcb", run_id="run-1", target="docker", verdict=Verdict.PASSED, started_at=START, ended_at=END,
        checks=[ThresholdCheck(metric="tps", expression="value>100", observed=1234.5678, passed=True)],
        metrics={"tps": {"value": 1234.5678}, "latency": {"avg": 1.5, "p(95)": 3.25}},
        dashboards={"Stroppy: run overview": "https://g/d/x"}, versions={"driver": "pgbench"},
        images=["stroppy-flows/db-node:1"], archive="s3://results/run-1",
    )  # fmt: skip
    return base.model_copy(update=changes)


@pytest.mark.parametrize(
    ("changes", "present", "absent"),
    [
        pytest.param(
            {},
            ["# tpcb: PASSED", "(200 s)", "| tps | `value>100` | 1234.57 | pass |", "| latency | avg=1.5, p(95)=3.25 |",
             "- [Stroppy: run overview](https://g/d/x)", "- driver: `pgbench`", "- image: `stroppy-flows/db-node:1`",
             "Raw files: `s3://results/run-1`"],
            ["**Why:**", "No Grafana"],
            id="passed, with everything",
        ),
        pytest.param(
            {"verdict": Verdict.FAILED, "reason": "thresholds not met: tps value>2000 (observed 1234.5)",
             "checks": [ThresholdCheck(metric="tps", expression="value>2000", observed=1234.5, passed=False)]},
            ["# tpcb: FAILED", "**Why:** thresholds not met", "| tps | `value>2000` | 1234.5 | FAIL |"],
            ["| pass |"],
            id="failed threshold",
        ),
        pytest.param(
            {"verdict": Verdict.ERROR, "checks": [], "metrics": {}, "dashboards": {}, "archive": None},
            ["# tpcb: ERROR", "None set.", "Nothing was measured.", "No Grafana is configured"],
            ["Raw files", "](http"],
            id="error, nothing measured, no Grafana",
        ),
        pytest.param(
            {"checks": [ThresholdCheck(metric="m{a:b|c}", expression="p(95)<1", observed=None, passed=False,
                                       reason="metric not reported")]},
            ["| m{a:b\\|c} | `p(95)<1` | — | FAIL metric not reported |"],
            [],
            id="pipes escaped, missing values shown as a dash",
        ),
    ],
)  # fmt: skip
def test_run_markdown(changes: dict, present: list[str], absent: list[str]) -> None:
    markdown = run_markdown(facts(**changes))
    for text in present:
        assert text in markdown
    for text in absent:
        assert text not in markdown


def test_versions_name_the_load_tool_and_the_database_software() -> None:
    suite = validate_suite(fresh_suite())
    instance, cluster = suite.tests
    assert run_versions(instance) == {
        "driver": "stroppy", "workload": "tpcc/tx", "stroppy": "v5.0.0", "postgresql": "17", "storage engine": "heap",
        "patroni": "no",
    }  # fmt: skip
    assert run_versions(cluster)["patroni"] == "yes"
