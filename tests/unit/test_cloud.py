"""A run on Yandex Cloud as data: Terraform variables from a plan, and each machine's cloud-init user-data."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import PurePosixPath

import pytest
import yaml

from infra.targets.yandex.backend import SERVICE_ACCOUNT_DESCRIPTION
from stroppy_domain.cloud import (
    AGENT_STATE_DIR,
    CREDENTIALS_ENV,
    INSTALL_AGENT,
    LOCKED_REQUIREMENTS,
    MACHINE_FILES_DIR,
    PACKAGE_REQUIREMENT,
    EdgeBootstrap,
    EdgeRelease,
    YandexPlacement,
    edge_user_data,
    expires_label,
    terraform_variables,
)
from stroppy_domain.model import Target
from stroppy_domain.placement import plan_run
from stroppy_domain.services import LOAD_PASSFILE
from stroppy_domain.settings import PlannerSettings
from stroppy_domain.validation import validate_suite
from tests.conftest import REPO, fixed_passwords, fresh_suite

MODULE = REPO / "infra" / "terraform" / "yandex"
PLACEMENT = YandexPlacement(
    folder_id="b1gfolder", zone="ru-central1-a", network_id="enpnetwork", image_id="fd8image",
    platform_id="standard-v3", public_ip=False, control_plane_cidr="10.0.0.0/24",
)  # fmt: skip
EXPIRES = datetime(2026, 11, 27, 4, 5, 6, tzinfo=UTC)
YC_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
YC_LABEL_VALUE = re.compile(r"^[-_./\\@0-9a-z]{0,63}$")


def declared(kind: str) -> set[str]:
    return {name for path in MODULE.glob("*.tf") for name in re.findall(rf'^{kind} "(\w+)"', path.read_text(), re.M)}


def cluster_plan():
    test = validate_suite(fresh_suite()).tests[1]
    return plan_run(test, Target.DOCKER, "10.120.3.0/24", PlannerSettings(), fixed_passwords)


@pytest.mark.parametrize("run_id", ["run-0123456789ab", "run-a"])
def test_variables_give_every_planned_machine_its_address_and_hardware(run_id: str) -> None:
    plan = cluster_plan()
    user_data = {machine.name: f"#cloud-config for {machine.name}" for machine in plan.machines}
    variables = terraform_variables(run_id, plan, EXPIRES, PLACEMENT, "e6qsecret", user_data)
    assert set(variables) == declared("variable")
    machines = variables["machines"]
    assert sorted(machines) == sorted(machine.name for machine in plan.machines)
    for machine in plan.machines:
        assert machines[machine.name] == {
            "ip": machine.ip, "cores": machine.hardware.cores, "memory_gb": machine.hardware.memory_gb,
            "disk_gb": machine.hardware.disk_gb, "disk_type": "network-ssd", "user_data": user_data[machine.name],
        }  # fmt: skip
        assert YC_NAME.match(f"stroppy-{run_id}-{machine.name}"), machine.name
    assert variables["subnet"] == "10.120.3.0/24"
    assert YC_LABEL_VALUE.match(variables["expires_at"]) and variables["expires_at"] == "20261127t040506z"


def test_the_module_outputs_the_machines_the_target_reads() -> None:
    assert declared("output") == {"machines"}
    assert expires_label(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "20260102t030405z"


RELEASE = EdgeRelease(
    prefect_api_url="http://10.0.0.5:4200/api",
    package_url="https://releases.example.com/stroppy_flows-0.1.0-py3-none-any.whl", package_sha256="a" * 64,
    requirements_url="https://releases.example.com/requirements.txt", requirements_sha256="c" * 64,
)  # fmt: skip
BOOTSTRAP = EdgeBootstrap(
    queue="run-0123456789ab-stroppy-runner", lockbox_secret_id="e6qsecret",
    release=RELEASE,
)  # fmt: skip


def test_user_data_installs_the_pinned_package_and_a_hardened_agent_for_the_queue() -> None:
    text = edge_user_data(BOOTSTRAP)
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    files = {item["path"]: item["content"] for item in config["write_files"]}
    unit = files["/etc/systemd/system/stroppy-edge.service"]
    assert "ExecStart=/opt/stroppy-flows/bin/stroppy-flows edge-agent --queue run-0123456789ab-stroppy-runner" in unit
    for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes"):
        assert hardening in unit
    assert f"EnvironmentFile=-{CREDENTIALS_ENV}" in unit
    assert "Environment=PATH=/opt/stroppy-flows/bin:" in unit
    assert f"ReadWritePaths={AGENT_STATE_DIR} {MACHINE_FILES_DIR}" in unit
    assert str(PurePosixPath(LOAD_PASSFILE).parent) == MACHINE_FILES_DIR
    environment = dict(line.split("=", 1) for line in files["/etc/stroppy/edge.env"].splitlines())
    assert environment["PREFECT_API_URL"] == "http://10.0.0.5:4200/api"
    assert "PREFECT_DEFAULT_RESULT_STORAGE_BLOCK" not in environment, "a machine persists no Prefect result"
    assert environment["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] == "false"
    assert environment["PREFECT_HOME"].startswith(AGENT_STATE_DIR)
    assert "/secrets/e6qsecret/payload" in files["/usr/local/lib/stroppy/fetch-credentials"]
    assert files[PACKAGE_REQUIREMENT] == f"stroppy-flows @ {RELEASE.package_url} --hash=sha256:{'a' * 64}\n"
    assert config["runcmd"] == [[INSTALL_AGENT]]
    lines = files[INSTALL_AGENT].splitlines()
    assert lines[:3] == ["#!/bin/sh", lines[1], "set -eu"], "the first failing step stops the install"
    order = [
        f"curl -fsSL --retry 5 -m 300 -o {LOCKED_REQUIREMENTS} {RELEASE.requirements_url}",
        f"echo '{'c' * 64}  {LOCKED_REQUIREMENTS}' | sha256sum --check --strict",
        f"/opt/stroppy-flows/bin/pip install --require-hashes --no-deps --requirement {LOCKED_REQUIREMENTS}",
        f"/opt/stroppy-flows/bin/pip install --require-hashes --no-deps --requirement {PACKAGE_REQUIREMENT}",
        "systemctl enable --now docker stroppy-edge",
    ]
    assert [lines.index(line) for line in order] == sorted(lines.index(line) for line in order)
    fetch = files["/usr/local/lib/stroppy/fetch-credentials"].splitlines()
    assert "set -eu" in fetch and fetch.index("test -s /run/stroppy/agent.env.new") < len(fetch) - 1
    assert not [line for line in fetch if "|" in line and "curl" in line], "no unchecked pipe from curl"


def test_user_data_carries_references_only() -> None:
    text = edge_user_data(BOOTSTRAP)
    for secret_marker in ("PREFECT_API_KEY", "AUTH_STRING", "private_key", "BEGIN ", "password"):
        assert secret_marker not in text
    assert set(EdgeBootstrap.model_fields) == {"queue", "lockbox_secret_id", "release"}
    assert set(EdgeRelease.model_fields) == {
        "prefect_api_url", "package_url", "package_sha256", "requirements_url", "requirements_sha256"
    }  # fmt: skip


def test_the_module_describes_its_service_account_as_the_target_reads_it() -> None:
    expected = SERVICE_ACCOUNT_DESCRIPTION.format(run_id="${var.run_id}", expires_at="${var.expires_at}")
    assert f'account_description = "{expected}"' in (MODULE / "locals.tf").read_text()
