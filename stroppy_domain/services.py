"""How each service is started: command, configuration files, health check, ports and volumes.

The configuration targets the database-node image (Debian trixie packages: PostgreSQL, Patroni, etcd,
PgBouncer and the Prometheus exporters), and uses only settings those programs actually read. Credentials are
generated per run and written to files readable by the service's user alone; `pg_hba` admits the run's
subnet (and loopback, for the exporters) with `scram-sha-256` only.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml
from pydantic import SecretStr

from stroppy_domain.errors import PlanningError, join_path
from stroppy_domain.model import BackupTool, BenchmarkTest, ClusterTemplate, PostgresSettings, StorageEngine
from stroppy_domain.plan import (
    ConfigFile,
    Container,
    HealthCheck,
    MachineRole,
    SecretFile,
    ServiceKind,
    ServicePort,
    StartStage,
)
from stroppy_domain.settings import ImageCatalogue

if TYPE_CHECKING:
    from stroppy_domain.placement import MachineLayout, ServiceSlot

PasswordSource = Callable[[str], str]
"""Returns a fresh password for a purpose (`superuser`, `replication`, ...); injected to keep planning pure."""

POSTGRES_PORT = 5432
PATRONI_PORT = 8008
PGBOUNCER_EXPORTER_PORT = 9127
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
APP_USER = "stroppy"
APP_DATABASE = "stroppy"
MONITOR_USER = "stroppy_monitor"
CONF_DIR = "/etc/stroppy"
POSTGRES_VOLUME = "/var/lib/postgresql/data"
PGDATA = f"{POSTGRES_VOLUME}/pgdata"
SOCKET_DIR = "/var/run/postgresql"
ETCD_VOLUME = "/var/lib/etcd"
PATRONI_SCOPE = "stroppy"
LOAD_PASSFILE = f"{CONF_DIR}/load/pgpass"
"""On the runner: the password file the load's libpq or pgx reads (PGPASSFILE), so no password is passed around."""
POSTGRES_USER_ACCOUNT = "postgres"
UNPRIVILEGED_ACCOUNT = "nobody"

RESERVED_POSTGRESQL_CONF = frozenset(
    {
        "listen_addresses",
        "port",
        "hba_file",
        "ident_file",
        "config_file",
        "data_directory",
        "unix_socket_directories",
        "password_encryption",
        "primary_conninfo",
        "primary_slot_name",
        "hot_standby",
        "wal_level",
    }
)
"""postgresql.conf keys the planner owns: changing them would break replication, access rules or health checks."""

_PASSWORD_ALPHABET = string.ascii_letters + string.digits


def generate_password(purpose: str) -> str:
    """A fresh 32-character password; alphanumeric, so it needs no quoting in any config format."""
    del purpose
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(32))


@dataclass(frozen=True)
class RunCredentials:
    superuser: SecretStr
    replication: SecretStr
    app: SecretStr
    monitor: SecretStr

    @classmethod
    def generate(cls, passwords: PasswordSource) -> RunCredentials:
        return cls(*(SecretStr(passwords(purpose)) for purpose in ("superuser", "replication", "app", "monitor")))


@dataclass(frozen=True)
class ServiceContext:
    test: BenchmarkTest
    path: str
    subnet: str
    ips: dict[str, str]
    credentials: RunCredentials | None
    images: ImageCatalogue
    etcd_members: list[str]

    @property
    def cluster(self) -> ClusterTemplate | None:
        return self.test.database.cluster

    @property
    def master_ip(self) -> str:
        return self.ips["postgres-master"]

    def require_credentials(self) -> RunCredentials:
        if self.credentials is None:
            raise PlanningError(join_path(self.path, "database"), "database services need a database template")
        return self.credentials


def _bin_dir(version: int) -> str:
    return f"/usr/lib/postgresql/{version}/bin"


