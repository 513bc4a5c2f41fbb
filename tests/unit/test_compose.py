"""compose.yaml for installations that reach registries: pinned images, and Grafana provisioned with this repository's
dashboards and the datasource they use. (Starting it needs a registry, which these machines lack.)"""

from __future__ import annotations

import json
import re

import yaml

from flows.setup import FLOW_HEARTBEAT_S, SILENT_AFTER_S
from infra.grafana import DASHBOARDS_DIR, DATASOURCE_UID, FOLDER_UID
from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text())


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in COMPOSE["services"].items():
        image = service["image"]
        if image.startswith("${"):
            continue  # the project's own edge image, by its content tag
        assert re.search(r":v?\d+(\.\d+)+", image) and not image.endswith(":latest"), (name, image)


def test_grafana_is_provisioned_with_the_repository_dashboards_and_their_datasource() -> None:
    mounts = {target: source for source, target, _ in (v.split(":") for v in COMPOSE["services"]["grafana"]["volumes"])}
    provisioning = REPO / mounts["/etc/grafana/provisioning"].removeprefix("./")
    assert REPO / mounts["/var/lib/grafana/dashboards/stroppy"].removeprefix("./") == DASHBOARDS_DIR
    (source,) = yaml.safe_load((provisioning / "datasources" / "stroppy.yaml").read_text())["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "stroppy.yaml").read_text())["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/stroppy" and provider["folderUid"] == FOLDER_UID
    for path in DASHBOARDS_DIR.glob("*.json"):
        assert json.loads(path.read_text())["panels"][0]["datasource"]["uid"] == DATASOURCE_UID


def test_victoria_metrics_and_the_master_share_the_scrape_targets() -> None:
    services = COMPOSE["services"]
    master_env = services["master"]["environment"]
    targets = master_env["STROPPY_METRICS_TARGETS_DIR"]
    assert f"scrape-targets:{targets}" in services["master"]["volumes"]
    assert f"scrape-targets:{targets}:ro" in services["victoria-metrics"]["volumes"]
    scrape = yaml.safe_load((REPO / "infra" / "metrics" / "scrape.yml").read_text())
    assert scrape["scrape_configs"][0]["file_sd_configs"][0]["files"] == [f"{targets}/*.json"]


def test_state_that_must_outlive_a_restart_is_kept_outside_the_containers() -> None:
    services = COMPOSE["services"]
    redis = services["redis"]
    mounts = {target: source for source, target, *_ in (v.split(":") for v in redis["volumes"])}
    config = mounts[redis["command"][1]]
    assert REPO / config.removeprefix("./") == REPO / "infra" / "redis" / "redis.conf"
    assert "appendonly yes" in (REPO / "infra" / "redis" / "redis.conf").read_text().splitlines()
    data = redis["command"][redis["command"].index("--dir") + 1]
    assert mounts[data] in COMPOSE["volumes"], "Redis's append-only file is on a volume"
    master = services["master"]
    assert "${STROPPY_HOME}:${STROPPY_HOME}" in master["volumes"], "the master's state is on the host"
    for setting in ("STROPPY_RESULTS_DIR", "STROPPY_ARCHIVE_DIR", "STROPPY_HISTORY_DIR", "STROPPY_TERRAFORM_STATE_DIR"):
        assert re.match(r"\$\{STROPPY_HOME(:\?[^}]*)?\}/", master["environment"][setting]), setting


def test_the_masters_flow_runs_beat_as_often_as_the_zombie_automation_expects() -> None:
    master_env = COMPOSE["services"]["master"]["environment"]
    assert master_env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(FLOW_HEARTBEAT_S)
    stack = (REPO / "scripts" / "control-plane.sh").read_text()
    assert f"PREFECT_FLOWS_HEARTBEAT_FREQUENCY={FLOW_HEARTBEAT_S} " in stack
    assert SILENT_AFTER_S >= 3 * FLOW_HEARTBEAT_S


def test_the_api_and_grafana_are_published_on_loopback_and_the_api_requires_auth() -> None:
    services = COMPOSE["services"]
    server, grafana, master = services["prefect-server"], services["grafana"], services["master"]
    published = [*server["ports"], *grafana["ports"]]
    assert all(not re.fullmatch(r"\d+:\d+", port) for port in published), "a port published on every interface"
    assert "${STROPPY_PUBLISH_ADDRESS:-127.0.0.1}:4200:4200" in server["ports"]
    assert grafana["ports"] == ["${STROPPY_PUBLISH_ADDRESS:-127.0.0.1}:3000:3000"]
    bridge = next(port.rsplit(":", 2)[0] for port in server["ports"] if "BRIDGE" in port)
    assert master["environment"]["STROPPY_EDGE_API_URL"] == f"http://{bridge}:4200/api", "machines reach the API"
    auth = server["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert auth.startswith("${PREFECT_API_AUTH_STRING:?") and master["environment"]["PREFECT_API_AUTH_STRING"] == auth


def test_two_master_workers_share_each_targets_limit_whose_slots_outlive_a_server_restart() -> None:
    services = COMPOSE["services"]
    assert services["master"]["deploy"]["replicas"] >= 2
    assert services["master"]["image"].startswith("${STROPPY_MASTER_IMAGE:?"), "the image with the master's packages"
    server = services["prefect-server"]
    storage = "prefect.server.concurrency.lease_storage.filesystem"
    assert server["environment"]["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == storage
    (home,) = server["volumes"]
    volume, path = home.split(":")
    assert volume in COMPOSE["volumes"] and path == "/root/.prefect", "the leases' files are on a volume"
    assert f"PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE={storage}" in (REPO / "scripts" / "control-plane.sh").read_text()
