"""Repetitions, comparisons and a real history on the whole stack: a suite compares a single instance with a Patroni
cluster over interleaved repetitions, then the single instance runs again with a CPU hog in its database container
and is judged against the runs before it."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import docker
import pytest
import requests

from infra.host_counters import read_sample
from infra.settings import OrchestrationSettings
from infra.targets.base import LABEL_RUN_ID, LABEL_SERVICE
from stroppy_domain.history import fingerprint
from stroppy_domain.host import NoiseLimits, host_evidence, judge_noise
from stroppy_domain.model import Isolation, Target
from stroppy_domain.validation import validate_suite
from tests.e2e.test_orchestration import (
    HARDWARE,
    NOTHING,
    PATRONI_BEHIND_PGBOUNCER,
    latest_artifact,
    leftovers,
    run_suite,
)

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.redis]

LOAD = {"driver": "pgbench", "workload": "tpcb", "scale": 1, "duration": 6, "clients": 2}
# One core for the database and one for the runner, exclusively: on a 2-core host each run has the host to itself,
# so its numbers are not shared with another run's, and an exclusive run waits for any shared one to finish. Commits
# do not wait for the disk, whose speed other work on the host changes: the load is bound by the CPU.
INSTANCE = {"hardware": HARDWARE, "settings": {"postgresql_conf": {"synchronous_commit": "off"}}}
DIRECT = {"name": "direct", "stroppy": LOAD, "runner_hardware": HARDWARE, "database": {"instance": INSTANCE}}
HOGS = 6
"""Busy loops beside PostgreSQL in the slowed run's database container, on its one CPU."""
# One run at a time: on 2 cores the control plane shares the runs' CPUs, and the next run's flow starting up (Python
# imports, planning) during a load costs that load a third of its throughput.
ONE_AT_A_TIME = {"STROPPY_MAX_PARALLEL_TESTS": "1"}
QUIET_WINDOW_S = 5
BASELINE_RETRIES = 3
"""How many times a baseline the product marked noisy is measured again before the slowed runs are judged on it."""
QUIET_WAIT_S = 300
"""How long the baseline waits for a host the product would not call noisy: a VM whose hypervisor takes up to 40% of
its CPU (steal) for minutes gave baselines of 248, 427 and 959 tps, where no slowdown is significant."""


