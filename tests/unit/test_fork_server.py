"""The workers' fork server (flows.forked_worker.start_fork_server): a fork of the worker, once it has imported the
flows, whose children start with those imports done and report their exit as the standard library's do; where the
worker already runs a thread, the standard library's own fork server (a new interpreter) instead. Each case runs in
a process of its own, as a worker command does."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.timeout(120)

PROBE = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time
    from multiprocessing import forkserver
    from flows.forked_worker import _forks, start_fork_server

    def child(code):
        assert "flows.edge" in sys.modules, "the child imports the flows again"
        if code is None:
            time.sleep(60)
        sys.exit(code)

    if __name__ == "__main__":
        if sys.argv[1] == "with a thread":
            threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        start_fork_server(("flows.edge",), ("a_library_that_is_not_installed",))
        server = forkserver._forkserver._forkserver_pid
        with open(f"/proc/{server}/cmdline", "rb") as cmdline:
            forked = cmdline.read() == open("/proc/self/cmdline", "rb").read()
        exits = []
        for code in (0, 3, None):
            process = _forks.Process(target=child, args=(code,))
            process.start()
            if code is None:
                time.sleep(1)
                os.kill(process.pid, signal.SIGKILL)
            process.join(30)
            exits.append(process.exitcode)
        print(json.dumps({"forked": forked, "exits": exits}))
    """
)


@pytest.mark.parametrize(("case", "forked"), [("alone", True), ("with a thread", False)])
def test_flow_runs_start_from_a_fork_server_with_the_flows_imported(case: str, forked: bool, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(PROBE)
    done = subprocess.run(
        [sys.executable, str(script), case], cwd=REPO, capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"forked": forked, "exits": [0, 3, -9]}
