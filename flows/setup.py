"""`stroppy-flows setup`: the work pools, each target's run limit, the block types, and this installation's blocks.

Blocks are created or updated from a YAML file (`--config`) or the environment (`STROPPY_SETUP_<SECTION>__<FIELD>`,
e.g. `STROPPY_SETUP_GRAFANA__TOKEN`); the file wins where both give a field. Each section saves one block, and only a
section that is given: `redis`, `grafana`, `s3`, `yandex_cloud`, `docker` (prefect-docker `DockerHost`: the engine
runs use; `docker: {}` is the local engine) and `registry` (prefect-docker `DockerRegistryCredentials`). Block names
are the master's settings (`STROPPY_REDIS_BLOCK`, `STROPPY_GRAFANA_BLOCK`, `STROPPY_ARCHIVE_S3_BLOCK`,
`STROPPY_YANDEX_CLOUD_BLOCK`, `STROPPY_DOCKER_HOST_BLOCK`, `STROPPY_REGISTRY_BLOCK`), so what setup saves is what
runs load. Nothing secret is printed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Self, cast

import httpx
from prefect.automations import Automation
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from blocks.grafana import GrafanaConnection
from blocks.redis import RedisConnection
from blocks.yandex_cloud import YandexCloud
from flows.errors import OperateError
from infra.connections import saved_block
from infra.edge_queues import EDGE_POOL
from infra.prefect_sync import called_sync
from infra.settings import OrchestrationSettings
from infra.target_slots import ensure_limit, limit_name
from infra.targets.docker import DockerSettings
from infra.targets.yandex import YandexSettings
from stroppy_domain.model import Target

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


class DockerTlsSection(BaseModel):
    """Mutual TLS with a remote engine, as `docker --tlsverify` does it: the client's files in one directory."""

    model_config = ConfigDict(extra="forbid")

    cert_dir: str = Field(description="Directory on the master with ca.pem, cert.pem and key.pem (DOCKER_CERT_PATH).")
    verify: bool = Field(default=True, description="Check the engine's certificate against ca.pem.")


class DockerSection(BaseModel):
    """The engine runs use, saved as a prefect-docker `DockerHost`. Every field may be left out: the local engine."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(
        default=None,
        description="unix:///var/run/docker.sock or tcp://host:2376; unset: DOCKER_HOST, else the local socket.",
    )
    tls: DockerTlsSection | None = Field(default=None, description="For a tcp:// engine that requires TLS.")
    version: str = Field(default="auto", description="Engine API version; auto asks the engine.")
    timeout: int | None = Field(default=None, gt=0, description="Seconds; unset: STROPPY_ENGINE_TIMEOUT_S.")
    max_pool_size: int | None = Field(default=None, gt=0, description="Connections kept open to the engine.")

    @model_validator(mode="after")
    def _tls_needs_a_tcp_engine(self) -> Self:
        if self.tls is not None and not (self.base_url or "").startswith("tcp://"):
            raise ValueError("tls is for an engine reached over TCP: give base_url as tcp://host:port")
        return self


class RegistrySection(BaseModel):
    """A registry that machines log in to before pulling, saved as a prefect-docker `DockerRegistryCredentials`."""

    # Unknown keys are ignored here, as in the other sections with a secret: an error would echo a mistyped key's
    # value, which may be the password.
    registry_url: str = Field(description="e.g. registry.example.com:5000 (http:// or https:// may be left out).")
    username: str
    password: SecretStr
    reauth: bool = Field(default=True, description="Log in again on every pull.")


class SetupConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STROPPY_SETUP_", env_nested_delimiter="__", extra="forbid")

    redis: RedisSection | None = None
    grafana: GrafanaSection | None = None
    s3: S3Section | None = None
    yandex_cloud: dict[str, Any] | None = Field(default=None, description="The fields of the YandexCloud block.")
    docker: DockerSection | None = None
    registry: RegistrySection | None = None


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


def _docker_host(section: DockerSection) -> Block:
    from prefect_docker.host import DockerHost  # noqa: PLC0415 - loaded with the rest of prefect-docker on demand

    common: dict[str, Any] = section.model_dump(include={"version", "timeout", "max_pool_size"})
    if section.tls is None:
        return DockerHost(base_url=section.base_url, **common)
    # A block keeps JSON only, not docker's TLSConfig; docker's own variables, given to the client instead of the
    # process environment, name the engine and the files, and the client reads them each time it is made.
    environment = {
        "DOCKER_HOST": section.base_url,
        "DOCKER_CERT_PATH": section.tls.cert_dir,
        "DOCKER_TLS_VERIFY": "1" if section.tls.verify else "",
    }
    return DockerHost(client_kwargs={"environment": environment}, **common)


def _registry_credentials(section: RegistrySection) -> Block:
    from prefect_docker.credentials import DockerRegistryCredentials  # noqa: PLC0415

    return DockerRegistryCredentials(**section.model_dump())


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


def _ensure_pools() -> list[SetupLine]:
    lines = []
    with get_client(sync_client=True) as client:
        for pool in (MASTER_POOL, EDGE_POOL):
            try:
                client.read_work_pool(pool)
                lines.append(SetupLine(kind="work pool", name=pool, outcome="unchanged"))
            except ObjectNotFound:
                client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
                lines.append(SetupLine(kind="work pool", name=pool, outcome="created"))
    return lines


FLOW_HEARTBEAT_S = 30
"""PREFECT_FLOWS_HEARTBEAT_FREQUENCY of the master's flow runs (scripts/control-plane.sh, compose.yaml)."""
SILENT_AFTER_S = 3 * FLOW_HEARTBEAT_S
ZOMBIE_AUTOMATION = "stroppy: crash flow runs whose heartbeat stopped"


