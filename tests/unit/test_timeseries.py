"""The load's per-second series from pgbench logs and k6 CSV output, and the scrape targets of a plan."""

from __future__ import annotations

import pytest

from stroppy_domain.model import Target
from stroppy_domain.placement import plan_run
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.timeseries import (
    LOAD_ERRORS,
    LOAD_LATENCY,
    LOAD_THROUGHPUT,
    LoadSeriesError,
    Series,
    k6_csv_series,
    pgbench_log_series,
    scrape_targets,
)
from stroppy_domain.validation import validate_suite
from tests.conftest import fixed_passwords, fresh_suite


def by_key(series: list[Series]) -> dict[str, dict[int, float]]:
    keyed = {}
    for one in series:
        key = one.name + "".join(f"{{{k}={v}}}" for k, v in sorted(one.labels.items()))
        keyed[key] = dict(zip([stamp // 1000 for stamp in one.timestamps_ms], one.values, strict=True))
    return keyed


PGBENCH_CASES = [
    pytest.param(
        ["0 1 2000 0 1700000000 100", "1 1 4000 0 1700000000 900", "0 2 1000 0 1700000001 5"],
        {LOAD_THROUGHPUT: {1700000000: 2, 1700000001: 1}, LOAD_ERRORS: {1700000000: 0, 1700000001: 0}},
        id="completed transactions per second",
    ),
    pytest.param(
        ["0 1 failed 0 1700000000 1", "0 2 serialization 0 1700000000 2", "0 3 1500 0 1700000001 3 0 2"],
        {LOAD_THROUGHPUT: {1700000000: 0, 1700000001: 1}, LOAD_ERRORS: {1700000000: 2, 1700000001: 0}},
        id="failed and retried transactions",
    ),
    pytest.param(
        ["0 1 skipped 0 1700000000 1", "", "0 2 1000 0 1700000000 2 150"],
        {LOAD_THROUGHPUT: {1700000000: 1}, LOAD_ERRORS: {1700000000: 0}},
        id="skipped transactions and blank lines ignored",
    ),
    pytest.param([], {}, id="no transactions, no series"),
]


@pytest.mark.parametrize(("lines", "expected"), PGBENCH_CASES)
def test_pgbench_log_counts(lines: list[str], expected: dict[str, dict[int, float]]) -> None:
    keyed = by_key(pgbench_log_series(lines))
    assert {name: keyed[name] for name in expected} == expected
    if not expected:
        assert keyed == {}


def test_the_logs_of_every_pgbench_thread_add_up_to_one_load() -> None:
    first = ["0 1 2000 0 1700000000 1", "0 2 4000 0 1700000001 1"]
    second = ["1 1 8000 0 1700000000 5", "1 2 failed 0 1700000000 9"]
    keyed = by_key(pgbench_log_series(first, second))
    assert keyed[LOAD_THROUGHPUT] == {1700000000: 2, 1700000001: 1}
    assert keyed[LOAD_ERRORS] == {1700000000: 1, 1700000001: 0}
    assert keyed[f"{LOAD_LATENCY}{{quantile=0.99}}"][1700000000] == pytest.approx(0.008, rel=0.02)
    with pytest.raises(LoadSeriesError, match="pgbench log 2 line 1 is not"):
        pgbench_log_series(first, ["0 1 2000 0"])


def test_latency_quantiles_are_within_two_percent() -> None:
    lines = [f"0 {n} {n * 1000} 0 1700000000 {n}" for n in range(1, 101)]  # 1 ms .. 100 ms
    keyed = by_key(pgbench_log_series(lines))
    for quantile, exact in [(0.5, 0.050), (0.95, 0.095), (0.99, 0.099)]:
        observed = keyed[f"{LOAD_LATENCY}{{quantile={quantile}}}"][1700000000]
        assert exact <= observed <= exact * 1.02, (quantile, observed)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["0 1 2000 0"], "line 1 is not"),
        (["0 1 2000 0 1700000000 1", "0 1 2000 0 noon 1"], "line 2 is not"),
    ],
)
def test_malformed_pgbench_logs_name_the_line(lines: list[str], message: str) -> None:
    with pytest.raises(LoadSeriesError, match=message):
        pgbench_log_series(lines)


