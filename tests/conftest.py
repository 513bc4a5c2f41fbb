"""Shared test data: a minimal valid suite to mutate, and the examples directory."""

from __future__ import annotations

import base64
import copy
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from infra.local_control_plane import use_local_auth

REPO = Path(__file__).resolve().parent.parent
# Prefect reads its settings when first imported; point every test at the control plane of
# scripts/control-plane.sh, never at a temporary server, with the auth string that server requires.
os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
use_local_auth()
EXAMPLES = REPO / "examples"

HARDWARE = {"cores": 2, "memory_gb": 4, "disk_gb": 20}

BASE_SUITE: dict[str, Any] = {
    "name": "base",
    "tests": [
        {
            "name": "instance",
            "stroppy": {"version": "v5.0.0", "workload": "tpcc/tx", "duration": "1m"},
            "database": {"instance": {"hardware": HARDWARE}},
        },
        {
            "name": "cluster",
            "stroppy": {"version": "v5.0.0", "workload": "tpcb/tx"},
            "database": {
                "cluster": {
                    "topology": {
                        "settings": {"patroni": {"enabled": True}},
                        "master_hardware": HARDWARE,
                        "replica_hardware": HARDWARE,
                        "replicas": 2,
                    },
                    "addons": {
                        "etcd": {"size": 3, "placement": {"colocate": {"scope": "all_nodes"}}},
                        "pgbouncer": {"placement": {"colocate": {"scope": "master"}}},
                    },
                }
            },
        },
    ],
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def api_headers() -> dict[str, str]:
    """What a raw HTTP client of the control plane sends, as Prefect's own client does."""
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}


def fresh_suite() -> dict[str, Any]:
    """A deep copy of a valid suite with an instance test and a Patroni cluster test."""
    return copy.deepcopy(BASE_SUITE)


def fixed_passwords(purpose: str) -> str:
    """Deterministic passwords, so plans can be compared byte for byte."""
    return f"secret{purpose.capitalize()}0123456789"


@pytest.fixture
def suite_data() -> dict[str, Any]:
    return fresh_suite()
