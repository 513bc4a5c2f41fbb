"""The reaper's rule: tear down only what no flow run can still tear down itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stroppy_domain.reaping import RunEvidence, reap_reason

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=15)
LONG_AGO, JUST_NOW = NOW - timedelta(hours=1), NOW - timedelta(minutes=1)


def evidence(**fields: object) -> RunEvidence:
    return RunEvidence(run_id="run-abc", has_ledger=True, **fields)


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
    ],
)  # fmt: skip
def test_reap_reason(known: RunEvidence, reason: str | None) -> None:
    decided = reap_reason(known, NOW, GRACE)
    if reason is None:
        assert decided is None
    else:
        assert decided is not None and reason in decided
