"""The Prometheus exporters: of the machine, of its PostgreSQL server and of its PgBouncer."""

from __future__ import annotations

from pydantic import SecretStr

from stroppy_domain.layout import MachineLayout, ServiceSlot
from stroppy_domain.plan import Container, SecretFile, ServiceKind, ServicePort, StartStage
from stroppy_domain.services.common import (
    APP_DATABASE,
    CONF_DIR,
    MONITOR_USER,
    POSTGRES_PORT,
    POSTGRES_USER_ACCOUNT,
    UNPRIVILEGED_ACCOUNT,
    ServiceContext,
    http_check,
)
from stroppy_domain.services.render import pgpass_line, postgres_url, postgres_url_address


def render_node_exporter(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    """The machine's exporter, with any extra collectors the slot asks for."""
    del machine
    port = slot.ports["metrics"]
    return Container(
        kind=ServiceKind.NODE_EXPORTER,
        image=context.images.node_exporter,
        command=["prometheus-node-exporter", f"--web.listen-address=:{port}", *slot.args],
        user=UNPRIVILEGED_ACCOUNT,
        ports=[ServicePort(name="node-exporter", number=port)],
        health_check=http_check(port),
        start_stage=StartStage.FRONTENDS,
    )


def render_postgres_exporter(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    """The exporter of the machine's own PostgreSQL server, logged in as the monitor role.

    Raises PlanningError when the test has no database template (an existing database)."""
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
            "DATA_SOURCE_URI": postgres_url_address("127.0.0.1", POSTGRES_PORT, APP_DATABASE, {"sslmode": "disable"}),
            "DATA_SOURCE_USER": MONITOR_USER,
            "DATA_SOURCE_PASS_FILE": password_file,
        },
        secret_files=[SecretFile(path=password_file, content=credentials.monitor)],
        ports=[ServicePort(name="postgres-exporter", number=port)],
        health_check=http_check(port),
        start_stage=StartStage.FRONTENDS,
    )


def render_pgbouncer_exporter(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    """The exporter of the PgBouncer on the same machine, reading its statistics as the monitor role.

    Raises PlanningError when the test has no database template (an existing database)."""
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
            "--pgBouncer.connectionString="
            + postgres_url(MONITOR_USER, "127.0.0.1", pgbouncer_port, "pgbouncer", sslmode="disable"),
        ],
        user=POSTGRES_USER_ACCOUNT,
        env={"PGPASSFILE": pgpass},
        secret_files=[
            SecretFile(
                path=pgpass,
                content=SecretStr(
                    pgpass_line("127.0.0.1", pgbouncer_port, "pgbouncer", MONITOR_USER, credentials.monitor)
                ),
            )
        ],
        ports=[ServicePort(name="pgbouncer-exporter", number=port)],
        health_check=http_check(port),
        start_stage=StartStage.FRONTENDS,
    )
