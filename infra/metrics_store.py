"""The metrics store: VictoriaMetrics, which scrapes each run's exporters and stores the load's time series.

Scraping is registered per run as one `file_sd` file in a directory VictoriaMetrics watches
(`-promscrape.config` with `file_sd_configs`; scripts/services.sh writes that config), so a run's targets appear
when the file is written and disappear when it is removed. Every series, scraped or imported, carries `run_id`.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from stroppy_domain.errors import StroppyError
from stroppy_domain.timeseries import ScrapeTarget, Series


class MetricsStoreError(StroppyError):
    """VictoriaMetrics refused or could not be reached; the message says which call and why."""


class VictoriaMetrics:
    def __init__(self, url: str, targets_dir: Path, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.targets_dir = targets_dir
        self._timeout = timeout_s

    def targets_file(self, run_id: str) -> Path:
        return self.targets_dir / f"{run_id}.json"

    def register_targets(self, run_id: str, targets: list[ScrapeTarget]) -> Path:
        """Write the run's targets atomically (a half-written file would be read as broken) and return its path."""
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        path = self.targets_file(run_id)
        groups = [{"targets": [target.address], "labels": target.labels} for target in targets]
        staging = path.with_suffix(".json.tmp")
        staging.write_text(json.dumps(groups, indent=1))
        os.replace(staging, path)
        return path

    def remove_targets(self, run_id: str) -> bool:
        """Stop scraping the run; True when there was something to remove. Idempotent."""
        path = self.targets_file(run_id)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def import_series(self, run_id: str, series: list[Series]) -> int:
        """Store series under the run's id and make them searchable at once; returns the number of samples.

        Raises MetricsStoreError when VictoriaMetrics refuses them or cannot be reached (retryable when it did not
        answer or failed on its side)."""
        lines = [
            json.dumps(
                {
                    "metric": {"__name__": one.name, **one.labels, "run_id": run_id},
                    "values": one.values,
                    "timestamps": one.timestamps_ms,
                }
            )
            for one in series
            if one.values
        ]
        if not lines:
            return 0
        self._call("POST", "/api/v1/import", content="\n".join(lines) + "\n")
        self._call("GET", "/internal/force_flush")
        return sum(len(one.values) for one in series)

    def query_range(self, expression: str, start: datetime, end: datetime, step_s: int) -> list[dict[str, Any]]:
        """The `result` of a Prometheus range query: one entry per series.

        Raises MetricsStoreError when the query fails, or VictoriaMetrics refuses it or cannot be reached."""
        params = {"query": expression, "start": start.timestamp(), "end": end.timestamp(), "step": f"{step_s}s"}
        body = self._call("GET", "/api/v1/query_range", params=params).json()
        if body.get("status") != "success":
            raise MetricsStoreError(f"query {expression!r} failed: {body.get('error', body)}")
        return body["data"]["result"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The `result` of a Prometheus instant query at the store's present: one entry per series.

        Raises MetricsStoreError when the query fails, or VictoriaMetrics refuses it or cannot be reached."""
        body = self._call("GET", "/api/v1/query", params={"query": expression}).json()
        if body.get("status") != "success":
            raise MetricsStoreError(f"query {expression!r} failed: {body.get('error', body)}")
        return body["data"]["result"]

    def active_targets(self, run_id: str) -> list[dict[str, Any]]:
        """The run's targets as VictoriaMetrics currently scrapes them, with their health.

        Raises MetricsStoreError when VictoriaMetrics refuses or cannot be reached."""
        targets = self._call("GET", "/api/v1/targets").json()["data"]["activeTargets"]
        return [target for target in targets if target.get("labels", {}).get("run_id") == run_id]

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = httpx.request(method, self.url + path, timeout=self._timeout, **kwargs)
            response.raise_for_status()
        except httpx.HTTPStatusError as error:
            raise MetricsStoreError(
                f"VictoriaMetrics {method} {path} answered {error.response.status_code}: {error.response.text[:300]}",
                retryable=error.response.is_server_error,
            ) from error
        except httpx.HTTPError as error:
            raise MetricsStoreError(
                f"VictoriaMetrics at {self.url} unreachable ({method} {path}): {error}", retryable=True
            ) from error
        return response
