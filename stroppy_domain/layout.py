"""The shape of a planned run before it has addresses: which machines exist and which services each runs.

The placement planner builds these and the service renderers read them, so they live apart from both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stroppy_domain.model import Hardware
from stroppy_domain.plan import MachineRole, ServiceKind

_KIND_ORDER = list(ServiceKind)


@dataclass
class ServiceSlot:
    """A service on a machine, with the suite path whose settings it comes from."""

    kind: ServiceKind
    source: str
    ports: dict[str, int] = field(default_factory=dict)
    port_sources: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)


@dataclass
class MachineLayout:
    """A machine of the run and its services, kept in ServiceKind order so plans come out in a stable order."""

    name: str
    role: MachineRole
    hardware: Hardware
    replica_index: int | None = None
    services: list[ServiceSlot] = field(default_factory=list)

    def has(self, kind: ServiceKind) -> bool:
        """Whether a service of `kind` already runs here."""
        return any(slot.kind is kind for slot in self.services)

    def add(self, slot: ServiceSlot) -> None:
        """Adds `slot` unless a service of its kind already runs here: several addons may ask for one exporter."""
        if not self.has(slot.kind):
            self.services.append(slot)
            self.services.sort(key=lambda item: _KIND_ORDER.index(item.kind))


@dataclass
class Layout:
    """Every machine of the run, the runner last, and the machine and port the load connects to."""

    machines: list[MachineLayout]
    entry: tuple[str, int]

    def machine(self, name: str) -> MachineLayout:
        """The machine called `name`; it must exist."""
        return next(machine for machine in self.machines if machine.name == name)
