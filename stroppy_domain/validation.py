"""Turn suite text into a `Suite`, or into one error that lists every problem with its path and value.

Three passes, each reporting everything it finds: the structure (types, ranges, unknown keys), the rules that
span several fields (Patroni needs etcd, etcd size matches its placement, ...), and a trial plan of every
test, so a suite that validates is one the planner can lay out.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from stroppy_domain.errors import InvalidSuiteError, Issue, PlanningError, join_path, sorted_issues
from stroppy_domain.load import LoadError, stroppy_major
from stroppy_domain.model import (
    PATTERN_HINTS,
    BackupAddon,
    BackupStorage,
    BenchmarkTest,
    ClusterTemplate,
    DatabaseRef,
    Driver,
    Etcd,
    Placement,
    PostgresSettings,
    Scope,
    StorageEngine,
    Suite,
    Workload,
)
from stroppy_domain.placement import colocated_machines, lay_out, plan_run
from stroppy_domain.services import RESERVED_POSTGRESQL_CONF
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.subnets import SubnetError, first_free_subnet, host_capacity

ORIOLEDB_VERSIONS = (16, 17)
RESERVED_ENV = frozenset({"DRIVER_URL"})


def parse_document(text: str, source: str = "") -> Any:
    """YAML or JSON text -> plain data; a syntax error becomes an InvalidSuiteError with line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise InvalidSuiteError([Issue("", f"not valid YAML or JSON: {where}{problem}")], source) from None


def load_suite(text: str, source: str = "", settings: PlannerSettings | None = None) -> Suite:
    """Parse and validate a suite; raises InvalidSuiteError listing every problem found."""
    return validate_suite(parse_document(text, source), source, settings)


def validate_suite(data: Any, source: str = "", settings: PlannerSettings | None = None) -> Suite:
    """Parsed suite data -> a `Suite`; raises InvalidSuiteError listing every problem found."""
    settings = settings or PlannerSettings()
    if not isinstance(data, dict):
        raise InvalidSuiteError([Issue("", "a suite must be a mapping with 'name' and 'tests'", data)], source)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as error:
        issues = structural_issues(error, Suite)
        issues += _issues_of_parseable_tests(data)
        raise InvalidSuiteError(sorted_issues(issues), source) from None
    issues = list(suite_issues(suite, settings))
    if issues:
        raise InvalidSuiteError(sorted_issues(issues), source)
    return suite


def _issues_of_parseable_tests(data: dict[str, Any]) -> list[Issue]:
    """Cross-field rules of the tests that parsed, so one broken test does not hide another's problems."""
    tests = data.get("tests")
    if not isinstance(tests, list):
        return []
    issues: list[Issue] = []
    for index, raw in enumerate(tests):
        try:
            test = BenchmarkTest.model_validate(raw)
        except ValidationError:
            continue
        issues += test_issues(test, join_path("tests", index))
    return issues


def structural_issues(error: ValidationError, root: type[BaseModel]) -> list[Issue]:
    issues = []
    for detail in error.errors():
        loc = tuple(detail["loc"])
        path = join_path(*loc)
        if detail["type"] == "missing":
            issues.append(Issue(path, "required field is missing"))
        elif detail["type"] == "extra_forbidden":
            issues.append(Issue(path, _unknown_field_message(root, loc), detail["input"]))
        else:
            pattern = (detail.get("ctx") or {}).get("pattern")
            hint = PATTERN_HINTS.get(pattern) if pattern is not None else None
            message = hint or detail["msg"].removeprefix("Value error, ")
            issues.append(Issue(path, message, detail["input"]))
    return issues


