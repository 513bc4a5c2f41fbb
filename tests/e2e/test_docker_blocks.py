"""The Docker target reaches its engine through a prefect-docker `DockerHost` block, and machines log in to the
image registry with a `DockerRegistryCredentials` block (real Prefect server, engine and registry)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from prefect_docker.credentials import DockerRegistryCredentials
from prefect_docker.host import DockerHost
from pydantic import SecretStr

from infra.containers import registry_login
from infra.settings import OrchestrationSettings
from infra.targets import open_target
from infra.targets.base import TargetError, TargetModule
from infra.targets.docker import DockerSettings, docker_client
from stroppy_domain.model import Target

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(180)]

ENGINE = "unix:///var/run/docker.sock"  # where scripts/engine.sh's dockerd listens
REGISTRY = "127.0.0.1:5000"  # scripts/services.sh registry


@pytest.fixture
def block_name() -> Iterator[str]:
    name = f"docker-{uuid.uuid4().hex[:8]}"
    yield name
    for block_type in (DockerHost, DockerRegistryCredentials):
        try:
            block_type.delete(name, _sync=True)  # type: ignore[call-arg]
        except ValueError:
            continue


def test_the_docker_target_opens_the_engine_its_saved_block_names(
    block_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    DockerHost(base_url=ENGINE, timeout=30).save(block_name)
    monkeypatch.setenv("STROPPY_DOCKER_HOST_BLOCK", block_name)
    with docker_client() as client:
        assert client.api.base_url == "http+docker://localhost"  # the unix socket the block names
        assert client.api.timeout == 30
        assert client.ping()
    with open_target(Target.DOCKER, OrchestrationSettings()) as backend:
        assert backend.list_runs() is not None


def test_an_engine_that_does_not_answer_is_named_in_the_error(block_name: str) -> None:
    DockerHost(base_url="tcp://127.0.0.1:1", timeout=2).save(block_name)
    with pytest.raises(TargetError, match=r"tcp://127\.0\.0\.1:1 did not answer") as error:
        docker_client(DockerSettings(docker_host_block=block_name))
    assert error.value.retryable


def test_without_a_saved_block_the_environments_engine_serves() -> None:
    with docker_client(DockerSettings(docker_host_block=f"none-{uuid.uuid4().hex[:6]}")) as client:
        assert client.ping()


def test_machines_log_in_to_the_registry_with_the_saved_credentials(block_name: str) -> None:
    DockerRegistryCredentials(username="stroppy", password=SecretStr("not-checked"), registry_url=REGISTRY).save(
        block_name
    )
    with docker_client() as client:
        assert registry_login(client, block_name) is True
        assert registry_login(client, f"none-{uuid.uuid4().hex[:6]}") is False
        assert registry_login(client, None) is False


def test_a_registry_that_refuses_the_login_fails_naming_the_block(block_name: str) -> None:
    DockerRegistryCredentials(username="stroppy", password=SecretStr("x"), registry_url="127.0.0.1:1").save(block_name)
    with docker_client() as client, pytest.raises(TargetError, match=f"block {block_name}") as error:
        registry_login(client, block_name)
    assert "x" not in str(error.value).split(block_name)[-1], "the password is never in the message"


def test_the_docker_target_module_needs_no_block_to_be_available() -> None:
    from infra.targets import docker as docker_target  # noqa: PLC0415

    assert isinstance(docker_target, TargetModule)
    assert docker_target.is_available(OrchestrationSettings())
