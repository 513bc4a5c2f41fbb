"""The Yandex Cloud target: a run is a Terraform working directory (infra/terraform/yandex), a machine is a VM whose
cloud-init makes it an edge agent for its own queue, and its services are containers on the VM's own Docker engine,
started by the `start-services` edge flow stage by stage.

The run's spec, passwords included, goes to the machines through a per-run Prefect `Secret` block, never through
flow parameters or user-data. Destroy is `terraform destroy` from the persisted working directory, then a sweep of
whatever still carries the run's labels (what a lost state or a half-finished apply leaves behind), then the block.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from infra.connections import delete_block
from infra.containers import StartServicesRequest
from infra.edge_queues import dispatch, edge_tags
from infra.retries import is_retryable
from infra.targets.base import (
    DestroyReport,
    ReleasedOnExit,
    RunInventory,
    RunSpec,
    TargetError,
    check_run_id,
    machine_queue_name,
)
from infra.terraform import TerraformError, TerraformRunner, TerraformSettings
from infra.yandex_cloud import DELETION_ORDER, CloudResource, YandexApiSettings, YandexCloudApi, YandexCloudError
from stroppy_domain.cloud import (
    EdgeBootstrap,
    EdgeRelease,
    YandexPlacement,
    edge_user_data,
    parse_expires_label,
    terraform_variables,
)
from stroppy_domain.plan import StartStage, revealed_json

MODULE_DIR = Path(__file__).resolve().parents[2] / "terraform" / "yandex"
START_SERVICES_DEPLOYMENT = "start-services/edge"
LABEL_RUN_ID = "stroppy_run_id"
LABEL_EXPIRES_AT = "stroppy_expires_at"
LABEL_MACHINE = "stroppy_machine"
LABEL_MANAGED_BY = "managed_by"
MANAGER = "stroppy-flows"
SERVICES_TIMEOUT_S = 900

Progress = Callable[[str], None]
Dispatch = Callable[..., Any]
"""`infra.edge_queues.dispatch` or a stand-in with its signature."""


class MachineBootstrap(BaseModel):
    """What creating machines needs beyond the folder; destroying and listing runs do not."""

    model_config = ConfigDict(frozen=True)

    release: EdgeRelease
    lockbox_secret_id: str = Field(description="The Lockbox secret the edge agents read their credentials from.")


class YandexTargetSettings(BaseModel):
    """How runs map onto a Yandex Cloud folder; built from the `YandexCloud` block and the master's settings."""

    model_config = ConfigDict(frozen=True)

    cloud_id: str
    service_account_key: SecretStr = Field(description="Authorized key JSON of the account Terraform acts as.")
    placement: YandexPlacement
    bootstrap: MachineBootstrap | None = Field(
        default=None, description="None until everything in `bootstrap_missing` is set."
    )
    bootstrap_missing: list[str] = Field(
        default_factory=list, description="The settings and blocks still needed before machines can be created."
    )
    terraform: TerraformSettings
    api: YandexApiSettings = Field(default_factory=YandexApiSettings)
    module_dir: Path = Field(default=MODULE_DIR, description="The Terraform module of a run.")
    image_registry: str | None = Field(
        default=None, description="Registry the machines pull service images from (prefix of the image names)."
    )
    registry_block: str | None = Field(
        default=None, description="`DockerRegistryCredentials` block the machines log in to the registry with."
    )
    services_timeout_s: float = Field(
        default=SERVICES_TIMEOUT_S, gt=0, description="Bound of one machine's start stage."
    )
    engine_timeout_s: float = Field(default=120, gt=0, description="Timeout of every call to a machine's engine.")


def run_block_name(run_id: str) -> str:
    """The Prefect `Secret` block holding a run's spec for its machines."""
    return f"stroppy-run-{run_id}"


def service_account_name(run_id: str) -> str:
    """The module's per-run service account, found by its name and description (accounts take no labels here)."""
    return f"stroppy-{run_id}-edge"


SERVICE_ACCOUNT_DESCRIPTION = "stroppy-flows run {run_id}, expires {expires_at}"
"""As infra/terraform/yandex/locals.tf writes it (tests/unit/test_cloud.py keeps the two equal)."""
_DESCRIPTION_PREFIX = SERVICE_ACCOUNT_DESCRIPTION.split("{", 1)[0]


def _run_of(resource: CloudResource) -> str | None:
    if resource.labels.get(LABEL_MANAGED_BY) == MANAGER:
        return resource.labels.get(LABEL_RUN_ID)
    if resource.kind == "service_account" and resource.description.startswith(_DESCRIPTION_PREFIX):
        run_id = resource.description.removeprefix(_DESCRIPTION_PREFIX).split(",", 1)[0]
        return run_id if resource.name == service_account_name(run_id) else None
    return None


