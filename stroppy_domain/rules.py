"""The rules between the fields of one test: Patroni needs etcd, etcd's size matches its placement, an override
names a replica that exists, ...

Each rule is written for valid models and also runs on a stand-in from `partial.salvaged`, the valid fields of a test
that did not validate: a rule that reads a broken field is skipped (`guarded`, `known`), the others report. So
one type error in a test does not hide the test's other problems.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from pydantic import BaseModel

from stroppy_domain import stroppy_v5
from stroppy_domain.errors import Issue, join_path
from stroppy_domain.load import LoadError, stroppy_major
from stroppy_domain.model import (
    PGBENCH_WORKLOAD,
    BackupAddon,
    BackupStorage,
    BenchmarkTest,
    ClusterTemplate,
    DatabaseRef,
    Driver,
    Etcd,
    InstanceTemplate,
    PatroniSettings,
    PgBouncer,
    Placement,
    PostgresSettings,
    ReplicaOverride,
    Scope,
    StorageEngine,
    StroppyCli,
)
from stroppy_domain.partial import guarded, known
from stroppy_domain.placement import colocated_machines
from stroppy_domain.results import PGBENCH_METRIC_TYPES
from stroppy_domain.thresholds import K6_BUILTIN_TYPES, aggregation_problem, canonical_metric_name, parse_assertion

ORIOLEDB_VERSIONS = (16, 17)


def test_issues(test: BenchmarkTest, path: str) -> Iterator[Issue]:
    """Every rule between the fields of one test, each skipped when it needs a field that did not validate."""
    stroppy_path = join_path(path, "stroppy")
    yield from guarded(lambda: _driver_issues(test.stroppy, stroppy_path))
    yield from guarded(lambda: _threshold_issues(test, join_path(path, "thresholds")))
    database = known(lambda: test.database)
    if database is not None:
        yield from _database_issues(database, join_path(path, "database"))


def _driver_issues(load: StroppyCli, path: str) -> Iterator[Issue]:
    """The release, its workload and the knobs in `env` are ones the driver has; pgbench runs TPC-B only."""
    if load.driver is Driver.PGBENCH:
        if load.workload != PGBENCH_WORKLOAD:
            yield Issue(join_path(path, "workload"), "pgbench runs TPC-B only: write tpcb", load.workload)
        return
    if load.version is None:
        yield Issue(join_path(path, "version"), "the stroppy driver needs the release to install")
        return
    try:
        stroppy_major(load.version)
    except LoadError as error:
        yield Issue(join_path(path, "version"), str(error).split(": ", 1)[1], load.version)
        return
    problem = stroppy_v5.workload_problem(load.workload)
    if problem is not None:
        yield Issue(join_path(path, "workload"), problem, load.workload)
    for name, reason in stroppy_v5.knob_problems(load.workload, load.env).items():
        value = load.env[name]
        yield Issue(join_path(path, "env", name), reason, value if isinstance(value, str) else value.model_dump())


def _threshold_issues(test: BenchmarkTest, path: str) -> Iterator[Issue]:
    """No two of a test's thresholds name the same submetric; each aggregation applies to its metric where the
    metric's type is known; a stroppy workload's thresholds name metrics its script defines."""
    load = test.stroppy
    types = PGBENCH_METRIC_TYPES if load.driver is Driver.PGBENCH else K6_BUILTIN_TYPES
    first: dict[str, str] = {}
    for metric, rules in test.thresholds.items():
        same = first.setdefault(canonical_metric_name(metric), metric)
        if same != metric:
            yield Issue(join_path(path, metric), f"names the same (sub)metric as {same!r}; k6 would judge the "
                        "thresholds of only one of them: put them in one list")  # fmt: skip
        metric_type = types.get(metric.split("{", 1)[0])
        for index, rule in enumerate(rules):
            problem = aggregation_problem(metric_type, parse_assertion(rule.threshold)) if metric_type else None
            if problem is not None:
                yield Issue(join_path(path, metric, index, "threshold"), problem, rule.threshold)
    if load.driver is not Driver.STROPPY or stroppy_v5.workload_problem(load.workload) is not None:
        return
    for metric in test.thresholds:
        problem = stroppy_v5.metric_problem(load.workload, metric)
        if problem is not None:
            yield Issue(join_path(path, metric), problem)


def _exactly_one(model: BaseModel, path: str, options: tuple[str, ...]) -> Iterator[Issue]:
    chosen = [name for name in options if getattr(model, name) is not None]
    if len(chosen) != 1:
        found = f"; found {', '.join(chosen)}" if chosen else ""
        yield Issue(path, f"needs exactly one of {', '.join(options)}{found}")


def _database_issues(database: DatabaseRef, path: str) -> Iterator[Issue]:
    yield from guarded(lambda: _exactly_one(database, path, ("instance", "cluster", "existing")))
    instance = known(lambda: database.instance)
    if instance is not None:
        yield from _instance_issues(instance, join_path(path, "instance"))
    cluster = known(lambda: database.cluster)
    if cluster is not None:
        yield from _cluster_issues(cluster, join_path(path, "cluster"))


def _instance_issues(instance: InstanceTemplate, path: str) -> Iterator[Issue]:
    settings_path = join_path(path, "settings")
    settings = known(lambda: instance.settings)
    if settings is not None:
        yield from _settings_issues(settings, settings_path)
        if known(lambda: settings.patroni_enabled):
            yield Issue(
                join_path(settings_path, "patroni", "enabled"),
                "Patroni manages a replicated cluster; use a cluster template for it",
                True,
            )
    backup = known(lambda: instance.sidecars.backup)
    if backup is not None:
        yield from guarded(lambda: _storage_issues(backup.storage, join_path(path, "sidecars", "backup", "storage")))


def _settings_issues(settings: PostgresSettings, path: str) -> Iterator[Issue]:
    yield from guarded(lambda: _orioledb_issues(settings, path))
    patroni = known(lambda: settings.patroni)
    if patroni is not None:
        yield from guarded(lambda: _patroni_timing_issues(patroni, join_path(path, "patroni", "ttl")))


def _orioledb_issues(settings: PostgresSettings, path: str) -> Iterator[Issue]:
    if settings.storage_engine is StorageEngine.ORIOLEDB and settings.version not in ORIOLEDB_VERSIONS:
        yield Issue(join_path(path, "version"), "OrioleDB runs only on PostgreSQL 16 and 17", settings.version)


def _patroni_timing_issues(patroni: PatroniSettings, path: str) -> Iterator[Issue]:
    needed = patroni.loop_wait + 2 * patroni.retry_timeout
    if needed > patroni.ttl:
        yield Issue(path, f"Patroni needs ttl >= loop_wait + 2 * retry_timeout = {needed}", patroni.ttl)


def _storage_issues(storage: BackupStorage, path: str) -> Iterator[Issue]:
    yield from _exactly_one(storage, path, ("local", "s3"))


def _cluster_issues(cluster: ClusterTemplate, path: str) -> Iterator[Issue]:
    replicas = known(lambda: cluster.topology.replicas)
    settings_path = join_path(path, "topology", "settings")
    settings = known(lambda: cluster.topology.settings)
    if settings is not None:
        yield from _settings_issues(settings, settings_path)
        yield from guarded(lambda: _patroni_issues(settings, cluster, path, replicas))
    seen: set[int] = set()
    for position, override in enumerate(known(lambda: cluster.replica_overrides) or []):
        override_path = join_path(path, "replica_overrides", position)
        yield from guarded(partial(_override_issues, override, override_path, replicas, seen))
    addons_path = join_path(path, "addons")
    etcd = known(lambda: cluster.addons.etcd)
    if etcd is not None:
        yield from _etcd_issues(etcd, join_path(addons_path, "etcd"), replicas)
    pgbouncer = known(lambda: cluster.addons.pgbouncer)
    if pgbouncer is not None:
        yield from _pgbouncer_issues(pgbouncer, join_path(addons_path, "pgbouncer"), replicas)
    backup = known(lambda: cluster.addons.backup)
    if backup is not None:
        yield from _backup_addon_issues(backup, join_path(addons_path, "backup"), replicas)


def _patroni_issues(
    settings: PostgresSettings, cluster: ClusterTemplate, path: str, replicas: int | None
) -> Iterator[Issue]:
    patroni = settings.patroni
    if not settings.patroni_enabled or patroni is None:
        return
    if known(lambda: cluster.addons.etcd is None):
        yield Issue(join_path(path, "addons", "etcd"), "Patroni is enabled and needs etcd as its DCS; add it")
    if replicas is not None and patroni.synchronous_mode and patroni.synchronous_node_count > replicas:
        yield Issue(
            join_path(path, "topology", "settings", "patroni", "synchronous_node_count"),
            f"synchronous mode needs that many replicas, the topology has {replicas}",
            patroni.synchronous_node_count,
        )


def _override_issues(override: ReplicaOverride, path: str, replicas: int | None, seen: set[int]) -> Iterator[Issue]:
    """`seen`: the replicas named by the overrides before this one; this one's is added."""
    index = override.index
    if replicas is not None and index >= replicas:
        yield Issue(join_path(path, "index"), f"out of range: the cluster has replicas 0..{replicas - 1}", index)
    if index in seen:
        yield Issue(join_path(path, "index"), "another override names this replica already", index)
    seen.add(index)


