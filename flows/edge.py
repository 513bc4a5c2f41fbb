"""Edge flows: they run on a machine's own agent (pool `stroppy-edge`, the machine's queue)."""

from __future__ import annotations

import hashlib
import os
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, runtime
from prefect.blocks.system import Secret
from prefect.flow_runs import pause_flow_run
from pydantic import BaseModel, Field, ValidationError

from infra.containers import ServiceEngine, StartServicesRequest, registry_login
from infra.edge_replies import ReplyTo, send_reply
from infra.host_counters import read_machine, read_sample
from infra.prefect_sync import load_block_sync
from infra.processes import run_bounded
from infra.result_storage import S3ResultStorage
from infra.stroppy_release import PinnedRelease, install
from infra.targets.base import RunSpec, TargetError
from stroppy_domain.errors import StroppyError
from stroppy_domain.host import HostCountersError, HostEvidence, HostSample, host_evidence
from stroppy_domain.load import LoadStep
from stroppy_domain.plan import SecretFile

VERSION_CHECK_TIMEOUT_S = 30
IDLE_WINDOW_S = 1.0
"""How long the host's idle CPU use is read before the measured step."""
HOLD_POLL_S = 0.2
"""How often a held load's flow reads whether it was resumed: the go of a measurement waits half of it on average."""
LOAD_FILES_PREFIX = "load"


class LoadRequest(BaseModel):
    run_id: str
    reply_to: ReplyTo
    steps: list[LoadStep]
    output_dir: str = Field(description="Where the load writes its files (on Docker, shared with the master).")
    upload_block: str | None = Field(
        default=None,
        description="prefect-aws `S3Bucket` block the files go to, under `<run id>/load/`, for machines that share "
        "no directory with the master.",
    )
    hold_s: int | None = Field(
        default=None,
        gt=0,
        description="When set, the flow first waits, paused, until the master resumes it (its machines' services are "
        "up), for at most this many seconds: its process starts while they do.",
    )


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
    host: HostEvidence | None = Field(default=None, description="How busy the runner's host was while it measured.")
    host_error: str = Field(default="", description="Why there is no host evidence, when there is none.")


class LoadFailed(StroppyError):  # noqa: N818 - reads as the condition it reports
    """A load step exited non-zero or ran past its bound; the message carries its last output lines."""


