"""The Yandex Cloud target up to the provider boundary, with real parts everywhere else.

Yandex Cloud cannot be reached from here, so two stand-ins take its place: the API stand-in
(tests/standin/yandex_cloud_standin.py: IAM tokens from a PS256 JWT, lists, deletions with operations) and the
module stand-in (tests/terraform/yandex_standin: the real module's variables, resources made in the API stand-in).
Everything else is real: the `terraform` binary applying and destroying from a persisted working directory, the
target's code, the Prefect server holding the run's Secret block, the `start-services` edge flow, and the Docker
engine running the cluster's services. The machines are Docker containers at their planned addresses (made by the
Docker target), standing in for the VMs whose engines the edge flow would use.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import stat
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import pytest
from moto.server import ThreadedMotoServer
from prefect.blocks.system import Secret
from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket
from pydantic import SecretStr

from blocks.redis import RedisConnection
from blocks.yandex_cloud import YandexCloud
from flows.edge import LOAD_FILES_PREFIX, LoadOutcome, LoadRequest, StartServicesRequest, run_load, start_services
from infra.edge_replies import ReplyTo, read_reply
from infra.images import ImageSet, planner_settings, push_images
from infra.reservations import SubnetReservations
from infra.result_storage import S3ResultStorage
from infra.settings import OrchestrationSettings
from infra.targets import docker as docker_target
from infra.targets import open_target
from infra.targets import yandex as yandex_target
from infra.targets.base import RunSpec, TargetError, machine_queue_name
from infra.targets.docker import DockerTarget, DockerTargetSettings
from infra.targets.docker.backend import machine_container_name
from infra.targets.yandex import MachineBootstrap, YandexSettings, YandexTarget, YandexTargetSettings
from infra.targets.yandex.backend import START_SERVICES_DEPLOYMENT, run_block_name
from infra.terraform import TerraformSettings
from infra.yandex_cloud import YandexApiSettings
from stroppy_domain.bounds import TargetBounds
from stroppy_domain.cloud import EdgeRelease, YandexPlacement, expires_label
from stroppy_domain.load import LoadStep
from stroppy_domain.model import Target
from stroppy_domain.placement import plan_run
from stroppy_domain.services import generate_password
from stroppy_domain.settings import AddressSpace
from stroppy_domain.validation import validate_suite
from tests.conftest import REPO, fresh_suite
from tests.standin.yandex_cloud_standin import YandexCloudStandIn, authorized_key

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.redis]

FOLDER = "b1gstandinfolder"
REGISTRY = "127.0.0.1:5000"  # scripts/services.sh starts it, standing in for the cloud's container registry
SPACE = AddressSpace(base_cidr="10.214.0.0/16", prefix=24)
STANDIN_MODULE = REPO / "tests" / "terraform" / "yandex_standin"
REAL_MODULE = REPO / "infra" / "terraform" / "yandex"


@pytest.fixture
def cloud() -> Iterator[tuple[YandexCloudStandIn, str]]:
    key_json, _ = authorized_key()
    with YandexCloudStandIn(key_json, FOLDER) as standin:
        yield standin, key_json


def settings_for(standin: YandexCloudStandIn, key_json: str, tmp_path: Path) -> YandexTargetSettings:
    """The target pointed at the stand-ins: the real module's variables beside the stand-in's resources."""
    module = tmp_path / "module"
    module.mkdir(exist_ok=True)
    for shared in ("variables.tf", "locals.tf"):
        shutil.copyfile(REAL_MODULE / shared, module / shared)
    (module / "main.tf").write_text((STANDIN_MODULE / "main.tf").read_text().replace("$STANDIN_URL", standin.url))
    return YandexTargetSettings(
        cloud_id="b1gstandincloud",
        service_account_key=SecretStr(key_json),
        placement=YandexPlacement(
            folder_id=FOLDER, zone="ru-central1-a", network_id="enpstandin", image_id="fd8standin",
            platform_id="standard-v3", public_ip=False, control_plane_cidr="10.0.0.0/24",
        ),
        bootstrap=MachineBootstrap(
            release=EdgeRelease(
                prefect_api_url="http://10.0.0.5:4200/api",
                package_url="https://releases.example/stroppy_flows-0.1.0-py3-none-any.whl",
                package_sha256="0" * 64,
                requirements_url="https://releases.example/requirements.txt",
                requirements_sha256="2" * 64,
            ),
            lockbox_secret_id="e6qstandinsecret",
        ),
        terraform=TerraformSettings(state_root=tmp_path / "state", apply_timeout_s=120, destroy_timeout_s=120),
        api=YandexApiSettings(
            iam_url=standin.url, compute_url=standin.url, vpc_url=standin.url, operation_url=standin.url,
            timeout_s=5, operation_timeout_s=10,
        ),
        module_dir=module,
    )  # fmt: skip


@pytest.fixture
def subnet() -> Iterator[tuple[str, str]]:
    """A run id and a subnet leased for it, so the stand-in machines never collide with another run's."""
    run_id = f"yc-{uuid.uuid4().hex[:10]}"
    client = RedisConnection(url=OrchestrationSettings().redis_url, timeout_s=5).get_client()
    reservations = SubnetReservations(client, Target.DOCKER, SPACE)
    try:
        yield run_id, reservations.reserve(run_id, 4, ttl_s=900).subnet
    finally:
        reservations.release(run_id)
        client.close()


