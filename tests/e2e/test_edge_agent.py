"""The edge agent on the real Prefect server: an edge flow runs in a child of the agent's fork server (a fork of the
agent itself, no new interpreter), answers through its reply, and one past its bound is cancelled with its load's
processes killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

from flows.edge import LoadOutcome, LoadRequest
from infra.edge_queues import EdgeFlowTimedOut, create_queues, delete_queues, dispatch, wait_until_ready
from infra.edge_replies import ReplyTo, read_reply
from stroppy_domain.load import LoadStep
from tests.conftest import free_port

pytestmark = pytest.mark.e2e

AGENT_START_TIMEOUT_S = 90
AGENT_STOP_TIMEOUT_S = 30
CANCEL_TIMEOUT_S = 60
"""The worker notices a CANCELLING run within its polls (a second each) and kills it; this bounds that, and more."""
# Prints the command line of the flow process's parent, then that parent's own parent: the load step's parent is the
# flow run's process.
ANCESTRY = (
    "import os\n"
    "def parent(pid): return int(open(f'/proc/{pid}/status').read().split('PPid:')[1].split()[0])\n"
    "server = parent(os.getppid())\n"
    "print('server', open(f'/proc/{server}/cmdline').read().replace(chr(0), ' '))\n"
    "print('agent', parent(server))\n"
)
SLEEP_MARK = "271.828"
"""A sleep of this many seconds is the cancelled load's process, found by its command line."""


@contextmanager
def edge_agent(queue: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A machine's agent as `stroppy-flows edge-agent` runs it, on this host, polling its own new queue."""
    create_queues([queue])
    with log.open("wb") as output:
        command = [
            sys.executable,
            "-m",
            "flows.cli",
            "edge-agent",
            "--queue",
            queue,
            "--health-port",
            str(free_port()),
        ]
        agent = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_ready([queue], AGENT_START_TIMEOUT_S)
        yield agent
    finally:
        os.killpg(agent.pid, signal.SIGTERM)
        try:
            agent.wait(timeout=AGENT_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(agent.pid, signal.SIGKILL)
            agent.wait(timeout=AGENT_STOP_TIMEOUT_S)
        delete_queues([queue])


def _load(tmp_path: Path, run_id: str, step: LoadStep) -> LoadRequest:
    reply_to = ReplyTo(run_id=run_id, directory=str(tmp_path / "replies"))
    return LoadRequest(run_id=run_id, reply_to=reply_to, steps=[step], output_dir=str(tmp_path / "load"))


def _sleeping() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == f"sleep\0{SLEEP_MARK}\0".encode():
                found.append(int(entry.name))
        except OSError:  # the process ended between the listing and the read
            continue
    return found


async def _states(tag: str) -> list[str]:
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
    return sorted(run.state.type.value for run in runs if run.state is not None)


@pytest.mark.timeout(AGENT_START_TIMEOUT_S + AGENT_STOP_TIMEOUT_S * 2 + CANCEL_TIMEOUT_S + 120)
def test_an_edge_flow_runs_in_a_fork_of_the_agent_and_one_past_its_bound_is_cancelled(tmp_path: Path) -> None:
    queue = f"agent-{uuid.uuid4().hex[:8]}"
    with edge_agent(queue, tmp_path / "agent.log") as agent:
        probe = LoadStep(name="ancestry", argv=[sys.executable, "-c", ANCESTRY], timeout_s=30)
        request = _load(tmp_path, "run-agent-probe", probe)
        flow_run_id = dispatch("run-load/edge", {"request": request.model_dump(mode="json")}, queue, 120, tags=[queue])
        outcome = read_reply(request.reply_to, flow_run_id, LoadOutcome)
        (step,) = outcome.steps
        assert step.exit_code == 0, step.output_tail
        printed = dict(line.split(" ", 1) for line in step.output_tail if line.startswith(("server ", "agent ")))
        # The fork server is a fork of the agent, taken once it imported the flows: no new interpreter.
        agent_command = Path(f"/proc/{agent.pid}/cmdline").read_text().replace("\0", " ").strip()
        assert printed["server"].strip() == agent_command, (step.output_tail, (tmp_path / "agent.log").read_text())
        assert printed["agent"] == str(agent.pid)

        sleeper = LoadStep(name="sleeper", argv=["sleep", SLEEP_MARK], timeout_s=600)
        request = _load(tmp_path, "run-agent-sleeper", sleeper)
        with pytest.raises(EdgeFlowTimedOut, match=f"on {queue} did not finish within 8 s"):
            dispatch("run-load/edge", {"request": request.model_dump(mode="json")}, queue, 8, tags=[queue])
        deadline = time.monotonic() + CANCEL_TIMEOUT_S
        while _sleeping() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _sleeping() == [], (tmp_path / "agent.log").read_text()
        while asyncio.run(_states(queue)) != ["CANCELLED", "COMPLETED"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert asyncio.run(_states(queue)) == ["CANCELLED", "COMPLETED"]
        assert agent.poll() is None, "the agent outlives a cancelled flow"
