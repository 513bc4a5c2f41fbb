"""A run's history record: the fingerprint that says which runs compare, and the load's per-second distributions."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stroppy_domain.history import Distribution, distribution, fingerprint, per_second
from stroppy_domain.model import BenchmarkTest, Isolation, Target
from stroppy_domain.timeseries import Series
from stroppy_domain.validation import validate_suite

TEST: dict[str, Any] = {
    "name": "single",
    "description": "one instance",
    "stroppy": {"driver": "pgbench", "workload": "tpcb", "scale": 5, "clients": 4, "duration": 30},
    "thresholds": {"tps": ["value>100"]},
    "database": {"instance": {"hardware": {"cores": 1, "memory_gb": 2, "disk_gb": 20}}},
}
BASE = fingerprint(validate_suite({"name": "s", "tests": [TEST]}).tests[0], Target.DOCKER, Isolation.EXCLUSIVE)


def changed(path: list[str], value: object) -> BenchmarkTest:
    data = copy.deepcopy(TEST)
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return validate_suite({"name": "s", "tests": [data]}).tests[0]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["name"], "renamed"),
        (["description"], "another text"),
        (["thresholds"], {"tps": ["value>999"]}),
        (["isolation"], "shared"),  # the run's isolation is passed apart, as the suite resolves it
        (["regression"], {"metric": "tps", "max_drop": "5%"}),
        (["stroppy", "env"], {}),  # written as its default: the same setup
        (["runner_hardware"], {"cores": 2, "memory_gb": 4, "disk_gb": 20}),  # the default runner, written out
    ],
)
def test_what_was_not_measured_leaves_the_fingerprint_alone(path: list[str], value: object) -> None:
    assert fingerprint(changed(path, value), Target.DOCKER, Isolation.EXCLUSIVE) == BASE


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["stroppy", "scale"], 6),
        (["stroppy", "clients"], 8),
        (["stroppy", "duration"], 31),
        (["runner_hardware"], {"cores": 1, "memory_gb": 2, "disk_gb": 20}),
        (["database", "instance", "hardware"], {"cores": 2, "memory_gb": 2, "disk_gb": 20}),
        (["database", "instance", "settings"], {"postgresql_conf": {"shared_buffers": "256MB"}}),
    ],
)
def test_what_was_measured_changes_the_fingerprint(path: list[str], value: object) -> None:
    other = fingerprint(changed(path, value), Target.DOCKER, Isolation.EXCLUSIVE)
    assert other != BASE and len(other) == 16 and int(other, 16) >= 0


def test_the_target_and_the_isolation_are_part_of_the_fingerprint() -> None:
    test = changed(["name"], "single")
    assert fingerprint(test, Target.YANDEX_CLOUD, Isolation.EXCLUSIVE) != BASE
    assert fingerprint(test, Target.DOCKER, Isolation.SHARED) != BASE


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        ([7.0], Distribution(median=7.0, spread=0.0, samples=1)),
        ([1.0, 2.0, 3.0, 4.0, 100.0], Distribution(median=3.0, spread=2.0, samples=5)),
        ([10.0, 10.0, 10.0, 10.0], Distribution(median=10.0, spread=0.0, samples=4)),
    ],
)
def test_a_per_second_series_is_summarised(values: list[float], expected: Distribution | None) -> None:
    assert distribution(values) == expected


def test_only_the_loads_own_series_are_kept_with_their_labels() -> None:
    series = [
        Series(name="stroppy_load_throughput", timestamps_ms=[1000, 2000], values=[100.0, 110.0]),
        Series(name="stroppy_load_latency_seconds", labels={"quantile": "0.95"}, timestamps_ms=[1000], values=[0.5]),
        Series(name="k6_tx_total_duration", timestamps_ms=[1000], values=[3.0]),
        Series(name="stroppy_load_errors", timestamps_ms=[], values=[]),
    ]
    assert per_second(series) == {
        "stroppy_load_throughput": Distribution(median=105.0, spread=5.0, samples=2),
        'stroppy_load_latency_seconds{quantile="0.95"}': Distribution(median=0.5, spread=0.0, samples=1),
    }
