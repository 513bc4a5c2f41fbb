"""How fast a load's per-transaction log becomes per-second series, and how much memory that takes.

    uv run python benchmarks/load_series.py [--transactions 2000000] [--tps 5000]

Writes a pgbench `--log` file of that many transactions at that rate (latencies spread over 0.1-50 ms, 1 in 1000
failed) into a temporary directory, parses it with `pgbench_log_series`, and prints lines per second and the
Python heap's peak during the parse. Memory grows with seconds x distinct latency buckets, not with transactions.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

from stroppy_domain.timeseries import pgbench_log_series


def write_log(path: Path, transactions: int, tps: int) -> None:
    generator = random.Random(7)
    start = 1_700_000_000
    with path.open("w") as log:
        for number in range(transactions):
            second, micros = divmod(number * 1_000_000 // tps, 1_000_000)
            latency = "failed" if number % 1000 == 999 else str(int(generator.lognormvariate(7.5, 1.0)) + 100)
            log.write(f"{number % 16} {number} {latency} 0 {start + second} {micros}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=2_000_000)
    parser.add_argument("--tps", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "pgbench_log.1"
        write_log(path, args.transactions, args.tps)
        size_mb = path.stat().st_size / 1e6
        started = time.perf_counter()
        with path.open() as lines:
            series = pgbench_log_series(lines)
        elapsed = time.perf_counter() - started
        tracemalloc.start()  # a second pass: tracing slows parsing several times over
        with path.open() as lines:
            pgbench_log_series(lines)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    seconds = len(series[0].values)
    print(f"log: {args.transactions} transactions, {size_mb:.0f} MB, {seconds} s of load at {args.tps} tps")
    print(f"parse: {elapsed:.2f} s ({args.transactions / elapsed:,.0f} lines/s); peak heap {peak / 1e6:.1f} MB")
    print(f"series: {len(series)}, points: {sum(len(one.values) for one in series)}")


if __name__ == "__main__":
    main()
