"""The load's commands for each driver, and how the runner gets the password without anyone passing it around."""

from __future__ import annotations

import json

import pytest

from stroppy_domain.errors import InvalidSuiteError
from stroppy_domain.load import LoadError, load_steps, secret_references, stroppy_major, trend_stats
from stroppy_domain.model import BenchmarkTest
from stroppy_domain.placement import plan_run, with_runner_password
from stroppy_domain.plan import Connection
from stroppy_domain.services import LOAD_PASSFILE
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.stroppy_v5 import SUMMARY_TREND_STATS
from stroppy_domain.validation import validate_suite
from tests.conftest import fixed_passwords

CONNECTION = Connection(host="10.1.0.4", port=6432, dbname="stroppy", user="stroppy")


def make_test(thresholds: dict | None = None, **load: object) -> BenchmarkTest:
    hardware = {"cores": 2, "memory_gb": 1, "disk_gb": 1}
    test = {
        "name": "t",
        "stroppy": load,
        "thresholds": thresholds or {},
        "database": {"instance": {"hardware": hardware}},
    }
    suite = {"name": "s", "tests": [test]}
    return validate_suite(suite).tests[0]


def test_pgbench_initialises_then_runs_for_the_duration() -> None:
    test = make_test(driver="pgbench", workload="tpcb", scale=3, clients=8, duration="1m")
    init, facts, run = load_steps(test, CONNECTION, margin_s=30)
    assert init.argv == ["pgbench", "--initialize", "--scale=3", "--quiet"]
    assert facts.name == "postgres-facts" and facts.argv[0] == "psql" and "--output=postgres.json" in facts.argv
    assert facts.env == run.env and not facts.measured and facts.timeout_s == 60
    assert run.argv[:4] == ["pgbench", "--client=8", "--jobs=2", "--time=60"]
    assert "--log" in run.argv and "--progress=5" in run.argv
    assert run.timeout_s == 90 and run.measured and not init.measured
    assert run.env["PGHOST"] == "10.1.0.4" and run.env["PGPORT"] == "6432"
    assert run.env["PGPASSFILE"] == LOAD_PASSFILE
    assert "PGPASSWORD" not in run.env


BINARY = "/opt/stroppy-runs/r/stroppy"
WORKDIR = "/var/lib/stroppy/results/r/load"
URL = "postgres://stroppy@10.1.0.4:6432/stroppy?sslmode=disable"


@pytest.mark.parametrize("workload", ["tpcb/tx", "tpcb/procs", "tpcc/tx", "tpcc/procs"])
def test_stroppy_v5_loads_then_measures_the_workload(workload: str) -> None:
    """v5.7.3: `-d pg -D url=` (run.go:521-603, driver_preset.go:85-188; no DRIVER_URL), knobs as `-e`
    (run.go:402-428), VUS/DURATION (helpers.ts:601-634), SCALE_FACTOR (tpcb_common.ts:32, tpcc_common.ts:72), the
    embedded workload by name (resolve.go:171-245), load with `--no-steps workload`, measure with `--steps workload`
    (workloads/tpcb/README.md:89-91), k6's arguments after `--` (run.go:240-245) by absolute path, since k6 runs in a
    temporary directory (script_runner.go:556-574)."""
    test = make_test(version="v5.7.3", workload=workload, scale=2, clients=16, duration=45, env={"POOL_SIZE": "32"})
    prepare, facts, run = load_steps(test, CONNECTION, margin_s=30, stroppy_binary=BINARY, workdir=WORKDIR)
    assert prepare.argv == [
        BINARY, "run", workload, "-d", "pg", "-D", f"url={URL}", "-e", "POOL_SIZE=32", "-e", "SCALE_FACTOR=2",
        "--no-steps", "workload",
    ]  # fmt: skip
    assert run.argv == [
        BINARY, "run", workload, "-d", "pg", "-D", f"url={URL}",
        "-e", "POOL_SIZE=32", "-e", "VUS=16", "-e", "DURATION=45s", "-e", "SCALE_FACTOR=2",
        "--steps", "workload", "--",
        "--summary-export", f"{WORKDIR}/summary.json",
        "--summary-trend-stats", "avg,min,med,max,p(90),p(95),p(99)",
        "--out", f"csv={WORKDIR}/k6_metrics.csv",
    ]  # fmt: skip
    assert facts.name == "postgres-facts" and facts.env["PGPORT"] == "6432"  # psql connects as the load does
    assert prepare.env == run.env == {"PGPASSFILE": LOAD_PASSFILE}  # pgx reads the password from it (pool.go:80)
    assert (prepare.timeout_s, run.timeout_s) == (1800, 75)
    assert run.measured and not prepare.measured
    assert run.verdict_exits == [99, 108] and prepare.verdict_exits == []  # k6_exit.go:24-62, tpcc_common.ts:650
    assert run.files == {}


