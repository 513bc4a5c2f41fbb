"""The database a test runs against: one instance, a cluster with its addons, or an existing database.
`stroppy_domain.model` re-exports these; import from there.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator

from stroppy_domain.durations import Seconds
from stroppy_domain.model_base import (
    BLOCK_NAME_PATTERN,
    BUCKET_PATTERN,
    COLLECTOR_PATTERN,
    MAX_DEDICATED,
    MAX_REPLICAS,
    REGION_PATTERN,
    URL_PATTERN,
    BackupTool,
    Flag,
    InputModel,
    Integer,
    PoolMode,
    Port,
    Scope,
    StorageEngine,
    whole_number,
)
from stroppy_domain.model_rules import (
    BackupPath,
    CronSchedule,
    Endpoint,
    PostgresqlConf,
    normal_postgres_url,
    parse_postgres_url,
)

BlockName = Annotated[str, Field(pattern=BLOCK_NAME_PATTERN)]


class Hardware(InputModel):
    """Size of one machine. On Docker it bounds the machine's containers; on a cloud it picks the VM."""

    cores: Integer = Field(ge=1, le=256, description="CPU cores.")
    memory_gb: Integer = Field(ge=1, le=4096, description="Memory in GB.")
    disk_gb: Integer = Field(ge=1, le=65536, description="Disk in GB.")


class PatroniSettings(InputModel):
    """Patroni's DCS settings; they take effect when the cluster is bootstrapped."""

    enabled: Flag = Field(default=True, description="Run PostgreSQL under Patroni.")
    ttl: Integer = Field(
        default=30, ge=20, le=3600, description="Leader key TTL in seconds; at least loop_wait + 2 * retry_timeout."
    )
    loop_wait: Integer = Field(default=10, ge=1, le=3600, description="Seconds between HA loops.")
    retry_timeout: Integer = Field(
        default=10, ge=3, le=3600, description="Seconds before DCS and PostgreSQL operations are retried."
    )
    maximum_lag_on_failover: Integer = Field(
        default=1048576, ge=0, le=2**63 - 1, description="Bytes a replica may lag and still be promoted."
    )
    synchronous_mode: Flag = Field(default=False, description="Synchronous replication, run by Patroni.")
    synchronous_node_count: Integer = Field(
        default=1, ge=1, le=MAX_REPLICAS, description="Synchronous standbys; at most the replica count."
    )


class PostgresSettings(InputModel):
    version: Annotated[Literal[16, 17, 18], BeforeValidator(whole_number)] = Field(
        default=17, description="PostgreSQL major; needs an image in the catalogue."
    )
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


class NodeExporter(InputModel):
    port: Port = Field(default=9100, description="Where it listens.")
    collectors: list[Annotated[str, Field(pattern=COLLECTOR_PATTERN)]] = Field(
        default_factory=list, description="Each enabled as `--collector.<name>`."
    )


class PostgresExporter(InputModel):
    port: Port = Field(default=9187, description="Where it listens.")


class LocalStorage(InputModel):
    path: BackupPath = Field(description="Absolute directory on the machine.")


class S3Storage(InputModel):
    """An S3 bucket; the access keys live in the named AwsCredentials block, never in the suite."""

    bucket: str = Field(min_length=3, max_length=63, pattern=BUCKET_PATTERN, description="Bucket name.")
    prefix: str = Field(default="", description="Key prefix in the bucket.")
    region: str = Field(default="us-east-1", pattern=REGION_PATTERN, description="The bucket's region.")
    endpoint: str | None = Field(default=None, pattern=URL_PATTERN, description="An S3-compatible store's URL.")
    credentials_block: BlockName = Field(description="Its `AwsCredentials` block.")


class BackupStorage(InputModel):
    """Where backups go: exactly one of `local` or `s3`."""

    local: LocalStorage | None = Field(default=None, description="A directory on the machine.")
    s3: S3Storage | None = Field(default=None, description="A bucket; cannot be planned yet.")


class Backup(InputModel):
    tool: BackupTool = Field(default=BackupTool.PG_DUMP, description="Only `pg_dump` can be planned so far.")
    schedule: CronSchedule = Field(default="0 2 * * *", description="When backups run (cron).")
    retention: Seconds = Field(default=7 * 24 * 3600, gt=0, description="Older dumps are deleted.")
    storage: BackupStorage = Field(description="Where dumps go; only `local` can be planned so far.")


class Sidecars(InputModel):
    """Services next to a single instance; at most one of each kind."""

    node_exporter: NodeExporter | None = Field(default=None, description="Machine metrics.")
    postgres_exporter: PostgresExporter | None = Field(default=None, description="PostgreSQL metrics.")
    backup: Backup | None = Field(default=None, description="Scheduled dumps.")


class Colocate(InputModel):
    """Run the service on database machines: the master, every replica, all nodes, or one replica."""

    scope: Scope = Field(description="Which database machines.")
    replica_index: Integer | None = Field(
        default=None, ge=0, le=MAX_REPLICAS - 1, description="0-based; with scope `replica` only."
    )