def wait_for_a_quiet_host() -> list[str]:
    """Wait, at most `QUIET_WAIT_S`, until the host is quiet by the product's own noise limits (busy before, CPU
    stolen) over two windows; returns why it was still noisy at the bound (empty when quiet). The baseline is measured
    either way: this keeps it clear of a passing episode, not of a host that is noisy throughout."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while True:
        first = read_sample()
        time.sleep(QUIET_WINDOW_S)
        second = read_sample()
        time.sleep(QUIET_WINDOW_S)
        evidence = judge_noise(host_evidence(first, second, read_sample(), QUIET_WINDOW_S), [], NoiseLimits())
        if not evidence.noisy or time.monotonic() > deadline:
            return evidence.noise


@contextmanager
def cpu_hogs_in_every_new_database() -> Iterator[list[str]]:
    """While open, start `HOGS` busy loops in every PostgreSQL container that appears; yields the runs hogged. The
    loops die with their container."""
    engine = docker.from_env(timeout=60)
    hogged: list[str] = []
    stop = threading.Event()

    def hog_new_databases() -> None:
        for container in engine.containers.list(filters={"label": f"{LABEL_SERVICE}=postgres"}):
            run_id = container.labels[LABEL_RUN_ID]
            if run_id not in hogged:
                for _ in range(HOGS):
                    container.exec_run(["sh", "-c", "while :; do :; done"], detach=True)
                hogged.append(run_id)

    def watch() -> None:
        # A container that goes away or is not running between the listing and the exec, or an engine slow to answer,
        # must not end the watch: that run is tried again on the next pass.
        while not stop.wait(0.5):
            with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
                hog_new_databases()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield hogged
    finally:
        stop.set()
        watcher.join(timeout=30)
        engine.close()


def _noisy(outcomes: list[Any]) -> bool:
    return any(not (o.result and o.result.host) or o.result.host.noisy for o in outcomes)


def _noise(outcomes: list[Any]) -> list[list[str]]:
    return [o.result.host.noise if o.result and o.result.host else ["no host evidence"] for o in outcomes]


def _values(outcomes: list[Any], test: str) -> list[float]:
    return [o.result.metrics["tps"]["value"] for o in outcomes if o.test_name == test and o.result is not None]


@pytest.mark.timeout(7800)  # the suites' bounds (2400 s, 3 x 900 s, 1200 s), the quiet waits, set-up
def test_a_suite_compares_topologies_over_interleaved_repetitions_and_a_slowed_run_regresses() -> None:
    direct = validate_suite({"name": "e2e", "tests": [DIRECT]}).tests[0]
    print_ = fingerprint(direct, Target.DOCKER, Isolation.EXCLUSIVE)
    root = OrchestrationSettings().history_dir
    shutil.rmtree(root / "runs" / print_, ignore_errors=True)  # earlier runs of this test on this checkout
    patroni = {"name": "patroni", "isolation": "shared", "stroppy": LOAD, "database": PATRONI_BEHIND_PGBOUNCER}
    compared = [DIRECT | {"repeat": 3}, patroni | {"repeat": 3}]
    comparison = {"baseline": "direct", "candidates": ["patroni"], "metric": "tps", "min_effect": "5%"}
    print("host before the baseline:", wait_for_a_quiet_host() or "quiet")
    flow_run, result = run_suite(compared, timeout_s=2400, env=ONE_AT_A_TIME, name="e2e-compare", compare=[comparison])
    assert flow_run.state.is_completed(), [(o.test_name, o.state, o.message) for o in result.outcomes]
    assert [(o.test_name, o.repetition) for o in result.outcomes] == [
        ("direct", 1), ("patroni", 1), ("direct", 2), ("patroni", 2), ("direct", 3), ("patroni", 3),
    ]  # fmt: skip
    (verdict,) = result.comparisons
    assert (verdict.baseline, verdict.candidate, verdict.baseline_runs, verdict.candidate_runs) == (
        "direct", "patroni", 3, 3,
    )  # fmt: skip
    assert verdict.ci_low_percent is not None and verdict.ci_high_percent is not None
    assert verdict.ci_low_percent <= verdict.change_percent <= verdict.ci_high_percent, verdict
    assert f"{verdict.change_percent:+.1f}% tps value, 95% CI {verdict.ci_low_percent:+.1f}%" in verdict.summary
    summed = {r.test: r for r in result.repetitions}
    assert sorted(summed) == ["direct", "patroni"]
    assert sorted(summed["direct"].values) == sorted(_values(result.outcomes, "direct"))
    report = latest_artifact("suite-e2e-compare-comparisons")["data"]
    assert f"| patroni | direct | tps value | 3 vs 3 | {verdict.verdict} | {verdict.summary} |" in report, report
    rows = json.loads(latest_artifact("suite-e2e-compare")["data"])
    assert [row["repetition"] for row in rows] == ["1/3", "1/3", "2/3", "2/3", "3/3", "3/3"]
    for outcome in result.outcomes:
        assert leftovers(outcome.run_id) == NOTHING
    baseline = [o for o in result.outcomes if o.test_name == "direct"]
    for _ in range(BASELINE_RETRIES):
        if not _noisy(baseline):
            break
        # The product marked the history noisy (CPU stolen by the hypervisor, a busy host): measured again, alone.
        shutil.rmtree(root / "runs" / print_, ignore_errors=True)
        print("noisy baseline:", _noise(baseline), "host now:", wait_for_a_quiet_host() or "quiet")
        flow_run, again = run_suite([DIRECT | {"repeat": 3}], timeout_s=900, env=ONE_AT_A_TIME, name="e2e-baseline")
        assert flow_run.state.is_completed(), [(o.test_name, o.state, o.message) for o in again.outcomes]
        baseline = again.outcomes
    history = [o.run_id for o in baseline]
    baseline_values = _values(baseline, "direct")

    # The same setup again, four times, with its database's CPU taken by busy loops: the fingerprint is unchanged, so
    # the three runs above are its history. Four slowed runs keep the verdict clear of a spread baseline: with four, a
    # baseline as spread as 800, 900, 1200 tps still gives p = 0.002. A baseline the product marked noisy is measured
    # again first: with the hypervisor stealing up to 40% of the CPU, baselines of 248, 427, 959 and 314, 903, 538 tps
    # came out, where no slowdown is significant.
    slowed = DIRECT | {"repeat": 4, "regression": {"metric": "tps", "max_drop": "10%"}}
    with cpu_hogs_in_every_new_database() as hogged:
        flow_run, result = run_suite([slowed], timeout_s=1200, env=ONE_AT_A_TIME, name="e2e-slowed")
    seen = [(o.run_id in hogged, o.state, o.result and o.result.regression) for o in result.outcomes]
    assert flow_run.state.is_failed(), (baseline_values, _noise(baseline), _values(result.outcomes, "direct"), seen)
    first, *_, last = result.outcomes
    assert sorted(hogged) == sorted(outcome.run_id for outcome in result.outcomes)
    assert last.state == "FAILED" and last.result is not None and last.result.fingerprint == print_, last
    judged = last.result.regression
    assert judged is not None and judged.verdict == "regression", judged
    assert (judged.baseline.runs, judged.baseline.first_run, judged.baseline.last_run) == (3, history[0], history[2])
    assert judged.change_started_at_run == first.run_id and judged.change_percent < -10, judged
    assert "tps value regression" in last.result.reason, last.result.reason
    assert max(_values(result.outcomes, "direct")) < min(baseline_values)
    for outcome in result.outcomes:
        assert leftovers(outcome.run_id) == NOTHING
