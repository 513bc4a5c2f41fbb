"""The dashboards built with grafana-foundation-sdk: what Grafana's schema types can hold, the queries the
hand-written dashboards had, the test trend, and the JSON files compose.yaml provisions from."""

from __future__ import annotations

import json
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import prometheus, timeseries
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

from infra.grafana import DASHBOARDS_DIR, DATASOURCE_UID, TEST_TREND, dashboards, panel_queries, trend_dashboard
from infra.grafana.boards import dashboard_files, fingerprint_tag
from infra.metrics_store import HISTORY_METRIC

# The panels and queries of the hand-written JSON dashboards these builders replaced, copied from those files.
HAND_WRITTEN_QUERIES = {
    "stroppy-database": [
        ("Connections by state", 'sum by (machine, state) (pg_stat_activity_count{run_id="$run_id"})'),
        (
            "Commits and rollbacks",
            'sum by (machine) (rate(pg_stat_database_xact_commit{run_id="$run_id"}[$__rate_interval]))',
        ),
        (
            "Commits and rollbacks",
            'sum by (machine) (rate(pg_stat_database_xact_rollback{run_id="$run_id"}[$__rate_interval]))',
        ),
        ("Replication lag", 'max by (machine) (pg_replication_lag_seconds{run_id="$run_id"})'),
        ("PgBouncer clients", 'sum by (machine) (pgbouncer_pools_client_active_connections{run_id="$run_id"})'),
        ("PgBouncer clients", 'sum by (machine) (pgbouncer_pools_client_waiting_connections{run_id="$run_id"})'),
    ],
    "stroppy-machines": [
        (
            "CPU busy",
            '1 - avg by (machine) (rate(node_cpu_seconds_total{run_id="$run_id",mode="idle"}[$__rate_interval]))',
        ),
        (
            "Memory used",
            'max by (machine) (node_memory_MemTotal_bytes{run_id="$run_id"}'
            ' - node_memory_MemAvailable_bytes{run_id="$run_id"})',
        ),
        ("Disk writes", 'sum by (machine) (rate(node_disk_written_bytes_total{run_id="$run_id"}[$__rate_interval]))'),
        ("Disk reads", 'sum by (machine) (rate(node_disk_read_bytes_total{run_id="$run_id"}[$__rate_interval]))'),
    ],
    "stroppy-run-overview": [
        ("Throughput", 'sum(stroppy_load_throughput{run_id="$run_id"})'),
        ("Latency percentiles", 'max by (quantile) (stroppy_load_latency_seconds{run_id="$run_id"})'),
        ("Errors", 'sum(stroppy_load_errors{run_id="$run_id"})'),
        ("Database commits", 'sum(rate(pg_stat_database_xact_commit{run_id="$run_id"}[$__rate_interval]))'),
    ],
}
HAND_WRITTEN_LEGENDS = {
    "stroppy-database": ["{{machine}} {{state}}", "{{machine}} commits", "{{machine}} rollbacks", "{{machine}}",
                         "{{machine}} active", "{{machine}} waiting"],
    "stroppy-machines": ["{{machine}}"] * 4,
    "stroppy-run-overview": ["transactions/s", "p{{quantile}}", "failed/s", "commits/s"],
}  # fmt: skip
HAND_WRITTEN_UNITS = {
    "stroppy-database": ["short", "ops", "s", "short"],
    "stroppy-machines": ["percentunit", "bytes", "Bps", "Bps"],
    "stroppy-run-overview": ["ops", "s", "ops", "ops"],
}


def by_uid(uid: str) -> dict[str, Any]:
    return next(board for board in dashboards() if board["uid"] == uid)


def leaves(node: Any, path: tuple[str | int, ...] = ()) -> dict[tuple[str | int, ...], Any]:
    """Every scalar, empty object and empty list of a JSON document by its path."""
    if isinstance(node, dict) and node:
        return {found: value for key, child in node.items() for found, value in leaves(child, (*path, key)).items()}
    if isinstance(node, list) and node:
        return {found: value for i, child in enumerate(node) for found, value in leaves(child, (*path, i)).items()}
    return {path: node}


