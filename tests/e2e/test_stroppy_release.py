"""stroppy on a runner: pinned, downloaded, verified, run; with a stand-in release served from this host.

The real release comes from GitHub, which these machines cannot reach; `tests/standin/stroppy_standin.py` takes its
place (packed as `stroppy` beside the real k6 binary, see tests/standin/stroppy_archive.py). It parses the command
line as stroppy v5.7.3 does, drives a real load with pgbench, and has k6 itself replay the transactions live, so the
summary, the thresholds and exit code 99 are k6's. Everything from the lock file to the checksum check, the command
the driver builds and the verdict runs for real.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.cli import main as cli
from flows.teardown import metrics_store
from infra.settings import OrchestrationSettings
from infra.stroppy_release import ARCHIVE_NAME
from tests.e2e.test_orchestration import NOTHING, PATRONI_BEHIND_PGBOUNCER, leftovers, run_suite
from tests.standin.stroppy_archive import standin_archive

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.redis]

STANDIN_PORT = 18765
GOOD, TAMPERED, MISSING, HANGS = "v5.0.0-standin", "v5.0.1-standin", "v5.0.2-standin", "v5.0.3-standin"
INSTANCE = {"instance": {"hardware": {"cores": 1, "memory_gb": 1, "disk_gb": 10}}}


@pytest.fixture(scope="module")
def release_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Serves releases on every interface (machines reach it through their gateway) and pins four of them."""
    lock = os.environ.get("STROPPY_RELEASE_LOCK")
    if not lock or str(STANDIN_PORT) not in os.environ.get("STROPPY_RELEASE_URL", ""):
        pytest.fail("start the control plane through scripts/test.sh, which points it at the stand-in releases")
    root = tmp_path_factory.mktemp("releases")
    for version in (GOOD, TAMPERED, MISSING, HANGS):
        (root / version).mkdir()
        (root / version / ARCHIVE_NAME).write_bytes(standin_archive(hang=version == HANGS))
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(
        ("0.0.0.0", STANDIN_PORT), handler
    )  # machines connect through their gateway
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for version in (GOOD, TAMPERED, MISSING, HANGS):
        url = f"http://127.0.0.1:{STANDIN_PORT}/{version}/{ARCHIVE_NAME}"
        assert cli(["stroppy", "pin", version, "--url", url, "--lock", lock]) == 0
    # After pinning: one release changes under its checksum, another disappears.
    (root / TAMPERED / ARCHIVE_NAME).write_bytes(standin_archive(extra="# tampered\n"))
    shutil.rmtree(root / MISSING)
    yield root
    server.shutdown()


def stroppy_test(name: str, version: str, database: dict, thresholds: dict | None = None, clients: int = 2) -> dict:
    """A short stroppy test whose machines share the host's CPUs (they want more cores than a CI host has)."""
    load = {"driver": "stroppy", "version": version, "workload": "tpcb/tx", "scale": 1, "duration": 6,
            "clients": clients}  # fmt: skip
    return {"name": name, "isolation": "shared", "stroppy": load, "database": database, "thresholds": thresholds or {}}


ONE_CORE_RUNNER = {"cores": 1, "memory_gb": 2, "disk_gb": 10}
"""With the 1-core instance, a run of 2 cores: it fits a 2-core host in exclusive isolation."""


