"""How faithful the system's numbers are: pgbench through the system versus by hand, and tests together versus alone.

Needs the whole stack (`bash scripts/stack.sh start`), then:

    PREFECT_API_URL=http://127.0.0.1:4200/api uv run python benchmarks/fidelity.py [--rounds 3] [--part both]

`--part load`: each round brings a single instance up with the run flow's own steps (capacity, subnet, plan,
machines, agents, services), runs pgbench through the system (the `run-load` edge flow on the runner's agent,
exactly as a run does), then, right after, the same pgbench commands by hand (`docker exec` in the same runner
container, against the same database, same scale, clients and duration), and tears everything down. Prints each
TPS and the system's difference from by hand, median of the rounds.

`--part suite`: each round submits `examples/pgbench.yaml` through `stroppy-test-suite/suite`, then each of its tests
alone as a suite of one, and prints each test's TPS together and alone, and whether its load overlapped the other's
(on a host too small for both, isolation serialises them and this says so).
"""

from __future__ import annotations

import argparse
import re
import statistics
import uuid
from datetime import datetime
from pathlib import Path

from infra.local_control_plane import use_local_auth

use_local_auth()  # the local API's auth string, before Prefect reads its settings

import docker
import yaml
from prefect import flow
from prefect.deployments import run_deployment

from flows.capacity import take_cpus
from flows.reporting import RunResult
from flows.run import (
    create_machines,
    plan_topology,
    reserve_subnet,
    start_services,
    validate_and_open_ledger,
    wait_for_agents,
)
from flows.runner_flows import load_request, run_load_on_runner, runner_output_dir
from flows.suite import SuiteResult
from flows.teardown import tear_down
from infra.settings import OrchestrationSettings
from infra.targets import target_module
from infra.targets.docker.backend import machine_container_name
from stroppy_domain.bounds import run_bounds
from stroppy_domain.load import load_steps
from stroppy_domain.model import BenchmarkTest, Target
from stroppy_domain.placement import lay_out
from stroppy_domain.validation import validate_suite

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pgbench.yaml"
TPS_LINE = re.compile(r"^tps = ([0-9.]+)")


def tps_of(lines: list[str]) -> float:
    """pgbench's end-of-run `tps = N (without initial connection time)`."""
    for line in lines:
        match = TPS_LINE.match(line)
        if match:
            return float(match.group(1))
    raise SystemExit("pgbench printed no tps line:\n" + "\n".join(lines[-20:]))


def single_instance(duration: int, clients: int, scale: int) -> BenchmarkTest:
    hardware = {"cores": 1, "memory_gb": 2, "disk_gb": 10}
    suite = {
        "name": "fidelity",
        "tests": [
            {
                "name": "fidelity",
                "stroppy": {"driver": "pgbench", "workload": "tpcb", "scale": scale, "clients": clients,
                            "duration": duration},
                "runner_hardware": hardware,
                "database": {"instance": {"hardware": hardware}},
            }
        ],
    }  # fmt: skip
    return validate_suite(suite).tests[0]


@flow(name="fidelity-round", persist_result=False)
def load_round(test: BenchmarkTest) -> tuple[float, float, dict[str, str]]:
    """One round of `--part load`: (TPS through the system, TPS by hand, the machines' CPUs)."""
    settings = OrchestrationSettings()
    target = Target.DOCKER
    run_id = f"fid-{uuid.uuid4().hex[:10]}"
    bounds = run_bounds(test, target_module(target).bounds(settings), settings.install_timeout_s, 30)
    try:
        host = validate_and_open_ledger.fn(test, target, run_id, str(uuid.uuid4()), settings)
        grant = take_cpus.fn(run_id, test, target, host, bounds.capacity_wait_s, settings)
        subnet = reserve_subnet.fn(run_id, target, len(lay_out(test).machines), settings)
        run = plan_topology.fn(test, target, subnet, run_id, grant, settings)
        queues = create_machines.fn(run, target, settings)
        wait_for_agents.fn(queues, bounds.agents_ready_s)
        start_services.fn(run, target, settings)
        steps = load_steps(test, run.plan.connection, 30, "", runner_output_dir(run, settings))
        outcome = run_load_on_runner.fn(run, load_request(run, steps, settings), bounds.load_dispatch_s, settings)
        system = tps_of(outcome.steps[-1].output_tail)
        by_hand = settings.results_dir / run_id / "by-hand"
        by_hand.mkdir(parents=True, exist_ok=True)
        engine = docker.from_env(timeout=120)
        try:
            runner = engine.containers.get(machine_container_name(run_id, run.plan.runner.name))
            output = ""
            for step in load_steps(test, run.plan.connection, 30, "", str(by_hand)):
                result = runner.exec_run(step.argv, environment=step.env, workdir=str(by_hand))
                output = result.output.decode(errors="replace")
                if result.exit_code != 0:
                    raise SystemExit(f"{step.name} by hand exited {result.exit_code}:\n{output[-2000:]}")
        finally:
            engine.close()
        return system, tps_of(output.splitlines()), dict(run.cpusets)
    finally:
        tear_down(run_id, settings)


