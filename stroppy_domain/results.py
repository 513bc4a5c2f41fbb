"""Load output -> normalised metrics: the three k6 summary shapes (stroppy) and pgbench's report.

Pure parsing; a partial or unreadable output raises `SummaryError` with the reason, which a run turns into an ERROR
verdict instead of a crash. See shared/reference/k6-summary-and-thresholds.md for the shapes, in particular the
inverted threshold booleans of `--summary-export`.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any

from pydantic import Field

from stroppy_domain.errors import StroppyError
from stroppy_domain.model import Model


class MetricType(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    RATE = "rate"
    TREND = "trend"


class Metric(Model):
    name: str
    type: MetricType
    values: dict[str, float]


class ReportedThreshold(Model):
    """A threshold as the load tool itself judged it."""

    metric: str
    expression: str
    passed: bool


class LoadMetrics(Model):
    metrics: dict[str, Metric] = Field(default_factory=dict)
    thresholds: list[ReportedThreshold] = Field(default_factory=list)


class SummaryError(StroppyError, ValueError):
    """The output cannot be read as a summary; the message says why."""


def _infer_type(values: dict[str, Any]) -> MetricType:
    """Shape B drops `type`; the keys tell it (k6 reference, section 1B)."""
    keys = set(values)
    if {"passes", "fails"} <= keys:
        return MetricType.RATE
    if "count" in keys and "rate" in keys:
        return MetricType.COUNTER
    if "value" in keys:
        return MetricType.GAUGE
    return MetricType.TREND


def _numbers(name: str, values: Any) -> dict[str, float]:
    if not isinstance(values, dict):
        raise SummaryError(f"metric {name!r}: values must be an object, got {type(values).__name__}")
    return {key: float(value) for key, value in values.items() if isinstance(value, int | float)}


def parse_k6_summary(text: str) -> LoadMetrics:
    """Read a k6 `handleSummary` argument, a `--summary-export` file or the new machine-readable summary.

    Raises SummaryError when the text is not JSON, or not a summary with metrics whose values are objects."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise SummaryError(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise SummaryError("a k6 summary is a JSON object")
    if "results" in document and "version" in document:
        return _machine_readable(document)
    metrics = document.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise SummaryError("the summary has no metrics")
    parsed: dict[str, Metric] = {}
    thresholds: list[ReportedThreshold] = []
    for name, entry in metrics.items():
        if not isinstance(entry, dict):
            raise SummaryError(f"metric {name!r}: expected an object")
        if "type" in entry and "values" in entry:  # shape A: thresholds {expr: {ok: passed}}
            metric_type, values = MetricType(entry["type"]), _numbers(name, entry["values"])
            reported = {expr: bool(result.get("ok")) for expr, result in (entry.get("thresholds") or {}).items()}
        else:  # shape B: thresholds {expr: crossed}, `rate` renamed `value` for rates
            raw = {key: value for key, value in entry.items() if key != "thresholds"}
            metric_type, values = _infer_type(raw), _numbers(name, raw)
            if metric_type is MetricType.RATE and "value" in values:
                values["rate"] = values.pop("value")
            reported = {expr: not bool(crossed) for expr, crossed in (entry.get("thresholds") or {}).items()}
        parsed[name] = Metric(name=name, type=metric_type, values=values)
        thresholds += [
            ReportedThreshold(metric=name, expression=expr, passed=passed) for expr, passed in reported.items()
        ]
    return LoadMetrics(metrics=parsed, thresholds=thresholds)


def _machine_readable(document: dict[str, Any]) -> LoadMetrics:
    results = document.get("results")
    if not isinstance(results, dict):
        raise SummaryError("the machine-readable summary has no results")
    parsed: dict[str, Metric] = {}
    for entry in [*(results.get("metrics") or []), *((results.get("checks") or {}).get("metrics") or [])]:
        name = entry.get("name")
        if not name:
            raise SummaryError("a metric without a name")
        values = _numbers(name, entry.get("values"))
        parsed[name] = Metric(name=name, type=MetricType(entry.get("type", "trend")), values=values)
    return LoadMetrics(metrics=parsed)


_PGBENCH = {
    "transactions": re.compile(r"^number of transactions actually processed: (\d+)", re.M),
    "failed": re.compile(r"^number of failed transactions: (\d+)", re.M),
    "latency_avg_ms": re.compile(r"^latency average = ([\d.]+) ms", re.M),
    "latency_stddev_ms": re.compile(r"^latency stddev = ([\d.]+) ms", re.M),
    "tps": re.compile(r"^tps = ([\d.]+) \(without initial connection time\)", re.M),
}


PGBENCH_METRIC_TYPES: dict[str, MetricType] = {
    "transactions": MetricType.COUNTER,
    "tps": MetricType.GAUGE,
    "latency": MetricType.TREND,
    "failed_transactions": MetricType.COUNTER,
}
"""The metrics `parse_pgbench_report` makes of pgbench's report, by type: what a pgbench test's thresholds judge."""


def parse_pgbench_report(text: str) -> LoadMetrics:
    """pgbench's end-of-run report -> `transactions` (counter), `tps` (gauge), `latency` (trend, ms), `failed`.

    Raises SummaryError when the report lacks the transactions, the tps or the average latency (an unfinished run)."""
    found = {key: float(match.group(1)) for key, pattern in _PGBENCH.items() if (match := pattern.search(text))}
    missing = [key for key in ("transactions", "tps", "latency_avg_ms") if key not in found]
    if missing:
        raise SummaryError(f"the pgbench report lacks {', '.join(missing)} (did the run finish?)")
    latency = {"avg": found["latency_avg_ms"]} | (
        {"stddev": found["latency_stddev_ms"]} if "latency_stddev_ms" in found else {}
    )
    metrics = [
        ("transactions", {"count": found["transactions"]}),
        ("tps", {"value": found["tps"]}),
        ("latency", latency),
        ("failed_transactions", {"count": found.get("failed", 0.0)}),
    ]
    return LoadMetrics(
        metrics={name: Metric(name=name, type=PGBENCH_METRIC_TYPES[name], values=values) for name, values in metrics}
    )


def measure(driver: str, summary_text: str | None, report_text: str) -> LoadMetrics:
    """The metrics of a finished load: stroppy's exported k6 summary, or pgbench's end-of-run report.

    Raises SummaryError when stroppy wrote no summary, or the output cannot be read as one or as a report."""
    if driver == "pgbench":
        return parse_pgbench_report(report_text)
    if summary_text is None:
        raise SummaryError("stroppy wrote no summary file")
    return parse_k6_summary(summary_text)
