"""The reaper's rule: tear down only what no flow run can still tear down itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from infra.settings import OrchestrationSettings
from stroppy_domain.reaping import RunEvidence, reap_reason

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=15)
LONG_AGO, JUST_NOW = NOW - timedelta(hours=1), NOW - timedelta(minutes=1)


def evidence(**fields: object) -> RunEvidence:
    return RunEvidence(run_id="run-abc", has_ledger=True, **fields)


def running(**fields: object) -> RunEvidence:
    return evidence(flow_run_id="f", flow_run_found=True, flow_state="RUNNING", opened_at=LONG_AGO, **fields)


@pytest.mark.parametrize(
    ("known", "reason"),
    [
        pytest.param(evidence(flow_run_id="f", flow_run_found=True, flow_state="RUNNING", opened_at=LONG_AGO), None,
                     id="a running run is left alone"),
        pytest.param(evidence(flow_run_id="f", flow_run_found=True, flow_state="PENDING"), None, id="pending"),
        pytest.param(evidence(flow_run_id="f", flow_run_found=True, flow_state="PAUSED"), None, id="paused"),
        pytest.param(evidence(flow_run_id="f", flow_run_found=True, flow_state="CRASHED"), "ended CRASHED",
                     id="a crashed run whose hooks did not finish"),
        pytest.param(evidence(flow_run_id="f", flow_run_found=True, flow_state="COMPLETED"), "ended COMPLETED",
                     id="a completed run whose teardown failed"),
        pytest.param(evidence(flow_run_id="f", opened_at=LONG_AGO), "no longer exists", id="flow run deleted"),
        pytest.param(evidence(flow_run_id="f", opened_at=JUST_NOW), None,
                     id="flow run not visible yet: within the grace period"),
        pytest.param(evidence(opened_at=LONG_AGO), None, id="no flow run recorded: the ledger expires by itself"),
        pytest.param(RunEvidence(run_id="run-abc", has_ledger=False, expires_at=NOW - timedelta(seconds=1)),
                     "expired", id="labelled leftovers past their expiry"),
        pytest.param(RunEvidence(run_id="run-abc", has_ledger=False, expires_at=NOW + timedelta(hours=1)), None,
                     id="labelled leftovers not yet expired"),
        pytest.param(evidence(flow_run_id="f", flow_run_found=True, flow_state="RUNNING", expires_at=LONG_AGO),
                     "expired", id="a run still running past its expiry"),
        pytest.param(running(heartbeat_at=JUST_NOW, expires_at=LONG_AGO), None,
                     id="a long run past its expiry label, still beating, is left alone"),
        pytest.param(running(heartbeat_at=LONG_AGO), "heartbeat stopped",
                     id="a running flow whose heartbeat stopped: its master died"),
        pytest.param(running(heartbeat_at=NOW - GRACE), "heartbeat stopped",
                     id="a heartbeat exactly as old as the grace"),
        pytest.param(running(heartbeat_at=NOW - GRACE + timedelta(seconds=1)), None,
                     id="a heartbeat just within the grace"),
        pytest.param(evidence(flow_run_id="f", flow_run_found=True, flow_state="COMPLETED", heartbeat_at=JUST_NOW),
                     "ended COMPLETED", id="an ended run's last beat does not keep it"),
        pytest.param(evidence(flow_run_id="f", flow_run_found=True, flow_state="FAILED", expires_at=LONG_AGO,
                              kept_until=NOW + timedelta(hours=1)), None,
                     id="a failed run kept for a look, even past its expiry label"),
        pytest.param(evidence(flow_run_id="f", flow_run_found=True, flow_state="FAILED", kept_until=JUST_NOW),
                     "kept after its failure until", id="a kept run whose time is up"),
    ],
)  # fmt: skip
def test_reap_reason(known: RunEvidence, reason: str | None) -> None:
    decided = reap_reason(known, NOW, GRACE)
    if reason is None:
        assert decided is None
    else:
        assert decided is not None and reason in decided


@pytest.mark.parametrize(
    ("fields", "accepted"),
    [
        ({"heartbeat_interval_s": 60}, True),
        ({"reservation_ttl_s": 180, "heartbeat_interval_s": 60}, True),
        ({"reservation_ttl_s": 179, "heartbeat_interval_s": 60}, False),
        ({"ledger_ttl_s": 30, "heartbeat_interval_s": 11}, False),
    ],
)
def test_a_lease_never_expires_between_heartbeats(fields: dict[str, float], accepted: bool) -> None:
    if accepted:
        OrchestrationSettings(**fields)  # type: ignore[arg-type]
        return
    with pytest.raises(ValidationError, match="at most a third of the shorter of reservation_ttl_s and ledger_ttl_s"):
        OrchestrationSettings(**fields)  # type: ignore[arg-type]
