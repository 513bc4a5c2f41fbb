"""Time from create to healthy, and destroy time, of topologies on the Docker target (median of N rounds).

Needs the engine and the images (`bash scripts/engine.sh start`, `uv run python -m infra.images build`); then:

    uv run python benchmarks/docker_target.py [--rounds 3]

Topologies: a single instance, and a 3-node Patroni cluster (primary + 2 replicas, etcd on all nodes, PgBouncer
on the primary). Subnets come from 10.220.0.0/16, computed offline; runs are named `bench-*`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from infra.images import ImageSet
from infra.targets.base import RunSpec, TargetError
from infra.targets.docker import DockerTarget, DockerTargetSettings
from stroppy_domain.model import Target
from stroppy_domain.placement import plan_run
from stroppy_domain.services import generate_password
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.validation import validate_suite

HARDWARE = {"cores": 1, "memory_gb": 1, "disk_gb": 10}
TOPOLOGIES = {
    "single instance": {"instance": {"hardware": HARDWARE}},
    "patroni 3 nodes": {
        "cluster": {
            "topology": {"settings": {"patroni": {}}, "master_hardware": HARDWARE, "replica_hardware": HARDWARE,
                         "replicas": 2},
            "addons": {"etcd": {"size": 3, "placement": {"colocate": {"scope": "all_nodes"}}},
                       "pgbouncer": {"placement": {"colocate": {"scope": "master"}}}},
        }
    },
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    images = ImageSet.for_checkout()
    settings = PlannerSettings(images=images.catalogue())
    with DockerTarget(DockerTargetSettings(machine_image=images.edge), progress=lambda _: None) as target:
        for index, (label, database) in enumerate(TOPOLOGIES.items()):
            suite = {
                "name": "bench",
                "tests": [{"name": "bench", "stroppy": {"version": "v5.0.0"}, "database": database}],
            }
            test = validate_suite(suite).tests[0]
            healthy, destroyed = [], []
            for round_number in range(args.rounds):
                run_id = f"bench-{index}-{round_number}-{int(time.time())}"
                plan = plan_run(test, Target.DOCKER, f"10.220.{index}.0/24", settings, generate_password)
                run = RunSpec(run_id=run_id, plan=plan, expires_at=datetime.now(UTC) + timedelta(minutes=30))
                started = time.perf_counter()
                try:
                    target.create_machines(run)
                    target.start_services(run)
                    healthy.append(time.perf_counter() - started)
                finally:
                    started = time.perf_counter()
                    target.destroy(run_id)
                    destroyed.append(time.perf_counter() - started)
            print(
                f"{label:16s} containers: {sum(len(m.containers) + 1 for m in plan.machines):2d}  "
                f"create->healthy median {statistics.median(healthy):5.1f} s {[round(t, 1) for t in healthy]}  "
                f"destroy median {statistics.median(destroyed):4.1f} s {[round(t, 1) for t in destroyed]}"
            )


if __name__ == "__main__":
    try:
        main()
    except TargetError as error:
        raise SystemExit(f"benchmark failed: {error}") from None
