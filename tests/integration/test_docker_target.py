"""The Docker target on the real engine, with the project's images (scripts/engine.sh, python -m infra.images)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import docker
import httpx
import psycopg
import pytest

from blocks.redis import RedisConnection
from infra.containers import service_container_name
from infra.images import ImageSet, image_ids
from infra.reservations import SubnetReservations
from infra.targets.base import LABEL_RUN_ID, RunSpec, TargetError
from infra.targets.docker import DockerTarget, DockerTargetSettings
from infra.targets.docker.backend import machine_container_name
from stroppy_domain.model import BenchmarkTest, Target
from stroppy_domain.placement import plan_run
from stroppy_domain.plan import RunPlan, ServiceKind
from stroppy_domain.services import generate_password
from stroppy_domain.settings import AddressSpace, ImageCatalogue, PlannerSettings
from stroppy_domain.validation import validate_suite
from tests.integration.redis_store import REDIS_URL

pytestmark = [pytest.mark.docker, pytest.mark.redis]

SPACE = AddressSpace(base_cidr="10.211.0.0/16", prefix=24)
HARDWARE = {"cores": 1, "memory_gb": 1, "disk_gb": 10}
PATRONI_CLUSTER = {
    "cluster": {
        "topology": {
            "settings": {"patroni": {"ttl": 20, "loop_wait": 5, "retry_timeout": 5}},
            "master_hardware": HARDWARE,
            "replica_hardware": HARDWARE,
            "replicas": 2,
        },
        "addons": {
            "etcd": {"size": 3, "placement": {"colocate": {"scope": "all_nodes"}}},
            "pgbouncer": {"placement": {"colocate": {"scope": "master"}}},
        },
    }
}
DEDICATED_CLUSTER = {
    "cluster": {
        "topology": {
            "settings": {"patroni": {}},
            "master_hardware": HARDWARE,
            "replica_hardware": HARDWARE,
            "replicas": 1,
            "monitor": True,
        },
        "addons": {
            "etcd": {"size": 3, "placement": {"dedicated": {"count": 3, "hardware": HARDWARE}}, "monitor": True},
            "pgbouncer": {"placement": {"dedicated": {"count": 1, "hardware": HARDWARE}}, "monitor": True},
        },
    }
}
INSTANCE = {"instance": {"hardware": HARDWARE}}


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env(timeout=120)
    try:
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(f"no Docker engine; start it with `bash scripts/engine.sh start`: {error}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def images(engine: docker.DockerClient) -> ImageSet:
    images = ImageSet.for_checkout()
    for reference in (images.db_node, images.edge):
        try:
            engine.images.get(reference)
        except docker.errors.ImageNotFound:
            pytest.fail(f"image {reference} is missing; build it with `uv run python -m infra.images build`")
    return images


@pytest.fixture(scope="module")
def reservations() -> Iterator[SubnetReservations]:
    client = RedisConnection(url=REDIS_URL, timeout_s=5).get_client()
    yield SubnetReservations(client, Target.DOCKER, SPACE)
    client.close()


@pytest.fixture(scope="module", autouse=True)
def no_test_run_outlives_the_module(images: ImageSet) -> Iterator[None]:
    """A safety net for runs a failed or interrupted test could not destroy itself."""
    yield
    with DockerTarget(DockerTargetSettings(machine_image=images.edge), progress=lambda _: None) as backend:
        for inventory in backend.list_runs():
            if inventory.run_id.startswith("it-"):
                backend.destroy(inventory.run_id)


@pytest.fixture
def target(images: ImageSet) -> Iterator[DockerTarget]:
    with DockerTarget(DockerTargetSettings(machine_image=images.edge), progress=lambda _: None) as backend:
        yield backend


def make_test(database: dict, name: str = "it") -> BenchmarkTest:
    suite = {"name": "it", "tests": [{"name": name, "stroppy": {"version": "v5.0.0"}, "database": database}]}
    return validate_suite(suite).tests[0]


def labelled(engine: docker.DockerClient, run_id: str) -> dict[str, list[str]]:
    selector = {"label": f"{LABEL_RUN_ID}={run_id}"}
    return {
        "containers": [c.name for c in engine.containers.list(all=True, filters=selector)],
        "volumes": [v.name for v in engine.volumes.list(filters=selector)],
        "networks": [n.name for n in engine.networks.list(filters=selector)],
    }


@contextlib.contextmanager
def deployed(
    target: DockerTarget,
    reservations: SubnetReservations,
    engine: docker.DockerClient,
    database: dict,
    catalogue: ImageCatalogue,
    cpusets: dict[str, str] | None = None,
) -> Iterator[tuple[RunSpec, RunPlan]]:
    """A running topology on a reserved subnet, its machines on `cpusets`; destroyed afterwards, and checked to
    leave nothing behind."""
    run_id = f"it-{uuid.uuid4().hex[:10]}"
    settings = PlannerSettings(images=catalogue)
    test = make_test(database)
    reservation = reservations.reserve(run_id, machines=8, ttl_s=900)
    try:
        plan = plan_run(test, Target.DOCKER, reservation.subnet, settings, generate_password)
        expires_at = datetime.now(UTC) + timedelta(minutes=15)
        run = RunSpec(run_id=run_id, plan=plan, expires_at=expires_at, cpusets=cpusets or {})
        try:
            target.create_machines(run)
            target.start_services(run)
            yield run, plan
        finally:
            target.destroy(run_id)
            assert labelled(engine, run_id) == {"containers": [], "volumes": [], "networks": []}
    finally:
        reservations.release(run_id)


def execute(engine: docker.DockerClient, container: str, command: list[str], user: str = "postgres") -> tuple[int, str]:
    result = engine.containers.get(container).exec_run(["timeout", "30", *command], user=user)
    return result.exit_code, result.output.decode(errors="replace")


def superuser_sql(engine: docker.DockerClient, run_id: str, machine: str, sql: str) -> str:
    code, output = execute(
        engine,
        service_container_name(run_id, machine, "postgres"),
        ["psql", "--no-psqlrc", "-h", "/var/run/postgresql", "-U", "postgres", "-d", "postgres", "-Atc", sql],
    )
    assert code == 0, output
    return output.strip()


def until(condition, timeout_s: float = 30, interval_s: float = 0.5):
    """Poll `condition` until it returns something truthy, at most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def test_single_instance_serves_sql_with_generated_credentials(target, reservations, engine, images) -> None:
    with deployed(target, reservations, engine, INSTANCE, images.catalogue()) as (_, plan):
        dsn = plan.connection.dsn(reveal_password=True)
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as connection:
            connection.execute("CREATE TABLE probe (id int PRIMARY KEY, note text)")
            connection.execute("INSERT INTO probe VALUES (1, 'hello')")
            assert connection.execute("SELECT note, current_user FROM probe").fetchone() == ("hello", "stroppy")
        wrong = dsn.replace(plan.connection.password.get_secret_value(), "wrong-password")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(wrong, connect_timeout=10)


