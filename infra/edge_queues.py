"""Per-machine work queues on the Prefect server: created with the machine, waited for, deleted at teardown; and
the dispatch of an edge flow to one machine's queue."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import WorkQueueStatus
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Cancelled, Cancelling

EDGE_POOL = "stroppy-edge"
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 5.0
DISPATCH_POLL_S = 1.0
QUEUE_RECHECK_TIMEOUT_S = 30


class EdgeAgentsNotReady(RuntimeError):  # noqa: N818 - reads as the condition it reports
    """Some machines' agents did not poll their queues in time; the message lists them."""


async def create_queues(names: Iterable[str], pool: str = EDGE_POOL) -> None:
    async with get_client() as client:
        for name in names:
            try:
                await client.create_work_queue(name=name, work_pool_name=pool)
            except ObjectAlreadyExists:
                continue


async def wait_until_ready(names: list[str], timeout_s: float, pool: str = EDGE_POOL) -> float:
    """Wait until every queue is READY (its agent polls it), with capped exponential backoff and jitter."""
    started = time.monotonic()
    delay = FIRST_DELAY_S
    pending = list(names)
    async with get_client() as client:
        while True:
            still = []
            for name in pending:
                queue = await client.read_work_queue_by_name(name, work_pool_name=pool)
                if queue.status != WorkQueueStatus.READY:
                    still.append(name)
            pending = still
            waited = time.monotonic() - started
            if not pending:
                return waited
            if waited >= timeout_s:
                raise EdgeAgentsNotReady(f"edge agents not ready after {timeout_s:.0f} s: {', '.join(pending)}")
            await asyncio.sleep(min(delay, max(0.0, timeout_s - waited)) * random.uniform(0.8, 1.2))
            delay = min(delay * 2, MAX_DELAY_S)


async def delete_queues(names: Iterable[str], pool: str = EDGE_POOL) -> int:
    """Delete the queues that exist; returns how many were deleted."""
    deleted = 0
    async with get_client() as client:
        for name in names:
            try:
                queue = await client.read_work_queue_by_name(name, work_pool_name=pool)
                await client.delete_work_queue_by_id(queue.id)
                deleted += 1
            except ObjectNotFound:
                continue
    return deleted


def edge_tags(run_id: str) -> list[str]:
    """Tags of a run's edge flow runs, to find them from the run (UI filter `run:<id>`)."""
    return ["stroppy", f"run:{run_id}"]


def dispatch(
    deployment: str, parameters: dict[str, Any], queue: str, bound_s: float, tags: list[str] | None = None
) -> Any:
    """Run an edge flow on one machine's queue, once its agent polls it, and return the flow's result."""
    asyncio.run(wait_until_ready([queue], QUEUE_RECHECK_TIMEOUT_S))
    child = run_deployment(
        deployment, parameters=parameters, work_queue_name=queue, timeout=bound_s, poll_interval=DISPATCH_POLL_S,
        tags=tags,
    )  # fmt: skip
    if child.state is None or not child.state.is_final():
        # A child left running would race a retry of the same step on the same machine.
        asyncio.run(_cancel(child.id, started=child.state is not None and child.state.is_running()))
        raise TimeoutError(f"{deployment} on {queue} did not finish within {bound_s:.0f} s (state {child.state})")
    if not child.state.is_completed():
        raise RuntimeError(f"{deployment} on {queue} ended {child.state.name}: {child.state.message}")
    return child.state.result()


async def _cancel(flow_run_id: UUID, started: bool) -> None:
    """A running flow run is asked to stop (its worker kills it); one not started yet is cancelled outright."""
    message = "its dispatcher stopped waiting"
    state = Cancelling(message=message) if started else Cancelled(message=message)
    async with get_client() as client:
        await client.set_flow_run_state(flow_run_id, state, force=True)
