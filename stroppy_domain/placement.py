"""The placement planner: a test's database template -> machines, IPs and service containers.

Planning has two passes. `lay_out` decides which machines exist and which services run on each; it needs no
addresses, so it also tells how big a subnet the run must reserve and catches port clashes. `plan_run` then
gives every machine an address from the reserved subnet and renders each service's configuration.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes, urlsplit

from pydantic import SecretStr

from stroppy_domain.errors import PlanningError, join_path
from stroppy_domain.layout import Layout, MachineLayout, ServiceSlot
from stroppy_domain.model import (
    BenchmarkTest,
    ClusterTemplate,
    InstanceTemplate,
    Placement,
    Scope,
    Target,
)
from stroppy_domain.plan import Connection, Machine, MachineRole, RunPlan, ServiceKind
from stroppy_domain.services import (
    APP_DATABASE,
    APP_USER,
    PATRONI_PORT,
    PGBOUNCER_EXPORTER_PORT,
    POSTGRES_PORT,
    PasswordSource,
    RenderError,
    RunCredentials,
    ServiceContext,
    load_passfile,
    render_container,
)
from stroppy_domain.services.common import rendering
from stroppy_domain.services.render import pgpass_line
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.subnets import machine_addresses

RUNNER_MACHINE = "stroppy-runner"
MASTER_MACHINE = "postgres-master"
DEFAULT_NODE_EXPORTER_PORT = 9100
DEFAULT_POSTGRES_EXPORTER_PORT = 9187


def _postgres_slot(source: str, patroni: bool) -> ServiceSlot:
    ports = {"postgres": POSTGRES_PORT} | ({"patroni": PATRONI_PORT} if patroni else {})
    return ServiceSlot(ServiceKind.POSTGRES, source, ports)


def _node_exporter_slot(
    source: str, port: int, port_source: str = "", collectors: list[str] | None = None
) -> ServiceSlot:
    return ServiceSlot(
        ServiceKind.NODE_EXPORTER,
        source,
        {"metrics": port},
        {"metrics": port_source} if port_source else {},
        [f"--collector.{name}" for name in collectors or []],
    )


def _postgres_exporter_slot(source: str, port: int, port_source: str = "") -> ServiceSlot:
    return ServiceSlot(
        ServiceKind.POSTGRES_EXPORTER, source, {"metrics": port}, {"metrics": port_source} if port_source else {}
    )


def _runner(test: BenchmarkTest, path: str) -> MachineLayout:
    runner = MachineLayout(RUNNER_MACHINE, MachineRole.RUNNER, test.runner_hardware)
    runner.add(_node_exporter_slot(join_path(path, "runner_hardware"), DEFAULT_NODE_EXPORTER_PORT))
    return runner


def _lay_out_instance(template: InstanceTemplate, path: str) -> list[MachineLayout]:
    master = MachineLayout(MASTER_MACHINE, MachineRole.MASTER, template.hardware)
    master.add(_postgres_slot(path, template.settings.patroni_enabled))
    sidecars = template.sidecars
    if sidecars.node_exporter is not None:
        source = join_path(path, "sidecars", "node_exporter")
        master.add(
            _node_exporter_slot(
                source, sidecars.node_exporter.port, join_path(source, "port"), sidecars.node_exporter.collectors
            )
        )
    if sidecars.postgres_exporter is not None:
        source = join_path(path, "sidecars", "postgres_exporter")
        master.add(_postgres_exporter_slot(source, sidecars.postgres_exporter.port, join_path(source, "port")))
    if sidecars.backup is not None:
        master.add(ServiceSlot(ServiceKind.BACKUP, join_path(path, "sidecars", "backup")))
    return [master]


def colocated_machines(scope: Scope, replica_index: int | None, replicas: int) -> list[str]:
    """Names of the database machines a colocated scope selects, in machine order."""
    replica_names = [f"postgres-replica-{index}" for index in range(replicas)]
    if scope is Scope.MASTER:
        return [MASTER_MACHINE]
    if scope is Scope.REPLICAS:
        return replica_names
    if scope is Scope.ALL_NODES:
        return [MASTER_MACHINE, *replica_names]
    if replica_index is None or not 0 <= replica_index < replicas:
        return []
    return [replica_names[replica_index]]


def _placement_targets(
    placement: Placement, path: str, machines: list[MachineLayout], replicas: int, dedicated: tuple[str, MachineRole]
) -> list[MachineLayout]:
    """The machines an addon runs on; dedicated machines are created here, named after the addon."""
    if placement.colocate is not None:
        names = colocated_machines(placement.colocate.scope, placement.colocate.replica_index, replicas)
        if not names:
            raise PlanningError(join_path(path, "colocate"), "selects no database machine")
        return [next(machine for machine in machines if machine.name == name) for name in names]
    if placement.dedicated is None:
        raise PlanningError(path, "needs exactly one of 'colocate' or 'dedicated'")
    prefix, role = dedicated
    created = [
        MachineLayout(f"{prefix}-{number}", role, placement.dedicated.hardware)
        for number in range(1, placement.dedicated.count + 1)
    ]
    machines.extend(created)
    return created


def _lay_out_cluster(template: ClusterTemplate, path: str) -> list[MachineLayout]:
    topology = template.topology
    overrides = {override.index: override for override in template.replica_overrides}
    machines = [MachineLayout(MASTER_MACHINE, MachineRole.MASTER, topology.master_hardware)]
    for index in range(topology.replicas):
        override = overrides.get(index)
        hardware = override.hardware if override and override.hardware else topology.replica_hardware
        machines.append(MachineLayout(f"postgres-replica-{index}", MachineRole.REPLICA, hardware, index))
    topology_path = join_path(path, "topology")
    monitor_path = join_path(topology_path, "monitor")
    for machine in machines:
        machine.add(_postgres_slot(topology_path, topology.settings.patroni_enabled))
        if topology.monitor:
            machine.add(_node_exporter_slot(monitor_path, DEFAULT_NODE_EXPORTER_PORT))
            machine.add(_postgres_exporter_slot(monitor_path, DEFAULT_POSTGRES_EXPORTER_PORT))
    addons_path = join_path(path, "addons")
    _add_etcd(template, join_path(addons_path, "etcd"), machines)
    _add_pgbouncer(template, join_path(addons_path, "pgbouncer"), machines)
    _add_backup(template, join_path(addons_path, "backup"), machines)
    return machines


def _add_etcd(template: ClusterTemplate, path: str, machines: list[MachineLayout]) -> None:
    etcd = template.addons.etcd
    if etcd is None:
        return
    targets = _placement_targets(
        etcd.placement, join_path(path, "placement"), machines, template.topology.replicas, ("etcd", MachineRole.ETCD)
    )
    ports = {"client": etcd.client_port, "peer": etcd.client_port + 1}
    for machine in targets:
        machine.add(ServiceSlot(ServiceKind.ETCD, path, ports, dict.fromkeys(ports, join_path(path, "client_port"))))
        if etcd.monitor:
            machine.add(_node_exporter_slot(join_path(path, "monitor"), DEFAULT_NODE_EXPORTER_PORT))


def _add_pgbouncer(template: ClusterTemplate, path: str, machines: list[MachineLayout]) -> None:
    pgbouncer = template.addons.pgbouncer
    if pgbouncer is None:
        return
    targets = _placement_targets(
        pgbouncer.placement,
        join_path(path, "placement"),
        machines,
        template.topology.replicas,
        ("pgbouncer", MachineRole.PGBOUNCER),
    )
    monitor_path = join_path(path, "monitor")
    for machine in targets:
        machine.add(
            ServiceSlot(
                ServiceKind.PGBOUNCER, path, {"pgbouncer": pgbouncer.port}, {"pgbouncer": join_path(path, "port")}
            )
        )
        if pgbouncer.monitor:
            machine.add(ServiceSlot(ServiceKind.PGBOUNCER_EXPORTER, monitor_path, {"metrics": PGBOUNCER_EXPORTER_PORT}))
            if machine.role is MachineRole.PGBOUNCER:
                machine.add(_node_exporter_slot(monitor_path, DEFAULT_NODE_EXPORTER_PORT))


def _add_backup(template: ClusterTemplate, path: str, machines: list[MachineLayout]) -> None:
    backup = template.addons.backup
    if backup is None:
        return
    names = colocated_machines(backup.scope, backup.replica_index, template.topology.replicas)
    if not names:
        raise PlanningError(join_path(path, "scope"), "selects no database machine", backup.scope)
    for machine in machines:
        if machine.name in names:
            machine.add(ServiceSlot(ServiceKind.BACKUP, path))


def _check_ports(machine: MachineLayout) -> None:
    """Every container of a machine shares its network namespace, so no two may listen on one port."""
    owners: dict[int, tuple[str, str]] = {}
    for slot in machine.services:
        for port_name, number in slot.ports.items():
            source = slot.port_sources.get(port_name, "")
            label = f"{slot.kind}.{port_name}"
            if number in owners:
                other_label, other_source = owners[number]
                path = source or other_source or slot.source
                raise PlanningError(
                    path, f"port {number} of {label} clashes with {other_label} on machine {machine.name}", number
                )
            owners[number] = (label, source)


def lay_out(test: BenchmarkTest, path: str = "test") -> Layout:
    """Machines and their services for `test`, the runner last; raises PlanningError naming the bad field."""
    database = test.database
    database_path = join_path(path, "database")
    if database.instance is not None:
        machines = _lay_out_instance(database.instance, join_path(database_path, "instance"))
    elif database.cluster is not None:
        machines = _lay_out_cluster(database.cluster, join_path(database_path, "cluster"))
    else:
        machines = []
    for machine in machines:
        _check_ports(machine)
    entry = next(
        (
            (machine.name, slot.ports["pgbouncer"])
            for machine in machines
            for slot in machine.services
            if slot.kind is ServiceKind.PGBOUNCER
        ),
        (MASTER_MACHINE, POSTGRES_PORT),
    )
    return Layout([*machines, _runner(test, path)], entry)


def plan_run(
    test: BenchmarkTest,
    target: Target,
    subnet: str,
    settings: PlannerSettings,
    passwords: PasswordSource,
    path: str = "test",
) -> RunPlan:
    """The full plan of one run of `test` on `subnet`; raises PlanningError naming the bad field, and SubnetError
    when `subnet` holds fewer machines than the test needs."""
    layout = lay_out(test, path)
    addresses = machine_addresses(subnet, len(layout.machines))
    ips = {machine.name: ip for machine, ip in zip(layout.machines, addresses, strict=True)}
    credentials = None if test.database.existing is not None else RunCredentials.generate(passwords)
    context = ServiceContext(
        test=test,
        path=path,
        subnet=subnet,
        ips=ips,
        credentials=credentials,
        images=settings.images,
        etcd_members=[machine.name for machine in layout.machines if machine.has(ServiceKind.ETCD)],
    )
    if credentials is None:
        connection = _existing_connection(test, path)
    else:
        entry_machine, entry_port = layout.entry
        connection = Connection(
            host=ips[entry_machine],
            port=entry_port,
            dbname=APP_DATABASE,
            user=APP_USER,
            password=credentials.app,
        )
    runner_files = (
        []
        if credentials is None
        else [
            load_passfile(connection.host, connection.port, APP_USER, APP_DATABASE, credentials.app.get_secret_value())
        ]
    )
    machines = [
        Machine(
            name=machine.name,
            role=machine.role,
            hardware=machine.hardware,
            ip=ips[machine.name],
            containers=[render_container(slot.kind, machine, slot, context) for slot in machine.services],
            secret_files=runner_files if machine.role is MachineRole.RUNNER else [],
        )
        for machine in layout.machines
    ]
    return RunPlan(test_name=test.name, target=target, subnet=subnet, machines=machines, connection=connection)


def _existing_connection(test: BenchmarkTest, path: str) -> Connection:
    """The load's connection to an existing database, read from its URL as libpq reads it: user and database name
    percent-decoded, the host without an IPv6 address's brackets (as PGHOST wants it). They are checked here, so
    that a URL, the runner's password file and the load's environment can hold them before any run starts.

    Raises PlanningError naming the connection string when they cannot."""
    existing = test.database.existing
    if existing is None:
        raise PlanningError(join_path(path, "database"), "names no existing database")
    source = join_path(path, "database", "existing", "connection_string")
    url = existing.connection_string
    parts = urlsplit(url)
    connection = Connection(
        host=_percent_decoded(parts.hostname or "", "host", source, url),
        port=parts.port or POSTGRES_PORT,
        dbname=_percent_decoded(parts.path.removeprefix("/"), "database name", source, url) or "postgres",
        user=_percent_decoded(parts.username or "", "user", source, url) or "postgres",
        password_block=existing.password_block,
        parameters={"sslmode": "prefer"} | existing.endpoint.parameters,
    )
    with rendering(source, url):
        connection.dsn()
        pgpass_line(connection.host, connection.port, connection.dbname, connection.user, SecretStr(""))
    return connection


def _percent_decoded(text: str, what: str, source: str, url: str) -> str:
    """`text` of a URL percent-decoded; raises PlanningError at `source` when the bytes are not UTF-8."""
    try:
        return unquote_to_bytes(text).decode()
    except UnicodeDecodeError:
        raise PlanningError(source, f"the {what} is not UTF-8 once percent-decoded", url) from None


def with_runner_password(plan: RunPlan, password: str) -> RunPlan:
    """The plan with the runner holding the password of an existing database (read from its Secret block).

    Raises PlanningError when the password holds a line break or a NUL byte, which a password file cannot."""
    connection = plan.connection
    try:
        passfile = load_passfile(connection.host, connection.port, connection.user, connection.dbname, password)
    except RenderError as error:
        raise PlanningError(
            join_path("database", "existing", "password_block"), f"the password in this Secret block: {error}"
        ) from None
    machines = [
        machine.model_copy(update={"secret_files": [passfile]}) if machine.role is MachineRole.RUNNER else machine
        for machine in plan.machines
    ]
    return plan.model_copy(update={"machines": machines})
