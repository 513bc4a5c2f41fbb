"""The local control plane listens beyond loopback (machines reach it through their network's gateway), so its API
requires the auth string of scripts/lib.sh's `use_local_control_plane`: without it a client is refused; with it
every part works, and every end-to-end run proves the machines' agents send it too."""

from __future__ import annotations

import os

import httpx
import pytest

from infra.targets.docker import api_credentials
from tests.conftest import api_headers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

API_URL = os.environ["PREFECT_API_URL"]


def test_the_api_refuses_a_client_without_the_auth_string() -> None:
    assert os.environ.get("PREFECT_API_AUTH_STRING"), "the tests run against a control plane that requires auth"
    query = {"limit": 1}
    assert httpx.post(f"{API_URL}/flow_runs/filter", json=query, timeout=10).status_code == 401
    wrong = {"Authorization": "Basic c3Ryb3BweTp3cm9uZw=="}  # stroppy:wrong
    assert httpx.post(f"{API_URL}/flow_runs/filter", json=query, headers=wrong, timeout=10).status_code == 401
    assert httpx.post(f"{API_URL}/flow_runs/filter", json=query, headers=api_headers(), timeout=10).status_code == 200
    assert httpx.get(f"{API_URL}/health", timeout=10).status_code == 200, "health checks need no auth"


def test_the_machines_get_the_masters_credentials() -> None:
    assert api_credentials() == {"PREFECT_API_AUTH_STRING": os.environ["PREFECT_API_AUTH_STRING"]}
