"""The end-to-end tests' shared parts: the control plane must answer, and Grafana's stand-in serves every run.

The master reads the name of its Grafana block from STROPPY_GRAFANA_BLOCK (scripts/test.sh sets it); this fixture
saves that block, pointing at a stand-in of Grafana's HTTP API in this process, for the whole session.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import httpx
import pytest
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from blocks.grafana import GrafanaConnection
from infra.settings import OrchestrationSettings
from tests.standin.grafana_standin import GrafanaStandIn

SCHEDULED_DEPLOYMENTS = ("stroppy-test-suite/nightly", "stroppy-reaper/scheduled")


@pytest.fixture(scope="session", autouse=True)
def control_plane() -> None:
    """The control plane answers, with its schedules paused: a nightly suite or a reaper must not join the tests."""
    api = os.environ["PREFECT_API_URL"]
    try:
        httpx.get(f"{api}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        pytest.fail(f"no Prefect server at {api}; start it with `bash scripts/control-plane.sh start`: {error}")
    asyncio.run(_pause(SCHEDULED_DEPLOYMENTS))


async def _pause(names: tuple[str, ...]) -> None:
    async with get_client() as client:
        for name in names:
            await client.pause_deployment((await client.read_deployment_by_name(name)).id)


@pytest.fixture(scope="session", autouse=True)
def grafana(control_plane: None) -> Iterator[GrafanaStandIn]:
    settings = OrchestrationSettings()
    if not settings.grafana_block:
        pytest.fail("STROPPY_GRAFANA_BLOCK is not set; run the tests through scripts/test.sh")
    token = secrets.token_urlsafe(16)
    with GrafanaStandIn(token) as standin:
        GrafanaConnection(
            url=standin.url, token=SecretStr(token), datasource_url=settings.metrics_url, timeout_s=5
        ).save(settings.grafana_block, overwrite=True)
        yield standin
