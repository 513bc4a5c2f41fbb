"""Grafana: the dashboards of `infra.grafana.boards`, provisioned idempotently, a run's phase annotations, the
changes found in a test's history, and links into the dashboards for reports.

`Grafana` works through a ready `grafana_client.GrafanaApi` (a `GrafanaConnection` block's `get_client()` makes one);
`grafana_client` is imported on first use, so installations without Grafana never load it.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, Field

from infra.grafana.boards import (
    ANNOTATION_TAG,
    CHANGE_TAG,
    DASHBOARDS_DIR,
    DATASOURCE_UID,
    RUN_OVERVIEW,
    TEST_TREND,
    TREND_UID,
    dashboards,
    fingerprint_tag,
    run_dashboards,
    trend_dashboard,
)
from stroppy_domain.errors import StroppyError
from stroppy_domain.reports import Dashboard, Phase, dashboard_url, slug

if TYPE_CHECKING:
    from grafana_client import GrafanaApi

__all__ = [
    "ANNOTATION_TAG",
    "DASHBOARDS_DIR",
    "DATASOURCE_UID",
    "FOLDER_UID",
    "RUN_OVERVIEW",
    "TEST_TREND",
    "Grafana",
    "GrafanaError",
    "ProvisionReport",
    "dashboards",
    "datasource",
    "panel_queries",
    "run_dashboards",
    "trend_dashboard",
]

DATASOURCE_FILE = Path(__file__).resolve().parent / "provisioning" / "datasources" / "stroppy.yaml"
FOLDER_UID = "stroppy"


class GrafanaError(StroppyError):
    """Grafana refused or could not be reached; says which call and why."""


class ProvisionReport(BaseModel):
    created: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)


@cache
def datasource() -> dict[str, Any]:
    """The VictoriaMetrics datasource as Grafana's file provisioning declares it (compose.yaml mounts that file).

    Raises GrafanaError when its uid is not the one the dashboards' panels use."""
    (declared,) = yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"]
    if declared["uid"] != DATASOURCE_UID:
        raise GrafanaError(f"{DATASOURCE_FILE}: uid {declared['uid']} is not {DATASOURCE_UID}, which panels use")
    return declared


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of every panel."""
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _base_url(api: GrafanaApi) -> str:
    """Grafana's URL as users open it, for links: the client's URL without credentials, query or trailing slash."""
    parts = urlsplit(api.url or api.client.url.removesuffix("api"))
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path.rstrip("/"), "", ""))


class Grafana:
    """One Grafana organisation, reached through `api` (its URL, credentials and timeout are the client's)."""

    def __init__(self, api: GrafanaApi, folder: str, datasource_url: str) -> None:
        self.url = _base_url(api)
        self.folder = folder
        self.datasource_url = datasource_url
        self._api = api

    def provision(self) -> ProvisionReport:
        """Folder, VictoriaMetrics datasource and dashboards: created when missing, updated only when different.

        Raises GrafanaError when Grafana refuses a call or cannot be reached."""
        report = ProvisionReport()
        self._ensure_folder(report)
        self._ensure_datasource(report)
        for dashboard in dashboards():
            self._ensure_dashboard(dashboard, report)
        return report

    def annotate(self, run_id: str, test_name: str, phases: list[Phase]) -> int:
        """One region annotation per phase, tagged with the run; a phase already annotated is not repeated.

        Raises GrafanaError when Grafana refuses a call or cannot be reached."""
        existing = self._call(
            "find annotations", self._api.annotations.find_annotations, tags=[ANNOTATION_TAG, run_id], limit=1000
        )
        done = {tag for annotation in existing for tag in annotation.get("tags", [])}
        created = 0
        for phase in phases:
            if f"phase:{phase.name}" in done:
                continue
            self._call(
                "add annotation",
                self._api.annotations.add_annotation,
                time_from=int(phase.started_at.timestamp() * 1000),
                time_to=int(phase.ended_at.timestamp() * 1000),
                tags=[ANNOTATION_TAG, run_id, f"phase:{phase.name}"],
                text=f"{test_name}: {phase.name}",
            )
            created += 1
        return created

    def annotate_change(self, test: str, fingerprint: str, at: datetime, text: str) -> int:
        """A point annotation at `at` marking a change found in the test's history, which the trend dashboard shows;
        returns its id. A change already annotated (same time, same text) is not repeated: its id is returned.

        Raises GrafanaError when Grafana refuses a call or cannot be reached."""
        tags = [ANNOTATION_TAG, CHANGE_TAG, fingerprint_tag(fingerprint)]
        time_ms = int(at.timestamp() * 1000)
        labelled = f"{test}: {text}"
        existing = self._call(
            "find annotations",
            self._api.annotations.find_annotations,
            time_from=time_ms,
            time_to=time_ms,
            tags=tags,
            limit=1000,
        )
        for annotation in existing:
            if annotation.get("time") == time_ms and annotation.get("text") == labelled:
                return int(annotation["id"])
        added = self._call(
            "add annotation", self._api.annotations.add_annotation, time_from=time_ms, tags=tags, text=labelled
        )
        return int(added["id"])

    def links(self, run_id: str, start: datetime, end: datetime) -> dict[str, str]:
        """Title -> URL of each dashboard of one run, with the run chosen and its window as the time range."""
        return {
            board["title"]: dashboard_url(
                self.url, Dashboard(uid=board["uid"], title=board["title"]), run_id, start, end
            )
            for board in run_dashboards()
        }

    def trend_url(self, fingerprint: str) -> str:
        """The trend dashboard with the test of this fingerprint chosen, over the dashboard's own time range."""
        query = urlencode({"var-fingerprint": fingerprint})
        return f"{self.url}/d/{TREND_UID}/{slug(TEST_TREND)}?{query}"

    def _ensure_folder(self, report: ProvisionReport) -> None:
        if self._lookup("folder", self._api.folder.get_folder, FOLDER_UID) is None:
            self._call("create folder", self._api.folder.create_folder, self.folder, uid=FOLDER_UID)
            report.created.append(f"folder {FOLDER_UID}")
        else:
            report.unchanged.append(f"folder {FOLDER_UID}")

    def _ensure_datasource(self, report: ProvisionReport) -> None:
        wanted = datasource() | {"url": self.datasource_url}
        current = self._lookup("datasource", self._api.datasource.get_datasource_by_uid, DATASOURCE_UID)
        name = f"datasource {DATASOURCE_UID}"
        if current is None:
            self._call("create datasource", self._api.datasource.create_datasource, wanted)
            report.created.append(name)
        elif any(current.get(key) != value for key, value in wanted.items()):
            self._call("update datasource", self._api.datasource.update_datasource_by_uid, DATASOURCE_UID, wanted)
            report.updated.append(name)
        else:
            report.unchanged.append(name)

    def _ensure_dashboard(self, dashboard: dict[str, Any], report: ProvisionReport) -> None:
        name = f"dashboard {dashboard['uid']}"
        current = self._lookup("dashboard", self._api.dashboard.get_dashboard, dashboard["uid"])
        if current is not None:
            stored = {key: value for key, value in current["dashboard"].items() if key not in {"id", "version"}}
            if stored == dashboard and current.get("meta", {}).get("folderUid") == FOLDER_UID:
                report.unchanged.append(name)
                return
        payload = {"dashboard": dashboard | {"id": None}, "folderUid": FOLDER_UID, "overwrite": True}
        self._call("save dashboard", self._api.dashboard.update_dashboard, payload)
        (report.created if current is None else report.updated).append(name)

    def _lookup(self, what: str, method: Any, uid: str) -> dict[str, Any] | None:
        from grafana_client.client import GrafanaClientError  # noqa: PLC0415

        try:
            return self._call(f"read {what} {uid}", method, uid)
        except GrafanaError as error:
            if isinstance(error.__cause__, GrafanaClientError) and error.__cause__.status_code == 404:
                return None
            raise

    def _call(self, action: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        from grafana_client.client import GrafanaException  # noqa: PLC0415

        try:
            return method(*args, **kwargs)
        except GrafanaException as error:
            raise GrafanaError(
                f"Grafana at {self.url}: {action} failed ({error.status_code}): {error.message}",
                retryable=(error.status_code or 0) >= 500,
            ) from error
        except OSError as error:
            raise GrafanaError(
                f"Grafana at {self.url}: {action} failed, unreachable: {error}", retryable=True
            ) from error
