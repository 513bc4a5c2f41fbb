"""The Docker target: machines are containers on one Docker engine, reached through a prefect-docker `DockerHost`
block (the local socket by default; a remote engine over TCP with TLS the same way). The backend is in `backend.py`;
this module is what the flows need to know of the target (`infra.targets.base.TargetModule`).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.connections import saved_block
from infra.images import ImageSet
from infra.settings import OrchestrationSettings
from infra.targets.base import LABEL_MANAGED_BY, SharedHost, TargetError
from infra.targets.docker.backend import SERVICES_NEED_AGENTS, DockerTarget, DockerTargetSettings
from stroppy_domain.bounds import TargetBounds
from stroppy_domain.capacity import HostCapacity
from stroppy_domain.subnets import overlapping

if TYPE_CHECKING:
    import docker
    from prefect_docker.host import DockerHost

SHARES_RESULTS_DIR = True
"""The master's results directory is mounted into every machine at the same path."""
RUNNER_ROOT = PurePosixPath("/opt/stroppy-runs")


class DockerSettings(BaseSettings):
    """The Docker target's settings (`STROPPY_*`): its engine, how machines reach the Prefect API, its bounds."""

    model_config = SettingsConfigDict(env_prefix="STROPPY_", frozen=True)

    docker_host_block: str | None = Field(
        default="stroppy-docker",
        description="prefect-docker `DockerHost` block of the engine runs use; while none is saved, the engine the "
        "environment names (`DOCKER_HOST`, else the local socket).",
    )
    edge_api_url: str = Field(
        default="http://{gateway}:4200/api",
        description="How a machine reaches the Prefect API; {gateway} is its network's gateway (the Docker host).",
    )
    edge_flows_dir: str = Field(
        default="/opt/stroppy-flows/lib/python3.13/site-packages",
        description="Where the edge image has this project's sources, for the deployments' pull step.",
    )
    agents_ready_timeout_s: float = Field(default=180, gt=0, description="Bound of the wait for edge agents.")
    create_machines_timeout_s: float = Field(default=600, gt=0, description="Bound of creating a run's machines.")
    start_services_timeout_s: float = Field(
        default=900, gt=0, description="Bound of starting a run's services until they are healthy."
    )
    engine_timeout_s: float = Field(default=120, gt=0, description="Timeout of every call to the engine.")
    host_reserved_cpus: int = Field(
        default=0, ge=0, description="The host's first CPUs, never given to a run's machines (the control plane's)."
    )
    host_reserved_memory_gb: float = Field(
        default=2, ge=0, description="Host memory never counted for exclusive runs (the control plane's)."
    )
    capacity_wait_timeout_s: float = Field(
        default=3600, gt=0, description="How long a run waits for its CPUs to be free before it fails."
    )


def is_available(settings: OrchestrationSettings) -> bool:
    """Always: a master has a Docker engine (the stack starts one)."""
    del settings
    return True


def bounds(settings: OrchestrationSettings, docker_settings: DockerSettings | None = None) -> TargetBounds:
    del settings
    own = docker_settings or DockerSettings()
    return TargetBounds(
        create_machines_s=own.create_machines_timeout_s,
        agents_ready_s=own.agents_ready_timeout_s,
        start_services_s=own.start_services_timeout_s,
        capacity_wait_s=own.capacity_wait_timeout_s,
    )


def machine_images(settings: OrchestrationSettings) -> list[str]:
    del settings
    return [ImageSet.for_checkout().edge]


def runner_directory(run_id: str) -> PurePosixPath:
    return RUNNER_ROOT / run_id


def shared_host(settings: OrchestrationSettings, docker_settings: DockerSettings | None = None) -> SharedHost:
    """The engine's host: its CPUs and memory as the engine reports them, keyed by the engine's ID so that every
    master using one engine leases from the same CPUs. Raises TargetError, retryable, when the engine does not
    answer."""
    del settings
    import docker  # noqa: PLC0415

    own = docker_settings or DockerSettings()
    with docker_client(own) as client:
        try:
            info = client.info()
        except docker.errors.DockerException as error:
            raise TargetError(f"the Docker engine did not say its size: {error}", retryable=True) from error
    capacity = HostCapacity(
        cpus=int(info["NCPU"]), memory_gb=int(info["MemTotal"]) / 2**30, reserved_cpus=own.host_reserved_cpus,
        reserved_memory_gb=own.host_reserved_memory_gb,
    )  # fmt: skip
    return SharedHost(key=f"docker:{info['ID']}", capacity=capacity, unenforced=["disk_gb"])


