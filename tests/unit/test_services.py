"""What the planner renders for each service: the settings the programs read, and nothing left open."""

from __future__ import annotations

import re

import yaml

from stroppy_domain.load import LIBPQ_PARAMETER_ENV, libpq_env
from stroppy_domain.model_rules import CONNECTION_PARAMETERS
from stroppy_domain.placement import plan_run, with_runner_password
from stroppy_domain.plan import MachineRole, RunPlan, ServiceKind, StartStage
from stroppy_domain.services import generate_password
from stroppy_domain.settings import ImageCatalogue, PlannerSettings
from stroppy_domain.validation import validate_suite
from tests.conftest import fixed_passwords, fresh_suite

SUBNET = "10.77.3.0/24"
MASTER_IP = "10.77.3.4"


def plan_of(mutate=None, index: int = 1, settings: PlannerSettings | None = None) -> RunPlan:
    data = fresh_suite()
    if mutate:
        mutate(data)
    suite = validate_suite(data, settings=settings)
    return plan_run(suite.tests[index], "docker", SUBNET, settings or PlannerSettings(), fixed_passwords)


def files_of(plan: RunPlan, machine: str, kind: ServiceKind) -> dict[str, str]:
    container = plan.machine(machine).container(kind)
    contents = {file.path: file.content for file in container.files}
    contents |= {file.path: file.content.get_secret_value() for file in container.secret_files}
    return contents


def plain_cluster(data: dict) -> None:
    cluster = data["tests"][1]["database"]["cluster"]
    del cluster["topology"]["settings"]
    del cluster["addons"]["etcd"]


def test_pg_hba_admits_only_the_run_subnet_and_loopback_with_scram() -> None:
    for plan in (plan_of(plain_cluster), plan_of()):
        master = plan.machine("postgres-master").container(ServiceKind.POSTGRES)
        texts = [f.content for f in master.files if f.path.endswith("pg_hba.conf")]
        if not texts:
            texts = [
                "\n".join(
                    yaml.safe_load(
                        files_of(plan, "postgres-master", ServiceKind.POSTGRES)["/etc/stroppy/patroni/patroni.yml"]
                    )["postgresql"]["pg_hba"]
                )
            ]
        rules = [line.split() for line in texts[0].splitlines() if line.strip()]
        host_rules = [rule for rule in rules if rule[0] == "host"]
        assert {rule[3] for rule in host_rules} == {SUBNET, "127.0.0.1/32"}
        assert {rule[4] for rule in host_rules} == {"scram-sha-256"}
        assert not any(word in ("trust", "md5", "password") for rule in rules for word in rule)


def test_plain_replicas_clone_and_stream_from_the_master() -> None:
    plan = plan_of(plain_cluster)
    replica = files_of(plan, "postgres-replica-1", ServiceKind.POSTGRES)
    conf = replica["/etc/stroppy/postgres/postgresql.conf"]
    assert f"primary_conninfo = 'host={MASTER_IP} port=5432 user=replicator" in conf
    assert "hot_standby = 'on'" in conf
    start = replica["/etc/stroppy/postgres/start.sh"]
    assert f'pg_basebackup" --pgdata="$PGDATA" --host={MASTER_IP}' in start
    assert "standby.signal" in start
    assert replica["/etc/stroppy/postgres/pgpass"] == f"{MASTER_IP}:5432:*:replicator:secretReplication0123456789\n"
    master = files_of(plan, "postgres-master", ServiceKind.POSTGRES)
    assert "wal_level = 'replica'" in master["/etc/stroppy/postgres/postgresql.conf"]
    assert (
        "CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'secretReplication0123456789'"
        in master["/etc/stroppy/postgres/bootstrap.sql"]
    )
    assert master["/etc/stroppy/postgres/superuser.password"] == "secretSuperuser0123456789"
    stages = {m.name: m.container(ServiceKind.POSTGRES).start_stage for m in plan.machines if m.role != "runner"}
    assert stages == {
        "postgres-master": StartStage.PRIMARY,
        "postgres-replica-0": StartStage.REPLICAS,
        "postgres-replica-1": StartStage.REPLICAS,
    }


