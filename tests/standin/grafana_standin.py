"""A stand-in for Grafana's HTTP API (a Grafana server cannot run on these machines).

It answers the calls this project makes, with Grafana's paths, status codes and payload shapes: health, folders,
datasources by uid, dashboards by uid and `POST /api/dashboards/db`, annotations (find by tags, all must match; add).
It checks the bearer token, refuses a dashboard whose panels use a datasource it does not have, and counts writes,
so tests can see idempotence. State is kept in memory and readable as `GrafanaStandIn.state`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.standin.http_server import JsonHandler, StandInServer


@dataclass
class StandInState:
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)


class GrafanaStandIn(StandInServer):
    def __init__(self, token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self.state = StandInState()
        self.lock = threading.Lock()
        super().__init__(_handler_for(self), "grafana-standin", host, port)


def _datasource_uids(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["datasource"]["uid"]} if isinstance(node.get("datasource"), dict) else set()
        return found.union(*(_datasource_uids(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_datasource_uids(value) for value in node))
    return set()


def _handler_for(standin: GrafanaStandIn) -> type[BaseHTTPRequestHandler]:
    state = standin.state

    class Handler(JsonHandler):
        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {standin.token}":
                return True
            self._reply(401, {"message": "invalid API key"})
            return False

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path, query = parts.path, parse_qs(parts.query)
            if path == "/api/health":
                self._reply(200, {"database": "ok", "version": "standin"})
                return
            if not self._authorised():
                return
            with standin.lock:
                self._get(path, query)

        def _get(self, path: str, query: dict[str, list[str]]) -> None:
            if path.startswith("/api/folders/"):
                folder = state.folders.get(path.removeprefix("/api/folders/"))
                self._reply(200, folder) if folder else self._reply(404, {"message": "folder not found"})
            elif path.startswith("/api/datasources/uid/"):
                source = state.datasources.get(path.removeprefix("/api/datasources/uid/"))
                self._reply(200, source) if source else self._reply(404, {"message": "Data source not found"})
            elif path.startswith("/api/dashboards/uid/"):
                stored = state.dashboards.get(path.removeprefix("/api/dashboards/uid/"))
                self._reply(200, stored) if stored else self._reply(404, {"message": "Dashboard not found"})
            elif path == "/api/annotations":
                tags = set(query.get("tags", []))
                self._reply(200, [a for a in state.annotations if tags <= set(a["tags"])])
            else:
                self._reply(404, {"message": "Not found"})

        def do_POST(self) -> None:
            if not self._authorised():
                return
            body = self._body()
            with standin.lock:
                self._post(urlsplit(self.path).path, body)

        def _post(self, path: str, body: dict[str, Any]) -> None:
            if path == "/api/folders":
                uid = body.get("uid") or f"folder{len(state.folders)}"
                if uid in state.folders:
                    self._reply(409, {"message": "a folder with the same uid already exists"})
                    return
                state.folders[uid] = {"uid": uid, "title": body["title"], "id": len(state.folders) + 1}
                state.writes.append(f"folder {uid}")
                self._reply(200, state.folders[uid])
            elif path == "/api/datasources":
                if body["uid"] in state.datasources:
                    self._reply(409, {"message": "data source with the same uid already exists"})
                    return
                state.datasources[body["uid"]] = body | {"id": len(state.datasources) + 1}
                state.writes.append(f"datasource {body['uid']}")
                self._reply(200, {"message": "Datasource added", "datasource": state.datasources[body["uid"]]})
            elif path == "/api/dashboards/db":
                self._save_dashboard(body)
            elif path == "/api/annotations":
                annotation = {"id": len(state.annotations) + 1, "time": body["time"], "timeEnd": body.get("timeEnd"),
                              "tags": body.get("tags", []), "text": body.get("text", "")}  # fmt: skip
                state.annotations.append(annotation)
                state.writes.append(f"annotation {annotation['id']}")
                self._reply(200, {"message": "Annotation added", "id": annotation["id"]})
            else:
                self._reply(404, {"message": "Not found"})

        def _save_dashboard(self, body: dict[str, Any]) -> None:
            dashboard, folder = body["dashboard"], body.get("folderUid")
            unknown = _datasource_uids(dashboard) - set(state.datasources) - {"-- Grafana --"}
            if folder not in state.folders:
                self._reply(400, {"message": f"folder {folder} not found"})
            elif unknown:
                self._reply(400, {"message": f"unknown datasource(s) {sorted(unknown)}"})
            elif dashboard["uid"] in state.dashboards and not body.get("overwrite"):
                self._reply(
                    412, {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"}
                )
            else:
                version = state.dashboards.get(dashboard["uid"], {}).get("dashboard", {}).get("version", 0) + 1
                stored = dashboard | {"id": 1, "version": version}
                state.dashboards[dashboard["uid"]] = {"dashboard": stored, "meta": {"folderUid": folder}}
                state.writes.append(f"dashboard {dashboard['uid']}")
                self._reply(200, {"status": "success", "uid": dashboard["uid"], "version": version})

        def do_PUT(self) -> None:
            if not self._authorised():
                return
            path, body = urlsplit(self.path).path, self._body()
            with standin.lock:
                uid = path.removeprefix("/api/datasources/uid/")
                if not path.startswith("/api/datasources/uid/") or uid not in state.datasources:
                    self._reply(404, {"message": "Data source not found"})
                    return
                state.datasources[uid] = body | {"id": state.datasources[uid]["id"]}
                state.writes.append(f"datasource {uid}")
                self._reply(200, {"message": "Datasource updated"})

    return Handler
