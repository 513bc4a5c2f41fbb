"""The planner's output: machines, the service containers on each, and how the load reaches the database.

A plan is everything a target needs to start a test's topology. Passwords are `SecretStr` and live only in
`secret_files`, so dumping a plan (to a log, a flow result or `stroppy-flows plan --format json`) never
shows them.
"""

from __future__ import annotations

import json
from enum import IntEnum, StrEnum
from typing import Any

from pydantic import BaseModel, Field, SecretStr
from pydantic_core import to_jsonable_python

from stroppy_domain.model import Hardware, Model, Target


class ServiceKind(StrEnum):
    POSTGRES = "postgres"
    ETCD = "etcd"
    PGBOUNCER = "pgbouncer"
    NODE_EXPORTER = "node_exporter"
    POSTGRES_EXPORTER = "postgres_exporter"
    PGBOUNCER_EXPORTER = "pgbouncer_exporter"
    BACKUP = "backup"


class MachineRole(StrEnum):
    MASTER = "master"
    REPLICA = "replica"
    ETCD = "etcd"
    PGBOUNCER = "pgbouncer"
    RUNNER = "runner"


class StartStage(IntEnum):
    """Containers start stage by stage; a stage starts once every container of the previous one is healthy."""

    DCS = 0
    PRIMARY = 1
    REPLICAS = 2
    FRONTENDS = 3


class ServicePort(Model):
    name: str
    number: int


class ConfigFile(Model):
    path: str
    content: str
    mode: int = 0o644


class SecretFile(Model):
    """A file holding credentials; its content never leaves the model unless asked for explicitly."""

    path: str
    content: SecretStr
    mode: int = 0o600


class HealthCheck(Model):
    """A command run inside the container; healthy on exit 0. The wait is bounded by `attempts`."""

    command: list[str]
    interval_s: float = 1.0
    timeout_s: float = 5.0
    attempts: int = 120

    @property
    def max_wait_s(self) -> float:
        return self.attempts * (self.interval_s + self.timeout_s)


class Container(Model):
    """One service container. All containers of a machine share its network namespace and IP."""

    kind: ServiceKind
    image: str
    command: list[str]
    user: str
    env: dict[str, str] = Field(default_factory=dict)
    files: list[ConfigFile] = Field(default_factory=list)
    secret_files: list[SecretFile] = Field(default_factory=list)
    ports: list[ServicePort] = Field(default_factory=list)
    volumes: list[str] = Field(default_factory=list)
    health_check: HealthCheck
    start_stage: StartStage


class Machine(Model):
    name: str
    role: MachineRole
    hardware: Hardware
    ip: str
    containers: list[Container]
    secret_files: list[SecretFile] = Field(
        default_factory=list, description="Files for the machine itself (its edge agent), such as the load's pgpass."
    )

    def container(self, kind: ServiceKind) -> Container:
        for container in self.containers:
            if container.kind == kind:
                return container
        raise KeyError(f"machine {self.name} runs no {kind} container")


class Connection(Model):
    """Where the load connects. `password` is absent for an existing database: it sits in `password_block`."""

    host: str
    port: int
    dbname: str
    user: str
    password: SecretStr | None = None
    password_block: str | None = None
    parameters: dict[str, str] = Field(
        default_factory=lambda: {"sslmode": "disable"},
        description="libpq parameters: an existing database's come from its URL, the run's own have no TLS.",
    )

    def dsn(self, *, reveal_password: bool = False) -> str:
        """The URL without its password (drivers read it from PGPASSFILE), or with it when asked explicitly: user,
        password and database percent-encoded, an IPv6 host in brackets. `host`, `user` and `dbname` hold the plain
        values, as libpq's PGHOST, PGUSER and PGDATABASE want them.

        Raises RenderError for a host that is neither a host name nor an IP address, or a NUL byte."""
        # Imported here: the services package imports this module, so a top-level import would be circular.
        from stroppy_domain.services.render import postgres_url  # noqa: PLC0415

        password = self.password if reveal_password else None
        return postgres_url(self.user, self.host, self.port, self.dbname, password, **self.parameters)


class RunPlan(Model):
    """Everything one test run needs: its subnet, machines and the load's connection."""

    test_name: str
    target: Target
    subnet: str
    machines: list[Machine]
    connection: Connection

    @property
    def runner(self) -> Machine:
        return next(machine for machine in self.machines if machine.role is MachineRole.RUNNER)

    def agent_machines(self, services_need_agents: bool) -> list[Machine]:
        """The machines that run an edge agent: the runner, where the load and its tool's installation run, and
        every machine where the machines start their own services (a cloud VM); where the target starts them (Docker),
        a database machine's agent would get no flow and only take CPU from its database."""
        return list(self.machines) if services_need_agents else [self.runner]

    def machine(self, name: str) -> Machine:
        for machine in self.machines:
            if machine.name == name:
                return machine
        raise KeyError(f"plan of {self.test_name} has no machine {name}")


def revealed_json(model: BaseModel) -> str:
    """The model as JSON with its secrets in clear, for a secret store only (a Prefect `Secret` block)."""

    def reveal(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {key: reveal(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [reveal(item) for item in value]
        return value

    return json.dumps(reveal(model.model_dump(mode="python")), default=to_jsonable_python)
