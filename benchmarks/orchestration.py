"""Per-step timings of a test run, and the orchestration overhead, median of N runs.

Needs the whole stack (`bash scripts/services.sh start; bash scripts/engine.sh start;
uv run python -m infra.images build; bash scripts/control-plane.sh start`), then:

    PREFECT_API_URL=http://127.0.0.1:4200/api uv run python benchmarks/orchestration.py [--runs 3] [--duration 10]

Each run is `stroppy-test-run/run` with pgbench (TPC-B, scale 1) on a single instance. Overhead is the run's wall
time (from the server's start and end times) minus its time to healthy services (the start_services step) minus the
load's duration: what the orchestration itself costs. Each edge flow the run dispatched is broken down from its
states on the server: queued (submitted until its machine's agent took it), process start (taken until running: the
agent forking a child that loads the flow run), and running (its last start until its end); and the master task
around it: before it (from the task's start until the flow run exists) and after it (from its end until the task's
end). The load's flow is held (submitted once the machines exist, paused until the load step resumes it): for it,
the time it waited paused, and the time from its master task's start until it runs again.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import datetime
from uuid import UUID

from infra.local_control_plane import use_local_auth

use_local_auth()  # the local API's auth string, before Prefect reads its settings

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterTags
from prefect.deployments import run_deployment

from flows.reporting import RunResult
from flows.run import run_id_for
from infra.edge_queues import edge_tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="load duration in seconds")
    args = parser.parse_args()
    test = {
        "name": "bench-orchestration",
        "stroppy": {"driver": "pgbench", "workload": "tpcb", "scale": 1, "duration": args.duration, "clients": 2},
        "runner_hardware": {"cores": 1, "memory_gb": 2, "disk_gb": 10},  # 1 + 1 cores: exclusive on 2 cores
        "database": {"instance": {"hardware": {"cores": 1, "memory_gb": 1, "disk_gb": 10}}},
    }
    steps: dict[str, list[float]] = {}
    walls, observed, overheads, dispatches = [], [], [], []
    for _ in range(args.runs):
        submitted = time.monotonic()
        flow_run = run_deployment("stroppy-test-run/run", parameters={"test": test}, timeout=900, poll_interval=1)
        observed.append(time.monotonic() - submitted)
        if not flow_run.state.is_completed():
            raise SystemExit(f"run {flow_run.name} ended {flow_run.state.name}: {flow_run.state.message}")
        result: RunResult = flow_run.state.result()
        wall = (flow_run.end_time - flow_run.start_time).total_seconds()
        walls.append(wall)
        for name, seconds in result.step_seconds.items():
            steps.setdefault(name, []).append(seconds)
        steps.setdefault("teardown and flow exit", []).append(wall - sum(result.step_seconds.values()))
        overheads.append(wall - result.step_seconds["start_services"] - args.duration)
        phases = asyncio.run(edge_flow_phases(flow_run.id))
        for name, seconds in phases.items():
            steps.setdefault(f"  {name}", []).append(seconds)
        dispatches.append(load_dispatch_s(phases))
    print(f"{args.runs} run(s), pgbench on a single instance, {args.duration} s of load each")
    for name, values in steps.items():
        print(f"  {name:24s} median {statistics.median(values):6.2f} s  {[round(v, 2) for v in values]}")
    print(f"  {'run wall time':24s} median {statistics.median(walls):6.2f} s  {[round(v, 1) for v in walls]}")
    print(f"  {'submit to final state':24s} median {statistics.median(observed):6.2f} s")
    print(f"  {'edge dispatch of the load':24s} median {statistics.median(dispatches):6.2f} s  "
          f"{[round(v, 2) for v in dispatches]}")  # fmt: skip
    print(f"orchestration overhead (wall - time to healthy - load): median {statistics.median(overheads):.1f} s "
          f"{[round(v, 1) for v in overheads]}")  # fmt: skip


DISPATCHING_TASKS = {"run-load": "run_load_on_runner", "install-stroppy": "install_stroppy_on_runner"}
"""The master's task that dispatches each edge flow and reads its answer."""


async def edge_flow_phases(flow_run_id: UUID) -> dict[str, float]:
    """Each edge flow of the run: seconds queued, starting its process and running, from its states' timestamps; and
    the seconds its master task spent before it was created and after it completed (dispatch, polling, the answer)."""
    phases: dict[str, float] = {}
    async with get_client() as client:
        tag = edge_tags(run_id_for(flow_run_id))[-1]
        children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
        tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        by_name = {task.name.rsplit("-", 1)[0]: task for task in tasks}  # a task run is named `<task>-<suffix>`
        for child in children:
            flow = await client.read_flow(child.flow_id)
            history = sorted(await client.read_flow_run_states(child.id), key=lambda state: state.timestamp)
            first: dict[str, datetime] = {}
            last: dict[str, datetime] = {}
            for state in history:
                first.setdefault(state.type.value, state.timestamp)
                last[state.type.value] = state.timestamp
            if not {"SCHEDULED", "PENDING", "RUNNING", "COMPLETED"} <= first.keys():
                continue
            spans = {
                "queued": (first["SCHEDULED"], first["PENDING"]), "process start": (first["PENDING"], first["RUNNING"]),
                "running": (last["RUNNING"], first["COMPLETED"]),
            }  # fmt: skip
            task = by_name.get(DISPATCHING_TASKS.get(flow.name, ""))
            if task is not None and task.start_time is not None and task.end_time is not None:
                if "PAUSED" in first:  # held: submitted with the machines, resumed by its task
                    spans["held, paused"] = (first["PAUSED"], last["RUNNING"])
                    spans["master task start to running"] = (task.start_time, last["RUNNING"])
                else:
                    spans["master before it"] = (task.start_time, first["SCHEDULED"])
                spans["master after it"] = (first["COMPLETED"], task.end_time)
            for phase, (begin, end) in spans.items():
                key = f"edge {flow.name}: {phase}"
                phases[key] = phases.get(key, 0.0) + (end - begin).total_seconds()
    return phases


def load_dispatch_s(phases: dict[str, float]) -> float:
    """From the load step's start until the load runs on the runner: until its held flow runs again, or (a flow
    submitted by the step) the step's time before it, its time queued and its process start."""
    held = phases.get("edge run-load: master task start to running")
    if held is not None:
        return held
    return sum(phases[f"edge run-load: {phase}"] for phase in ("master before it", "queued", "process start"))


if __name__ == "__main__":
    main()
