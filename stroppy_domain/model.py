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


DEFAULT_TARGET = Target.DOCKER
"""Where a suite's tests run when neither the suite nor the test names a target."""


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

    cores: int = Field(ge=1, le=256, description="CPU cores.")
    memory_gb: int = Field(ge=1, le=4096, description="Memory in GB.")
    disk_gb: int = Field(ge=1, le=65536, description="Disk in GB.")


class PatroniSettings(Model):
    """Patroni's DCS settings; they take effect when the cluster is bootstrapped."""

    enabled: bool = Field(default=True, description="Run PostgreSQL under Patroni.")
    ttl: int = Field(
        default=30, ge=20, le=3600, description="Leader key TTL in seconds; at least loop_wait + 2 * retry_timeout."
    )
    loop_wait: int = Field(default=10, ge=1, le=3600, description="Seconds between HA loops.")
    retry_timeout: int = Field(
        default=10, ge=3, le=3600, description="Seconds before DCS and PostgreSQL operations are retried."
    )
    maximum_lag_on_failover: int = Field(
        default=1048576, ge=0, description="Bytes a replica may lag and still be promoted."
    )
    synchronous_mode: bool = Field(default=False, description="Synchronous replication, run by Patroni.")
    synchronous_node_count: int = Field(
        default=1, ge=1, le=MAX_REPLICAS, description="Synchronous standbys; at most the replica count."
    )


class PostgresSettings(Model):
    version: Literal[16, 17, 18] = Field(default=17, description="PostgreSQL major; needs an image in the catalogue.")
    storage_engine: StorageEngine = Field(
        default=StorageEngine.HEAP, description="`orioledb`: on 16 and 17 only, with a `<version>-orioledb` image."
    )
    patroni: PatroniSettings | None = Field(default=None, description="Only in a cluster, which then needs etcd.")
    postgresql_conf: PostgresqlConf = Field(
        default_factory=dict, description="postgresql.conf; numbers and booleans become text (`on`/`off`)."
    )

    @property
    def patroni_enabled(self) -> bool:
        return self.patroni is not None and self.patroni.enabled


class NodeExporter(Model):
    port: Port = Field(default=9100, description="Where it listens.")
    collectors: list[Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]] = Field(
        default_factory=list, description="Each enabled as `--collector.<name>`."
    )


class PostgresExporter(Model):
    port: Port = Field(default=9187, description="Where it listens.")


class LocalStorage(Model):
    path: str = Field(pattern=r"^(/[^/\x00]+)+/?$", description="Absolute directory on the machine.")


class S3Storage(Model):
    """An S3 bucket; the access keys live in the named AwsCredentials block, never in the suite."""

    bucket: str = Field(
        min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$", description="Bucket name."
    )
    prefix: str = Field(default="", description="Key prefix in the bucket.")
    region: str = Field(default="us-east-1", min_length=1, description="The bucket's region.")
    endpoint: str | None = Field(default=None, description="An S3-compatible store's URL.")
    credentials_block: str = Field(min_length=1, description="Its `AwsCredentials` block.")


class BackupStorage(Model):
    """Where backups go: exactly one of `local` or `s3`."""

    local: LocalStorage | None = Field(default=None, description="A directory on the machine.")
    s3: S3Storage | None = Field(default=None, description="A bucket; cannot be planned yet.")


_CRON_FIELD = r"(\*|\d+|\d+-\d+)(/\d+)?(,(\*|\d+|\d+-\d+)(/\d+)?)*"
CRON_PATTERN = rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$"


class Backup(Model):
    tool: BackupTool = Field(default=BackupTool.PG_DUMP, description="Only `pg_dump` can be planned so far.")
    schedule: str = Field(default="0 2 * * *", pattern=CRON_PATTERN, description="When backups run (cron).")
    retention: Seconds = Field(default=7 * 24 * 3600, gt=0, description="Older dumps are deleted.")
    storage: BackupStorage = Field(description="Where dumps go; only `local` can be planned so far.")