def _quote_conf(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def load_passfile(host: str, port: int, user: str, database: str, password: str) -> SecretFile:
    """The runner's password file for the load's connection."""
    return SecretFile(
        path=LOAD_PASSFILE, content=SecretStr(_pgpass_line(host, port, database, user, SecretStr(password)))
    )


def _pgpass_line(host: str, port: int, database: str, user: str, password: SecretStr) -> str:
    return f"{host}:{port}:{database}:{user}:{password.get_secret_value()}\n"


def _http_check(port: int, path: str = "/metrics") -> HealthCheck:
    return HealthCheck(command=["curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{port}{path}"])


def _replica_streaming_check() -> HealthCheck:
    status = f"curl -fsS http://127.0.0.1:{PATRONI_PORT}/patroni"
    return HealthCheck(command=["sh", "-c", f'{status} | grep -q \'"replication_state": "streaming"\''])


def _settings_for(machine: MachineLayout, context: ServiceContext) -> tuple[PostgresSettings, dict[str, str]]:
    """The PostgreSQL settings of a machine and its postgresql.conf with any replica override merged in."""
    database = context.test.database
    if database.instance is not None:
        settings = database.instance.settings
        return settings, dict(settings.postgresql_conf)
    cluster = context.cluster
    if cluster is None:
        raise PlanningError(join_path(context.path, "database"), "postgres needs an instance or cluster template")
    settings = cluster.topology.settings
    conf = dict(settings.postgresql_conf)
    for override in cluster.replica_overrides:
        if override.index == machine.replica_index:
            conf.update(override.postgresql_conf)
    return settings, conf


def _postgres_image(settings: PostgresSettings, context: ServiceContext, source: str) -> str:
    key = ImageCatalogue.postgres_key(settings.version, settings.storage_engine)
    image = context.images.postgres.get(key)
    if image is None:
        raise PlanningError(
            join_path(source, "settings", "version"),
            f"the image catalogue has no PostgreSQL image for '{key}'; add one under images.postgres",
            settings.version,
        )
    return image


def _engine_parameters(settings: PostgresSettings) -> dict[str, str]:
    if settings.storage_engine is StorageEngine.ORIOLEDB:
        return {"shared_preload_libraries": "orioledb", "default_table_access_method": "orioledb"}
    return {}


def _hba_rules(subnet: str) -> list[str]:
    return [
        "local all all peer",
        "host all all 127.0.0.1/32 scram-sha-256",
        f"host replication {REPLICATION_USER} {subnet} scram-sha-256",
        f"host all all {subnet} scram-sha-256",
    ]


def _bootstrap_sql(credentials: RunCredentials, settings: PostgresSettings, create_replication_user: bool) -> str:
    statements = []
    if create_replication_user:
        statements.append(
            f"CREATE ROLE {REPLICATION_USER} WITH REPLICATION LOGIN "
            f"PASSWORD '{credentials.replication.get_secret_value()}';"
        )
    statements += [
        f"CREATE ROLE {APP_USER} WITH LOGIN PASSWORD '{credentials.app.get_secret_value()}';",
        f"CREATE DATABASE {APP_DATABASE} OWNER {APP_USER};",
        f"CREATE ROLE {MONITOR_USER} WITH LOGIN PASSWORD '{credentials.monitor.get_secret_value()}' "
        "IN ROLE pg_monitor;",
    ]
    if settings.storage_engine is StorageEngine.ORIOLEDB:
        statements += [f"\\connect {APP_DATABASE}", "CREATE EXTENSION IF NOT EXISTS orioledb;"]
    return "\n".join(statements) + "\n"


def _replica_count(context: ServiceContext) -> int:
    return context.cluster.topology.replicas if context.cluster is not None else 0


def _plain_postgres(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    """PostgreSQL with built-in streaming replication: the master initialises, replicas clone it."""
    credentials = context.require_credentials()
    settings, user_conf = _settings_for(machine, context)
    bin_dir = _bin_dir(settings.version)
    conf_dir = f"{CONF_DIR}/postgres"
    is_replica = machine.role is MachineRole.REPLICA
    parameters = {
        "listen_addresses": "*",
        "port": str(POSTGRES_PORT),
        "hba_file": f"{conf_dir}/pg_hba.conf",
        "unix_socket_directories": SOCKET_DIR,
        "password_encryption": "scram-sha-256",
        "wal_level": "replica",
        "hot_standby": "on",
        "max_wal_senders": str(_replica_count(context) + 4),
        "wal_keep_size": "1GB",
        **_engine_parameters(settings),
        **user_conf,
    }
    if is_replica:
        parameters["primary_conninfo"] = (
            f"host={context.master_ip} port={POSTGRES_PORT} user={REPLICATION_USER} "
            f"passfile={conf_dir}/pgpass application_name={machine.name.replace('-', '_')}"
        )
    postgresql_conf = "".join(f"{key} = {_quote_conf(value)}\n" for key, value in parameters.items())
    start = (
        _replica_start_script(bin_dir, conf_dir, context.master_ip)
        if is_replica
        else _primary_start_script(bin_dir, conf_dir)
    )
    secret_files = [
        SecretFile(path=f"{conf_dir}/superuser.password", content=credentials.superuser),
        SecretFile(
            path=f"{conf_dir}/pgpass",
            content=SecretStr(
                _pgpass_line(context.master_ip, POSTGRES_PORT, "*", REPLICATION_USER, credentials.replication)
            ),
        ),
    ]
    if not is_replica:
        secret_files.append(
            SecretFile(
                path=f"{conf_dir}/bootstrap.sql",
                content=SecretStr(_bootstrap_sql(credentials, settings, create_replication_user=True)),
            )
        )
    return Container(
        kind=ServiceKind.POSTGRES,
        image=_postgres_image(settings, context, slot.source),
        command=["/bin/sh", f"{conf_dir}/start.sh"],
        user=POSTGRES_USER_ACCOUNT,
        env={"PGDATA": PGDATA, "PGPASSFILE": f"{conf_dir}/pgpass"},
        files=[
            ConfigFile(path=f"{conf_dir}/postgresql.conf", content=postgresql_conf),
            ConfigFile(path=f"{conf_dir}/pg_hba.conf", content="\n".join(_hba_rules(context.subnet)) + "\n"),
            ConfigFile(path=f"{conf_dir}/start.sh", content=start, mode=0o755),
        ],
        secret_files=secret_files,
        ports=[ServicePort(name="postgres", number=POSTGRES_PORT)],
        volumes=[POSTGRES_VOLUME],
        health_check=HealthCheck(
            command=[f"{bin_dir}/pg_isready", "--host=127.0.0.1", f"--port={POSTGRES_PORT}", f"--dbname={APP_DATABASE}"]
        ),
        start_stage=StartStage.REPLICAS if is_replica else StartStage.PRIMARY,
    )


def _primary_start_script(bin_dir: str, conf_dir: str) -> str:
    return f"""#!/bin/sh
# Initialises the cluster and its roles on first start only, so a restarted container keeps its data.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  "{bin_dir}/initdb" --pgdata="$PGDATA" --username={SUPERUSER} --pwfile="{conf_dir}/superuser.password" \\
    --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --data-checksums
  "{bin_dir}/pg_ctl" --pgdata="$PGDATA" --wait --timeout=120 \\
    --options="-c config_file={conf_dir}/postgresql.conf -c listen_addresses=''" start
  "{bin_dir}/psql" --no-psqlrc --set=ON_ERROR_STOP=1 --host={SOCKET_DIR} --username={SUPERUSER} \\
    --dbname=postgres --file="{conf_dir}/bootstrap.sql"
  "{bin_dir}/pg_ctl" --pgdata="$PGDATA" --wait --timeout=120 stop
fi
exec "{bin_dir}/postgres" -D "$PGDATA" -c config_file="{conf_dir}/postgresql.conf"
"""


def _replica_start_script(bin_dir: str, conf_dir: str, master_ip: str) -> str:
    return f"""#!/bin/sh
# Clones the primary on first start; the primary may still be initialising, so the clone is retried (bounded).
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  attempt=1
  until "{bin_dir}/pg_basebackup" --pgdata="$PGDATA" --host={master_ip} --port={POSTGRES_PORT} \\
      --username={REPLICATION_USER} --no-password --wal-method=stream --checkpoint=fast; do
    if [ "$attempt" -ge 90 ]; then
      echo "primary {master_ip}:{POSTGRES_PORT} could not be cloned after $attempt attempts" >&2
      exit 1
    fi
    attempt=$((attempt + 1))
    rm -rf "$PGDATA"
    sleep 2
  done
  touch "$PGDATA/standby.signal"
fi
exec "{bin_dir}/postgres" -D "$PGDATA" -c config_file="{conf_dir}/postgresql.conf"
"""


def _patroni_postgres(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    """PostgreSQL managed by Patroni; the master machine bootstraps, the others join once it leads."""
    credentials = context.require_credentials()
    settings, user_conf = _settings_for(machine, context)
    patroni = settings.patroni
    cluster = context.cluster
    if patroni is None or cluster is None or cluster.addons.etcd is None:
        raise PlanningError(join_path(slot.source, "settings", "patroni"), "Patroni needs a cluster with etcd")
    bin_dir = _bin_dir(settings.version)
    conf_dir = f"{CONF_DIR}/patroni"
    ip = context.ips[machine.name]
    etcd_port = cluster.addons.etcd.client_port
    config = {
        "scope": PATRONI_SCOPE,
        "name": machine.name,
        "restapi": {"listen": f"0.0.0.0:{PATRONI_PORT}", "connect_address": f"{ip}:{PATRONI_PORT}"},
        "etcd3": {"hosts": [f"{context.ips[name]}:{etcd_port}" for name in context.etcd_members]},
        "bootstrap": {
            "dcs": {
                "ttl": patroni.ttl,
                "loop_wait": patroni.loop_wait,
                "retry_timeout": patroni.retry_timeout,
                "maximum_lag_on_failover": patroni.maximum_lag_on_failover,
                "synchronous_mode": patroni.synchronous_mode,
                "synchronous_node_count": patroni.synchronous_node_count,
                "postgresql": {
                    "use_pg_rewind": True,
                    "parameters": {
                        "wal_level": "replica",
                        "hot_standby": "on",
                        "max_wal_senders": _replica_count(context) + 4,
                        "max_replication_slots": _replica_count(context) + 4,
                        "wal_log_hints": "on",
                        "password_encryption": "scram-sha-256",
                        **_engine_parameters(settings),
                        **settings.postgresql_conf,
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, "data-checksums", {"auth-local": "peer"}, {"auth-host": "scram-sha-256"}],
            "post_bootstrap": f"{conf_dir}/post-bootstrap.sh",
        },
        "postgresql": {
            "listen": f"0.0.0.0:{POSTGRES_PORT}",
            "connect_address": f"{ip}:{POSTGRES_PORT}",
            "data_dir": PGDATA,
            "bin_dir": bin_dir,
            "pgpass": "/tmp/patroni.pgpass",
            # A fast checkpoint lets a new replica clone at once instead of waiting for a spread checkpoint.
            "basebackup": [{"checkpoint": "fast"}],
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": credentials.superuser.get_secret_value()},
                "replication": {"username": REPLICATION_USER, "password": credentials.replication.get_secret_value()},
                "rewind": {"username": SUPERUSER, "password": credentials.superuser.get_secret_value()},
            },
            "pg_hba": _hba_rules(context.subnet),
            "parameters": {"unix_socket_directories": SOCKET_DIR, **user_conf},
        },
    }
    post_bootstrap = f"""#!/bin/sh
# Patroni runs this once on the bootstrapping node, passing a superuser connection URL as $1.
set -eu
exec "{bin_dir}/psql" --no-psqlrc --set=ON_ERROR_STOP=1 "$1" --file="{conf_dir}/bootstrap.sql"
"""
    is_replica = machine.role is MachineRole.REPLICA
    return Container(
        kind=ServiceKind.POSTGRES,
        image=_postgres_image(settings, context, slot.source),
        command=["patroni", f"{conf_dir}/patroni.yml"],
        user=POSTGRES_USER_ACCOUNT,
        files=[ConfigFile(path=f"{conf_dir}/post-bootstrap.sh", content=post_bootstrap, mode=0o755)],
        secret_files=[
            SecretFile(path=f"{conf_dir}/patroni.yml", content=SecretStr(yaml.safe_dump(config, sort_keys=False))),
            SecretFile(
                path=f"{conf_dir}/bootstrap.sql",
                content=SecretStr(_bootstrap_sql(credentials, settings, create_replication_user=False)),
            ),
        ],
        ports=[ServicePort(name="postgres", number=POSTGRES_PORT), ServicePort(name="patroni", number=PATRONI_PORT)],
        volumes=[POSTGRES_VOLUME],
        # The master must lead before the replicas start, so that it is the bootstrapping node; a replica is ready
        # once it streams from the leader.
        health_check=_replica_streaming_check() if is_replica else _http_check(PATRONI_PORT, "/primary"),
        start_stage=StartStage.REPLICAS if is_replica else StartStage.PRIMARY,
    )


def _postgres(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    settings, _ = _settings_for(machine, context)
    if settings.patroni_enabled:
        return _patroni_postgres(machine, slot, context)
    return _plain_postgres(machine, slot, context)


def _etcd(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    client, peer = slot.ports["client"], slot.ports["peer"]
    ip = context.ips[machine.name]
    names = {name: f"etcd-{number}" for number, name in enumerate(context.etcd_members, start=1)}
    initial_cluster = ",".join(f"{names[name]}=http://{context.ips[name]}:{peer}" for name in context.etcd_members)
    return Container(
        kind=ServiceKind.ETCD,
        image=context.images.etcd,
        command=[
            "etcd",
            f"--name={names[machine.name]}",
            f"--data-dir={ETCD_VOLUME}/data",
            f"--listen-client-urls=http://0.0.0.0:{client}",
            f"--advertise-client-urls=http://{ip}:{client}",
            f"--listen-peer-urls=http://0.0.0.0:{peer}",
            f"--initial-advertise-peer-urls=http://{ip}:{peer}",
            f"--initial-cluster={initial_cluster}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token=stroppy-{context.test.name}",
        ],
        user=POSTGRES_USER_ACCOUNT,
        ports=[ServicePort(name="etcd-client", number=client), ServicePort(name="etcd-peer", number=peer)],
        volumes=[ETCD_VOLUME],
        health_check=HealthCheck(command=["etcdctl", f"--endpoints=http://127.0.0.1:{client}", "endpoint", "health"]),
        start_stage=StartStage.DCS,
    )


def _pgbouncer(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    credentials = context.require_credentials()
    cluster = context.cluster
    if cluster is None or cluster.addons.pgbouncer is None:
        raise PlanningError(slot.source, "PgBouncer needs a cluster template")
    pgbouncer = cluster.addons.pgbouncer
    conf_dir = f"{CONF_DIR}/pgbouncer"
    ini = f"""[databases]
{APP_DATABASE} = host={context.master_ip} port={POSTGRES_PORT} dbname={APP_DATABASE}

[pgbouncer]
listen_addr = 0.0.0.0
listen_port = {pgbouncer.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {conf_dir}/userlist.txt
pool_mode = {pgbouncer.pool_mode}
default_pool_size = {pgbouncer.pool_size}
max_client_conn = {pgbouncer.max_client_conn}
stats_users = {MONITOR_USER}
ignore_startup_parameters = extra_float_digits
"""
    userlist = "".join(
        f'"{user}" "{password.get_secret_value()}"\n'
        for user, password in ((APP_USER, credentials.app), (MONITOR_USER, credentials.monitor))
    )
    bin_dir = _bin_dir(cluster.topology.settings.version)
    pgpass = _pgpass_line("127.0.0.1", pgbouncer.port, APP_DATABASE, MONITOR_USER, credentials.monitor)
    return Container(
        kind=ServiceKind.PGBOUNCER,
        image=context.images.pgbouncer,
        command=["pgbouncer", f"{conf_dir}/pgbouncer.ini"],
        user=POSTGRES_USER_ACCOUNT,
        env={"PGPASSFILE": f"{conf_dir}/pgpass"},
        files=[ConfigFile(path=f"{conf_dir}/pgbouncer.ini", content=ini)],
        secret_files=[
            SecretFile(path=f"{conf_dir}/userlist.txt", content=SecretStr(userlist)),
            SecretFile(path=f"{conf_dir}/pgpass", content=SecretStr(pgpass)),
        ],
        ports=[ServicePort(name="pgbouncer", number=pgbouncer.port)],
        # A query through PgBouncer proves it accepts clients and routes them to the primary.
        health_check=HealthCheck(
            command=[
                f"{bin_dir}/psql",
                "--no-psqlrc",
                "--no-password",
                "--host=127.0.0.1",
                f"--port={pgbouncer.port}",
                f"--username={MONITOR_USER}",
                f"--dbname={APP_DATABASE}",
                "--command=SELECT 1",
            ]
        ),
        start_stage=StartStage.FRONTENDS,
    )


def _node_exporter(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    del machine
    port = slot.ports["metrics"]
    return Container(
        kind=ServiceKind.NODE_EXPORTER,
        image=context.images.node_exporter,
        command=["prometheus-node-exporter", f"--web.listen-address=:{port}", *slot.args],
        user=UNPRIVILEGED_ACCOUNT,
        ports=[ServicePort(name="node-exporter", number=port)],
        health_check=_http_check(port),
        start_stage=StartStage.FRONTENDS,
    )


def _postgres_exporter(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    del machine
    credentials = context.require_credentials()
    port = slot.ports["metrics"]
    password_file = f"{CONF_DIR}/postgres-exporter/password"
    return Container(
        kind=ServiceKind.POSTGRES_EXPORTER,
        image=context.images.postgres_exporter,
        command=["prometheus-postgres-exporter", f"--web.listen-address=:{port}"],
        user=POSTGRES_USER_ACCOUNT,
        env={
            "DATA_SOURCE_URI": f"127.0.0.1:{POSTGRES_PORT}/{APP_DATABASE}?sslmode=disable",
            "DATA_SOURCE_USER": MONITOR_USER,
            "DATA_SOURCE_PASS_FILE": password_file,
        },
        secret_files=[SecretFile(path=password_file, content=credentials.monitor)],
        ports=[ServicePort(name="postgres-exporter", number=port)],
        health_check=_http_check(port),
        start_stage=StartStage.FRONTENDS,
    )


def _pgbouncer_exporter(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    credentials = context.require_credentials()
    pgbouncer_port = next(s.ports["pgbouncer"] for s in machine.services if s.kind is ServiceKind.PGBOUNCER)
    pgpass = f"{CONF_DIR}/pgbouncer-exporter/pgpass"
    port = slot.ports["metrics"]
    return Container(
        kind=ServiceKind.PGBOUNCER_EXPORTER,
        image=context.images.pgbouncer_exporter,
        command=[
            "prometheus-pgbouncer-exporter",
            f"--web.listen-address=:{port}",
            f"--pgBouncer.connectionString=postgres://{MONITOR_USER}@127.0.0.1:{pgbouncer_port}/pgbouncer?sslmode=disable",
        ],
        user=POSTGRES_USER_ACCOUNT,
        env={"PGPASSFILE": pgpass},
        secret_files=[
            SecretFile(
                path=pgpass,
                content=SecretStr(
                    _pgpass_line("127.0.0.1", pgbouncer_port, "pgbouncer", MONITOR_USER, credentials.monitor)
                ),
            )
        ],
        ports=[ServicePort(name="pgbouncer-exporter", number=port)],
        health_check=_http_check(port),
        start_stage=StartStage.FRONTENDS,
    )


def _backup(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    """A scheduled pg_dump of the machine's own database into a local directory (cron runs it)."""
    credentials = context.require_credentials()
    database = context.test.database
    backup = (
        database.instance.sidecars.backup
        if database.instance is not None
        else database.cluster.addons.backup
        if database.cluster is not None
        else None
    )
    if backup is None:
        raise PlanningError(slot.source, "no backup is configured here")
    if backup.tool is not BackupTool.PG_DUMP:
        raise PlanningError(join_path(slot.source, "tool"), "only pg_dump backups can be planned so far", backup.tool)
    if backup.storage.local is None:
        raise PlanningError(join_path(slot.source, "storage"), "only local backup storage can be planned so far")
    settings, _ = _settings_for(machine, context)
    directory = backup.storage.local.path.rstrip("/")
    conf_dir = f"{CONF_DIR}/backup"
    prefix = f"{APP_DATABASE}-{machine.name}"
    script = f"""#!/bin/sh
# Dumps the machine's database, then drops dumps older than the retention period.
set -eu
mkdir -p "{directory}"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
PGPASSFILE="{conf_dir}/pgpass" "{_bin_dir(settings.version)}/pg_dump" --host=127.0.0.1 --port={POSTGRES_PORT} \\
  --username={APP_USER} --no-password --format=custom --file="{directory}/{prefix}-$stamp.dump" {APP_DATABASE}
find "{directory}" -name '{prefix}-*.dump' -mmin +{max(1, backup.retention // 60)} -delete
"""
    crontab = f"{backup.schedule} root {conf_dir}/backup.sh >> {directory}/backup.log 2>&1\n"
    return Container(
        kind=ServiceKind.BACKUP,
        image=context.images.backup,
        command=["cron", "-f"],
        user="root",
        files=[
            ConfigFile(path=f"{conf_dir}/backup.sh", content=script, mode=0o755),
            ConfigFile(path="/etc/cron.d/stroppy-backup", content=crontab),
        ],
        secret_files=[
            SecretFile(
                path=f"{conf_dir}/pgpass",
                content=SecretStr(_pgpass_line("127.0.0.1", POSTGRES_PORT, APP_DATABASE, APP_USER, credentials.app)),
            )
        ],
        volumes=[directory],
        health_check=HealthCheck(command=["pgrep", "-x", "cron"]),
        start_stage=StartStage.FRONTENDS,
    )


_RENDERERS: dict[ServiceKind, Callable[[MachineLayout, ServiceSlot, ServiceContext], Container]] = {
    ServiceKind.POSTGRES: _postgres,
    ServiceKind.ETCD: _etcd,
    ServiceKind.PGBOUNCER: _pgbouncer,
    ServiceKind.NODE_EXPORTER: _node_exporter,
    ServiceKind.POSTGRES_EXPORTER: _postgres_exporter,
    ServiceKind.PGBOUNCER_EXPORTER: _pgbouncer_exporter,
    ServiceKind.BACKUP: _backup,
}


def render_container(
    kind: ServiceKind, machine: MachineLayout, slot: ServiceSlot, context: ServiceContext
) -> Container:
    return _RENDERERS[kind](machine, slot, context)
