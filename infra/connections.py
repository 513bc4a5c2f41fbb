"""The master's connections, from the blocks that `stroppy-flows setup` saves, falling back to plain settings.

A block name in the settings that has no saved block means "not configured" (no Grafana, no S3): installations
start with none and add them one at a time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypeVar

from prefect.blocks.core import Block
from prefect.exceptions import ObjectNotFound

from blocks.redis import RedisConnection
from infra.prefect_sync import load_block_sync
from infra.settings import OrchestrationSettings

if TYPE_CHECKING:
    import redis
    from prefect_aws import S3Bucket

B = TypeVar("B", bound=Block)
logger = logging.getLogger("stroppy.connections")


def saved_block(block_type: type[B], name: str | None) -> B | None:
    """The block saved under `name`, or None when there is none.

    Raises whatever else loading it raises (the API unreachable, a document that no longer fits its type)."""
    if not name:
        return None
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
