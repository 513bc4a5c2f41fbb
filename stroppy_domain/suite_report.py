"""The suite's report as one self-contained HTML file: opened offline in any browser, with nothing to fetch, it shows
each run's per-second throughput and latency as charts, its verdict and thresholds, the suite's comparisons and
repetitions, and each test's history. For installations without Grafana (a laptop, the README's main job), and as the
suite's keepsake beside its runs' raw files.

Charts are static SVG drawn by pygal (no JavaScript); every text a user wrote is escaped for HTML here, and pygal
escapes what it puts in the SVG. Pure: models in, text out.
"""

from __future__ import annotations

import html
import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

from pydantic import Field

from stroppy_domain.checks import ThresholdCheck
from stroppy_domain.comparison import ComparisonVerdict, Repetitions
from stroppy_domain.model import Model
from stroppy_domain.reports import comparison_table, metric_table, repetition_table, threshold_table
from stroppy_domain.timeseries import LOAD_ERRORS, LOAD_LATENCY, LOAD_THROUGHPUT, Series

MAX_POINTS = 600
"""Points per chart line: a day-long run is averaged into this many buckets, so the report stays small."""


class ChartLine(Model):
    label: str
    points: list[tuple[float, float]] = Field(description="(seconds from the load's start, value)")


class Chart(Model):
    title: str
    unit: str
    lines: list[ChartLine]


class RunSection(Model):
    """One run of the suite as the report shows it."""

    test: str
    repetition: str = Field(default="", description="`2/3`; empty for a test run once.")
    run_id: str
    state: str
    verdict: str
    reason: str = ""
    checks: list[ThresholdCheck] = Field(default_factory=list)
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    against_history: str = ""
    charts: list[Chart] = Field(default_factory=list)
    links: dict[str, str] = Field(default_factory=dict, description="Title -> URL: dashboards, raw files.")


class TrendPoint(Model):
    run_id: str
    started_at: datetime
    value: float


class Trend(Model):
    """A test's metric over the runs of its fingerprint, with the runs where changes began."""

    test: str
    metric: str
    points: list[TrendPoint]
    changes: list[str] = Field(default_factory=list, description="Run ids where a significant change began.")
    error: str = Field(default="", description="Why the history could not be read, when it could not.")


class SuiteReport(Model):
    suite: str
    state: str
    generated_at: datetime
    runs: list[RunSection]
    repetitions: list[Repetitions] = Field(default_factory=list)
    comparisons: list[ComparisonVerdict] = Field(default_factory=list)
    trends: list[Trend] = Field(default_factory=list)


