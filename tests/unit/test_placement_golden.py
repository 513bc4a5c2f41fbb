"""Golden plans of the predecessor's example topologies (examples/topologies/*.yaml).

Each row is `machine role last-octet containers`; the subnet is 172.28.0.0/24, machines take .4 upwards in
order and the stroppy runner always comes last with an address of its own.
"""

from __future__ import annotations

import pytest

from stroppy_domain.model import Hardware
from stroppy_domain.placement import plan_run
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.validation import load_suite
from tests.conftest import EXAMPLES, fixed_passwords

SUBNET = "172.28.0.0/24"
M = "postgres-master master"
PG = "postgres"


def R(index: int) -> str:  # noqa: N802 - reads like the table's shorthand
    return f"postgres-replica-{index} replica"


GOLDEN: dict[str, tuple[str, list[str]]] = {
    # test name: (connection "last-octet:port", rows)
    "instance-basic": (".4:5432", [f"{M} .4 {PG}", "stroppy-runner runner .5 node_exporter"]),
    "instance-with-all-sidecars": (
        ".4:5432",
        [f"{M} .4 postgres,node_exporter,postgres_exporter,backup", "stroppy-runner runner .5 node_exporter"],
    ),
    "cluster-base-r1": (".4:5432", [f"{M} .4 {PG}", f"{R(0)} .5 {PG}", "stroppy-runner runner .6 node_exporter"]),
    "cluster-base-r2": (
        ".4:5432",
        [f"{M} .4 {PG}", f"{R(0)} .5 {PG}", f"{R(1)} .6 {PG}", "stroppy-runner runner .7 node_exporter"],
    ),
    "cluster-base-r3": (
        ".4:5432",
        [
            f"{M} .4 {PG}",
            f"{R(0)} .5 {PG}",
            f"{R(1)} .6 {PG}",
            f"{R(2)} .7 {PG}",
            "stroppy-runner runner .8 node_exporter",
        ],
    ),
    "cluster-base-r4": (
        ".4:5432",
        [
            f"{M} .4 {PG}",
            f"{R(0)} .5 {PG}",
            f"{R(1)} .6 {PG}",
            f"{R(2)} .7 {PG}",
            f"{R(3)} .8 {PG}",
            "stroppy-runner runner .9 node_exporter",
        ],
    ),
    "cluster-base-r5": (
        ".4:5432",
        [
            f"{M} .4 {PG}",
            f"{R(0)} .5 {PG}",
            f"{R(1)} .6 {PG}",
            f"{R(2)} .7 {PG}",
            f"{R(3)} .8 {PG}",
            f"{R(4)} .9 {PG}",
            "stroppy-runner runner .10 node_exporter",
        ],
    ),
    "cluster-backup-scope-master-r2": (
        ".4:5432",
        [f"{M} .4 postgres,backup", f"{R(0)} .5 {PG}", f"{R(1)} .6 {PG}", "stroppy-runner runner .7 node_exporter"],
    ),
    "cluster-backup-scope-replicas-r2": (
        ".4:5432",
        [
            f"{M} .4 {PG}",
            f"{R(0)} .5 postgres,backup",
            f"{R(1)} .6 postgres,backup",
            "stroppy-runner runner .7 node_exporter",
        ],
    ),
    "cluster-backup-scope-all-nodes-r2": (
        ".4:5432",
        [
            f"{M} .4 postgres,backup",
            f"{R(0)} .5 postgres,backup",
            f"{R(1)} .6 postgres,backup",
            "stroppy-runner runner .7 node_exporter",
        ],
    ),
    "cluster-monitor-r2": (
        ".4:5432",
        [
            f"{M} .4 postgres,node_exporter,postgres_exporter",
            f"{R(0)} .5 postgres,node_exporter,postgres_exporter",
            f"{R(1)} .6 postgres,node_exporter,postgres_exporter",
            "stroppy-runner runner .7 node_exporter",
        ],
    ),
    "cluster-patroni-etcd-all-nodes-r2": (
        ".4:5432",
        [
            f"{M} .4 postgres,etcd",
            f"{R(0)} .5 postgres,etcd",
            f"{R(1)} .6 postgres,etcd",
            "stroppy-runner runner .7 node_exporter",
        ],
    ),
    "cluster-patroni-sync-2-r2": (
        ".4:5432",
        [
            f"{M} .4 postgres,etcd",
            f"{R(0)} .5 postgres,etcd",
            f"{R(1)} .6 postgres,etcd",
            "stroppy-runner runner .7 node_exporter",
        ],
    ),
    "cluster-replica-override-r3": (
        ".4:5432",
        [
            f"{M} .4 {PG}",
            f"{R(0)} .5 {PG}",
            f"{R(1)} .6 {PG}",
            f"{R(2)} .7 {PG}",
            "stroppy-runner runner .8 node_exporter",
        ],
    ),
    "cluster-etcd-colocate-master-r2": (
        ".4:5432",
        [f"{M} .4 postgres,etcd", f"{R(0)} .5 {PG}", f"{R(1)} .6 {PG}", "stroppy-runner runner .7 node_exporter"],
    ),
    "cluster-etcd-colocate-all-nodes-r2": (
        ".4:5432",
        [
            f"{M} .4 postgres,etcd",
            f"{R(0)} .5 postgres,etcd",
            f"{R(1)} .6 postgres,etcd",
            "stroppy-runner runner .7 node_exporter",
        ],
    ),
    "cluster-etcd-colocate-all-nodes-r4": (
        ".4:5432",
        [
            f"{M} .4 postgres,etcd",
            f"{R(0)} .5 postgres,etcd",
            f"{R(1)} .6 postgres,etcd",
            f"{R(2)} .7 postgres,etcd",
            f"{R(3)} .8 postgres,etcd",
            "stroppy-runner runner .9 node_exporter",
        ],
    ),
    "cluster-etcd-colocate-replicas-r1": (
        ".4:5432",
        [f"{M} .4 {PG}", f"{R(0)} .5 postgres,etcd", "stroppy-runner runner .6 node_exporter"],
    ),
    "cluster-etcd-colocate-replicas-r3": (
        ".4:5432",
        [
            f"{M} .4 {PG}",
            f"{R(0)} .5 postgres,etcd",
            f"{R(1)} .6 postgres,etcd",
            f"{R(2)} .7 postgres,etcd",
            "stroppy-runner runner .8 node_exporter",
        ],
    ),
    "cluster-etcd-colocate-replicas-r5": (
        ".4:5432",
        [
            f"{M} .4 {PG}",
            f"{R(0)} .5 postgres,etcd",
            f"{R(1)} .6 postgres,etcd",
            f"{R(2)} .7 postgres,etcd",
            f"{R(3)} .8 postgres,etcd",
            f"{R(4)} .9 postgres,etcd",
            "stroppy-runner runner .10 node_exporter",
        ],
    ),
    **{
        f"cluster-etcd-colocate-replica-{k}-r5": (
            ".4:5432",
            [
                f"{M} .4 {PG}",
                *(f"{R(i)} .{5 + i} {'postgres,etcd' if i == k else PG}" for i in range(5)),
                "stroppy-runner runner .10 node_exporter",
            ],
        )
        for k in range(5)
    },
    "cluster-etcd-dedicated-1": (
        ".4:5432",
        [
            f"{M} .4 {PG}",
            f"{R(0)} .5 {PG}",
            f"{R(1)} .6 {PG}",
            "etcd-1 etcd .7 etcd,node_exporter",
            "stroppy-runner runner .8 node_exporter",
        ],
    ),
    "cluster-etcd-dedicated-3": (
        ".4:5432",
        [
            f"{M} .4 {PG}",
            f"{R(0)} .5 {PG}",
            f"{R(1)} .6 {PG}",
            "etcd-1 etcd .7 etcd,node_exporter",
            "etcd-2 etcd .8 etcd,node_exporter",
            "etcd-3 etcd .9 etcd,node_exporter",
            "stroppy-runner runner .10 node_exporter",
        ],
    ),
    "cluster-etcd-dedicated-5": (
        ".4:5432",
        [
            f"{M} .4 {PG}",
            f"{R(0)} .5 {PG}",
            f"{R(1)} .6 {PG}",
            "etcd-1 etcd .7 etcd,node_exporter",
            "etcd-2 etcd .8 etcd,node_exporter",
            "etcd-3 etcd .9 etcd,node_exporter",
            "etcd-4 etcd .10 etcd,node_exporter",
            "etcd-5 etcd .11 etcd,node_exporter",
            "stroppy-runner runner .12 node_exporter",
        ],
    ),
    "cluster-pgbouncer-colocate-master-r2": (
        ".4:6432",
        [f"{M} .4 postgres,pgbouncer", f"{R(0)} .5 {PG}", f"{R(1)} .6 {PG}", "stroppy-runner runner .7 node_exporter"],
    ),
    "cluster-pgbouncer-colocate-all-nodes-r2": (
        ".4:6432",
        [
            f"{M} .4 postgres,pgbouncer,pgbouncer_exporter",
            f"{R(0)} .5 postgres,pgbouncer,pgbouncer_exporter",
            f"{R(1)} .6 postgres,pgbouncer,pgbouncer_exporter",
            "stroppy-runner runner .7 node_exporter",
        ],
    ),
    "cluster-pgbouncer-colocate-replicas-r3": (
        ".5:6432",
        [
            f"{M} .4 {PG}",
            f"{R(0)} .5 postgres,pgbouncer",
            f"{R(1)} .6 postgres,pgbouncer",
            f"{R(2)} .7 postgres,pgbouncer",
            "stroppy-runner runner .8 node_exporter",
        ],
    ),
    **{
        f"cluster-pgbouncer-colocate-replica-{k}-r5": (
            f".{5 + k}:6432",
            [
                f"{M} .4 {PG}",
                *(f"{R(i)} .{5 + i} {'postgres,pgbouncer' if i == k else PG}" for i in range(5)),
                "stroppy-runner runner .10 node_exporter",
            ],
        )
        for k in range(5)
    },
    **{
        f"cluster-pgbouncer-dedicated-{n}": (
            ".7:6432",
            [
                f"{M} .4 {PG}",
                f"{R(0)} .5 {PG}",
                f"{R(1)} .6 {PG}",
                *(f"pgbouncer-{i} pgbouncer .{6 + i} pgbouncer" for i in range(1, n + 1)),
                f"stroppy-runner runner .{7 + n} node_exporter",
            ],
        )
        for n in range(1, 6)
    },
    "cluster-combined-dedicated-r2": (
        ".10:6432",
        [
            f"{M} .4 postgres,backup",
            f"{R(0)} .5 {PG}",
            f"{R(1)} .6 {PG}",
            "etcd-1 etcd .7 etcd",
            "etcd-2 etcd .8 etcd",
            "etcd-3 etcd .9 etcd",
            "pgbouncer-1 pgbouncer .10 pgbouncer",
            "pgbouncer-2 pgbouncer .11 pgbouncer",
            "stroppy-runner runner .12 node_exporter",
        ],
    ),
    "cluster-combined-colocate-all-r2": (
        ".4:6432",
        [
            f"{M} .4 postgres,etcd,pgbouncer,node_exporter,postgres_exporter,pgbouncer_exporter,backup",
            f"{R(0)} .5 postgres,etcd,node_exporter,postgres_exporter,backup",
            f"{R(1)} .6 postgres,etcd,node_exporter,postgres_exporter,backup",
            "stroppy-runner runner .7 node_exporter",
        ],
    ),
}


