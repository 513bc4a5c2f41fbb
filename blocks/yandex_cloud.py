"""Where and as whom the Yandex Cloud target creates a run's machines."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr


class YandexCloud(Block):
    """A Yandex Cloud folder and network for runs, and the service account that creates them.

    Examples:
        Show where the cloud target creates a run's machines:
        ```python
        from blocks.yandex_cloud import YandexCloud

        yandex_cloud = YandexCloud.load("BLOCK_NAME")
        print(yandex_cloud.folder_id, yandex_cloud.zone, yandex_cloud.network_id)
        ```
    """

    _block_type_name = "Stroppy Yandex Cloud"
    _description = "Yandex Cloud folder, network and credentials the stroppy-flows cloud target creates machines with."
    _documentation_url = HttpUrl("https://yandex.cloud/en/docs/iam/concepts/authorization/key")

    cloud_id: str = Field(description="The cloud's id (b1g...).")
    folder_id: str = Field(description="The folder runs are created in.")
    zone: str = Field(default="ru-central1-a", description="Availability zone of every machine.")
    network_id: str = Field(description="The VPC network each run's subnet is created in.")
    service_account_key: SecretStr = Field(
        description="Authorized key (JSON) of the service account Terraform acts as."
    )
    edge_image_id: str = Field(description="Boot image of machines (Debian with cloud-init).")
    platform_id: str = Field(default="standard-v3", description="VM platform.")
    control_plane_cidr: str = Field(
        description="Addresses of the master and the Prefect API, allowed through each run's security group."
    )
    public_ip: bool = Field(default=False, description="Give machines a public address.")
    route_table_id: str | None = Field(
        default=None,
        description="Route table with a NAT gateway for each run's subnet: how machines without a public address "
        "reach packages, the Prefect API and Lockbox.",
    )
    lockbox_secret_id: str | None = Field(
        default=None, description="Lockbox secret the edge agents read their Prefect credentials from at boot."
    )
