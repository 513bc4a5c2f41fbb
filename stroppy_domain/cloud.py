"""A run on Yandex Cloud, as data: the Terraform variables of infra/terraform/yandex and each machine's cloud-init.

Pure: the Yandex Cloud target (to come) feeds these to the Terraform runner. The user-data carries references
only (the Lockbox secret's id, the queue, URLs and checksums); the edge agent fetches its credentials at boot with
the machine's service account, so no secret is ever in a VM's metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime

import yaml
from pydantic import Field

from stroppy_domain.model import Model
from stroppy_domain.plan import RunPlan

EDGE_SERVICE = "stroppy-edge"
CREDENTIALS_ENV = "/run/stroppy/agent.env"
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
    lockbox_secret_id: str
    disk_type: str = "network-ssd"


class EdgeBootstrap(Model):
    """What a machine needs to become an edge agent: only references, never credentials."""

    queue: str
    prefect_api_url: str
    package_url: str = Field(description="This project's pinned wheel.")
    package_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    lockbox_secret_id: str


def expires_label(moment: datetime) -> str:
    """A label value Yandex Cloud accepts (lowercase letters, digits, no colons): 20261126t230000z."""
    return moment.astimezone(UTC).strftime("%Y%m%dt%H%M%Sz")


def terraform_variables(
    run_id: str, plan: RunPlan, expires_at: datetime, placement: YandexPlacement, user_data: dict[str, str]
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
        "lockbox_secret_id": placement.lockbox_secret_id,
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
set -eu
umask 077
mkdir -p /run/stroppy
token=$(curl -fsS -m 10 --retry 5 -H 'Metadata-Flavor: Google' {metadata_url} | jq -r .access_token)
curl -fsS -m 10 --retry 5 -H "Authorization: Bearer $token" {payload_url} \\
  | jq -r '.entries[] | "\\(.key)=\\(.textValue)"' > {env_file}.new
mv {env_file}.new {env_file}
"""

_UNIT = """[Unit]
Description=stroppy-flows edge agent for queue {queue}
Wants=network-online.target docker.service
After=network-online.target docker.service

[Service]
User=stroppy
Group=stroppy
SupplementaryGroups=docker
EnvironmentFile=/etc/stroppy/edge.env
EnvironmentFile={env_file}
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
ReadWritePaths=/var/lib/stroppy

[Install]
WantedBy=multi-user.target
"""


def edge_user_data(bootstrap: EdgeBootstrap) -> str:
    """#cloud-config for a machine: Docker, this project's pinned wheel, and the agent as a hardened service."""
    package = f"stroppy-flows @ {bootstrap.package_url}#sha256={bootstrap.package_sha256}"
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
                "content": f"PREFECT_API_URL={bootstrap.prefect_api_url}\nPREFECT_WORKER_QUERY_SECONDS=1\n",
            },
            {
                "path": f"/etc/systemd/system/{EDGE_SERVICE}.service",
                "permissions": "0644",
                "content": _UNIT.format(queue=bootstrap.queue, env_file=CREDENTIALS_ENV),
            },
        ],
        "runcmd": [
            ["install", "-d", "-o", "stroppy", "-g", "stroppy", "/var/lib/stroppy"],
            ["python3", "-m", "venv", "/opt/stroppy-flows"],
            ["/opt/stroppy-flows/bin/pip", "install", package],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", "docker", EDGE_SERVICE],
        ],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)
