"""Lookup of one fingerprint's latest runs in a large local history (issue 16: 10,000 records, the last 50 of one
fingerprint in under a second).

Writes `--records` records spread evenly over `--fingerprints` fingerprints (and ten tests) into a temporary local
store, then times `latest(fingerprint, 50)` for `--lookups` fingerprints picked at random. The RNG is seeded, so the
same command makes the same history:

    uv run python benchmarks/history_lookup.py [--records 10000] [--fingerprints 200] [--lookups 20] [--seed S]

The records were just written, so the lookups read them from the page cache: what a master that appended them sees.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from infra.history_store import LocalHistoryStore
from stroppy_domain.checks import Verdict
from stroppy_domain.history import Distribution, HistoryRecord
from stroppy_domain.model import Target

START = datetime(2026, 1, 1, tzinfo=UTC)
LIMIT = 50
TARGET_MS = 1000.0
TESTS = 10


def synthetic_record(index: int, fingerprint: str, rng: random.Random) -> HistoryRecord:
    """The `index`-th run, an hour after the one before; a few metrics and per-second distributions."""
    tps = rng.gauss(1000, 30)
    return HistoryRecord(
        run_id=f"run-{index:012x}", test=f"test-{int(fingerprint, 16) % TESTS}", fingerprint=fingerprint,
        started_at=START + timedelta(hours=index), target=Target.DOCKER,
        verdict=Verdict.PASSED if tps > 950 else Verdict.FAILED,
        metrics={"tps": {"median": tps}, "latency_ms": {"p95": rng.gauss(20, 2), "p99": rng.gauss(35, 3)}},
        per_second={
            "tps": Distribution(median=tps, spread=rng.uniform(10, 40), samples=300),
            "latency_p99_ms": Distribution(median=rng.gauss(35, 3), spread=rng.uniform(1, 5), samples=300),
        },
        versions={"postgres": "17.2", "stroppy": "v5.0.0"},
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000, help="records to write (default 10000)")
    parser.add_argument("--fingerprints", type=int, default=200, help="fingerprints they share (default 200)")
    parser.add_argument("--lookups", type=int, default=20, help="fingerprints looked up (default 20)")
    parser.add_argument("--seed", type=int, default=16, help="seed of the RNG (default 16)")
    arguments = parser.parse_args()
    rng = random.Random(arguments.seed)
    fingerprints = [f"{rng.getrandbits(64):016x}" for _ in range(arguments.fingerprints)]
    with tempfile.TemporaryDirectory(prefix="history-lookup-") as directory:
        store = LocalHistoryStore(Path(directory))
        started = time.perf_counter()
        for index in range(arguments.records):
            store.append(synthetic_record(index, fingerprints[index % len(fingerprints)], rng))
        elapsed = time.perf_counter() - started
        print(
            f"wrote {arguments.records} records over {len(fingerprints)} fingerprints in {elapsed:.2f} s"
            f" ({elapsed * 1e6 / arguments.records:.0f} µs/record)"
        )
        timings_ms = []
        for fingerprint in rng.sample(fingerprints, min(arguments.lookups, len(fingerprints))):
            started = time.perf_counter()
            found = store.latest(fingerprint, LIMIT)
            timings_ms.append((time.perf_counter() - started) * 1000)
            expected = min(LIMIT, len(range(fingerprints.index(fingerprint), arguments.records, len(fingerprints))))
            assert len(found) == expected, f"{fingerprint}: {len(found)} records, expected {expected}"
    median, worst = statistics.median(timings_ms), max(timings_ms)
    met = worst < TARGET_MS
    print(f"latest(fingerprint, {LIMIT}), {len(timings_ms)} fingerprints: median {median:.1f} ms, max {worst:.1f} ms")
    print(f"target < {TARGET_MS / 1000:.0f} s per lookup: {'met' if met else 'NOT MET'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
