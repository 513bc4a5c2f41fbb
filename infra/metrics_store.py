"""The metrics store: VictoriaMetrics, which scrapes each run's exporters and stores the load's time series.

Scraping is registered per run as one `file_sd` file in a directory VictoriaMetrics watches
(`-promscrape.config` with `file_sd_configs`; scripts/services.sh writes that config), so a run's targets appear
when the file is written and disappear when it is removed. Every series of a run, scraped or imported, carries
`run_id`; a test's history (`HISTORY_METRIC`) is one series per fingerprint and metric, a point per run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from infra.targets.base import ReleasedOnExit
from stroppy_domain.errors import StroppyError
from stroppy_domain.timeseries import ScrapeTarget, Series

HISTORY_METRIC = "stroppy_history_value"


class MetricsStoreError(StroppyError):
    """VictoriaMetrics refused or could not be reached; the message says which call and why."""


class VictoriaMetrics(ReleasedOnExit):
    """One VictoriaMetrics server. Its HTTP calls share one client (made at the first call: a client's TLS set-up
    costs 40 ms); use it as a context manager, or call `close()`, to release it."""

    def __init__(self, url: str, targets_dir: Path, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.targets_dir = targets_dir
        self._timeout = timeout_s
        self._client: httpx.Client | None = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

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
        self._import(
            [
                {
                    "metric": {"__name__": one.name, **one.labels, "run_id": run_id},
                    "values": one.values,
                    "timestamps": one.timestamps_ms,
                }
                for one in series
                if one.values
            ]
        )
        return sum(len(one.values) for one in series)

    def record_history_points(
        self, test: str, fingerprint: str, values: Mapping[str, Mapping[str, float]], at: datetime
    ) -> None:
        """One run's values of its test's key metrics (metric -> aggregate -> value), each as the point at `at` (the
        run's start) of the test's history series of that metric, in one import. Recording them again, as a retried
        report would, adds no point: same series, same timestamp.

        Raises ValueError, before anything is recorded, when a value is not finite (VictoriaMetrics would drop it
        without saying so); MetricsStoreError when VictoriaMetrics refuses them or cannot be reached (retryable when
        it did not answer or failed on its side)."""
        points = []
        for metric, aggregates in values.items():
            for aggregate, value in aggregates.items():
                if not math.isfinite(value):
                    raise ValueError(f"{test} {metric} {aggregate}: {value} is not a number to record")
                labels = {"test": test, "fingerprint": fingerprint, "metric": metric, "aggregate": aggregate}
                point = {"values": [value], "timestamps": [int(at.timestamp() * 1000)]}
                points.append({"metric": {"__name__": HISTORY_METRIC, **labels}, **point})
        self._import(points)

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

    def _import(self, series: list[dict[str, Any]]) -> None:
        """Series in VictoriaMetrics' JSON line format (JSON quotes any label value), searchable once this returns.

        Imported samples are in the past, where VictoriaMetrics answers repeated queries from its result cache (a
        dashboard viewed during the run, or a trend viewed before this run's point), so the cache is dropped."""
        if not series:
            return
        lines = "".join(json.dumps(one) + "\n" for one in series)
        self._call("POST", "/api/v1/import", content=lines)
        self._call("GET", "/internal/force_flush")
        self._call("GET", "/internal/resetRollupResultCache")

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            if self._client is None:
                self._client = httpx.Client(timeout=self._timeout)
            response = self._client.request(method, self.url + path, **kwargs)
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