def test_a_secret_of_the_load_goes_to_the_runner_by_its_block_name_only() -> None:
    """stroppy reads the real environment before `-e` (run.go): a secret is left out of the command line, and the
    step names its block for the runner to read."""
    env = {"POOL_SIZE": "8", "K6_CLOUD_TOKEN": {"secret": "ci-token"}}
    test = make_test(version="v5.7.3", workload="tpcb/tx", env=env)
    prepare, facts, run = load_steps(test, CONNECTION, margin_s=30, stroppy_binary=BINARY, workdir=WORKDIR)
    for step in (prepare, run):
        assert "POOL_SIZE=8" in step.argv and not any("K6_CLOUD_TOKEN" in argument for argument in step.argv)
        assert step.secret_env == {"K6_CLOUD_TOKEN": "ci-token"} and "K6_CLOUD_TOKEN" not in step.env
    assert facts.secret_env == {}
    assert secret_references(test) == {"stroppy.env.K6_CLOUD_TOKEN": "ci-token"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"secret": "Not_A_Block"}, "tests[0].stroppy.env.K6_CLOUD_TOKEN"),
        ({"secret": "ok", "default": "x"}, "default"),
        ({"block": "ok"}, "K6_CLOUD_TOKEN"),
    ],
)
def test_a_bad_secret_reference_is_refused_with_its_path(value: object, message: str) -> None:
    with pytest.raises(InvalidSuiteError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_test(version="v5.7.3", workload="tpcb/tx", env={"K6_CLOUD_TOKEN": value})


def test_thresholds_go_to_k6_with_the_percentiles_they_need() -> None:
    thresholds = {
        "tx_total_duration": ["p(99.9)<50", {"threshold": "p(95)<20", "abortOnFail": True, "delayAbortEval": "30s"}],
        "tx_error_rate": ["rate<0.01"],
    }
    test = make_test(version="v5.7.3", workload="tpcb/tx", thresholds=thresholds)
    *_, run = load_steps(test, CONNECTION, margin_s=30, stroppy_binary=BINARY, workdir=WORKDIR)
    k6 = run.argv[run.argv.index("--") + 1 :]
    assert k6[k6.index("--summary-trend-stats") + 1] == "avg,min,med,max,p(90),p(95),p(99),p(99.9)"
    assert k6[-2:] == ["--config", f"{WORKDIR}/k6-options.json"]
    assert json.loads(run.files["k6-options.json"]) == {
        "thresholds": {
            "tx_total_duration": [
                {"threshold": "p(99.9)<50", "abortOnFail": False},
                {"threshold": "p(95)<20", "abortOnFail": True, "delayAbortEval": "30s"},
            ],
            "tx_error_rate": [{"threshold": "rate<0.01", "abortOnFail": False}],
        }
    }


@pytest.mark.parametrize(
    ("expressions", "added"),
    [(["p(99.9)<1"], ["p(99.9)"]), (["p(99.90)<1", "p(99.9)>0"], ["p(99.9)"]), (["p(95.0)<1"], []),
     (["p(12.3456789)<1"], ["p(12.3456789)"]), (["p(99.99999)<1"], ["p(99.99999)"]), (["p(0.5)<1"], ["p(0.5)"]),
     (["avg<1", "p(100)<1"], ["p(100)"])],
)  # fmt: skip
def test_the_summary_is_asked_for_each_percentile_under_the_key_it_is_read_by(
    expressions: list[str], added: list[str]
) -> None:
    """Named as k6 names `p(N)` (Go's shortest form), never rounded: `p(12.3456789)`, not `p(12.3457)`."""
    test = make_test(version="v5.7.3", workload="tpcb/tx", thresholds={"tx_total_duration": expressions})
    assert trend_stats(test.thresholds) == [*SUMMARY_TREND_STATS, *added]


@pytest.mark.parametrize("version", ["v1.0.0", "v2.3.0", "v3.2.1", "4.0.0", "v6.0.0"])
def test_other_stroppy_majors_are_refused(version: str) -> None:
    with pytest.raises(LoadError, match="only major 5 is supported"):
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
