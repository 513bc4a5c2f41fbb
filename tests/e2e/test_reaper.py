"""The reaper against the real stack: what no run will tear down goes; a live run's resources stay."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import docker
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Failed, Running

from flows.reaper import ReapReport, reap
from flows.teardown import LEDGER_FLOW_RUN, LEDGER_QUEUES, LEDGER_TARGET
from infra.connections import redis_connection
from infra.edge_queues import EDGE_POOL, create_queues, delete_queues
from infra.ledger import HEARTBEAT, RunLedger, open_ledgers
from infra.settings import OrchestrationSettings
from infra.targets.base import LABEL_EXPIRES_AT, LABEL_MANAGED_BY, LABEL_RUN_ID, MANAGER
from stroppy_domain.model import Target

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.redis]


@flow(name="reaper-test-owner")
def owner() -> None:
    """Never run: only its flow runs exist, in the state each case needs."""


async def _flow_run(state: object) -> str:
    async with get_client() as client:
        return str((await client.create_flow_run(flow=owner, state=state)).id)


async def _queue_names(prefix: str) -> list[str]:
    async with get_client() as client:
        return [q.name for q in await client.read_work_queues(work_pool_name=EDGE_POOL) if q.name.startswith(prefix)]


def _volume(engine: docker.DockerClient, run_id: str, expires_at: datetime) -> None:
    labels = {LABEL_MANAGED_BY: MANAGER, LABEL_RUN_ID: run_id, LABEL_EXPIRES_AT: expires_at.isoformat()}
    engine.volumes.create(f"stroppy-{run_id}-data", labels=labels)


def test_the_reaper_removes_ended_and_expired_runs_and_keeps_a_live_one() -> None:
    settings = OrchestrationSettings()
    suffix = uuid.uuid4().hex[:8]
    ended, expired, live = f"run-ended{suffix}", f"run-expired{suffix}", f"run-live{suffix}"
    malformed = f"run-malformed{suffix}"  # its ledger names no flow run: left for the grace, and no reason to fail
    future, past = datetime.now(UTC) + timedelta(hours=1), datetime.now(UTC) - timedelta(minutes=1)
    engine = docker.from_env(timeout=60)
    redis_client = redis_connection(settings).get_client()
    try:
        for run_id, state in ((ended, Failed()), (live, Running())):
            ledger = RunLedger(redis_client, run_id)
            ledger.open(3600)
            ledger.record(LEDGER_FLOW_RUN, asyncio.run(_flow_run(state)))
            ledger.record(LEDGER_TARGET, {"name": "docker"})
            ledger.record(LEDGER_QUEUES, [f"{run_id}-runner"])
            create_queues([f"{run_id}-runner"])
            _volume(engine, run_id, future)
        _volume(engine, expired, past)
        RunLedger(redis_client, malformed).open(3600)
        RunLedger(redis_client, malformed).record(LEDGER_FLOW_RUN, "not-a-flow-run-id")

        report = reap(grace_minutes=15)

        assert sorted(item.run_id for item in report.reaped) == sorted([ended, expired])
        reasons = {item.run_id: item.reason for item in report.reaped}
        assert "ended FAILED" in reasons[ended] and "expired" in reasons[expired]
        remaining = {v.name for v in engine.volumes.list(filters={"label": f"{LABEL_MANAGED_BY}={MANAGER}"})}
        assert f"stroppy-{live}-data" in remaining
        assert not {f"stroppy-{ended}-data", f"stroppy-{expired}-data"} & remaining
        assert ended not in open_ledgers(redis_client) and live in open_ledgers(redis_client)
        assert malformed in open_ledgers(redis_client)
        assert asyncio.run(_queue_names(ended)) == []
        assert asyncio.run(_queue_names(live)) == [f"{live}-runner"]
    finally:
        for run_id in (ended, expired, live, malformed):
            RunLedger(redis_client, run_id).close()
            for volume in engine.volumes.list(filters={"label": f"{LABEL_RUN_ID}={run_id}"}):
                volume.remove(force=True)
        delete_queues([f"{live}-runner", f"{ended}-runner"])
        engine.close()
        redis_client.close()


def test_a_target_that_cannot_be_listed_fails_the_reaper_after_the_others_are_reaped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STROPPY_YANDEX_CLOUD_BLOCK", f"no-such-block-{uuid.uuid4().hex[:6]}")
    expired = f"run-expired{uuid.uuid4().hex[:8]}"
    engine = docker.from_env(timeout=60)
    try:
        _volume(engine, expired, datetime.now(UTC) - timedelta(minutes=1))

        state = reap(grace_minutes=15, targets=[Target.DOCKER, Target.YANDEX_CLOUD], return_state=True)

        assert state.is_failed()
        assert "could not list yandex_cloud: the yandex_cloud target needs a saved YandexCloud block" in state.message
        report = state.result(raise_on_failure=False)
        assert isinstance(report, ReapReport) and list(report.unreachable) == ["yandex_cloud"]
        assert expired in [item.run_id for item in report.reaped]
        assert not engine.volumes.list(filters={"label": f"{LABEL_RUN_ID}={expired}"})
    finally:
        for volume in engine.volumes.list(filters={"label": f"{LABEL_RUN_ID}={expired}"}):
            volume.remove(force=True)
        engine.close()


async def _state_of(flow_run_id: str) -> tuple[str, str]:
    async with get_client() as client:
        state = (await client.read_flow_run(uuid.UUID(flow_run_id))).state
    assert state is not None
    return state.type.value, state.message or ""


def test_a_running_flow_is_reaped_only_once_its_heartbeat_is_stale_and_is_marked_crashed() -> None:
    settings = OrchestrationSettings()
    suffix = uuid.uuid4().hex[:8]
    beating, silent = f"run-beating{suffix}", f"run-silent{suffix}"
    engine = docker.from_env(timeout=60)
    redis_client = redis_connection(settings).get_client()
    flow_runs: dict[str, str] = {}
    try:
        for run_id, beat_at in ((beating, datetime.now(UTC)), (silent, datetime.now(UTC) - timedelta(minutes=20))):
            ledger = RunLedger(redis_client, run_id)
            ledger.open(3600)
            flow_runs[run_id] = asyncio.run(_flow_run(Running()))
            ledger.record(LEDGER_FLOW_RUN, flow_runs[run_id])
            ledger.record(LEDGER_TARGET, {"name": "docker"})
            redis_client.hset(ledger.key, HEARTBEAT, int(beat_at.timestamp() * 1000))
            _volume(engine, run_id, datetime.now(UTC) - timedelta(minutes=1))  # both past their expiry label

        report = reap(grace_minutes=15)

        reasons = {item.run_id: item.reason for item in report.reaped}
        assert beating not in reasons, "a long run that still beats outlives its expiry label"
        assert "heartbeat stopped" in reasons[silent] and "the master running it is gone" in reasons[silent]
        assert engine.volumes.list(filters={"label": f"{LABEL_RUN_ID}={beating}"})
        assert not engine.volumes.list(filters={"label": f"{LABEL_RUN_ID}={silent}"})
        state, message = asyncio.run(_state_of(flow_runs[silent]))
        assert state == "CRASHED" and "heartbeat stopped" in message, (state, message)
        assert asyncio.run(_state_of(flow_runs[beating]))[0] == "RUNNING"
    finally:
        for run_id in (beating, silent):
            RunLedger(redis_client, run_id).close()
            for volume in engine.volumes.list(filters={"label": f"{LABEL_RUN_ID}={run_id}"}):
                volume.remove(force=True)
        engine.close()
        redis_client.close()
