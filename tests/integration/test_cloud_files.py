"""The Yandex Cloud files checked offline with the real tools: `terraform fmt`, Debian's `cloud-init schema`, the
shell and `systemd-analyze verify` on what the machines run, and the release they install (uv's hash-pinned export
of the lock).

(`terraform validate` needs the yandex provider, which these machines cannot download.)
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from infra.images import edge_release
from stroppy_domain.cloud import EdgeBootstrap, EdgeRelease, edge_user_data
from tests.conftest import REPO


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (scripts/test.sh installs cloud-init; terraform comes with the machine)")
    return path


def edge_bootstrap(prefect_api_url: str) -> EdgeBootstrap:
    release = EdgeRelease(
        prefect_api_url=prefect_api_url,
        package_url="https://releases.example.com/stroppy_flows-0.1.0-py3-none-any.whl", package_sha256="b" * 64,
        requirements_url="https://releases.example.com/requirements.txt", requirements_sha256="d" * 64,
    )  # fmt: skip
    return EdgeBootstrap(
        queue="run-0123456789ab-stroppy-runner", lockbox_secret_id="e6qsecret",
        release=release,
    )  # fmt: skip


def test_the_yandex_module_is_formatted() -> None:
    finished = subprocess.run(
        [tool("terraform"), "fmt", "-check", "-diff", str(REPO / "infra" / "terraform" / "yandex")],
        capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout + finished.stderr


@pytest.mark.parametrize("public_url", ["http://10.0.0.5:4200/api", "https://prefect.example.com/api"])
def test_edge_user_data_is_valid_cloud_config(tmp_path: Path, public_url: str) -> None:
    bootstrap = edge_bootstrap(public_url)
    user_data = tmp_path / "user-data"
    user_data.write_text(edge_user_data(bootstrap))
    finished = subprocess.run(
        [tool("cloud-init"), "schema", "--config-file", str(user_data)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "Valid" in finished.stdout + finished.stderr
    scripts = [
        item for item in yaml.safe_load(user_data.read_text())["write_files"] if item["content"].startswith("#!")
    ]
    assert len(scripts) == 2
    for script in scripts:  # the shell itself parses every script the machine runs
        parsed = subprocess.run(["/bin/sh", "-n"], input=script["content"], capture_output=True, text=True, check=False)
        assert parsed.returncode == 0, (script["path"], parsed.stderr)


def test_cloud_init_schema_does_catch_a_broken_config(tmp_path: Path) -> None:
    broken = tmp_path / "user-data"
    broken.write_text("#cloud-config\npackages: 42\nruncmd: {not: a list}\n")
    finished = subprocess.run(
        [tool("cloud-init"), "schema", "--config-file", str(broken)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert finished.returncode != 0


def test_the_release_pins_every_dependency_by_hash_and_leaves_out_extras_and_dev_tools(tmp_path: Path) -> None:
    files = edge_release(tmp_path / "release", progress=lambda _: None)
    assert files.package_sha256 == hashlib.sha256(files.package.read_bytes()).hexdigest()
    assert files.requirements_sha256 == hashlib.sha256(files.requirements.read_bytes()).hexdigest()
    with zipfile.ZipFile(files.package) as wheel:
        assert "flows/edge.py" in wheel.namelist() and "infra/containers.py" in wheel.namelist()
    # One requirement per entry: a `name==version` line followed by its `--hash` continuation lines.
    entries = re.split(r"\n(?=[a-z0-9])", files.requirements.read_text().strip(), flags=re.I)
    entries = [entry for entry in entries if not entry.startswith("#")]
    names = {entry.split("==")[0].strip() for entry in entries}
    assert {"prefect", "docker", "pydantic", "redis", "httpx"} <= names
    assert not names & {"python-terraform", "moto", "pytest", "playwright", "ruff"}
    assert all("==" in entry and "--hash=sha256:" in entry for entry in entries), entries[:3]


def _unit_problems(unit: Path) -> list[str]:
    """What systemd itself finds wrong with a unit, apart from the binaries only a machine has."""
    finished = subprocess.run(
        [tool("systemd-analyze"), "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    installed_on_the_machine = ("/usr/local/lib/stroppy/fetch-credentials", "/opt/stroppy-flows/bin/stroppy-flows")
    return [
        line for line in (finished.stdout + finished.stderr).splitlines()
        if line.strip() and not any(f"Command {path} is not executable" in line for path in installed_on_the_machine)
    ]  # fmt: skip


def test_the_edge_unit_is_one_systemd_accepts(tmp_path: Path) -> None:
    bootstrap = edge_bootstrap("http://10.0.0.5:4200/api")
    files = {item["path"]: item["content"] for item in yaml.safe_load(edge_user_data(bootstrap))["write_files"]}
    unit = tmp_path / "stroppy-edge.service"
    unit.write_text(files["/etc/systemd/system/stroppy-edge.service"])
    assert _unit_problems(unit) == []

    broken = tmp_path / "broken.service"  # the check does catch a mistyped hardening option
    broken.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSistem=strict"))
    assert any("Unknown key 'ProtectSistem'" in line for line in _unit_problems(broken))
