"""PgBouncer in front of the primary; when the cluster has one, the load connects through it."""

from __future__ import annotations

from pydantic import SecretStr

from stroppy_domain.errors import PlanningError
from stroppy_domain.layout import MachineLayout, ServiceSlot
from stroppy_domain.plan import ConfigFile, Container, HealthCheck, SecretFile, ServiceKind, ServicePort, StartStage
from stroppy_domain.services.common import (
    APP_DATABASE,
    APP_USER,
    CONF_DIR,
    MONITOR_USER,
    POSTGRES_PORT,
    POSTGRES_USER_ACCOUNT,
    ServiceContext,
    bin_dir,
)
from stroppy_domain.services.render import pgbouncer_auth_line, pgbouncer_value, pgpass_line
from stroppy_domain.services.templating import render_template

_CONF_DIR = f"{CONF_DIR}/pgbouncer"


def render_pgbouncer(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    """The PgBouncer container: the app and monitor roles may log in, the monitor role may read its statistics.

    Raises PlanningError unless the test runs a cluster template with PgBouncer."""
    del machine
    credentials = context.require_credentials()
    cluster = context.cluster
    if cluster is None or cluster.addons.pgbouncer is None:
        raise PlanningError(slot.source, "PgBouncer needs a cluster template")
    pgbouncer = cluster.addons.pgbouncer
    values: dict[str, object] = {
        "database": APP_DATABASE,
        "primary_host": context.master_ip,
        "primary_port": POSTGRES_PORT,
        "port": pgbouncer.port,
        "conf_dir": _CONF_DIR,
        "pool_mode": pgbouncer.pool_mode,
        "pool_size": pgbouncer.pool_size,
        "max_client_conn": pgbouncer.max_client_conn,
        "stats_user": MONITOR_USER,
    }
    ini = render_template("pgbouncer.ini", **{name: pgbouncer_value(value) for name, value in values.items()})
    userlist = "".join(
        pgbouncer_auth_line(user, password)
        for user, password in ((APP_USER, credentials.app), (MONITOR_USER, credentials.monitor))
    )
    pgpass = pgpass_line("127.0.0.1", pgbouncer.port, APP_DATABASE, MONITOR_USER, credentials.monitor)
    return Container(
        kind=ServiceKind.PGBOUNCER,
        image=context.images.pgbouncer,
        command=["pgbouncer", f"{_CONF_DIR}/pgbouncer.ini"],
        user=POSTGRES_USER_ACCOUNT,
        env={"PGPASSFILE": f"{_CONF_DIR}/pgpass"},
        files=[ConfigFile(path=f"{_CONF_DIR}/pgbouncer.ini", content=ini)],
        secret_files=[
            SecretFile(path=f"{_CONF_DIR}/userlist.txt", content=SecretStr(userlist)),
            SecretFile(path=f"{_CONF_DIR}/pgpass", content=SecretStr(pgpass)),
        ],
        ports=[ServicePort(name="pgbouncer", number=pgbouncer.port)],
        # A query through PgBouncer proves it accepts clients and routes them to the primary.
        health_check=HealthCheck(
            command=[
                f"{bin_dir(cluster.topology.settings.version)}/psql",
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
