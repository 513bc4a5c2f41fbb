"""The master's connections, from the blocks that `stroppy-flows setup` saves, falling back to plain settings.

A block name in the settings that has no saved block means "not configured" (no Grafana, no S3): installations
start with none and add them one at a time.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, TypeVar, cast

from cachetools import TTLCache
from prefect.blocks.core import Block
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectNotFound

from blocks.redis import RedisConnection
from infra.prefect_sync import load_block_sync
from infra.settings import OrchestrationSettings

if TYPE_CHECKING:
    import redis
    from prefect_aws import S3Bucket

B = TypeVar("B", bound=Block)
logger = logging.getLogger("stroppy.connections")


BLOCK_REUSE_S = 60
"""How long a flow run reuses a block it loaded. A test run reads the same blocks (Redis, the Docker host, Grafana) at
nearly every step, an API call of 50 to 90 ms each; a block saved again meanwhile reaches the run within this."""
_loaded: TTLCache[tuple[str, type[Block], str], Block | None] = TTLCache(maxsize=64, ttl=BLOCK_REUSE_S)
_loaded_lock = threading.Lock()


def saved_block(block_type: type[B], name: str | None) -> B | None:
    """The block saved under `name`, or None when there is none; inside a flow run, as loaded within the last
    `BLOCK_REUSE_S` by the same flow run (outside one, always from the API: a command that saves a block and reads it
    back sees what it saved).

    Raises whatever else loading it raises (the API unreachable, a document that no longer fits its type)."""
    if not name:
        return None
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return _load(block_type, name)
    key = (str(context.flow_run.id), block_type, name)
    with _loaded_lock:
        found = key in _loaded
        block = _loaded.get(key)
    if not found:
        block = _load(block_type, name)
        with _loaded_lock:
            _loaded[key] = block
    # A copy each: a caller that changes its block changes nobody else's.
    return cast("B", block.model_copy()) if block is not None else None


def _load(block_type: type[B], name: str) -> B | None:
    try:
        # Forced sync: from a thread of an async flow (the suite's teardown), Prefect would hand back a coroutine.
        return load_block_sync(block_type, name)
    except ValueError as error:
        # Prefect reports a missing document as a ValueError raised from the client's ObjectNotFound.
        if not isinstance(error.__cause__, ObjectNotFound):
            raise
        logger.debug("no %s block named %s: not configured", block_type.__name__, name)
        return None


def delete_block(block_type: type[Block], name: str) -> bool:
    """Delete the block saved under `name`; False when there was none (deleting twice is harmless).

    Raises whatever else deleting it raises (the API unreachable)."""
    try:
        block_type.delete(name, _sync=True)  # type: ignore[call-arg]
    except ValueError as error:
        # As on load: a missing document is a ValueError raised from the client's ObjectNotFound.
        if not isinstance(error.__cause__, ObjectNotFound):
            raise
        return False
    except ObjectNotFound:  # deleted by someone else between the look-up and the deletion
        return False
    return True


def redis_connection(settings: OrchestrationSettings) -> RedisConnection:
    return saved_block(RedisConnection, settings.redis_block) or RedisConnection(url=settings.redis_url)


def redis_client(settings: OrchestrationSettings) -> redis.Redis:
    """A new Redis client; use it as a context manager, which closes it."""
    return redis_connection(settings).get_client()


def results_bucket(settings: OrchestrationSettings) -> S3Bucket | None:
    """The prefect-aws `S3Bucket` runs' raw files (and cloud machines' load files) go to, once one is saved."""
    from prefect_aws import S3Bucket  # noqa: PLC0415 - the AWS SDK loads only when results are stored

    return saved_block(S3Bucket, settings.archive_s3_block)
