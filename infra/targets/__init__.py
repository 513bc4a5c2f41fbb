"""Targets, one package per backend, routed by the run's target name; a package loads only when its target is used.

The flows ask `target_module(name)` what differs by target (bounds, runner directory, images, whether files come
back through shared storage) and `open_target(name, settings)` for the backend, so they never branch on a name.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from infra.settings import OrchestrationSettings
from infra.targets.base import TargetBackend, TargetError, TargetModule
from stroppy_domain.model import Target as TargetName

PACKAGES: dict[TargetName, str] = {
    TargetName.DOCKER: "infra.targets.docker",
    TargetName.YANDEX_CLOUD: "infra.targets.yandex",
}
"""The package of each target; every package implements `TargetModule` (tests/unit/test_target_compliance.py)."""


def target_module(name: TargetName) -> TargetModule:
    """The package of target `name`. Raises TargetError for a target this installation has no backend for."""
    try:
        package = PACKAGES[TargetName(name)]
    except (ValueError, KeyError):
        raise TargetError(f"target {name!r} has no backend in this installation") from None
    return cast(TargetModule, importlib.import_module(package))


@contextmanager
def open_target(name: TargetName, settings: OrchestrationSettings) -> Iterator[TargetBackend]:
    """The backend of target `name`, configured from its settings and blocks, released on exit.

    Raises TargetError when this installation has no backend for `name`, or its backend cannot be opened (its
    block not saved, its engine not answering)."""
    with target_module(name).open_backend(settings) as backend:
        yield backend


def available_targets(settings: OrchestrationSettings) -> list[TargetName]:
    """The targets this installation can reach (their blocks are saved)."""
    return [name for name in PACKAGES if target_module(name).is_available(settings)]


def check_address_space(name: TargetName, base_cidr: str, settings: OrchestrationSettings) -> None:
    """Raises TargetError naming each network the target already has inside `base_cidr` (runs could not create
    their networks there), or when the target does not answer."""
    conflicts = target_module(name).address_conflicts(base_cidr, settings)
    if conflicts:
        raise TargetError(
            f"the {name} address space {base_cidr} (STROPPY_ADDRESS_SPACES) overlaps network(s) the target already "
            f"has: {', '.join(conflicts)}; runs could not create their networks there: choose another base_cidr"
        )