class Sidecars(Model):
    """Services next to a single instance; at most one of each kind."""

    node_exporter: NodeExporter | None = Field(default=None, description="Machine metrics.")
    postgres_exporter: PostgresExporter | None = Field(default=None, description="PostgreSQL metrics.")
    backup: Backup | None = Field(default=None, description="Scheduled dumps.")


class Colocate(Model):
    """Run the service on database machines: the master, every replica, all nodes, or one replica."""

    scope: Scope = Field(description="Which database machines.")
    replica_index: int | None = Field(default=None, ge=0, description="0-based; with scope `replica` only.")


class Dedicated(Model):
    """Run the service on machines of its own."""

    count: int = Field(ge=1, le=MAX_DEDICATED, description="Its machines, named `etcd-<k>` or `pgbouncer-<k>`.")
    hardware: Hardware = Field(description="Size of each.")


class Placement(Model):
    """Where an addon runs: exactly one of `colocate` or `dedicated`."""

    colocate: Colocate | None = Field(default=None, description="On database machines.")
    dedicated: Dedicated | None = Field(default=None, description="On machines of its own.")


class Etcd(Model):
    """The etcd cluster Patroni uses as its DCS. Peers listen on `client_port + 1`."""

    size: Literal[1, 3, 5] = Field(description="Members; the machines placement selects.")
    client_port: int = Field(default=2379, ge=1, le=65534, description="Peers use the next port.")
    placement: Placement = Field(description="Where members run.")
    monitor: bool = Field(
        default=False, description="A node exporter on the members' machines; etcd serves its own metrics."
    )


class PgBouncer(Model):
    pool_mode: PoolMode = Field(
        default=PoolMode.TRANSACTION, description="When a server connection returns to the pool."
    )
    pool_size: int = Field(default=20, ge=1, le=10000, description="Per pool; at most max_client_conn.")
    max_client_conn: int = Field(default=100, ge=1, le=100000, description="Client connections accepted.")
    port: Port = Field(default=6432, description="Where clients connect; must not clash on its machine.")
    placement: Placement = Field(description="Where it runs.")
    monitor: bool = Field(
        default=False, description="Its exporter (port 9127); dedicated machines: a node exporter too."
    )


class BackupAddon(Backup):
    """A backup job on the database machines selected by `scope` (and `replica_index` for one replica)."""

    scope: Scope = Field(default=Scope.MASTER, description="Which database machines.")
    replica_index: int | None = Field(default=None, ge=0, description="0-based; with scope `replica` only.")


class Addons(Model):
    etcd: Etcd | None = Field(default=None, description="Patroni's DCS.")
    pgbouncer: PgBouncer | None = Field(default=None, description="A pooler; the load connects through the first one.")
    backup: BackupAddon | None = Field(default=None, description="Scheduled dumps.")


class Topology(Model):
    settings: PostgresSettings = Field(
        default_factory=PostgresSettings, description="PostgreSQL settings of every node."
    )
    master_hardware: Hardware = Field(description="Size of the master.")
    replica_hardware: Hardware = Field(description="Size of each replica.")
    replicas: int = Field(ge=1, le=MAX_REPLICAS, description="Streaming replicas.")
    monitor: bool = Field(default=False, description="Node and postgres exporters on every database machine.")


class ReplicaOverride(Model):
    """Per-replica differences. Version, engine and Patroni stay cluster-wide: a replica must match them."""

    index: int = Field(ge=0, description="0-based replica; once each.")
    hardware: Hardware | None = Field(default=None, description="Replaces the replica's.")
    postgresql_conf: PostgresqlConf = Field(default_factory=dict, description="Merged over the cluster's.")


class InstanceTemplate(Model):
    settings: PostgresSettings = Field(default_factory=PostgresSettings, description="PostgreSQL settings.")
    hardware: Hardware = Field(description="Size of the machine.")
    sidecars: Sidecars = Field(default_factory=Sidecars, description="Exporters and backups beside it.")


