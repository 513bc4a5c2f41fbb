"""The suite's offline HTML report (stroppy_domain.suite_report): charts from the load's series, escaping, sections."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from stroppy_domain.checks import ThresholdCheck
from stroppy_domain.comparison import compare, repetitions
from stroppy_domain.model import Comparison
from stroppy_domain.suite_report import (
    Chart,
    ChartLine,
    RunSection,
    SuiteReport,
    Trend,
    TrendPoint,
    downsample,
    load_charts,
    suite_html,
)
from stroppy_domain.timeseries import LOAD_ERRORS, LOAD_LATENCY, LOAD_THROUGHPUT, Series

START_MS = 1_700_000_000_000


def _series(name: str, values: list[float], **labels: str) -> Series:
    return Series(
        name=name, labels=labels, timestamps_ms=[START_MS + 1000 * i for i in range(len(values))], values=values
    )


DOWNSAMPLES = [
    ("short lines stay", [(0.0, 1.0), (1.0, 2.0)], 3, [(0.0, 1.0), (1.0, 2.0)]),
    ("pairs averaged", [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (3.0, 7.0)], 2, [(0.5, 2.0), (2.5, 6.0)]),
    ("an odd tail kept", [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)], 2, [(0.5, 2.0), (2.0, 5.0)]),
]  # fmt: skip


@pytest.mark.parametrize(("points", "limit", "expected"), [c[1:] for c in DOWNSAMPLES], ids=[c[0] for c in DOWNSAMPLES])
def test_long_lines_are_averaged_down_to_the_limit(
    points: list[tuple[float, float]], limit: int, expected: list[tuple[float, float]]
) -> None:
    assert downsample(points, limit) == expected


def test_a_day_long_line_keeps_at_most_the_limit() -> None:
    points = [(float(second), 1.0) for second in range(86_400)]
    assert 590 <= len(downsample(points)) <= 600


def test_the_load_gives_throughput_latency_in_ms_and_errors_only_when_there_were_some() -> None:
    series = [
        _series(LOAD_LATENCY, [0.004, 0.005], quantile="0.95"),
        _series(LOAD_THROUGHPUT, [100.0, 120.0, 110.0]),
        _series(LOAD_LATENCY, [0.002, 0.003], quantile="0.5"),
        _series(LOAD_ERRORS, [0.0, 0.0]),
        _series("node_cpu_seconds_total", [1.0]),
    ]
    throughput, latency = load_charts(series)
    assert (throughput.title, throughput.lines[0].points) == ("Throughput", [(0.0, 100.0), (1.0, 120.0), (2.0, 110.0)])
    assert [line.label for line in latency.lines] == ["p50", "p95"]
    assert latency.unit == "ms" and latency.lines[1].points == [(0.0, 4.0), (1.0, 5.0)]
    with_errors = load_charts([*series[:4], _series(LOAD_ERRORS, [0.0, 2.0])])
    assert [chart.title for chart in with_errors] == ["Throughput", "Latency", "Errors"]
    assert load_charts([_series("node_load1", [1.0])]) == []


class _Texts(HTMLParser):
    """What a browser would show as text and which elements it would build."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


HOSTILE = '<script>alert("x")</script>'


def _report() -> SuiteReport:
    at = datetime(2026, 11, 1, tzinfo=UTC)
    rule = Comparison(baseline="a", candidates=["b"], metric="tps", min_effect=3)
    chart = Chart(title="Throughput", unit="per second", lines=[ChartLine(label="tx/s", points=[(0, 1), (1, 2)])])
    runs = [
        RunSection(
            test="a", repetition="1/2", run_id="run-1", state="COMPLETED", verdict="PASSED", charts=[chart],
            checks=[ThresholdCheck(metric="tps", expression="value>1", observed=2.0, passed=True)],
            metrics={"tps": {"value": 2.0}}, links={"Raw files": "/archive/run-1"},
        ),
        RunSection(test="b", run_id="run-2", state="FAILED", verdict="FAILED", reason=HOSTILE),
    ]  # fmt: skip
    points = [TrendPoint(run_id=f"run-{n}", started_at=at + timedelta(days=n), value=100.0 + n) for n in range(5)]
    return SuiteReport(
        suite="nightly", state="FAILED", generated_at=at, runs=runs,
        repetitions=[repetitions("a", "tps", "value", [1.0, 2.0])],
        comparisons=[compare(rule, "b", [1000.0, 1010.0, 990.0], [1072.0, 1080.0, 1065.0])],
        trends=[Trend(test="a", metric="tps value", points=points, changes=["run-3"]),
                Trend(test="b", metric="tps value", points=[], error="the bucket refused: denied")],
    )  # fmt: skip


def test_the_report_holds_every_section_and_draws_each_chart_inline() -> None:
    page = suite_html(_report())
    parsed = _Texts()
    parsed.feed(page)
    text = " ".join(" ".join(parsed.texts).split())
    assert "nightly: FAILED" in text and "1 of 2 run(s) passed" in text
    assert "+7.2% tps value, 95% CI +5.1% .. +9.5%: better, beyond the 3% that matters" in text
    assert "a (1/2): PASSED" in text and "value>1" in text and "Raw files" in text
    assert "b: no history (the bucket refused: denied)" in text
    assert parsed.tags.count("svg") == 2, "the run's throughput chart and a's trend"
    assert "change began" in text, "the trend marks where the change began"
    assert not re.search(r"""(src|href)=["']https?://""", page), "nothing to fetch: it opens offline"


def test_what_a_user_wrote_is_text_never_markup() -> None:
    page = suite_html(_report())
    parsed = _Texts()
    parsed.feed(page)
    assert "script" not in parsed.tags
    assert HOSTILE in " ".join(parsed.texts)
