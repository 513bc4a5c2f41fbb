"""A run's planned service containers on one Docker engine: created with their files, volumes and labels, started
stage by stage, and waited for until their health checks pass.

Shared by the Docker target (the master's engine, services inside a machine container's network namespace) and the
`start-services` edge flow (a cloud machine's own engine, services on the machine's network). Every operation adopts
what already exists, so a retry is harmless.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, Field

from infra.connections import saved_block
from infra.targets.base import LABEL_RUN_ID, RUN_ID_PATTERN, RunSpec, TargetError
from stroppy_domain.plan import ConfigFile, Container, Machine, SecretFile, StartStage

if TYPE_CHECKING:
    import docker

ACCOUNTS_LABEL = "stroppy.accounts"
LOG_TAIL_LINES = 40

Progress = Callable[[str], None]
NetworkMode = Callable[[Machine], str]
Limits = Callable[[Machine], dict[str, Any]]
Item = TypeVar("Item")
Result = TypeVar("Result")


def machine_limits(run: RunSpec, machine: Machine) -> dict[str, Any]:
    """Host-config limits that hold a container inside its machine's hardware on a shared host: the machine's
    memory as a hard limit with no swap, and its leased CPUs when the run holds some."""
    memory = f"{machine.hardware.memory_gb}g"
    limits: dict[str, Any] = {"mem_limit": memory, "memswap_limit": memory}
    cpuset = run.cpusets.get(machine.name)
    if cpuset:
        limits["cpuset_cpus"] = cpuset
    return limits


def service_container_name(run_id: str, machine: str, service: str) -> str:
    return f"stroppy-{run_id}-{machine}-{service}"


def volume_name(run_id: str, machine: str, service: str, index: int) -> str:
    return f"stroppy-{run_id}-{machine}-{service}-{index}"


def service_archive(container: Container, uids: dict[str, int]) -> bytes:
    """The container's files; secret ones owned by its user and readable by nobody else.

    Raises TargetError when the container has secret files but its image's accounts label does not name its user."""
    uid = uids.get(container.user)
    if uid is None and container.secret_files:
        raise TargetError(
            f"image {container.image} does not declare account {container.user!r} in its {ACCOUNTS_LABEL} label"
        )
    return file_archive(container.files, container.secret_files, uid or 0)


def file_archive(files: Iterable[ConfigFile] = (), secret_files: Iterable[SecretFile] = (), uid: int = 0) -> bytes:
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


def registry_login(client: docker.DockerClient, credentials_block: str | None) -> bool:
    """Log the client in with the saved `DockerRegistryCredentials` block; False when none is saved under that name.

    Raises TargetError when the registry refuses the credentials."""
    from prefect.utilities.asyncutils import run_coro_as_sync  # noqa: PLC0415 - the block's login is a coroutine
    from prefect_docker.credentials import DockerRegistryCredentials  # noqa: PLC0415

    credentials = saved_block(DockerRegistryCredentials, credentials_block)
    if credentials is None:
        return False
    import docker  # noqa: PLC0415

    try:
        run_coro_as_sync(credentials.login(client))
    except docker.errors.APIError as error:
        raise TargetError(
            f"registry {credentials.registry_url} refused the credentials of block {credentials_block}: "
            f"{error.explanation or error}"
        ) from error
    return True


class StartServicesRequest(BaseModel):
    """One start stage of one machine, or (no stage) the machine's own files. The plan, with the run's passwords,
    stays in a Secret block."""

    run_id: str = Field(pattern=RUN_ID_PATTERN)
    machine: str
    stage: StartStage | None = Field(description="The stage to start; none writes the machine's own secret files.")
    run_block: str = Field(description="Prefect `Secret` block holding the run's spec (passwords included).")
    network_mode: str = Field(default="host", description="The services share the machine's own network.")
    files_root: str = Field(default="/", description="Where the machine's own files' absolute paths start.")
    api_timeout_s: float = Field(default=120, gt=0, description="Timeout of every call to the machine's engine.")
    registry_block: str | None = Field(
        default=None,
        description="prefect-docker `DockerRegistryCredentials` block to log in with before pulling; none: anonymous.",
    )