class Dedicated(InputModel):
    """Run the service on machines of its own."""

    count: Integer = Field(ge=1, le=MAX_DEDICATED, description="Its machines, named `etcd-<k>` or `pgbouncer-<k>`.")
    hardware: Hardware = Field(description="Size of each.")


class Placement(InputModel):
    """Where an addon runs: exactly one of `colocate` or `dedicated`."""

    colocate: Colocate | None = Field(default=None, description="On database machines.")
    dedicated: Dedicated | None = Field(default=None, description="On machines of its own.")


class Etcd(InputModel):
    """The etcd cluster Patroni uses as its DCS. Peers listen on `client_port + 1`."""

    size: Annotated[Literal[1, 3, 5], BeforeValidator(whole_number)] = Field(
        description="Members; the machines placement selects."
    )
    client_port: Integer = Field(default=2379, ge=1, le=65534, description="Peers use the next port.")
    placement: Placement = Field(description="Where members run.")
    monitor: Flag = Field(
        default=False, description="A node exporter on the members' machines; etcd serves its own metrics."
    )


class PgBouncer(InputModel):
    pool_mode: PoolMode = Field(
        default=PoolMode.TRANSACTION, description="When a server connection returns to the pool."
    )
    pool_size: Integer = Field(default=20, ge=1, le=10000, description="Per pool; at most max_client_conn.")
    max_client_conn: Integer = Field(default=100, ge=1, le=100000, description="Client connections accepted.")
    port: Port = Field(default=6432, description="Where clients connect; must not clash on its machine.")
    placement: Placement = Field(description="Where it runs.")
    monitor: Flag = Field(
        default=False, description="Its exporter (port 9127); dedicated machines: a node exporter too."
    )


class BackupAddon(Backup):
    """A backup job on the database machines selected by `scope` (and `replica_index` for one replica)."""

    scope: Scope = Field(default=Scope.MASTER, description="Which database machines.")
    replica_index: Integer | None = Field(
        default=None, ge=0, le=MAX_REPLICAS - 1, description="0-based; with scope `replica` only."
    )


class Addons(InputModel):
    etcd: Etcd | None = Field(default=None, description="Patroni's DCS.")
    pgbouncer: PgBouncer | None = Field(default=None, description="A pooler; the load connects through the first one.")
    backup: BackupAddon | None = Field(default=None, description="Scheduled dumps.")


class Topology(InputModel):
    settings: PostgresSettings = Field(
        default_factory=PostgresSettings, description="PostgreSQL settings of every node."
    )
    master_hardware: Hardware = Field(description="Size of the master.")
    replica_hardware: Hardware = Field(description="Size of each replica.")
    replicas: Integer = Field(ge=1, le=MAX_REPLICAS, description="Streaming replicas.")
    monitor: Flag = Field(default=False, description="Node and postgres exporters on every database machine.")


class ReplicaOverride(InputModel):
    """Per-replica differences. Version, engine and Patroni stay cluster-wide: a replica must match them."""

    index: Integer = Field(ge=0, le=MAX_REPLICAS - 1, description="0-based replica; once each.")
    hardware: Hardware | None = Field(default=None, description="Replaces the replica's.")
    postgresql_conf: PostgresqlConf = Field(default_factory=dict, description="Merged over the cluster's.")


class InstanceTemplate(InputModel):
    settings: PostgresSettings = Field(default_factory=PostgresSettings, description="PostgreSQL settings.")
    hardware: Hardware = Field(description="Size of the machine.")
    sidecars: Sidecars = Field(default_factory=Sidecars, description="Exporters and backups beside it.")


class ClusterTemplate(InputModel):
    topology: Topology = Field(description="Master, replicas, settings.")
    addons: Addons = Field(default_factory=Addons, description="etcd, PgBouncer, backups.")
    replica_overrides: list[ReplicaOverride] = Field(default_factory=list, description="Per-replica differences.")


class ExistingDatabase(InputModel):
    """A database the run does not create. The password lives in a Secret block, named here."""

    connection_string: str = Field(
        min_length=1,
        description=(
            "`postgres://USER@HOST:PORT/DB[?PARAMS]`, without a password; PARAMS may be sslmode (default prefer; "
            "disable, allow, require), connect_timeout, application_name, target_session_attrs."
        ),
    )
    password_block: BlockName | None = Field(default=None, description="Secret block with the password.")

    @field_validator("connection_string")
    @classmethod
    def _postgres_url_without_password(cls, value: str) -> str:
        """The URL with its parts encoded once; raises ValueError as `parse_postgres_url` does."""
        return normal_postgres_url(value)

    @property
    def endpoint(self) -> Endpoint:
        """The host (IPv6 without brackets), port, user and database name, decoded."""
        return parse_postgres_url(self.connection_string)


class DatabaseRef(InputModel):
    """What the load runs against: exactly one of `instance`, `cluster` or `existing`."""

    instance: InstanceTemplate | None = Field(default=None, description="One PostgreSQL server.")
    cluster: ClusterTemplate | None = Field(default=None, description="A primary with streaming replicas.")
    existing: ExistingDatabase | None = Field(default=None, description="A database not provisioned here.")