def test_patroni_nodes_share_etcd_and_advertise_their_own_address() -> None:
    plan = plan_of(
        lambda data: data["tests"][1]["database"]["cluster"]["topology"]["settings"]["patroni"].update(
            synchronous_mode=True, synchronous_node_count=2
        )
    )
    etcd_hosts = [f"10.77.3.{octet}:2379" for octet in (4, 5, 6)]
    for octet, machine in ((4, "postgres-master"), (5, "postgres-replica-0"), (6, "postgres-replica-1")):
        config = yaml.safe_load(files_of(plan, machine, ServiceKind.POSTGRES)["/etc/stroppy/patroni/patroni.yml"])
        assert config["name"] == machine
        assert config["etcd3"]["hosts"] == etcd_hosts
        assert config["postgresql"]["connect_address"] == f"10.77.3.{octet}:5432"
        assert config["restapi"]["connect_address"] == f"10.77.3.{octet}:8008"
        assert config["bootstrap"]["dcs"]["synchronous_mode"] is True
        assert config["bootstrap"]["dcs"]["synchronous_node_count"] == 2
        assert config["postgresql"]["authentication"]["replication"] == {
            "username": "replicator",
            "password": "secretReplication0123456789",
        }
    master_check = plan.machine("postgres-master").container(ServiceKind.POSTGRES).health_check.command
    assert master_check[-1] == "http://127.0.0.1:8008/primary"
    replica_check = plan.machine("postgres-replica-0").container(ServiceKind.POSTGRES).health_check.command
    assert replica_check[-1] == (
        'curl -fsS http://127.0.0.1:8008/patroni | grep -q \'"replication_state": "streaming"\''
    )


def test_etcd_members_know_each_other() -> None:
    plan = plan_of(lambda data: data["tests"][1]["database"]["cluster"]["addons"]["etcd"].update(client_port=3379))
    command = plan.machine("postgres-replica-0").container(ServiceKind.ETCD).command
    assert "--name=etcd-2" in command
    assert (
        "--initial-cluster=etcd-1=http://10.77.3.4:3380,etcd-2=http://10.77.3.5:3380,etcd-3=http://10.77.3.6:3380"
    ) in command
    assert "--advertise-client-urls=http://10.77.3.5:3379" in command
    assert plan.machine("postgres-master").container(ServiceKind.ETCD).start_stage is StartStage.DCS


def test_pgbouncer_points_at_the_primary_with_the_run_credentials() -> None:
    def configure(data: dict) -> None:
        data["tests"][1]["database"]["cluster"]["addons"]["pgbouncer"].update(
            pool_mode="session", pool_size=7, max_client_conn=70, port=6543, monitor=True
        )

    plan = plan_of(configure)
    files = files_of(plan, "postgres-master", ServiceKind.PGBOUNCER)
    ini = files["/etc/stroppy/pgbouncer/pgbouncer.ini"]
    assert f"stroppy = host={MASTER_IP} port=5432 dbname=stroppy" in ini
    for line in (
        "listen_port = 6543",
        "pool_mode = session",
        "default_pool_size = 7",
        "max_client_conn = 70",
        "auth_type = scram-sha-256",
    ):
        assert line in ini
    assert files["/etc/stroppy/pgbouncer/userlist.txt"] == (
        '"stroppy" "secretApp0123456789"\n"stroppy_monitor" "secretMonitor0123456789"\n'
    )
    exporter = plan.machine("postgres-master").container(ServiceKind.PGBOUNCER_EXPORTER)
    assert "--pgBouncer.connectionString=postgres://stroppy_monitor@127.0.0.1:6543/pgbouncer?sslmode=disable" in (
        exporter.command
    )
    assert exporter.env == {"PGPASSFILE": "/etc/stroppy/pgbouncer-exporter/pgpass"}
    assert plan.connection.port == 6543
    assert plan.connection.dsn(reveal_password=True) == (
        f"postgres://stroppy:secretApp0123456789@{MASTER_IP}:6543/stroppy?sslmode=disable"
    )


def test_postgres_exporter_reads_its_own_node_with_the_monitor_role() -> None:
    plan = plan_of(lambda data: data["tests"][1]["database"]["cluster"]["topology"].update(monitor=True))
    exporter = plan.machine("postgres-replica-1").container(ServiceKind.POSTGRES_EXPORTER)
    assert exporter.env == {
        "DATA_SOURCE_URI": "127.0.0.1:5432/stroppy?sslmode=disable",
        "DATA_SOURCE_USER": "stroppy_monitor",
        "DATA_SOURCE_PASS_FILE": "/etc/stroppy/postgres-exporter/password",
    }
    assert exporter.secret_files[0].content.get_secret_value() == "secretMonitor0123456789"


