"""The target interface: where a run's machines and services live. One package per target, routed by name
(`infra.targets.open_target`); each implements `TargetBackend` for its machines and `TargetModule` for what the
flows need to know of it without a branch on its name."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from stroppy_domain.bounds import TargetBounds
from stroppy_domain.capacity import HostCapacity
from stroppy_domain.errors import StroppyError
from stroppy_domain.plan import RunPlan

if TYPE_CHECKING:
    from infra.settings import OrchestrationSettings

RUN_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{2,39}$"
"""Run ids become parts of resource names on every backend, so they are short, lowercase and dash-separated."""

LABEL_MANAGED_BY = "stroppy.managed_by"
LABEL_RUN_ID = "stroppy.run_id"
LABEL_MACHINE = "stroppy.machine"
LABEL_SERVICE = "stroppy.service"
LABEL_EXPIRES_AT = "stroppy.expires_at"
MANAGER = "stroppy-flows"


class TargetError(StroppyError):
    """A backend operation failed; the message names the run, the resource and the reason."""


class RunSpec(BaseModel):
    """What a target needs to create a run: its id, its plan, and when whatever it leaves may be reaped."""

    model_config = ConfigDict(frozen=True)

    run_id: str = Field(pattern=RUN_ID_PATTERN)
    plan: RunPlan
    expires_at: datetime
    cpusets: dict[str, str] = Field(
        default_factory=dict,
        description="Machine name -> the host CPUs (`0,1`) its containers may use, on a target whose machines share "
        "one host; a machine not named here is not pinned.",
    )

    def labels(self, machine: str | None = None, service: str | None = None) -> dict[str, str]:
        labels = {
            LABEL_MANAGED_BY: MANAGER,
            LABEL_RUN_ID: self.run_id,
            LABEL_EXPIRES_AT: self.expires_at.isoformat(),
        }
        if machine is not None:
            labels[LABEL_MACHINE] = machine
        if service is not None:
            labels[LABEL_SERVICE] = service
        return labels


class SharedHost(BaseModel):
    """The one host a target's machines share: its key (unique per engine) and what it offers."""

    model_config = ConfigDict(frozen=True)

    key: str
    capacity: HostCapacity
    unenforced: list[str] = Field(
        default_factory=list, description="Hardware fields the target cannot enforce there, for the report."
    )


class RunInventory(BaseModel):
    """What a backend holds for one run, found by labels: what a reaper needs to judge and destroy it."""

    run_id: str
    expires_at: datetime | None
    machines: list[str] = Field(default_factory=list)
    resources: int = 0


class DestroyReport(BaseModel):
    run_id: str
    removed: dict[str, int] = Field(default_factory=dict)

    @property
    def nothing_left_to_do(self) -> bool:
        return not any(self.removed.values())


class ReleasedOnExit:
    """A context manager that calls the subclass's `close()` on exit, whatever happened inside."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release what the object holds."""
        raise NotImplementedError


@runtime_checkable
class TargetBackend(Protocol):
    """A backend that runs machines. Every method is idempotent: a retry adopts or skips what exists. A backend
    owns its clients: it is a context manager that releases them on exit."""

    def __enter__(self) -> Self:
        """The backend itself."""

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Release the backend's clients."""

    def create_machines(self, run: RunSpec) -> None:
        """Create the run's network and one machine per planned machine, each holding its planned IP.

        Raises TargetError when the run id is malformed, what exists under the run's names belongs to another run,
        the machines cannot be created as planned, or the backend refuses or does not answer."""

    def state_location(self, run_id: str) -> str | None:
        """Where the backend keeps the run's own state (recorded in the ledger before creation), if anywhere."""

    def start_services(self, run: RunSpec) -> None:
        """Start the planned containers stage by stage; return once every health check has passed.

        Raises TargetError when a stage does not become healthy (every failure listed), or the backend refuses or
        does not answer."""

    def destroy(self, run_id: str) -> DestroyReport:
        """Remove everything labelled with the run id; a second call removes nothing and succeeds.

        Raises TargetError when the run id is malformed, or something of the run could not be removed."""

    def list_runs(self) -> list[RunInventory]:
        """Every run that still has resources here, for a reaper. Raises TargetError when they cannot be listed."""


@runtime_checkable
class TargetModule(Protocol):
    """What a target's package offers the flows, besides its backend: each answer comes from the target's own
    settings (read from the environment and its blocks), so the flows never ask which target they are on."""

    SHARES_RESULTS_DIR: bool
    """True when the runner writes the load's files straight into the master's results directory; otherwise they
    come back through the results bucket."""

    SERVICES_NEED_AGENTS: bool
    """True when services start through the machines' edge agents, which must be ready first; False when the target
    starts them itself, and the agents (not needed until the load) are waited for after the services."""

    def is_available(self, settings: OrchestrationSettings) -> bool:
        """Whether this installation can reach the target (its blocks are saved)."""

    def bounds(self, settings: OrchestrationSettings) -> TargetBounds:
        """How long each step that waits on the target may take."""

    def machine_images(self, settings: OrchestrationSettings) -> list[str]:
        """The images the target boots its machines from, for run reports. Raises TargetError when the target's
        block is not saved."""

    def runner_directory(self, run_id: str) -> PurePosixPath:
        """Where the runner machine keeps the run's stroppy and load files."""

    def shared_host(self, settings: OrchestrationSettings) -> SharedHost | None:
        """The host every machine of the target runs on, whose CPUs runs lease; None when each machine is its own
        host (a cloud VM sized by its hardware). Raises TargetError when the target's engine does not answer."""

    def address_conflicts(self, base_cidr: str, settings: OrchestrationSettings) -> list[str]:
        """Networks the target already has, not made by a run, that share addresses with `base_cidr` (the range runs
        carve their subnets from): `name (subnet)` each. Raises TargetError when the target does not answer."""

    def open_backend(self, settings: OrchestrationSettings) -> TargetBackend:
        """The configured backend; the caller uses it as a context manager.

        Raises TargetError when the target's block is not saved or its engine does not answer."""


def machine_queue_name(run_id: str, machine: str) -> str:
    """The Prefect work queue a machine's edge agent polls, on every backend."""
    return f"{run_id}-{machine}"


def check_run_id(run_id: str) -> str:
    """`run_id` itself; raises TargetError when it does not match `RUN_ID_PATTERN`."""
    if not re.fullmatch(RUN_ID_PATTERN, run_id):
        raise TargetError(f"run id {run_id!r} must be 3-40 lowercase letters, digits or '-'")
    return run_id
