"""Targets, one module per backend, chosen by the run's target name. Backends import their SDKs lazily."""

from __future__ import annotations

from typing import Any

from infra.targets.base import Target, TargetError
from stroppy_domain.model import Target as TargetName


def open_target(name: TargetName, settings: Any) -> Target:
    """The backend for `name`, configured by its settings model; the caller closes it."""
    if name is TargetName.DOCKER:
        from infra.targets.docker import DockerTarget  # noqa: PLC0415 - backends load only when chosen

        return DockerTarget(settings)
    if name is TargetName.YANDEX_CLOUD:
        from infra.targets.yandex import YandexTarget  # noqa: PLC0415

        return YandexTarget(settings)
    raise TargetError(f"target {name!r} has no backend in this installation yet")
