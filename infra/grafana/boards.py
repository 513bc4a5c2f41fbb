"""The dashboards Grafana is provisioned with, built with grafana-foundation-sdk: builders and types Grafana generates
from its own dashboard schema (pinned to the Grafana compose.yaml runs), so a field that schema lacks cannot be
written and every enumerated option is one of the schema's.

Three dashboards show one run, chosen by their `run_id` variable; the test trend shows one test across its runs,
chosen by `fingerprint`. compose.yaml provisions Grafana from the same dashboards as JSON files beside this module:
`python -m infra.grafana` writes them, and a unit test fails while they differ from what is built here.
"""

from __future__ import annotations

import json
import string
from functools import cache
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common, prometheus, timeseries
from grafana_foundation_sdk.builders import dashboard as board
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
    VisibilityMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    VariableHide,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from infra.metrics_store import HISTORY_METRIC

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE_UID = "stroppy-victoria-metrics"
ANNOTATION_TAG = "stroppy"
CHANGE_TAG = "change"
RUN_OVERVIEW = "Stroppy: run overview"
TEST_TREND = "Stroppy: test trend"
TREND_UID = "stroppy-test-trend"

VICTORIA_METRICS = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
GRAFANA_ANNOTATIONS = DataSourceRef(type_val="grafana", uid="-- Grafana --")

# One sample per run, days apart: a plain selector would repeat each sample at every step VictoriaMetrics still
# thinks it current, drawing steps instead of runs. A window of exactly one step puts each run at one point.
TREND_QUERY = f'last_over_time({HISTORY_METRIC}{{fingerprint="$fingerprint", metric=~"$metric"}}[$__interval])'


def fingerprint_tag(fingerprint: str) -> str:
    """The annotation tag that ties a change to a test's history (a template variable in the trend dashboard)."""
    return f"fingerprint:{fingerprint}"


def _timeseries(title: str, unit: str, *queries: tuple[str, str]) -> timeseries.Panel:
    """A half-width panel of VictoriaMetrics queries, each a PromQL expression and its legend."""
    panel = (
        timeseries.Panel()
        .title(title)
        .datasource(VICTORIA_METRICS)
        .height(8)
        .span(12)
        .unit(unit)
        .legend(
            common.VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.NONE))
    )
    for ref_id, (expression, legend) in zip(string.ascii_uppercase, queries, strict=False):
        query = prometheus.Dataquery().ref_id(ref_id).datasource(VICTORIA_METRICS).expr(expression)
        panel.with_target(query.legend_format(legend))
    return panel


def _label_values(name: str, label: str, query: str) -> board.QueryVariable:
    """A variable whose choices are a label's values in VictoriaMetrics over the dashboard's time range."""
    return (
        board.QueryVariable(name)
        .label(label)
        .datasource(VICTORIA_METRICS)
        .query({"query": query, "refId": name})
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(False)
        .multi(False)
    )


def _tagged_annotations(name: str, color: str, tags: list[str]) -> board.AnnotationQuery:
    """Grafana's own annotations carrying every one of `tags` (template variables allowed)."""
    return (
        board.AnnotationQuery()
        .name(name)
        .enable(True)
        .icon_color(color)
        .datasource(GRAFANA_ANNOTATIONS)
        .target(board.AnnotationTarget().type("tags").tags(tags).match_any(False).limit(100))
    )


def _dashboard(uid: str, title: str, description: str, panels: list[timeseries.Panel]) -> board.Dashboard:
    built = board.Dashboard(title).uid(uid).description(description).tags([ANNOTATION_TAG]).editable().timezone("utc")
    for number, panel in enumerate(panels, start=1):
        built.with_panel(panel.id(number))
    return built


def _run_dashboard(uid: str, title: str, description: str, panels: list[timeseries.Panel]) -> board.Dashboard:
    """A dashboard of one run: its `run_id` (newest first), its phases as annotations, refreshed while it runs."""
    return (
        _dashboard(uid, title, description, panels)
        .refresh("10s")
        .time("now-1h", "now")
        .with_variable(_label_values("run_id", "Run", "label_values(run_id)").sort(VariableSort.ALPHABETICAL_DESC))
        .annotation(_tagged_annotations("Run phases", "rgba(255, 152, 48, 1)", [ANNOTATION_TAG, "$run_id"]))
    )


def _database() -> board.Dashboard:
    return _run_dashboard(
        "stroppy-database",
        "Stroppy: database",
        "PostgreSQL and PgBouncer of one run: connections, commits, replication lag.",
        [
            _timeseries(
                "Connections by state",
                "short",
                ('sum by (machine, state) (pg_stat_activity_count{run_id="$run_id"})', "{{machine}} {{state}}"),
            ),
            _timeseries(
                "Commits and rollbacks",
                "ops",
                (
                    'sum by (machine) (rate(pg_stat_database_xact_commit{run_id="$run_id"}[$__rate_interval]))',
                    "{{machine}} commits",
                ),
                (
                    'sum by (machine) (rate(pg_stat_database_xact_rollback{run_id="$run_id"}[$__rate_interval]))',
                    "{{machine}} rollbacks",
                ),
            ),
            _timeseries(
                "Replication lag",
                "s",
                ('max by (machine) (pg_replication_lag_seconds{run_id="$run_id"})', "{{machine}}"),
            ),
            _timeseries(
                "PgBouncer clients",
                "short",
                (
                    'sum by (machine) (pgbouncer_pools_client_active_connections{run_id="$run_id"})',
                    "{{machine}} active",
                ),
                (
                    'sum by (machine) (pgbouncer_pools_client_waiting_connections{run_id="$run_id"})',
                    "{{machine}} waiting",
                ),
            ),
        ],
    )


