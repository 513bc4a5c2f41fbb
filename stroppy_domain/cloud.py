"""A run on Yandex Cloud, as data: the Terraform variables of infra/terraform/yandex and each machine's cloud-init.

Pure: the Yandex Cloud target (to come) feeds these to the Terraform runner. The user-data carries references
only (the Lockbox secret's id, the queue, URLs and checksums); the edge agent fetches its credentials at boot with
the machine's service account, so no secret is ever in a VM's metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import PurePosixPath

import yaml
from pydantic import Field

from stroppy_domain.model import Model
from stroppy_domain.plan import RunPlan
from stroppy_domain.services import LOAD_PASSFILE

EDGE_SERVICE = "stroppy-edge"
CREDENTIALS_ENV = "/run/stroppy/agent.env"
LOCKED_REQUIREMENTS = "/etc/stroppy/requirements.txt"
INSTALL_AGENT = "/usr/local/lib/stroppy/install-agent"
AGENT_STATE_DIR = "/var/lib/stroppy"
"""The one directory the edge agent may write (besides the load's pgpass directory): runs, Prefect's home."""
MACHINE_FILES_DIR = str(PurePosixPath(LOAD_PASSFILE).parent)
"""Where the machine's own secret files go (the load's pgpass); the agent writes them there."""
PACKAGE_REQUIREMENT = "/etc/stroppy/package.txt"
LOCKBOX_PAYLOAD_URL = "https://payload.lockbox.api.cloud.yandex.net/lockbox/v1/secrets/{secret}/payload"
METADATA_TOKEN_URL = "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token"


class YandexPlacement(Model):
    """Where a run's machines go: the non-secret part of the YandexCloud block."""

    folder_id: str
    zone: str
    network_id: str
    image_id: str
    platform_id: str
    public_ip: bool
    control_plane_cidr: str
    route_table_id: str | None = None
    disk_type: str = "network-ssd"


SHA256 = r"^[0-9a-f]{64}$"


class EdgeRelease(Model):
    """What every machine installs, each file pinned by its sha256, and where it reports to."""

    prefect_api_url: str = Field(description="The Prefect API as the machines reach it.")
    package_url: str = Field(description="This project's wheel.")
    package_sha256: str = Field(pattern=SHA256)
    requirements_url: str = Field(description="Its locked dependencies with their hashes (`requirements.txt`).")
    requirements_sha256: str = Field(pattern=SHA256)


class EdgeBootstrap(Model):
    """What a machine needs to become an edge agent: only references, never credentials."""

    queue: str
    lockbox_secret_id: str
    release: EdgeRelease


EXPIRES_LABEL_FORMAT = "%Y%m%dt%H%M%Sz"


def expires_label(moment: datetime) -> str:
    """A label value Yandex Cloud accepts (lowercase letters, digits, no colons): 20261126t230000z."""
    return moment.astimezone(UTC).strftime(EXPIRES_LABEL_FORMAT)


