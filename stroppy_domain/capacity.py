"""Host capacity on a target whose machines share one host (Docker): which CPUs each run's machines get.

A run in `exclusive` isolation gets, per machine, as many host CPUs as its hardware has cores; no other run, of
either isolation, uses them while it holds them, and its machines' memory is counted against the host's. A run in
`shared` isolation gets one pool, every CPU not held exclusively, for all its machines: it oversubscribes on
purpose, and an exclusive run never takes a CPU a live shared run uses. The first `reserved_cpus` CPUs are never
handed out (they are the control plane's).

The decision is pure: `allocate` takes what is held and answers with a grant or with what is missing. Storing the
grants atomically is the outer layer's job (infra.cpu_leases).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import Field

from stroppy_domain.model import Hardware, InputModel, Isolation, Model


class HostCapacity(InputModel):
    """What the host of a target that shares one host offers its runs."""

    cpus: int = Field(ge=1, description="CPUs of the host, numbered from 0.")
    memory_gb: float = Field(gt=0, description="Memory of the host.")
    reserved_cpus: int = Field(default=0, ge=0, description="The first CPUs, kept for the control plane.")
    reserved_memory_gb: float = Field(default=0, ge=0, description="Memory kept for the control plane.")

    @property
    def usable_cpus(self) -> list[int]:
        return list(range(min(self.reserved_cpus, self.cpus), self.cpus))

    @property
    def usable_memory_gb(self) -> float:
        return max(0.0, self.memory_gb - self.reserved_memory_gb)


class MachineDemand(Model):
    name: str
    cores: int
    memory_gb: float


class CpuGrant(Model):
    """The CPUs a run holds, per machine, until `expires_ms` (Redis server time) unless renewed."""

    run_id: str
    isolation: Isolation
    cpus: dict[str, list[int]] = Field(description="Machine name -> the host CPUs its containers may use.")
    memory_gb: float = Field(description="Memory counted against the host: the machines' total when exclusive.")
    expires_ms: int

    def cpuset(self, machine: str) -> str | None:
        """The machine's CPUs as a cpuset list (`0,1,5`), or None when the grant names no such machine."""
        held = self.cpus.get(machine)
        return ",".join(str(cpu) for cpu in held) if held else None

    @property
    def held(self) -> set[int]:
        return {cpu for cpus in self.cpus.values() for cpu in cpus}


class Shortfall(Model):
    """Why a run cannot have its CPUs now: what it needs and what is free."""

    cores_needed: int
    cores_free: int
    memory_needed_gb: float = 0
    memory_free_gb: float = 0

    def describe(self) -> str:
        text = f"needs {self.cores_needed} core(s), {self.cores_free} free"
        if self.memory_needed_gb > self.memory_free_gb:
            text += f"; needs {self.memory_needed_gb:g} GB of memory, {self.memory_free_gb:g} GB free"
        return text


def machine_demands(machines: Iterable[tuple[str, Hardware]]) -> list[MachineDemand]:
    """What each named machine needs, from its hardware (`lay_out(test).machines` gives them in plan order)."""
    return [MachineDemand(name=name, cores=hw.cores, memory_gb=hw.memory_gb) for name, hw in machines]


def oversize_problem(demands: Sequence[MachineDemand], isolation: Isolation, host: HostCapacity) -> str | None:
    """Why a run of these machines can never run on `host` in `isolation`, or None when it can once CPUs free up."""
    usable = len(host.usable_cpus)
    if usable == 0:
        return f"the host has {host.cpus} CPU(s), all reserved for the control plane ({host.reserved_cpus} reserved)"
    if isolation is Isolation.SHARED:
        return None
    cores = sum(demand.cores for demand in demands)
    memory = sum(demand.memory_gb for demand in demands)
    problems = []
    if cores > usable:
        problems.append(f"{cores} cores (the host offers {usable})")
    if memory > host.usable_memory_gb:
        problems.append(f"{memory:g} GB of memory (the host offers {host.usable_memory_gb:g} GB)")
    if not problems:
        return None
    return (
        f"needs {' and '.join(problems)} for its machines in exclusive isolation; make them smaller, or say "
        "`isolation: shared` to share the host's CPUs on purpose"
    )


