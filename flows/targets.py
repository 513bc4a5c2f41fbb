"""How the master wires each target: its settings (from the master's settings and the target's block), the bounds
that differ between targets, and where the runner machine keeps its files."""

from __future__ import annotations

from pathlib import PurePosixPath

from pydantic import BaseModel

from blocks.yandex_cloud import YandexCloud
from flows.connections import results_bucket, saved_block
from flows.settings import OrchestrationSettings
from infra.images import ImageSet
from infra.targets.base import TargetError
from infra.targets.docker import DockerTargetSettings
from infra.targets.yandex import MachineBootstrap, YandexTargetSettings
from infra.terraform import TerraformSettings
from stroppy_domain.cloud import AGENT_STATE_DIR, EdgeRelease, YandexPlacement
from stroppy_domain.model import Target
from stroppy_domain.plan import StartStage


def docker_target_settings(settings: OrchestrationSettings) -> DockerTargetSettings:
    """How the master starts machines on Docker: each runs an edge agent for its own queue."""
    results = str(settings.results_dir)
    return DockerTargetSettings(
        machine_image=ImageSet.for_checkout().edge,
        machine_command=["stroppy-flows", "edge-agent", "--queue", "{queue}", "--name", "{queue}"],
        machine_environment={
            "PREFECT_API_URL": settings.edge_api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            "PREFECT_LOCAL_STORAGE_PATH": f"{results}/prefect",
            "STROPPY_FLOWS_DIR": settings.edge_flows_dir,
        },
        machine_binds=[f"{results}:{results}"],
    )


def yandex_cloud_block(settings: OrchestrationSettings) -> YandexCloud:
    block = saved_block(YandexCloud, settings.yandex_cloud_block)
    if block is None:
        raise TargetError(
            f"the yandex_cloud target needs a saved YandexCloud block: STROPPY_YANDEX_CLOUD_BLOCK="
            f"{settings.yandex_cloud_block!r} names none (create it with `stroppy-flows setup`)"
        )
    return block


RELEASE_SETTINGS = {
    "prefect_api_url": "cloud_api_url",
    "package_url": "cloud_package_url",
    "package_sha256": "cloud_package_sha256",
    "requirements_url": "cloud_requirements_url",
    "requirements_sha256": "cloud_requirements_sha256",
}
"""Each field of the machines' `EdgeRelease` and the master setting (`STROPPY_<NAME>`) it comes from."""


def yandex_target_settings(settings: OrchestrationSettings) -> YandexTargetSettings:
    """The cloud target from its block (folder, network, key) and the master's settings (Terraform, and what the
    machines install). Listing and destroying runs need only the block; creating machines needs everything."""
    block = yandex_cloud_block(settings)
    bucket = results_bucket(settings)
    release = {field: getattr(settings, name) for field, name in RELEASE_SETTINGS.items()}
    needed = {f"STROPPY_{name.upper()}": release[field] for field, name in RELEASE_SETTINGS.items()} | {
        f"lockbox_secret_id of block {settings.yandex_cloud_block}": block.lockbox_secret_id,
        f"a saved S3Bucket block {settings.archive_s3_block!r} (STROPPY_ARCHIVE_S3_BLOCK: the machines' results "
        "and load files come back through it)": bucket,
    }
    missing = [name for name, value in needed.items() if not value]
    bootstrap = None
    if not missing:
        bootstrap = MachineBootstrap(
            release=EdgeRelease(**release),
            lockbox_secret_id=block.lockbox_secret_id,
            result_storage_block=f"s3-bucket/{settings.archive_s3_block}",
        )
    return YandexTargetSettings(
        cloud_id=block.cloud_id,
        service_account_key=block.service_account_key,
        placement=YandexPlacement(
            folder_id=block.folder_id,
            zone=block.zone,
            network_id=block.network_id,
            image_id=block.edge_image_id,
            platform_id=block.platform_id,
            public_ip=block.public_ip,
            control_plane_cidr=block.control_plane_cidr,
            route_table_id=block.route_table_id,
        ),
        bootstrap=bootstrap,
        bootstrap_missing=missing,
        terraform=TerraformSettings(
            binary=settings.terraform_binary,
            state_root=settings.terraform_state_dir,
            log_level=settings.terraform_log_level,
            plugin_cache_dir=settings.terraform_state_dir.parent / "terraform-plugins",
        ),
        image_registry=settings.cloud_image_registry,
    )


def target_settings(target: Target, settings: OrchestrationSettings) -> object:
    if target is Target.DOCKER:
        return docker_target_settings(settings)
    return yandex_target_settings(settings)


def available_targets(settings: OrchestrationSettings) -> list[Target]:
    """The targets this installation can reach: Docker always, Yandex Cloud once its block is saved."""
    cloud = saved_block(YandexCloud, settings.yandex_cloud_block)
    return [Target.DOCKER] + ([Target.YANDEX_CLOUD] if cloud is not None else [])


class TargetBounds(BaseModel):
    """How long the steps that wait on a target may take: machine containers start in seconds, cloud machines are
    applied by Terraform, boot and install the agent first."""

    create_machines_s: float
    agents_ready_s: float
    start_services_s: float


DOCKER_CREATE_MACHINES_S = 600
DOCKER_START_SERVICES_S = 900
MARGIN_S = 60


def target_bounds(target: Target, settings: OrchestrationSettings) -> TargetBounds:
    if target is Target.DOCKER:
        return TargetBounds(
            create_machines_s=DOCKER_CREATE_MACHINES_S,
            agents_ready_s=settings.agents_ready_timeout_s,
            start_services_s=DOCKER_START_SERVICES_S,
        )
    cloud = yandex_target_settings(settings)
    return TargetBounds(
        create_machines_s=cloud.terraform.init_timeout_s + cloud.terraform.apply_timeout_s + MARGIN_S,
        agents_ready_s=settings.cloud_agents_ready_timeout_s,
        # the machines' own files, then every stage, each bounded by the target
        start_services_s=cloud.services_timeout_s * (len(StartStage) + 1) + MARGIN_S,
    )


def machine_images(target: Target, settings: OrchestrationSettings) -> list[str]:
    """The images the target boots its machines from (the edge agent and the load tools), for run reports."""
    if target is Target.DOCKER:
        return [docker_target_settings(settings).machine_image]
    return [f"yandex-cloud-image:{yandex_cloud_block(settings).edge_image_id}"]


def runner_directory(target: Target, run_id: str) -> PurePosixPath:
    """Where the runner machine keeps the run's stroppy and load files: on a cloud machine, inside the one directory
    its hardened agent may write."""
    if target is Target.DOCKER:
        return PurePosixPath("/opt/stroppy-runs") / run_id
    return PurePosixPath(AGENT_STATE_DIR) / "runs" / run_id