def test_patroni_cluster_replicates_through_pgbouncer(target, reservations, engine, images) -> None:
    with deployed(target, reservations, engine, PATRONI_CLUSTER, images.catalogue()) as (run, plan):
        master = plan.machine("postgres-master")
        members = httpx.get(f"http://{master.ip}:8008/cluster", timeout=10).json()["members"]
        roles = sorted(member["role"] for member in members)
        assert roles == ["leader", "replica", "replica"], members
        assert next(m["name"] for m in members if m["role"] == "leader") == "postgres-master"

        streaming = until(
            lambda: superuser_sql(engine, run.run_id, "postgres-master",
                                  "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "2"
        )  # fmt: skip
        assert streaming

        assert plan.connection.port == 6432
        with psycopg.connect(plan.connection.dsn(reveal_password=True), connect_timeout=10, autocommit=True) as conn:
            conn.execute("CREATE TABLE written_through_pgbouncer (value text)")
            conn.execute("INSERT INTO written_through_pgbouncer VALUES ('replicated')")
        replica = plan.machine("postgres-replica-1")
        replica_dsn = plan.connection.model_copy(update={"host": replica.ip, "port": 5432}).dsn(reveal_password=True)

        def read_from_replica() -> tuple | None:
            with psycopg.connect(replica_dsn, connect_timeout=10) as conn:
                assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
                with contextlib.suppress(psycopg.errors.UndefinedTable):
                    return conn.execute("SELECT value FROM written_through_pgbouncer").fetchone()
            return None

        assert until(read_from_replica) == ("replicated",)

        hashes = superuser_sql(engine, run.run_id, "postgres-master",
                               "SELECT rolname || ' ' || left(rolpassword, 14) FROM pg_authid "
                               "WHERE rolpassword IS NOT NULL ORDER BY 1")  # fmt: skip
        assert hashes.splitlines() == [
            f"{role} SCRAM-SHA-256$" for role in ("postgres", "replicator", "stroppy", "stroppy_monitor")
        ]
        _assert_outsiders_are_refused(engine, run, plan, images)


def _assert_outsiders_are_refused(engine: docker.DockerClient, run: RunSpec, plan: RunPlan, images: ImageSet) -> None:
    """A client that reaches the master from outside the run's subnet is turned away by pg_hba."""
    outside = engine.networks.create(
        f"stroppy-{run.run_id}-outside",
        driver="bridge",
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.212.99.0/24")]),
        labels={LABEL_RUN_ID: run.run_id, "stroppy.managed_by": "stroppy-flows"},
    )
    outside.connect(machine_container_name(run.run_id, "postgres-master"), ipv4_address="10.212.99.10")
    password = plan.connection.password.get_secret_value()
    probe = engine.containers.create(
        images.db_node,
        ["psql", f"postgresql://stroppy:{password}@10.212.99.10:5432/stroppy?connect_timeout=10", "-c", "SELECT 1"],
        network=outside.name,
        labels={LABEL_RUN_ID: run.run_id, "stroppy.managed_by": "stroppy-flows"},
    )
    probe.start()
    status = probe.wait(timeout=60)
    logs = probe.logs().decode(errors="replace")
    assert status["StatusCode"] == 2, logs
    assert 'no pg_hba.conf entry for host "10.212.99.' in logs


def test_dedicated_machines_and_exporters_serve_real_metrics(target, reservations, engine, images) -> None:
    with deployed(target, reservations, engine, DEDICATED_CLUSTER, images.catalogue()) as (_, plan):
        assert [m.name for m in plan.machines] == [
            "postgres-master", "postgres-replica-0", "etcd-1", "etcd-2", "etcd-3", "pgbouncer-1", "stroppy-runner",
        ]  # fmt: skip
        for name in ("etcd-1", "etcd-2", "etcd-3"):
            machine = plan.machine(name)
            assert [c.kind for c in machine.containers] == [ServiceKind.ETCD, ServiceKind.NODE_EXPORTER]
            assert httpx.get(f"http://{machine.ip}:2379/health", timeout=10).json()["health"] == "true"
            assert "etcd_server_has_leader 1" in httpx.get(f"http://{machine.ip}:2379/metrics", timeout=10).text
        bouncer = plan.machine("pgbouncer-1")
        assert plan.connection.host == bouncer.ip
        with psycopg.connect(plan.connection.dsn(reveal_password=True), connect_timeout=10) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        expected = {
            9100: "node_cpu_seconds_total",
            9187: "pg_up 1",
            9127: "pgbouncer_up 1",
        }
        checked = 0
        for machine in plan.machines:
            for container in machine.containers:
                port = container.ports[0].number
                if port in expected:
                    body = httpx.get(f"http://{machine.ip}:{port}/metrics", timeout=10).text
                    assert expected[port] in body, (machine.name, container.kind)
                    checked += 1
        assert checked == 7 + 2 + 1, "a node exporter on each of 7 machines, 2 postgres exporters, 1 PgBouncer exporter"


def test_every_container_of_a_machine_is_held_to_its_cpus_and_memory(target, reservations, engine, images) -> None:
    last_cpu = str(engine.info()["NCPU"] - 1)
    cpusets = {"postgres-master": last_cpu, "stroppy-runner": "0"}
    monitored = {"instance": {"hardware": HARDWARE, "sidecars": {"node_exporter": {}, "postgres_exporter": {}}}}
    with deployed(target, reservations, engine, monitored, images.catalogue(), cpusets) as (run, plan):
        containers = engine.api.containers(filters={"label": f"{LABEL_RUN_ID}={run.run_id}"})
        seen: dict[str, list[str]] = {}
        for summary in containers:
            labels = summary["Labels"]
            machine = plan.machine(labels["stroppy.machine"])
            host = engine.api.inspect_container(summary["Id"])["HostConfig"]
            limit = machine.hardware.memory_gb * 2**30
            assert (host["CpusetCpus"], host["Memory"], host["MemorySwap"]) == (cpusets[machine.name], limit, limit)
            seen.setdefault(machine.name, []).append(labels["stroppy.service"])
        assert sorted(seen["postgres-master"]) == ["machine", "node_exporter", "postgres", "postgres_exporter"]
        assert "machine" in seen["stroppy-runner"]
        postgres = service_container_name(run.run_id, "postgres-master", "postgres")
        assert execute(engine, postgres, ["nproc"]) == (0, "1\n")


def test_two_runs_at_once_do_not_see_each_other(target, reservations, engine, images) -> None:
    results: dict[str, object] = {}
    ready = threading.Barrier(3, timeout=300)  # both runs and this thread
    release = threading.Event()

    def run_one(label: str) -> None:
        with DockerTarget(DockerTargetSettings(machine_image=images.edge), progress=lambda _: None) as own:
            try:
                with deployed(own, reservations, engine, INSTANCE, images.catalogue()) as (run, plan):
                    results[label] = (run, plan)
                    ready.wait()
                    release.wait(timeout=300)
            except Exception as error:  # a thread cannot fail the test itself: the main thread reports it
                results[f"{label}-error"] = error
                ready.abort()

    threads = [threading.Thread(target=run_one, args=(label,)) for label in ("a", "b")]
    for thread in threads:
        thread.start()
    try:
        ready.wait()
        (run_a, plan_a), (_, plan_b) = results["a"], results["b"]
        assert plan_a.subnet != plan_b.subnet
        container_a = service_container_name(run_a.run_id, "postgres-master", "postgres")
        own_ip, other_ip = plan_a.machine("postgres-master").ip, plan_b.machine("postgres-master").ip
        assert execute(engine, container_a, ["pg_isready", "-h", own_ip, "-t", "5"])[0] == 0
        code, output = execute(engine, container_a, ["pg_isready", "-h", other_ip, "-t", "5"])
        assert code == 2, output
    except threading.BrokenBarrierError:
        pytest.fail(f"a run failed to start: {results}")
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=300)
    assert not [key for key in results if key.endswith("-error")], results


