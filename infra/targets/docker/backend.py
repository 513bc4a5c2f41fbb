"""The Docker target: a run is a bridge network on its reserved subnet, a machine is a container holding its IP, and
a machine's services are containers inside that machine's network namespace.

No container gets the Docker socket: this module, on the master, starts every container. Every resource carries
the run's labels and a name derived from the run id and the machine, so a retry adopts what exists and destroy
finds everything by label.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from infra.containers import Progress, ServiceEngine, file_archive, machine_limits
from infra.targets.base import (
    LABEL_EXPIRES_AT,
    LABEL_MACHINE,
    LABEL_MANAGED_BY,
    LABEL_RUN_ID,
    LABEL_SERVICE,
    MANAGER,
    DestroyReport,
    ReleasedOnExit,
    RunInventory,
    RunSpec,
    TargetError,
    check_run_id,
    machine_queue_name,
)
from stroppy_domain.plan import Machine, StartStage

if TYPE_CHECKING:
    import docker

MACHINE_SERVICE = "machine"
SERVICES_NEED_AGENTS = False
"""The engine starts services in the machines' namespaces itself: only the runner's agent gets flows, and the agents
boot while the services start."""


class DockerTargetSettings(BaseModel):
    """How runs map onto a Docker engine."""

    model_config = ConfigDict(frozen=True)

    machine_image: str = Field(description="Image of the machine containers (the edge image).")
    machine_command: list[str] = Field(
        default_factory=lambda: ["sleep", "infinity"],
        description="What a machine container without an agent runs (it holds the machine's network namespace).",
    )
    agent_command: list[str] = Field(
        default_factory=list,
        description="What the container of a machine that runs an edge agent (the runner: `RunPlan.agent_machines`) "
        "runs; empty: `machine_command`. Placeholders: {run_id}, {machine}, {queue}, {gateway}.",
    )
    machine_environment: dict[str, str] = Field(
        default_factory=dict, description="Environment of machine containers; the same placeholders apply."
    )
    machine_binds: list[str] = Field(
        default_factory=list,
        description="HOST_PATH:CONTAINER_PATH[:ro] mounts of machine containers, e.g. shared result storage.",
    )
    api_timeout_s: float = Field(default=120, gt=0, description="Timeout of every call to the engine.")
    parallel_engine_calls: int = Field(
        default=8, ge=1, le=64, description="Containers created, health-checked or removed at once."
    )


def network_name(run_id: str) -> str:
    return f"stroppy-{run_id}"


def machine_container_name(run_id: str, machine: str) -> str:
    return f"stroppy-{run_id}-{machine}"


class DockerTarget(ReleasedOnExit):
    """Runs on one Docker engine. Owns its client: use it as a context manager or call `close()`."""

    def __init__(
        self, settings: DockerTargetSettings, client: docker.DockerClient | None = None, progress: Progress = print
    ) -> None:
        import docker  # noqa: PLC0415 - the SDK loads only when the Docker target is used

        self._settings = settings
        self._client = client or docker.from_env(timeout=int(settings.api_timeout_s))
        self._api = self._client.api
        self._progress = progress
        self._engine = ServiceEngine(self._client, settings.parallel_engine_calls, progress)
        self._call = self._engine.call

    def close(self) -> None:
        self._client.close()

    def state_location(self, run_id: str) -> None:
        """Nothing: the engine's labels are the whole state."""

    # creation -----------------------------------------------------------------------------------------------

    def create_machines(self, run: RunSpec) -> None:
        """The run's network on its subnet, then one running container per machine at its IP, held with its services
        inside the machine's memory and leased CPUs (`machine_limits`); a retry adopts them.

        Raises TargetError when the run id is malformed, the run's network or a machine's container exists but
        belongs to another run (or the network to another subnet), or the engine refuses or does not answer."""
        check_run_id(run.run_id)
        network = self._ensure_network(run)
        self._engine.in_parallel(lambda machine: self._ensure_machine(run, machine, network), run.plan.machines)
        self._progress(f"run {run.run_id}: {len(run.plan.machines)} machine(s) on {run.plan.subnet}")

    def _ensure_network(self, run: RunSpec) -> str:
        name = network_name(run.run_id)
        for existing in self._call(lambda: self._api.networks(names=[name]), f"look up network {name}"):
            if existing["Name"] != name:
                continue
            subnets = [config.get("Subnet") for config in (existing.get("IPAM") or {}).get("Config") or []]
            if (existing.get("Labels") or {}).get(LABEL_RUN_ID) != run.run_id or run.plan.subnet not in subnets:
                raise TargetError(f"network {name} exists but does not belong to run {run.run_id} on {run.plan.subnet}")
            return name
        import docker  # noqa: PLC0415

        gateway = str(ipaddress.IPv4Network(run.plan.subnet).network_address + 1)
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=run.plan.subnet, gateway=gateway)])
        self._call(
            lambda: self._api.create_network(
                name, driver="bridge", ipam=ipam, labels=run.labels(), check_duplicate=True
            ),
            f"create network {name} on {run.plan.subnet}",
        )
        return name

    def _ensure_machine(self, run: RunSpec, machine: Machine, network: str) -> str:
        name = machine_container_name(run.run_id, machine.name)
        existing = self._engine.existing_container(name, run)
        if existing is not None:
            existing_id: str = existing["Id"]
            return existing_id
        host_config = self._api.create_host_config(
            network_mode=network, init=True, binds=self._settings.machine_binds, **machine_limits(run, machine)
        )
        networking = self._api.create_networking_config(
            {network: self._api.create_endpoint_config(ipv4_address=machine.ip)}
        )
        placeholders = {
            "run_id": run.run_id,
            "machine": machine.name,
            "queue": machine_queue_name(run.run_id, machine.name),
            "gateway": str(ipaddress.IPv4Network(run.plan.subnet).network_address + 1),
        }
        created = self._call(
            lambda: self._api.create_container(
                self._settings.machine_image,
                command=[part.format(**placeholders) for part in self._command(run, machine)],
                environment={
                    key: value.format(**placeholders) for key, value in self._settings.machine_environment.items()
                },
                name=name,
                hostname=machine.name,
                labels=run.labels(machine.name, MACHINE_SERVICE),
                host_config=host_config,
                networking_config=networking,
            ),
            f"create machine {name} at {machine.ip}",
        )
        if machine.secret_files:
            archive = file_archive(secret_files=machine.secret_files, uid=0)
            self._call(lambda: self._api.put_archive(created["Id"], "/", archive), f"write files into {name}")
        self._call(lambda: self._api.start(created["Id"]), f"start machine {name}")
        created_id: str = created["Id"]
        return created_id

    def _command(self, run: RunSpec, machine: Machine) -> list[str]:
        agents = {agent.name for agent in run.plan.agent_machines(SERVICES_NEED_AGENTS)}
        if self._settings.agent_command and machine.name in agents:
            return self._settings.agent_command
        return self._settings.machine_command

    # services -----------------------------------------------------------------------------------------------

    def start_services(self, run: RunSpec) -> None:
        """Every start stage in order, on all machines at once, each waited for until its health checks pass.

        Raises TargetError when the run id is malformed, a stage does not become healthy (with the failing
        containers' last log lines), an image is missing or does not declare a container's account, or the engine
        refuses or does not answer."""
        check_run_id(run.run_id)
        for stage in StartStage:
            members = [(m, c) for m in run.plan.machines for c in m.containers if c.start_stage is stage]
            self._engine.start_stage(
                run,
                stage,
                members,
                lambda machine: f"container:{machine_container_name(run.run_id, machine.name)}",
                lambda machine: machine_limits(run, machine),
            )

    # destruction and inventory ------------------------------------------------------------------------------

    def destroy(self, run_id: str) -> DestroyReport:
        """Remove the run's containers (services before machines), volumes and networks, found by label.

        Raises TargetError when the run id is malformed, or the engine refuses or does not answer; what is gone
        already is skipped."""
        check_run_id(run_id)
        selector = {"label": [f"{LABEL_RUN_ID}={run_id}", f"{LABEL_MANAGED_BY}={MANAGER}"]}
        containers = self._call(lambda: self._api.containers(all=True, filters=selector), f"list run {run_id}")
        machines: list[dict[str, Any]] = []
        services: list[dict[str, Any]] = []
        for container in containers:
            is_machine = (container.get("Labels") or {}).get(LABEL_SERVICE) == MACHINE_SERVICE
            (machines if is_machine else services).append(container)
        # Services first: a machine container cannot go while services share its network namespace.
        removed = {"containers": self._remove_containers(services) + self._remove_containers(machines)}
        volumes = self._call(lambda: self._api.volumes(filters=selector), f"list volumes of {run_id}")["Volumes"] or []
        removed["volumes"] = sum(
            self._engine.in_parallel(
                lambda v: self._remove(lambda: self._api.remove_volume(v["Name"], force=True), f"volume {v['Name']}"),
                volumes,
            )
        )
        removed["networks"] = 0
        for network in self._call(lambda: self._api.networks(filters=selector), f"list networks of {run_id}"):
            removed["networks"] += self._remove(
                lambda n=network: self._api.remove_network(n["Id"]), f"network {network['Name']}"
            )
        report = DestroyReport(run_id=run_id, removed=removed)
        self._progress(f"run {run_id}: destroyed {removed}")
        return report

    def _remove_containers(self, containers: list[dict[str, Any]]) -> int:
        """Remove `containers` at once; returns how many were still there."""
        return sum(
            self._engine.in_parallel(
                lambda c: self._remove(
                    lambda: self._api.remove_container(c["Id"], force=True), f"container {c['Names']}"
                ),
                containers,
            )
        )

    def _remove(self, operation: Callable[..., object], what: str) -> int:
        # Called with no arguments; `...` lets callers bind their loop variable as a lambda default.
        try:
            self._call(operation, f"remove {what}")
        except TargetError as error:
            if self._engine.is_not_found(error):
                return 0
            raise
        return 1

    def list_runs(self) -> list[RunInventory]:
        """Every run with a labelled container, volume or network. Raises TargetError when the engine refuses or
        does not answer."""
        selector = {"label": [f"{LABEL_MANAGED_BY}={MANAGER}"]}
        labelled: list[dict[str, str]] = []
        labelled += [
            c.get("Labels") or {}
            for c in self._call(lambda: self._api.containers(all=True, filters=selector), "list containers")
        ]
        labelled += [
            v.get("Labels") or {}
            for v in self._call(lambda: self._api.volumes(filters=selector), "list volumes")["Volumes"] or []
        ]
        labelled += [
            n.get("Labels") or {} for n in self._call(lambda: self._api.networks(filters=selector), "list networks")
        ]
        return _inventory(labelled)


def _expiry(label: str | None) -> datetime | None:
    """The moment an expiry label names; None for none or a malformed one (judged by its ledger and flow run)."""
    try:
        return datetime.fromisoformat(label) if label else None
    except ValueError:
        return None


def _inventory(labelled: Iterable[dict[str, str]]) -> list[RunInventory]:
    runs: dict[str, RunInventory] = {}
    for labels in labelled:
        run_id = labels.get(LABEL_RUN_ID)
        if not run_id:
            continue
        expires = labels.get(LABEL_EXPIRES_AT)
        inventory = runs.setdefault(run_id, RunInventory(run_id=run_id, expires_at=_expiry(expires)))
        inventory.resources += 1
        machine = labels.get(LABEL_MACHINE)
        if machine and machine not in inventory.machines:
            inventory.machines.append(machine)
    return sorted(runs.values(), key=lambda item: item.run_id)
