"""What every service renderer shares: ports, accounts, paths, the run's credentials and the PostgreSQL settings.

Credentials are generated per run and written to files readable by the service's user alone; `pg_hba` admits the
run's subnet (and loopback, for the exporters) with `scram-sha-256` only.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pydantic import SecretStr

from stroppy_domain.errors import PlanningError, join_path
from stroppy_domain.layout import MachineLayout, ServiceSlot
from stroppy_domain.model import BenchmarkTest, ClusterTemplate, PostgresSettings, StorageEngine
from stroppy_domain.model_rules import RESERVED_POSTGRESQL_CONF
from stroppy_domain.plan import Container, HealthCheck
from stroppy_domain.services.render import (
    RenderError,
    conf_name,
    conf_value,
    hba_line,
    sql_identifier,
    sql_literal,
)
from stroppy_domain.settings import ImageCatalogue

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


_PASSWORD_ALPHABET = string.ascii_letters + string.digits


def generate_password(purpose: str) -> str:
    """A fresh 32-character password; alphanumeric, so it needs no quoting in any config format."""
    del purpose
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(32))


@dataclass(frozen=True)
class RunCredentials:
    """The passwords of the database roles the planner creates for one run."""

    superuser: SecretStr
    replication: SecretStr
    app: SecretStr
    monitor: SecretStr

    @classmethod
    def generate(cls, passwords: PasswordSource) -> RunCredentials:
        """One fresh password per role, asked of `passwords` by role name."""
        return cls(*(SecretStr(passwords(purpose)) for purpose in ("superuser", "replication", "app", "monitor")))


@dataclass(frozen=True)
class ServiceContext:
    """What a renderer needs to know of the whole run besides its own machine and service."""

    test: BenchmarkTest
    path: str
    subnet: str
    ips: dict[str, str]
    credentials: RunCredentials | None
    images: ImageCatalogue
    etcd_members: list[str]

    @property
    def cluster(self) -> ClusterTemplate | None:
        """The test's cluster template, if the test runs a cluster."""
        return self.test.database.cluster

    @property
    def master_ip(self) -> str:
        """The address of the machine the primary starts on."""
        return self.ips["postgres-master"]

    def require_credentials(self) -> RunCredentials:
        """The run's credentials; an existing database has none, so services of its own cannot be planned: raises
        PlanningError then."""
        if self.credentials is None:
            raise PlanningError(join_path(self.path, "database"), "database services need a database template")
        return self.credentials


Renderer = Callable[[MachineLayout, ServiceSlot, ServiceContext], Container]
"""Renders the container of one service slot on one machine."""


def bin_dir(version: int) -> str:
    """Where Debian installs the programs of PostgreSQL `version`."""
    return f"/usr/lib/postgresql/{version}/bin"


@contextmanager
def rendering(path: str, *shown: object) -> Iterator[None]:
    """Names the suite field a value came from when the rendering layer refuses it: a RenderError raised inside
    becomes a PlanningError at `path`, showing `shown` (the value) when given; a secret is never shown.

    Raises PlanningError."""
    try:
        yield
    except RenderError as error:
        raise PlanningError(path, str(error), *shown) from None


def http_check(port: int, path: str = "/metrics") -> HealthCheck:
    """Healthy once `path` on the local `port` answers with a success status."""
    return HealthCheck(command=["curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{port}{path}"])


def settings_for(machine: MachineLayout, context: ServiceContext) -> tuple[PostgresSettings, dict[str, str]]:
    """The PostgreSQL settings of a machine and its postgresql.conf with any replica override merged in.

    Raises PlanningError when the test has neither an instance nor a cluster template."""
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


def postgres_image(settings: PostgresSettings, context: ServiceContext, source: str) -> str:
    """The catalogue's image for the settings' version and storage engine; `source` names the settings in errors.

    Raises PlanningError when the catalogue has no image for them."""
    key = ImageCatalogue.postgres_key(settings.version, settings.storage_engine)
    image = context.images.postgres.get(key)
    if image is None:
        raise PlanningError(
            join_path(source, "settings", "version"),
            f"the image catalogue has no PostgreSQL image for '{key}'; add one under images.postgres",
            settings.version,
        )
    return image