def downsample(points: Sequence[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most `limit` points: consecutive points averaged in equal groups (time and value alike)."""
    if len(points) <= limit:
        return list(points)
    size = -(-len(points) // limit)
    groups = [points[start : start + size] for start in range(0, len(points), size)]
    return [(statistics.fmean(p[0] for p in group), statistics.fmean(p[1] for p in group)) for group in groups]


def load_charts(series: list[Series]) -> list[Chart]:
    """The load's throughput, latency quantiles (in ms) and errors per second, timed from the load's start."""
    load = [one for one in series if one.name in (LOAD_THROUGHPUT, LOAD_LATENCY, LOAD_ERRORS) and one.values]
    if not load:
        return []
    start_ms = min(one.timestamps_ms[0] for one in load)

    def line(one: Series, label: str, scale: float = 1.0) -> ChartLine:
        points = [((t - start_ms) / 1000, v * scale) for t, v in zip(one.timestamps_ms, one.values, strict=True)]
        return ChartLine(label=label, points=downsample(points))

    charts = []
    throughput = [line(one, "transactions/s") for one in load if one.name == LOAD_THROUGHPUT]
    if throughput:
        charts.append(Chart(title="Throughput", unit="per second", lines=throughput))
    quantiles = sorted(
        (one for one in load if one.name == LOAD_LATENCY), key=lambda one: one.labels.get("quantile", "")
    )
    if quantiles:
        lines = [line(one, f"p{float(one.labels.get('quantile', 0)) * 100:g}", 1000) for one in quantiles]
        charts.append(Chart(title="Latency", unit="ms", lines=lines))
    errors = [line(one, "errors/s") for one in load if one.name == LOAD_ERRORS and any(one.values)]
    if errors:
        charts.append(Chart(title="Errors", unit="per second", lines=errors))
    return charts


def _svg(chart: Any) -> str:
    """The chart's SVG without the script pygal always adds (its config, for tooltips it would fetch): the report
    runs no JavaScript."""
    tree = chart.render_tree()
    for parent in tree.iter():
        for child in [child for child in parent if child.tag == "script"]:
            parent.remove(child)
    return ElementTree.tostring(tree, encoding="unicode")


def _chart_svg(chart: Chart) -> str:
    import pygal  # noqa: PLC0415  # only the suite's report draws

    drawn = pygal.XY(
        width=640, height=260, explicit_size=True, js=[], disable_xml_declaration=True, show_dots=False,
        title=chart.title, x_title="seconds", y_title=chart.unit, legend_at_bottom=True, truncate_legend=-1,
    )  # fmt: skip
    for one in chart.lines:
        drawn.add(one.label, one.points)
    return _svg(drawn)


def _trend_svg(trend: Trend) -> str:
    import pygal  # noqa: PLC0415

    drawn = pygal.DateTimeLine(
        width=800, height=260, explicit_size=True, js=[], disable_xml_declaration=True, x_label_rotation=20,
        title=f"{trend.test}: {trend.metric}", legend_at_bottom=True, truncate_legend=-1,
        x_value_formatter=lambda at: f"{at:%Y-%m-%d %H:%M}", value_formatter=lambda value: f"{value:.6g}",
    )  # fmt: skip
    drawn.add(trend.metric, [(point.started_at, point.value) for point in trend.points])
    began = [(p.started_at, p.value) for p in trend.points if p.run_id in trend.changes]
    if began:
        drawn.add("change began", began, stroke=False, dots_size=6)
    return _svg(drawn)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _run_html(run: RunSection) -> str:
    title = f"{run.test}" + (f" ({run.repetition})" if run.repetition else "")
    parts = [f'<section class="run" id="{_e(run.run_id)}"><h3>{_e(title)}: <span class="verdict '
             f'{_e(run.verdict.lower())}">{_e(run.verdict)}</span></h3>',
             f"<p>Run <code>{_e(run.run_id)}</code>, {_e(run.state)}.</p>"]  # fmt: skip
    if run.reason:
        parts.append(f"<p><strong>Why:</strong> {_e(run.reason)}</p>")
    if run.against_history:
        parts.append(f"<p><strong>Against its history:</strong> {_e(run.against_history)}</p>")
    if run.checks:
        parts.append(_table(*threshold_table(run.checks)))
    if run.metrics:
        parts.append(f"<details><summary>Key metrics</summary>{_table(*metric_table(run.metrics))}</details>")
    charts = "".join(f'<figure class="chart">{_chart_svg(chart)}</figure>' for chart in run.charts)
    parts.append(f'<div class="charts">{charts}</div>' if charts else "<p>No per-second series were measured.</p>")
    if run.links:
        links = "".join(f'<li><a href="{_e(url)}">{_e(title)}</a></li>' for title, url in run.links.items())
        parts.append(f"<ul>{links}</ul>")
    return "".join(parts) + "</section>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure.chart { margin: 0; }
.verdict.passed { color: #1a7f37; } .verdict.failed, .verdict.error { color: #cf222e; }
section.run { border-top: 1px solid #ddd; padding-top: 0.5em; }
"""


def suite_html(report: SuiteReport) -> str:
    """The whole report, one HTML document with everything inline."""
    passed = sum(run.verdict == "PASSED" for run in report.runs)
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(report.suite)}: stroppy suite report"
        f"</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(report.suite)}: {_e(report.state)}</h1>",
        f"<p>{passed} of {len(report.runs)} run(s) passed. Written {report.generated_at:%Y-%m-%d %H:%M:%S} UTC.</p>",
    ]
    if report.comparisons:
        parts += ["<h2>Comparisons</h2>", _table(*comparison_table(report.comparisons))]
    if report.repetitions:
        parts += ["<h2>Repetitions</h2>", _table(*repetition_table(report.repetitions))]
    parts += ["<h2>Runs</h2>", *(_run_html(run) for run in report.runs)]
    if report.trends:
        parts.append("<h2>History</h2>")
        parts += [
            f"<p>{_e(trend.test)}: no history ({_e(trend.error)})</p>"
            if trend.error
            else f'<figure class="chart trend">{_trend_svg(trend)}</figure>'
            for trend in report.trends
        ]
    return "".join(parts) + "</body></html>\n"
