"""The operating commands against the running stack: status, setup from a config file, and `run` with progress."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from moto.server import ThreadedMotoServer

from blocks.grafana import GrafanaConnection
from blocks.redis import RedisConnection
from blocks.yandex_cloud import YandexCloud
from flows.run_steps import run_steps
from flows.setup import ZOMBIE_AUTOMATION
from infra.settings import OrchestrationSettings
from stroppy_domain.model import Target
from tests.e2e.test_orchestration import INSTANCE, pgbench_test

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.redis]

EXECUTABLE = shutil.which("stroppy-flows")


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    assert EXECUTABLE
    return subprocess.run(
        [EXECUTABLE, *args], capture_output=True, text=True, timeout=timeout, check=False, env=os.environ | (env or {})
    )


def saved_blocks(output: str) -> dict[str, str]:
    """Block name -> outcome, from setup's `KIND  NAME  OUTCOME` lines."""
    return {line.split()[1]: line.split()[2] for line in output.splitlines() if line[:10].strip() == "block"}


def test_status_reports_every_part_up() -> None:
    finished = cli("status")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    lines = finished.stdout.splitlines()
    assert len(lines) == 6 and all("  up  " in line for line in lines), finished.stdout


def test_setup_saves_each_block_once_and_prints_no_secret(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    names = {
        "STROPPY_REDIS_BLOCK": f"setup-redis-{suffix}", "STROPPY_GRAFANA_BLOCK": f"setup-grafana-{suffix}",
        "STROPPY_ARCHIVE_S3_BLOCK": f"setup-results-{suffix}", "STROPPY_YANDEX_CLOUD_BLOCK": f"setup-yc-{suffix}",
    }  # fmt: skip
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    config = {
        "redis": {"url": OrchestrationSettings().redis_url},
        "grafana": {"url": "https://grafana.example.com", "token": f"glsa-secret-{suffix}"},
        "s3": {"bucket": "results", "endpoint_url": f"http://{host}:{port}", "access_key_id": "standin",
               "secret_access_key": f"s3-secret-{suffix}"},
        "yandex_cloud": {"cloud_id": "b1gcloud", "folder_id": "b1gfolder", "network_id": "enpnet",
                         "service_account_key": f"yc-secret-{suffix}", "edge_image_id": "fd8image",
                         "control_plane_cidr": "10.0.0.0/24"},
    }  # fmt: skip
    path = tmp_path / "setup.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        first = cli("setup", "--config", str(path), env=names)
        assert first.returncode == 0, first.stdout + first.stderr
        assert saved_blocks(first.stdout) == dict.fromkeys(names.values(), "created")
        again = cli("setup", "--config", str(path), env=names)
        assert saved_blocks(again.stdout) == dict.fromkeys(names.values(), "unchanged")
        assert "secret" not in first.stdout + first.stderr + again.stdout + again.stderr
        assert "work pool   stroppy-master" in first.stdout
        zombies = f"automation  {ZOMBIE_AUTOMATION}"
        assert f"{zombies}  unchanged" in again.stdout, "the automation that crashes silent flow runs, kept as is"
        grafana = GrafanaConnection.load(names["STROPPY_GRAFANA_BLOCK"])
        assert grafana.token.get_secret_value() == f"glsa-secret-{suffix}"
        assert RedisConnection.load(names["STROPPY_REDIS_BLOCK"]).url == config["redis"]["url"]
        assert YandexCloud.load(names["STROPPY_YANDEX_CLOUD_BLOCK"]).folder_id == "b1gfolder"
        from prefect_aws import S3Bucket  # noqa: PLC0415

        bucket = S3Bucket.load(names["STROPPY_ARCHIVE_S3_BLOCK"])
        assert bucket.bucket_name == "results"
        assert bucket.credentials.aws_client_parameters.endpoint_url == f"http://{host}:{port}"
    finally:
        server.stop()


def test_setup_saves_the_docker_engine_and_registry_blocks_once_and_prints_no_secret(tmp_path: Path) -> None:
    from prefect_docker.credentials import DockerRegistryCredentials  # noqa: PLC0415
    from prefect_docker.host import DockerHost  # noqa: PLC0415

    suffix = uuid.uuid4().hex[:8]
    names = {
        "STROPPY_DOCKER_HOST_BLOCK": f"setup-docker-{suffix}", "STROPPY_REGISTRY_BLOCK": f"setup-registry-{suffix}",
    }  # fmt: skip
    config = {
        "docker": {"base_url": "tcp://docker.example:2376", "tls": {"cert_dir": "/etc/stroppy/docker-tls"}},
        "registry": {"registry_url": "registry.example:5000", "username": "stroppy"},
    }
    path = tmp_path / "setup.yaml"
    path.write_text(yaml.safe_dump(config))
    env = names | {"STROPPY_SETUP_REGISTRY__PASSWORD": f"registry-secret-{suffix}"}
    first = cli("setup", "--config", str(path), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert saved_blocks(first.stdout) == dict.fromkeys(names.values(), "created")
    again = cli("setup", "--config", str(path), env=env)
    assert saved_blocks(again.stdout) == dict.fromkeys(names.values(), "unchanged")
    assert "secret" not in first.stdout + first.stderr + again.stdout + again.stderr
    host = DockerHost.load(names["STROPPY_DOCKER_HOST_BLOCK"])
    assert host.base_url is None
    assert host.client_kwargs["environment"]["DOCKER_HOST"] == "tcp://docker.example:2376"
    credentials = DockerRegistryCredentials.load(names["STROPPY_REGISTRY_BLOCK"])
    assert (credentials.registry_url, credentials.username) == ("registry.example:5000", "stroppy")
    assert credentials.password.get_secret_value() == f"registry-secret-{suffix}"


def test_run_follows_a_suite_step_by_step_to_its_results_table(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "e2e-cli-run", "tests": [pgbench_test("cli-single", INSTANCE, 3)]}))
    finished = cli("run", str(suite), "--poll", "1", timeout=900)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    output = finished.stdout
    # Steps shorter than a poll may get no line; starting the services and the load always last longer.
    for text in ("cli-single: step start_services", "cli-single: step run_load", "cli-single: Completed",
                 "suite e2e-cli-run: Completed", "TEST"):  # fmt: skip
        assert text in output, output
    shown = [line.split("step ", 1)[1] for line in output.splitlines() if "cli-single: step " in line]
    in_order = [step for step in run_steps(Target.DOCKER) if step in shown]
    assert shown == in_order, "steps are shown in the order they run"
    (row,) = [line for line in output.splitlines() if line.startswith("cli-single ")]
    assert "COMPLETED" in row and "PASSED" in row and "tps " in row and "/d/stroppy-run-overview/" in row
    (report,) = [line.removeprefix("report: ") for line in output.splitlines() if line.startswith("report: ")]
    assert report.endswith("/report.html") and Path(report).is_file(), "run prints where the suite's report is"
    assert "cli-single" in Path(report).read_text()
