"""Every validation rule, each with an input that breaks it: the path and the message must be reported."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from stroppy_domain.errors import InvalidSuiteError
from stroppy_domain.model import Suite
from stroppy_domain.settings import AddressSpace, ImageCatalogue, PlannerSettings
from stroppy_domain.validation import load_suite, validate_suite
from tests.conftest import fresh_suite

Mutation = Callable[[dict[str, Any]], None]
SAME_SUBMETRIC = "tx_total_duration{ kind : 'a' }"
CLUSTER = ("tests", 1, "database", "cluster")


def at(data: dict[str, Any], *path: str | int) -> Any:
    for part in path:
        data = data[part]
    return data


def set_at(*path: str | int, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        at(data, *path[:-1])[path[-1]] = value

    return mutate


def delete_at(*path: str | int) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        del at(data, *path[:-1])[path[-1]]

    return mutate


def chain(*mutations: Mutation) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(data)

    return mutate


def issues_of(data: dict[str, Any], settings: PlannerSettings | None = None) -> list[tuple[str, str]]:
    with pytest.raises(InvalidSuiteError) as caught:
        validate_suite(data, "suite.yaml", settings)
    return [(issue.path, issue.message) for issue in caught.value.issues]


def test_the_base_suite_is_valid() -> None:
    suite = validate_suite(fresh_suite())
    assert isinstance(suite, Suite)
    assert [test.name for test in suite.tests] == ["instance", "cluster"]


RULES: list[tuple[str, Mutation, str, str]] = [
    # (rule, mutation, expected path, expected message fragment)
    (
        "unknown key",
        set_at("tests", 0, "stroppy", "durration", value="5m"),
        "tests[0].stroppy.durration",
        "did you mean 'duration'",
    ),
    ("missing required", delete_at("tests", 0, "stroppy"), "tests[0].stroppy", "missing"),
    ("stroppy needs a version", delete_at("tests", 0, "stroppy", "version"), "tests[0].stroppy.version", "release"),
    (
        "stroppy major",
        set_at("tests", 0, "stroppy", "version", value="v3.1.0"),
        "tests[0].stroppy.version",
        "only major 5 is supported",
    ),
    (
        "stroppy v2 is refused",
        set_at("tests", 0, "stroppy", "version", value="v2.3.0"),
        "tests[0].stroppy.version",
        "v2 ran k6 scripts from `gen` with DRIVER_URL",
    ),
    (
        "v5 names its workloads tpcc/tx",
        set_at("tests", 0, "stroppy", "workload", value="tpcc"),
        "tests[0].stroppy.workload",
        "stroppy v5 has no workload 'tpcc'; it offers tpcb/tx, tpcb/procs, tpcc/tx, tpcc/procs",
    ),
    (
        "a knob the workload does not read",
        set_at("tests", 1, "stroppy", "env", value={"WAREHOUSE_START": "2"}),
        "tests[1].stroppy.env.WAREHOUSE_START",
        "is not a knob of tpcb/tx; it reads RETRY_ATTEMPTS, POOL_SIZE",
    ),
    (
        "concurrency comes from clients",
        set_at("tests", 0, "stroppy", "env", value={"VUS": "8"}),
        "tests[0].stroppy.env.VUS",
        "set by the run from the test's clients",
    ),
    (
        "a threshold on a metric the workload lacks",
        set_at("tests", 0, "thresholds", value={"tpcb_retry_attempts": ["count<1"]}),
        "tests[0].thresholds.tpcb_retry_attempts",
        "tpcc/tx has no metric 'tpcb_retry_attempts'; k6 would refuse the threshold",
    ),
    (
        "pgbench runs tpcb only",
        set_at("tests", 0, "stroppy", "driver", value="pgbench"),
        "tests[0].stroppy.workload",
        "TPC-B only",
    ),
    ("test name pattern", set_at("tests", 0, "name", value="Bad Name"), "tests[0].name", "lowercase"),
    ("unique test names", set_at("tests", 1, "name", value="instance"), "tests[1].name", "unique"),
    ("no tests", set_at("tests", value=[]), "tests", "at least 1"),
    ("workload name", set_at("tests", 0, "stroppy", "workload", value="Ycsb!"), "tests[0].stroppy.workload", "match"),
    (
        "duration syntax",
        set_at("tests", 0, "stroppy", "duration", value="ten"),
        "tests[0].stroppy.duration",
        "duration",
    ),
    ("duration bound", set_at("tests", 0, "stroppy", "duration", value="25h"), "tests[0].stroppy.duration", "86400"),
    (
        "reserved env",
        set_at("tests", 0, "stroppy", "env", value={"DRIVER_URL": "x"}),
        "tests[0].stroppy.env.DRIVER_URL",
        "set by the run",
    ),
    (
        "threshold grammar",
        set_at("tests", 0, "thresholds", value={"checks": ["rate>>1"]}),
        "tests[0].thresholds.checks[0].threshold",
        "k6 threshold",
    ),
    (
        "threshold metric name",
        set_at("tests", 0, "thresholds", value={"bad name": ["rate>0.9"]}),
        "tests[0].thresholds.bad name.[key]",
        "metric name",
    ),
    *[
        (
            f"a tag filter k6 refuses: {name}",
            set_at("tests", 0, "thresholds", value={name: ["avg<1"]}),
            f"tests[0].thresholds.{name}.[key]",
            "tag filter",
        )
        for name in ("tx_total_duration{kind:}", "tx_total_duration{kind:a,}", "tx_total_duration{kind:a,b}")
    ],
    (
        "two names of one submetric, of which k6 judges one",
        set_at("tests", 0, "thresholds", value={"tx_total_duration{kind:a}": ["avg<1"], SAME_SUBMETRIC: ["avg>1"]}),
        "tests[0].thresholds.tx_total_duration{ kind : 'a' }",
        "names the same (sub)metric as 'tx_total_duration{kind:a}'",
    ),
    (
        "an aggregation one of k6's own metrics does not take",
        set_at("tests", 0, "thresholds", value={"checks": ["rate>0.9", "p(95)<1"]}),
        "tests[0].thresholds.checks[1].threshold",
        "'p(95)' does not apply to a rate metric, which takes rate; k6 refuses it",
    ),
    (
        "an aggregation a pgbench metric does not take",
        chain(
            set_at("tests", 1, "stroppy", "driver", value="pgbench"),
            set_at("tests", 1, "stroppy", "workload", value="tpcb"),
            set_at("tests", 1, "thresholds", value={"tps": ["count>1"]}),
        ),
        "tests[1].thresholds.tps[0].threshold",
        "'count' does not apply to a gauge metric",
    ),
    (
        "hardware zero",
        set_at("tests", 0, "database", "instance", "hardware", "cores", value=0),
        "tests[0].database.instance.hardware.cores",
        "greater than or equal to 1",
    ),
    (
        "database ref exactly one",
        set_at("tests", 0, "database", "existing", value={"connection_string": "postgres://u@h:5432/d"}),
        "tests[0].database",
        "exactly one of instance, cluster, existing",
    ),
    ("database ref empty", set_at("tests", 0, "database", value={}), "tests[0].database", "exactly one"),
    (
        "password in connection string",
        set_at("tests", 0, "database", value={"existing": {"connection_string": "postgres://u:pw@h:5432/d"}}),
        "tests[0].database.existing.connection_string",
        "must not carry a password",
    ),
    (
        "patroni on an instance",
        set_at("tests", 0, "database", "instance", "settings", value={"patroni": {}}),
        "tests[0].database.instance.settings.patroni.enabled",
        "cluster template",
    ),
    (
        "version enum",
        set_at("tests", 0, "database", "instance", "settings", value={"version": 15}),
        "tests[0].database.instance.settings.version",
        "16, 17 or 18",
    ),
    (
        "orioledb version",
        set_at("tests", 0, "database", "instance", "settings", value={"version": 18, "storage_engine": "orioledb"}),
        "tests[0].database.instance.settings.version",
        "OrioleDB",
    ),
    (
        "reserved postgresql_conf",
        set_at("tests", 0, "database", "instance", "settings", value={"postgresql_conf": {"port": 5433}}),
        "tests[0].database.instance.settings.postgresql_conf.port",
        "managed by stroppy-flows",
    ),
    (
        "backup storage exactly one",
        set_at("tests", 0, "database", "instance", "sidecars", value={"backup": {"storage": {}}}),
        "tests[0].database.instance.sidecars.backup.storage",
        "exactly one of local, s3",
    ),
    (
        "cron schedule",
        set_at(
            "tests",
            0,
            "database",
            "instance",
            "sidecars",
            value={"backup": {"schedule": "nightly", "storage": {"local": {"path": "/srv/b"}}}},
        ),
        "tests[0].database.instance.sidecars.backup.schedule",
        "pattern",
    ),
    (
        "patroni needs a DCS",
        delete_at(*CLUSTER, "addons", "etcd"),
        "tests[1].database.cluster.addons.etcd",
        "needs etcd",
    ),
    (
        "patroni timing",
        set_at(*CLUSTER, "topology", "settings", "patroni", value={"ttl": 20, "loop_wait": 10}),
        "tests[1].database.cluster.topology.settings.patroni.ttl",
        "loop_wait + 2 * retry_timeout",
    ),
    (
        "sync nodes vs replicas",
        set_at(
            *CLUSTER, "topology", "settings", "patroni", value={"synchronous_mode": True, "synchronous_node_count": 3}
        ),
        "tests[1].database.cluster.topology.settings.patroni.synchronous_node_count",
        "2",
    ),
    (
        "etcd size enum",
        set_at(*CLUSTER, "addons", "etcd", "size", value=2),
        "tests[1].database.cluster.addons.etcd.size",
        "1, 3 or 5",
    ),
    (
        "etcd size vs colocated coverage",
        set_at(*CLUSTER, "addons", "etcd", "size", value=5),
        "tests[1].database.cluster.addons.etcd.size",
        "puts etcd on 3 machine",
    ),
    (
        "etcd size vs dedicated count",
        set_at(
            *CLUSTER,
            "addons",
            "etcd",
            "placement",
            value={"dedicated": {"count": 1, "hardware": {"cores": 1, "memory_gb": 1, "disk_gb": 1}}},
        ),
        "tests[1].database.cluster.addons.etcd.size",
        "dedicated.count (1)",
    ),
    (
        "placement exactly one",
        set_at(*CLUSTER, "addons", "pgbouncer", "placement", value={}),
        "tests[1].database.cluster.addons.pgbouncer.placement",
        "exactly one of colocate, dedicated",
    ),
    (
        "replica scope needs index",
        set_at(*CLUSTER, "addons", "pgbouncer", "placement", "colocate", value={"scope": "replica"}),
        "tests[1].database.cluster.addons.pgbouncer.placement.colocate.replica_index",
        "needs replica_index",
    ),
    (
        "replica index in range",
        set_at(
            *CLUSTER, "addons", "pgbouncer", "placement", "colocate", value={"scope": "replica", "replica_index": 2}
        ),
        "tests[1].database.cluster.addons.pgbouncer.placement.colocate.replica_index",
        "out of range",
    ),
    (
        "index only for replica scope",
        set_at(*CLUSTER, "addons", "pgbouncer", "placement", "colocate", value={"scope": "master", "replica_index": 0}),
        "tests[1].database.cluster.addons.pgbouncer.placement.colocate.replica_index",
        "only to scope 'replica'",
    ),
    (
        "dedicated count bound",
        set_at(
            *CLUSTER,
            "addons",
            "pgbouncer",
            "placement",
            value={"dedicated": {"count": 6, "hardware": {"cores": 1, "memory_gb": 1, "disk_gb": 1}}},
        ),
        "tests[1].database.cluster.addons.pgbouncer.placement.dedicated.count",
        "less than or equal to 5",
    ),
    (
        "pool larger than clients",
        set_at(*CLUSTER, "addons", "pgbouncer", "pool_size", value=500),
        "tests[1].database.cluster.addons.pgbouncer.pool_size",
        "max_client_conn",
    ),
    (
        "port clash on one machine",
        set_at(*CLUSTER, "addons", "pgbouncer", "port", value=5432),
        "tests[1].database.cluster.addons.pgbouncer.port",
        "clashes with postgres.postgres",
    ),
    (
        "etcd port clash with patroni",
        set_at(*CLUSTER, "addons", "etcd", "client_port", value=8007),
        "tests[1].database.cluster.addons.etcd.client_port",
        "clashes with postgres.patroni",
    ),
    (
        "replica override index",
        set_at(*CLUSTER, "replica_overrides", value=[{"index": 2}]),
        "tests[1].database.cluster.replica_overrides[0].index",
        "out of range",
    ),
    (
        "replica override duplicated",
        set_at(*CLUSTER, "replica_overrides", value=[{"index": 1}, {"index": 1}]),
        "tests[1].database.cluster.replica_overrides[1].index",
        "already",
    ),
    (
        "replica override cannot change version",
        set_at(*CLUSTER, "replica_overrides", value=[{"index": 0, "settings": {"version": 16}}]),
        "tests[1].database.cluster.replica_overrides[0].settings",
        "unknown field",
    ),
    (
        "backup scope replica index",
        set_at(*CLUSTER, "addons", "backup", value={"scope": "replica", "storage": {"local": {"path": "/srv/b"}}}),
        "tests[1].database.cluster.addons.backup.replica_index",
        "needs replica_index",
    ),
    (
        "s3 storage cannot be planned yet",
        set_at(
            *CLUSTER,
            "addons",
            "backup",
            value={"storage": {"s3": {"bucket": "dumps", "credentials_block": "aws-backups"}}},
        ),
        "tests[1].database.cluster.addons.backup.storage",
        "only local backup storage",
    ),
    (
        "wal-g cannot be planned yet",
        set_at(*CLUSTER, "addons", "backup", value={"tool": "wal_g", "storage": {"local": {"path": "/srv/b"}}}),
        "tests[1].database.cluster.addons.backup.tool",
        "only pg_dump",
    ),
]


@pytest.mark.parametrize(("mutation", "path", "fragment"), [rule[1:] for rule in RULES], ids=[r[0] for r in RULES])
def test_each_rule_reports_its_path(mutation: Mutation, path: str, fragment: str) -> None:
    data = fresh_suite()
    mutation(data)
    issues = issues_of(data)
    assert any(found_path == path and fragment in message for found_path, message in issues), issues


def test_every_problem_is_reported_at_once() -> None:
    data = fresh_suite()
    chain(
        set_at("tests", 0, "stroppy", "workload", value="ycsb"),
        set_at(*CLUSTER, "addons", "etcd", "size", value=5),
        set_at(*CLUSTER, "replica_overrides", value=[{"index": 7}]),
    )(data)
    paths = {path for path, _ in issues_of(data)}
    assert {
        "tests[0].stroppy.workload",
        "tests[1].database.cluster.addons.etcd.size",
        "tests[1].database.cluster.replica_overrides[0].index",
    } <= paths


def test_offending_value_is_carried() -> None:
    data = fresh_suite()
    set_at(*CLUSTER, "addons", "etcd", "size", value=4)(data)
    with pytest.raises(InvalidSuiteError) as caught:
        validate_suite(data)
    (issue,) = [issue for issue in caught.value.issues if issue.path.endswith("etcd.size")]
    assert issue.value == 4
    assert "(got 4)" in str(caught.value)


def test_missing_image_for_a_version_is_a_validation_error() -> None:
    data = fresh_suite()
    set_at("tests", 0, "database", "instance", "settings", value={"version": 16})(data)
    assert (
        "tests[0].database.instance.settings.version",
        "the image catalogue has no PostgreSQL image for '16'; add one under images.postgres",
    ) in issues_of(data)
    images = ImageCatalogue(postgres={"16": "example/pg:16.9", "17": "example/pg:17.5"})
    validate_suite(data, settings=PlannerSettings(images=images))


def test_topology_larger_than_the_subnet_is_refused() -> None:
    data = fresh_suite()
    settings = PlannerSettings(address_spaces={"docker": AddressSpace(base_cidr="10.9.0.0/16", prefix=29)})
    issues = issues_of(data, settings)
    assert (
        "tests[1].database",
        "needs 4 machines but a /29 subnet of target docker holds 3; use a smaller topology or a larger subnet prefix",
    ) in issues


def test_unpinned_images_are_refused() -> None:
    for reference in ("postgres", "postgres:latest", "Bad Image:1"):
        with pytest.raises(ValueError, match=r"pinned|image reference"):
            ImageCatalogue(etcd=reference)
    assert ImageCatalogue(etcd="quay.io/coreos/etcd:v3.5.17").etcd.endswith("v3.5.17")


def test_yaml_syntax_errors_name_line_and_column() -> None:
    with pytest.raises(InvalidSuiteError) as caught:
        load_suite("name: x\ntests: [\n", "broken.yaml")
    assert "line 3" in str(caught.value)
    assert caught.value.source == "broken.yaml"


def test_json_is_accepted() -> None:
    suite = load_suite(json.dumps(fresh_suite()), "suite.json")
    assert suite.tests[1].database.cluster is not None


def test_scalar_postgresql_conf_values_become_text() -> None:
    data = yaml.safe_load("{max_connections: 200, fsync: false, random_page_cost: 1.1}")
    set_at("tests", 0, "database", "instance", "settings", value={"postgresql_conf": data})(raw := fresh_suite())
    suite = validate_suite(raw)
    conf = suite.tests[0].database.instance.settings.postgresql_conf
    assert conf == {"max_connections": "200", "fsync": "off", "random_page_cost": "1.1"}


BESIDE_TYPE_ERRORS: list[tuple[str, Mutation, str]] = [
    # (case: a type error and a rule between fields in the same test, mutation, the rule's path)
    (
        "override out of range beside a bad duration",
        chain(
            set_at("tests", 1, "stroppy", "duration", value="ten"),
            set_at(*CLUSTER, "replica_overrides", value=[{"index": 7}]),
        ),
        "tests[1].database.cluster.replica_overrides[0].index",
    ),
    (
        "etcd size beside a bad master",
        chain(
            set_at(*CLUSTER, "topology", "master_hardware", "cores", value="many"),
            set_at(*CLUSTER, "addons", "etcd", "size", value=5),
        ),
        "tests[1].database.cluster.addons.etcd.size",
    ),
    (
        "duplicate override beside a bad replica count",
        chain(
            set_at(*CLUSTER, "topology", "replicas", value="two"),
            set_at(*CLUSTER, "replica_overrides", value=[{"index": 0}, {"index": 0}]),
        ),
        "tests[1].database.cluster.replica_overrides[1].index",
    ),
    (
        "duplicate override beside a bad override",
        set_at(*CLUSTER, "replica_overrides", value=[{"index": 1, "hardware": {"cores": "x"}}, {"index": 1}]),
        "tests[1].database.cluster.replica_overrides[1].index",
    ),
    (
        "pool size beside a bad port",
        chain(
            set_at(*CLUSTER, "addons", "pgbouncer", "port", value="abc"),
            set_at(*CLUSTER, "addons", "pgbouncer", "pool_size", value=500),
        ),
        "tests[1].database.cluster.addons.pgbouncer.pool_size",
    ),
    (
        "patroni without etcd beside a bad client count",
        chain(set_at("tests", 1, "stroppy", "clients", value="many"), delete_at(*CLUSTER, "addons", "etcd")),
        "tests[1].database.cluster.addons.etcd",
    ),
    (
        "orioledb version beside a missing hardware",
        chain(
            delete_at("tests", 0, "database", "instance", "hardware"),
            set_at("tests", 0, "database", "instance", "settings", value={"version": 18, "storage_engine": "orioledb"}),
        ),
        "tests[0].database.instance.settings.version",
    ),
    (
        "pgbench workload beside a bad test name",
        chain(set_at("tests", 0, "name", value="Bad Name"), set_at("tests", 0, "stroppy", "driver", value="pgbench")),
        "tests[0].stroppy.workload",
    ),
    (
        "database ref beside a bad load",
        chain(set_at("tests", 0, "stroppy", value=7), set_at("tests", 0, "database", value={})),
        "tests[0].database",
    ),
]


@pytest.mark.parametrize(
    ("mutation", "path"), [case[1:] for case in BESIDE_TYPE_ERRORS], ids=[case[0] for case in BESIDE_TYPE_ERRORS]
)
def test_a_type_error_does_not_hide_the_rules_of_its_test(mutation: Mutation, path: str) -> None:
    data = fresh_suite()
    mutation(data)
    paths = [found for found, _ in issues_of(data)]
    assert path in paths, paths
    assert len(paths) >= 2, "the type error is reported too"


def test_rules_that_need_a_broken_field_are_skipped_not_guessed() -> None:
    data = fresh_suite()
    set_at(*CLUSTER, "topology", "replicas", value="two")(data)
    set_at(*CLUSTER, "replica_overrides", value=[{"index": 9}])(data)
    assert [path for path, _ in issues_of(data)] == ["tests[1].database.cluster.topology.replicas"]


def many_tests(count: int) -> dict[str, Any]:
    data = fresh_suite()
    instance = data["tests"][0]
    data["tests"] = [{**instance, "name": f"t{index}"} for index in range(count)]
    return data


def test_more_tests_than_subnets_is_refused_naming_the_first_that_does_not_fit() -> None:
    assert validate_suite(many_tests(256))
    issues = issues_of(many_tests(300))
    assert [path for path, _ in issues] == ["tests[256]"]
    assert "holds 256 subnets of /24" in issues[0][1]
    small = PlannerSettings(address_spaces={"docker": AddressSpace(base_cidr="10.9.0.0/22", prefix=24)})
    assert [path for path, _ in issues_of(many_tests(5), small)] == ["tests[4]"]


def test_capacity_is_checked_beside_structural_errors() -> None:
    data = many_tests(257)
    data["name"] = "Bad Name"
    assert [path for path, _ in issues_of(data)] == ["name", "tests[256]"]


def test_data_nested_too_deep_is_refused_before_validation() -> None:
    data = fresh_suite()
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(100):
        node["a"] = {}
        node = node["a"]
    data["tests"][0]["description"] = deep
    (issue,) = issues_of(data)
    assert issue[0].startswith("tests[0].description.a.a")
    assert issue[1] == "collections nested more than 64 levels deep"
