"""stroppy on a runner: pinned, downloaded, verified, run; with a stand-in release served from this host.

The real release comes from GitHub, which these machines cannot reach; `tests/standin/stroppy_standin.sh` takes its
place (packed as `stroppy` in the release archive) and drives a real load. Everything from the lock file to the
checksum check and the load runs for real.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import tarfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.cli import main as cli
from flows.teardown import metrics_store
from infra.settings import OrchestrationSettings
from infra.stroppy_release import ARCHIVE_NAME
from tests.conftest import REPO
from tests.e2e.test_orchestration import NOTHING, PATRONI_BEHIND_PGBOUNCER, leftovers, run_suite

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.redis]

STANDIN = REPO / "tests" / "standin" / "stroppy_standin.sh"
STANDIN_PORT = 18765
GOOD, TAMPERED, MISSING = "v5.0.0-standin", "v5.0.1-standin", "v2.4.0-standin"


def standin_archive(extra: str = "") -> bytes:
    content = STANDIN.read_bytes() + extra.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("stroppy")
        info.size, info.mode = len(content), 0o755
        archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def release_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Serves releases on every interface (machines reach it through their gateway) and pins three of them."""
    lock = os.environ.get("STROPPY_RELEASE_LOCK")
    if not lock or str(STANDIN_PORT) not in os.environ.get("STROPPY_RELEASE_URL", ""):
        pytest.fail("start the control plane through scripts/test.sh, which points it at the stand-in releases")
    root = tmp_path_factory.mktemp("releases")
    for version in (GOOD, TAMPERED, MISSING):
        (root / version).mkdir()
        (root / version / ARCHIVE_NAME).write_bytes(standin_archive())
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(root))  # noqa: E731
    server = http.server.ThreadingHTTPServer(
        ("0.0.0.0", STANDIN_PORT), handler
    )  # machines connect through their gateway
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for version in (GOOD, TAMPERED, MISSING):
        url = f"http://127.0.0.1:{STANDIN_PORT}/{version}/{ARCHIVE_NAME}"
        assert cli(["stroppy", "pin", version, "--url", url, "--lock", lock]) == 0
    # After pinning: one release changes under its checksum, another disappears.
    (root / TAMPERED / ARCHIVE_NAME).write_bytes(standin_archive("# tampered\n"))
    shutil.rmtree(root / MISSING)
    yield root
    server.shutdown()


def stroppy_test(name: str, version: str, database: dict, **env: str) -> dict:
    load = {"driver": "stroppy", "version": version, "workload": "tpcb/tx", "scale": 1, "duration": 6, "env": env}
    return {"name": name, "stroppy": load, "database": database}


def test_pinned_stroppy_drives_a_real_load_and_bad_releases_fail_cleanly(release_server: Path) -> None:
    tests = [
        stroppy_test("stroppy-patroni", GOOD, PATRONI_BEHIND_PGBOUNCER),
        stroppy_test("tampered", TAMPERED, {"instance": {"hardware": {"cores": 1, "memory_gb": 1, "disk_gb": 10}}}),
        stroppy_test("missing", MISSING, {"instance": {"hardware": {"cores": 1, "memory_gb": 1, "disk_gb": 10}}}),
        stroppy_test("hangs", GOOD, {"instance": {"hardware": {"cores": 1, "memory_gb": 1, "disk_gb": 10}}},
                     STANDIN_HANG="1"),
        stroppy_test("unpinned", "v5.9.9", {"instance": {"hardware": {"cores": 1, "memory_gb": 1, "disk_gb": 10}}}),
    ]  # fmt: skip
    flow_run, result = run_suite(tests)
    assert flow_run.state.is_failed()
    outcomes = {outcome.test_name: outcome for outcome in result.outcomes}

    good = outcomes["stroppy-patroni"]
    assert good.state == "COMPLETED", good.message
    run = good.result
    assert [step.name for step in run.load.steps] == ["stroppy-gen", "stroppy-run"]
    assert "summary.json" in run.load.files
    summary = json.loads((Path(run.output_dir) / "summary.json").read_text())
    assert summary["metrics"]["iterations"]["count"] > 0
    assert run.connection.endswith(":6432/stroppy?sslmode=disable")
    store = metrics_store(OrchestrationSettings())
    window = (run.started_at - timedelta(seconds=30), datetime.now(UTC))
    for series in ("k6_iteration_duration", "stroppy_load_throughput"):  # stroppy's own metrics, and the common ones
        assert store.query_range(f'{series}{{run_id="{run.run_id}"}}', *window, 5), series

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
