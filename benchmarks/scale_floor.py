"""The floor under benchmarks/scale.py: the same N runs' own work with no orchestrator at all, on this host.

Needs the engine and the images (`bash scripts/engine.sh start`, `uv run python -m infra.images build`); then:

    uv run python benchmarks/scale_floor.py [--counts 1,2,4,8] [--duration 10]

Each of N threads does, at once, what one run of scale.py has its machines do, straight on the Docker target's
backend: create the machines and start the services (time to healthy); run the load's steps, the same commands
(`stroppy_domain.load.load_steps`: pgbench's initialisation, the database's facts, the timed pgbench), in the runner's
container with `docker exec`; then destroy the machines. Its overhead is measured as scale.py measures a run's: wall
time minus time to healthy minus the load's duration. No Prefect, no agent, no flow: what is left is what any
orchestrator pays at that concurrency on this host before its own work. scale.py's figures minus these are the
orchestration's share (which includes the second the product's runner samples the idle host before its measured
step). Subnets come from 10.221.0.0/16, computed offline; runs are named `floor-*`.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from functools import partial

import docker
from docker.models.containers import Container
from scale import med_p95, scale_test, steps_line  # the sibling benchmark: the same test, the same statistics

from infra.images import ImageSet
from infra.targets.base import RunSpec, TargetError
from infra.targets.docker import DockerTarget, DockerTargetSettings
from infra.targets.docker.backend import machine_container_name
from stroppy_domain.load import load_steps
from stroppy_domain.model import Target
from stroppy_domain.placement import plan_run
from stroppy_domain.services import generate_password
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.validation import validate_suite

LOAD_MARGIN_S = 30
WORKDIR = "/tmp/floor-load"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,2,4,8", help="the batch sizes, comma-separated")
    parser.add_argument("--duration", type=int, default=10, help="load duration in seconds")
    args = parser.parse_args()
    images = ImageSet.for_checkout()
    settings = PlannerSettings(images=images.catalogue())
    print(f"{'N':>3} {'overhead med/p95 s':>19} {'healthy med/p95 s':>18}  steps, median / max s")
    for count in (int(value) for value in args.counts.split(",")):
        stamp = int(time.time())
        with ThreadPoolExecutor(max_workers=count) as pool:
            timings = list(pool.map(partial(_run, stamp=stamp, duration=args.duration, images=images,
                                            settings=settings), range(count)))  # fmt: skip
        overheads = [t["wall"] - t["healthy"] - args.duration for t in timings]
        steps = {name: [t[name] for t in timings] for name in timings[0] if name != "wall"}
        print(f"{count:>3} {med_p95(overheads):>19} {med_p95(steps['healthy']):>18}  {steps_line(steps)}")


def _run(index: int, *, stamp: int, duration: int, images: ImageSet, settings: PlannerSettings) -> dict[str, float]:
    test = validate_suite({"name": "floor", "tests": [scale_test(index, duration)]}).tests[0]
    plan = plan_run(test, Target.DOCKER, f"10.221.{index}.0/24", settings, generate_password)
    run = RunSpec(run_id=f"floor-{index}-{stamp}", plan=plan, expires_at=datetime.now(UTC) + timedelta(minutes=30))
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with DockerTarget(DockerTargetSettings(machine_image=images.edge), progress=lambda _: None) as target:
        try:
            target.create_machines(run)
            timings["create"] = time.perf_counter() - started
            target.start_services(run)
            timings["healthy"] = time.perf_counter() - started - timings["create"]
            mark = time.perf_counter()
            with closing(docker.from_env(timeout=120)) as engine:
                runner = engine.containers.get(machine_container_name(run.run_id, plan.runner.name))
                _exec(runner, run.run_id, "mkdir", ["mkdir", "-p", WORKDIR], {}, workdir="/")
                for step in load_steps(test, plan.connection, LOAD_MARGIN_S):
                    bounded = ["timeout", str(step.timeout_s), *step.argv]
                    _exec(runner, run.run_id, step.name, bounded, step.env, workdir=WORKDIR)
            timings["load steps"] = time.perf_counter() - mark
        finally:
            mark = time.perf_counter()
            target.destroy(run.run_id)
            timings["destroy"] = time.perf_counter() - mark
    timings["wall"] = time.perf_counter() - started
    return timings


def _exec(container: Container, run_id: str, name: str, argv: list[str], env: dict[str, str], workdir: str) -> None:
    """Run a command in the container; a non-zero exit ends the benchmark with its last output."""
    exit_code, output = container.exec_run(argv, environment=env, workdir=workdir)
    if exit_code != 0:
        raise SystemExit(f"{run_id}: {name} exited {exit_code}: {output.decode(errors='replace')[-500:]}")


if __name__ == "__main__":
    try:
        main()
    except TargetError as error:
        raise SystemExit(f"benchmark failed: {error}") from None