def parse_expires_label(value: str) -> datetime | None:
    """The moment an `expires_label` names; None for a value that is not one (the resource is not ours to judge)."""
    try:
        return datetime.strptime(value, EXPIRES_LABEL_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def terraform_variables(
    run_id: str,
    plan: RunPlan,
    expires_at: datetime,
    placement: YandexPlacement,
    lockbox_secret_id: str,
    user_data: dict[str, str],
) -> dict[str, object]:
    """The variables of infra/terraform/yandex for one run: one VM per planned machine, at its planned address."""
    return {
        "run_id": run_id,
        "expires_at": expires_label(expires_at),
        "folder_id": placement.folder_id,
        "zone": placement.zone,
        "network_id": placement.network_id,
        "subnet": plan.subnet,
        "control_plane_cidr": placement.control_plane_cidr,
        "image_id": placement.image_id,
        "platform_id": placement.platform_id,
        "public_ip": placement.public_ip,
        "route_table_id": placement.route_table_id,
        "lockbox_secret_id": lockbox_secret_id,
        "machines": {
            machine.name: {
                "ip": machine.ip,
                "cores": machine.hardware.cores,
                "memory_gb": machine.hardware.memory_gb,
                "disk_gb": machine.hardware.disk_gb,
                "disk_type": placement.disk_type,
                "user_data": user_data[machine.name],
            }
            for machine in plan.machines
        },
    }


_FETCH_CREDENTIALS = """#!/bin/sh
# Reads the edge agent's credentials from Lockbox with this VM's service account; nothing secret is in user-data.
# Every step is checked: an empty token or payload stops the agent from starting instead of starting it unauthorised.
set -eu
umask 077
mkdir -p /run/stroppy
curl -fsS -m 10 --retry 5 -H 'Metadata-Flavor: Google' -o /run/stroppy/token.json {metadata_url}
token=$(jq -er .access_token /run/stroppy/token.json)
rm -f /run/stroppy/token.json
curl -fsS -m 10 --retry 5 -H "Authorization: Bearer $token" -o /run/stroppy/payload.json {payload_url}
jq -er '.entries[] | "\\(.key)=\\(.textValue)"' /run/stroppy/payload.json > {env_file}.new
rm -f /run/stroppy/payload.json
test -s {env_file}.new
mv {env_file}.new {env_file}
"""

_INSTALL_AGENT = """#!/bin/sh
# Installs the edge agent, each file checked against its pinned sha256; the first failure stops the install.
set -eu
curl -fsSL --retry 5 -m 300 -o {requirements} {requirements_url}
echo '{requirements_sha256}  {requirements}' | sha256sum --check --strict
python3 -m venv /opt/stroppy-flows
/opt/stroppy-flows/bin/pip install --require-hashes --no-deps --requirement {requirements}
/opt/stroppy-flows/bin/pip install --require-hashes --no-deps --requirement {package}
install -d -o stroppy -g stroppy -m 0750 {state_dir}
install -d -o stroppy -g stroppy -m 0700 {files_dir}
systemctl daemon-reload
systemctl enable --now docker {service}
"""

_UNIT = """[Unit]
Description=stroppy-flows edge agent for queue {queue}
Wants=network-online.target docker.service
After=network-online.target docker.service

[Service]
User=stroppy
Group=stroppy
SupplementaryGroups=docker
Environment=PATH=/opt/stroppy-flows/bin:/usr/sbin:/usr/bin:/sbin:/bin
EnvironmentFile=/etc/stroppy/edge.env
# Written by ExecStartPre; "-" because it cannot exist before then (systemd reads it again for ExecStart).
EnvironmentFile=-{env_file}
ExecStartPre=+/usr/local/lib/stroppy/fetch-credentials
ExecStart=/opt/stroppy-flows/bin/stroppy-flows edge-agent --queue {queue}
Restart=on-failure
RestartSec=5
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
ReadWritePaths={state_dir} {files_dir}

[Install]
WantedBy=multi-user.target
"""


def edge_user_data(bootstrap: EdgeBootstrap) -> str:
    """#cloud-config for a machine: Docker, this project's pinned wheel, and the agent as a hardened service.

    Every Python package is installed by hash: the dependencies from the release's locked requirements (whose own
    sha256 is checked first), then the project's wheel, both with `--require-hashes --no-deps`; any failure stops
    the install before the agent is enabled.
    """
    release = bootstrap.release
    config = {
        "package_update": True,
        "packages": ["docker.io", "python3-venv", "curl", "jq"],
        "users": [{"name": "stroppy", "system": True, "groups": ["docker"], "shell": "/usr/sbin/nologin"}],
        "write_files": [
            {
                "path": "/usr/local/lib/stroppy/fetch-credentials",
                "permissions": "0755",
                "content": _FETCH_CREDENTIALS.format(
                    metadata_url=METADATA_TOKEN_URL,
                    payload_url=LOCKBOX_PAYLOAD_URL.format(secret=bootstrap.lockbox_secret_id),
                    env_file=CREDENTIALS_ENV,
                ),
            },
            {
                "path": "/etc/stroppy/edge.env",
                "permissions": "0644",
                "content": "".join(
                    f"{key}={value}\n"
                    for key, value in {
                        "PREFECT_API_URL": release.prefect_api_url,
                        "PREFECT_WORKER_QUERY_SECONDS": "1",
                        "PREFECT_HOME": f"{AGENT_STATE_DIR}/prefect",
                        # Edge flows answer through the bucket as JSON; no Prefect result is persisted.
                        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
                        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    }.items()
                ),
            },
            {
                "path": PACKAGE_REQUIREMENT,
                "permissions": "0644",
                "content": f"stroppy-flows @ {release.package_url} --hash=sha256:{release.package_sha256}\n",
            },
            {
                "path": INSTALL_AGENT,
                "permissions": "0755",
                "content": _INSTALL_AGENT.format(
                    requirements=LOCKED_REQUIREMENTS,
                    requirements_url=release.requirements_url,
                    requirements_sha256=release.requirements_sha256,
                    package=PACKAGE_REQUIREMENT,
                    state_dir=AGENT_STATE_DIR,
                    files_dir=MACHINE_FILES_DIR,
                    service=EDGE_SERVICE,
                ),
            },
            {
                "path": f"/etc/systemd/system/{EDGE_SERVICE}.service",
                "permissions": "0644",
                "content": _UNIT.format(
                    queue=bootstrap.queue,
                    env_file=CREDENTIALS_ENV,
                    state_dir=AGENT_STATE_DIR,
                    files_dir=MACHINE_FILES_DIR,
                ),
            },
        ],
        # cloud-init runs these without `set -e`, so the install is one script that stops at its first failure.
        "runcmd": [[INSTALL_AGENT]],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)
