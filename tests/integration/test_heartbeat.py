"""A live run's heartbeat against the real Redis, with TTLs of seconds: a run outliving several TTLs keeps its subnet,
its CPUs and its ledger and is not reaped; once its heartbeat stops, its leases expire and the reaper's rule reaps it
although its flow run still says RUNNING."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from flows.heartbeat import RunHeartbeat, beat
from flows.teardown import LEDGER_CPUS, LEDGER_SUBNET
from infra.cpu_leases import CpuLeases
from infra.ledger import KEY_PREFIX as LEDGER_PREFIX
from infra.ledger import RunLedger
from infra.reservations import KEY_PREFIX as SUBNET_PREFIX
from infra.reservations import SubnetReservations
from infra.settings import OrchestrationSettings
from stroppy_domain.capacity import CpuGrant, HostCapacity, MachineDemand
from stroppy_domain.model import Isolation, Target
from stroppy_domain.reaping import RunEvidence, reap_reason
from stroppy_domain.settings import AddressSpace
from tests.integration.redis_store import REDIS_URL, emptied_redis

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

TTL_S = 2
SETTINGS = OrchestrationSettings(
    redis_block=None, redis_url=REDIS_URL, reservation_ttl_s=TTL_S, ledger_ttl_s=TTL_S, heartbeat_interval_s=0.5
)
SPACE = AddressSpace(base_cidr="10.70.0.0/16", prefix=24)
HOST_KEY = "docker:heartbeat-test"
GRACE = timedelta(seconds=TTL_S)


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    with emptied_redis(LEDGER_PREFIX) as connection:
        for prefix in (SUBNET_PREFIX, f"stroppy:cpus:{HOST_KEY}"):
            for key in connection.scan_iter(f"{prefix}*"):
                connection.delete(key)
        yield connection


def _start_run(client: redis.Redis, run_id: str) -> str:
    """What a run holds once it has its CPUs and subnet: ledger first, as the run's steps write it."""
    ledger = RunLedger(client, run_id)
    ledger.open(TTL_S)
    ledger.record(LEDGER_CPUS, {"host": HOST_KEY})
    demand = [MachineDemand(name="db", cores=1, memory_gb=1)]
    grant = CpuLeases(client, HOST_KEY).acquire(
        HostCapacity(cpus=4, memory_gb=8), run_id, demand, Isolation.SHARED, TTL_S
    )
    assert isinstance(grant, CpuGrant), grant
    ledger.record(LEDGER_SUBNET, {"target": "docker", "base_cidr": SPACE.base_cidr, "prefix": SPACE.prefix})
    return SubnetReservations(client, Target.DOCKER, SPACE).reserve(run_id, 2, TTL_S).subnet


def _evidence(client: redis.Redis, run_id: str) -> RunEvidence:
    """What the reaper reads of a run whose flow run still says RUNNING."""
    ledger = RunLedger(client, run_id)
    return RunEvidence(
        run_id=run_id, has_ledger=True, opened_at=ledger.opened_at(), flow_run_id="f", flow_run_found=True,
        flow_state="RUNNING", heartbeat_at=ledger.heartbeat_at(), expires_at=datetime.now(UTC) - timedelta(hours=1),
    )  # fmt: skip


def test_a_beating_run_outlives_its_ttls_and_a_silent_one_is_reaped(client: redis.Redis) -> None:
    subnet = _start_run(client, "run-beating")
    heartbeat = RunHeartbeat("run-beating", SETTINGS, logging.getLogger("test")).start()
    try:
        time.sleep(3 * TTL_S + 1)
        held = {r.run_id: r.subnet for r in SubnetReservations(client, Target.DOCKER, SPACE).list()}
        assert held == {"run-beating": subnet}
        assert [grant.run_id for grant in CpuLeases(client, HOST_KEY).grants()] == ["run-beating"]
        evidence = _evidence(client, "run-beating")
        assert evidence.heartbeat_at is not None and reap_reason(evidence, datetime.now(UTC), GRACE) is None
    finally:
        heartbeat.stop()
    last_beat = RunLedger(client, "run-beating").heartbeat_at()
    assert last_beat is not None
    stale = _evidence(client, "run-beating").model_copy(update={"heartbeat_at": last_beat})
    reason = reap_reason(stale, last_beat + GRACE, GRACE)
    assert reason is not None and "heartbeat stopped" in reason, reason
    time.sleep(TTL_S + 1)
    assert SubnetReservations(client, Target.DOCKER, SPACE).reserve("run-next", 2, TTL_S).subnet == subnet, (
        "the silent run's subnet lease expired: the next run gets it"
    )
    assert CpuLeases(client, HOST_KEY).grants() == []
    assert RunLedger(client, "run-beating").opened_at() is None, "the silent run's ledger expired by itself"


def test_a_beat_renews_only_what_the_run_holds_and_never_revives_a_closed_ledger(client: redis.Redis) -> None:
    assert beat("run-unknown", SETTINGS) == []
    assert client.exists(f"{LEDGER_PREFIX}:run-unknown") == 0
    ledger = RunLedger(client, "run-early")
    ledger.open(TTL_S)
    ledger.record(LEDGER_SUBNET, {"target": "docker", "base_cidr": SPACE.base_cidr, "prefix": SPACE.prefix})
    ledger.record(LEDGER_CPUS, {"host": HOST_KEY})
    assert beat("run-early", SETTINGS) == ["ledger"], "recorded before they were taken: nothing to renew yet"
    assert "heartbeat_at" not in ledger.entries(), "the heartbeat is not a resource to tear down"
    _start_run(client, "run-full")
    assert beat("run-full", SETTINGS) == ["ledger", "subnet", "cpus"]
    RunLedger(client, "run-full").close()
    assert beat("run-full", SETTINGS) == []
    assert client.exists(f"{LEDGER_PREFIX}:run-full") == 0
