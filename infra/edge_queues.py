"""Per-machine work queues on the Prefect server: created with the machine, waited for, deleted at teardown; and
the dispatch of an edge flow to one machine's queue."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import TERMINAL_STATES, WorkQueueStatus
from prefect.client.schemas.responses import SetStateStatus
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Cancelled, Cancelling, State

from infra.prefect_sync import called_sync
from infra.retries import WaitTimedOut, wait_for
from stroppy_domain.bounds import poll_interval_s
from stroppy_domain.errors import StroppyError

EDGE_POOL = "stroppy-edge"
QUEUE_RECHECK_TIMEOUT_S = 30
AGENT_SILENT_S = 20
"""An edge agent polls its queue every `AGENT_POLL_S`; one silent this long while its flow runs has lost its machine."""
AGENT_STARTING_SILENT_S = 90
"""The same before the flow runs: an agent does not poll while it starts a flow run's process, which waits for its
fork server's imports where it is the standard library's own (flows.forked_worker.start_fork_server's fallback), and
those took over 20 s on a host running eight loads."""
AGENT_POLL_S = 1.0
"""How often an edge agent polls its queue (`PREFECT_WORKER_QUERY_SECONDS` of `stroppy-flows edge-agent`)."""
AGENT_CHECK_S = 5
"""How often a dispatched flow's agent is checked: a lost machine is noticed within about 25 s."""
STATE_CHECK_S = 0.25
"""How often a dispatched flow's state is read: its end is noticed within this, not within an agent check."""


class EdgeAgentsNotReady(StroppyError):  # noqa: N818 - reads as the condition it reports
    """Some machines' agents did not poll their queues in time; the message lists them."""


class EdgeFlowFailed(StroppyError):  # noqa: N818 - reads as the condition it reports
    """An edge flow ended in a state other than COMPLETED; the message says how."""


class EdgeFlowTimedOut(EdgeFlowFailed, TimeoutError):  # noqa: N818
    """An edge flow did not end within its bound. It has been cancelled, so a retry does not race it."""

    retryable = True


def create_queues(names: Iterable[str], pool: str = EDGE_POOL) -> None:
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.create_work_queue(name=name, work_pool_name=pool)
            except ObjectAlreadyExists:
                continue


def wait_until_ready(names: list[str], timeout_s: float, pool: str = EDGE_POOL) -> None:
    """Wait until every queue is READY (its agent polls it), checking about as often as agents poll: a machine's
    agent becomes ready within seconds, and a longer backoff would only add to every run's time.

    Raises EdgeAgentsNotReady naming the queues still not polled at the bound."""
    pending = list(names)
    with get_client(sync_client=True) as client:

        def all_ready() -> bool | None:
            pending[:] = [
                name
                for name in pending
                if client.read_work_queue_by_name(name, work_pool_name=pool).status != WorkQueueStatus.READY
            ]
            return True if not pending else None

        try:
            wait_for(all_ready, timeout_s, "edge agents", first_delay_s=AGENT_POLL_S / 4, max_delay_s=AGENT_POLL_S)
        except WaitTimedOut:
            raise EdgeAgentsNotReady(f"edge agents not ready after {timeout_s:.0f} s: {', '.join(pending)}") from None


def delete_queues(names: Iterable[str], pool: str = EDGE_POOL) -> int:
    """Delete the queues that exist; returns how many were deleted."""
    deleted = 0
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                queue = client.read_work_queue_by_name(name, work_pool_name=pool)
                client.delete_work_queue_by_id(queue.id)
                deleted += 1
            except ObjectNotFound:
                continue
    return deleted


def cancel_unfinished_flows(run_id: str) -> int:
    """Cancel the run's edge flow runs that have not ended (a load held for a step its run never reached, a flow its
    lost machine left behind); returns how many. Its machines are gone, so none is left to stop them."""
    unfinished = FlowRunFilter(
        tags=FlowRunFilterTags(all_=edge_tags(run_id)),
        state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=sorted(TERMINAL_STATES))),
    )
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(flow_run_filter=unfinished)
    for flow_run in flow_runs:
        cancel_flow_run(flow_run.id, started=False, why=f"run {run_id} was torn down")
    return len(flow_runs)


def edge_tags(run_id: str) -> list[str]:
    """Tags of a run's edge flow runs, to find them from the run (UI filter `run:<id>`)."""
    return ["stroppy", f"run:{run_id}"]


def dispatch(
    deployment: str,
    parameters: dict[str, Any],
    queue: str,
    bound_s: float,
    tags: list[str] | None = None,
    machine: str = "",
) -> str:
    """Run an edge flow on one machine's queue, once its agent polls it; returns its flow run's id, under which it
    left its answer, if it gives one (infra.edge_replies). Its Prefect result is never read: a machine wrote it.

    Raises as `follow` does."""
    wait_until_ready([queue], QUEUE_RECHECK_TIMEOUT_S)
    return follow(submit(deployment, parameters, queue, tags), deployment, queue, bound_s, machine)