def test_a_failure_half_way_leaves_nothing_after_destroy(target, reservations, engine, images) -> None:
    catalogue = images.catalogue().model_copy(update={"pgbouncer": "stroppy-flows/missing:0.0.0-none"})
    test = make_test(PATRONI_CLUSTER)
    run_id = f"it-{uuid.uuid4().hex[:10]}"
    reservation = reservations.reserve(run_id, machines=8, ttl_s=900)
    try:
        plan = plan_run(test, Target.DOCKER, reservation.subnet, PlannerSettings(images=catalogue), generate_password)
        run = RunSpec(run_id=run_id, plan=plan, expires_at=datetime.now(UTC) + timedelta(minutes=15))
        target.create_machines(run)
        with pytest.raises(TargetError, match=r"stroppy-flows/missing:0\.0\.0-none"):
            target.start_services(run)
        before = labelled(engine, run_id)
        assert before["containers"] and before["volumes"] and before["networks"]
        first, second = target.destroy(run_id), target.destroy(run_id)
        assert not first.nothing_left_to_do
        assert second.nothing_left_to_do
        assert labelled(engine, run_id) == {"containers": [], "volumes": [], "networks": []}
    finally:
        target.destroy(run_id)
        reservations.release(run_id)


def test_a_retry_adopts_what_exists_and_the_reaper_sees_it(target, reservations, engine, images) -> None:
    with deployed(target, reservations, engine, INSTANCE, images.catalogue()) as (run, _):
        before = {c.name: c.id for c in engine.containers.list(filters={"label": f"{LABEL_RUN_ID}={run.run_id}"})}
        target.create_machines(run)
        target.start_services(run)
        after = {c.name: c.id for c in engine.containers.list(filters={"label": f"{LABEL_RUN_ID}={run.run_id}"})}
        assert after == before
        (inventory,) = [item for item in target.list_runs() if item.run_id == run.run_id]
        assert inventory.expires_at == run.expires_at
        assert sorted(inventory.machines) == ["postgres-master", "stroppy-runner"]


@pytest.mark.timeout(120)
def test_image_ids_are_the_engines_content_ids() -> None:
    engine = docker.from_env(timeout=30)
    built = engine.images.list(name="stroppy-flows/db-node")[0]
    reference = built.tags[0]
    ids = image_ids([reference, "stroppy-flows/never-built:0"])
    assert ids[reference] == built.id and ids[reference].startswith("sha256:")
    assert ids["stroppy-flows/never-built:0"] == "unknown: not on the engine that builds the images"
