"""Prefect's dispatching APIs, typed for the sync code that calls them.

`run_deployment`, `Block.load`, the artifact functions and the like pick their sync or async implementation at call
time, so their type is `X | Coroutine[..., X]`. Called from sync code (a sync flow or task, the CLI, a worker
thread without a run context) Prefect runs them synchronously and returns `X`; these helpers say so to the type
checker and change nothing at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from prefect.blocks.core import Block

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