def _expiry_of(resource: CloudResource) -> datetime | None:
    return parse_expires_label(resource.labels.get(LABEL_EXPIRES_AT) or resource.description.rpartition(" ")[2])


class YandexTarget(ReleasedOnExit):
    """Runs in one Yandex Cloud folder. Owns its API client: use it as a context manager or call `close()`."""

    def __init__(
        self,
        settings: YandexTargetSettings,
        dispatcher: Dispatch = dispatch,
        progress: Progress = print,
    ) -> None:
        self._settings = settings
        self._dispatch = dispatcher
        self._progress = progress
        # The provider takes the key's contents in this variable, so the key is never written to disk.
        credentials = {"YC_SERVICE_ACCOUNT_KEY_FILE": settings.service_account_key.get_secret_value()}
        environment = {
            "YC_CLOUD_ID": settings.cloud_id,
            "YC_FOLDER_ID": settings.placement.folder_id,
            "YC_ZONE": settings.placement.zone,
        }
        self._terraform = TerraformRunner(
            settings.module_dir, settings.terraform, credentials, progress, environment=environment
        )
        self._api = YandexCloudApi(settings.service_account_key, settings.placement.folder_id, settings.api)

    def close(self) -> None:
        self._api.close()

    def state_location(self, run_id: str) -> str:
        """The run's Terraform working directory: recorded in the ledger before the first apply."""
        return str(self._terraform.workdir(run_id))

    # creation -----------------------------------------------------------------------------------------------

    def create_machines(self, run: RunSpec) -> None:
        """Apply the run's Terraform working directory: one VM per planned machine, each its queue's edge agent.

        Raises TargetError when the run id is malformed, settings the machines' bootstrap needs are missing,
        Terraform fails or runs past its bound, or a machine is not at its planned address."""
        check_run_id(run.run_id)
        bootstrap = self._bootstrap()
        user_data = {
            machine.name: edge_user_data(
                EdgeBootstrap(
                    queue=machine_queue_name(run.run_id, machine.name),
                    lockbox_secret_id=bootstrap.lockbox_secret_id,
                    release=bootstrap.release,
                )
            )
            for machine in run.plan.machines
        }
        variables = terraform_variables(
            run.run_id, run.plan, run.expires_at, self._settings.placement, bootstrap.lockbox_secret_id, user_data
        )
        try:
            outputs = self._terraform.apply(run.run_id, variables)
        except TerraformError as error:
            raise TargetError(str(error), retryable=error.retryable) from error
        created = outputs.get("machines", {})
        wrong = [
            f"{machine.name} (planned {machine.ip}, got {created.get(machine.name, {}).get('internal_ip')})"
            for machine in run.plan.machines
            if created.get(machine.name, {}).get("internal_ip") != machine.ip
        ]
        if wrong:
            raise TargetError(f"run {run.run_id}: machines not at their planned addresses: {', '.join(wrong)}")
        self._progress(f"run {run.run_id}: {len(created)} machine(s) on {run.plan.subnet}")

    def _bootstrap(self) -> MachineBootstrap:
        if self._settings.bootstrap is None:
            missing = ", ".join(self._settings.bootstrap_missing) or "the machines' bootstrap"
            raise TargetError(f"the yandex_cloud target cannot create machines until these are set: {missing}")
        return self._settings.bootstrap

    # services -----------------------------------------------------------------------------------------------

    def start_services(self, run: RunSpec) -> None:
        """Hand the spec to the machines through a Secret block, then start each stage on every machine at once.

        Raises TargetError when the run id is malformed, settings the machines' bootstrap needs are missing, or a
        stage fails on any machine (every machine's failure listed, whatever its cause)."""
        from prefect.blocks.system import Secret  # noqa: PLC0415 - the block API loads only when services start

        check_run_id(run.run_id)
        self._bootstrap()
        block = run_block_name(run.run_id)
        Secret(value=json.loads(revealed_json(self._for_machines(run)))).save(block, overwrite=True, _sync=True)  # type: ignore[call-arg]
        with_files = [machine.name for machine in run.plan.machines if machine.secret_files]
        self._on_machines(run, with_files, None, block)
        for stage in StartStage:
            machines = [m.name for m in run.plan.machines if any(c.start_stage is stage for c in m.containers)]
            self._on_machines(run, machines, stage, block)

    def _on_machines(self, run: RunSpec, machines: list[str], stage: StartStage | None, block: str) -> None:
        """Dispatch one stage (or, with none, the machines' own files) to every machine at once; all must succeed."""
        if not machines:
            return
        what = "machine files" if stage is None else f"stage {stage.name.lower()}"
        self._progress(f"run {run.run_id}: {what} on {', '.join(machines)}")
        with ThreadPoolExecutor(max_workers=len(machines)) as pool:
            outcomes = list(pool.map(lambda name: self._start_stage(run, name, stage, block), machines))
        failures = [(name, error) for name, error in zip(machines, outcomes, strict=True) if error is not None]
        if failures:
            # Starting a stage adopts what exists, so a retry is safe when every machine failed transiently.
            raise TargetError(
                f"run {run.run_id}: {what} failed:\n" + "\n".join(f"  {name}: {error}" for name, error in failures),
                retryable=all(is_retryable(error) for _, error in failures),
            )
        self._progress(f"run {run.run_id}: {what} done")

    def _for_machines(self, run: RunSpec) -> RunSpec:
        """The spec with service images named as the machines pull them."""
        registry = self._settings.image_registry
        if registry is None:
            return run
        machines = [
            machine.model_copy(
                update={
                    "containers": [
                        container.model_copy(update={"image": f"{registry.rstrip('/')}/{container.image}"})
                        for container in machine.containers
                    ]
                }
            )
            for machine in run.plan.machines
        ]
        return run.model_copy(update={"plan": run.plan.model_copy(update={"machines": machines})})

    def _start_stage(self, run: RunSpec, machine: str, stage: StartStage | None, block: str) -> Exception | None:
        request = StartServicesRequest(
            run_id=run.run_id, machine=machine, stage=stage, run_block=block,
            api_timeout_s=self._settings.engine_timeout_s, registry_block=self._settings.registry_block,
        )  # fmt: skip
        queue = machine_queue_name(run.run_id, machine)
        try:
            self._dispatch(
                START_SERVICES_DEPLOYMENT, {"request": request.model_dump(mode="json")}, queue,
                self._settings.services_timeout_s, tags=edge_tags(run.run_id), machine=machine,
            )  # fmt: skip
        except Exception as error:  # whatever stopped one machine, every machine's outcome is reported together
            return error
        return None

    # destruction and inventory ------------------------------------------------------------------------------

    def destroy(self, run_id: str) -> DestroyReport:
        """The Secret block first (nothing needs the passwords any more, whatever fails next), then Terraform's
        state, then whatever still carries the run's labels.

        Raises TargetError when the run id is malformed, `terraform destroy` fails or runs past its bound, or the
        sweep cannot list or delete the labelled resources."""
        from prefect.blocks.system import Secret  # noqa: PLC0415

        check_run_id(run_id)
        removed: dict[str, int] = {}
        removed["secret_blocks"] = int(delete_block(Secret, run_block_name(run_id)))
        try:
            removed["terraform_states"] = int(self._terraform.destroy(run_id))
        except TerraformError as error:
            raise TargetError(str(error), retryable=error.retryable) from error
        try:
            leftovers = [resource for resource in self._api.resources() if _run_of(resource) == run_id]
            for kind in DELETION_ORDER:
                removed[f"{kind}s"] = sum(self._api.delete(resource) for resource in leftovers if resource.kind == kind)
        except YandexCloudError as error:
            raise TargetError(
                f"run {run_id}: sweep of labelled resources: {error}", retryable=error.retryable
            ) from error
        self._progress(f"run {run_id}: destroyed {removed}")
        return DestroyReport(run_id=run_id, removed=removed)

    def list_runs(self) -> list[RunInventory]:
        """Runs with labelled resources in the folder, or a Terraform working directory on this master.

        Raises TargetError when the folder's resources cannot be listed."""
        try:
            resources = self._api.resources()
        except YandexCloudError as error:
            raise TargetError(
                f"list runs in folder {self._settings.placement.folder_id}: {error}", retryable=error.retryable
            ) from error
        runs: dict[str, RunInventory] = {}
        for resource in resources:
            run_id = _run_of(resource)
            if run_id is None:
                continue
            inventory = runs.setdefault(run_id, RunInventory(run_id=run_id, expires_at=None))
            inventory.resources += 1
            expires = _expiry_of(resource)
            if expires is not None:
                inventory.expires_at = expires
            machine = resource.labels.get(LABEL_MACHINE)
            if machine and machine not in inventory.machines:
                inventory.machines.append(machine)
        for run_id in self._terraform.runs():
            runs.setdefault(run_id, RunInventory(run_id=run_id, expires_at=None)).resources += 1
        return sorted(runs.values(), key=lambda item: item.run_id)