def allocate(
    host: HostCapacity,
    held: Iterable[CpuGrant],
    run_id: str,
    demands: Sequence[MachineDemand],
    isolation: Isolation,
    expires_ms: int,
) -> CpuGrant | Shortfall:
    """A grant for the run given what the other live grants hold, or what is missing. The lowest free CPUs go to
    the machines in order, so a machine's CPUs are adjacent whenever they can be."""
    others = [grant for grant in held if grant.run_id != run_id]
    exclusive = {cpu for grant in others if grant.isolation is Isolation.EXCLUSIVE for cpu in grant.held}
    shared = {cpu for grant in others if grant.isolation is Isolation.SHARED for cpu in grant.held}
    if isolation is Isolation.SHARED:
        pool = [cpu for cpu in host.usable_cpus if cpu not in exclusive]
        if not pool:
            return Shortfall(cores_needed=1, cores_free=0)
        return CpuGrant(
            run_id=run_id, isolation=isolation, cpus={demand.name: pool for demand in demands}, memory_gb=0,
            expires_ms=expires_ms,
        )  # fmt: skip
    free = [cpu for cpu in host.usable_cpus if cpu not in exclusive | shared]
    needed = sum(demand.cores for demand in demands)
    memory = sum(demand.memory_gb for demand in demands)
    memory_free = host.usable_memory_gb - sum(grant.memory_gb for grant in others)
    if needed > len(free) or memory > memory_free:
        return Shortfall(
            cores_needed=needed, cores_free=len(free), memory_needed_gb=memory, memory_free_gb=max(0.0, memory_free)
        )
    cpus: dict[str, list[int]] = {}
    for demand in demands:
        cpus[demand.name], free = free[: demand.cores], free[demand.cores :]
    return CpuGrant(run_id=run_id, isolation=isolation, cpus=cpus, memory_gb=memory, expires_ms=expires_ms)


class IsolationFacts(Model):
    """How the run's machines were held on their host, for the result and the report."""

    isolation: Isolation | None = Field(description="None where every machine is its own host (a cloud VM).")
    cpus: dict[str, str] = Field(default_factory=dict, description="Machine -> the host CPUs it could use.")
    memory_gb: dict[str, int] = Field(default_factory=dict, description="Machine -> its hard memory limit.")
    unenforced: list[str] = Field(default_factory=list, description="Hardware fields the target does not enforce.")

    def describe(self) -> str:
        if self.isolation is None:
            return "Each machine was its own host, sized by its hardware."
        machines = ", ".join(
            f"{name} on CPUs {self.cpus.get(name, 'any')} with {self.memory_gb[name]} GB" for name in self.memory_gb
        )
        if self.isolation is Isolation.SHARED:
            text = f"**Shared CPUs:** these numbers were taken on CPUs other runs could use too ({machines})."
        else:
            text = f"Exclusive CPUs: no other run used them ({machines})."
        if self.unenforced:
            text += f" Not enforced on this target: {', '.join(self.unenforced)}."
        return text


def isolation_facts(
    grant: CpuGrant | None, machines: Iterable[tuple[str, Hardware]], unenforced: Sequence[str]
) -> IsolationFacts:
    """What `grant` (None: the machines are their own hosts) held the named machines to."""
    machines = list(machines)
    if grant is None:
        return IsolationFacts(isolation=None)
    return IsolationFacts(
        isolation=grant.isolation,
        cpus={name: cpuset for name, _ in machines if (cpuset := grant.cpuset(name))},
        memory_gb={name: hardware.memory_gb for name, hardware in machines},
        unenforced=list(unenforced),
    )
