"""Shared test data: a minimal valid suite to mutate, and the examples directory."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

# Prefect reads its settings when first imported; point every test at the control plane of
# scripts/control-plane.sh, never at a temporary server.
os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parent.parent
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


def fresh_suite() -> dict[str, Any]:
    """A deep copy of a valid suite with an instance test and a Patroni cluster test."""
    return copy.deepcopy(BASE_SUITE)


def fixed_passwords(purpose: str) -> str:
    """Deterministic passwords, so plans can be compared byte for byte."""
    return f"secret{purpose.capitalize()}0123456789"


@pytest.fixture
def suite_data() -> dict[str, Any]:
    return fresh_suite()
