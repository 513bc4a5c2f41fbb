"""Edge flows: they run on a machine's own agent (pool `stroppy-edge`, the machine's queue)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from infra.processes import run_bounded
from infra.stroppy_release import PinnedRelease, install
from stroppy_domain.load import LoadStep

VERSION_CHECK_TIMEOUT_S = 30


class LoadRequest(BaseModel):
    run_id: str
    steps: list[LoadStep]
    output_dir: str = Field(description="Where the load writes its files; shared with the master.")


class StepOutcome(BaseModel):
    name: str
    exit_code: int | None
    timed_out: bool
    started_at: datetime
    duration_s: float
    output_lines: int
    output_tail: list[str]


class LoadOutcome(BaseModel):
    steps: list[StepOutcome]
    files: list[str] = Field(description="Files the load wrote, relative to the output directory.")


class LoadFailed(RuntimeError):  # noqa: N818 - reads as the condition it reports
    """A load step exited non-zero or ran past its bound; the message carries its last output lines."""


@flow(name="run-load", persist_result=True, log_prints=False)
def run_load(request: LoadRequest) -> LoadOutcome:
    """Run the load's steps in order; stop at the first that fails. Nothing here retries the measurement."""
    log = get_run_logger()
    output_dir = Path(request.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for step in request.steps:
        log.info("%s: %s (bounded to %d s)", step.name, " ".join(step.argv), step.timeout_s)
        started_at = datetime.now(UTC)
        result = run_bounded(step.argv, step.env, output_dir, step.timeout_s, log.info)
        outcomes.append(
            StepOutcome(
                name=step.name, exit_code=result.exit_code, timed_out=result.timed_out, started_at=started_at,
                duration_s=result.duration_s, output_lines=result.lines, output_tail=result.tail,
            )
        )  # fmt: skip
        if result.timed_out or result.exit_code != 0:
            reason = f"ran past its bound of {step.timeout_s} s" if result.timed_out else f"exited {result.exit_code}"
            raise LoadFailed(f"{step.name} {reason}; last output:\n" + "\n".join(result.tail[-15:]))
    files = sorted(str(path.relative_to(output_dir)) for path in output_dir.rglob("*") if path.is_file())
    return LoadOutcome(steps=outcomes, files=files)


class InstallRequest(BaseModel):
    release: PinnedRelease = Field(description="Version and the sha256 it must have (from the project's lock file).")
    url: str = Field(description="Where this machine downloads it from.")
    directory: str = Field(description="Per-run installation directory.")
    timeout_s: float = Field(gt=0, description="Bound of one download attempt.")


@flow(name="install-stroppy", persist_result=True, retries=0)
def install_stroppy(request: InstallRequest) -> str:
    """Download, verify and unpack the pinned stroppy; returns the binary's path once it answers `version`."""
    log = get_run_logger()
    binary = install(request.release, request.url, Path(request.directory), request.timeout_s)
    check = run_bounded([str(binary), "version"], {}, binary.parent, VERSION_CHECK_TIMEOUT_S, log.info)
    if check.exit_code != 0:
        raise LoadFailed(f"{binary} version exited {check.exit_code}: " + "\n".join(check.tail[-5:]))
    log.info("stroppy %s installed at %s (sha256 %s)", request.release.version, binary, request.release.sha256)
    return str(binary)
