"""The edge image holds what a run's machine runs, the agent and the load's clients, and nothing of a database
server, of its own build or of what only the master uses; the master image (compose.yaml's master) adds that."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from infra.images import ImageSet, build_images

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


def _run(command: str, image: str | None = None) -> str:
    client = docker.from_env(timeout=120)
    try:
        output = client.containers.run(
            image or ImageSet.for_checkout().edge, ["sh", "-c", command], remove=True, network_disabled=True,
            user="nobody",
        )  # fmt: skip
    except docker.errors.ImageNotFound:
        pytest.fail("the edge image is missing; build it with `uv run python -m infra.images build`")
    finally:
        client.close()
    return output.decode().strip()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("pgbench --version", "pgbench (PostgreSQL) 17."),
        ("psql --version", "psql (PostgreSQL) 17."),
        ("python -c 'import flows.edge, stroppy_domain.load; print(\"agent ok\")'", "agent ok"),
        ("stroppy-flows --help | head -1", "usage: stroppy-flows"),
    ],
)
def test_the_machine_runs_its_agent_and_the_load_clients(command: str, expected: str) -> None:
    assert _run(command).startswith(expected)


@pytest.mark.parametrize("absent", ["postgres", "pg_ctl", "initdb", "pip"])
def test_the_machine_carries_no_server_and_no_build_tools(absent: str) -> None:
    found = _run(f"command -v {absent} || find / -xdev -name {absent} -type f -perm -u+x 2>/dev/null | head -1")
    assert found == "", f"{absent} is in the edge image: {found}"


@pytest.mark.parametrize("module", ["boto3", "prefect_aws", "prefect_docker", "grafana_client", "pygal"])
def test_the_machine_carries_none_of_the_masters_own_packages(module: str) -> None:
    found = _run(f'python -c \'import importlib.util; print(importlib.util.find_spec("{module}") or "")\'')
    assert found == "", f"{module} is in the edge image: {found}"


@pytest.fixture(scope="module")
def master_image() -> Iterator[str]:
    """Built here (the stack builds only what runs use), from the edge build's cached layers."""
    client = docker.from_env(timeout=120)
    try:
        yield build_images(client, progress=lambda _: None, master=True).master
    finally:
        client.close()


@pytest.mark.timeout(1200)
def test_the_master_image_adds_the_masters_packages_to_the_edge(master_image: str) -> None:
    modules = "boto3, prefect_aws, prefect_docker, grafana_client, grafana_foundation_sdk, pygal, flows.suite_report"
    assert _run(f"python -c 'import {modules}; print(\"master ok\")'", master_image) == "master ok"
    assert _run("pgbench --version", master_image).startswith("pgbench (PostgreSQL) 17.")
    found = _run("command -v pip || true", master_image)
    assert found == "", f"pip is in the master image: {found}"
