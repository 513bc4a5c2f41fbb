"""The runner's edge flows, from the master's side: stroppy's installation, and the load.

The load's flow is submitted as soon as the run's machines exist (`hold_load_on_runner`) and waits, paused on the
runner, while the services start; the load step resumes it. Its process start and its agent's pick-up (about a
second, more on a busy host) then overlap the services' start instead of adding to the run.
"""

from __future__ import annotations

import ipaddress
from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.edge import LOAD_FILES_PREFIX, InstalledTool, InstallRequest, LoadOutcome, LoadRequest
from infra.connections import results_bucket
from infra.edge_queues import dispatch, edge_tags, follow, submit
from infra.edge_replies import ReplyTo, read_reply
from infra.result_storage import ResultStorageError, S3ResultStorage
from infra.retries import retry_transient
from infra.settings import OrchestrationSettings
from infra.stroppy_release import BINARY_NAME, ReleaseLock, release_url
from infra.targets import target_module
from infra.targets.base import RunSpec, machine_queue_name
from stroppy_domain.load import LoadStep
from stroppy_domain.model import BenchmarkTest, Driver

RUN_LOAD_DEPLOYMENT = "run-load/edge"
INSTALL_DEPLOYMENT = "install-stroppy/edge"


@task(cache_policy=NO_CACHE, retry_condition_fn=retry_transient)
def install_stroppy_on_runner(
    run: RunSpec, test: BenchmarkTest, bound_s: float, settings: OrchestrationSettings
) -> InstalledTool:
    """Idempotent (a fresh download into the run's own directory), so a retry is safe.

    Raises ReleaseError when the lock file cannot be read or pins no such version; EdgeAgentsNotReady when the
    runner's agent stopped polling, EdgeFlowFailed when the installation failed (a checksum mismatch among others),
    and EdgeFlowTimedOut when it did not end within `bound_s`."""
    version = test.stroppy.version or ""
    release = ReleaseLock.read(settings.release_lock).pinned(version, settings.release_lock)
    gateway = str(ipaddress.IPv4Network(run.plan.subnet).network_address + 1)
    request = InstallRequest(
        reply_to=reply_to(run, settings),
        release=release,
        url=release_url(settings.release_url, version, gateway),
        directory=_stroppy_directory(run),
        timeout_s=settings.install_timeout_s,
    )
    flow_run_id = dispatch(
        INSTALL_DEPLOYMENT, {"request": request.model_dump(mode="json")}, _runner_queue(run), bound_s,
        tags=edge_tags(run.run_id), machine=run.plan.runner.name,
    )  # fmt: skip
    return read_reply(request.reply_to, flow_run_id, InstalledTool)


def runner_binary(run: RunSpec, test: BenchmarkTest) -> str:
    """Where the installation leaves stroppy's binary on the runner, for a test whose driver is stroppy; else ""."""
    return f"{_stroppy_directory(run)}/{BINARY_NAME}" if test.stroppy.driver is Driver.STROPPY else ""


def reply_to(run: RunSpec, settings: OrchestrationSettings) -> ReplyTo:
    """Where the runner's edge flows leave their answers: the results directory it shares with the master, else
    the results bucket."""
    if target_module(run.plan.target).SHARES_RESULTS_DIR:
        return ReplyTo(run_id=run.run_id, directory=str(settings.results_dir))
    return ReplyTo(run_id=run.run_id, s3_block=settings.archive_s3_block)


def runner_output_dir(run: RunSpec, settings: OrchestrationSettings) -> str:
    """Where the load writes its files on the runner: the master's results directory when the runner shares it."""
    target = target_module(run.plan.target)
    if target.SHARES_RESULTS_DIR:
        return str(settings.results_dir / run.run_id / "load")
    return str(target.runner_directory(run.run_id) / LOAD_FILES_PREFIX)


def load_request(
    run: RunSpec, steps: list[LoadStep], settings: OrchestrationSettings, hold_s: int | None = None
) -> LoadRequest:
    """The load's flow's request: its steps, where its files and its answer go, and how long it may wait held."""
    shared = target_module(run.plan.target).SHARES_RESULTS_DIR
    return LoadRequest(
        run_id=run.run_id,
        reply_to=reply_to(run, settings),
        steps=steps,
        output_dir=runner_output_dir(run, settings),
        upload_block=None if shared else settings.archive_s3_block,
        hold_s=hold_s,
    )


def hold_load_on_runner(run: RunSpec, request: LoadRequest) -> UUID:
    """Submit the load's flow (a request with `hold_s`) to the runner's queue, to wait there paused for the load
    step; returns its flow run's id. A run torn down before its load step cancels it (flows.teardown)."""
    parameters = {"request": request.model_dump(mode="json")}
    return submit(RUN_LOAD_DEPLOYMENT, parameters, _runner_queue(run), edge_tags(run.run_id))


@task(cache_policy=NO_CACHE, retries=0)
def run_load_on_runner(
    run: RunSpec, request: LoadRequest, bound_s: float, settings: OrchestrationSettings, held: UUID | None = None
) -> LoadOutcome:
    """The measurement: never retried. Resumes the `held` load's flow run, or submits one for `request`. A runner
    that shares the master's results directory writes the load's files there; any other uploads them to the results
    bucket, and they are fetched from there.

    Raises EdgeAgentsNotReady when the runner's agent stopped polling, EdgeFlowFailed when a load step failed (or
    the held flow could no longer be resumed), EdgeFlowTimedOut when the load did not end within `bound_s`, and
    ResultStorageError when the results bucket's block is gone or the load's files cannot be fetched from it."""
    queue, machine = _runner_queue(run), run.plan.runner.name
    if held is None:
        parameters = {"request": request.model_dump(mode="json")}
        flow_run_id = dispatch(RUN_LOAD_DEPLOYMENT, parameters, queue, bound_s, edge_tags(run.run_id), machine)
    else:
        flow_run_id = follow(held, RUN_LOAD_DEPLOYMENT, queue, bound_s, machine, resume=True)
    outcome = read_reply(request.reply_to, flow_run_id, LoadOutcome)
    if not target_module(run.plan.target).SHARES_RESULTS_DIR:
        bucket = results_bucket(settings)
        if bucket is None:
            raise ResultStorageError(f"the S3Bucket block {settings.archive_s3_block!r} the load files went to is gone")
        S3ResultStorage(bucket).fetch(f"{run.run_id}/{LOAD_FILES_PREFIX}", settings.results_dir / run.run_id / "load")
    return outcome


def _runner_queue(run: RunSpec) -> str:
    return machine_queue_name(run.run_id, run.plan.runner.name)


def _stroppy_directory(run: RunSpec) -> str:
    return str(target_module(run.plan.target).runner_directory(run.run_id) / "stroppy")
