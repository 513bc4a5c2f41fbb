"""The workers of both pools: Prefect process workers that start each flow run of this project in a fork of a process
that has already imported Prefect and the flows, instead of in a new interpreter.

A new interpreter cost every flow run 1.5 s (an edge flow on a runner's CPU) to 6 s (a test run on a busy master) of
imports, reading its deployment and running the pull steps, before the flow ran: most of a run's dispatch latency.
The fork server (the standard library's `forkserver` loop, run in a fork of the worker taken once the worker has
imported the pool's flow modules) holds those imports; each flow run then runs in a fresh child forked from it, in a
session of its own as a process worker's children are, so a run that crashes or is cancelled (the worker kills its
process) takes nothing with it, and a killed worker leaves its runs going. A flow run whose entrypoint is in
another module starts as a process worker starts it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import os
import socket
import sys
import threading
import traceback
import warnings
from contextlib import suppress
from multiprocessing import connection, forkserver, resource_tracker
from typing import TYPE_CHECKING, Any
from uuid import UUID

import anyio
import anyio.abc
from prefect._internal.control_listener import configure_from_env
from prefect.context import SettingsContext, get_settings_context
from prefect.engine import handle_engine_signals
from prefect.events.worker import EventsWorker
from prefect.flow_engine import load_flow_run, run_flow
from prefect.runner._flow_run_executor import FlowRunExecutorContext
from prefect.runner._process_manager import ProcessHandle
from prefect.settings import Settings
from prefect.utilities.importtools import import_object
from prefect.utilities.processutils import setup_signal_handlers_worker
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

from flows.worker_wakeup import poll_when_scheduled

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.flows import Flow
    from prefect.runner._control_channel import ControlChannel

EDGE_FLOW_MODULES = ("flows.edge",)
"""The modules of the `stroppy-edge` pool's entrypoints: what a machine's agent preloads."""
MASTER_FLOW_MODULES = ("flows.suite", "flows.run", "flows.reaper")
"""The modules of the `stroppy-master` pool's entrypoints: what a master worker preloads."""
MASTER_RUN_LIBRARIES = (
    "docker", "prefect_docker.host", "redis", "prefect_aws", "grafana_client", "scipy.special", "fastapi.encoders",
)  # fmt: skip
"""What a test run imports only once it reaches the step that needs it (the outside systems' SDKs, the statistics,
Prefect's encoder of API payloads): 3.7 s of imports in every run's child until the fork server imported them. The
fork server skips one that is not installed (an extra left out)."""
DRAIN_TIMEOUT_S = 10
"""How long a finished flow run's child waits for its last logs and events to reach the API before it exits."""

_forks = multiprocessing.get_context("forkserver")


def _flow(entrypoint: str) -> Flow[..., Any]:
    flow: Flow[..., Any] = import_object(entrypoint)
    return flow


def _run_in_fork(entrypoint: str, flow_run_id: UUID, env: dict[str, str]) -> None:
    """The child's whole life: run one flow run as `python -m prefect.engine` would, from the flows' directory (the
    deployments' pull step), then send its last logs and events, which an interpreter's exit would have sent (a
    forked child leaves through `os._exit`)."""
    os.setsid()
    os.environ.update(env)
    configure_from_env()  # takes the control channel's port and token, so a cancellation reaches it as an intent
    if flows_dir := os.environ.get("STROPPY_FLOWS_DIR"):
        os.chdir(flows_dir)
    try:
        settings = SettingsContext(profile=get_settings_context().profile, settings=Settings())
        with settings, handle_engine_signals(flow_run_id):
            ran = run_flow(_flow(entrypoint), flow_run=load_flow_run(flow_run_id))
            if asyncio.iscoroutine(ran):  # an async flow (a suite): the child has no event loop of its own yet
                asyncio.run(ran)
    finally:
        logging.shutdown()  # flushes Prefect's API log handler
        EventsWorker.drain_all(timeout=DRAIN_TIMEOUT_S)