def _scope_issues(scope: Scope, replica_index: int | None, path: str, replicas: int | None) -> Iterator[Issue]:
    if scope is Scope.REPLICA:
        if replica_index is None:
            yield Issue(join_path(path, "replica_index"), "scope 'replica' needs replica_index")
        elif replicas is not None and replica_index >= replicas:
            yield Issue(
                join_path(path, "replica_index"),
                f"out of range: the cluster has replicas 0..{replicas - 1}",
                replica_index,
            )
    elif replica_index is not None:
        yield Issue(join_path(path, "replica_index"), f"applies only to scope 'replica', not '{scope}'", replica_index)


def _placement_issues(placement: Placement, path: str, replicas: int | None) -> Iterator[Issue]:
    yield from guarded(lambda: _exactly_one(placement, path, ("colocate", "dedicated")))
    colocate = known(lambda: placement.colocate)
    if colocate is not None:
        scope_path = join_path(path, "colocate")
        yield from guarded(lambda: _scope_issues(colocate.scope, colocate.replica_index, scope_path, replicas))


def _etcd_issues(etcd: Etcd, path: str, replicas: int | None) -> Iterator[Issue]:
    placement = known(lambda: etcd.placement)
    if placement is None:
        return
    placement_issues = list(_placement_issues(placement, join_path(path, "placement"), replicas))
    yield from placement_issues
    if not placement_issues:
        yield from guarded(lambda: _etcd_size_issues(etcd, placement, path, replicas))