K6_HEADER = "metric_name,timestamp,metric_value,check,error,error_code,group,scenario"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(
            [
                "iterations,1700000000,1,,,,,default",
                "iteration_duration,1700000000,20.5,,,,,default",
                "iteration_duration,1700000000,30,,,,,default",
                "iteration_duration,1700000002,10,,,,,default",
                "vus,1700000000,4,,,,,",
            ],
            {LOAD_THROUGHPUT: {1700000000: 2, 1700000002: 1}, LOAD_ERRORS: {1700000000: 0, 1700000002: 0}},
            id="iterations per second from their durations",
        ),
        pytest.param(
            [
                "checks,1700000001,0,ok,,,,default",
                "checks,1700000001,1,ok,,,,default",
                "iteration_duration,1700000001.6,5,,,,,default",
            ],
            {LOAD_THROUGHPUT: {1700000001: 1}, LOAD_ERRORS: {1700000001: 1}},
            id="failed checks are errors",
        ),
    ],
)
def test_k6_csv_counts(rows: list[str], expected: dict[str, dict[int, float]]) -> None:
    keyed = by_key(k6_csv_series([K6_HEADER, *rows]))
    assert {name: keyed[name] for name in expected} == expected


def test_every_k6_metric_becomes_its_per_second_mean() -> None:
    rows = [
        "tpcc_new_order_duration,1700000000,10,,,,,default", "tpcc_new_order_duration,1700000000,30,,,,,default",
        "tpcc_new_order_duration,1700000001,5,,,,,default", "vus,1700000000,4,,,,,",
        "data-sent{x},1700000000,100,,,,,",
    ]  # fmt: skip
    keyed = by_key(k6_csv_series([K6_HEADER, *rows]))
    assert keyed["k6_tpcc_new_order_duration"] == {1700000000: 20.0, 1700000001: 5.0}
    assert keyed["k6_vus"] == {1700000000: 4.0}
    assert keyed["k6_data_sent_x_"] == {1700000000: 100.0}


def test_k6_latency_is_in_seconds() -> None:
    keyed = by_key(k6_csv_series([K6_HEADER, "iteration_duration,1700000000,250,,,,,"]))
    assert 0.25 <= keyed[f"{LOAD_LATENCY}{{quantile=0.5}}"][1700000000] <= 0.255


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["name,time,value", "x,1,1"], "lacks the column"),
        ([K6_HEADER, "iteration_duration,yesterday,1,,,,,"], "line 2"),
        ([K6_HEADER, "checks,1700000000,,,,,,"], "line 2"),
    ],
)
def test_malformed_k6_csv_names_the_problem(lines: list[str], message: str) -> None:
    with pytest.raises(LoadSeriesError, match=message):
        k6_csv_series(lines)


def test_every_metrics_port_of_a_plan_is_a_labelled_scrape_target() -> None:
    data = fresh_suite()
    cluster_data = data["tests"][1]["database"]["cluster"]
    cluster_data["topology"]["monitor"] = True
    cluster_data["addons"]["pgbouncer"]["monitor"] = True
    cluster = validate_suite(data).tests[1]
    plan = plan_run(cluster, Target.DOCKER, "10.100.0.0/24", PlannerSettings(), fixed_passwords)
    targets = scrape_targets("run-abc", plan)
    metrics_ports = [
        (machine.name, port.number)
        for machine in plan.machines
        for container in machine.containers
        for port in container.ports
        if container.kind.endswith("_exporter") or port.name in {"patroni", "etcd-client"}
    ]
    assert sorted((t.labels["machine"], int(t.address.split(":")[1])) for t in targets) == sorted(metrics_ports)
    services = {target.labels["service"] for target in targets}
    assert services == {"node_exporter", "postgres_exporter", "pgbouncer_exporter", "patroni", "etcd"}
    patroni = [target for target in targets if target.labels["service"] == "patroni"]
    assert len(patroni) == 3 and all(target.address.endswith(":8008") for target in patroni)
    for target in targets:
        machine = plan.machine(target.labels["machine"])
        assert target.address.startswith(machine.ip + ":")
        assert target.labels["run_id"] == "run-abc" and target.labels["role"] == machine.role
