"""Subnet reservations per second and latency with concurrent clients against the local Redis.

Start Redis first (`bash scripts/services.sh start`), then:

    uv run python benchmarks/reservations.py [--clients 16] [--seconds 10] [--redis-url URL]

Each client is its own process with its own connection; it reserves a subnet, releases it, and repeats until
the time is up. Reported: reservations per second over all clients, and p50/p99 latency of one reserve call.
It works on its own key space (docker 10.200.0.0/16) and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

from infra.reservations import KEY_PREFIX, SubnetReservations
from stroppy_domain.model import Target
from stroppy_domain.settings import AddressSpace

SPACE = AddressSpace(base_cidr="10.200.0.0/16", prefix=24)


def _client(url: str):  # noqa: ANN202 - redis.Redis, imported lazily like everywhere else
    import redis  # noqa: PLC0415

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)


def _run_client(
    worker: int, url: str, seconds: float, start: multiprocessing.Barrier, results: multiprocessing.Queue
) -> None:
    reservations = SubnetReservations(_client(url), Target.DOCKER, SPACE)
    latencies = []
    start.wait(timeout=60)
    deadline = time.perf_counter() + seconds
    cycle = 0
    while time.perf_counter() < deadline:
        run_id = f"bench-{worker}-{cycle}"
        began = time.perf_counter()
        reservations.reserve(run_id, machines=4, ttl_s=300)
        latencies.append(time.perf_counter() - began)
        reservations.release(run_id)
        cycle += 1
    results.put(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    context = multiprocessing.get_context("fork")
    start = context.Barrier(args.clients + 1)
    results = context.Queue()
    workers = [
        context.Process(target=_run_client, args=(worker, args.redis_url, args.seconds, start, results))
        for worker in range(args.clients)
    ]
    for process in workers:
        process.start()
    start.wait(timeout=60)
    began = time.perf_counter()
    latencies = [value for _ in workers for value in results.get(timeout=args.seconds + 60)]
    elapsed = time.perf_counter() - began
    for process in workers:
        process.join(timeout=30)

    cleanup = _client(args.redis_url)
    for key in cleanup.scan_iter(f"{KEY_PREFIX}:{Target.DOCKER}:{SPACE.base_cidr}:*"):
        cleanup.delete(key)

    percentiles = statistics.quantiles(latencies, n=100)
    print(f"clients: {args.clients}  duration: {elapsed:.1f} s  reservations: {len(latencies)}")
    print(f"reservations/s: {len(latencies) / elapsed:.0f}  (each followed by a release)")
    print(f"reserve latency p50: {percentiles[49] * 1000:.2f} ms  p99: {percentiles[98] * 1000:.2f} ms")


if __name__ == "__main__":
    main()
