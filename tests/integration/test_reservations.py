"""Subnet reservations against the real Redis started by scripts/services.sh."""

from __future__ import annotations

import ipaddress
import multiprocessing
import time
from collections.abc import Iterator
from itertools import combinations

import pytest
import redis

from blocks.redis import RedisConnection
from infra.reservations import (
    KEY_PREFIX,
    ReservationError,
    ReservationNotHeld,
    ReservationStoreUnavailable,
    SubnetReservations,
    SubnetsExhausted,
)
from stroppy_domain.model import Target
from stroppy_domain.settings import AddressSpace
from tests.integration.redis_store import REDIS_URL, emptied_redis, in_processes

pytestmark = pytest.mark.redis


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    with emptied_redis(KEY_PREFIX) as connection:
        yield connection


def pool(client: redis.Redis, base: str = "10.50.0.0/16", prefix: int = 24) -> SubnetReservations:
    return SubnetReservations(client, Target.DOCKER, AddressSpace(base_cidr=base, prefix=prefix))


def test_reserve_hands_out_the_lowest_free_subnet(client: redis.Redis) -> None:
    reservations = pool(client)
    first = reservations.reserve("run-a", machines=4)
    second = reservations.reserve("run-b", machines=4)
    assert (first.subnet, second.subnet) == ("10.50.0.0/24", "10.50.1.0/24")
    assert reservations.release("run-a") == "10.50.0.0/24"
    assert reservations.reserve("run-c", machines=4).subnet == "10.50.0.0/24"


def test_reserving_again_returns_the_same_subnet_renewed(client: redis.Redis) -> None:
    reservations = pool(client)
    first = reservations.reserve("run-a", machines=3, ttl_s=60)
    time.sleep(0.05)
    again = reservations.reserve("run-a", machines=3, ttl_s=60)
    assert again.subnet == first.subnet
    assert again.expires_at > first.expires_at
    assert [r.subnet for r in reservations.list()] == [first.subnet]


def test_reservation_too_large_for_the_prefix_is_refused(client: redis.Redis) -> None:
    with pytest.raises(ReservationError, match="needs 4 machines, but a /29 subnet"):
        pool(client, prefix=29).reserve("run-a", machines=4)
    assert pool(client).list() == []


def test_exhaustion_is_reported_and_writes_nothing(client: redis.Redis) -> None:
    reservations = pool(client, base="10.60.0.0/22")
    taken = [reservations.reserve(f"run-{index}", machines=2).subnet for index in range(4)]
    assert taken == ["10.60.0.0/24", "10.60.1.0/24", "10.60.2.0/24", "10.60.3.0/24"]
    with pytest.raises(SubnetsExhausted, match=r"no free /24 subnet left in docker 10.60.0.0/22 for run run-4"):
        reservations.reserve("run-4", machines=2)
    assert [r.run_id for r in reservations.list()] == [f"run-{index}" for index in range(4)]


def test_expired_leases_are_swept_and_reused(client: redis.Redis) -> None:
    reservations = pool(client, base="10.61.0.0/24")
    reservations.reserve("run-dead", machines=2, ttl_s=1)
    with pytest.raises(SubnetsExhausted):
        reservations.reserve("run-new", machines=2)
    time.sleep(1.2)
    assert reservations.reserve("run-new", machines=2).subnet == "10.61.0.0/24"
    assert [r.run_id for r in reservations.list()] == ["run-new"]
    with pytest.raises(ReservationNotHeld):
        reservations.renew("run-dead")


def test_renew_keeps_a_lease_alive(client: redis.Redis) -> None:
    reservations = pool(client, base="10.62.0.0/24")
    reservations.reserve("run-a", machines=2, ttl_s=1)
    time.sleep(0.6)
    reservations.renew("run-a", ttl_s=2)
    time.sleep(0.6)
    assert reservations.sweep_expired() == []
    assert [r.run_id for r in reservations.list()] == ["run-a"]
    time.sleep(1.6)
    assert reservations.sweep_expired() == ["10.62.0.0/24"]
    assert reservations.list() == []


def test_release_is_idempotent(client: redis.Redis) -> None:
    reservations = pool(client)
    reservations.reserve("run-a", machines=2)
    assert reservations.release("run-a") == "10.50.0.0/24"
    assert reservations.release("run-a") is None
    assert reservations.release("never-reserved") is None
    assert reservations.list() == []


def test_subnets_of_different_sizes_never_overlap(client: redis.Redis) -> None:
    small = pool(client, base="10.63.0.0/16", prefix=25)
    large = pool(client, base="10.63.0.0/16", prefix=23)
    assert small.reserve("run-small", machines=2).subnet == "10.63.0.0/25"
    assert large.reserve("run-large", machines=2).subnet == "10.63.2.0/23"
    assert small.reserve("run-small-2", machines=2).subnet == "10.63.0.128/25"


def test_redis_down_is_reported_without_writing() -> None:
    unreachable = RedisConnection(url="redis://127.0.0.1:1/0", timeout_s=1).get_client()
    reservations = pool(unreachable)
    started = time.monotonic()
    with pytest.raises(ReservationStoreUnavailable, match=r"cannot reach the reservation store at 127.0.0.1:1"):
        reservations.reserve("run-a", machines=2)
    with pytest.raises(ReservationStoreUnavailable):
        reservations.release("run-a")
    assert time.monotonic() - started < 30


def _reserve_many(
    worker: int, count: int, prefixes: list[int], start: multiprocessing.Barrier, results: multiprocessing.Queue
) -> None:
    client = RedisConnection(url=REDIS_URL, timeout_s=10).get_client()
    start.wait(timeout=60)
    for index in range(count):
        prefix = prefixes[index % len(prefixes)]
        run_id = f"worker{worker}-run{index}"
        subnet = pool(client, prefix=prefix).reserve(run_id, machines=2).subnet
        results.put((run_id, subnet))
    client.close()


@pytest.mark.parametrize("prefixes", [[24], [24, 25, 26]], ids=["same-size", "mixed-sizes"])
def test_concurrent_reservations_from_many_processes_never_overlap(client: redis.Redis, prefixes: list[int]) -> None:
    processes, per_process = 8, 25
    arguments = [(worker, per_process, prefixes) for worker in range(processes)]
    reserved = in_processes(_reserve_many, arguments, processes * per_process)
    assert len(reserved) == 200
    networks = [ipaddress.IPv4Network(subnet) for _, subnet in reserved]
    overlapping = [(a, b) for a, b in combinations(networks, 2) if a.overlaps(b)]
    assert overlapping == []
    stored = {r.run_id: r.subnet for r in pool(client).list()}
    assert stored == dict(reserved)