@pytest.mark.timeout(1800)
def test_pinned_stroppy_drives_a_real_load_judged_by_k6_and_bad_releases_fail_cleanly(release_server: Path) -> None:
    tests = [
        stroppy_test("stroppy-patroni", GOOD, PATRONI_BEHIND_PGBOUNCER, clients=3,
                     thresholds={"tx_count": ["count>0"], "tx_error_rate": ["rate<0.5"]}),
        stroppy_test("too-slow", GOOD, INSTANCE, thresholds={"tx_total_duration": ["p(95)<0.001"]})
        | {"isolation": "exclusive", "runner_hardware": ONE_CORE_RUNNER},
        stroppy_test("tampered", TAMPERED, INSTANCE),
        stroppy_test("missing", MISSING, INSTANCE),
        stroppy_test("hangs", HANGS, INSTANCE),
        stroppy_test("unpinned", "v5.9.9", INSTANCE),
    ]  # fmt: skip
    flow_run, result = run_suite(tests)
    assert flow_run.state.is_failed()
    outcomes = {outcome.test_name: outcome for outcome in result.outcomes}

    good = outcomes["stroppy-patroni"]
    assert good.state == "COMPLETED", good.message
    run = good.result
    assert [step.name for step in run.load.steps] == ["stroppy-prepare", "postgres-facts", "stroppy-run"]
    assert run.manifest is not None and run.manifest.postgres_version, run.manifest
    assert run.manifest.postgres_version.startswith("17.") and run.versions["postgresql"].startswith("17.")
    assert run.manifest.postgres_settings and run.manifest.load_tool_sha256
    assert run.manifest.load_tool_version == "stroppy v5-standin; k6 v1.1.0", run.manifest.load_tool_version
    assert re.fullmatch(r"[0-9a-f]{64}", run.manifest.load_tool_binary_sha256 or ""), run.manifest
    reported = {key.split(" on ")[0]: version for key, version in run.manifest.service_versions.items()}
    assert {"patroni", "etcd", "pgbouncer", "node_exporter", "postgres_exporter"} <= set(reported), reported
    assert re.fullmatch(r"4\.\d+\.\d+", reported["patroni"]) and reported["etcd"].startswith("3.5."), reported
    assert run.manifest.image_packages and all(
        listed.count > 50 and (Path(run.output_dir).parent / listed.file).is_file()
        for listed in run.manifest.image_packages.values()
    ), run.manifest.image_packages
    assert {"summary.json", "k6_metrics.csv", "k6-options.json"} <= set(run.load.files)
    output = Path(run.output_dir)
    assert "number of clients: 3" in (output / "standin-pgbench.log").read_text()  # clients became VUS
    summary = json.loads((output / "summary.json").read_text())
    assert summary["metrics"]["tx_count"]["count"] > 0
    assert summary["metrics"]["tx_count"]["thresholds"] == {"count>0": False}  # k6's own verdict: not crossed
    assert {(c.metric, c.reason) for c in run.checks} == {
        ("tx_count", "judged by k6"),
        ("tx_error_rate", "judged by k6"),
    }
    assert run.connection.endswith(":6432/stroppy?sslmode=disable")
    assert run.host is not None and run.host.cpus >= 1 and run.host.window_s >= 6, run.host_error
    recorded = json.loads((output.parent / "result.json").read_text())
    assert recorded["host"]["busy_pct"] > 0 and recorded["host"]["kernel"]  # the load's own CPU, the host's kernel
    assert recorded["manifest"]["postgres_version"] == run.manifest.postgres_version
    store = metrics_store(OrchestrationSettings())
    window = (run.started_at - timedelta(seconds=30), datetime.now(UTC))
    for series in ("k6_tx_total_duration", "stroppy_load_throughput"):  # stroppy's own metrics, and the common ones
        assert store.query_range(f'{series}{{run_id="{run.run_id}"}}', *window, 5), series

    slow = outcomes["too-slow"]
    assert slow.state == "FAILED" and slow.result is not None, slow.message
    assert slow.result.verdict == "FAILED" and slow.result.load.steps[-1].exit_code == 99
    (check,) = slow.result.checks
    assert not check.passed and check.observed is not None and check.observed > 0.001 and check.reason == "judged by k6"
    assert "tx_total_duration p(95)<0.001 (observed" in slow.result.reason
    isolation = slow.result.isolation  # its CPUs were its own, while the shared runs waited or it waited for them
    assert isolation is not None and isolation.isolation == "exclusive", isolation
    assert sorted(isolation.cpus) == ["postgres-master", "stroppy-runner"], isolation
    assert len(set(isolation.cpus.values())) == 2 and all("," not in cpus for cpus in isolation.cpus.values())

    expected = {
        "tampered": "does not match the pinned",
        "missing": "HTTP 404",
        "hangs": "ran past its bound",
        "unpinned": "has no recorded checksum",
    }
    for name, reason in expected.items():
        assert outcomes[name].state == "FAILED", (name, outcomes[name])
        assert reason in outcomes[name].message, (name, outcomes[name].message)
    for outcome in result.outcomes:
        assert leftovers(outcome.run_id) == NOTHING, outcome.test_name