def test_secrets_never_appear_in_a_dumped_plan() -> None:
    plan = plan_of()
    dumped = plan.model_dump_json()
    assert "0123456789" not in dumped
    assert "**********" in dumped
    assert plan.connection.dsn() == "postgres://stroppy@10.77.3.4:6432/stroppy?sslmode=disable"


def test_planning_is_deterministic_for_the_same_inputs() -> None:
    def full_dump(plan: RunPlan) -> list[str]:
        return [plan.model_dump_json()] + [
            file.content.get_secret_value() for m in plan.machines for c in m.containers for file in c.secret_files
        ]

    assert full_dump(plan_of()) == full_dump(plan_of())


def test_generated_passwords_are_fresh_and_quote_free() -> None:
    passwords = {generate_password("app") for _ in range(50)}
    assert len(passwords) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", password) for password in passwords)


def test_orioledb_takes_its_own_image_and_preloads_the_engine() -> None:
    images = ImageCatalogue(postgres={"17": "example/pg:17.5", "17-orioledb": "example/orioledb:17-beta12"})

    def orioledb(data: dict) -> None:
        data["tests"][0]["database"]["instance"]["settings"] = {"storage_engine": "orioledb"}

    plan = plan_of(orioledb, index=0, settings=PlannerSettings(images=images))
    postgres = plan.machine("postgres-master").container(ServiceKind.POSTGRES)
    assert postgres.image == "example/orioledb:17-beta12"
    files = files_of(plan, "postgres-master", ServiceKind.POSTGRES)
    assert "shared_preload_libraries = 'orioledb'" in files["/etc/stroppy/postgres/postgresql.conf"]
    assert "CREATE EXTENSION IF NOT EXISTS orioledb;" in files["/etc/stroppy/postgres/bootstrap.sql"]


def test_existing_database_provisions_only_the_runner() -> None:
    def existing(data: dict) -> None:
        data["tests"][0]["database"] = {
            "existing": {"connection_string": "postgres://bench@db.example:6000/tpcc", "password_block": "bench-db"}
        }

    plan = plan_of(existing, index=0)
    assert [(m.name, m.role) for m in plan.machines] == [("stroppy-runner", MachineRole.RUNNER)]
    assert plan.connection.host == "db.example"
    assert plan.connection.port == 6000
    assert plan.connection.dbname == "tpcc"
    assert plan.connection.password is None
    assert plan.connection.password_block == "bench-db"


def test_backup_dumps_locally_on_schedule() -> None:
    def backup(data: dict) -> None:
        data["tests"][0]["database"]["instance"]["sidecars"] = {
            "backup": {"schedule": "30 3 * * 1", "retention": "2h", "storage": {"local": {"path": "/srv/dumps/"}}}
        }

    plan = plan_of(backup, index=0)
    files = files_of(plan, "postgres-master", ServiceKind.BACKUP)
    assert files["/etc/cron.d/stroppy-backup"].startswith("30 3 * * 1 root /etc/stroppy/backup/backup.sh")
    script = files["/etc/stroppy/backup/backup.sh"]
    assert '--file="/srv/dumps/stroppy-postgres-master-$stamp.dump" stroppy' in script
    assert "-mmin +120 -delete" in script
    assert plan.machine("postgres-master").container(ServiceKind.BACKUP).volumes == ["/srv/dumps"]


def test_images_come_from_the_catalogue() -> None:
    images = ImageCatalogue(
        postgres={"17": "example/pg:17.5"}, etcd="example/etcd:3.5.16", pgbouncer="example/pgbouncer:1.24.1"
    )
    plan = plan_of(settings=PlannerSettings(images=images))
    master = plan.machine("postgres-master")
    assert master.container(ServiceKind.POSTGRES).image == "example/pg:17.5"
    assert master.container(ServiceKind.ETCD).image == "example/etcd:3.5.16"
    assert master.container(ServiceKind.PGBOUNCER).image == "example/pgbouncer:1.24.1"


