"""The load's commands for each driver, and how the runner gets the password without anyone passing it around."""

from __future__ import annotations

import pytest

from stroppy_domain.load import LoadError, load_steps, stroppy_major
from stroppy_domain.placement import plan_run, with_runner_password
from stroppy_domain.plan import Connection
from stroppy_domain.services import LOAD_PASSFILE
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.validation import validate_suite
from tests.conftest import fixed_passwords

CONNECTION = Connection(host="10.1.0.4", port=6432, dbname="stroppy", user="stroppy")


def make_test(**load: object) -> object:
    suite = {
        "name": "s",
        "tests": [{"name": "t", "stroppy": load, "database": {"instance": {"hardware": {"cores": 2, "memory_gb": 1,
                                                                                        "disk_gb": 1}}}}],
    }  # fmt: skip
    return validate_suite(suite).tests[0]


def test_pgbench_initialises_then_runs_for_the_duration() -> None:
    test = make_test(driver="pgbench", workload="tpcb", scale=3, clients=8, duration="1m")
    init, run = load_steps(test, CONNECTION, margin_s=30)
    assert init.argv == ["pgbench", "--initialize", "--scale=3", "--quiet"]
    assert run.argv[:4] == ["pgbench", "--client=8", "--jobs=2", "--time=60"]
    assert "--log" in run.argv and "--progress=5" in run.argv
    assert run.timeout_s == 90 and run.measured and not init.measured
    assert run.env["PGHOST"] == "10.1.0.4" and run.env["PGPORT"] == "6432"
    assert run.env["PGPASSFILE"] == LOAD_PASSFILE
    assert "PGPASSWORD" not in run.env


@pytest.mark.parametrize(
    ("version", "k6_arguments"),
    [
        ("v2.4.0", ["--summary-export", "summary.json", "--out", "csv=k6_metrics.csv"]),
        ("v5.0.0", ["--summary-mode", "full", "--summary-export", "summary.json", "--out", "csv=k6_metrics.csv"]),
    ],
)
def test_stroppy_command_shapes(version: str, k6_arguments: list[str]) -> None:
    test = make_test(driver="stroppy", version=version, workload="tpcc", scale=2, duration=45, env={"VUS": "4"})
    gen, run = load_steps(test, CONNECTION, margin_s=30, stroppy_binary="/opt/stroppy-runs/r/stroppy")
    assert gen.argv == ["/opt/stroppy-runs/r/stroppy", "gen", "--workdir", ".", "--preset", "tpcc"]
    assert run.argv == ["/opt/stroppy-runs/r/stroppy", "run", "tpcc.ts", "tpcc.sql", "--", *k6_arguments]
    assert run.env == {
        "VUS": "4",
        "DRIVER_URL": "postgres://stroppy@10.1.0.4:6432/stroppy?sslmode=disable",
        "PGPASSFILE": LOAD_PASSFILE,
        "SCALE_FACTOR": "2",
        "DURATION": "45s",
    }
    assert run.timeout_s == 75


@pytest.mark.parametrize("version", ["v1.0.0", "v3.2.1", "4.0.0"])
def test_other_stroppy_majors_are_refused(version: str) -> None:
    with pytest.raises(LoadError, match="supported majors are 2, 5"):
        stroppy_major(version)


def test_the_runner_holds_the_password_of_its_database() -> None:
    plan = plan_run(make_test(driver="pgbench", workload="tpcb"), "docker", "10.1.0.0/24", PlannerSettings(),
                    fixed_passwords)  # fmt: skip
    (passfile,) = plan.runner.secret_files
    assert passfile.path == LOAD_PASSFILE
    assert passfile.content.get_secret_value() == "10.1.0.4:5432:stroppy:stroppy:secretApp0123456789\n"


def test_an_existing_database_gets_its_password_from_outside_the_plan() -> None:
    suite = {
        "name": "s",
        "tests": [
            {
                "name": "t",
                "stroppy": {"driver": "pgbench", "workload": "tpcb"},
                "database": {
                    "existing": {
                        "connection_string": "postgres://bench@db.example:6000/tpcb",
                        "password_block": "db-pw",
                    }
                },
            }
        ],
    }
    test = validate_suite(suite).tests[0]
    plan = plan_run(test, "docker", "10.1.0.0/24", PlannerSettings(), fixed_passwords)
    assert plan.runner.secret_files == []
    with_password = with_runner_password(plan, "from-the-block")
    (passfile,) = with_password.runner.secret_files
    assert passfile.content.get_secret_value() == "db.example:6000:tpcb:bench:from-the-block\n"
    assert "from-the-block" not in with_password.model_dump_json()
