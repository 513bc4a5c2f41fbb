"""The Docker target: a run is a bridge network on its reserved subnet, a machine is a container holding its IP, and
a machine's services are containers inside that machine's network namespace.

No container gets the Docker socket: this module, on the master, starts every container. Every resource carries
the run's labels and a name derived from the run id and the machine, so a retry adopts what exists and destroy
finds everything by label.
"""

from __future__ import annotations

import io
import ipaddress
import tarfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from infra.targets.base import (
    LABEL_EXPIRES_AT,
    LABEL_MACHINE,
    LABEL_MANAGED_BY,
    LABEL_RUN_ID,
    MANAGER,
    DestroyReport,
    RunInventory,
    RunSpec,
    TargetError,
    check_run_id,
    machine_queue_name,
)
from stroppy_domain.plan import ConfigFile, Container, Machine, SecretFile, StartStage

if TYPE_CHECKING:
    import docker

ACCOUNTS_LABEL = "stroppy.accounts"
MACHINE_SERVICE = "machine"
LOG_TAIL_LINES = 40

Progress = Callable[[str], None]


class DockerTargetSettings(BaseModel):
    """How runs map onto a Docker engine."""

    model_config = ConfigDict(frozen=True)

    machine_image: str = Field(description="Image of the machine containers (the edge image).")
    machine_command: list[str] = Field(
        default_factory=lambda: ["sleep", "infinity"],
        description="What a machine container runs (it holds the machine's network namespace). "
        "Placeholders: {run_id}, {machine}, {queue}, {gateway}.",
    )
    machine_environment: dict[str, str] = Field(
        default_factory=dict, description="Environment of machine containers; the same placeholders apply."
    )
    machine_binds: list[str] = Field(
        default_factory=list,
        description="HOST_PATH:CONTAINER_PATH[:ro] mounts of machine containers, e.g. shared result storage.",
    )
    api_timeout_s: float = Field(default=120, gt=0, description="Timeout of every call to the engine.")
    parallel_health_checks: int = Field(default=8, ge=1, le=64)


def network_name(run_id: str) -> str:
    return f"stroppy-{run_id}"


def machine_container_name(run_id: str, machine: str) -> str:
    return f"stroppy-{run_id}-{machine}"


def service_container_name(run_id: str, machine: str, service: str) -> str:
    return f"stroppy-{run_id}-{machine}-{service}"


def volume_name(run_id: str, machine: str, service: str, index: int) -> str:
    return f"stroppy-{run_id}-{machine}-{service}-{index}"


def _service_archive(container: Container, uids: dict[str, int]) -> bytes:
    """The container's files; secret ones owned by its user and readable by nobody else."""
    uid = uids.get(container.user)
    if uid is None and container.secret_files:
        raise TargetError(
            f"image {container.image} does not declare account {container.user!r} in its {ACCOUNTS_LABEL} label"
        )
    return _file_archive(container.files, container.secret_files, uid or 0)


