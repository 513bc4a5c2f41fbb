"""A test's history: one record per finished run, and the fingerprint that says which runs are comparable.

Two runs are comparable when what they measured was set up the same way: the load, the database's topology and
settings, the machines' hardware, the target and the isolation. The software versions are kept apart (in the record,
not the fingerprint), so "same setup, new PostgreSQL" is a comparison over one history, which is what a nightly suite
is for. The test's name, description, thresholds and regression rule are left out: renaming a test or changing what
passes does not change what was measured.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from datetime import datetime

from pydantic import Field

from stroppy_domain.checks import Verdict
from stroppy_domain.manifest import Manifest
from stroppy_domain.model import BenchmarkTest, Isolation, Model, Target
from stroppy_domain.timeseries import Series

FINGERPRINT_CHARS = 16
"""Hex digits of the fingerprint: 64 bits, so ten thousand setups collide with odds below one in ten billion."""
_NOT_MEASURED = {
    "name", "description", "thresholds", "regression", "target", "isolation", "repeat", "keep_on_failure",
}  # fmt: skip


def fingerprint(test: BenchmarkTest, target: Target, isolation: Isolation) -> str:
    """What makes runs of `test` comparable, as a short stable hash: its load, database and runner hardware, on
    `target` in `isolation` (the suite's values when the test names none). A value written equal to its default is
    the same setup as one left out."""
    # Fields at their defaults are left out, so a field added later (at its default) keeps every fingerprint.
    measured = test.model_dump(mode="json", by_alias=True, exclude=_NOT_MEASURED, exclude_defaults=True)
    canonical = json.dumps(
        {"test": measured, "target": str(target), "isolation": str(isolation)}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:FINGERPRINT_CHARS]


class Distribution(Model):
    """A metric's per-second values over the measured run."""

    median: float
    spread: float = Field(description="Interquartile range; 0 with fewer than two samples.")
    samples: int


def distribution(values: list[float]) -> Distribution | None:
    """The median, spread and count of per-second values; None when there are none."""
    if not values:
        return None
    spread = 0.0
    if len(values) > 1:
        quartiles = statistics.quantiles(values, n=4, method="inclusive")
        spread = quartiles[2] - quartiles[0]
    return Distribution(median=statistics.median(values), spread=spread, samples=len(values))


class HistoryRecord(Model):
    """One finished run (passed or failed; an errored run measured nothing and has no record)."""

    run_id: str
    test: str
    fingerprint: str
    started_at: datetime
    target: Target
    verdict: Verdict
    metrics: dict[str, dict[str, float]] = Field(description="The run's key metrics: metric -> aggregate -> value.")
    per_second: dict[str, Distribution] = Field(
        default_factory=dict, description="Series of the load (throughput, latency quantiles) -> their distribution."
    )
    versions: dict[str, str] = Field(default_factory=dict, description="What ran: kept apart from the fingerprint.")
    manifest: Manifest | None = None


LOAD_SERIES_PREFIX = "stroppy_load_"
"""The load's own per-second series (throughput, latency quantiles, errors), the same for every driver."""


def per_second(series: list[Series]) -> dict[str, Distribution]:
    """The distribution of each of the load's own per-second series, keyed by its name and labels as Prometheus
    writes them (`stroppy_load_latency_seconds{quantile="0.95"}`)."""
    distributions = {}
    for one in series:
        if not one.name.startswith(LOAD_SERIES_PREFIX):
            continue
        labels = ",".join(f'{key}="{value}"' for key, value in sorted(one.labels.items()))
        summary = distribution(one.values)
        if summary is not None:
            distributions[f"{one.name}{{{labels}}}" if labels else one.name] = summary
    return distributions