@pytest.fixture
def registry_images() -> Iterator[list[str]]:
    """The service images pushed to the registry and only there: machines must pull them."""
    engine = docker.from_env(timeout=300)
    try:
        pushed = push_images(engine, REGISTRY, progress=lambda _: None)
        for reference in pushed:
            engine.images.remove(reference)  # only the registry's name goes; the layers stay under the local tag
        yield pushed
        for reference in pushed:
            with contextlib.suppress(docker.errors.ImageNotFound):
                engine.images.remove(reference)
    finally:
        engine.close()


def cluster_run(run_id: str, subnet: str) -> RunSpec:
    test = validate_suite(fresh_suite()).tests[1]
    plan = plan_run(test, Target.YANDEX_CLOUD, subnet, planner_settings(), generate_password)
    return RunSpec(run_id=run_id, plan=plan, expires_at=datetime.now(UTC) + timedelta(hours=2))


def secrets_of(run: RunSpec) -> list[str]:
    values = [
        file.content.get_secret_value()
        for machine in run.plan.machines
        for container in machine.containers
        for file in container.secret_files
    ]
    values += [file.content.get_secret_value() for machine in run.plan.machines for file in machine.secret_files]
    return [value for value in values if value]


def key_material(key_json: str) -> list[str]:
    """Lines of the private key's PEM body: none may appear anywhere outside the key itself."""
    return [line for line in json.loads(key_json)["private_key"].splitlines() if len(line) > 40]


def of_run(standin: YandexCloudStandIn, kind: str, run_id: str) -> dict[str, dict[str, Any]]:
    return {name: item for name, item in standin.named(kind).items() if name.startswith(f"stroppy-{run_id}")}


def assert_machines_in_the_cloud(standin: YandexCloudStandIn, run: RunSpec, key_json: str) -> None:
    """One VM per planned machine at its address with the run's labels, and user-data holding no secret."""
    run_id = run.run_id
    instances = of_run(standin, "instance", run_id)
    assert sorted(instances) == sorted(f"stroppy-{run_id}-{m.name}" for m in run.plan.machines)
    for machine in run.plan.machines:
        instance = instances[f"stroppy-{run_id}-{machine.name}"]
        assert instance["ip"] == machine.ip and instance["cores"] == machine.hardware.cores
        assert instance["labels"] == {
            "stroppy_run_id": run_id, "stroppy_expires_at": expires_label(run.expires_at),
            "managed_by": "stroppy-flows", "stroppy_machine": machine.name,
        }  # fmt: skip
        user_data = instance["userData"]
        assert user_data.startswith("#cloud-config")
        assert machine_queue_name(run_id, machine.name) in user_data
        for secret in [*secrets_of(run), *key_material(key_json)]:
            assert secret not in user_data
    assert list(of_run(standin, "subnet", run_id)) == [f"stroppy-{run_id}"]


def assert_started_through_the_edge_flow(
    run: RunSpec, dispatched: list[tuple[str, dict[str, Any], str]], machines: Path
) -> None:
    """The machines' own files first, then stage by stage; parameters carry no secret; the files were written."""
    stages = [parameters["request"]["stage"] for _, parameters, _ in dispatched]
    runner = run.plan.runner
    assert stages[0] is None and dispatched[0][2] == machine_queue_name(run.run_id, runner.name)
    assert stages[1:] == sorted(stages[1:]) and None not in stages[1:], "stage by stage, each once healthy"
    [passfile] = runner.secret_files
    written = machines / runner.name / passfile.path.lstrip("/")
    assert written.read_text() == passfile.content.get_secret_value()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert {deployment for deployment, _, _ in dispatched} == {START_SERVICES_DEPLOYMENT}
    assert {queue for _, _, queue in dispatched} == {
        machine_queue_name(run.run_id, m.name) for m in run.plan.machines if m.containers or m.secret_files
    }
    parameters_text = json.dumps([parameters for _, parameters, _ in dispatched])
    assert not [secret for secret in secrets_of(run) if secret in parameters_text]


