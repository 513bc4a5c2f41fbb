"""Time series of a run: the load's per-second series, read from the files the load tool wrote, and the scrape
targets of the run's exporters. Pure; the metrics store (infra/metrics_store.py) stores both under the run's id.

Both drivers give the same three series, so one dashboard serves every test:
`stroppy_load_throughput` (transactions or iterations completed per second), `stroppy_load_latency_seconds`
(per-second quantiles, label `quantile`) and `stroppy_load_errors` (failed transactions or failed checks per second).
The stroppy driver adds each of its k6 metrics as `k6_<metric>` (per-second mean).
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from typing import cast

from pydantic import Field

from stroppy_domain.errors import StroppyError
from stroppy_domain.model import Model
from stroppy_domain.plan import RunPlan, ServiceKind

LOAD_THROUGHPUT = "stroppy_load_throughput"
LOAD_LATENCY = "stroppy_load_latency_seconds"
LOAD_ERRORS = "stroppy_load_errors"
LATENCY_QUANTILES = (0.5, 0.95, 0.99)
K6_METRIC_PREFIX = "k6_"

PGBENCH_LOG_PREFIX = "pgbench_log"
K6_METRICS_FILE = "k6_metrics.csv"

METRICS_PORTS = {
    "node-exporter": ServiceKind.NODE_EXPORTER.value,
    "postgres-exporter": ServiceKind.POSTGRES_EXPORTER.value,
    "pgbouncer-exporter": ServiceKind.PGBOUNCER_EXPORTER.value,
    "patroni": "patroni",
    "etcd-client": ServiceKind.ETCD.value,
}
"""The ports that serve Prometheus metrics at /metrics, and the service their series are labelled with: the
exporters, Patroni's REST API and etcd's client port (these two say the versions they run, for the manifest)."""

# Latencies are kept per second as counts in logarithmic buckets 2% wide, so a long run's quantiles need memory
# per distinct bucket, not per transaction; a reported quantile is within 2% of the exact one.
_BUCKET_GROWTH = 1.02


class Series(Model):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    timestamps_ms: list[int]
    values: list[float]


class ScrapeTarget(Model):
    address: str = Field(description="host:port of an exporter's /metrics.")
    labels: dict[str, str]


class LoadSeriesError(StroppyError, ValueError):
    """A load's time-series file cannot be read; the message names the line."""


class _PerSecond:
    """Completed and failed transactions and latency buckets, per whole second of wall-clock time."""

    def __init__(self) -> None:
        self.completed: Counter[int] = Counter()
        self.failed: Counter[int] = Counter()
        self.latency_buckets: dict[int, Counter[int]] = {}

    def add(self, second: int, latency_s: float | None) -> None:
        """A transaction ending at `second`; `latency_s` None means it failed."""
        if latency_s is None:
            self.failed[second] += 1
            return
        self.completed[second] += 1
        self.latency_buckets.setdefault(second, Counter())[_bucket(latency_s)] += 1

    def series(self) -> list[Series]:
        seconds = sorted(set(self.completed) | set(self.failed))
        if not seconds:
            return []
        stamps = [second * 1000 for second in seconds]
        result = [
            Series(name=LOAD_THROUGHPUT, timestamps_ms=stamps, values=[float(self.completed[s]) for s in seconds]),
            Series(name=LOAD_ERRORS, timestamps_ms=stamps, values=[float(self.failed[s]) for s in seconds]),
        ]
        timed = [second for second in seconds if second in self.latency_buckets]
        for quantile in LATENCY_QUANTILES:
            result.append(
                Series(
                    name=LOAD_LATENCY,
                    labels={"quantile": str(quantile)},
                    timestamps_ms=[second * 1000 for second in timed],
                    values=[_quantile(self.latency_buckets[second], quantile) for second in timed],
                )
            )
        return result


@lru_cache(maxsize=65536)
def _bucket(latency_s: float) -> int:
    """Latencies repeat (pgbench logs whole microseconds), so the logarithm is computed once per distinct value."""
    return math.ceil(math.log(latency_s) / math.log(_BUCKET_GROWTH)) if latency_s > 0 else -(10**6)


