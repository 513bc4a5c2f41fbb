"""The suite a user writes: tests, the load to run, and the PostgreSQL topology to run it against.

Every model forbids unknown keys, so a typo is an error instead of a silently ignored setting. Field-level
rules live on the fields; rules that look at several fields at once live in `validation.py`, which reports
all of them together with their paths.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from stroppy_domain.durations import Seconds
from stroppy_domain.thresholds import check_metric_name, parse_assertion

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
GUC_PATTERN = r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$"
PATTERN_HINTS = {
    NAME_PATTERN: "must be 1-40 lowercase letters, digits or '-', starting and ending with a letter or digit",
    ENV_NAME_PATTERN: "must be an environment variable name (letters, digits, '_', not starting with a digit)",
    GUC_PATTERN: "must be a PostgreSQL setting name such as 'shared_buffers' or 'auto_explain.log_min_duration'",
}
"""What a pattern means, in words; validation shows these instead of the regular expression."""
MAX_REPLICAS = 15
MAX_DEDICATED = 5


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Target(StrEnum):
    DOCKER = "docker"
    YANDEX_CLOUD = "yandex_cloud"


class Workload(StrEnum):
    TPCC = "tpcc"
    TPCB = "tpcb"


class StorageEngine(StrEnum):
    HEAP = "heap"
    ORIOLEDB = "orioledb"


class Scope(StrEnum):
    MASTER = "master"
    REPLICAS = "replicas"
    ALL_NODES = "all_nodes"
    REPLICA = "replica"


class PoolMode(StrEnum):
    SESSION = "session"
    TRANSACTION = "transaction"
    STATEMENT = "statement"


class Driver(StrEnum):
    STROPPY = "stroppy"
    PGBENCH = "pgbench"


class BackupTool(StrEnum):
    WAL_G = "wal_g"
    PG_DUMP = "pg_dump"


Port = Annotated[int, Field(ge=1, le=65535)]


def _scalar_to_text(value: object) -> object:
    """postgresql.conf values arrive as YAML scalars (`200`, `on`, `0.9`); PostgreSQL reads them as text."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return value


GucValue = Annotated[str, BeforeValidator(_scalar_to_text), Field(min_length=1)]
PostgresqlConf = dict[Annotated[str, Field(pattern=GUC_PATTERN)], GucValue]


class Hardware(Model):
    """Size of one machine. On Docker it bounds the machine's containers; on a cloud it picks the VM."""

    cores: int = Field(ge=1, le=256)
    memory_gb: int = Field(ge=1, le=4096)
    disk_gb: int = Field(ge=1, le=65536)


class PatroniSettings(Model):
    """Patroni's DCS settings; they take effect when the cluster is bootstrapped."""

    enabled: bool = True
    ttl: int = Field(default=30, ge=20, le=3600)
    loop_wait: int = Field(default=10, ge=1, le=3600)
    retry_timeout: int = Field(default=10, ge=3, le=3600)
    maximum_lag_on_failover: int = Field(default=1048576, ge=0)
    synchronous_mode: bool = False
    synchronous_node_count: int = Field(default=1, ge=1, le=MAX_REPLICAS)


class PostgresSettings(Model):
    version: Literal[16, 17, 18] = 17
    storage_engine: StorageEngine = StorageEngine.HEAP
    patroni: PatroniSettings | None = None
    postgresql_conf: PostgresqlConf = Field(default_factory=dict)

    @property
    def patroni_enabled(self) -> bool:
        return self.patroni is not None and self.patroni.enabled


class NodeExporter(Model):
    port: Port = 9100
    collectors: list[Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]] = Field(default_factory=list)


class PostgresExporter(Model):
    port: Port = 9187


class LocalStorage(Model):
    path: str = Field(pattern=r"^(/[^/\x00]+)+/?$")


class S3Storage(Model):
    """An S3 bucket; the access keys live in the named AwsCredentials block, never in the suite."""

    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")
    prefix: str = ""
    region: str = Field(default="us-east-1", min_length=1)
    endpoint: str | None = None
    credentials_block: str = Field(min_length=1)


class BackupStorage(Model):
    """Where backups go: exactly one of `local` or `s3`."""

    local: LocalStorage | None = None
    s3: S3Storage | None = None


_CRON_FIELD = r"(\*|\d+|\d+-\d+)(/\d+)?(,(\*|\d+|\d+-\d+)(/\d+)?)*"
CRON_PATTERN = rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$"


class Backup(Model):
    tool: BackupTool = BackupTool.PG_DUMP
    schedule: str = Field(default="0 2 * * *", pattern=CRON_PATTERN)
    retention: Seconds = Field(default=7 * 24 * 3600, gt=0)
    storage: BackupStorage


class Sidecars(Model):
    """Services next to a single instance; at most one of each kind."""

    node_exporter: NodeExporter | None = None
    postgres_exporter: PostgresExporter | None = None
    backup: Backup | None = None


class Colocate(Model):
    """Run the service on database machines: the master, every replica, all nodes, or one replica."""

    scope: Scope
    replica_index: int | None = Field(default=None, ge=0)


class Dedicated(Model):
    """Run the service on machines of its own."""

    count: int = Field(ge=1, le=MAX_DEDICATED)
    hardware: Hardware


