"""The master's connections, from the blocks that `stroppy-flows setup` saves, falling back to plain settings.

A block name in the settings that has no saved block means "not configured" (no Grafana, no S3): installations
start with none and add them one at a time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypeVar

from prefect.blocks.core import Block

from blocks.redis import RedisConnection
from flows.settings import OrchestrationSettings

if TYPE_CHECKING:
    from prefect_aws import S3Bucket

B = TypeVar("B", bound=Block)
logger = logging.getLogger("stroppy.connections")


def saved_block(block_type: type[B], name: str | None) -> B | None:
    """The block saved under `name`, or None when there is none (other failures are raised)."""
    if not name:
        return None
    try:
        # Forced sync: from a thread of an async flow (the suite's teardown), Prefect would hand back a coroutine.
        return block_type.load(name, _sync=True)
    except ValueError as error:
        if "Unable to find block document named" not in str(error):
            raise
        logger.debug("no %s block named %s: not configured", block_type.__name__, name)
        return None


def redis_connection(settings: OrchestrationSettings) -> RedisConnection:
    return saved_block(RedisConnection, settings.redis_block) or RedisConnection(url=settings.redis_url)


def results_bucket(settings: OrchestrationSettings) -> S3Bucket | None:
    """The prefect-aws `S3Bucket` runs' raw files (and cloud machines' load files) go to, once one is saved."""
    from prefect_aws import S3Bucket  # noqa: PLC0415 - the AWS SDK loads only when results are stored

    return saved_block(S3Bucket, settings.archive_s3_block)
