"""Installation settings of the master, read from the environment (`STROPPY_*`). Secrets do not go here."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPOSITORY = Path(__file__).resolve().parent.parent


class OrchestrationSettings(BaseSettings):
    """Where the master finds its services, and the bounds of every wait."""

    model_config = SettingsConfigDict(env_prefix="STROPPY_", frozen=True)

    redis_block: str | None = Field(
        default="stroppy-redis", description="`RedisConnection` block for reservations and ledgers; else `redis_url`."
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis without a saved block.")
    edge_api_url: str = Field(
        default="http://{gateway}:4200/api",
        description="How a machine reaches the Prefect API; {gateway} is its network's gateway (the Docker host).",
    )
    results_dir: Path = Field(
        default=REPOSITORY / ".state" / "results",
        description="Result storage shared by master and machines (mounted at the same path into machines).",
    )
    edge_flows_dir: str = Field(
        default="/opt/stroppy-flows/lib/python3.13/site-packages",
        description="Where the edge image has this project's sources, for the deployments' pull step.",
    )
    release_url: str = Field(
        default="https://github.com/stroppy-io/stroppy/releases/download/{version}/{archive}",
        description="Where stroppy releases are downloaded from; {version}, {archive} and {gateway} are filled in.",
    )
    release_lock: Path = Field(
        default=REPOSITORY / "stroppy.lock.json", description="The lock file with each pinned release's sha256."
    )
    install_timeout_s: float = Field(default=300, gt=0, description="Bound of one release download.")
    reservation_ttl_s: int = Field(default=6 * 3600, gt=0, description="Lease of a run's subnet.")
    ledger_ttl_s: int = Field(default=24 * 3600, gt=0, description="How long a run's ledger outlives its last write.")
    agents_ready_timeout_s: float = Field(default=180, gt=0, description="Bound of the wait for edge agents.")
    load_margin_s: int = Field(default=300, ge=0, description="Time a load may take beyond its duration.")
    metrics_url: str = Field(
        default="http://127.0.0.1:8428", description="VictoriaMetrics: scrapes the runs' exporters, stores load series."
    )
    metrics_targets_dir: Path = Field(
        default=REPOSITORY / ".state" / "victoria-metrics" / "targets",
        description="The file_sd directory VictoriaMetrics watches; a run's exporters are registered there.",
    )
    grafana_block: str | None = Field(
        default="stroppy-grafana",
        description="`GrafanaConnection` block; while none is saved, runs have no dashboard links or annotations.",
    )
    archive_dir: Path = Field(
        default=REPOSITORY / ".state" / "archive", description="Where runs' raw files are kept (no S3 block set)."
    )
    archive_s3_block: str | None = Field(
        default="stroppy-results", description="prefect-aws `S3Bucket` block; once saved, runs' raw files go there."
    )
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
    max_parallel_tests: int = Field(default=2, ge=1, le=32, description="Tests of a suite that run at once.")