# Edge flows persist no Prefect result (a machine's result record could name pickle as its serializer); each
# answers through infra.edge_replies.
@flow(name="run-load", persist_result=False, log_prints=False)
def run_load(request: LoadRequest) -> LoadOutcome:
    """Write each step's files and run it, in order; stop at the first that fails, or that exits with one of its
    verdict codes (k6's failed thresholds), which the master judges. Nothing here retries the measurement.

    Raises LoadFailed when a step exits non-zero (not a verdict) or runs past its bound, and ResultStorageError when
    the files cannot be uploaded to the bucket."""
    log = get_run_logger()
    if request.hold_s is not None:
        # Prefect's own wait: the UI shows the flow paused, and the master's resume is a state change.
        pause_flow_run(timeout=request.hold_s, poll_interval=HOLD_POLL_S)  # type: ignore[call-overload]  # sleeps a float
    output_dir = Path(request.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    host: HostEvidence | None = None
    host_error = ""
    secrets = _read_secrets(request.steps)
    for step in request.steps:
        for name, content in step.files.items():
            (output_dir / name).write_text(content)
        log.info("%s: %s (bounded to %d s)", step.name, " ".join(step.argv), step.timeout_s)
        samples = _idle_samples(log) if step.measured else None
        started_at = datetime.now(UTC)
        step_secrets = {variable: secrets[block] for variable, block in step.secret_env.items()}
        result = run_bounded(
            step.argv, step.env | step_secrets, output_dir, step.timeout_s, log.info, step_secrets.values()
        )
        if step.measured:
            host, host_error = _host_evidence(samples, result.duration_s)
        outcomes.append(
            StepOutcome(
                name=step.name, exit_code=result.exit_code, timed_out=result.timed_out, started_at=started_at,
                duration_s=result.duration_s, output_lines=result.lines, output_tail=result.tail,
            )
        )  # fmt: skip
        if result.exit_code in step.verdict_exits:
            log.info("%s exited %d: a verdict, judged with the load's results", step.name, result.exit_code)
            break
        if result.timed_out or result.exit_code != 0:
            reason = f"ran past its bound of {step.timeout_s} s" if result.timed_out else f"exited {result.exit_code}"
            raise LoadFailed(f"{step.name} {reason}; last output:\n" + "\n".join(result.tail[-15:]))
    files = sorted(str(path.relative_to(output_dir)) for path in output_dir.rglob("*") if path.is_file())
    if request.upload_block is not None:
        from prefect_aws import S3Bucket  # noqa: PLC0415 - the AWS SDK loads only when files are uploaded

        location = S3ResultStorage(S3Bucket.load(request.upload_block, _sync=True)).store(
            f"{request.run_id}/{LOAD_FILES_PREFIX}", output_dir
        )
        log.info("%d load file(s) uploaded to %s", len(files), location)
    outcome = LoadOutcome(steps=outcomes, files=files, host=host, host_error=host_error)
    send_reply(request.reply_to, str(runtime.flow_run.id), outcome)
    return outcome


def _read_secrets(steps: list[LoadStep]) -> dict[str, str]:
    """The value of each Secret block the steps name (block name -> value), read here on the runner, once each.

    Raises LoadFailed naming the variable and the block that cannot be read."""
    values: dict[str, str] = {}
    for step in steps:
        for variable, block in step.secret_env.items():
            if block in values:
                continue
            try:
                values[block] = str(load_block_sync(Secret, block).get())
            except ValueError as error:
                raise LoadFailed(
                    f"stroppy.env.{variable}: the Secret block {block!r} cannot be read: {error}"
                ) from None
    return values


def _idle_samples(log: Any) -> tuple[HostSample, HostSample] | str:
    """The host's counters a second apart, just before the measured step; or why they cannot be read."""
    try:
        first = read_sample()
        time.sleep(IDLE_WINDOW_S)
        return first, read_sample()
    except (HostCountersError, OSError) as error:
        log.warning("no host evidence for this load: %s", error)
        return str(error)


def _host_evidence(
    samples: tuple[HostSample, HostSample] | str | None, window_s: float
) -> tuple[HostEvidence | None, str]:
    if not isinstance(samples, tuple):
        return None, samples or "the load had no measured step"
    try:
        kernel, cpu_model = read_machine()
        evidence = host_evidence(*samples, read_sample(), window_s)
        return evidence.model_copy(update={"kernel": kernel, "cpu_model": cpu_model}), ""
    except (HostCountersError, OSError) as error:
        return None, str(error)


class InstallRequest(BaseModel):
    reply_to: ReplyTo
    release: PinnedRelease = Field(description="Version and the sha256 it must have (from the project's lock file).")
    url: str = Field(description="Where this machine downloads it from.")
    directory: str = Field(description="Per-run installation directory.")
    timeout_s: float = Field(gt=0, description="Bound of one download attempt.")


class InstalledTool(BaseModel):
    """The load tool as the runner installed it: what the run uses and what its manifest records."""

    binary: str = Field(description="Its path on the runner.")
    version: str = Field(description="What `stroppy version` printed (stroppy's and its k6's), one line.")
    binary_sha256: str = Field(description="The unpacked binary's own checksum.")


@flow(name="install-stroppy", persist_result=False, retries=0)
def install_stroppy(request: InstallRequest) -> InstalledTool:
    """Download, verify and unpack the pinned stroppy; returns the binary, its version and checksum once it answers
    `version`.

    Raises ReleaseError when the download fails, does not match the pinned checksum or cannot be unpacked, and
    LoadFailed when the binary does not answer `version`."""
    log = get_run_logger()
    binary = install(request.release, request.url, Path(request.directory), request.timeout_s)
    check = run_bounded([str(binary), "version"], {}, binary.parent, VERSION_CHECK_TIMEOUT_S, log.info)
    if check.exit_code != 0:
        raise LoadFailed(f"{binary} version exited {check.exit_code}: " + "\n".join(check.tail[-5:]))
    log.info("stroppy %s installed at %s (sha256 %s)", request.release.version, binary, request.release.sha256)
    printed = "; ".join(" ".join(line.split()) for line in check.tail if line.strip())
    checksum = hashlib.sha256(binary.read_bytes()).hexdigest()
    installed = InstalledTool(binary=str(binary), version=printed, binary_sha256=checksum)
    send_reply(request.reply_to, str(runtime.flow_run.id), installed)
    return installed


@flow(name="start-services", persist_result=False, retries=0)
def start_services(request: StartServicesRequest) -> int:
    """Start the machine's containers of one stage on its own Docker engine and wait until they are healthy, or
    write the machine's own secret files; returns how many containers or files.

    Raises TargetError when the run's block holds no run this agent understands, another run, or no such machine;
    when the registry refuses the credentials; and when the stage does not become healthy or the engine refuses."""
    log = get_run_logger()
    try:
        run = RunSpec.model_validate(load_block_sync(Secret, request.run_block).get())
    except ValidationError as error:  # its default message quotes the input: the passwords
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_input=False))
        raise TargetError(f"block {request.run_block} does not hold a run this agent understands: {problems}") from None
    if run.run_id != request.run_id:
        raise TargetError(f"block {request.run_block} holds run {run.run_id}, not {request.run_id}")
    machine = next((m for m in run.plan.machines if m.name == request.machine), None)
    if machine is None:
        raise TargetError(f"run {run.run_id} has no machine {request.machine!r}")
    if request.stage is None:
        return _write_machine_files(machine.secret_files, Path(request.files_root))
    import docker  # noqa: PLC0415 - the SDK loads only when a machine starts services

    members = [(machine, container) for container in machine.containers if container.start_stage is request.stage]
    with closing(docker.from_env(timeout=int(request.api_timeout_s))) as client:
        if registry_login(client, request.registry_block):
            log.info("logged in to the registry with block %s", request.registry_block)
        engine = ServiceEngine(client, progress=log.info, pull_missing_images=True)
        engine.start_stage(run, request.stage, members, lambda _: request.network_mode)
    return len(members)


def _write_machine_files(files: list[SecretFile], root: Path) -> int:
    """Each file readable by this agent only, written whole or not at all."""
    for file in files:
        path = root / file.path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_name(f".{path.name}.partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, file.mode & 0o700)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(file.content.get_secret_value())
        partial.replace(path)
    return len(files)
