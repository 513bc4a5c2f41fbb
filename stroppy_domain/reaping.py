"""When a run's leftovers may be torn down by the reaper: never while its flow run may still tear them down itself."""

from __future__ import annotations

from datetime import datetime, timedelta

from stroppy_domain.model import Model

FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


class RunEvidence(Model):
    """What the reaper knows of one run: from its ledger, its flow run and the target's labels."""

    run_id: str
    has_ledger: bool
    opened_at: datetime | None = None
    flow_run_id: str | None = None
    flow_state: str | None = None
    flow_run_found: bool = False
    expires_at: datetime | None = None
    heartbeat_at: datetime | None = None
    kept_until: datetime | None = None


def reap_reason(evidence: RunEvidence, now: datetime, grace: timedelta) -> str | None:
    """Why the run should be torn down now, or None to leave it alone.

    A failed run kept for a look (`keep_on_failure`) is left alone until its time is up. A run whose flow is still
    going is left alone while its heartbeat is fresh, even past its resources' expiry
    label (a long run renews the record, not the label); once its heartbeat is older than `grace`, its master is
    gone and it is reaped although its flow run still says it is running."""
    if evidence.kept_until is not None:
        kept = evidence.kept_until > now
        return None if kept else f"it was kept after its failure until {evidence.kept_until.isoformat()}"
    beating = evidence.heartbeat_at is not None and evidence.heartbeat_at + grace > now
    live_flow = evidence.flow_run_found and evidence.flow_state not in FINAL_STATES
    if live_flow and evidence.heartbeat_at is not None and not beating:
        return (
            f"its flow run is still {evidence.flow_state or 'unknown'} but its heartbeat stopped at "
            f"{evidence.heartbeat_at.isoformat()}: the master running it is gone"
        )
    if evidence.expires_at is not None and evidence.expires_at <= now and not beating:
        return f"its resources expired at {evidence.expires_at.isoformat()}"
    if evidence.flow_run_found:
        ended = evidence.flow_state in FINAL_STATES
        return f"its flow run ended {evidence.flow_state} without finishing teardown" if ended else None
    if evidence.flow_run_id is not None and evidence.opened_at is not None and evidence.opened_at + grace <= now:
        return f"its flow run {evidence.flow_run_id} no longer exists"
    return None