def address_conflicts(
    base_cidr: str, settings: OrchestrationSettings, docker_settings: DockerSettings | None = None
) -> list[str]:
    """The engine's networks that no run made (they lack the manager label) and whose subnets overlap `base_cidr`.
    Raises TargetError, retryable, when the engine does not answer."""
    del settings
    import docker  # noqa: PLC0415

    with docker_client(docker_settings or DockerSettings()) as client:
        try:
            networks = client.api.networks()
        except docker.errors.DockerException as error:
            raise TargetError(f"the Docker engine did not list its networks: {error}", retryable=True) from error
    foreign = {
        network["Name"]: [config.get("Subnet", "") for config in (network.get("IPAM") or {}).get("Config") or []]
        for network in networks
        if LABEL_MANAGED_BY not in (network.get("Labels") or {})
    }
    return overlapping(base_cidr, foreign)


def target_settings(
    settings: OrchestrationSettings, docker_settings: DockerSettings | None = None
) -> DockerTargetSettings:
    """How the master starts machines on Docker: the runner runs an edge agent for its own queue."""
    own = docker_settings or DockerSettings()
    results = str(settings.results_dir)
    return DockerTargetSettings(
        machine_image=ImageSet.for_checkout().edge,
        agent_command=["stroppy-flows", "edge-agent", "--queue", "{queue}", "--name", "{queue}"],
        machine_environment={
            "PREFECT_API_URL": own.edge_api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # A machine persists no Prefect result: the master never reads one (infra.edge_replies).
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
            "STROPPY_FLOWS_DIR": own.edge_flows_dir,
            **api_credentials(),
        },
        machine_binds=[f"{results}:{results}"],
        api_timeout_s=own.engine_timeout_s,
    )


def api_credentials() -> dict[str, str]:
    """The master's own credentials for the Prefect API (auth string or API key), for its machines' agents: a
    machine on this engine gets them in its container's environment, which only the engine's users can read."""
    from prefect.settings import get_current_settings  # noqa: PLC0415 - settings load only when machines start

    api = get_current_settings().api
    secrets = {"PREFECT_API_AUTH_STRING": api.auth_string, "PREFECT_API_KEY": api.key}
    return {name: value.get_secret_value() for name, value in secrets.items() if value is not None}


def docker_host(docker_settings: DockerSettings | None = None) -> DockerHost:
    """The saved `DockerHost` block, or one for the environment's engine; calls time out after the engine bound."""
    from prefect_docker.host import DockerHost  # noqa: PLC0415 - the SDK loads only when the engine is used

    own = docker_settings or DockerSettings()
    host = saved_block(DockerHost, own.docker_host_block) or DockerHost()
    if host.timeout is None:
        host = host.model_copy(update={"timeout": int(own.engine_timeout_s)})
    return host


def docker_client(docker_settings: DockerSettings | None = None) -> docker.DockerClient:
    """A client of the target's engine; the caller closes it (it is a context manager).

    Raises TargetError, retryable, when the engine does not answer."""
    import docker  # noqa: PLC0415

    host = docker_host(docker_settings)
    try:
        return host.get_client()
    except docker.errors.DockerException as error:
        where = host.base_url or "the environment's engine (DOCKER_HOST or the local socket)"
        raise TargetError(f"the Docker engine at {where} did not answer: {error}", retryable=True) from error


def open_backend(settings: OrchestrationSettings) -> DockerTarget:
    """The backend on the configured engine. Raises TargetError, retryable, when the engine does not answer."""
    own = DockerSettings()
    return DockerTarget(target_settings(settings, own), client=docker_client(own))


__all__ = [
    "SERVICES_NEED_AGENTS",
    "SHARES_RESULTS_DIR",
    "DockerSettings",
    "DockerTarget",
    "DockerTargetSettings",
    "address_conflicts",
    "bounds",
    "docker_client",
    "docker_host",
    "is_available",
    "machine_images",
    "open_backend",
    "runner_directory",
    "shared_host",
    "target_settings",
]
