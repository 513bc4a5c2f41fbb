"""CPU leases on a shared host against the real Redis started by scripts/services.sh."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from itertools import combinations

import pytest
import redis

from blocks.redis import RedisConnection
from infra.cpu_leases import KEY_PREFIX, CapacityError, CapacityTimeout, CpuLeases, wait_for_cpus
from infra.reservations import ReservationStoreUnavailable
from stroppy_domain.capacity import CpuGrant, HostCapacity, MachineDemand, Shortfall
from stroppy_domain.model import Isolation
from tests.integration.redis_store import REDIS_URL, emptied_redis, in_processes

pytestmark = pytest.mark.redis

HOST_KEY = "docker:test-host"
TWO_CPUS = HostCapacity(cpus=2, memory_gb=23)
EXCLUSIVE, SHARED = Isolation.EXCLUSIVE, Isolation.SHARED


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    with emptied_redis(KEY_PREFIX) as connection:
        yield connection


def machines(*cores: int, memory_gb: float = 1) -> list[MachineDemand]:
    return [MachineDemand(name=f"m{index}", cores=count, memory_gb=memory_gb) for index, count in enumerate(cores)]


def must_grant(answer: CpuGrant | Shortfall) -> CpuGrant:
    assert isinstance(answer, CpuGrant), answer
    return answer


def test_acquiring_again_returns_the_same_cpus_renewed(client: redis.Redis) -> None:
    leases = CpuLeases(client, HOST_KEY)
    assert leases.key == f"{KEY_PREFIX}:{HOST_KEY}"
    first = must_grant(leases.acquire(TWO_CPUS, "run-a", machines(1), EXCLUSIVE, ttl_s=60))
    assert first.cpus == {"m0": [0]}
    time.sleep(0.05)
    again = must_grant(leases.acquire(TWO_CPUS, "run-a", machines(1), EXCLUSIVE, ttl_s=60))
    assert again.cpus == {"m0": [0]}
    assert again.memory_gb == first.memory_gb == 1
    assert again.expires_ms > first.expires_ms
    assert leases.grants() == [again]


def test_release_frees_the_cpus(client: redis.Redis) -> None:
    leases = CpuLeases(client, HOST_KEY)
    must_grant(leases.acquire(TWO_CPUS, "run-a", machines(1, 1), EXCLUSIVE, ttl_s=60))
    assert leases.acquire(TWO_CPUS, "run-b", machines(1), EXCLUSIVE, ttl_s=60) == Shortfall(
        cores_needed=1, cores_free=0, memory_needed_gb=1, memory_free_gb=21
    )
    assert leases.release("run-a") is True
    assert leases.grants() == []
    assert leases.release("run-a") is False
    assert leases.release("never-held") is False
    assert must_grant(leases.acquire(TWO_CPUS, "run-b", machines(1), EXCLUSIVE, ttl_s=60)).cpus == {"m0": [0]}


def test_an_expired_lease_no_longer_blocks_and_is_dropped(client: redis.Redis) -> None:
    leases = CpuLeases(client, HOST_KEY)
    must_grant(leases.acquire(TWO_CPUS, "run-dead", machines(2), EXCLUSIVE, ttl_s=1))
    assert isinstance(leases.acquire(TWO_CPUS, "run-new", machines(1, 1), EXCLUSIVE, ttl_s=60), Shortfall)
    time.sleep(1.2)
    assert [grant.run_id for grant in leases.grants()] == []
    new = must_grant(leases.acquire(TWO_CPUS, "run-new", machines(1, 1), EXCLUSIVE, ttl_s=60))
    assert new.cpus == {"m0": [0], "m1": [1]}
    assert client.hkeys(leases.key) == [b"run-new"]
    with pytest.raises(CapacityError, match=f"run run-dead holds no CPUs on {HOST_KEY}"):
        leases.renew("run-dead", ttl_s=60)


def test_renew_extends_a_held_lease(client: redis.Redis) -> None:
    leases = CpuLeases(client, HOST_KEY)
    first = must_grant(leases.acquire(TWO_CPUS, "run-a", machines(1), EXCLUSIVE, ttl_s=1))
    time.sleep(0.6)
    renewed = leases.renew("run-a", ttl_s=5)
    assert renewed.cpus == first.cpus
    assert renewed.expires_ms >= first.expires_ms + 4000
    time.sleep(0.6)
    assert leases.grants() == [renewed]


def test_renewing_an_unheld_run_is_an_error(client: redis.Redis) -> None:
    leases = CpuLeases(client, HOST_KEY)
    with pytest.raises(CapacityError, match=f"run ghost holds no CPUs on {HOST_KEY}"):
        leases.renew("ghost", ttl_s=60)
    assert client.exists(leases.key) == 0


@pytest.mark.parametrize(
    ("run_id", "ttl_s", "message"),
    [
        pytest.param("", 60, "a CPU lease needs a run id", id="no-run-id"),
        pytest.param("r", 0, "ttl_s must be positive, got 0", id="zero-ttl"),
    ],
)
def test_acquire_refuses_bad_arguments(client: redis.Redis, run_id: str, ttl_s: int, message: str) -> None:
    leases = CpuLeases(client, HOST_KEY)
    with pytest.raises(CapacityError, match=message):
        leases.acquire(TWO_CPUS, run_id, machines(1), EXCLUSIVE, ttl_s=ttl_s)
    assert client.exists(leases.key) == 0


def test_renew_refuses_a_ttl_that_is_not_positive(client: redis.Redis) -> None:
    leases = CpuLeases(client, HOST_KEY)
    held = must_grant(leases.acquire(TWO_CPUS, "run-a", machines(1), EXCLUSIVE, ttl_s=60))
    with pytest.raises(CapacityError, match="ttl_s must be positive, got 0"):
        leases.renew("run-a", ttl_s=0)
    assert leases.grants() == [held]


def test_shared_and_exclusive_runs_never_overlap_in_redis(client: redis.Redis) -> None:
    leases = CpuLeases(client, HOST_KEY)
    host = HostCapacity(cpus=4, memory_gb=23, reserved_cpus=1)
    exclusive = must_grant(leases.acquire(host, "run-x", machines(1), EXCLUSIVE, ttl_s=60))
    shared = must_grant(leases.acquire(host, "run-s", machines(1, 1), SHARED, ttl_s=60))
    assert exclusive.cpus == {"m0": [1]}
    assert shared.cpus == {"m0": [2, 3], "m1": [2, 3]}
    assert leases.acquire(host, "run-y", machines(1), EXCLUSIVE, ttl_s=60) == Shortfall(
        cores_needed=1, cores_free=0, memory_needed_gb=1, memory_free_gb=22
    )
    assert [grant.run_id for grant in leases.grants()] == ["run-s", "run-x"]


def test_a_malformed_lease_is_reported(client: redis.Redis) -> None:
    leases = CpuLeases(client, HOST_KEY)
    client.hset(leases.key, "run-bad", "not json")
    with pytest.raises(CapacityError, match=f"the CPU lease of run run-bad on {HOST_KEY} is malformed"):
        leases.acquire(TWO_CPUS, "run-a", machines(1), EXCLUSIVE, ttl_s=60)
    with pytest.raises(CapacityError, match="malformed"):
        leases.grants()
    assert client.hkeys(leases.key) == [b"run-bad"]


def test_redis_down_is_reported() -> None:
    unreachable = RedisConnection(url="redis://127.0.0.1:1/0", timeout_s=1).get_client()
    leases = CpuLeases(unreachable, HOST_KEY)
    started = time.monotonic()
    with pytest.raises(ReservationStoreUnavailable, match=r"cannot reach the CPU lease store at 127.0.0.1:1"):
        leases.acquire(TWO_CPUS, "run-a", machines(1), EXCLUSIVE, ttl_s=60)
    with pytest.raises(ReservationStoreUnavailable, match=r"cannot reach the CPU lease store at 127.0.0.1:1"):
        leases.release("run-a")
    with pytest.raises(ReservationStoreUnavailable):
        leases.renew("run-a", ttl_s=60)
    with pytest.raises(ReservationStoreUnavailable):
        leases.grants()
    assert time.monotonic() - started < 30


ROUNDS = 5


def _contend(run_id: str, start: multiprocessing.Barrier, results: multiprocessing.Queue) -> None:
    """In each round, on a fresh host of 16 CPUs, ask once for 2 machines of 1 core, all workers at the same time."""
    client = RedisConnection(url=REDIS_URL, timeout_s=10).get_client()
    host = HostCapacity(cpus=16, memory_gb=1024)
    for round_ in range(ROUNDS):
        start.wait(timeout=60)
        answer = CpuLeases(client, f"{HOST_KEY}-{round_}").acquire(host, run_id, machines(1, 1), EXCLUSIVE, 120)
        results.put((round_, answer.model_dump_json() if isinstance(answer, CpuGrant) else None))
    client.close()


def test_concurrent_runs_never_share_a_cpu(client: redis.Redis) -> None:
    processes = 16
    answers = in_processes(_contend, [(f"run-{index:02d}",) for index in range(processes)], processes * ROUNDS)
    for round_ in range(ROUNDS):
        grants = [CpuGrant.model_validate_json(raw) for number, raw in answers if number == round_ and raw is not None]
        assert len(grants) == 8, f"round {round_}"
        assert all(len(grant.cpus["m0"]) == 1 and len(grant.cpus["m1"]) == 1 for grant in grants)
        overlapping = [(a.run_id, b.run_id) for a, b in combinations(grants, 2) if a.held & b.held]
        assert overlapping == [], f"round {round_}"
        assert set().union(*(grant.held for grant in grants)) == set(range(16))
        stored = CpuLeases(client, f"{HOST_KEY}-{round_}").grants()
        assert {grant.run_id: grant.cpus for grant in stored} == {grant.run_id: grant.cpus for grant in grants}


def test_wait_for_cpus_proceeds_once_the_holder_releases(client: redis.Redis) -> None:
    leases = CpuLeases(client, HOST_KEY)
    must_grant(leases.acquire(TWO_CPUS, "run-holder", machines(2), EXCLUSIVE, ttl_s=60))
    released_at: list[float] = []

    def release_later() -> None:
        other = RedisConnection(url=REDIS_URL, timeout_s=5).get_client()
        time.sleep(0.8)
        released_at.append(time.monotonic())
        assert CpuLeases(other, HOST_KEY).release("run-holder") is True
        other.close()

    said: list[str] = []
    releaser = threading.Thread(target=release_later)
    releaser.start()
    try:
        grant = wait_for_cpus(
            lambda: leases.acquire(TWO_CPUS, "run-waiter", machines(1, 1), EXCLUSIVE, ttl_s=60),
            timeout_s=20,
            poll_s=0.1,
            progress=said.append,
        )
        granted_at = time.monotonic()
    finally:
        releaser.join(timeout=30)
    assert said == ["waiting for capacity: needs 2 core(s), 0 free"]
    assert grant.run_id == "run-waiter"
    assert grant.cpus == {"m0": [0], "m1": [1]}
    assert len(released_at) == 1
    assert granted_at > released_at[0]
    assert [held.run_id for held in leases.grants()] == ["run-waiter"]


def test_wait_for_cpus_times_out_with_the_shortfall(client: redis.Redis) -> None:
    leases = CpuLeases(client, HOST_KEY)
    must_grant(leases.acquire(TWO_CPUS, "run-holder", machines(2), EXCLUSIVE, ttl_s=60))
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(CapacityTimeout, match=r"no capacity within 0\.6 s: the run needs 2 core\(s\), 0 free$"):
        wait_for_cpus(
            lambda: leases.acquire(TWO_CPUS, "run-waiter", machines(1, 1), EXCLUSIVE, ttl_s=60),
            timeout_s=0.6,
            poll_s=0.1,
            progress=said.append,
        )
    assert 0.4 < time.monotonic() - started < 5
    assert said == ["waiting for capacity: needs 2 core(s), 0 free"]
    assert [held.run_id for held in leases.grants()] == ["run-holder"]
