"""Installation settings of the master, read from the environment (`STROPPY_*`). Secrets do not go here.

What only one target needs (its blocks, its bounds, what its machines install) is in that target's own settings,
`infra/targets/<target>/`; these are the settings every run uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stroppy_domain.host import NoiseLimits
from stroppy_domain.model import Target
from stroppy_domain.settings import AddressSpace, ImageCatalogue

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_TARGET_RUN_LIMIT = 8
"""Runs of one target at once where `target_run_limits` does not say: what a 2-core, 24 GiB host holds of shared
single-instance runs (benchmarks/scale.py)."""


class OrchestrationSettings(BaseSettings):
    """Where the master finds its services, and the bounds of every wait."""

    model_config = SettingsConfigDict(env_prefix="STROPPY_", frozen=True)

    redis_block: str | None = Field(
        default="stroppy-redis", description="`RedisConnection` block for reservations and ledgers; else `redis_url`."
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis without a saved block.")
    results_dir: Path = Field(
        default=REPOSITORY / ".state" / "results",
        description="Result storage shared by master and machines (mounted at the same path into machines).",
    )
    image_catalogue: ImageCatalogue | None = Field(
        default=None,
        description="Which image serves each PostgreSQL version, storage engine and service, as JSON (e.g. "
        '`{"postgres": {"16": "registry/pg:16-1", "17": "..."}}`); unset: the images this checkout builds.',
    )
    release_url: str = Field(
        default="https://github.com/stroppy-io/stroppy/releases/download/{version}/{archive}",
        description="Where stroppy releases are downloaded from; {version}, {archive} and {gateway} are filled in.",
    )
    release_lock: Path = Field(
        default=REPOSITORY / "stroppy.lock.json", description="The lock file with each pinned release's sha256."
    )
    install_timeout_s: float = Field(default=300, gt=0, description="Bound of one release download.")
    address_spaces: dict[Target, AddressSpace] = Field(
        default_factory=dict,
        description="Per target, the private range runs carve their subnets from and each subnet's prefix, as JSON "
        '(`{"docker": {"base_cidr": "172.28.0.0/16", "prefix": 24}}`); a target left out keeps its built-in range. '
        "Runs, `validate` and `plan` use the same; a run fails at validation when the range overlaps a network the "
        "target already has.",
    )
    reservation_ttl_s: int = Field(default=6 * 3600, gt=0, description="Lease of a run's subnet.")
    ledger_ttl_s: int = Field(default=24 * 3600, gt=0, description="How long a run's ledger outlives its last write.")
    heartbeat_interval_s: float = Field(
        default=60,
        gt=0,
        description="How often a live run renews its ledger, subnet and CPU leases and says it is alive; at most a "
        "third of the shorter of `reservation_ttl_s` and `ledger_ttl_s`. The reaper leaves a run whose flow is still "
        "running alone while its heartbeat is fresh, and reaps it once the heartbeat is older than its grace.",
    )
    load_margin_s: int = Field(default=300, ge=0, description="Time a load may take beyond its duration.")
    keep_on_failure_max_s: int = Field(
        default=24 * 3600, gt=0, description="The longest a test's `keep_on_failure` may keep a failed run's machines."
    )
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
        default="stroppy-results",
        description="prefect-aws `S3Bucket` block; once saved, runs' raw files go there, and their history records "
        "under `history/`.",
    )
    history_dir: Path = Field(
        default=REPOSITORY / ".state" / "history",
        description="Where each finished run's history record is kept (no S3 block set).",
    )
    registry_block: str | None = Field(
        default="stroppy-registry",
        description="prefect-docker `DockerRegistryCredentials` block for the registry the service images are pushed "
        "to (`python -m infra.images push`) and cloud machines pull them from; while none is saved, anonymous.",
    )
    max_parallel_tests: int = Field(default=2, ge=1, le=32, description="Tests of a suite that run at once.")
    target_run_limits: dict[Target, Annotated[int, Field(ge=1, le=1000)]] = Field(
        default_factory=dict,
        description="Per target, how many runs may hold machines at once, across every suite and master worker, as "
        f'JSON (`{{"docker": 4}}`); a target left out allows {DEFAULT_TARGET_RUN_LIMIT}. Each is a Prefect global '
        "concurrency limit, `stroppy-target-<target>`, that `stroppy-flows setup` creates or updates; a run takes a "
        "slot before anything else and gives it back after its teardown, so a burst of suites queues.",
    )
    target_slot_wait_s: float = Field(
        default=3600, gt=0, description="How long a run waits for a slot of its target's limit before it fails."
    )
    noisy_max_busy_before_pct: float = Field(
        default=30.0,
        ge=0,
        le=100,
        description="A run is marked noisy when its runner's host was busier than this (CPU %) just before the load.",
    )
    noisy_max_steal_pct: float = Field(
        default=5.0, ge=0, le=100, description="A run is marked noisy when more CPU time than this (%) was stolen."
    )
    max_suite_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        description="Largest suite, settings or config file the command line reads, in bytes (default 1 MiB); a "
        "larger file is refused before it is parsed.",
    )
    inject_failure_at: dict[str, str] = Field(
        default_factory=dict,
        description="Testing aid, never set in production: test name -> run step at which that test's run fails on "
        "purpose, to exercise teardown (given to a suite's flow run as an environment job variable).",
    )

    def target_run_limit(self, target: Target) -> int:
        return self.target_run_limits.get(target, DEFAULT_TARGET_RUN_LIMIT)

    @property
    def noise_limits(self) -> NoiseLimits:
        return NoiseLimits(max_busy_before_pct=self.noisy_max_busy_before_pct, max_steal_pct=self.noisy_max_steal_pct)

    @model_validator(mode="after")
    def _beats_before_leases_expire(self) -> OrchestrationSettings:
        """Raises ValueError when a lease could expire between two heartbeats (or one missed beat)."""
        shortest = min(self.reservation_ttl_s, self.ledger_ttl_s)
        if self.heartbeat_interval_s * 3 > shortest:
            raise ValueError(
                f"heartbeat_interval_s ({self.heartbeat_interval_s:g}) must be at most a third of the shorter of "
                f"reservation_ttl_s and ledger_ttl_s ({shortest}), so a missed beat never lets a lease expire"
            )
        return self
