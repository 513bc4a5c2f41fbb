"""The metrics store against the real VictoriaMetrics started by scripts/services.sh."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from infra.grafana.boards import TREND_QUERY
from infra.metrics_store import HISTORY_METRIC, MetricsStoreError, VictoriaMetrics
from infra.settings import OrchestrationSettings
from stroppy_domain.timeseries import LOAD_LATENCY, LOAD_THROUGHPUT, ScrapeTarget, Series

pytestmark = pytest.mark.redis

SCRAPE_WAIT_S = 30


@pytest.fixture
def store() -> VictoriaMetrics:
    settings = OrchestrationSettings()
    try:
        httpx.get(f"{settings.metrics_url}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        pytest.fail(f"no VictoriaMetrics at {settings.metrics_url}; `bash scripts/services.sh start`: {error}")
    return VictoriaMetrics(settings.metrics_url, settings.metrics_targets_dir)


class _Exporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"# TYPE standin_exporter_up gauge\nstandin_exporter_up 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        del args


@pytest.fixture
def exporter() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _wait(predicate, timeout_s: float = SCRAPE_WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_a_registered_exporter_is_scraped_with_the_run_id_until_removed(store: VictoriaMetrics, exporter: str) -> None:
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    target = ScrapeTarget(address=exporter, labels={"run_id": run_id, "machine": "m1", "service": "node_exporter"})
    store.register_targets(run_id, [target])
    try:
        started = datetime.now(UTC) - timedelta(seconds=5)

        def scraped() -> list:
            store._call("GET", "/internal/force_flush")
            end = datetime.now(UTC) + timedelta(seconds=5)
            return store.query_range(f'standin_exporter_up{{run_id="{run_id}"}}', started, end, 1)

        assert _wait(lambda: bool(scraped())), f"{exporter} not scraped within {SCRAPE_WAIT_S} s"
        (series,) = scraped()
        assert series["metric"]["machine"] == "m1" and series["metric"]["service"] == "node_exporter"
        assert [t["health"] for t in store.active_targets(run_id)] == ["up"]
    finally:
        assert store.remove_targets(run_id)
    assert _wait(lambda: not store.active_targets(run_id)), "target still scraped after removal"
    assert not store.remove_targets(run_id)


def test_imported_series_come_back_under_the_run_id_only(store: VictoriaMetrics) -> None:
    run_id, other = f"run-{uuid.uuid4().hex[:12]}", f"run-{uuid.uuid4().hex[:12]}"
    now = int(time.time())
    stamps = [(now - 10 + second) * 1000 for second in range(5)]
    series = [
        Series(name=LOAD_THROUGHPUT, timestamps_ms=stamps, values=[10, 11, 12, 13, 14]),
        Series(name=LOAD_LATENCY, labels={"quantile": "0.95"}, timestamps_ms=stamps, values=[0.1] * 5),
    ]
    assert store.import_series(run_id, series) == 10
    assert store.import_series(run_id, series) == 10  # a retried import: deduplicated, not doubled
    store.import_series(other, series[:1])
    window = (datetime.fromtimestamp(now - 12, UTC), datetime.fromtimestamp(now, UTC))
    (throughput,) = store.query_range(f'{LOAD_THROUGHPUT}{{run_id="{run_id}"}}', *window, 1)
    assert sorted({float(value) for _, value in throughput["values"]}) == [10, 11, 12, 13, 14]
    (total,) = store.query_range(f'sum_over_time({LOAD_THROUGHPUT}{{run_id="{run_id}"}}[1m])', *window, 1)
    assert max(float(value) for _, value in total["values"]) == 60
    (latency,) = store.query_range(f'{LOAD_LATENCY}{{run_id="{run_id}"}}', *window, 1)
    assert latency["metric"]["quantile"] == "0.95"


def test_history_points_come_back_one_per_run_as_the_trend_dashboard_queries_them(store: VictoriaMetrics) -> None:
    fingerprint, test = f"fp-{uuid.uuid4().hex[:12]}", 'tpc "b" \\ 1'
    day_s = 86400
    today = datetime.fromtimestamp(int(time.time()) // day_s * day_s, UTC)
    runs = [(today - timedelta(days=3, seconds=-17.5), 100.0), (today - timedelta(days=2, seconds=-5), 110.5)]
    trend = TREND_QUERY.replace("$fingerprint", fingerprint).replace("$metric", ".*").replace("$__interval", "3600s")
    window = (today - timedelta(days=4), today)
    for seen, (at, value) in enumerate(runs, start=1):
        store.record_history_points(test, fingerprint, {"tps": {"value": value}, "latency_p95": {}}, at)
        store.record_history_points(test, fingerprint, {"tps": {"value": value}}, at)  # a retried report
        # Viewed after each run: the second run's point must not be hidden by the answer cached after the first.
        (points,) = store.query_range(trend, *window, 3600)
        assert [float(shown) for _, shown in points["values"]] == [recorded for _, recorded in runs[:seen]]
    (series,) = store.query_range(f'{HISTORY_METRIC}{{fingerprint="{fingerprint}"}}', runs[0][0], runs[0][0], 1)
    assert series["metric"] == {
        "__name__": HISTORY_METRIC, "test": test, "fingerprint": fingerprint, "metric": "tps", "aggregate": "value",
    }  # fmt: skip
    assert series["values"] == [[runs[0][0].timestamp(), "100"]]
    with pytest.raises(ValueError, match="tps rate: nan is not a number"):
        store.record_history_points(test, fingerprint, {"tps": {"value": 1.0, "rate": float("nan")}}, today)
    (points,) = store.query_range(trend, *window, 3600)
    assert len(points["values"]) == len(runs), "nothing of a refused batch was recorded"


def test_errors_name_the_call_and_the_reason(store: VictoriaMetrics) -> None:
    with pytest.raises(MetricsStoreError, match=r"query 'rate\(' failed|answered 4"):
        store.query_range("rate(", datetime.now(UTC) - timedelta(minutes=1), datetime.now(UTC), 1)
    unreachable = VictoriaMetrics("http://127.0.0.1:9", store.targets_dir, timeout_s=1)
    with pytest.raises(MetricsStoreError, match="unreachable"):
        unreachable.import_series("run-x", [Series(name="x", timestamps_ms=[1], values=[1.0])])