def submit(deployment: str, parameters: dict[str, Any], queue: str, tags: list[str] | None = None) -> UUID:
    """Schedule an edge flow on one machine's queue: its agent takes it as soon as it polls (or at once, told by
    the event stream); returns the flow run's id."""
    # Called from sync code (a sync task, a worker thread): Prefect creates the flow run synchronously.
    child = called_sync(run_deployment(deployment, parameters=parameters, work_queue_name=queue, timeout=0, tags=tags))
    return child.id


def follow(child: UUID, deployment: str, queue: str, bound_s: float, machine: str = "", resume: bool = False) -> str:
    """Wait up to `bound_s` for a submitted edge flow to end, resuming it first when `resume` (a flow that waits,
    paused, for the master to say go); returns its flow run's id.

    While the flow runs, the agent must keep polling its queue: one silent for `AGENT_SILENT_S` (before the flow
    runs, `AGENT_STARTING_SILENT_S`) lost its machine (a killed container, a dead VM), and the flow is given up at
    once instead of at its bound.

    Raises EdgeAgentsNotReady when the machine's agent stopped polling, EdgeFlowFailed when the flow failed (or can
    no longer be resumed), and EdgeFlowTimedOut when it did not end within `bound_s` (it is cancelled first in both
    of these last cases)."""
    deadline = time.monotonic() + bound_s
    agent_check_s = min(poll_interval_s(bound_s), AGENT_CHECK_S)
    next_agent_check = time.monotonic() + agent_check_s
    answering_since = time.monotonic()
    started = False
    with get_client(sync_client=True) as client:
        while True:
            asked = time.monotonic()
            state = client.read_flow_run(child).state
            if state is not None and state.is_final():
                break
            if time.monotonic() - asked > AGENT_CHECK_S:
                # The API was away or slow (a restart; Prefect's client waited for it): no agent could poll it
                # meanwhile, so an agent's silence counts from now.
                answering_since = time.monotonic()
            if not started and state is not None and (state.is_running() or state.is_paused()):
                # The agent polls again only now that the flow's process has started: its silence counts from here.
                started, answering_since = True, time.monotonic()
            if resume and state is not None and state.is_paused():
                _resume(client, child, deployment, queue)
                resume = False
            if time.monotonic() >= next_agent_check:
                next_agent_check = time.monotonic() + agent_check_s
                last_polled = client.read_work_queue_by_name(queue, work_pool_name=EDGE_POOL).last_polled
                silent_s = agent_silence_s(last_polled, answering_since)
                if silent_s is not None and silent_s > (AGENT_SILENT_S if started else AGENT_STARTING_SILENT_S):
                    cancel_flow_run(child, started=started, why="its machine is gone")
                    raise EdgeAgentsNotReady(
                        f"machine {machine or queue} is gone: its agent last polled {queue} {silent_s:.0f} s ago, "
                        f"while {deployment} ran on it"
                    )
            if time.monotonic() > deadline:
                # A child left running would race a retry of the same step on the same machine.
                cancel_flow_run(child, started=started)
                raise EdgeFlowTimedOut(f"{deployment} on {queue} did not finish within {bound_s:.0f} s (state {state})")
            time.sleep(STATE_CHECK_S)
    if not state.is_completed():
        raise EdgeFlowFailed(f"{deployment} on {queue} ended {state.name}: {state.message}")
    return str(child)


def _resume(client: Any, child: UUID, deployment: str, queue: str) -> None:
    """Raises EdgeFlowFailed when the flow can no longer be resumed (it waited past its own bound)."""
    response = client.resume_flow_run(child)
    if response.status == SetStateStatus.REJECT:
        cancel_flow_run(child, started=True, why="it could not be resumed")
        raise EdgeFlowFailed(f"{deployment} on {queue} could not be resumed: {response.details}")
    # ABORT: it is no longer paused (resumed from the UI, or its pause timed out); it goes on as it is.


def agent_silence_s(last_polled: datetime | None, answering_since: float) -> float | None:
    """How long the agent has not polled while the API answered; None before its first poll."""
    if last_polled is None:
        return None
    return min((datetime.now(UTC) - last_polled).total_seconds(), time.monotonic() - answering_since)


def cancel_flow_run(flow_run_id: UUID, started: bool, why: str = "its dispatcher stopped waiting") -> None:
    """A running flow run is asked to stop (its worker kills it); one not started yet is cancelled outright."""
    state: State[Any] = Cancelling(message=why) if started else Cancelled(message=why)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, state, force=True)
