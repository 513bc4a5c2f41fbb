"""The Yandex Cloud target: machines are VMs that Terraform creates in the folder of a `YandexCloud` block. The
backend is in `backend.py`; this module is what the flows need to know of the target
(`infra.targets.base.TargetModule`): its settings, built from the block and `STROPPY_*`, and its bounds.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from blocks.yandex_cloud import YandexCloud
from infra.connections import results_bucket, saved_block
from infra.settings import REPOSITORY, OrchestrationSettings
from infra.targets.base import TargetError
from infra.targets.yandex.backend import (
    SERVICES_TIMEOUT_S,
    MachineBootstrap,
    YandexTarget,
    YandexTargetSettings,
)
from infra.terraform import TerraformSettings
from stroppy_domain.bounds import TargetBounds
from stroppy_domain.cloud import AGENT_STATE_DIR, EdgeRelease, YandexPlacement
from stroppy_domain.plan import StartStage

SHARES_RESULTS_DIR = False
"""Cloud machines upload the load's files to the results bucket; the master fetches them from there."""
SERVICES_NEED_AGENTS = True
"""Each machine starts its own services in an edge flow its agent runs."""
MARGIN_S = 60


class YandexSettings(BaseSettings):
    """The cloud target's settings (`STROPPY_*`): its block, what its machines install, Terraform, its bounds."""

    model_config = SettingsConfigDict(env_prefix="STROPPY_", frozen=True)

    yandex_cloud_block: str | None = Field(
        default="stroppy-yandex-cloud", description="`YandexCloud` block of the cloud target."
    )
    cloud_api_url: str | None = Field(
        default=None, description="How cloud machines reach the Prefect API (inside `control_plane_cidr`)."
    )
    cloud_package_url: str | None = Field(
        default=None, description="This project's wheel as cloud machines download it (pinned by its sha256)."
    )
    cloud_package_sha256: str | None = Field(default=None, description="sha256 of that wheel.")
    cloud_requirements_url: str | None = Field(
        default=None, description="The wheel's locked dependencies with hashes (`python -m infra.images release`)."
    )
    cloud_requirements_sha256: str | None = Field(default=None, description="sha256 of that requirements file.")
    cloud_image_registry: str | None = Field(
        default=None, description="Registry prefix cloud machines pull the service images from."
    )
    cloud_agents_ready_timeout_s: float = Field(
        default=900, gt=0, description="Bound of the wait for cloud machines to boot and poll their queues."
    )
    terraform_binary: str = Field(default="terraform", description="The terraform executable of cloud runs.")
    terraform_state_dir: Path = Field(
        default=REPOSITORY / ".state" / "terraform",
        description="Cloud runs' working directories and state; must survive a restart of the master.",
    )
    terraform_log_level: Literal["ERROR", "WARN", "INFO", "DEBUG", "TRACE"] = Field(
        default="WARN", description="TF_LOG of every terraform command."
    )


RELEASE_SETTINGS = {
    "prefect_api_url": "cloud_api_url",
    "package_url": "cloud_package_url",
    "package_sha256": "cloud_package_sha256",
    "requirements_url": "cloud_requirements_url",
    "requirements_sha256": "cloud_requirements_sha256",
}
"""Each field of the machines' `EdgeRelease` and the setting (`STROPPY_<NAME>`) it comes from."""


def _terraform(cloud: YandexSettings) -> TerraformSettings:
    return TerraformSettings(
        binary=cloud.terraform_binary,
        state_root=cloud.terraform_state_dir,
        log_level=cloud.terraform_log_level,
        plugin_cache_dir=cloud.terraform_state_dir.parent / "terraform-plugins",
    )