def assert_services_run_the_registry_images(run_id: str, registry_images: list[str]) -> None:
    """The machines ran the registry's images, which they had to pull."""
    engine = docker.from_env(timeout=60)
    try:
        services = [
            container for container in engine.containers.list(filters={"label": f"stroppy.run_id={run_id}"})
            if container.labels.get("stroppy.service") != "machine"
        ]  # fmt: skip
        assert services and {container.attrs["Config"]["Image"] for container in services} == set(registry_images)
    finally:
        engine.close()


def test_a_cloud_run_is_created_started_and_destroyed_after_a_master_restart(
    cloud: tuple[YandexCloudStandIn, str], subnet: tuple[str, str], registry_images: list[str], tmp_path: Path
) -> None:
    standin, key_json = cloud
    run_id, cidr = subnet
    run = cluster_run(run_id, cidr)
    settings = settings_for(standin, key_json, tmp_path).model_copy(update={"image_registry": REGISTRY})
    lines: list[str] = []
    dispatched: list[tuple[str, dict[str, Any], str]] = []
    images = ImageSet.for_checkout()
    # The stand-in VMs only hold a network namespace at the planned address; the base image is enough.
    holders = DockerTarget(DockerTargetSettings(machine_image=images.base), progress=lambda _: None)

    def start_on_stand_in_machine(
        deployment: str, parameters: dict[str, Any], queue: str, bound_s: float, tags: list[str], machine: str
    ) -> Any:
        """The edge flow itself, run here against a container at the machine's planned address."""
        dispatched.append((deployment, parameters, queue))
        assert tags == ["stroppy", f"run:{run_id}"]
        assert queue == machine_queue_name(run_id, machine)
        request = StartServicesRequest.model_validate(parameters["request"])
        holder = machine_container_name(run_id, request.machine)
        files_root = tmp_path / "machines" / request.machine
        return start_services(
            request.model_copy(update={"network_mode": f"container:{holder}", "files_root": str(files_root)})
        )

    try:
        target = YandexTarget(settings, dispatcher=start_on_stand_in_machine, progress=lines.append)
        with target:
            target.create_machines(run)
            target.create_machines(run)  # a retried step converges on what exists

            assert_machines_in_the_cloud(standin, run, key_json)
            assert not [line for line in lines for piece in key_material(key_json) if piece in line]

            [inventory] = [item for item in target.list_runs() if item.run_id == run_id]
            assert sorted(inventory.machines) == sorted(m.name for m in run.plan.machines)
            # every VM, the subnet, the account, and the working directory
            assert inventory.resources == len(run.plan.machines) + 3
            assert inventory.expires_at == run.expires_at.replace(microsecond=0)

            holders.create_machines(run)
            target.start_services(run)

        assert_started_through_the_edge_flow(run, dispatched, tmp_path / "machines")
        assert_services_run_the_registry_images(run_id, registry_images)
        handed_over = RunSpec.model_validate(Secret.load(run_block_name(run_id), _sync=True).get())
        assert secrets_of(handed_over) == secrets_of(run)

        # A new target instance is a restarted master: it has only the persisted working directory.
        with YandexTarget(settings, progress=lines.append) as restarted:
            report = restarted.destroy(run_id)
            assert report.removed["terraform_states"] == 1
            assert report.removed["secret_blocks"] == 1
            assert not [
                name for kind in ("instance", "subnet", "service_account") for name in of_run(standin, kind, run_id)
            ]
            assert not (settings.terraform.state_root / run_id).exists()
            assert restarted.destroy(run_id).nothing_left_to_do
            assert run_id not in [item.run_id for item in restarted.list_runs()]
        with pytest.raises(ValueError, match="Unable to find block document"):
            Secret.load(run_block_name(run_id), _sync=True)
    finally:
        holders.destroy(run_id)
        holders.close()