def _ensure_zombie_automation() -> SetupLine:
    """Prefect's answer to a flow run whose process died with its machine (it stays RUNNING for ever): an automation
    that marks a running flow run CRASHED once its heartbeats stop for `SILENT_AFTER_S`; the reaper then tears down
    what it left."""
    ended = ("Completed", "Failed", "Cancelled", "Crashed")
    wanted = Automation(
        name=ZOMBIE_AUTOMATION,
        description="A running flow run silent for 3 heartbeats lost its process: mark it CRASHED.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{state}" for state in ended)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=SILENT_AFTER_S),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=f"no heartbeat for {SILENT_AFTER_S} s")],
    )
    try:
        current = cast("Automation", Automation.read(name=ZOMBIE_AUTOMATION))  # typed as sync or async
    except ValueError:  # Prefect's answer for a name it does not know
        called_sync(wanted.create())
        return SetupLine(kind="automation", name=ZOMBIE_AUTOMATION, outcome="created")
    # Each trigger gets a fresh id when it is built: compare what it does.
    if current.trigger.model_dump(exclude={"id"}) == wanted.trigger.model_dump(exclude={"id"}) and [
        action.model_dump() for action in current.actions
    ] == [action.model_dump() for action in wanted.actions]:
        return SetupLine(kind="automation", name=ZOMBIE_AUTOMATION, outcome="unchanged")
    called_sync(wanted.model_copy(update={"id": current.id}).update())
    return SetupLine(kind="automation", name=ZOMBIE_AUTOMATION, outcome="updated")


def register_block_types() -> list[type[Block]]:
    from prefect_aws import AwsCredentials, S3Bucket  # noqa: PLC0415
    from prefect_docker.credentials import DockerRegistryCredentials  # noqa: PLC0415
    from prefect_docker.host import DockerHost  # noqa: PLC0415

    types: list[type[Block]] = [
        RedisConnection, GrafanaConnection, YandexCloud, AwsCredentials, S3Bucket, DockerHost,
        DockerRegistryCredentials,
    ]  # fmt: skip
    for block_type in types:
        block_type.register_type_and_schema()
    return types


def wanted_blocks(
    config: SetupConfig,
    settings: OrchestrationSettings,
    docker_settings: DockerSettings | None = None,
    cloud_settings: YandexSettings | None = None,
) -> list[tuple[Block, str | None]]:
    """The block each given section makes, and the name runs load it by (None or empty: a setting left empty)."""
    docker_names = docker_settings or DockerSettings()
    cloud_names = cloud_settings or YandexSettings()
    wanted: list[tuple[Block, str | None]] = []
    if config.redis:
        wanted.append((RedisConnection(url=config.redis.url, password=config.redis.password), settings.redis_block))
    if config.grafana:
        wanted.append((GrafanaConnection(**config.grafana.model_dump()), settings.grafana_block))
    if config.yandex_cloud:
        wanted.append((YandexCloud(**config.yandex_cloud), cloud_names.yandex_cloud_block))
    if config.s3:
        wanted.append((_s3_bucket(config.s3), settings.archive_s3_block))
    if config.docker:
        wanted.append((_docker_host(config.docker), docker_names.docker_host_block))
    if config.registry:
        wanted.append((_registry_credentials(config.registry), settings.registry_block))
    return wanted


def setup(
    config: SetupConfig,
    settings: OrchestrationSettings,
    docker_settings: DockerSettings | None = None,
    cloud_settings: YandexSettings | None = None,
) -> list[SetupLine]:
    """The work pools, the automation that crashes silent flow runs, each target's run limit, the block types, then
    the block of each section given; one line per outcome.

    Raises OperateError when the Prefect API does not answer about the pools, and ValueError when a given
    section's block name setting is empty."""
    try:
        lines = [*_ensure_pools(), _ensure_zombie_automation()]
        lines += [
            SetupLine(kind="concurrency limit", name=limit_name(target), outcome=ensure_limit(target, limit))
            for target in Target
            for limit in [settings.target_run_limit(target)]
        ]
    except httpx.HTTPError as error:
        raise OperateError(f"the Prefect API did not answer (PREFECT_API_URL): {error}") from None
    lines += [
        SetupLine(kind="block type", name=block_type.get_block_type_name(), outcome="registered")
        for block_type in register_block_types()
    ]
    for block, name in wanted_blocks(config, settings, docker_settings, cloud_settings):
        if not name:
            raise ValueError(f"{type(block).__name__}: its block name setting is empty, so runs would never load it")
        lines.append(SetupLine(kind="block", name=name, outcome=_save(block, name)))
    return lines
