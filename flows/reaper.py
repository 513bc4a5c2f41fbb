"""`stroppy-reaper`: tears down what no run will tear down any more, on a schedule (prefect.yaml).

A run tears itself down in `finally` and in its crash and cancellation hooks; the reaper is for what is left when
even those could not run (the worker's machine died, a teardown failed three times). It looks at open ledgers and at
every resource the targets hold, and leaves any run whose flow run may still be working alone
(stroppy_domain.reaping decides).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed, Failed, State
from pydantic import BaseModel, Field

from flows.teardown import LEDGER_FLOW_RUN, TeardownReport, tear_down
from infra.connections import redis_client
from infra.ledger import RunLedger, open_ledgers
from infra.settings import OrchestrationSettings
from infra.targets import available_targets, open_target
from infra.targets.base import TargetError
from stroppy_domain.model import Target
from stroppy_domain.reaping import FINAL_STATES, RunEvidence, reap_reason


class ReapedRun(BaseModel):
    run_id: str
    reason: str
    teardown: TeardownReport
    destroyed: dict[str, int] = Field(default_factory=dict, description="Resources found by label, without a ledger.")


class ReapReport(BaseModel):
    checked: int
    reaped: list[ReapedRun] = Field(default_factory=list)
    unreachable: dict[str, str] = Field(
        default_factory=dict, description="Targets that could not be listed (name -> error); the rest were reaped."
    )


def _flow_state(flow_run_id: str) -> tuple[bool, str | None]:
    """Whether the flow run exists, and its state. An id that is no flow run's id (a ledger written by another tool,
    or by hand) names none: its run is reaped as one whose flow run is gone, and the others are reaped regardless."""
    try:
        parsed = UUID(flow_run_id)
    except ValueError:
        return False, None
    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(parsed)
        except ObjectNotFound:
            return False, None
    return True, flow_run.state.type.value if flow_run.state else None


def _mark_crashed(flow_run_id: str, reason: str) -> None:
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(flow_run_id), Crashed(message=f"stroppy-reaper: {reason}"), force=True)


def _evidence(
    settings: OrchestrationSettings, targets: list[Target], unreachable: dict[str, str]
) -> dict[str, RunEvidence]:
    """Open ledgers, what every reachable target holds, and each flow run's state; unreachable targets are noted."""
    found: dict[str, RunEvidence] = {}
    with redis_client(settings) as client:
        for run_id in open_ledgers(client):
            ledger = RunLedger(client, run_id)
            flow_run_id = ledger.entries().get(LEDGER_FLOW_RUN)
            found[run_id] = RunEvidence(
                run_id=run_id, has_ledger=True, opened_at=ledger.opened_at(), flow_run_id=flow_run_id,
                heartbeat_at=ledger.heartbeat_at(), kept_until=ledger.kept_until(),
            )  # fmt: skip
    for target in targets:
        try:
            with open_target(target, settings) as backend:
                inventories = backend.list_runs()
        except TargetError as error:  # one target down must not keep the others' leftovers alive
            unreachable[str(target)] = str(error)
            continue
        for inventory in inventories:
            known = found.get(inventory.run_id) or RunEvidence(run_id=inventory.run_id, has_ledger=False)
            found[inventory.run_id] = known.model_copy(update={"expires_at": inventory.expires_at})
    for run_id, evidence in found.items():
        if evidence.flow_run_id:
            exists, state = _flow_state(evidence.flow_run_id)
            found[run_id] = evidence.model_copy(update={"flow_run_found": exists, "flow_state": state})
    return found


@flow(name="stroppy-reaper", retries=0, timeout_seconds=1800)
def reap(grace_minutes: int = 15, targets: list[Target] | None = None) -> ReapReport | State:
    """Tear down runs whose flow run has ended (or vanished for `grace_minutes`) or whose resources have expired.

    A target that cannot be listed fails the reaper's run (with its report), after the others were reaped. A
    teardown that fails raises its error (LedgerError, TargetError, ReservationError), leaving the runs after it
    to the next reaper; LedgerError also comes, before anything is reaped, when an open ledger cannot be read."""
    log = get_run_logger()
    settings = OrchestrationSettings()
    unreachable: dict[str, str] = {}
    listed = targets or available_targets(settings)
    evidence = _evidence(settings, listed, unreachable)
    chosen = [target for target in listed if str(target) not in unreachable]
    report = ReapReport(checked=len(evidence), unreachable=unreachable)
    now = datetime.now(UTC)
    for run_id, known in sorted(evidence.items()):
        reason = reap_reason(known, now, timedelta(minutes=grace_minutes))
        if reason is None:
            continue
        log.info("reaping %s: %s", run_id, reason)
        if known.flow_run_id and known.flow_run_found and known.flow_state not in FINAL_STATES:
            _mark_crashed(known.flow_run_id, reason)  # its master is gone: the flow run will never end by itself
        reaped = ReapedRun(run_id=run_id, reason=reason, teardown=tear_down(run_id, settings))
        if not known.has_ledger:
            for target in chosen:
                with open_target(target, settings) as backend:
                    reaped.destroyed |= backend.destroy(run_id).removed
        report.reaped.append(reaped)
    log.info("checked %d run(s), reaped %d", report.checked, len(report.reaped))
    if unreachable:
        problems = "; ".join(f"{target}: {error}" for target, error in unreachable.items())
        return Failed(message=f"reaped {len(report.reaped)} run(s), but could not list {problems}", data=report)
    return report