def _unknown_field_message(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    known = _field_names_at(root, loc[:-1])
    suggestion = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if suggestion:
        return f"unknown field; did you mean '{suggestion[0]}'?"
    return "unknown field" + (f"; expected one of: {', '.join(sorted(known))}" if known else "")


def _field_names_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Names the model accepts at `loc`, found by following the field annotations from `root`."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [field.alias or name for name, field in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip `Annotated[...]` and `X | None`, which say nothing about which keys a model takes."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in {typing.Union, types.UnionType}:
            options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def suite_issues(suite: Suite, settings: PlannerSettings) -> Iterator[Issue]:
    first_index: dict[str, int] = {}
    for index, test in enumerate(suite.tests):
        path = join_path("tests", index)
        if test.name in first_index:
            yield Issue(
                join_path(path, "name"),
                f"test names must be unique; tests[{first_index[test.name]}] has it too",
                test.name,
            )
        first_index.setdefault(test.name, index)
        rule_issues = list(test_issues(test, path))
        yield from rule_issues
        if not rule_issues:
            yield from _trial_plan_issues(test, suite, settings, path)


def _trial_plan_issues(test: BenchmarkTest, suite: Suite, settings: PlannerSettings, path: str) -> Iterator[Issue]:
    """Plan the test on the first subnet of its target, exactly as a run would, offline."""
    target = suite.target_of(test)
    space = settings.address_space(target)
    try:
        machines = len(lay_out(test, path).machines)
        if machines > host_capacity(space.prefix):
            yield Issue(
                join_path(path, "database"),
                f"needs {machines} machines but a /{space.prefix} subnet of target {target} holds "
                f"{host_capacity(space.prefix)}; use a smaller topology or a larger subnet prefix",
            )
            return
        subnet = first_free_subnet(space.base_cidr, space.prefix, [])
        plan_run(test, target, subnet, settings, passwords=lambda purpose: purpose, path=path)
    except PlanningError as error:
        yield error.issue
    except SubnetError as error:
        yield Issue(join_path(path, "target"), str(error))


def test_issues(test: BenchmarkTest, path: str) -> Iterator[Issue]:
    """Every cross-field rule of one test."""
    load = test.stroppy
    for key in sorted(RESERVED_ENV & load.env.keys()):
        yield Issue(join_path(path, "stroppy", "env", key), "is set by the run itself and cannot be overridden")
    if load.driver is Driver.STROPPY and load.version is None:
        yield Issue(join_path(path, "stroppy", "version"), "the stroppy driver needs the release to install")
    if load.driver is Driver.STROPPY and load.version is not None:
        try:
            stroppy_major(load.version)
        except LoadError as error:
            yield Issue(join_path(path, "stroppy", "version"), str(error).split(": ", 1)[1], load.version)
    if load.driver is Driver.PGBENCH and load.workload is not Workload.TPCB:
        yield Issue(join_path(path, "stroppy", "workload"), "pgbench runs TPC-B only", str(load.workload))
    yield from _database_issues(test.database, join_path(path, "database"))


def _exactly_one(model: BaseModel, path: str, options: tuple[str, ...]) -> Iterator[Issue]:
    chosen = [name for name in options if getattr(model, name) is not None]
    if len(chosen) != 1:
        found = f"; found {', '.join(chosen)}" if chosen else ""
        yield Issue(path, f"needs exactly one of {', '.join(options)}{found}")


def _database_issues(database: DatabaseRef, path: str) -> Iterator[Issue]:
    yield from _exactly_one(database, path, ("instance", "cluster", "existing"))
    if database.instance is not None:
        instance_path = join_path(path, "instance")
        yield from _settings_issues(database.instance.settings, join_path(instance_path, "settings"))
        if database.instance.settings.patroni_enabled:
            yield Issue(
                join_path(instance_path, "settings", "patroni", "enabled"),
                "Patroni manages a replicated cluster; use a cluster template for it",
                True,
            )
        if database.instance.sidecars.backup is not None:
            backup_path = join_path(instance_path, "sidecars", "backup", "storage")
            yield from _storage_issues(database.instance.sidecars.backup.storage, backup_path)
    if database.cluster is not None:
        yield from _cluster_issues(database.cluster, join_path(path, "cluster"))


def _settings_issues(settings: PostgresSettings, path: str) -> Iterator[Issue]:
    if settings.storage_engine is StorageEngine.ORIOLEDB and settings.version not in ORIOLEDB_VERSIONS:
        yield Issue(join_path(path, "version"), "OrioleDB runs only on PostgreSQL 16 and 17", settings.version)
    yield from _reserved_conf_issues(settings.postgresql_conf, join_path(path, "postgresql_conf"))
    patroni = settings.patroni
    if patroni is not None and patroni.loop_wait + 2 * patroni.retry_timeout > patroni.ttl:
        yield Issue(
            join_path(path, "patroni", "ttl"),
            f"Patroni needs ttl >= loop_wait + 2 * retry_timeout = {patroni.loop_wait + 2 * patroni.retry_timeout}",
            patroni.ttl,
        )


def _reserved_conf_issues(conf: dict[str, str], path: str) -> Iterator[Issue]:
    for key in sorted(RESERVED_POSTGRESQL_CONF & conf.keys()):
        yield Issue(join_path(path, key), "is managed by stroppy-flows and cannot be set", conf[key])


def _storage_issues(storage: BackupStorage, path: str) -> Iterator[Issue]:
    yield from _exactly_one(storage, path, ("local", "s3"))


def _cluster_issues(cluster: ClusterTemplate, path: str) -> Iterator[Issue]:
    topology = cluster.topology
    replicas = topology.replicas
    settings_path = join_path(path, "topology", "settings")
    yield from _settings_issues(topology.settings, settings_path)
    patroni = topology.settings.patroni
    if topology.settings.patroni_enabled and patroni is not None:
        if cluster.addons.etcd is None:
            yield Issue(join_path(path, "addons", "etcd"), "Patroni is enabled and needs etcd as its DCS; add it")
        if patroni.synchronous_mode and patroni.synchronous_node_count > replicas:
            yield Issue(
                join_path(settings_path, "patroni", "synchronous_node_count"),
                f"synchronous mode needs that many replicas, the topology has {replicas}",
                patroni.synchronous_node_count,
            )
    seen: set[int] = set()
    for position, override in enumerate(cluster.replica_overrides):
        override_path = join_path(path, "replica_overrides", position)
        if override.index >= replicas:
            yield Issue(
                join_path(override_path, "index"),
                f"out of range: the cluster has replicas 0..{replicas - 1}",
                override.index,
            )
        if override.index in seen:
            yield Issue(
                join_path(override_path, "index"), "another override names this replica already", override.index
            )
        seen.add(override.index)
        yield from _reserved_conf_issues(override.postgresql_conf, join_path(override_path, "postgresql_conf"))
    addons_path = join_path(path, "addons")
    if cluster.addons.etcd is not None:
        yield from _etcd_issues(cluster.addons.etcd, join_path(addons_path, "etcd"), replicas)
    pgbouncer = cluster.addons.pgbouncer
    if pgbouncer is not None:
        pgbouncer_path = join_path(addons_path, "pgbouncer")
        yield from _placement_issues(pgbouncer.placement, join_path(pgbouncer_path, "placement"), replicas)
        if pgbouncer.pool_size > pgbouncer.max_client_conn:
            yield Issue(
                join_path(pgbouncer_path, "pool_size"),
                f"a pool larger than max_client_conn ({pgbouncer.max_client_conn}) can never fill",
                pgbouncer.pool_size,
            )
    if cluster.addons.backup is not None:
        yield from _backup_addon_issues(cluster.addons.backup, join_path(addons_path, "backup"), replicas)


def _scope_issues(scope: Scope, replica_index: int | None, path: str, replicas: int) -> Iterator[Issue]:
    if scope is Scope.REPLICA:
        if replica_index is None:
            yield Issue(join_path(path, "replica_index"), "scope 'replica' needs replica_index")
        elif replica_index >= replicas:
            yield Issue(
                join_path(path, "replica_index"),
                f"out of range: the cluster has replicas 0..{replicas - 1}",
                replica_index,
            )
    elif replica_index is not None:
        yield Issue(join_path(path, "replica_index"), f"applies only to scope 'replica', not '{scope}'", replica_index)


def _placement_issues(placement: Placement, path: str, replicas: int) -> Iterator[Issue]:
    yield from _exactly_one(placement, path, ("colocate", "dedicated"))
    if placement.colocate is not None:
        colocate = placement.colocate
        yield from _scope_issues(colocate.scope, colocate.replica_index, join_path(path, "colocate"), replicas)


def _etcd_issues(etcd: Etcd, path: str, replicas: int) -> Iterator[Issue]:
    placement_issues = list(_placement_issues(etcd.placement, join_path(path, "placement"), replicas))
    yield from placement_issues
    if placement_issues:
        return
    if etcd.placement.dedicated is not None and etcd.placement.dedicated.count != etcd.size:
        yield Issue(
            join_path(path, "size"),
            f"must equal placement.dedicated.count ({etcd.placement.dedicated.count})",
            etcd.size,
        )
    colocate = etcd.placement.colocate
    if colocate is not None:
        covered = len(colocated_machines(colocate.scope, colocate.replica_index, replicas))
        if covered != etcd.size:
            yield Issue(
                join_path(path, "size"),
                f"placement colocate scope '{colocate.scope}' puts etcd on {covered} machine(s); size must match",
                etcd.size,
            )


def _backup_addon_issues(backup: BackupAddon, path: str, replicas: int) -> Iterator[Issue]:
    yield from _scope_issues(backup.scope, backup.replica_index, path, replicas)
    yield from _storage_issues(backup.storage, join_path(path, "storage"))
