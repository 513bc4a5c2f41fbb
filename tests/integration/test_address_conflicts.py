"""A run's address space against the networks the real Docker engine already has: a network that no run made,
inside the range, stops runs at validation with its name; the runs' own networks never do."""

from __future__ import annotations

import uuid

import docker
import pytest

from infra.settings import OrchestrationSettings
from infra.targets import check_address_space
from infra.targets.base import LABEL_MANAGED_BY, TargetError
from infra.targets.docker import address_conflicts
from stroppy_domain.model import Target

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]

SPACE = "10.231.0.0/16"


def _network(
    client: docker.DockerClient, subnet: str, labels: dict[str, str] | None = None
) -> docker.models.networks.Network:
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
    return client.networks.create(f"conflict-{uuid.uuid4().hex[:8]}", driver="bridge", ipam=ipam, labels=labels or {})


def test_a_foreign_network_inside_the_space_is_named_and_a_runs_own_is_not() -> None:
    client = docker.from_env(timeout=60)
    settings = OrchestrationSettings()
    foreign = _network(client, "10.231.7.0/24")
    own = _network(client, "10.231.8.0/24", {LABEL_MANAGED_BY: "stroppy-flows"})
    try:
        assert address_conflicts(SPACE, settings) == [f"{foreign.name} (10.231.7.0/24)"]
        assert address_conflicts("10.232.0.0/16", settings) == []
        with pytest.raises(TargetError, match=rf"docker address space {SPACE} .* {foreign.name} \(10.231.7.0/24\)"):
            check_address_space(Target.DOCKER, SPACE, settings)
    finally:
        foreign.remove()
        own.remove()
        client.close()