def _etcd_size_issues(etcd: Etcd, placement: Placement, path: str, replicas: int | None) -> Iterator[Issue]:
    if placement.dedicated is not None and placement.dedicated.count != etcd.size:
        yield Issue(
            join_path(path, "size"), f"must equal placement.dedicated.count ({placement.dedicated.count})", etcd.size
        )
    colocate = placement.colocate
    if colocate is not None and replicas is not None:
        covered = len(colocated_machines(colocate.scope, colocate.replica_index, replicas))
        if covered != etcd.size:
            yield Issue(
                join_path(path, "size"),
                f"placement colocate scope '{colocate.scope}' puts etcd on {covered} machine(s); size must match",
                etcd.size,
            )


def _pgbouncer_issues(pgbouncer: PgBouncer, path: str, replicas: int | None) -> Iterator[Issue]:
    placement = known(lambda: pgbouncer.placement)
    if placement is not None:
        yield from _placement_issues(placement, join_path(path, "placement"), replicas)
    yield from guarded(lambda: _pool_issues(pgbouncer, path))


def _pool_issues(pgbouncer: PgBouncer, path: str) -> Iterator[Issue]:
    if pgbouncer.pool_size > pgbouncer.max_client_conn:
        yield Issue(
            join_path(path, "pool_size"),
            f"a pool larger than max_client_conn ({pgbouncer.max_client_conn}) can never fill",
            pgbouncer.pool_size,
        )


def _backup_addon_issues(backup: BackupAddon, path: str, replicas: int | None) -> Iterator[Issue]:
    yield from guarded(lambda: _scope_issues(backup.scope, backup.replica_index, path, replicas))
    yield from guarded(lambda: _storage_issues(backup.storage, join_path(path, "storage")))
