"""How each service is started: command, configuration files, health check, ports and volumes.

The configuration targets the database-node image (Debian trixie packages: PostgreSQL, Patroni, etcd,
PgBouncer and the Prometheus exporters), and uses only settings those programs actually read. Each service has a
module of its own; scripts and configuration files are templates under `templates/`, and every value written into
them goes through `render`, which quotes or refuses it for its format. This module picks the renderer of a service
and re-exports the names the rest of the project uses.
"""

from __future__ import annotations

from stroppy_domain.errors import PlanningError
from stroppy_domain.layout import MachineLayout, ServiceSlot
from stroppy_domain.model_rules import INCLUDE_DIRECTIVES, RESERVED_POSTGRESQL_CONF
from stroppy_domain.plan import Container, ServiceKind
from stroppy_domain.services.backup import render_backup
from stroppy_domain.services.common import (
    APP_DATABASE,
    APP_USER,
    CONF_DIR,
    ETCD_VOLUME,
    LOAD_PASSFILE,
    MONITOR_USER,
    PATRONI_PORT,
    PATRONI_SCOPE,
    PGBOUNCER_EXPORTER_PORT,
    PGDATA,
    POSTGRES_PORT,
    POSTGRES_USER_ACCOUNT,
    POSTGRES_VOLUME,
    REPLICATION_USER,
    SOCKET_DIR,
    SUPERUSER,
    UNPRIVILEGED_ACCOUNT,
    PasswordSource,
    Renderer,
    RunCredentials,
    ServiceContext,
    generate_password,
    settings_for,
)
from stroppy_domain.services.etcd import render_etcd
from stroppy_domain.services.exporters import render_node_exporter, render_pgbouncer_exporter, render_postgres_exporter
from stroppy_domain.services.patroni import render_patroni_postgres
from stroppy_domain.services.pgbouncer import render_pgbouncer
from stroppy_domain.services.postgres import render_plain_postgres
from stroppy_domain.services.render import RenderError
from stroppy_domain.services.runner import load_passfile

__all__ = [
    "APP_DATABASE",
    "APP_USER",
    "CONF_DIR",
    "ETCD_VOLUME",
    "INCLUDE_DIRECTIVES",
    "LOAD_PASSFILE",
    "MONITOR_USER",
    "PATRONI_PORT",
    "PATRONI_SCOPE",
    "PGBOUNCER_EXPORTER_PORT",
    "PGDATA",
    "POSTGRES_PORT",
    "POSTGRES_USER_ACCOUNT",
    "POSTGRES_VOLUME",
    "REPLICATION_USER",
    "RESERVED_POSTGRESQL_CONF",
    "SOCKET_DIR",
    "SUPERUSER",
    "UNPRIVILEGED_ACCOUNT",
    "PasswordSource",
    "RenderError",
    "RunCredentials",
    "ServiceContext",
    "generate_password",
    "load_passfile",
    "render_container",
]


def _render_postgres(machine: MachineLayout, slot: ServiceSlot, context: ServiceContext) -> Container:
    settings, _ = settings_for(machine, context)
    if settings.patroni_enabled:
        return render_patroni_postgres(machine, slot, context)
    return render_plain_postgres(machine, slot, context)


_RENDERERS: dict[ServiceKind, Renderer] = {
    ServiceKind.POSTGRES: _render_postgres,
    ServiceKind.ETCD: render_etcd,
    ServiceKind.PGBOUNCER: render_pgbouncer,
    ServiceKind.NODE_EXPORTER: render_node_exporter,
    ServiceKind.POSTGRES_EXPORTER: render_postgres_exporter,
    ServiceKind.PGBOUNCER_EXPORTER: render_pgbouncer_exporter,
    ServiceKind.BACKUP: render_backup,
}


def render_container(
    kind: ServiceKind, machine: MachineLayout, slot: ServiceSlot, context: ServiceContext
) -> Container:
    """The container of the service `slot` (of `kind`) on `machine`; raises PlanningError naming the bad field."""
    try:
        return _RENDERERS[kind](machine, slot, context)
    except RenderError as error:
        # Renderers name the exact field of a suite value they refuse; a refusal left unnamed is of a value the
        # planner computed, so the service's own field is the nearest the user can look at.
        raise PlanningError(slot.source, str(error)) from None
