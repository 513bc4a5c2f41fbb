"""Prefect's dispatching APIs, typed for the sync code that calls them.

`run_deployment`, `Block.load`, the artifact functions and the like pick their sync or async implementation at call
time, so their type is `X | Coroutine[..., X]`. Called from sync code (a sync flow or task, the CLI, a worker
thread without a run context) Prefect runs them synchronously and returns `X`; these helpers say so to the type
checker and change nothing at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar, cast

from prefect.blocks.core import Block

from stroppy_domain.errors import InvalidSuiteError, Issue

R = TypeVar("R")
B = TypeVar("B", bound=Block)


def called_sync(value: R | Coroutine[Any, Any, R]) -> R:
    """The value of a dispatching Prefect call made from sync code, where Prefect ran it synchronously."""
    return cast("R", value)


def load_block_sync(block_type: type[B], name: str) -> B:
    """`block_type.load(name)` forced to run synchronously (`_sync=True`), even from a thread of an async flow,
    where Prefect would otherwise hand back a coroutine."""
    # Prefect's dispatcher accepts `_sync`; the signature it exposes does not show it.
    load: Callable[..., B | Coroutine[Any, Any, B]] = block_type.load
    return called_sync(load(name, _sync=True))


def missing_blocks(block_type_slug: str, names: Iterable[str]) -> list[str]:
    """Which of `names` no saved block of the type has; asked without reading any secret value."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415 - the client loads only when asked
    from prefect.exceptions import ObjectNotFound  # noqa: PLC0415

    missing = []
    with get_client(sync_client=True) as client:
        for name in dict.fromkeys(names):
            try:
                client.read_block_document_by_name(name, block_type_slug, include_secrets=False)
            except ObjectNotFound:
                missing.append(name)
    return missing


def refuse_missing_secrets(references: dict[str, str]) -> None:
    """Raises InvalidSuiteError naming each path (`stroppy.env.TOKEN`) whose Secret block is not saved."""
    missing = set(missing_blocks("secret", references.values()))
    issues = [
        Issue(path, f"no Secret block named {block!r} is saved: create it (prefect block create secret) or fix the "
              "name", block)
        for path, block in references.items()
        if block in missing
    ]  # fmt: skip
    if issues:
        raise InvalidSuiteError(issues)
