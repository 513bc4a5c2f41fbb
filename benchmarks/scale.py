"""How the control plane holds up under concurrent runs: N single-instance runs submitted at once, N = 1, 2, 4, 8.

Needs the whole stack as a team runs it (the Prefect server on PostgreSQL, two master workers):

    STROPPY_PREFECT_DATABASE=postgresql STROPPY_MASTER_WORKERS=2 bash scripts/stack.sh start
    uv run python benchmarks/scale.py [--counts 1,2,4,8] [--duration 10]

Each run is `stroppy-test-run/run`: pgbench (TPC-B, scale 1) on a single instance, `isolation: shared` so that eight
fit a small host. Per N it prints the runs completed; the median and p95 overhead (a run's wall time minus its time
to healthy services minus the load, as benchmarks/orchestration.py); the median and p95 edge dispatch (from the
run's load step's start until its load's edge flow runs); and the control plane's CPU (busy cores, averaged over
the batch) and peak memory: the server and its database, and the master workers with the flow-run processes they
started; under it, each step's median and maximum over the batch (the run's steps, then its teardown and the flow's
exit). After each batch it checks that nothing is left: no container of the runs, no slot of the target's limit
held. benchmarks/scale_floor.py measures the same runs' own work with no orchestrator.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from contextlib import closing
from pathlib import Path
from uuid import UUID

from infra.local_control_plane import use_local_auth

use_local_auth()  # the local API's auth string, before Prefect reads its settings

import docker
from orchestration import edge_flow_phases, load_dispatch_s  # the sibling benchmark, by its breakdown
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from flows.reporting import RunResult
from flows.run import run_id_for
from infra.target_slots import limit_name
from infra.targets.base import LABEL_RUN_ID
from stroppy_domain.model import Target

STATE = Path(__file__).resolve().parent.parent / ".state"
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
BATCH_WITHIN_S = 1800


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,2,4,8", help="the batch sizes, comma-separated")
    parser.add_argument("--duration", type=int, default=10, help="load duration in seconds")
    args = parser.parse_args()
    print(f"{'N':>3} {'completed':>9} {'overhead med/p95 s':>19} {'dispatch med/p95 s':>19} "
          f"{'server+db cpu/mem':>20} {'workers+runs cpu/mem':>22}")  # fmt: skip
    for count in (int(value) for value in args.counts.split(",")):
        _batch(count, args.duration)


def scale_test(index: int, duration: int) -> dict[str, object]:
    hardware = {"cores": 1, "memory_gb": 1, "disk_gb": 10}
    return {
        "name": f"bench-scale-{index}",
        "isolation": "shared",
        "stroppy": {"driver": "pgbench", "workload": "tpcb", "scale": 1, "duration": duration, "clients": 2},
        "runner_hardware": hardware,
        "database": {"instance": {"hardware": hardware}},
    }


def _batch(count: int, duration: int) -> None:
    sampler = ControlPlaneSampler().start()
    submitted = [
        run_deployment("stroppy-test-run/run", parameters={"test": scale_test(index, duration)}, timeout=0)
        for index in range(count)
    ]
    finished = asyncio.run(_wait_final([flow_run.id for flow_run in submitted]))
    usage = sampler.stop()
    overheads, dispatches = [], []
    steps: dict[str, list[float]] = {}
    for flow_run in finished:
        if not flow_run.state or not flow_run.state.is_completed():
            continue
        result: RunResult = flow_run.state.result()
        wall = (flow_run.end_time - flow_run.start_time).total_seconds()
        overheads.append(wall - result.step_seconds["start_services"] - duration)
        dispatches.append(asyncio.run(_load_dispatch_s(flow_run.id)))
        for name, seconds in result.step_seconds.items():
            steps.setdefault(name, []).append(seconds)
        steps.setdefault("teardown and flow exit", []).append(wall - sum(result.step_seconds.values()))
    completed = len(overheads)
    print(f"{count:>3} {completed:>4} of {count:<2} {med_p95(overheads):>19} {med_p95(dispatches):>19} "
          f"{usage['server']:>20} {usage['workers']:>22}", flush=True)  # fmt: skip
    print(f"    steps, median / max s: {steps_line(steps)}", flush=True)
    _check_nothing_left([run_id_for(flow_run.id) for flow_run in finished])


def steps_line(steps: dict[str, list[float]]) -> str:
    """Each step's median and maximum over the batch's runs, in seconds."""
    return ", ".join(f"{name} {statistics.median(values):.1f}/{max(values):.1f}" for name, values in steps.items())


def med_p95(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(values):.1f} / {p95:.1f}"


async def _wait_final(flow_run_ids: list[UUID]) -> list[FlowRun]:
    deadline = time.monotonic() + BATCH_WITHIN_S
    async with get_client() as client:
        while True:
            runs = [await client.read_flow_run(flow_run_id) for flow_run_id in flow_run_ids]
            if all(run.state is not None and run.state.is_final() for run in runs):
                return runs
            if time.monotonic() > deadline:
                raise SystemExit(f"runs still going after {BATCH_WITHIN_S} s: {[run.name for run in runs]}")
            await asyncio.sleep(2)


async def _load_dispatch_s(flow_run_id: UUID) -> float:
    """From the run's load step's start until its load runs on the runner (benchmarks/orchestration.py)."""
    return load_dispatch_s(await edge_flow_phases(flow_run_id))


def _check_nothing_left(run_ids: list[str]) -> None:
    with closing(docker.from_env(timeout=60)) as engine:
        left = [c.name for c in engine.containers.list(all=True, filters={"label": LABEL_RUN_ID})
                if c.labels[LABEL_RUN_ID] in run_ids]  # fmt: skip
    with get_client(sync_client=True) as client:
        held = client.read_global_concurrency_limit_by_name(limit_name(Target.DOCKER)).active_slots
    if left or held:
        raise SystemExit(f"left after the batch: containers {left}, {held} slot(s) of {limit_name(Target.DOCKER)}")


class ControlPlaneSampler:
    """CPU and memory of the control plane's processes, sampled every second from /proc: the Prefect server's
    process group and its PostgreSQL, and the master workers' process groups with every flow-run process (each in
    a session of its own, a child of its worker's fork server)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._ticks: dict[str, dict[int, int]] = {"server": {}, "workers": {}}
        self._baseline: dict[int, int] = {}
        self._peak_bytes = {"server": 0, "workers": 0}
        self._started = 0.0

    def start(self) -> ControlPlaneSampler:
        """Count from now: what the processes already running used before is left out."""
        self._take()
        self._baseline = {pid: ticks for part in self._ticks.values() for pid, ticks in part.items()}
        self._peak_bytes = {"server": 0, "workers": 0}
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> dict[str, str]:
        self._stop.set()
        self._thread.join(timeout=10)
        elapsed = time.monotonic() - self._started
        used = {
            part: sum(n - self._baseline.get(pid, 0) for pid, n in ticks.items()) for part, ticks in self._ticks.items()
        }
        return {
            part: f"{used[part] / TICKS_PER_S / elapsed:.2f} cores / {self._peak_bytes[part] / 2**20:.0f} MiB"
            for part in self._ticks
        }

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self._take()

    def _take(self) -> None:
        for part, pids in _control_plane_pids().items():
            resident = 0
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    resident += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
                except (OSError, IndexError, ValueError):
                    continue  # the process ended between the listing and the read
                # utime and stime, fields 14 and 15 of stat (11 and 12 after the command's closing parenthesis).
                self._ticks[part][pid] = int(fields[11]) + int(fields[12])
            self._peak_bytes[part] = max(self._peak_bytes[part], resident)