def part_load(rounds: int, duration: int, clients: int, scale: int) -> None:
    test = single_instance(duration, clients, scale)
    systems, hands, gaps = [], [], []
    for index in range(rounds):
        system, by_hand, cpus = load_round(test)
        gap = (system - by_hand) / by_hand * 100
        systems.append(system)
        hands.append(by_hand)
        gaps.append(gap)
        print(f"round {index + 1}: through the system {system:.1f} tps, by hand {by_hand:.1f} tps ({gap:+.1f}%), "
              f"CPUs {cpus}", flush=True)  # fmt: skip
    print(f"pgbench tpcb scale {scale}, {clients} clients, {duration} s, single instance (1 core + 1-core runner):")
    print(f"  through the system median {statistics.median(systems):.1f} tps {[round(v, 1) for v in systems]}")
    print(f"  by hand            median {statistics.median(hands):.1f} tps {[round(v, 1) for v in hands]}")
    print(f"  difference         median {statistics.median(gaps):+.1f}% {[round(v, 1) for v in gaps]}")


def suite_results(suite: dict) -> dict[str, RunResult]:
    flow_run = run_deployment("stroppy-test-suite/suite", parameters={"suite": suite}, timeout=3600, poll_interval=2)
    result: SuiteResult = flow_run.state.result(raise_on_failure=False)
    if not isinstance(result, SuiteResult):
        raise SystemExit(f"suite {suite['name']} ended {flow_run.state.name}: {flow_run.state.message}")
    runs = {outcome.test_name: outcome.result for outcome in result.outcomes if outcome.result is not None}
    missing = [outcome.test_name for outcome in result.outcomes if outcome.result is None]
    if missing:
        raise SystemExit(f"suite {suite['name']}: no result for {missing}: {result.outcomes}")
    return runs


def load_window(run: RunResult) -> tuple[datetime, datetime]:
    phase = next(phase for phase in run.phases if phase.name == "run_load")
    return phase.started_at, phase.ended_at


def tps(run: RunResult) -> float:
    return tps_of(next(step for step in run.load.steps if step.name == "pgbench-run").output_tail)


def part_suite(rounds: int) -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    names = [test["name"] for test in example["tests"]]
    together: dict[str, list[float]] = {name: [] for name in names}
    alone: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        runs = suite_results(example)
        (a_start, a_end), (b_start, b_end) = (load_window(runs[name]) for name in names)
        overlap = max(0.0, (min(a_end, b_end) - max(a_start, b_start)).total_seconds())
        waited = {name: round(runs[name].step_seconds.get("capacity", 0), 1) for name in names}
        for name in names:
            together[name].append(tps(runs[name]))
            single = example | {"name": f"{example['name']}-alone", "tests": [t for t in example["tests"]
                                                                               if t["name"] == name]}  # fmt: skip
            alone[name].append(tps(suite_results(single)[name]))
        print(f"round {index + 1}: loads overlapped {overlap:.0f} s; waited for capacity {waited}; "
              + ", ".join(f"{n} {together[n][-1]:.1f} tps beside, {alone[n][-1]:.1f} alone" for n in names),
              flush=True)  # fmt: skip
    print(f"{EXAMPLE.name}, its tests run together and alone:")
    for name in names:
        beside, single = statistics.median(together[name]), statistics.median(alone[name])
        print(f"  {name:20s} beside median {beside:8.1f} tps, alone median {single:8.1f} tps "
              f"({(beside - single) / single * 100:+.1f}%)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--part", choices=["load", "suite", "both"], default="both")
    parser.add_argument("--duration", type=int, default=30, help="pgbench duration of --part load, in seconds")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--scale", type=int, default=5)
    args = parser.parse_args()
    if args.part in ("load", "both"):
        part_load(args.rounds, args.duration, args.clients, args.scale)
    if args.part in ("suite", "both"):
        part_suite(args.rounds)


if __name__ == "__main__":
    main()
