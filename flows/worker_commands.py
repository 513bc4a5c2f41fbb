"""The commands that run a pool's worker in this process until stopped (flows.forked_worker): `edge-agent` on a
machine, `master-worker` beside the Prefect server. Prefect loads only when one runs, after its settings are set."""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from flows.errors import EXIT_OK


def add_worker_commands(commands: Any) -> None:
    """The commands that run a pool's worker: `edge-agent` on a machine, `master-worker` beside the Prefect server."""
    agent = commands.add_parser("edge-agent", help="run a machine's edge agent: a Prefect worker for its own queue")
    agent.add_argument("--queue", required=True, help="the machine's work queue")
    agent.add_argument("--name", help="worker name (default: the queue)")
    agent.add_argument("--pool", default="stroppy-edge", help="work pool (default: stroppy-edge)")
    agent.add_argument("--health-port", type=int, default=8080, help="port of the /health endpoint (default: 8080)")
    agent.set_defaults(handler=_edge_agent)

    worker = commands.add_parser("master-worker", help="run a worker of the master's pool: it starts suites and runs")
    worker.add_argument("--name", help="worker name, unique among the pool's workers (default: Prefect's)")
    worker.add_argument("--pool", default="stroppy-master", help="work pool (default: stroppy-master)")
    worker.add_argument("--limit", type=int, help="flow runs at once (default: no limit)")
    worker.set_defaults(handler=_master_worker)


def _edge_agent(args: argparse.Namespace) -> int:
    """Run the machine's agent in this process until stopped: a worker polling the machine's own queue, with a health
    endpoint (flows.forked_worker)."""
    # Prefect reads its settings from the environment when it is first imported, below.
    os.environ.update(
        {
            # infra.edge_queues.AGENT_POLL_S: the agent's sign of life; a flow scheduled on its queue wakes it at
            # once (flows.worker_wakeup).
            "PREFECT_WORKER_QUERY_SECONDS": os.environ.get("PREFECT_WORKER_QUERY_SECONDS", "1"),
            # Orchestrators probe the agent's health from outside its machine.
            "PREFECT_WORKER_WEBSERVER_HOST": "0.0.0.0",
            "PREFECT_WORKER_WEBSERVER_PORT": str(args.health_port),
            # The deployments' pull step runs other flows from this installation unless told otherwise.
            "STROPPY_FLOWS_DIR": os.environ.get("STROPPY_FLOWS_DIR", str(Path(__file__).resolve().parent.parent)),
        }
    )

    from flows.forked_worker import (  # noqa: PLC0415 - Prefect loads after its settings
        EDGE_FLOW_MODULES,
        serve,
        start_fork_server,
    )

    # Before the worker starts a thread: the fork server is then a fork of this process, with the flows imported.
    start_fork_server(EDGE_FLOW_MODULES)
    _until_stopped(
        partial(serve, args.pool, [args.queue], args.name or args.queue, EDGE_FLOW_MODULES, with_healthcheck=True)
    )
    return EXIT_OK


def _master_worker(args: argparse.Namespace) -> int:
    """Run a worker of the master's pool in this process until stopped (flows.forked_worker)."""
    from flows.forked_worker import (  # noqa: PLC0415 - Prefect loads only in a worker
        MASTER_FLOW_MODULES,
        MASTER_RUN_LIBRARIES,
        serve,
        start_fork_server,
    )

    # The control plane starts its workers before it deploys the flows: these imports are done by the first suite.
    start_fork_server(MASTER_FLOW_MODULES, MASTER_RUN_LIBRARIES)
    _until_stopped(partial(serve, args.pool, None, args.name, MASTER_FLOW_MODULES, limit=args.limit))
    return EXIT_OK


def _until_stopped(serve: Callable[[], Awaitable[None]]) -> None:
    """Run a worker until SIGTERM or SIGINT stops it. Prefect's worker answers SIGTERM by sending itself SIGINT, and
    a process a non-interactive shell starts in the background inherits SIGINT ignored (scripts/control-plane.sh's
    workers): such a worker never stopped, and the stack's stop waited out its grace before killing it. With SIGINT's
    default handler, the event loop cancels the worker, which stops polling and exits (its flow runs go on)."""
    import anyio  # noqa: PLC0415

    signal.signal(signal.SIGINT, signal.default_int_handler)
    anyio.run(serve)
