"""A run on the Docker target needs neither the `terraform` binary nor the python-terraform library.

The run's flow runs in a separate process whose PATH has no `terraform` and where importing `python_terraform`
fails, as on a machine that never installed the cloud extra; it must still pass and leave nothing behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.test_orchestration import INSTANCE, NOTHING, leftovers, pgbench_test

pytestmark = pytest.mark.e2e

PATH_WITHOUT_TERRAFORM = "/usr/sbin:/usr/bin:/sbin:/bin"

DRIVER = """
import importlib.abc, json, shutil, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "python_terraform":
            raise ModuleNotFoundError("No module named 'python_terraform'")
        return None

sys.meta_path.insert(0, NotInstalled())
if shutil.which("terraform") is not None:
    sys.exit(f"terraform is on PATH: {shutil.which('terraform')}")

from flows.run import run_test
from stroppy_domain.model import Target
from stroppy_domain.validation import validate_suite

test = validate_suite(json.loads(sys.argv[1])).tests[0]
state = run_test(test=test, target=Target.DOCKER, return_state=True)
result = state.result(raise_on_failure=False)
print("RESULT " + json.dumps({"state": state.type.value, "run_id": result.run_id, "verdict": result.verdict}))
"""


def test_a_docker_run_passes_on_a_machine_without_terraform() -> None:
    suite = {"name": "no-terraform", "tests": [pgbench_test("no-terraform", INSTANCE, duration=3)]}
    environment = os.environ | {"PATH": PATH_WITHOUT_TERRAFORM}
    finished = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(suite)],
        env=environment, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-3000:]
    lines = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in finished.stdout.splitlines()
             if line.startswith("RESULT ")}  # fmt: skip
    assert lines["RESULT"]["state"] == "COMPLETED" and lines["RESULT"]["verdict"] == "PASSED", output[-3000:]
    assert leftovers(lines["RESULT"]["run_id"]) == NOTHING