def _machines() -> board.Dashboard:
    return _run_dashboard(
        "stroppy-machines",
        "Stroppy: machines",
        "The machines of one run: CPU, memory and disk.",
        [
            _timeseries(
                "CPU busy",
                "percentunit",
                (
                    "1 - avg by (machine)"
                    ' (rate(node_cpu_seconds_total{run_id="$run_id",mode="idle"}[$__rate_interval]))',
                    "{{machine}}",
                ),
            ),
            _timeseries(
                "Memory used",
                "bytes",
                (
                    'max by (machine) (node_memory_MemTotal_bytes{run_id="$run_id"}'
                    ' - node_memory_MemAvailable_bytes{run_id="$run_id"})',
                    "{{machine}}",
                ),
            ),
            _timeseries(
                "Disk writes",
                "Bps",
                (
                    'sum by (machine) (rate(node_disk_written_bytes_total{run_id="$run_id"}[$__rate_interval]))',
                    "{{machine}}",
                ),
            ),
            _timeseries(
                "Disk reads",
                "Bps",
                (
                    'sum by (machine) (rate(node_disk_read_bytes_total{run_id="$run_id"}[$__rate_interval]))',
                    "{{machine}}",
                ),
            ),
        ],
    )


def _run_overview() -> board.Dashboard:
    return _run_dashboard(
        "stroppy-run-overview",
        RUN_OVERVIEW,
        "The load of one run: throughput, latency percentiles and errors, per second.",
        [
            _timeseries("Throughput", "ops", ('sum(stroppy_load_throughput{run_id="$run_id"})', "transactions/s")),
            _timeseries(
                "Latency percentiles",
                "s",
                ('max by (quantile) (stroppy_load_latency_seconds{run_id="$run_id"})', "p{{quantile}}"),
            ),
            _timeseries("Errors", "ops", ('sum(stroppy_load_errors{run_id="$run_id"})', "failed/s")),
            _timeseries(
                "Database commits",
                "ops",
                ('sum(rate(pg_stat_database_xact_commit{run_id="$run_id"}[$__rate_interval]))', "commits/s"),
            ),
        ],
    )


def _test_trend() -> board.Dashboard:
    """One test across its runs: a panel per key metric (repeated over `metric`, since tests report different ones),
    and the changes its history found as annotations. `test` only names the fingerprint's test."""
    per_metric = (
        _timeseries("$metric", "short", (TREND_QUERY, "{{metric}} {{aggregate}}"))
        .description("One point per run, at its start: the run's value of the metric.")
        .repeat("metric")
        .repeat_direction("h")
        .max_per_row(2)
        .draw_style(GraphDrawStyle.LINE)
        .show_points(VisibilityMode.ALWAYS)
        .point_size(6)
        .span_nulls(True)
    )
    of_fingerprint = f'{HISTORY_METRIC}{{fingerprint="$fingerprint"}}'
    return (
        _dashboard(
            TREND_UID,
            TEST_TREND,
            "One test's key metrics across its runs, and the changes its history found.",
            [per_metric],
        )
        .time("now-90d", "now")
        .with_variable(_label_values("fingerprint", "Fingerprint", f"label_values({HISTORY_METRIC}, fingerprint)"))
        .with_variable(_label_values("test", "Test", f"label_values({of_fingerprint}, test)"))
        .with_variable(
            _label_values("metric", "Metric", f"label_values({of_fingerprint}, metric)")
            .multi(True)
            .include_all(True)
            .current(VariableOption(selected=True, text="All", value="$__all"))
            .hide(VariableHide.HIDE_VARIABLE)
        )
        .annotation(
            _tagged_annotations(
                "Changes", "rgba(242, 73, 92, 1)", [ANNOTATION_TAG, CHANGE_TAG, fingerprint_tag("$fingerprint")]
            )
        )
    )


def _as_dict(built: board.Dashboard) -> dict[str, Any]:
    """The dashboard JSON Grafana stores, as the SDK encodes it."""
    return json.loads(JSONEncoder().encode(built.build()))


@cache
def run_dashboards() -> tuple[dict[str, Any], ...]:
    """The dashboards of one run, chosen by `run_id`: what a run's report links with the run's window."""
    return tuple(_as_dict(built) for built in (_database(), _machines(), _run_overview()))


@cache
def trend_dashboard() -> dict[str, Any]:
    """The dashboard of one test across its runs, chosen by `fingerprint`."""
    return _as_dict(_test_trend())


def dashboards() -> tuple[dict[str, Any], ...]:
    """Every dashboard Grafana is provisioned with."""
    return (*run_dashboards(), trend_dashboard())


def dashboard_files() -> dict[Path, str]:
    """Each dashboard's file for compose.yaml's file provisioning, named after its uid, and its text."""
    return {
        DASHBOARDS_DIR / f"{dashboard['uid'].removeprefix('stroppy-')}.json": json.dumps(dashboard, indent=2) + "\n"
        for dashboard in dashboards()
    }