@pytest.mark.parametrize("board", dashboards(), ids=lambda board: board["uid"])
def test_every_dashboard_is_what_the_schema_types_hold(board: dict[str, Any]) -> None:
    """Read back into the SDK's types and written out again, nothing is lost or changed (a field outside the schema
    would be), and every panel and query decodes as its own type, not as the SDK's bag for unknown ones."""
    register_default_plugins()
    typed = Dashboard.from_json(board)
    written, read_back = leaves(board), leaves(json.loads(JSONEncoder().encode(typed)))
    assert written.items() <= read_back.items()
    assert all(read_back[path] in ({}, []) for path in read_back.keys() - written.keys()), "only empty defaults"
    for panel in typed.panels or []:
        assert isinstance(panel, Panel) and isinstance(panel.options, timeseries.Options)
        assert all(isinstance(target, prometheus.Dataquery) for target in panel.targets or [])


@pytest.mark.parametrize("uid", sorted(HAND_WRITTEN_QUERIES))
def test_the_run_dashboards_keep_the_hand_written_panels_and_queries(uid: str) -> None:
    board = by_uid(uid)
    assert panel_queries(board) == HAND_WRITTEN_QUERIES[uid]
    assert [target["legendFormat"] for panel in board["panels"] for target in panel["targets"]] == (
        HAND_WRITTEN_LEGENDS[uid]
    )
    assert [panel["fieldConfig"]["defaults"]["unit"] for panel in board["panels"]] == HAND_WRITTEN_UNITS[uid]
    assert [panel["id"] for panel in board["panels"]] == [1, 2, 3, 4]
    assert [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in board["panels"]] == [(0, 0), (12, 0), (0, 8), (12, 8)]
    (variable,) = board["templating"]["list"]
    assert variable["name"] == "run_id" and variable["query"]["query"] == "label_values(run_id)"
    (phases,) = board["annotations"]["list"]
    assert phases["datasource"]["type"] == "grafana" and phases["target"]["tags"] == ["stroppy", "$run_id"]


def test_the_trend_dashboard_shows_a_fingerprint_s_history_and_its_changes() -> None:
    board = trend_dashboard()
    assert board["title"] == TEST_TREND
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert list(variables) == ["fingerprint", "test", "metric"]
    assert variables["fingerprint"]["query"]["query"] == f"label_values({HISTORY_METRIC}, fingerprint)"
    assert f'{HISTORY_METRIC}{{fingerprint="$fingerprint"}}' in variables["test"]["query"]["query"]
    assert variables["metric"]["includeAll"] and variables["metric"]["current"]["value"] == "$__all"
    (panel,) = board["panels"]
    assert panel["repeat"] == "metric" and panel["title"] == "$metric"
    ((_, expression),) = panel_queries(board)
    assert f'{HISTORY_METRIC}{{fingerprint="$fingerprint", metric=~"$metric"}}' in expression
    assert panel["targets"][0]["legendFormat"] == "{{metric}} {{aggregate}}"
    assert panel["targets"][0]["datasource"]["uid"] == DATASOURCE_UID
    drawn = panel["fieldConfig"]["defaults"]["custom"]
    assert drawn["showPoints"] == "always" and drawn["spanNulls"] is True
    (changes,) = board["annotations"]["list"]
    assert changes["datasource"]["type"] == "grafana" and changes["target"]["type"] == "tags"
    assert fingerprint_tag("$fingerprint") in changes["target"]["tags"] and changes["target"]["matchAny"] is False


def test_the_json_files_compose_provisions_are_the_built_dashboards() -> None:
    """Rewrite them with `uv run --frozen python -m infra.grafana` after changing a dashboard."""
    files = dashboard_files()
    assert sorted(DASHBOARDS_DIR.glob("*.json")) == sorted(files)
    for path, text in files.items():
        assert path.read_text() == text, f"{path.name} is stale: uv run --frozen python -m infra.grafana"