class ServiceEngine:
    """One Docker engine's side of a run. The caller owns the client."""

    def __init__(
        self,
        client: docker.DockerClient,
        parallel_engine_calls: int = 8,
        progress: Progress = print,
        pull_missing_images: bool = False,
    ) -> None:
        import docker  # noqa: PLC0415 - the SDK loads only when an engine is used

        self._docker = docker
        self._client = client
        self._api = client.api
        self._parallel = parallel_engine_calls
        self._progress = progress
        self._pull = pull_missing_images
        self._accounts: dict[str, dict[str, int]] = {}

    def call(self, operation: Callable[[], Any], what: str) -> Any:
        """Run one engine call; any failure becomes a TargetError naming `what`, retryable when the engine did not
        answer or failed on its side."""
        import requests  # noqa: PLC0415 - the Docker SDK's transport; its errors are timeouts and refusals

        errors = self._docker.errors
        try:
            return operation()
        except errors.ImageNotFound as error:
            raise TargetError(
                f"{what}: image not found ({error.explanation}); build it with `python -m infra.images build`"
            ) from error
        except errors.APIError as error:
            # The engine failing on its side may pass; a refusal of the request (4xx) will not.
            raise TargetError(f"{what}: {error}", retryable=error.is_server_error()) from error
        except errors.DockerException as error:
            raise TargetError(f"{what}: {error}") from error
        except requests.RequestException as error:
            raise TargetError(f"{what}: the Docker engine did not answer: {error}", retryable=True) from error

    def in_parallel(self, operation: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
        """`operation` on every item, at most `parallel_engine_calls` at once; the results in the items' order.
        Raises the first failing item's error, once every item has ended."""
        if len(items) < 2:
            return [operation(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self._parallel, len(items))) as pool:
            return list(pool.map(operation, items))

    def is_not_found(self, error: TargetError) -> bool:
        return isinstance(error.__cause__, self._docker.errors.NotFound)

    def existing_container(self, name: str, run: RunSpec) -> dict[str, Any] | None:
        """The container called `name` if it belongs to the run and runs; a stopped one is removed for a retry.

        Raises TargetError when it belongs to another run, or the engine refuses or does not answer."""
        found = self.call(lambda: self._api.containers(all=True, filters={"name": f"^/{name}$"}), f"look up {name}")
        if not found:
            return None
        container = found[0]
        if (container.get("Labels") or {}).get(LABEL_RUN_ID) != run.run_id:
            raise TargetError(f"container {name} exists but does not belong to run {run.run_id}")
        if container["State"] == "running":
            return container
        self.call(lambda: self._api.remove_container(container["Id"], force=True), f"remove stopped {name}")
        return None

    def start_stage(
        self,
        run: RunSpec,
        stage: StartStage,
        members: list[tuple[Machine, Container]],
        network_mode: NetworkMode,
        limits: Limits | None = None,
    ) -> None:
        """Start the stage's containers, each inside `limits` of its machine (none by default: the machine is the
        host), then wait for all their health checks.

        Raises TargetError, with every failing container's last log lines, when the stage does not become healthy;
        and when an image is missing or does not declare a container's account, or the engine refuses or does not
        answer."""
        if not members:
            return
        # One after another, in the plan's order: an exporter started beside what it exports can find it not yet
        # listening and exit (PgBouncer's exporter does).
        started = [
            (
                machine,
                container,
                self._ensure_service(run, machine, container, network_mode(machine), limits(machine) if limits else {}),
            )
            for machine, container in members
        ]
        self._progress(f"run {run.run_id}: stage {stage.name.lower()}: waiting for {len(started)} service(s)")
        healths = self.in_parallel(lambda item: self._wait_healthy(run, *item), started)
        failures = [error for error in healths if error is not None]
        if failures:
            raise TargetError(
                f"run {run.run_id}: stage {stage.name.lower()} did not become healthy:\n" + "\n".join(failures)
            )
        self._progress(f"run {run.run_id}: stage {stage.name.lower()} healthy")

    def _ensure_service(
        self, run: RunSpec, machine: Machine, container: Container, network_mode: str, limits: dict[str, Any]
    ) -> str:
        name = service_container_name(run.run_id, machine.name, container.kind)
        existing = self.existing_container(name, run)
        if existing is not None:
            return existing["Id"]
        self._ensure_image(container.image)
        mounts = [
            self._ensure_volume(run, machine.name, container.kind, index, path)
            for index, path in enumerate(container.volumes)
        ]
        host_config = self._api.create_host_config(network_mode=network_mode, mounts=mounts, init=True, **limits)
        created = self.call(
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
        archive = service_archive(container, self._image_accounts(container.image))
        self.call(lambda: self._api.put_archive(created["Id"], "/", archive), f"write configuration into {name}")
        self.call(lambda: self._api.start(created["Id"]), f"start {name}")
        return created["Id"]

    def _ensure_image(self, image: str) -> None:
        """A cloud machine's engine pulls what it lacks; the master's engine must already have every image."""
        if not self._pull:
            return
        try:
            self.call(lambda: self._api.inspect_image(image), f"inspect image {image}")
        except TargetError as error:
            if not self.is_not_found(error):
                raise
            self._progress(f"pulling {image}")
            self.call(lambda: self._client.images.pull(image), f"pull image {image}")

    def _ensure_volume(self, run: RunSpec, machine: str, service: str, index: int, path: str) -> Any:
        name = volume_name(run.run_id, machine, service, index)
        self.call(lambda: self._api.create_volume(name, labels=run.labels(machine, service)), f"create volume {name}")
        return self._docker.types.Mount(target=path, source=name, type="volume")

    def _image_accounts(self, image: str) -> dict[str, int]:
        if image not in self._accounts:
            labels = (
                self.call(lambda: self._api.inspect_image(image), f"inspect image {image}")["Config"]["Labels"] or {}
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
            state = self.call(lambda: self._api.inspect_container(container_id), f"inspect {name}")["State"]
            if not state["Running"]:
                return f"  {name} stopped (exit code {state['ExitCode']}):\n{self._log_tail(container_id)}"
            result = self.call(
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
        except self._docker.errors.APIError as error:
            return f"    (logs unavailable: {error})"
        return "\n".join(f"    | {line}" for line in logs.splitlines())
