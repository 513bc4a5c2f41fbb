"""The Terraform runner with the real `terraform` binary, on a module of built-in resources (tests/terraform)."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from infra.terraform import STATE_FILE, VARIABLES_FILE, TerraformError, TerraformRunner, TerraformSettings
from tests.conftest import REPO

MODULE = REPO / "tests" / "terraform" / "data_module"
MACHINES = {"postgres-master": {"ip": "10.9.0.4"}, "stroppy-runner": {"ip": "10.9.0.5"}}
TOKEN = "yc-token-never-shown-7f3a"


@pytest.fixture
def settings(tmp_path: Path) -> TerraformSettings:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.fail("the terraform binary is not on PATH")
    return TerraformSettings(
        binary=binary, state_root=tmp_path / "state", plugin_cache_dir=tmp_path / "plugins", apply_timeout_s=60
    )


def runner(settings: TerraformSettings, lines: list[str] | None = None) -> TerraformRunner:
    log = lines.append if lines is not None else (lambda line: None)
    return TerraformRunner(MODULE, settings, {"YC_TOKEN": TOKEN}, log=log)


def resources(settings: TerraformSettings, run_id: str) -> list[str]:
    state = json.loads((settings.state_root / run_id / STATE_FILE).read_text())
    return sorted(f"{r['type']}.{r['name']}[{i['index_key']}]" for r in state["resources"] for i in r["instances"])


def test_apply_returns_the_outputs_and_keeps_state_and_variables_private(settings: TerraformSettings) -> None:
    outputs = runner(settings).apply("run-a", {"machines": MACHINES})
    assert outputs == {"addresses": {"postgres-master": "10.9.0.4", "stroppy-runner": "10.9.0.5"}}
    assert resources(settings, "run-a") == [
        "terraform_data.machine[postgres-master]", "terraform_data.machine[stroppy-runner]"
    ]  # fmt: skip
    variables = settings.state_root / "run-a" / VARIABLES_FILE
    assert stat.S_IMODE(variables.stat().st_mode) == 0o600
    assert runner(settings).apply("run-a", {"machines": MACHINES}) == outputs  # a retry converges


def test_a_restarted_master_destroys_from_the_persisted_state(settings: TerraformSettings) -> None:
    runner(settings).apply("run-b", {"machines": MACHINES})
    restarted = runner(settings)  # a new process: nothing in memory, only the state root on disk
    (settings.state_root / "not-a-run").mkdir()
    assert restarted.runs() == ["run-b"]
    assert restarted.outputs("run-b")["addresses"]["stroppy-runner"] == "10.9.0.5"
    assert restarted.destroy("run-b") is True
    assert not (settings.state_root / "run-b").exists()
    assert restarted.destroy("run-b") is False
    assert restarted.runs() == []


def test_a_failed_apply_names_the_run_masks_credentials_and_is_cleaned_up(settings: TerraformSettings) -> None:
    lines: list[str] = []
    with pytest.raises(TerraformError, match=r"terraform apply for run-c failed \(exit 1\)") as failure:
        runner(settings, lines).apply("run-c", {"machines": MACHINES, "fail": True})
    assert "token is ****, log level WARN" in str(failure.value)
    assert lines and TOKEN not in str(failure.value) and not any(TOKEN in line for line in lines)
    assert len(resources(settings, "run-c")) >= 2  # the machines exist: the failure came after them
    assert runner(settings).destroy("run-c") is True
    assert not (settings.state_root / "run-c").exists()


def test_each_line_of_a_multi_line_credential_is_masked(settings: TerraformSettings) -> None:
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    lines: list[str] = []
    masked = TerraformRunner(MODULE, settings, {"YC_TOKEN": key}, log=lines.append)
    with pytest.raises(TerraformError) as failure:
        masked.apply("run-e", {"machines": MACHINES, "fail": True})
    shown = "\n".join([*lines, str(failure.value)])
    assert "token is ****" in shown
    assert not [line for line in key.splitlines() if line in shown]
    assert masked.destroy("run-e") is True


def test_an_apply_past_its_bound_is_stopped_and_still_destroyable(settings: TerraformSettings) -> None:
    bounded = settings.model_copy(update={"apply_timeout_s": 5})
    with pytest.raises(TerraformError, match="ran past its bound of 5 s"):
        runner(bounded).apply("run-d", {"machines": MACHINES, "hang_s": 120})
    assert runner(settings).destroy("run-d") is True


def test_a_missing_binary_is_a_clear_error(settings: TerraformSettings) -> None:
    absent = settings.model_copy(update={"binary": "/nonexistent/terraform"})
    with pytest.raises(TerraformError, match="cannot start /nonexistent/terraform"):
        runner(absent).apply("run-e", {"machines": MACHINES})


def test_nothing_loads_terraform_for_docker_runs() -> None:
    probe = "import sys, flows.run, flows.suite, flows.reaper, infra.targets, infra.terraform; " \
            "print('python_terraform' in sys.modules)"  # fmt: skip
    finished = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert finished.stdout.strip() == "False"
