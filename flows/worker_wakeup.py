"""A worker polls its queues as soon as a flow run is scheduled on them, told by Prefect's event stream, instead of at
its next poll: half a poll interval of every dispatch on average (a test run on a master worker, an edge flow on a
machine's agent).

The interval polls go on: they find what an event did not announce (the stream down, a run scheduled while the
stream reconnected, a scheduled start time reached later) and they are the agent's sign of life the master watches.
An event only brings the next poll forward, and a poll submits nothing a poll would not, so a lost or repeated event
costs at most one poll.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from typing import Any

import anyio
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.events.schemas.events import ResourceSpecification

SCHEDULED_EVENT = "prefect.flow-run.Scheduled"
CONNECT_TIMEOUT_S = 15
"""Bound of one connection to the stream (its handshake, authentication and filter)."""
RECONNECT_S = (1, 60)
"""The first and the longest pause before the stream is connected again, doubling from the first while it fails."""

logger = logging.getLogger("stroppy.worker_wakeup")


def scheduled_on(pool: str, queues: list[str] | None) -> EventFilter:
    """Flow runs scheduled on `queues`, or on any queue of `pool` when None."""
    role, names = ("work-queue", queues) if queues else ("work-pool", [pool])
    return EventFilter(
        event=EventNameFilter(name=[SCHEDULED_EVENT]),
        related=EventRelatedFilter(
            labels=ResourceSpecification({"prefect.resource.role": role, "prefect.resource.name": names})
        ),
    )


async def poll_when_scheduled(poll: Callable[[], Awaitable[Any]], pool: str, queues: list[str] | None) -> None:
    """Call `poll` whenever a flow run is scheduled on the worker's queues, until cancelled. Events that come while a
    poll runs make one more poll, not one each: that poll reads every run scheduled by then."""
    wake_send, wake_receive = anyio.create_memory_object_stream[None](1)

    async def wake_on_events() -> None:
        pause_s = RECONNECT_S[0]
        while True:
            try:
                async with AsyncExitStack() as stack:
                    with anyio.fail_after(CONNECT_TIMEOUT_S):
                        subscriber = await stack.enter_async_context(
                            get_events_subscriber(filter=scheduled_on(pool, queues), reconnect_on_clean_close=True)
                        )
                    pause_s = RECONNECT_S[0]
                    async for _ in subscriber:
                        with suppress(anyio.WouldBlock):  # a poll is already due
                            wake_send.send_nowait(None)
            except Exception as error:  # any failure of the stream leaves the interval polls to serve
                logger.warning(
                    "the event stream is not answering (%s: %s); polling only, connecting again in %d s",
                    type(error).__name__, error, pause_s,
                )  # fmt: skip
            await anyio.sleep(pause_s)
            pause_s = min(pause_s * 2, RECONNECT_S[1])

    async with anyio.create_task_group() as group:
        group.start_soon(wake_on_events)
        async with wake_receive:
            async for _ in wake_receive:
                try:
                    await poll()
                except Exception as error:  # the interval polls go on, and retry it
                    logger.warning("a poll for a scheduled flow run failed: %s: %s", type(error).__name__, error)
