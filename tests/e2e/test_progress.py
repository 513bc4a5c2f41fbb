"""A run's progress artifact is written in the background and in order, and its last update is on the server once
the progress is closed (real Prefect server)."""

from __future__ import annotations

import logging
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.context import FlowRunContext

from flows.progress import StepProgress, current_step

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

STEPS = ["validate", "plan", "run_load", "report"]


@flow(name="progress-probe", persist_result=False)
def _walk(outcome: str | None) -> str:
    progress = StepProgress(STEPS, logging.getLogger("progress-probe"))
    for step in STEPS:
        progress.reach(step)
    if outcome is not None:
        progress.finish(outcome)
    progress.close()
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    return str(context.flow_run.id)


def _artifact(flow_run_id: str) -> tuple[float | None, str | None]:
    runs = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=runs)
    assert len(found) == 1, found
    return found[0].data, found[0].description


def test_the_last_step_reached_is_the_runs_progress_once_closed() -> None:
    flow_run_id = _walk(None)
    assert _artifact(flow_run_id) == (75.0, "step report")
    with get_client(sync_client=True) as client:
        assert current_step(client, UUID(flow_run_id)) == "report"


def test_the_outcome_is_the_runs_progress_once_finished_and_closed() -> None:
    assert _artifact(_walk("PASSED")) == (100.0, "PASSED")
