"""scripts/control-plane.sh refuses a setting it would otherwise pass on to a command line or a configuration file,
naming it, before it starts anything."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.timeout(60)]


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("STROPPY_PREFECT_DATABASE", "mysql", "STROPPY_PREFECT_DATABASE=mysql"),
        ("STROPPY_MASTER_WORKERS", "2; touch /tmp/pwned", "STROPPY_MASTER_WORKERS="),
        ("STROPPY_MASTER_WORKERS", "0", "STROPPY_MASTER_WORKERS=0"),
        ("STROPPY_PREFECT_DB_PORT", "5433 -c shared_preload_libraries=evil", "STROPPY_PREFECT_DB_PORT="),
        ("STROPPY_PREFECT_DB_PORT", "70000", "STROPPY_PREFECT_DB_PORT=70000"),
        ("STROPPY_PREFECT_DB_PORT", "0x10", "STROPPY_PREFECT_DB_PORT=0x10"),
        ("STROPPY_STATE_DIR", 'state"$(touch pwned)', "STROPPY_STATE_DIR="),
    ],
)
def test_a_hostile_setting_is_refused_before_anything_starts(
    tmp_path: Path, setting: str, value: str, named: str
) -> None:
    env = {**os.environ, "STROPPY_STATE_DIR": str(tmp_path / "state"), "STROPPY_PREFECT_DATABASE": "postgresql"}
    env[setting] = str(tmp_path / value) if setting == "STROPPY_STATE_DIR" else value
    env["STROPPY_PREFECT_PORT"] = "1"  # nothing answers there: the script must stop before it looks
    finished = subprocess.run(
        ["bash", str(REPO / "scripts" / "control-plane.sh"), "start"],
        env=env, capture_output=True, text=True, timeout=30, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert finished.returncode == 2, finished.stderr
    assert named in finished.stderr, finished.stderr
    assert not (tmp_path / "pwned").exists() and not Path("/tmp/pwned").exists()
    assert not (tmp_path / "state" / "prefect-db").exists()
