"""Host capacity: which CPUs each run's machines get, what is missing when they cannot, and what validation refuses
because it can never fit the host."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from stroppy_domain.capacity import (
    CpuGrant,
    HostCapacity,
    IsolationFacts,
    MachineDemand,
    Shortfall,
    allocate,
    isolation_facts,
    oversize_problem,
)
from stroppy_domain.errors import InvalidSuiteError
from stroppy_domain.model import Hardware, Isolation
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.validation import load_suite, validate_suite
from tests.conftest import EXAMPLES

EXCLUSIVE, SHARED = Isolation.EXCLUSIVE, Isolation.SHARED
EXPIRES = 1_000_000
ADVICE = "for its machines in exclusive isolation; make them smaller, or say `isolation: shared` to share the host's CPUs on purpose"  # noqa: E501


def host(cpus: int, memory_gb: float = 64, reserved_cpus: int = 0, reserved_memory_gb: float = 0) -> HostCapacity:
    return HostCapacity(
        cpus=cpus, memory_gb=memory_gb, reserved_cpus=reserved_cpus, reserved_memory_gb=reserved_memory_gb
    )


def want(*cores: int, memory_gb: float = 1) -> list[MachineDemand]:
    """One machine per entry, named m0, m1, ..., each with that many cores and `memory_gb`."""
    return [MachineDemand(name=f"m{index}", cores=count, memory_gb=memory_gb) for index, count in enumerate(cores)]


def held(run_id: str, isolation: Isolation, cpus: list[int], memory_gb: float = 0) -> CpuGrant:
    return CpuGrant(run_id=run_id, isolation=isolation, cpus={"m": cpus}, memory_gb=memory_gb, expires_ms=EXPIRES)


def granted(isolation: Isolation, cpus: dict[str, list[int]], memory_gb: float) -> CpuGrant:
    return CpuGrant(run_id="me", isolation=isolation, cpus=cpus, memory_gb=memory_gb, expires_ms=EXPIRES)


ALLOCATIONS = [
    # (host, held by others or by the run itself, demands, isolation, expected grant or shortfall)
    pytest.param(
        host(8), [], want(2, 3), EXCLUSIVE, granted(EXCLUSIVE, {"m0": [0, 1], "m1": [2, 3, 4]}, 2),
        id="exclusive-lowest-free-cpus-in-machine-order",
    ),
    pytest.param(
        host(8, reserved_cpus=2), [], want(2, 1), EXCLUSIVE, granted(EXCLUSIVE, {"m0": [2, 3], "m1": [4]}, 2),
        id="exclusive-never-gets-reserved-cpus",
    ),
    pytest.param(
        host(8), [held("other", EXCLUSIVE, [0, 1])], want(2, 3), EXCLUSIVE,
        granted(EXCLUSIVE, {"m0": [2, 3], "m1": [4, 5, 6]}, 2),
        id="exclusive-machine-cpus-adjacent-after-other-exclusive",
    ),
    pytest.param(
        host(8), [held("other", EXCLUSIVE, [2])], want(3), EXCLUSIVE, granted(EXCLUSIVE, {"m0": [0, 1, 3]}, 1),
        id="exclusive-takes-lowest-free-around-a-hole",
    ),
    pytest.param(
        host(8), [held("other", SHARED, [0, 1, 2, 3])], want(1, 1), EXCLUSIVE,
        granted(EXCLUSIVE, {"m0": [4], "m1": [5]}, 2),
        id="exclusive-never-takes-cpus-of-a-shared-run",
    ),
    pytest.param(
        host(4, memory_gb=23), [held("me", EXCLUSIVE, [0, 1, 2, 3], memory_gb=20)], want(2, 2, memory_gb=10),
        EXCLUSIVE, granted(EXCLUSIVE, {"m0": [0, 1], "m1": [2, 3]}, 20),
        id="exclusive-ignores-the-runs-own-grant",
    ),
    pytest.param(
        host(4), [held("other", EXCLUSIVE, [0, 1, 2])], want(1, 1, memory_gb=2), EXCLUSIVE,
        Shortfall(cores_needed=2, cores_free=1, memory_needed_gb=4, memory_free_gb=64),
        id="exclusive-refused-when-other-exclusive-holds-cpus",
    ),
    pytest.param(
        host(4), [held("a", SHARED, [0, 1, 2, 3]), held("b", SHARED, [0, 1, 2, 3])], want(1), EXCLUSIVE,
        Shortfall(cores_needed=1, cores_free=0, memory_needed_gb=1, memory_free_gb=64),
        id="exclusive-refused-when-shared-runs-hold-cpus",
    ),
    pytest.param(
        host(6, reserved_cpus=2), [held("a", EXCLUSIVE, [2]), held("b", SHARED, [3, 4])], want(2), EXCLUSIVE,
        Shortfall(cores_needed=2, cores_free=1, memory_needed_gb=1, memory_free_gb=64),
        id="exclusive-refused-reserved-exclusive-and-shared-all-count",
    ),
    pytest.param(
        host(8, memory_gb=10, reserved_memory_gb=2), [held("other", EXCLUSIVE, [0], memory_gb=5)], want(1, memory_gb=4),
        EXCLUSIVE, Shortfall(cores_needed=1, cores_free=7, memory_needed_gb=4, memory_free_gb=3),
        id="exclusive-refused-on-memory-alone",
    ),
    pytest.param(
        host(8, memory_gb=10), [held("other", EXCLUSIVE, [0], memory_gb=12)], want(1, memory_gb=1), EXCLUSIVE,
        Shortfall(cores_needed=1, cores_free=7, memory_needed_gb=1, memory_free_gb=0),
        id="exclusive-memory-free-never-negative",
    ),
    pytest.param(
        host(8, reserved_cpus=1), [held("a", EXCLUSIVE, [1, 2]), held("b", SHARED, [3, 4])], want(4, 8), SHARED,
        granted(SHARED, {"m0": [3, 4, 5, 6, 7], "m1": [3, 4, 5, 6, 7]}, 0),
        id="shared-pool-is-every-usable-cpu-not-held-exclusively",
    ),
    pytest.param(
        host(4, memory_gb=2), [held("other", EXCLUSIVE, [0, 1], memory_gb=2)], want(1, memory_gb=50), SHARED,
        granted(SHARED, {"m0": [2, 3]}, 0),
        id="shared-counts-no-memory",
    ),
    pytest.param(
        host(4), [held("me", EXCLUSIVE, [0, 1, 2, 3])], want(1), SHARED, granted(SHARED, {"m0": [0, 1, 2, 3]}, 0),
        id="shared-ignores-the-runs-own-grant",
    ),
    pytest.param(
        host(4, reserved_cpus=1), [held("a", EXCLUSIVE, [1, 2]), held("b", EXCLUSIVE, [3])], want(1), SHARED,
        Shortfall(cores_needed=1, cores_free=0),
        id="shared-refused-when-every-usable-cpu-is-exclusive",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("capacity", "grants", "demands", "isolation", "expected"), ALLOCATIONS)
def test_allocate(
    capacity: HostCapacity,
    grants: list[CpuGrant],
    demands: list[MachineDemand],
    isolation: Isolation,
    expected: CpuGrant | Shortfall,
) -> None:
    answer = allocate(capacity, grants, "me", demands, isolation, EXPIRES)
    assert type(answer) is type(expected)
    assert answer == expected


def test_allocate_gives_exclusive_runs_disjoint_cpus_until_the_host_is_full() -> None:
    capacity, grants = host(6, reserved_cpus=1), []
    for run in ("a", "b"):
        answer = allocate(capacity, grants, run, want(1, 1), EXCLUSIVE, EXPIRES)
        assert isinstance(answer, CpuGrant)
        grants.append(answer)
    assert [grant.cpus for grant in grants] == [{"m0": [1], "m1": [2]}, {"m0": [3], "m1": [4]}]
    assert allocate(capacity, grants, "c", want(1, 1), EXCLUSIVE, EXPIRES) == Shortfall(
        cores_needed=2, cores_free=1, memory_needed_gb=2, memory_free_gb=60
    )


OVERSIZE = [
    # (host, demands, isolation, expected problem)
    pytest.param(host(2, memory_gb=23), want(1, 1, memory_gb=2), EXCLUSIVE, None, id="fits"),
    pytest.param(host(2, memory_gb=4), want(1, 1, memory_gb=2), EXCLUSIVE, None, id="fits-exactly"),
    pytest.param(
        host(2, memory_gb=23), want(2, 1, memory_gb=2), EXCLUSIVE,
        f"needs 3 cores (the host offers 2) {ADVICE}", id="cores",
    ),
    pytest.param(
        host(4, reserved_cpus=2), want(3), EXCLUSIVE, f"needs 3 cores (the host offers 2) {ADVICE}",
        id="cores-beyond-the-reserved",
    ),
    pytest.param(
        host(4, memory_gb=8, reserved_memory_gb=1.5), want(1, 1, memory_gb=4), EXCLUSIVE,
        f"needs 8 GB of memory (the host offers 6.5 GB) {ADVICE}", id="memory",
    ),
    pytest.param(
        host(2, memory_gb=4), want(2, 2, memory_gb=2.5), EXCLUSIVE,
        f"needs 4 cores (the host offers 2) and 5 GB of memory (the host offers 4 GB) {ADVICE}", id="cores-and-memory",
    ),
    pytest.param(host(2, memory_gb=4), want(64, 64, memory_gb=100), SHARED, None, id="shared-is-never-oversize"),
    pytest.param(
        host(2, reserved_cpus=2), want(1), SHARED,
        "the host has 2 CPU(s), all reserved for the control plane (2 reserved)", id="shared-all-cpus-reserved",
    ),
    pytest.param(
        host(2, reserved_cpus=2), want(1), EXCLUSIVE,
        "the host has 2 CPU(s), all reserved for the control plane (2 reserved)", id="exclusive-all-cpus-reserved",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("capacity", "demands", "isolation", "expected"), OVERSIZE)
def test_oversize_problem(
    capacity: HostCapacity, demands: list[MachineDemand], isolation: Isolation, expected: str | None
) -> None:
    assert oversize_problem(demands, isolation, capacity) == expected


@pytest.mark.parametrize(
    ("shortfall", "text"),
    [
        pytest.param(Shortfall(cores_needed=2, cores_free=0), "needs 2 core(s), 0 free", id="cores-only"),
        pytest.param(
            Shortfall(cores_needed=3, cores_free=1, memory_needed_gb=4, memory_free_gb=4),
            "needs 3 core(s), 1 free",
            id="memory-that-fits-is-not-mentioned",
        ),
        pytest.param(
            Shortfall(cores_needed=2, cores_free=5, memory_needed_gb=4.5, memory_free_gb=3),
            "needs 2 core(s), 5 free; needs 4.5 GB of memory, 3 GB free",
            id="memory-short",
        ),
    ],
)
def test_shortfall_describe(shortfall: Shortfall, text: str) -> None:
    assert shortfall.describe() == text


@pytest.mark.parametrize(
    ("machine", "cpuset"),
    [
        pytest.param("db", "0,1,5", id="listed"),
        pytest.param("runner", "7", id="one-cpu"),
        pytest.param("empty", None, id="no-cpus"),
        pytest.param("absent", None, id="not-in-the-grant"),
    ],
)
def test_cpu_grant_cpuset(machine: str, cpuset: str | None) -> None:
    grant = CpuGrant(
        run_id="r", isolation=EXCLUSIVE, cpus={"db": [0, 1, 5], "runner": [7], "empty": []}, memory_gb=3,
        expires_ms=EXPIRES,
    )  # fmt: skip
    assert grant.cpuset(machine) == cpuset
    assert grant.held == {0, 1, 5, 7}


MACHINES = [
    ("postgres-master", Hardware(cores=2, memory_gb=4, disk_gb=20)),
    ("stroppy-runner", Hardware(cores=1, memory_gb=2, disk_gb=20)),
]


@pytest.mark.parametrize(
    ("grant", "unenforced", "facts", "text"),
    [
        pytest.param(
            None, ["disk_gb"], IsolationFacts(isolation=None),
            "Each machine was its own host, sized by its hardware.", id="own-hosts",
        ),
        pytest.param(
            CpuGrant(
                run_id="r", isolation=EXCLUSIVE, cpus={"postgres-master": [2, 3], "stroppy-runner": [4]}, memory_gb=6,
                expires_ms=EXPIRES,
            ),
            ["disk_gb"],
            IsolationFacts(
                isolation=EXCLUSIVE, cpus={"postgres-master": "2,3", "stroppy-runner": "4"},
                memory_gb={"postgres-master": 4, "stroppy-runner": 2}, unenforced=["disk_gb"],
            ),
            "Exclusive CPUs: no other run used them (postgres-master on CPUs 2,3 with 4 GB, stroppy-runner on CPUs 4 "
            "with 2 GB). Not enforced on this target: disk_gb.",
            id="exclusive",
        ),
        pytest.param(
            CpuGrant(
                run_id="r", isolation=SHARED, cpus={"postgres-master": [0, 1, 2], "stroppy-runner": [0, 1, 2]},
                memory_gb=0, expires_ms=EXPIRES,
            ),
            [],
            IsolationFacts(
                isolation=SHARED, cpus={"postgres-master": "0,1,2", "stroppy-runner": "0,1,2"},
                memory_gb={"postgres-master": 4, "stroppy-runner": 2},
            ),
            "**Shared CPUs:** these numbers were taken on CPUs other runs could use too (postgres-master on CPUs "
            "0,1,2 with 4 GB, stroppy-runner on CPUs 0,1,2 with 2 GB).",
            id="shared",
        ),
        pytest.param(
            CpuGrant(
                run_id="r", isolation=EXCLUSIVE, cpus={"postgres-master": [1]}, memory_gb=4, expires_ms=EXPIRES
            ),
            ["disk_gb", "cores"],
            IsolationFacts(
                isolation=EXCLUSIVE, cpus={"postgres-master": "1"},
                memory_gb={"postgres-master": 4, "stroppy-runner": 2}, unenforced=["disk_gb", "cores"],
            ),
            "Exclusive CPUs: no other run used them (postgres-master on CPUs 1 with 4 GB, stroppy-runner on CPUs any "
            "with 2 GB). Not enforced on this target: disk_gb, cores.",
            id="machine-without-cpus",
        ),
    ],
)  # fmt: skip
def test_isolation_facts(grant: CpuGrant | None, unenforced: list[str], facts: IsolationFacts, text: str) -> None:
    made = isolation_facts(grant, iter(MACHINES), unenforced)
    assert made == facts
    assert made.describe() == text


# Validation against the size of the host.

TWO_CPUS = PlannerSettings(host_capacity={"docker": {"cpus": 2, "memory_gb": 23}})
THREE_CORES = {
    "name": "three-cores",
    "target": "docker",
    "tests": [
        {
            "name": "instance",
            "stroppy": {"driver": "pgbench", "workload": "tpcb", "scale": 5, "clients": 4, "duration": "30s"},
            "runner_hardware": {"cores": 1, "memory_gb": 2, "disk_gb": 20},
            "database": {"instance": {"hardware": {"cores": 2, "memory_gb": 2, "disk_gb": 20}}},
        }
    ],
}
THREE_CORES_PROBLEM = f"does not fit the docker host: it needs 3 cores (the host offers 2) {ADVICE}"


def three_cores(suite_isolation: str | None = None, test_isolation: str | None = None) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(THREE_CORES))
    if suite_isolation:
        data["isolation"] = suite_isolation
    if test_isolation:
        data["tests"][0]["isolation"] = test_isolation
    return data


def issues_of(data: dict[str, Any], settings: PlannerSettings | None) -> list[tuple[str, str]]:
    with pytest.raises(InvalidSuiteError) as caught:
        load_suite(yaml.safe_dump(data), "suite.yaml", settings)
    return [(issue.path, issue.message) for issue in caught.value.issues]


def test_pgbench_example_fits_a_two_cpu_host() -> None:
    suite = load_suite((EXAMPLES / "pgbench.yaml").read_text(), "pgbench.yaml", TWO_CPUS)
    assert [(test.name, suite.isolation_of(test)) for test in suite.tests] == [
        ("single-instance", EXCLUSIVE),
        ("patroni-pgbouncer", SHARED),
    ]


def test_pgbench_cluster_without_shared_isolation_does_not_fit_a_two_cpu_host() -> None:
    data = yaml.safe_load((EXAMPLES / "pgbench.yaml").read_text())
    del data["tests"][1]["isolation"]
    assert issues_of(data, TWO_CPUS) == [
        ("tests[1]", f"does not fit the docker host: it needs 6 cores (the host offers 2) {ADVICE}")
    ]


def test_a_test_needing_more_cores_than_the_host_is_refused() -> None:
    with pytest.raises(InvalidSuiteError) as caught:
        load_suite(yaml.safe_dump(three_cores()), "suite.yaml", TWO_CPUS)
    assert [(issue.path, issue.message) for issue in caught.value.issues] == [("tests[0]", THREE_CORES_PROBLEM)]
    assert "tests[0]" in str(caught.value)
    assert "3 cores" in str(caught.value)


def test_explicit_exclusive_isolation_is_checked_too() -> None:
    assert issues_of(three_cores(suite_isolation="shared", test_isolation="exclusive"), TWO_CPUS) == [
        ("tests[0]", THREE_CORES_PROBLEM)
    ]


@pytest.mark.parametrize(
    ("suite_isolation", "test_isolation"),
    [pytest.param("shared", None, id="suite-level"), pytest.param(None, "shared", id="test-level")],
)
def test_shared_isolation_fits_any_host(suite_isolation: str | None, test_isolation: str | None) -> None:
    suite = load_suite(yaml.safe_dump(three_cores(suite_isolation, test_isolation)), "suite.yaml", TWO_CPUS)
    assert suite.isolation_of(suite.tests[0]) is SHARED


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(None, id="no-settings"),
        pytest.param(PlannerSettings(), id="no-host-capacity"),
        pytest.param(PlannerSettings(host_capacity={"yandex_cloud": {"cpus": 1, "memory_gb": 1}}), id="other-target"),
    ],
)
def test_without_the_host_capacity_of_the_target_nothing_is_checked(settings: PlannerSettings | None) -> None:
    suite = load_suite(yaml.safe_dump(three_cores()), "suite.yaml", settings)
    assert [test.name for test in suite.tests] == ["instance"]


def test_the_host_is_checked_beside_structural_errors() -> None:
    data = three_cores()
    broken = yaml.safe_load(yaml.safe_dump(data["tests"][0]))
    broken["name"] = "broken"
    broken["runner_hardware"]["cores"] = 0
    data["tests"].append(broken)
    issues = issues_of(data, TWO_CPUS)
    assert ("tests[0]", THREE_CORES_PROBLEM) in issues
    assert [path for path, _ in issues] == ["tests[0]", "tests[1].runner_hardware.cores"]


def test_shared_isolation_is_honoured_beside_structural_errors() -> None:
    data = three_cores(suite_isolation="shared")
    broken = yaml.safe_load(yaml.safe_dump(data["tests"][0]))
    broken["name"] = "broken"
    broken["runner_hardware"]["cores"] = 0
    data["tests"].append(broken)
    with pytest.raises(InvalidSuiteError) as caught:
        validate_suite(data, "suite.yaml", TWO_CPUS)
    assert [issue.path for issue in caught.value.issues] == ["tests[1].runner_hardware.cores"]
