"""The command line as users meet it: the installed `stroppy-flows` script, run in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prefect_docker.credentials import DockerRegistryCredentials
from prefect_docker.host import DockerHost

from flows.setup import SetupConfig, wanted_blocks
from infra.settings import OrchestrationSettings
from infra.targets.docker import DockerSettings
from tests.conftest import EXAMPLES, fresh_suite

EXECUTABLE = shutil.which("stroppy-flows")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    assert EXECUTABLE, "the console script is installed with the project"
    return subprocess.run([EXECUTABLE, *args], capture_output=True, text=True, timeout=60, check=False)


def with_test(**changes: object) -> str:
    data = fresh_suite()
    data["tests"][0].update(changes)
    return yaml.safe_dump(data)


def with_cluster(path: list[str], value: object) -> str:
    data = fresh_suite()
    node = data["tests"][1]["database"]["cluster"]
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return yaml.safe_dump(data)


MALFORMED: list[tuple[str, str, str]] = [
    # (kind, suite text, text the error must contain: the path and, where there is one, the value)
    ("empty file", "", "a suite must be a mapping"),
    ("a list, not a mapping", "- 1\n- 2\n", "a suite must be a mapping"),
    ("yaml syntax", "name: x\ntests: [\n", "not valid YAML or JSON: line 3"),
    ("json syntax", '{"name": "x", "tests": [}', "not valid YAML or JSON"),
    ("missing tests", "name: x\n", "tests: required field is missing"),
    ("unknown top-level key", yaml.safe_dump({**fresh_suite(), "tset": []}), "tset: unknown field"),
    (
        "typo in a nested key",
        with_test(stroppy={"version": "v5.0.0", "wrokload": "tpcc"}),
        "tests[0].stroppy.wrokload: unknown field; did you mean 'workload'?",
    ),
    ("bad test name", with_test(name="My Test"), "tests[0].name: must be 1-40 lowercase letters"),
    ("wrong type", with_test(stroppy={"version": "v5.0.0", "scale": "big"}), "tests[0].stroppy.scale"),
    ("bad enum", with_test(stroppy={"version": "v5.0.0", "workload": "ycsb"}), "(got 'ycsb')"),
    ("bad duration", with_test(stroppy={"version": "v5.0.0", "duration": "forever"}), "(got 'forever')"),
    ("bad threshold", with_test(thresholds={"checks": ["rate=>0.9"]}), "tests[0].thresholds.checks[0].threshold"),
    (
        "password in connection string",
        with_test(database={"existing": {"connection_string": "postgres://u:hunter2@h/db"}}),
        "tests[0].database.existing.connection_string: a connection string must not carry a password",
    ),
    ("no database", with_test(database={}), "tests[0].database: needs exactly one of instance, cluster, existing"),
    ("etcd size", with_cluster(["addons", "etcd", "size"], 4), "tests[1].database.cluster.addons.etcd.size"),
    (
        "etcd coverage",
        with_cluster(["addons", "etcd", "size"], 1),
        "puts etcd on 3 machine(s); size must match (got 1)",
    ),
    ("patroni without etcd", with_cluster(["addons", "etcd"], None), "tests[1].database.cluster.addons.etcd"),
    (
        "replica index",
        with_cluster(["addons", "pgbouncer", "placement"], {"colocate": {"scope": "replica", "replica_index": 9}}),
        "replica_index: out of range: the cluster has replicas 0..1 (got 9)",
    ),
    (
        "port clash",
        with_cluster(["addons", "pgbouncer", "port"], 8008),
        "tests[1].database.cluster.addons.pgbouncer.port: port 8008 of pgbouncer.pgbouncer clashes with "
        "postgres.patroni",
    ),
    (
        "orioledb on 18",
        with_cluster(["topology", "settings"], {"version": 18, "storage_engine": "orioledb"}),
        "OrioleDB runs only on PostgreSQL 16 and 17 (got 18)",
    ),
    ("duplicate names", yaml.safe_dump({**fresh_suite(), "tests": fresh_suite()["tests"] * 2}), "must be unique"),
]


@pytest.mark.parametrize(("text", "expected"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_validate_reports_malformed_suites_without_traceback(tmp_path: Path, text: str, expected: str) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(text)
    result = run_cli("validate", str(suite))
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert str(suite) in result.stderr


def test_there_are_twenty_kinds_of_malformed_suites() -> None:
    assert len({kind for kind, _, _ in MALFORMED}) >= 20


def test_missing_file_is_reported(tmp_path: Path) -> None:
    result = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml: cannot read" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_accepts_every_example() -> None:
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        result = run_cli("validate", str(path))
        assert result.returncode == 0, result.stderr
        assert "is valid" in result.stdout


def test_plan_json_lists_machines_containers_and_connection() -> None:
    result = run_cli("plan", str(EXAMPLES / "topologies" / "combined.yaml"), "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    first, second = document["tests"]
    assert [m["name"] for m in first["machines"]][:3] == ["postgres-master", "postgres-replica-0", "postgres-replica-1"]
    assert {c["kind"] for c in first["machines"][0]["containers"]} == {"postgres", "backup"}
    assert first["connection"]["host"] == "172.28.0.10"
    assert first["connection"]["port"] == 6432
    assert second["subnet"] == "172.28.1.0/24", "each test gets its own subnet, as concurrent runs would"
    assert {m["role"] for m in second["machines"]} == {"master", "replica", "runner"}
    assert all(m["ip"].startswith("172.28.1.") for m in second["machines"])
    assert "**********" in result.stdout


def test_plan_table_shows_each_machine() -> None:
    result = run_cli("plan", str(EXAMPLES / "topologies" / "instances.yaml"))
    assert result.returncode == 0, result.stderr
    assert "test instance-basic" in result.stdout
    assert "connect=172.28.0.4:5432/stroppy as stroppy" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("postgres-master")]
    assert rows[0][:4] == ["postgres-master", "master", "172.28.0.4", "4c/8G/100G"]


def test_settings_file_changes_the_address_space(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("address_spaces:\n  docker: {base_cidr: 10.123.0.0/16, prefix: 26}\n")
    result = run_cli("plan", str(EXAMPLES / "topologies" / "instances.yaml"), "--settings", str(settings))
    assert result.returncode == 0, result.stderr
    assert "subnet=10.123.0.0/26" in result.stdout
    assert "subnet=10.123.0.64/26" in result.stdout


def test_the_masters_address_spaces_are_what_plan_uses_too() -> None:
    spaces = json.dumps({"docker": {"base_cidr": "10.124.0.0/16", "prefix": 25}})
    result = run_cli_with({"STROPPY_ADDRESS_SPACES": spaces}, "plan", str(EXAMPLES / "topologies" / "instances.yaml"))
    assert result.returncode == 0, result.stderr
    assert "subnet=10.124.0.0/25" in result.stdout and "subnet=10.124.0.128/25" in result.stdout
    bad = run_cli_with({"STROPPY_ADDRESS_SPACES": '{"docker": {"base_cidr": "10.124.0.1/16"}}'}, "validate",
                       str(EXAMPLES / "pgbench.yaml"))  # fmt: skip
    assert bad.returncode == 2 and "address_spaces" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_bad_settings_file_names_the_field(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("images:\n  etcd: quay.io/coreos/etcd:latest\n")
    result = run_cli("validate", str(EXAMPLES / "topologies" / "instances.yaml"), "--settings", str(settings))
    assert result.returncode == 2
    assert "images.etcd: images must be pinned" in result.stderr
    assert "Traceback" not in result.stderr


def run_cli_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert EXECUTABLE
    return subprocess.run(
        [EXECUTABLE, *args], capture_output=True, text=True, timeout=120, check=False, env=os.environ | env
    )


NOTHING_LISTENS = {
    "PREFECT_API_URL": "http://127.0.0.1:9/api",
    "STROPPY_METRICS_URL": "http://127.0.0.1:9",
    "STROPPY_REDIS_URL": "redis://127.0.0.1:9/0",
    "STROPPY_REDIS_BLOCK": "",
    "DOCKER_HOST": "tcp://127.0.0.1:9",
}


def test_status_names_every_part_that_is_down_and_exits_1() -> None:
    finished = run_cli_with(NOTHING_LISTENS, "status")
    assert finished.returncode == 1, finished.stderr
    lines = finished.stdout.splitlines()
    names = [line.split("  ")[0].strip() for line in lines]
    assert names == ["prefect server", "master worker", "redis", "victoria-metrics", "docker engine", "images"]
    assert all(" DOWN " in line for line in lines), finished.stdout


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"grafana": {"url": "https://g.example.com"}}, "grafana.token"),
        ({"s3": {"folder": "x"}}, "s3.bucket"),
        ({"grafna": {}}, "grafna"),
        ({"redis": "redis://x"}, "redis"),
    ],
)
def test_setup_refuses_a_bad_config_naming_the_field(tmp_path: Path, config: dict, message: str) -> None:
    path = tmp_path / "setup.yaml"
    path.write_text(yaml.safe_dump(config))
    finished = run_cli_with(NOTHING_LISTENS, "setup", "--config", str(path))
    assert finished.returncode == 2, finished.stdout + finished.stderr
    assert message in finished.stderr and "Traceback" not in finished.stderr


def test_setup_without_a_prefect_api_says_so_and_exits_1() -> None:
    finished = run_cli_with(NOTHING_LISTENS, "setup")
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "the Prefect API did not answer" in finished.stderr and "Traceback" not in finished.stderr


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"docker": {"base-url": "tcp://d:2376"}}, "docker.base-url: unknown field; did you mean 'base_url'?"),
        ({"docker": {"tls": {"cert_dir": "/certs"}}}, "docker: tls is for an engine reached over TCP"),
        ({"docker": {"base_url": "tcp://d:2376", "tls": {}}}, "docker.tls.cert_dir: required field is missing"),
        ({"registry": {"registry_url": "r.example:5000", "username": "u"}}, "registry.password: required field"),
    ],
)
def test_setup_refuses_a_bad_docker_or_registry_section_naming_the_field(
    tmp_path: Path, config: dict, message: str
) -> None:
    path = tmp_path / "setup.yaml"
    path.write_text(yaml.safe_dump(config))
    finished = run_cli_with(NOTHING_LISTENS, "setup", "--config", str(path))
    assert finished.returncode == 2, finished.stdout + finished.stderr
    assert message in finished.stderr and "Traceback" not in finished.stderr


SETUP_NAMES = OrchestrationSettings(registry_block="registry-under-test")
DOCKER_NAMES = DockerSettings(docker_host_block="docker-under-test")


def test_setup_saves_the_engine_and_the_registry_under_the_names_runs_load_them_by() -> None:
    config = SetupConfig(
        docker={},
        registry={"registry_url": "registry.example:5000", "username": "stroppy", "password": "hunter2"},
    )
    blocks = {name: block for block, name in wanted_blocks(config, SETUP_NAMES, DOCKER_NAMES)}
    assert sorted(blocks) == ["docker-under-test", "registry-under-test"]
    host = blocks["docker-under-test"]
    assert isinstance(host, DockerHost)
    assert host.model_dump() == DockerHost().model_dump(), "an empty section is the environment's (local) engine"
    credentials = blocks["registry-under-test"]
    assert isinstance(credentials, DockerRegistryCredentials)
    assert (credentials.registry_url, credentials.username) == ("registry.example:5000", "stroppy")
    assert credentials.reauth is True
    assert credentials.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(config) + repr(credentials)


def test_setup_defaults_to_the_names_of_the_settings() -> None:
    assert DockerSettings.model_fields["docker_host_block"].default == "stroppy-docker"
    assert OrchestrationSettings.model_fields["registry_block"].default == "stroppy-registry"


def test_setup_takes_the_registry_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STROPPY_SETUP_REGISTRY__PASSWORD", "from-the-environment")
    config = SetupConfig(registry={"registry_url": "registry.example:5000", "username": "stroppy"})
    ((credentials, _),) = wanted_blocks(config, SETUP_NAMES, DOCKER_NAMES)
    assert isinstance(credentials, DockerRegistryCredentials)
    assert credentials.password.get_secret_value() == "from-the-environment"


def test_setup_saves_a_remote_engine_with_mutual_tls_that_its_client_uses(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("")
    section = {"base_url": "tcp://docker.example:2376", "tls": {"cert_dir": str(tmp_path)}, "version": "1.45",
               "timeout": 30}  # fmt: skip
    ((host, name),) = wanted_blocks(SetupConfig(docker=section), SETUP_NAMES, DOCKER_NAMES)
    assert isinstance(host, DockerHost) and name == "docker-under-test"
    assert json.loads(host.model_dump_json())["client_kwargs"] == {
        "environment": {"DOCKER_HOST": "tcp://docker.example:2376", "DOCKER_CERT_PATH": str(tmp_path),
                        "DOCKER_TLS_VERIFY": "1"},
    }  # fmt: skip
    with host.get_client() as client:  # a pinned API version: nothing is asked of the engine
        assert client.api.base_url == "https://docker.example:2376"
        assert client.api.cert == (str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
        assert client.api.verify == str(tmp_path / "ca.pem")
        assert client.api.timeout == 30


def test_setup_saves_a_plain_remote_engine_as_its_url() -> None:
    section = {"base_url": "tcp://docker.example:2375", "version": "1.45"}
    ((host, _),) = wanted_blocks(SetupConfig(docker=section), SETUP_NAMES, DOCKER_NAMES)
    assert isinstance(host, DockerHost)
    assert (host.base_url, host.client_kwargs) == ("tcp://docker.example:2375", {})
    with host.get_client() as client:
        assert client.api.base_url == "http://docker.example:2375"


def test_run_without_a_prefect_api_says_so_and_exits_1() -> None:
    finished = run_cli_with(NOTHING_LISTENS, "run", str(EXAMPLES / "pgbench.yaml"))
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "did not answer" in finished.stderr and "Traceback" not in finished.stderr


def test_run_refuses_an_invalid_suite_before_submitting_it(tmp_path: Path) -> None:
    suite = tmp_path / "bad.yaml"
    suite.write_text(with_test(stroppy={"driver": "pgbench", "clients": 0}))
    finished = run_cli_with(NOTHING_LISTENS, "run", str(suite))
    assert finished.returncode == 2 and "tests[0].stroppy" in finished.stderr, finished.stderr
