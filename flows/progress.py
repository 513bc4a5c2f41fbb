"""A run's steps: each step's task bounded by its limit (`bounded`); its progress, each step's wall-clock window and
duration for its result, and a Prefect progress artifact whose percentage is the share of steps reached and whose
description is the step the run is in. The UI shows it on the flow run's page; `stroppy-flows run` reads it
(`current_step`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from prefect import Task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from infra.prefect_sync import called_sync
from stroppy_domain.bounds import StepLimit
from stroppy_domain.errors import StroppyError
from stroppy_domain.reports import Phase

STEP_PREFIX = "step "
PROGRESS_TYPE = "progress"
R = TypeVar("R")


def bounded(step_task: Task[Any, R], limit: StepLimit) -> Task[Any, R]:
    """The task with its limit, retries and retry delays from the run's bounds."""
    return step_task.with_options(
        timeout_seconds=limit.timeout_s, retries=limit.retries, retry_delay_seconds=limit.retry_delays_s or 0
    )


class StepProgress:
    """Created when the run starts; `reach` moves it to a step."""

    def __init__(self, steps: list[str]) -> None:
        self._steps = steps
        # Created in the run's sync flow: Prefect creates the artifact synchronously.
        self._artifact: UUID = called_sync(create_progress_artifact(progress=0.0, description="starting"))

    def reach(self, step: str) -> None:
        done = 100.0 * self._steps.index(step) / len(self._steps)
        update_progress_artifact(self._artifact, progress=done, description=f"{STEP_PREFIX}{step}")

    def finish(self, outcome: str) -> None:
        update_progress_artifact(self._artifact, progress=100.0, description=outcome)


class InjectedFailure(StroppyError):  # noqa: N818 - reads as the condition it reports
    """A failure asked for with the `inject_failure_at` setting, to exercise teardown from a given step."""


class RunTimeline:
    """The steps of one run as they happen: logged, shown as progress, timed; a step named in `fail_at` fails on
    purpose when it starts (a testing aid)."""

    def __init__(self, steps: list[str], log: logging.Logger | logging.LoggerAdapter[Any], fail_at: str | None) -> None:
        self.timings: dict[str, float] = {}
        self.phases: list[Phase] = []
        self._log = log
        self._fail_at = fail_at
        self.progress = StepProgress(steps)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Log, show and time the step `name` around its body.

        Raises InjectedFailure, before the body runs, when `name` is the step `fail_at` names."""
        started, phase_start = time.monotonic(), datetime.now(UTC)
        self._log.info("step %s", name)
        self.progress.reach(name)
        if self._fail_at == name:
            raise InjectedFailure(f"failure injected at step {name}")
        yield
        self.timings[name] = round(time.monotonic() - started, 2)
        self.phases.append(Phase(name=name, started_at=phase_start, ended_at=datetime.now(UTC)))


def current_step(client: Any, flow_run_id: UUID) -> str | None:
    """The step a flow run reported last, from its progress artifact (a sync Prefect client), if it reported one."""
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
    )

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type=ArtifactFilterType(any_=[PROGRESS_TYPE])
        ),
        limit=1,
    )
    description = artifacts[0].description if artifacts else None
    return description.removeprefix(STEP_PREFIX) if description and description.startswith(STEP_PREFIX) else None