def assert_an_account_alone_still_shows_its_run_and_expiry(
    standin: YandexCloudStandIn, target: YandexTarget, run: RunSpec
) -> None:
    """Accounts take no labels; their description keeps a run that left only its account reapable."""
    with standin.lock:
        hidden = {
            key: item for key, item in standin.resources.items()
            if item["name"].startswith(f"stroppy-{run.run_id}") and item["kind"] != "service_account"
        }  # fmt: skip
        for key in hidden:
            del standin.resources[key]
    [inventory] = [item for item in target.list_runs() if item.run_id == run.run_id]
    assert inventory.resources == 1 and inventory.expires_at == run.expires_at.replace(microsecond=0)
    with standin.lock:
        standin.resources.update(hidden)


def test_destroy_sweeps_what_a_lost_state_left_and_nothing_else(
    cloud: tuple[YandexCloudStandIn, str], subnet: tuple[str, str], tmp_path: Path
) -> None:
    standin, key_json = cloud
    run_id, cidr = subnet
    run = cluster_run(run_id, cidr)
    settings = settings_for(standin, key_json, tmp_path)
    someone_elses = standin.add("instance", "someone-elses-vm", {"team": "db"})
    other_run = standin.add(
        "instance", "stroppy-other-run-m", {"stroppy_run_id": "other-run", "managed_by": "stroppy-flows"}
    )
    with YandexTarget(settings, progress=lambda _: None) as target:
        target.create_machines(run)
        shutil.rmtree(settings.terraform.state_root / run_id)  # the state is lost; the resources are not
        assert_an_account_alone_still_shows_its_run_and_expiry(standin, target, run)

        report = target.destroy(run_id)

    assert report.removed["terraform_states"] == 0
    assert report.removed["instances"] == len(run.plan.machines)
    assert report.removed["subnets"] == 1 and report.removed["service_accounts"] == 1
    assert not [name for kind in ("instance", "subnet", "service_account") for name in of_run(standin, kind, run_id)]
    assert {someone_elses, other_run} <= set(standin.resources)


def test_a_wrong_key_is_refused_without_showing_it(cloud: tuple[YandexCloudStandIn, str], tmp_path: Path) -> None:
    standin, key_json = cloud
    other_key, _ = authorized_key()
    settings = settings_for(standin, key_json, tmp_path).model_copy(
        update={"service_account_key": SecretStr(other_key)}
    )
    with YandexTarget(settings, progress=lambda _: None) as target, pytest.raises(TargetError) as refused:
        target.list_runs()
    message = str(refused.value)
    assert f"list runs in folder {FOLDER}" in message and "IAM token: HTTP 401" in message
    assert not [line for line in key_material(other_key) if line in message]

    settings = settings.model_copy(update={"service_account_key": SecretStr('{"id": "x"}')})
    with YandexTarget(settings, progress=lambda _: None) as target, pytest.raises(TargetError, match="authorized key"):
        target.list_runs()


