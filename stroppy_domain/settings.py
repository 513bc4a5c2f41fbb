"""Installation settings the planner needs: the image catalogue and each target's address space.

These are plain models; reading them from the environment or from Blocks is the job of the outer layers.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from stroppy_domain.capacity import HostCapacity
from stroppy_domain.model import InputModel, Integer, StorageEngine, Target

PROJECT_VERSION = "0.1.0"
DB_NODE_IMAGE = f"stroppy-flows/db-node:{PROJECT_VERSION}-pg17"

_REFERENCE = re.compile(
    r"^(?P<name>[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def check_pinned_image(reference: str) -> str:
    """An image reference pinned by a version tag or a digest; `:latest` and bare names are refused.

    Raises ValueError for anything else (a line break or a space included)."""
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        raise ValueError("not an image reference (expected NAME:TAG or NAME@sha256:DIGEST)")
    if match.group("digest") is None and match.group("tag") in {None, "latest"}:
        raise ValueError("images must be pinned by a version tag or a digest, never ':latest' or untagged")
    return reference


PinnedImage = Annotated[str, AfterValidator(check_pinned_image)]


class ImageCatalogue(InputModel):
    """Which image runs each kind of service. PostgreSQL images are keyed `<version>` or `<version>-orioledb`."""

    postgres: dict[str, PinnedImage] = Field(default_factory=lambda: {"17": DB_NODE_IMAGE})
    etcd: PinnedImage = DB_NODE_IMAGE
    pgbouncer: PinnedImage = DB_NODE_IMAGE
    node_exporter: PinnedImage = DB_NODE_IMAGE
    postgres_exporter: PinnedImage = DB_NODE_IMAGE
    pgbouncer_exporter: PinnedImage = DB_NODE_IMAGE
    backup: PinnedImage = DB_NODE_IMAGE

    @field_validator("postgres")
    @classmethod
    def _version_keys(cls, images: dict[str, str]) -> dict[str, str]:
        for key in images:
            if not re.fullmatch(r"(16|17|18)(-orioledb)?", key):
                raise ValueError(f"key {key!r} must be a PostgreSQL version (16, 17, 18), optionally '-orioledb'")
        return images

    @staticmethod
    def postgres_key(version: int, engine: StorageEngine) -> str:
        return f"{version}-orioledb" if engine is StorageEngine.ORIOLEDB else str(version)


def _check_cidr(text: str) -> str:
    network = ipaddress.ip_network(text, strict=True)
    if network.version != 4:
        raise ValueError("only IPv4 networks are supported")
    return str(network)


class AddressSpace(InputModel):
    """The private range a target carves per-run subnets from, and the size of each subnet."""

    base_cidr: Annotated[str, AfterValidator(_check_cidr)]
    prefix: Integer = Field(default=24, ge=8, le=29)

    @field_validator("prefix")
    @classmethod
    def _prefix_inside_base(cls, prefix: int, info: object) -> int:
        base = getattr(info, "data", {}).get("base_cidr")
        if base is not None and prefix < ipaddress.ip_network(base).prefixlen:
            raise ValueError(f"prefix /{prefix} is larger than the base network {base}")
        return prefix


def _default_address_spaces() -> dict[Target, AddressSpace]:
    return {
        Target.DOCKER: AddressSpace(base_cidr="172.28.0.0/16", prefix=24),
        Target.YANDEX_CLOUD: AddressSpace(base_cidr="10.2.0.0/16", prefix=24),
    }


class PlannerSettings(InputModel):
    images: ImageCatalogue = Field(default_factory=ImageCatalogue)
    address_spaces: dict[Target, AddressSpace] = Field(default_factory=_default_address_spaces)
    host_capacity: dict[Target, HostCapacity] = Field(
        default_factory=dict,
        description="The size of the one host a target's machines share (Docker), when known: tests that cannot "
        "fit it fail validation. A run fills it from the engine; `validate --settings` may name it.",
    )

    def address_space(self, target: Target) -> AddressSpace:
        return self.address_spaces.get(target) or _default_address_spaces()[target]