class ForkedFlowStarter:
    """Starts one flow run in a child of the fork server (Prefect's `ProcessStarter` protocol)."""

    def __init__(self, entrypoint: str, env: dict[str, str], control_channel: ControlChannel) -> None:
        self._entrypoint = entrypoint
        self._env = env
        self._control_channel = control_channel

    async def start(
        self, flow_run: FlowRun, task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        env = self._env | {
            "PREFECT__FLOW_RUN_ID": str(flow_run.id),
            # The worker runs the flow's crash and cancellation hooks itself, as for a process worker's children.
            "PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS": "false",
        }
        registered = False
        try:
            port, token = self._control_channel.register(flow_run.id)
            env |= {"PREFECT__CONTROL_PORT": str(port), "PREFECT__CONTROL_TOKEN": token}
            registered = True
        except RuntimeError:  # no loopback listener: a cancellation kills the child without an intent first
            pass
        process = _forks.Process(target=_run_in_fork, args=(self._entrypoint, flow_run.id, env))
        try:
            # In a thread: the standard library's fork server (`start_fork_server`'s fallback) answers only once it has
            # imported the flows, seconds after the worker started on a busy host, and the worker's event loop keeps
            # serving meanwhile (its heartbeats, its health).
            await anyio.to_thread.run_sync(process.start)
        except BaseException:
            if registered:
                self._control_channel.unregister(flow_run.id)
            raise
        task_status.started(ProcessHandle(process))  # type: ignore[arg-type]  # a forked Process, not a SpawnProcess
        await anyio.to_thread.run_sync(process.join)


# The subclass keeps the pools' worker type, "process", which Prefect's registry of worker types already holds: it
# warns that this process's registry now names this class, which is the point.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)

    class ForkingProcessWorker(ProcessWorker):
        """A process worker whose flow runs of the preloaded modules start from the fork server."""

        type = "process"

        def __init__(self, preloaded: tuple[str, ...], **options: Any) -> None:
            super().__init__(**options)
            self.preloaded = frozenset(preloaded)

        async def run(
            self,
            flow_run: FlowRun,
            configuration: ProcessJobConfiguration,
            task_status: anyio.abc.TaskStatus[int] | None = None,
        ) -> ProcessWorkerResult:
            entrypoint = await self._entrypoint(flow_run)
            if entrypoint is None:
                return await super().run(flow_run, configuration, task_status)

            async def resolve_flow(_: FlowRun) -> Flow[..., Any]:
                return _flow(entrypoint)

            env = {key: value for key, value in configuration.env.items() if value is not None}
            async with FlowRunExecutorContext() as context:
                starter = ForkedFlowStarter(entrypoint, env, context.control_channel)
                executor = context.create_executor(
                    flow_run, starter, resolve_flow=resolve_flow, propose_submitting=False
                )
                execution = None

                async def execute(*, task_status: anyio.abc.TaskStatus[ProcessHandle]) -> None:
                    nonlocal execution
                    execution = await executor.submit(task_status=task_status)

                async with anyio.create_task_group() as group:
                    handle = await group.start(execute)
                    if task_status is not None and handle.pid is not None:
                        task_status.started(handle.pid)
            if execution is None or execution.status_code is None:
                raise RuntimeError(f"flow run {flow_run.id} ({entrypoint}) did not start in a fork of the worker")
            return ProcessWorkerResult(status_code=execution.status_code, identifier=str(execution.handle.pid))

        async def _entrypoint(self, flow_run: FlowRun) -> str | None:
            """The flow run's `module:flow` when its module is preloaded, else None."""
            if flow_run.deployment_id is None:
                return None
            # Read each time: a redeploy may point the same deployment at another entrypoint.
            entrypoint = (await self.client.read_deployment(flow_run.deployment_id)).entrypoint or ""
            module, _, attribute = entrypoint.partition(":")
            return entrypoint if attribute and module in self.preloaded else None


def start_fork_server(modules: tuple[str, ...], libraries: tuple[str, ...] = ()) -> None:
    """Start the fork server of this worker's flow runs, once `modules` (the flows) and `libraries` (what their runs
    import later; one not installed, an extra left out, is skipped) are imported. Call it before the worker starts
    a thread or an event loop: the fork server is then a fork of this process, and pays none of those imports again
    (1.5 to 2 s of a machine's one core, while its services start). Where this process already runs a thread, the
    standard library's fork server is started instead: a new interpreter that imports them itself."""
    for module in modules:
        importlib.import_module(module)
    for library in libraries:
        with suppress(ImportError):
            importlib.import_module(library)
    if not _can_fork_here():
        # "__main__" (this command's script): each child would import it again otherwise, 0.1 s on one core.
        _forks.set_forkserver_preload(["__main__", *modules, *libraries])
        forkserver.ensure_running()
        return
    _fork_server_from_here()


_FORKSERVER_STATE = {"_forkserver_address", "_forkserver_alive_fd", "_forkserver_pid"}
"""Where the standard library's fork server keeps its process (Python 3.8 to 3.13): set here for one forked from this
process, so the `forkserver` context's processes (`ForkedFlowStarter`) start from it."""


def _can_fork_here() -> bool:
    """A fork server forked from here needs a process with no other thread yet, and the fork server of Python 3.8 to
    3.13 (3.14's authenticates its clients)."""
    known = vars(forkserver._forkserver).keys() >= _FORKSERVER_STATE
    return threading.active_count() == 1 and sys.version_info < (3, 14) and known


def _fork_server_from_here() -> None:
    """As `multiprocessing.forkserver.ForkServer.ensure_running`, with a fork of this process in place of a new
    interpreter: the child runs the standard library's fork server loop, which this process's children reach through
    its socket; it ends once this process and every child it started have (they hold its "alive" pipe)."""
    resource_tracker.ensure_running()
    with socket.socket(socket.AF_UNIX) as listener:
        address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]
        listener.bind(address)
        os.chmod(address, 0o600)
        listener.listen()
        alive_r, alive_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(alive_w)
            try:
                forkserver.main(listener.fileno(), alive_r, [])
            except SystemExit:  # the loop's own end: no client is left
                os._exit(0)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        os.close(alive_r)
    server: Any = forkserver._forkserver
    server._forkserver_address, server._forkserver_alive_fd, server._forkserver_pid = address, alive_w, pid


async def serve(pool: str, queues: list[str] | None, name: str | None, modules: tuple[str, ...],
                limit: int | None = None, with_healthcheck: bool = False) -> None:  # fmt: skip
    """Poll `queues` of `pool` (all its queues when None) as worker `name` (Prefect makes one up when None), and at
    once when a flow run is scheduled on them (flows.worker_wakeup), running up to `limit` flow runs at once, until
    stopped; the runs of `modules`' flows start in forks of the fork server (`start_fork_server`, called first)."""
    setup_signal_handlers_worker(os.getpid(), f"the worker {name or pool}", print)
    worker = ForkingProcessWorker(
        modules, work_pool_name=pool, work_queues=queues, name=name, limit=limit, create_pool_if_not_found=False
    )
    async with anyio.create_task_group() as group:
        group.start_soon(poll_when_scheduled, worker.get_and_submit_flow_runs, pool, queues)
        await worker.start(with_healthcheck=with_healthcheck)
        group.cancel_scope.cancel()
