"""The local control plane's auth string reaches its clients on this machine, and never another host."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local_control_plane import AUTH_FILE, use_local_auth


@pytest.mark.parametrize(
    ("url", "already", "given"),
    [
        ("http://127.0.0.1:4200/api", {}, True),
        ("http://localhost:4300/api", {}, True),
        ("http://prefect.example.com:4200/api", {}, False),
        ("http://10.0.0.5:4200/api", {}, False),
        ("", {}, False),
        ("http://127.0.0.1:4200/api", {"PREFECT_API_AUTH_STRING": "mine:own"}, False),
        ("http://127.0.0.1:4200/api", {"PREFECT_API_KEY": "pnu_key"}, False),
    ],
)
def test_the_auth_string_goes_only_to_a_local_api_without_credentials(
    tmp_path: Path, url: str, already: dict[str, str], given: bool
) -> None:
    (tmp_path / AUTH_FILE).parent.mkdir(parents=True)
    (tmp_path / AUTH_FILE).write_text("stroppy:local-secret\n")
    environ = {"STROPPY_STATE_DIR": str(tmp_path), "PREFECT_API_URL": url} | already
    assert use_local_auth(environ) is given
    expected = "stroppy:local-secret" if given else already.get("PREFECT_API_AUTH_STRING")
    assert environ.get("PREFECT_API_AUTH_STRING") == expected


def test_no_auth_file_sets_nothing(tmp_path: Path) -> None:
    environ = {"STROPPY_STATE_DIR": str(tmp_path), "PREFECT_API_URL": "http://127.0.0.1:4200/api"}
    assert not use_local_auth(environ) and "PREFECT_API_AUTH_STRING" not in environ