def cloud_block(cloud: YandexSettings) -> YandexCloud:
    """The saved `YandexCloud` block. Raises TargetError when none is saved under the configured name."""
    block = saved_block(YandexCloud, cloud.yandex_cloud_block)
    if block is None:
        raise TargetError(
            f"the yandex_cloud target needs a saved YandexCloud block: STROPPY_YANDEX_CLOUD_BLOCK="
            f"{cloud.yandex_cloud_block!r} names none (create it with `stroppy-flows setup`)"
        )
    return block


def is_available(settings: OrchestrationSettings) -> bool:
    """Once its block is saved."""
    del settings
    return saved_block(YandexCloud, YandexSettings().yandex_cloud_block) is not None


def bounds(settings: OrchestrationSettings, cloud: YandexSettings | None = None) -> TargetBounds:
    """Terraform's init and apply; the boot; the machines' own files, then every start stage, each bounded."""
    del settings
    own = cloud or YandexSettings()
    terraform = _terraform(own)
    return TargetBounds(
        create_machines_s=terraform.init_timeout_s + terraform.apply_timeout_s + MARGIN_S,
        agents_ready_s=own.cloud_agents_ready_timeout_s,
        start_services_s=SERVICES_TIMEOUT_S * (len(StartStage) + 1) + MARGIN_S,
    )


def machine_images(settings: OrchestrationSettings) -> list[str]:
    """The block's boot image of machines. Raises TargetError when no YandexCloud block is saved."""
    del settings
    return [f"yandex-cloud-image:{cloud_block(YandexSettings()).edge_image_id}"]


def runner_directory(run_id: str) -> PurePosixPath:
    """Inside the one directory the machine's hardened agent may write."""
    return PurePosixPath(AGENT_STATE_DIR) / "runs" / run_id


def address_conflicts(base_cidr: str, settings: OrchestrationSettings) -> list[str]:
    """None: each run's network is its own VPC, which no existing network shares."""
    del base_cidr, settings
    return []


def shared_host(settings: OrchestrationSettings) -> None:
    """None: every machine is its own VM, sized by its hardware."""
    del settings


def target_settings(settings: OrchestrationSettings, cloud: YandexSettings | None = None) -> YandexTargetSettings:
    """The cloud target from its block (folder, network, key) and the settings (Terraform, and what the machines
    install). Listing and destroying runs need only the block; creating machines needs everything.

    Raises TargetError when no YandexCloud block is saved; what only creating machines needs, when missing, is
    listed in `bootstrap_missing` instead."""
    own = cloud or YandexSettings()
    block = cloud_block(own)
    bucket = results_bucket(settings)
    release = {field: getattr(own, name) for field, name in RELEASE_SETTINGS.items()}
    needed = {f"STROPPY_{name.upper()}": release[field] for field, name in RELEASE_SETTINGS.items()} | {
        f"lockbox_secret_id of block {own.yandex_cloud_block}": block.lockbox_secret_id,
        f"a saved S3Bucket block {settings.archive_s3_block!r} (STROPPY_ARCHIVE_S3_BLOCK: the machines' answers "
        "and load files come back through it)": bucket,
    }
    missing = [name for name, value in needed.items() if not value]
    bootstrap = None
    if not missing:
        bootstrap = MachineBootstrap(
            release=EdgeRelease(**release),
            lockbox_secret_id=block.lockbox_secret_id,
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
        terraform=_terraform(own),
        image_registry=own.cloud_image_registry,
        registry_block=settings.registry_block,
    )


def open_backend(settings: OrchestrationSettings) -> YandexTarget:
    """The backend of the block's folder. Raises TargetError when no YandexCloud block is saved."""
    return YandexTarget(target_settings(settings))


__all__ = [
    "RELEASE_SETTINGS",
    "SERVICES_NEED_AGENTS",
    "SHARES_RESULTS_DIR",
    "MachineBootstrap",
    "YandexSettings",
    "YandexTarget",
    "YandexTargetSettings",
    "address_conflicts",
    "bounds",
    "cloud_block",
    "is_available",
    "machine_images",
    "open_backend",
    "runner_directory",
    "shared_host",
    "target_settings",
]