def _control_plane_pids() -> dict[str, set[int]]:
    """The server's process group, its PostgreSQL and that one's backends; the master workers' process groups and
    every process they started (the flow runs, forked by each worker's fork server into sessions of their own), but
    not the machines' containers, which are the runs' own work."""
    groups = {"server": set(), "workers": set()}
    for pidfile, part in [(STATE / "prefect-server.pid", "server"),
                          *((path, "workers") for path in STATE.glob("master-worker*.pid"))]:  # fmt: skip
        if pidfile.is_file():
            groups[part].add(int(pidfile.read_text()))
    database = STATE / "prefect-db" / "postmaster.pid"
    pids: dict[str, set[int]] = {"server": set(), "workers": set()}
    if database.is_file():
        pids["server"].add(int(database.read_text().split()[0]))
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            # After the command's closing parenthesis: state, parent, process group.
            _, parent_field, pgid_field, *_ = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if b"docker" in (entry / "cgroup").read_bytes():
                continue
        except (OSError, IndexError, ValueError):
            continue
        pid, parent, pgid = int(entry.name), int(parent_field), int(pgid_field)
        children.setdefault(parent, []).append(pid)
        for part, leaders in groups.items():
            if pgid in leaders:
                pids[part].add(pid)
    for found in pids.values():
        pending = list(found)
        while pending:
            for child in children.get(pending.pop(), []):
                if child not in found:
                    found.add(child)
                    pending.append(child)
    return pids


if __name__ == "__main__":
    main()