def test_the_target_is_chosen_by_name_with_settings_from_its_block(monkeypatch: pytest.MonkeyPatch) -> None:
    block_name = f"yc-{uuid.uuid4().hex[:8]}"
    key_json, _ = authorized_key()
    YandexCloud(
        cloud_id="b1gcloud", folder_id=FOLDER, network_id="enpnet", service_account_key=SecretStr(key_json),
        edge_image_id="fd8image", control_plane_cidr="10.0.0.0/24", lockbox_secret_id="e6qsecret",
    ).save(block_name)  # fmt: skip
    bucket_name = f"yc-results-{uuid.uuid4().hex[:8]}"
    S3Bucket(bucket_name="results", credentials=AwsCredentials(region_name="us-east-1")).save(bucket_name)
    try:
        unconfigured = OrchestrationSettings(archive_s3_block="no-such-bucket-block")
        cloud = YandexSettings(yandex_cloud_block=block_name)
        # Listing and destroying need only the block; creating machines names everything still missing.
        partial = yandex_target.target_settings(unconfigured, cloud)
        assert isinstance(partial, YandexTargetSettings) and partial.bootstrap is None
        assert partial.bootstrap_missing[:5] == [
            "STROPPY_CLOUD_API_URL", "STROPPY_CLOUD_PACKAGE_URL", "STROPPY_CLOUD_PACKAGE_SHA256",
            "STROPPY_CLOUD_REQUIREMENTS_URL", "STROPPY_CLOUD_REQUIREMENTS_SHA256",
        ]  # fmt: skip
        assert "a saved S3Bucket block 'no-such-bucket-block'" in partial.bootstrap_missing[5]
        with YandexTarget(partial, progress=lambda _: None) as cannot_create:
            plan = cluster_run("yc-unconfigured", "10.214.250.0/24")
            with pytest.raises(TargetError, match="cannot create machines until these are set: STROPPY_CLOUD_API_URL"):
                cannot_create.create_machines(plan)
        with pytest.raises(TargetError, match="needs a saved YandexCloud block"):
            yandex_target.target_settings(unconfigured, YandexSettings(yandex_cloud_block="no-such-block"))

        configured_cloud = cloud.model_copy(
            update={
                "cloud_api_url": "http://10.0.0.5:4200/api",
                "cloud_package_url": "https://releases.example/stroppy_flows.whl",
                "cloud_package_sha256": "1" * 64,
                "cloud_requirements_url": "https://releases.example/requirements.txt",
                "cloud_requirements_sha256": "2" * 64,
            }
        )
        configured = unconfigured.model_copy(update={"archive_s3_block": bucket_name})
        settings = yandex_target.target_settings(configured, configured_cloud)
        assert isinstance(settings, YandexTargetSettings)
        assert settings.placement.folder_id == FOLDER and settings.placement.image_id == "fd8image"
        assert settings.terraform.state_root == configured_cloud.terraform_state_dir
        assert settings.terraform.log_level == "WARN"
        assert settings.bootstrap is not None and settings.bootstrap_missing == []
        assert settings.bootstrap.lockbox_secret_id == "e6qsecret"
        assert yandex_target.bounds(configured, configured_cloud) == TargetBounds(
            create_machines_s=300 + 1800 + 60, agents_ready_s=900, start_services_s=900 * 5 + 60
        )
        assert docker_target.bounds(configured).agents_ready_s == docker_target.DockerSettings().agents_ready_timeout_s
        # By name, the target reads its own settings from the environment.
        monkeypatch.setenv("STROPPY_YANDEX_CLOUD_BLOCK", block_name)
        with open_target(Target.YANDEX_CLOUD, configured) as backend:
            assert isinstance(backend, YandexTarget)
            assert backend.state_location("run-x") == str(configured_cloud.terraform_state_dir / "run-x")
    finally:
        YandexCloud.delete(block_name, _sync=True)  # type: ignore[call-arg]
        S3Bucket.delete(bucket_name, _sync=True)  # type: ignore[call-arg]


def test_a_cloud_runners_load_files_come_back_through_the_results_bucket(tmp_path: Path) -> None:
    """The runner's half is the real `run-load` flow uploading; the master's half is the fetch `_dispatch_load` does."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    block_name = f"yc-load-{uuid.uuid4().hex[:8]}"
    try:
        host, port = server.get_host_and_port()
        credentials = AwsCredentials(
            aws_access_key_id="standin", aws_secret_access_key="standin-secret", region_name="us-east-1",
            aws_client_parameters=AwsClientParameters(endpoint_url=f"http://{host}:{port}"),
        )  # fmt: skip
        credentials.get_s3_client().create_bucket(Bucket="loads")
        S3Bucket(bucket_name="loads", credentials=credentials, bucket_folder="nightly").save(block_name)
        writes = """echo '{"metrics": {}}' > summary.json && echo '0 1 1000 0 1 1' > pgbench_log.1"""
        request = LoadRequest(
            run_id="yc-load-run", output_dir=str(tmp_path / "vm"), upload_block=block_name,
            steps=[LoadStep(name="load", argv=["sh", "-c", writes], timeout_s=30)],
            reply_to=ReplyTo(run_id="yc-load-run", s3_block=block_name),
        )  # fmt: skip
        state = run_load(request, return_state=True)
        outcome = read_reply(request.reply_to, str(state.state_details.flow_run_id), LoadOutcome)
        assert outcome.files == ["pgbench_log.1", "summary.json"], "the answer came back as JSON through the bucket"

        fetched = S3ResultStorage(S3Bucket.load(block_name, _sync=True)).fetch(
            f"yc-load-run/{LOAD_FILES_PREFIX}", tmp_path / "master"
        )
        assert sorted(fetched) == outcome.files
        assert json.loads((tmp_path / "master" / "summary.json").read_text()) == {"metrics": {}}
    finally:
        S3Bucket.delete(block_name, _sync=True)  # type: ignore[call-arg]
        server.stop()
