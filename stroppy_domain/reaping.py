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


def reap_reason(evidence: RunEvidence, now: datetime, grace: timedelta) -> str | None:
    """Why the run should be torn down now, or None to leave it alone."""
    if evidence.expires_at is not None and evidence.expires_at <= now:
        return f"its resources expired at {evidence.expires_at.isoformat()}"
    if evidence.flow_run_found:
        if evidence.flow_state in FINAL_STATES:
            return f"its flow run ended {evidence.flow_state} without finishing teardown"
        return None
    if evidence.flow_run_id is not None and evidence.opened_at is not None and evidence.opened_at + grace <= now:
        return f"its flow run {evidence.flow_run_id} no longer exists"
    return None
