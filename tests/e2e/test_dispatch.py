"""Dispatching an edge flow: a child that outlives its bound is cancelled, so a retried step cannot race it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

from flows.edge import InstallRequest
from infra.edge_queues import EDGE_POOL, create_queues, delete_queues, dispatch
from infra.edge_replies import ReplyTo
from infra.stroppy_release import PinnedRelease

pytestmark = pytest.mark.e2e

REQUEST = InstallRequest(
    reply_to=ReplyTo(run_id="run-dispatch", directory="/tmp/never-replied"),
    release=PinnedRelease(version="v5.0.0", url="http://127.0.0.1:9/stroppy.tar.gz", sha256="0" * 64),
    url="http://127.0.0.1:9/stroppy.tar.gz", directory="/tmp/never-installed", timeout_s=1,
)  # fmt: skip


async def _poll_once(queue: str) -> None:
    """What an agent does: asking for its queue's runs marks the queue ready (and takes none here)."""
    async with get_client() as client:
        await client.get_scheduled_flow_runs_for_work_pool(EDGE_POOL, work_queue_names=[queue])


async def _children(tag: str) -> list[str]:
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
    return [run.state.type.value for run in runs if run.state is not None]


def test_a_child_flow_run_past_its_bound_is_cancelled() -> None:
    queue = f"dispatch-{uuid.uuid4().hex[:8]}"
    create_queues([queue])
    try:
        asyncio.run(_poll_once(queue))
        with pytest.raises(TimeoutError, match=f"install-stroppy/edge on {queue} did not finish within 3 s"):
            dispatch("install-stroppy/edge", {"request": REQUEST.model_dump(mode="json")}, queue, 3, tags=[queue])
        assert asyncio.run(_children(queue)) == ["CANCELLED"]
    finally:
        delete_queues([queue])