def _quantile(buckets: Counter[int], quantile: float) -> float:
    wanted = quantile * sum(buckets.values())
    seen = 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= wanted:
            return round(_BUCKET_GROWTH**bucket, 9)
    raise AssertionError("unreachable: the last bucket holds the total")


def pgbench_log_series(*logs: Iterable[str]) -> list[Series]:
    """pgbench `--log` lines: `client transaction latency_us script epoch_s epoch_us [lag] [retries]`. pgbench writes
    one log per thread (`--jobs`); given all of them, they add up to one set of series, the whole load's.

    The latency field is a number for a completed transaction, `skipped` for one skipped by `--latency-limit`
    (not counted), and `failed`, `serialization` or `deadlock` for a failed one.

    Raises LoadSeriesError for a line of another shape, naming the log (counted from 1) and the line.
    """
    per_second = _PerSecond()
    for log_number, lines in enumerate(logs, start=1):
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 6 or not fields[4].isdigit():
                where = f"log {log_number} line {number}" if len(logs) > 1 else f"log line {number}"
                raise LoadSeriesError(f"pgbench {where} is not `client tx latency script epoch usec`: {line!r}")
            latency = fields[2]
            if latency == "skipped":
                continue
            per_second.add(int(fields[4]), int(latency) / 1e6 if latency.isdigit() else None)
    return per_second.series()


def k6_csv_series(lines: Iterable[str]) -> list[Series]:
    """k6 `--out csv=FILE` rows (`metric_name,timestamp,metric_value,...`, unix-second timestamps).

    stroppy v5 writes a `tx_total_duration` row (milliseconds) per finished transaction and a `tx_error_rate` row of
    1 per failed one (`internal/static/helpers.ts:129-138,320-338,787-806` at v5.7.3): throughput, latency and errors
    come from those. A load without them falls back to k6's own `iteration_duration` per iteration and `checks`
    rows of 0 as errors. Besides, every metric the load reported becomes `k6_<metric>`, its per-second mean.

    Raises LoadSeriesError when a column is missing, or a row's timestamp or value is not a number.
    """
    transactions, iterations = _PerSecond(), _PerSecond()
    sums: dict[str, dict[int, float]] = {}
    counts: dict[str, Counter[int]] = {}
    reader = csv.DictReader(lines)
    missing = {"metric_name", "timestamp", "metric_value"} - set(reader.fieldnames or ())
    if missing:
        raise LoadSeriesError(f"k6 CSV output lacks the column(s) {', '.join(sorted(missing))}")
    for row in reader:
        name = row["metric_name"]
        try:
            second, value = int(float(row["timestamp"])), float(row["metric_value"])
        except (TypeError, ValueError) as error:
            raise LoadSeriesError(f"k6 CSV line {reader.line_num}: {error}") from error
        # A Counter sums floats as well; typeshed types its counts as int only.
        sums.setdefault(name, cast("dict[int, float]", Counter()))[second] += value
        counts.setdefault(name, Counter())[second] += 1
        if name == "tx_total_duration":
            transactions.add(second, value / 1000)
        elif name == "tx_error_rate" and value != 0:
            transactions.add(second, None)
        elif name == "iteration_duration":
            iterations.add(second, value / 1000)
        elif name == "checks" and value == 0:
            iterations.add(second, None)
    means = [
        Series(
            name=K6_METRIC_PREFIX + re.sub(r"[^a-zA-Z0-9_]", "_", name),
            timestamps_ms=[second * 1000 for second in sorted(sums[name])],
            values=[sums[name][second] / counts[name][second] for second in sorted(sums[name])],
        )
        for name in sorted(sums)
    ]
    return (transactions.series() or iterations.series()) + means


def scrape_targets(run_id: str, plan: RunPlan) -> list[ScrapeTarget]:
    """Every metrics port of the plan, labelled with the run, machine, role and service its series come from."""
    targets = []
    for machine in plan.machines:
        for container in machine.containers:
            for port in container.ports:
                service = METRICS_PORTS.get(port.name)
                if service is None:
                    continue
                labels = {
                    "run_id": run_id,
                    "test": plan.test_name,
                    "machine": machine.name,
                    "role": str(machine.role),
                    "service": service,
                }
                targets.append(ScrapeTarget(address=f"{machine.ip}:{port.number}", labels=labels))
    return targets