def _file_archive(files: Iterable[ConfigFile] = (), secret_files: Iterable[SecretFile] = (), uid: int = 0) -> bytes:
    """A tar to extract at `/`: plain files owned by root, secret files by `uid`, parent directories 0755."""
    entries = [(file.path, file.content.encode(), file.mode, 0) for file in files]
    entries += [(file.path, file.content.get_secret_value().encode(), file.mode, uid) for file in secret_files]
    directories = sorted({str(parent) for path, *_ in entries for parent in PurePosixPath(path).parents} - {"/"})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for directory in directories:
            info = tarfile.TarInfo(directory.lstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        for path, content, mode, owner in entries:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(content), mode, owner, owner
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class DockerTarget:
    """Runs on one Docker engine. Owns its client: use it as a context manager or call `close()`."""

    def __init__(
        self, settings: DockerTargetSettings, client: docker.DockerClient | None = None, progress: Progress = print
    ) -> None:
        import docker  # noqa: PLC0415 - the SDK loads only when the Docker target is used

        self._errors = docker.errors
        self._settings = settings
        self._client = client or docker.from_env(timeout=int(settings.api_timeout_s))
        self._api = self._client.api
        self._progress = progress
        self._accounts: dict[str, dict[str, int]] = {}

    def __enter__(self) -> DockerTarget:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # creation -----------------------------------------------------------------------------------------------

    def create_machines(self, run: RunSpec) -> None:
        check_run_id(run.run_id)
        network = self._ensure_network(run)
        for machine in run.plan.machines:
            self._ensure_machine(run, machine, network)
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

    def _existing_container(self, name: str, run: RunSpec) -> dict[str, Any] | None:
        """The container called `name` if it belongs to the run and runs; a stopped one is removed for a retry."""
        found = self._call(lambda: self._api.containers(all=True, filters={"name": f"^/{name}$"}), f"look up {name}")
        if not found:
            return None
        container = found[0]
        if (container.get("Labels") or {}).get(LABEL_RUN_ID) != run.run_id:
            raise TargetError(f"container {name} exists but does not belong to run {run.run_id}")
        if container["State"] == "running":
            return container
        self._call(lambda: self._api.remove_container(container["Id"], force=True), f"remove stopped {name}")
        return None

    def _ensure_machine(self, run: RunSpec, machine: Machine, network: str) -> str:
        name = machine_container_name(run.run_id, machine.name)
        existing = self._existing_container(name, run)
        if existing is not None:
            return existing["Id"]
        host_config = self._api.create_host_config(network_mode=network, init=True, binds=self._settings.machine_binds)
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
                command=[part.format(**placeholders) for part in self._settings.machine_command],
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
            archive = _file_archive(secret_files=machine.secret_files, uid=0)
            self._call(lambda: self._api.put_archive(created["Id"], "/", archive), f"write files into {name}")
        self._call(lambda: self._api.start(created["Id"]), f"start machine {name}")
        return created["Id"]

    # services -----------------------------------------------------------------------------------------------

    def start_services(self, run: RunSpec) -> None:
        check_run_id(run.run_id)
        for stage in StartStage:
            members = [(m, c) for m in run.plan.machines for c in m.containers if c.start_stage is stage]
            if not members:
                continue
            started = [
                (machine, container, self._ensure_service(run, machine, container)) for machine, container in members
            ]
            self._progress(f"run {run.run_id}: stage {stage.name.lower()}: waiting for {len(started)} service(s)")
            with ThreadPoolExecutor(max_workers=self._settings.parallel_health_checks) as pool:
                failures = [
                    error
                    for error in pool.map(lambda item: self._wait_healthy(run, *item), started)
                    if error is not None
                ]
            if failures:
                raise TargetError(
                    f"run {run.run_id}: stage {stage.name.lower()} did not become healthy:\n" + "\n".join(failures)
                )
            self._progress(f"run {run.run_id}: stage {stage.name.lower()} healthy")

    def _ensure_service(self, run: RunSpec, machine: Machine, container: Container) -> str:
        name = service_container_name(run.run_id, machine.name, container.kind)
        existing = self._existing_container(name, run)
        if existing is not None:
            return existing["Id"]
        machine_name = machine_container_name(run.run_id, machine.name)
        mounts = [
            self._ensure_volume(run, machine.name, container.kind, index, path)
            for index, path in enumerate(container.volumes)
        ]
        host_config = self._api.create_host_config(network_mode=f"container:{machine_name}", mounts=mounts, init=True)
        created = self._call(
            lambda: self._api.create_container(
                container.image,
                command=container.command,
                user=container.user,
                environment=container.env,
                name=name,
                labels=run.labels(machine.name, str(container.kind)),
                host_config=host_config,
            ),
            f"create {name} from {container.image}",
        )
        archive = _service_archive(container, self._image_accounts(container.image))
        self._call(lambda: self._api.put_archive(created["Id"], "/", archive), f"write configuration into {name}")
        self._call(lambda: self._api.start(created["Id"]), f"start {name}")
        return created["Id"]

    def _ensure_volume(self, run: RunSpec, machine: str, service: str, index: int, path: str) -> Any:
        import docker  # noqa: PLC0415

        name = volume_name(run.run_id, machine, service, index)
        self._call(
            lambda: self._api.create_volume(name, labels=run.labels(machine, service)),
            f"create volume {name}",
        )
        return docker.types.Mount(target=path, source=name, type="volume")

    def _image_accounts(self, image: str) -> dict[str, int]:
        if image not in self._accounts:
            labels = (
                self._call(lambda: self._api.inspect_image(image), f"inspect image {image}")["Config"]["Labels"] or {}
            )
            pairs = (item.split(":", 1) for item in labels.get(ACCOUNTS_LABEL, "").split(",") if ":" in item)
            self._accounts[image] = {user: int(uid) for user, uid in pairs}
        return self._accounts[image]

    def _wait_healthy(self, run: RunSpec, machine: Machine, container: Container, container_id: str) -> str | None:
        """None once the health check passes; otherwise what went wrong, with the container's last log lines."""
        check = container.health_check
        name = service_container_name(run.run_id, machine.name, container.kind)
        command = ["timeout", str(int(check.timeout_s)), *check.command]
        output = ""
        for _ in range(check.attempts):
            state = self._call(lambda: self._api.inspect_container(container_id), f"inspect {name}")["State"]
            if not state["Running"]:
                return f"  {name} stopped (exit code {state['ExitCode']}):\n{self._log_tail(container_id)}"
            result = self._call(
                lambda: self._client.containers.get(container_id).exec_run(command), f"health check of {name}"
            )
            if result.exit_code == 0:
                return None
            output = result.output.decode(errors="replace").strip()
            time.sleep(check.interval_s)
        return (
            f"  {name} not healthy after {check.attempts} checks ({' '.join(check.command)}): {output[-500:]}\n"
            f"{self._log_tail(container_id)}"
        )

    def _log_tail(self, container_id: str) -> str:
        try:
            logs = self._api.logs(container_id, tail=LOG_TAIL_LINES).decode(errors="replace")
        except self._errors.APIError as error:
            return f"    (logs unavailable: {error})"
        return "\n".join(f"    | {line}" for line in logs.splitlines())

    # destruction and inventory ------------------------------------------------------------------------------

    def destroy(self, run_id: str) -> DestroyReport:
        check_run_id(run_id)
        selector = {"label": [f"{LABEL_RUN_ID}={run_id}", f"{LABEL_MANAGED_BY}={MANAGER}"]}
        containers = self._call(lambda: self._api.containers(all=True, filters=selector), f"list run {run_id}")
        # Services first: a machine container cannot go while services share its network namespace.
        containers.sort(key=lambda item: (item.get("Labels") or {}).get("stroppy.service") == MACHINE_SERVICE)
        removed = {"containers": 0, "volumes": 0, "networks": 0}
        for container in containers:
            removed["containers"] += self._remove(
                lambda c=container: self._api.remove_container(c["Id"], force=True), f"container {container['Names']}"
            )
        volumes = self._call(lambda: self._api.volumes(filters=selector), f"list volumes of {run_id}")["Volumes"] or []
        for volume in volumes:
            removed["volumes"] += self._remove(
                lambda v=volume: self._api.remove_volume(v["Name"], force=True), f"volume {volume['Name']}"
            )
        for network in self._call(lambda: self._api.networks(filters=selector), f"list networks of {run_id}"):
            removed["networks"] += self._remove(
                lambda n=network: self._api.remove_network(n["Id"]), f"network {network['Name']}"
            )
        report = DestroyReport(run_id=run_id, removed=removed)
        self._progress(f"run {run_id}: destroyed {removed}")
        return report

    def _remove(self, operation: Callable[[], object], what: str) -> int:
        try:
            self._call(operation, f"remove {what}")
        except TargetError as error:
            if isinstance(error.__cause__, self._errors.NotFound):
                return 0
            raise
        return 1

    def list_runs(self) -> list[RunInventory]:
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

    def _call(self, operation: Callable[[], Any], what: str) -> Any:
        import requests  # noqa: PLC0415 - the Docker SDK's transport; its errors are timeouts and refusals

        try:
            return operation()
        except self._errors.ImageNotFound as error:
            raise TargetError(
                f"{what}: image not found ({error.explanation}); build it with `python -m infra.images build`"
            ) from error
        except self._errors.DockerException as error:
            raise TargetError(f"{what}: {error}") from error
        except requests.RequestException as error:
            raise TargetError(f"{what}: the Docker engine did not answer: {error}") from error


def _inventory(labelled: Iterable[dict[str, str]]) -> list[RunInventory]:
    runs: dict[str, RunInventory] = {}
    for labels in labelled:
        run_id = labels.get(LABEL_RUN_ID)
        if not run_id:
            continue
        expires = labels.get(LABEL_EXPIRES_AT)
        inventory = runs.setdefault(
            run_id, RunInventory(run_id=run_id, expires_at=datetime.fromisoformat(expires) if expires else None)
        )
        inventory.resources += 1
        machine = labels.get(LABEL_MACHINE)
        if machine and machine not in inventory.machines:
            inventory.machines.append(machine)
    return sorted(runs.values(), key=lambda item: item.run_id)
