"""Per-machine work queues on the Prefect server: created with the machine, waited for, deleted at teardown; and
the dispatch of an edge flow to one machine's queue."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import WorkQueueStatus
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Cancelled, Cancelling, State

from infra.prefect_sync import called_sync
from infra.retries import WaitTimedOut, wait_for
from stroppy_domain.bounds import poll_interval_s
from stroppy_domain.errors import StroppyError

EDGE_POOL = "stroppy-edge"
QUEUE_RECHECK_TIMEOUT_S = 30


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
    """Wait until every queue is READY (its agent polls it), with capped exponential backoff and jitter.

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
            wait_for(all_ready, timeout_s, "edge agents")
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


def edge_tags(run_id: str) -> list[str]:
    """Tags of a run's edge flow runs, to find them from the run (UI filter `run:<id>`)."""
    return ["stroppy", f"run:{run_id}"]


def dispatch(
    deployment: str, parameters: dict[str, Any], queue: str, bound_s: float, tags: list[str] | None = None
) -> Any:
    """Run an edge flow on one machine's queue, once its agent polls it, and return the flow's result.

    Raises EdgeAgentsNotReady when the machine's agent stopped polling, EdgeFlowFailed when the flow failed, and
    EdgeFlowTimedOut when it did not end within `bound_s` (it is cancelled first)."""
    wait_until_ready([queue], QUEUE_RECHECK_TIMEOUT_S)
    # Called from sync code (a sync task, a worker thread): Prefect runs the deployment synchronously.
    child = called_sync(
        run_deployment(
            deployment, parameters=parameters, work_queue_name=queue, timeout=bound_s,
            poll_interval=poll_interval_s(bound_s), tags=tags,
        )
    )  # fmt: skip
    if child.state is None or not child.state.is_final():
        # A child left running would race a retry of the same step on the same machine.
        cancel_flow_run(child.id, started=child.state is not None and child.state.is_running())
        raise EdgeFlowTimedOut(f"{deployment} on {queue} did not finish within {bound_s:.0f} s (state {child.state})")
    if not child.state.is_completed():
        raise EdgeFlowFailed(f"{deployment} on {queue} ended {child.state.name}: {child.state.message}")
    return child.state.result()


def cancel_flow_run(flow_run_id: UUID, started: bool, why: str = "its dispatcher stopped waiting") -> None:
    """A running flow run is asked to stop (its worker kills it); one not started yet is cancelled outright."""
    state: State[Any] = Cancelling(message=why) if started else Cancelled(message=why)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, state, force=True)