def _example_tests() -> dict[str, object]:
    tests = {}
    for path in sorted((EXAMPLES / "topologies").glob("*.yaml")):
        suite = load_suite(path.read_text(), str(path))
        tests.update({test.name: test for test in suite.tests})
    return tests


EXAMPLE_TESTS = _example_tests()


def test_every_example_has_a_golden_plan() -> None:
    assert sorted(EXAMPLE_TESTS) == sorted(GOLDEN)
    assert len(GOLDEN) == 43


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_plan(name: str) -> None:
    connection, rows = GOLDEN[name]
    plan = plan_run(EXAMPLE_TESTS[name], "docker", SUBNET, PlannerSettings(), fixed_passwords)
    observed = [
        f"{m.name} {m.role} .{m.ip.rsplit('.', 1)[1]} {','.join(str(c.kind) for c in m.containers)}"
        for m in plan.machines
    ]
    assert observed == rows
    assert f".{plan.connection.host.rsplit('.', 1)[1]}:{plan.connection.port}" == connection
    ips = [machine.ip for machine in plan.machines]
    assert len(set(ips)) == len(ips), "every machine, the runner included, has an address of its own"


def test_replica_override_changes_only_its_replica() -> None:
    plan = plan_run(EXAMPLE_TESTS["cluster-replica-override-r3"], "docker", SUBNET, PlannerSettings(), fixed_passwords)
    hardware = {machine.name: machine.hardware for machine in plan.machines}
    assert hardware["postgres-replica-1"] == Hardware(cores=8, memory_gb=16, disk_gb=200)
    assert (
        hardware["postgres-replica-0"] == hardware["postgres-replica-2"] == Hardware(cores=2, memory_gb=4, disk_gb=50)
    )
    conf = {
        machine.name: machine.container("postgres").files[0].content
        for machine in plan.machines
        if machine.role != "runner"
    }
    assert "work_mem = '64MB'" in conf["postgres-replica-1"]
    assert all("work_mem" not in text for name, text in conf.items() if name != "postgres-replica-1")