def user_conf_sources(machine: MachineLayout, context: ServiceContext) -> list[tuple[str, dict[str, str]]]:
    """Each postgresql.conf mapping of the suite that reaches `machine`, with its path: the instance's or the
    cluster's settings (which Patroni's bootstrap writes on every node), then this replica's override."""
    database_path = join_path(context.path, "database")
    database = context.test.database
    if database.instance is not None:
        conf = database.instance.settings.postgresql_conf
        return [(join_path(database_path, "instance", "settings", "postgresql_conf"), dict(conf))]
    cluster = context.cluster
    if cluster is None:
        return []
    cluster_path = join_path(database_path, "cluster")
    sources = [
        (
            join_path(cluster_path, "topology", "settings", "postgresql_conf"),
            dict(cluster.topology.settings.postgresql_conf),
        )
    ]
    for position, override in enumerate(cluster.replica_overrides):
        if override.index == machine.replica_index:
            sources.append(
                (
                    join_path(cluster_path, "replica_overrides", position, "postgresql_conf"),
                    dict(override.postgresql_conf),
                )
            )
    return sources


def check_user_conf(machine: MachineLayout, context: ServiceContext) -> None:
    """Every suite postgresql.conf setting reaching `machine` can be written to postgresql.conf as it is meant: its
    name is a setting's, neither one the planner owns nor an include directive, and its value fits a quoted string.
    PostgreSQL's file and Patroni's (which writes the file itself, quoting as `conf_value` does) both rely on it.

    Raises PlanningError naming the setting."""
    for path, conf in user_conf_sources(machine, context):
        for name, value in conf.items():
            setting_path = join_path(path, name)
            if name in RESERVED_POSTGRESQL_CONF:
                raise PlanningError(setting_path, "is managed by stroppy-flows and cannot be set", value)
            with rendering(setting_path, name):
                conf_name(name)
            with rendering(setting_path, value):
                conf_value(value)


def engine_parameters(settings: PostgresSettings) -> dict[str, str]:
    """The server parameters the storage engine needs loaded before any table uses it."""
    if settings.storage_engine is StorageEngine.ORIOLEDB:
        return {"shared_preload_libraries": "orioledb", "default_table_access_method": "orioledb"}
    return {}


def hba_rules(subnet: str) -> list[str]:
    """pg_hba rules: peer over the socket, scram-sha-256 from loopback and from the run's subnet only."""
    return [
        hba_line("local", "all", "all", "peer"),
        hba_line("host", "all", "all", "127.0.0.1/32", "scram-sha-256"),
        hba_line("host", "replication", REPLICATION_USER, subnet, "scram-sha-256"),
        hba_line("host", "all", "all", subnet, "scram-sha-256"),
    ]


def bootstrap_sql(credentials: RunCredentials, settings: PostgresSettings, create_replication_user: bool) -> str:
    """The roles and database a fresh cluster needs; Patroni creates the replication role itself."""
    replication, app, monitor = (sql_identifier(name) for name in (REPLICATION_USER, APP_USER, MONITOR_USER))
    database = sql_identifier(APP_DATABASE)
    statements = []
    if create_replication_user:
        statements.append(
            f"CREATE ROLE {replication} WITH REPLICATION LOGIN PASSWORD {sql_literal(credentials.replication)};"
        )
    statements += [
        f"CREATE ROLE {app} WITH LOGIN PASSWORD {sql_literal(credentials.app)};",
        f"CREATE DATABASE {database} OWNER {app};",
        f"CREATE ROLE {monitor} WITH LOGIN PASSWORD {sql_literal(credentials.monitor)} IN ROLE pg_monitor;",
    ]
    if settings.storage_engine is StorageEngine.ORIOLEDB:
        statements += [f"\\connect {database}", "CREATE EXTENSION IF NOT EXISTS orioledb;"]
    return "\n".join(statements) + "\n"


def replica_count(context: ServiceContext) -> int:
    """How many replicas the cluster has; an instance has none."""
    return context.cluster.topology.replicas if context.cluster is not None else 0
