"""PostgreSQL managed by Patroni with etcd as its store: the master machine bootstraps, the others join."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from stroppy_domain.errors import PlanningError, join_path
from stroppy_domain.layout import MachineLayout, ServiceSlot
from stroppy_domain.model import PatroniSettings, PostgresSettings
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
from stroppy_domain.services.common import (
    CONF_DIR,
    PATRONI_PORT,
    PATRONI_SCOPE,
    PGDATA,
    POSTGRES_PORT,
    POSTGRES_USER_ACCOUNT,
    POSTGRES_VOLUME,
    REPLICATION_USER,
    SOCKET_DIR,
    SUPERUSER,
    RunCredentials,
    ServiceContext,
    bin_dir,
    bootstrap_sql,
    check_user_conf,
    engine_parameters,
    hba_rules,
    http_check,
    postgres_image,
    replica_count,
    settings_for,
)
from stroppy_domain.services.render import shell_plain, yaml_document
from stroppy_domain.services.templating import render_template

_CONF_DIR = f"{CONF_DIR}/patroni"


def render_patroni_postgres(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    """The Patroni container of a cluster machine; its health tells when the next start stage may begin.

    Raises PlanningError when the test has no cluster template with Patroni settings and etcd, the image catalogue
    no image for its PostgreSQL, or a postgresql.conf setting of the suite cannot be written as meant: Patroni writes
    postgresql.conf itself, quoting values as `render.conf_value` does and names not at all."""
    credentials = context.require_credentials()
    check_user_conf(machine, context)
    settings, user_conf = settings_for(machine, context)
    patroni = settings.patroni
    cluster = context.cluster
    if patroni is None or cluster is None or cluster.addons.etcd is None:
        raise PlanningError(join_path(slot.source, "settings", "patroni"), "Patroni needs a cluster with etcd")
    config = _patroni_config(
        machine, context, settings, patroni, cluster.addons.etcd.client_port, user_conf, credentials
    )
    programs = bin_dir(settings.version)
    is_replica = machine.role is MachineRole.REPLICA
    return Container(
        kind=ServiceKind.POSTGRES,
        image=postgres_image(settings, context, slot.source),
        command=["patroni", f"{_CONF_DIR}/patroni.yml"],
        user=POSTGRES_USER_ACCOUNT,
        files=[
            ConfigFile(
                path=f"{_CONF_DIR}/post-bootstrap.sh",
                content=render_template(
                    "post-bootstrap.sh", bin_dir=shell_plain(programs), conf_dir=shell_plain(_CONF_DIR)
                ),
                mode=0o755,
            )
        ],
        secret_files=[
            SecretFile(path=f"{_CONF_DIR}/patroni.yml", content=SecretStr(yaml_document(config))),
            SecretFile(
                path=f"{_CONF_DIR}/bootstrap.sql",
                content=SecretStr(bootstrap_sql(credentials, settings, create_replication_user=False)),
            ),
        ],
        ports=[ServicePort(name="postgres", number=POSTGRES_PORT), ServicePort(name="patroni", number=PATRONI_PORT)],
        volumes=[POSTGRES_VOLUME],
        # The master must lead before the replicas start, so that it is the bootstrapping node; a replica is ready
        # once it streams from the leader.
        health_check=_replica_streaming_check() if is_replica else http_check(PATRONI_PORT, "/primary"),
        start_stage=StartStage.REPLICAS if is_replica else StartStage.PRIMARY,
    )


def _patroni_config(
    machine: MachineLayout,
    context: ServiceContext,
    settings: PostgresSettings,
    patroni: PatroniSettings,
    etcd_port: int,
    user_conf: dict[str, str],
    credentials: RunCredentials,
) -> dict[str, Any]:
    """patroni.yml of one machine: the cluster-wide bootstrap settings and the machine's own server settings."""
    ip = context.ips[machine.name]
    return {
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
                        "max_wal_senders": replica_count(context) + 4,
                        "max_replication_slots": replica_count(context) + 4,
                        "wal_log_hints": "on",
                        "password_encryption": "scram-sha-256",
                        **engine_parameters(settings),
                        **settings.postgresql_conf,
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, "data-checksums", {"auth-local": "peer"}, {"auth-host": "scram-sha-256"}],
            "post_bootstrap": f"{_CONF_DIR}/post-bootstrap.sh",
        },
        "postgresql": {
            "listen": f"0.0.0.0:{POSTGRES_PORT}",
            "connect_address": f"{ip}:{POSTGRES_PORT}",
            "data_dir": PGDATA,
            "bin_dir": bin_dir(settings.version),
            "pgpass": "/tmp/patroni.pgpass",
            # A fast checkpoint lets a new replica clone at once instead of waiting for a spread checkpoint.
            "basebackup": [{"checkpoint": "fast"}],
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": credentials.superuser.get_secret_value()},
                "replication": {"username": REPLICATION_USER, "password": credentials.replication.get_secret_value()},
                "rewind": {"username": SUPERUSER, "password": credentials.superuser.get_secret_value()},
            },
            "pg_hba": hba_rules(context.subnet),
            "parameters": {"unix_socket_directories": SOCKET_DIR, **user_conf},
        },
    }


def _replica_streaming_check() -> HealthCheck:
    status = f"curl -fsS http://127.0.0.1:{shell_plain(PATRONI_PORT)}/patroni"
    return HealthCheck(command=["sh", "-c", f'{status} | grep -q \'"replication_state": "streaming"\''])