def test_runner_has_its_own_address() -> None:
    plan = plan_of()
    assert plan.runner.ip == "10.77.3.7"
    assert plan.runner.ip not in {machine.ip for machine in plan.machines if machine.role is not MachineRole.RUNNER}


def test_an_existing_database_on_ipv6_with_percent_encoded_names_gets_a_correct_url_and_password_line() -> None:
    def existing(data: dict) -> None:
        data["tests"][0]["database"] = {
            "existing": {
                "connection_string": "postgresql://us%40er@[2001:db8::1]:5433/my%2Fdb",
                "password_block": "bench-db",
            }
        }

    plan = plan_of(existing, index=0)
    connection = plan.connection
    assert (connection.host, connection.port, connection.user, connection.dbname) == (
        "2001:db8::1",
        5433,
        "us@er",
        "my/db",
    )
    assert connection.dsn() == "postgres://us%40er@[2001:db8::1]:5433/my%2Fdb?sslmode=prefer"
    (passfile,) = with_runner_password(plan, "pa:ss\\word").runner.secret_files
    assert passfile.content.get_secret_value() == "2001\\:db8\\:\\:1:5433:my/db:us@er:pa\\:ss\\\\word\n"


def test_an_existing_database_user_with_a_colon_is_escaped_in_the_password_line() -> None:
    def existing(data: dict) -> None:
        data["tests"][0]["database"] = {
            "existing": {"connection_string": "postgres://a%3Ab@db.example/tpcc", "password_block": "bench-db"}
        }

    plan = plan_of(existing, index=0)
    assert plan.connection.user == "a:b"
    assert plan.connection.dsn() == "postgres://a%3Ab@db.example:5432/tpcc?sslmode=prefer"
    (passfile,) = with_runner_password(plan, "pw").runner.secret_files
    assert passfile.content.get_secret_value() == "db.example:5432:tpcc:a\\:b:pw\n"


def test_an_existing_databases_url_parameters_reach_the_url_and_libpq_environment() -> None:
    url = "postgres://u@db.example/tpcc?sslmode=require&application_name=night%20run&connect_timeout=5"

    def existing(data: dict) -> None:
        data["tests"][0]["database"] = {"existing": {"connection_string": url, "password_block": "bench-db"}}

    connection = plan_of(existing, index=0).connection
    assert connection.dsn() == (
        "postgres://u@db.example:5432/tpcc?sslmode=require&application_name=night%20run&connect_timeout=5"
    )
    env = libpq_env(connection)
    assert (env["PGSSLMODE"], env["PGAPPNAME"], env["PGCONNECT_TIMEOUT"]) == ("require", "night run", "5")


def test_every_url_parameter_has_its_libpq_variable() -> None:
    assert set(LIBPQ_PARAMETER_ENV) == set(CONNECTION_PARAMETERS)


TRICKY_CONF = {"search_path": '"$user", public', "application_name": "O'Brien \\ bench"}


def test_postgresql_conf_values_with_quotes_and_backslashes_are_quoted_as_postgresql_reads_them() -> None:
    def tricky(data: dict) -> None:
        plain_cluster(data)
        data["tests"][1]["database"]["cluster"]["topology"]["settings"] = {"postgresql_conf": TRICKY_CONF}

    conf = files_of(plan_of(tricky), "postgres-master", ServiceKind.POSTGRES)["/etc/stroppy/postgres/postgresql.conf"]
    assert "search_path = '\"$user\", public'\n" in conf
    assert "application_name = 'O''Brien \\\\ bench'\n" in conf


def test_patroni_receives_tricky_postgresql_conf_values_unchanged() -> None:
    def tricky(data: dict) -> None:
        data["tests"][1]["database"]["cluster"]["topology"]["settings"]["postgresql_conf"] = TRICKY_CONF

    patroni = files_of(plan_of(tricky), "postgres-replica-0", ServiceKind.POSTGRES)["/etc/stroppy/patroni/patroni.yml"]
    config = yaml.safe_load(patroni)
    for parameters in (config["postgresql"]["parameters"], config["bootstrap"]["dcs"]["postgresql"]["parameters"]):
        assert {name: parameters[name] for name in TRICKY_CONF} == TRICKY_CONF