class ClusterTemplate(Model):
    topology: Topology = Field(description="Master, replicas, settings.")
    addons: Addons = Field(default_factory=Addons, description="etcd, PgBouncer, backups.")
    replica_overrides: list[ReplicaOverride] = Field(default_factory=list, description="Per-replica differences.")


class ExistingDatabase(Model):
    """A database the run does not create. The password lives in a Secret block, named here."""

    connection_string: str = Field(min_length=1, description="`postgres://USER@HOST:PORT/DB`, without a password.")
    password_block: str | None = Field(default=None, description="Secret block with the password.")

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

    instance: InstanceTemplate | None = Field(default=None, description="One PostgreSQL server.")
    cluster: ClusterTemplate | None = Field(default=None, description="A primary with streaming replicas.")
    existing: ExistingDatabase | None = Field(default=None, description="A database not provisioned here.")


class ThresholdRule(Model):
    """A k6 threshold; a plain string in the suite is the same as `{threshold: <string>}`."""

    threshold: Annotated[str, AfterValidator(lambda text: (parse_assertion(text), text)[1])] = Field(
        description="A k6 expression such as `p(95)<200`."
    )
    abort_on_fail: bool = Field(
        default=False,
        alias="abortOnFail",
        description="Validated and kept; suite thresholds are checked after the load.",
    )
    delay_abort_eval: Seconds | None = Field(
        default=None, alias="delayAbortEval", description="Validated and kept, like abortOnFail."
    )


def _threshold_from_text(value: object) -> object:
    return {"threshold": value} if isinstance(value, str) else value


Thresholds = dict[
    Annotated[str, AfterValidator(check_metric_name)],
    list[Annotated[ThresholdRule, BeforeValidator(_threshold_from_text, json_schema_input_type=str | ThresholdRule)]],
]


class StroppyCli(Model):
    """The load: which driver, the stroppy release to install, and the workload it runs."""

    driver: Driver = Field(default=Driver.STROPPY, description="`pgbench` runs tpcb only.")
    version: str | None = Field(
        default=None, pattern=r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$", description="stroppy release; stroppy only."
    )
    workload: Workload = Field(default=Workload.TPCC, description="The benchmark.")
    clients: int = Field(default=4, ge=1, le=10000, description="Concurrent clients (stroppy VUs, pgbench clients).")
    scale: int = Field(
        default=1, ge=1, le=100000, description="Scale factor (stroppy's SCALE_FACTOR, pgbench's --scale)."
    )
    duration: Seconds = Field(default=300, gt=0, le=24 * 3600, description="The measured run.")
    env: dict[Annotated[str, Field(pattern=ENV_NAME_PATTERN)], str] = Field(
        default_factory=dict, description="Extra environment of the load; not DRIVER_URL."
    )


DEFAULT_RUNNER_HARDWARE = Hardware(cores=2, memory_gb=4, disk_gb=20)


class BenchmarkTest(Model):
    """One test of a suite: a load, its pass/fail thresholds, and the database it runs against."""

    name: str = Field(pattern=NAME_PATTERN, description="Unique within the suite.")
    description: str = Field(default="", description="Free text.")
    target: Target | None = Field(default=None, description="Absent: the suite's target.")
    stroppy: StroppyCli = Field(description="The load.")
    thresholds: Thresholds = Field(default_factory=dict, description="Pass/fail rules per metric.")
    runner_hardware: Hardware = Field(default=DEFAULT_RUNNER_HARDWARE, description="The machine that runs the load.")
    database: DatabaseRef = Field(description="What the load runs against.")


class Suite(Model):
    name: str = Field(pattern=NAME_PATTERN, description="The suite's name.")
    description: str = Field(default="", description="Free text.")
    target: Target = Field(default=DEFAULT_TARGET, description="Where tests run unless a test names its own.")
    tests: list[BenchmarkTest] = Field(min_length=1, description="Its tests; names unique.")

    def target_of(self, test: BenchmarkTest) -> Target:
        return test.target or self.target
