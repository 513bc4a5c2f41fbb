"""The Yandex Cloud files checked offline with the real tools: `terraform fmt`, and Debian's `cloud-init schema`.

(`terraform validate` needs the yandex provider, which these machines cannot download.)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stroppy_domain.cloud import EdgeBootstrap, edge_user_data
from tests.conftest import REPO


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (scripts/test.sh installs cloud-init; terraform comes with the machine)")
    return path


def test_the_yandex_module_is_formatted() -> None:
    finished = subprocess.run(
        [tool("terraform"), "fmt", "-check", "-diff", str(REPO / "infra" / "terraform" / "yandex")],
        capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout + finished.stderr


@pytest.mark.parametrize("public_url", ["http://10.0.0.5:4200/api", "https://prefect.example.com/api"])
def test_edge_user_data_is_valid_cloud_config(tmp_path: Path, public_url: str) -> None:
    bootstrap = EdgeBootstrap(
        queue="run-0123456789ab-stroppy-runner", prefect_api_url=public_url,
        package_url="https://releases.example.com/stroppy_flows-0.1.0-py3-none-any.whl", package_sha256="b" * 64,
        lockbox_secret_id="e6qsecret",
    )  # fmt: skip
    user_data = tmp_path / "user-data"
    user_data.write_text(edge_user_data(bootstrap))
    finished = subprocess.run(
        [tool("cloud-init"), "schema", "--config-file", str(user_data)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "Valid" in finished.stdout + finished.stderr


def test_cloud_init_schema_does_catch_a_broken_config(tmp_path: Path) -> None:
    broken = tmp_path / "user-data"
    broken.write_text("#cloud-config\npackages: 42\nruncmd: {not: a list}\n")
    finished = subprocess.run(
        [tool("cloud-init"), "schema", "--config-file", str(broken)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert finished.returncode != 0
