"""`stroppy-flows setup`: the work pools, the block types, and this installation's blocks.

Blocks are created or updated from a YAML file (`--config`) or the environment (`STROPPY_SETUP_<SECTION>__<FIELD>`,
e.g. `STROPPY_SETUP_GRAFANA__TOKEN`); the file wins where both give a field. Block names are the master's settings
(`STROPPY_REDIS_BLOCK`, `STROPPY_GRAFANA_BLOCK`, `STROPPY_ARCHIVE_S3_BLOCK`, `STROPPY_YANDEX_CLOUD_BLOCK`), so what
setup saves is what runs load. Nothing secret is printed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from blocks.grafana import GrafanaConnection
from blocks.redis import RedisConnection
from blocks.yandex_cloud import YandexCloud
from flows.connections import saved_block
from flows.errors import OperateError
from flows.settings import OrchestrationSettings
from infra.edge_queues import EDGE_POOL

MASTER_POOL = "stroppy-master"


class RedisSection(BaseModel):
    url: str
    password: SecretStr | None = None


class GrafanaSection(BaseModel):
    url: str
    token: SecretStr
    folder: str = "Stroppy"
    datasource_url: str = "http://127.0.0.1:8428"


class S3Section(BaseModel):
    bucket: str
    folder: str = Field(default="", description="Key prefix inside the bucket.")
    region: str = "us-east-1"
    endpoint_url: str | None = Field(default=None, description="For S3-compatible stores.")
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None


class SetupConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STROPPY_SETUP_", env_nested_delimiter="__", extra="forbid")

    redis: RedisSection | None = None
    grafana: GrafanaSection | None = None
    s3: S3Section | None = None
    yandex_cloud: dict[str, Any] | None = Field(default=None, description="The fields of the YandexCloud block.")


class SetupLine(BaseModel):
    kind: str
    name: str
    outcome: str


def _s3_bucket(section: S3Section) -> Block:
    """An `S3Bucket` with its `AwsCredentials` inside (saved with it, unnamed)."""
    from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket  # noqa: PLC0415 - AWS SDK on demand

    credentials = AwsCredentials(
        aws_access_key_id=section.access_key_id, aws_secret_access_key=section.secret_access_key,
        region_name=section.region, aws_client_parameters=AwsClientParameters(endpoint_url=section.endpoint_url),
    )  # fmt: skip
    return S3Bucket(bucket_name=section.bucket, bucket_folder=section.folder, credentials=credentials)


def _content(value: Any) -> Any:
    """A block's fields without Prefect's bookkeeping (`_block_document_id` and the like), nested blocks included."""
    if isinstance(value, dict):
        return {key: _content(item) for key, item in value.items() if not key.startswith("_")}
    return value


def _save(block: Block, name: str) -> str:
    current = saved_block(type(block), name)
    if current is not None and _content(current.model_dump()) == _content(block.model_dump()):
        return "unchanged"
    block.save(name, overwrite=True)
    return "created" if current is None else "updated"


async def _ensure_pools() -> list[SetupLine]:
    lines = []
    async with get_client() as client:
        for pool in (MASTER_POOL, EDGE_POOL):
            try:
                await client.read_work_pool(pool)
                lines.append(SetupLine(kind="work pool", name=pool, outcome="unchanged"))
            except ObjectNotFound:
                await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
                lines.append(SetupLine(kind="work pool", name=pool, outcome="created"))
    return lines


def register_block_types() -> list[type[Block]]:
    from prefect_aws import AwsCredentials, S3Bucket  # noqa: PLC0415

    types: list[type[Block]] = [RedisConnection, GrafanaConnection, YandexCloud, AwsCredentials, S3Bucket]
    for block_type in types:
        block_type.register_type_and_schema()
    return types


def setup(config: SetupConfig, settings: OrchestrationSettings) -> list[SetupLine]:
    try:
        lines = asyncio.run(_ensure_pools())
    except httpx.HTTPError as error:
        raise OperateError(f"the Prefect API did not answer (PREFECT_API_URL): {error}") from None
    lines += [
        SetupLine(kind="block type", name=block_type.get_block_type_name(), outcome="registered")
        for block_type in register_block_types()
    ]
    wanted: list[tuple[Block, str | None]] = []
    if config.redis:
        wanted.append((RedisConnection(url=config.redis.url, password=config.redis.password), settings.redis_block))
    if config.grafana:
        wanted.append((GrafanaConnection(**config.grafana.model_dump()), settings.grafana_block))
    if config.yandex_cloud:
        wanted.append((YandexCloud(**config.yandex_cloud), settings.yandex_cloud_block))
    if config.s3:
        wanted.append((_s3_bucket(config.s3), settings.archive_s3_block))
    for block, name in wanted:
        if not name:
            raise ValueError(f"{type(block).__name__}: its block name setting is empty, so runs would never load it")
        lines.append(SetupLine(kind="block", name=name, outcome=_save(block, name)))
    return lines
