"""A run's steps: each step's task bounded by its limit (`bounded`); its progress, each step's wall-clock window and
duration for its result, and a Prefect progress artifact whose percentage is the share of steps reached and whose
description is the step the run is in. The UI shows it on the flow run's page; `stroppy-flows run` reads it
(`current_step`)."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
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
PROGRESS_FLUSH_S = 10
"""How long a run's end waits for its progress artifact's last update to reach the API."""
R = TypeVar("R")


def bounded(step_task: Task[Any, R], limit: StepLimit) -> Task[Any, R]:
    """The task with its limit, retries and retry delays from the run's bounds."""
    return step_task.with_options(
        timeout_seconds=limit.timeout_s, retries=limit.retries, retry_delay_seconds=limit.retry_delays_s or 0
    )


class StepProgress:
    """Created when the run starts; `reach` moves it to a step, `finish` to the run's outcome. The artifact is written
    in the background and in order: a step does not wait for the API (an update costs 50 to 90 ms, and a run has a
    dozen); `close` waits for the last."""

    def __init__(self, steps: list[str], log: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        self._steps = steps
        self._log = log
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-progress")
        # The flow run's context: the artifact is created for it, from the writer's thread.
        self._context = contextvars.copy_context()
        self._artifact = self._writer.submit(self._context.run, self._create)
        self._last: Future[Any] = self._artifact

    def reach(self, step: str) -> None:
        self._write(100.0 * self._steps.index(step) / len(self._steps), f"{STEP_PREFIX}{step}")

    def finish(self, outcome: str) -> None:
        self._write(100.0, outcome)

    def close(self) -> None:
        """Wait for the last update, up to `PROGRESS_FLUSH_S`: a flow run's process ends with its flow."""
        done, _ = wait([self._last], timeout=PROGRESS_FLUSH_S)
        if not done:
            self._log.warning("the run's progress still had not reached the API after %d s", PROGRESS_FLUSH_S)
        self._writer.shutdown(wait=False)

    def _write(self, progress: float, description: str) -> None:
        self._last = self._writer.submit(self._context.run, self._update, progress, description)

    @staticmethod
    def _create() -> UUID:
        # Prefect creates the artifact synchronously only when told to, from a thread of a sync flow.
        artifact: UUID = called_sync(create_progress_artifact(progress=0.0, description="starting"))
        return artifact

    def _update(self, progress: float, description: str) -> None:
        try:
            update_progress_artifact(self._artifact.result(), progress=progress, description=description)
        except Exception as error:  # the UI's progress only: the run goes on, and says so
            self._log.warning("the run's progress (%s) did not reach the API: %s", description, error)


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
        self.progress = StepProgress(steps, log)

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
