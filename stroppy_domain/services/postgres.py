"""PostgreSQL with built-in streaming replication: the master initialises the cluster, replicas clone it."""

from __future__ import annotations

from pydantic import SecretStr

from stroppy_domain.layout import MachineLayout, ServiceSlot
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
    APP_DATABASE,
    CONF_DIR,
    PGDATA,
    POSTGRES_PORT,
    POSTGRES_USER_ACCOUNT,
    POSTGRES_VOLUME,
    REPLICATION_USER,
    SOCKET_DIR,
    SUPERUSER,
    ServiceContext,
    bin_dir,
    bootstrap_sql,
    check_user_conf,
    engine_parameters,
    hba_rules,
    postgres_image,
    replica_count,
    settings_for,
)
from stroppy_domain.services.render import conninfo, pgpass_line, postgresql_conf, shell_plain
from stroppy_domain.services.templating import render_template

_CONF_DIR = f"{CONF_DIR}/postgres"


def render_plain_postgres(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    """The PostgreSQL container of a machine whose cluster does not run Patroni.

    Raises PlanningError when the test has no database template, the image catalogue no image for its PostgreSQL,
    or a postgresql.conf setting of the suite cannot be written as meant."""
    credentials = context.require_credentials()
    check_user_conf(machine, context)
    settings, user_conf = settings_for(machine, context)
    programs = bin_dir(settings.version)
    is_replica = machine.role is MachineRole.REPLICA
    parameters = {
        "listen_addresses": "*",
        "port": str(POSTGRES_PORT),
        "hba_file": f"{_CONF_DIR}/pg_hba.conf",
        "unix_socket_directories": SOCKET_DIR,
        "password_encryption": "scram-sha-256",
        "wal_level": "replica",
        "hot_standby": "on",
        "max_wal_senders": str(replica_count(context) + 4),
        "wal_keep_size": "1GB",
        **engine_parameters(settings),
        **user_conf,
    }
    if is_replica:
        parameters["primary_conninfo"] = conninfo(
            {
                "host": context.master_ip,
                "port": str(POSTGRES_PORT),
                "user": REPLICATION_USER,
                "passfile": f"{_CONF_DIR}/pgpass",
                "application_name": machine.name.replace("-", "_"),
            }
        )
    start = (
        render_template(
            "replica-start.sh",
            bin_dir=shell_plain(programs),
            conf_dir=shell_plain(_CONF_DIR),
            master_ip=shell_plain(context.master_ip),
            port=shell_plain(POSTGRES_PORT),
            replication_user=shell_plain(REPLICATION_USER),
        )
        if is_replica
        else render_template(
            "primary-start.sh",
            bin_dir=shell_plain(programs),
            conf_dir=shell_plain(_CONF_DIR),
            superuser=shell_plain(SUPERUSER),
            socket_dir=shell_plain(SOCKET_DIR),
        )
    )
    secret_files = [
        SecretFile(path=f"{_CONF_DIR}/superuser.password", content=credentials.superuser),
        SecretFile(
            path=f"{_CONF_DIR}/pgpass",
            content=SecretStr(
                pgpass_line(context.master_ip, POSTGRES_PORT, None, REPLICATION_USER, credentials.replication)
            ),
        ),
    ]
    if not is_replica:
        secret_files.append(
            SecretFile(
                path=f"{_CONF_DIR}/bootstrap.sql",
                content=SecretStr(bootstrap_sql(credentials, settings, create_replication_user=True)),
            )
        )
    return Container(
        kind=ServiceKind.POSTGRES,
        image=postgres_image(settings, context, slot.source),
        command=["/bin/sh", f"{_CONF_DIR}/start.sh"],
        user=POSTGRES_USER_ACCOUNT,
        env={"PGDATA": PGDATA, "PGPASSFILE": f"{_CONF_DIR}/pgpass"},
        files=[
            ConfigFile(path=f"{_CONF_DIR}/postgresql.conf", content=postgresql_conf(parameters)),
            ConfigFile(path=f"{_CONF_DIR}/pg_hba.conf", content="\n".join(hba_rules(context.subnet)) + "\n"),
            ConfigFile(path=f"{_CONF_DIR}/start.sh", content=start, mode=0o755),
        ],
        secret_files=secret_files,
        ports=[ServicePort(name="postgres", number=POSTGRES_PORT)],
        volumes=[POSTGRES_VOLUME],
        health_check=HealthCheck(
            command=[
                f"{programs}/pg_isready",
                "--host=127.0.0.1",
                f"--port={POSTGRES_PORT}",
                f"--dbname={APP_DATABASE}",
            ]
        ),
        start_stage=StartStage.REPLICAS if is_replica else StartStage.PRIMARY,
    )
