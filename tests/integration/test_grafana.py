"""Grafana provisioning and annotations through grafana-client, against the Grafana API stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from blocks.grafana import GrafanaConnection
from infra.grafana import (
    DATASOURCE_UID,
    FOLDER_UID,
    RUN_OVERVIEW,
    TEST_TREND,
    Grafana,
    GrafanaError,
    dashboards,
    panel_queries,
    run_dashboards,
)
from stroppy_domain.reports import Phase
from tests.standin.grafana_standin import GrafanaStandIn

TOKEN = "glsa_standin_token"


@pytest.fixture
def standin() -> Iterator[GrafanaStandIn]:
    with GrafanaStandIn(TOKEN) as server:
        yield server


def grafana(standin: GrafanaStandIn, datasource_url: str = "http://127.0.0.1:8428", token: str = TOKEN) -> Grafana:
    connection = GrafanaConnection(url=standin.url, token=token, datasource_url=datasource_url, timeout_s=5)
    return Grafana(connection.get_client(), connection.folder, connection.datasource_url)


def test_the_run_dashboards_are_scoped_to_a_run_and_use_the_provisioned_datasource() -> None:
    titles = [board["title"] for board in dashboards()]
    assert titles == ["Stroppy: database", "Stroppy: machines", RUN_OVERVIEW, TEST_TREND]
    for board in run_dashboards():
        assert [variable["name"] for variable in board["templating"]["list"]] == ["run_id"]
        queries = panel_queries(board)
        assert len(queries) >= 4
        for title, expression in queries:
            assert 'run_id="$run_id"' in expression, (board["title"], title)
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == DATASOURCE_UID
            assert all(target["datasource"]["uid"] == DATASOURCE_UID for target in panel["targets"])


def test_provisioning_creates_everything_once_and_then_changes_nothing(standin: GrafanaStandIn) -> None:
    first = grafana(standin).provision()
    uids = sorted(board["uid"] for board in dashboards())
    assert sorted(first.created) == sorted(
        [f"folder {FOLDER_UID}", f"datasource {DATASOURCE_UID}", *(f"dashboard {uid}" for uid in uids)]
    )
    assert sorted(standin.state.dashboards) == uids
    assert standin.state.datasources[DATASOURCE_UID]["url"] == "http://127.0.0.1:8428"
    writes = len(standin.state.writes)
    again = grafana(standin).provision()
    assert again.created == again.updated == []
    assert len(standin.state.writes) == writes


def test_provisioning_repairs_what_was_changed_in_grafana(standin: GrafanaStandIn) -> None:
    grafana(standin).provision()
    standin.state.dashboards["stroppy-machines"]["dashboard"]["title"] = "edited by hand"
    report = grafana(standin, datasource_url="http://vm.example:8428").provision()
    assert sorted(report.updated) == ["dashboard stroppy-machines", f"datasource {DATASOURCE_UID}"]
    assert standin.state.dashboards["stroppy-machines"]["dashboard"]["title"] == "Stroppy: machines"
    assert standin.state.dashboards["stroppy-machines"]["dashboard"]["version"] == 2
    assert standin.state.datasources[DATASOURCE_UID]["url"] == "http://vm.example:8428"


def test_annotations_mark_each_phase_once(standin: GrafanaStandIn) -> None:
    start = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    phases = [
        Phase(name=name, started_at=start + timedelta(seconds=10 * i), ended_at=start + timedelta(seconds=10 * i + 9))
        for i, name in enumerate(["create_machines", "start_services", "run_load"])
    ]
    client = grafana(standin)
    assert client.annotate("run-abc", "tpcb", phases) == 3
    assert client.annotate("run-abc", "tpcb", phases) == 0
    assert client.annotate("run-def", "tpcb", phases[:1]) == 1
    run_load = next(a for a in standin.state.annotations if "phase:run_load" in a["tags"])
    assert run_load["tags"] == ["stroppy", "run-abc", "phase:run_load"]
    assert run_load["time"] == int(phases[2].started_at.timestamp() * 1000)
    assert run_load["timeEnd"] == int(phases[2].ended_at.timestamp() * 1000)


def test_links_point_at_provisioned_dashboards_with_the_run_and_its_window(standin: GrafanaStandIn) -> None:
    client = grafana(standin)
    client.provision()
    start, end = datetime(2026, 11, 26, 12, 0, tzinfo=UTC), datetime(2026, 11, 26, 12, 5, tzinfo=UTC)
    links = client.links("run-abc", start, end)
    assert sorted(links) == sorted(board["title"] for board in run_dashboards())
    for url in links.values():
        parts = urlsplit(url)
        assert url.startswith(standin.url + "/d/")
        assert parts.path.split("/")[2] in standin.state.dashboards
        assert parse_qs(parts.query) == {
            "var-run_id": ["run-abc"], "from": [str(int(start.timestamp() * 1000))],
            "to": [str(int(end.timestamp() * 1000))],
        }  # fmt: skip


def test_a_change_is_annotated_once_with_its_fingerprint(standin: GrafanaStandIn) -> None:
    client = grafana(standin)
    at = datetime(2026, 11, 26, 12, 0, 7, 250000, tzinfo=UTC)
    first = client.annotate_change("tpcb", "fp-1", at, "tps value -12.0%")
    assert client.annotate_change("tpcb", "fp-1", at, "tps value -12.0%") == first
    other_metric = client.annotate_change("tpcb", "fp-1", at, "latency_avg_ms value +9.1%")
    assert other_metric != first
    assert client.annotate_change("tpcb", "fp-2", at, "tps value -12.0%") not in {first, other_metric}
    (change,) = [a for a in standin.state.annotations if a["id"] == first]
    assert change["tags"] == ["stroppy", "change", "fingerprint:fp-1"]
    assert change["time"] == int(at.timestamp() * 1000) and change["timeEnd"] is None
    assert change["text"] == "tpcb: tps value -12.0%"
    assert len(standin.state.annotations) == 3


def test_the_trend_link_opens_the_provisioned_trend_dashboard_at_the_fingerprint(standin: GrafanaStandIn) -> None:
    client = grafana(standin)
    client.provision()
    fingerprint = "sha256:ab/cd ef&x=1"
    parts = urlsplit(client.trend_url(fingerprint))
    assert f"{parts.scheme}://{parts.netloc}" == standin.url and parts.path.startswith("/d/stroppy-test-trend/")
    assert standin.state.dashboards["stroppy-test-trend"]["dashboard"]["title"] == TEST_TREND
    assert parse_qs(parts.query) == {"var-fingerprint": [fingerprint]}


def test_errors_say_which_call_failed_and_why(standin: GrafanaStandIn) -> None:
    with pytest.raises(GrafanaError, match=r"read folder stroppy failed \(401\): Unauthorized"):
        grafana(standin, token="wrong").provision()
    assert standin.state.writes == []
    unreachable = GrafanaConnection(url="http://127.0.0.1:9", token=TOKEN, timeout_s=1)
    with pytest.raises(GrafanaError, match=r"read folder stroppy failed"):
        Grafana(unreachable.get_client(), "Stroppy", "http://127.0.0.1:8428").provision()