class Placement(Model):
    """Where an addon runs: exactly one of `colocate` or `dedicated`."""

    colocate: Colocate | None = None
    dedicated: Dedicated | None = None


class Etcd(Model):
    """The etcd cluster Patroni uses as its DCS. Peers listen on `client_port + 1`."""

    size: Literal[1, 3, 5]
    client_port: int = Field(default=2379, ge=1, le=65534)
    placement: Placement
    monitor: bool = False


class PgBouncer(Model):
    pool_mode: PoolMode = PoolMode.TRANSACTION
    pool_size: int = Field(default=20, ge=1, le=10000)
    max_client_conn: int = Field(default=100, ge=1, le=100000)
    port: Port = 6432
    placement: Placement
    monitor: bool = False


class BackupAddon(Backup):
    """A backup job on the database machines selected by `scope` (and `replica_index` for one replica)."""

    scope: Scope = Scope.MASTER
    replica_index: int | None = Field(default=None, ge=0)


class Addons(Model):
    etcd: Etcd | None = None
    pgbouncer: PgBouncer | None = None
    backup: BackupAddon | None = None


class Topology(Model):
    settings: PostgresSettings = Field(default_factory=PostgresSettings)
    master_hardware: Hardware
    replica_hardware: Hardware
    replicas: int = Field(ge=1, le=MAX_REPLICAS)
    monitor: bool = False


class ReplicaOverride(Model):
    """Per-replica differences. Version, engine and Patroni stay cluster-wide: a replica must match them."""

    index: int = Field(ge=0)
    hardware: Hardware | None = None
    postgresql_conf: PostgresqlConf = Field(default_factory=dict)


class InstanceTemplate(Model):
    settings: PostgresSettings = Field(default_factory=PostgresSettings)
    hardware: Hardware
    sidecars: Sidecars = Field(default_factory=Sidecars)


class ClusterTemplate(Model):
    topology: Topology
    addons: Addons = Field(default_factory=Addons)
    replica_overrides: list[ReplicaOverride] = Field(default_factory=list)


class ExistingDatabase(Model):
    """A database the run does not create. The password lives in a Secret block, named here."""

    connection_string: str = Field(min_length=1)
    password_block: str | None = None

    @field_validator("connection_string")
    @classmethod
    def _postgres_url_without_password(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"postgres", "postgresql"} or not parts.hostname:
            raise ValueError("expected postgres://USER@HOST:PORT/DBNAME")
        if parts.password is not None or re.search(r"[?&]password=", parts.query):
            raise ValueError(
                "a connection string must not carry a password; store it in a Secret block "
                "and name the block in password_block"
            )
        try:
            parts.port  # noqa: B018 - reading the port is what validates it
        except ValueError as error:
            raise ValueError(f"bad port: {error}") from None
        return value


class DatabaseRef(Model):
    """What the load runs against: exactly one of `instance`, `cluster` or `existing`."""

    instance: InstanceTemplate | None = None
    cluster: ClusterTemplate | None = None
    existing: ExistingDatabase | None = None


class ThresholdRule(Model):
    """A k6 threshold; a plain string in the suite is the same as `{threshold: <string>}`."""

    threshold: Annotated[str, AfterValidator(lambda text: (parse_assertion(text), text)[1])]
    abort_on_fail: bool = Field(default=False, alias="abortOnFail")
    delay_abort_eval: Seconds | None = Field(default=None, alias="delayAbortEval")


def _threshold_from_text(value: object) -> object:
    return {"threshold": value} if isinstance(value, str) else value


Thresholds = dict[
    Annotated[str, AfterValidator(check_metric_name)],
    list[Annotated[ThresholdRule, BeforeValidator(_threshold_from_text, json_schema_input_type=str | ThresholdRule)]],
]


class StroppyCli(Model):
    """The load: which driver, the stroppy release to install, and the workload it runs."""

    driver: Driver = Driver.STROPPY
    version: str | None = Field(
        default=None, pattern=r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$", description="stroppy release; stroppy only."
    )
    workload: Workload = Workload.TPCC
    clients: int = Field(default=4, ge=1, le=10000, description="Concurrent clients (stroppy VUs, pgbench clients).")
    scale: int = Field(default=1, ge=1, le=100000)
    duration: Seconds = Field(default=300, gt=0, le=24 * 3600)
    env: dict[Annotated[str, Field(pattern=ENV_NAME_PATTERN)], str] = Field(default_factory=dict)


DEFAULT_RUNNER_HARDWARE = Hardware(cores=2, memory_gb=4, disk_gb=20)


class BenchmarkTest(Model):
    """One test of a suite: a load, its pass/fail thresholds, and the database it runs against."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    target: Target | None = None
    stroppy: StroppyCli
    thresholds: Thresholds = Field(default_factory=dict)
    runner_hardware: Hardware = DEFAULT_RUNNER_HARDWARE
    database: DatabaseRef


class Suite(Model):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    target: Target = Target.DOCKER
    tests: list[BenchmarkTest] = Field(min_length=1)

    def target_of(self, test: BenchmarkTest) -> Target:
        return test.target or self.target
