"""Each image's Debian package list, recorded when it is built: what `dpkg-query` lists inside it, kept by the
image's content ID so a run's manifest can say exactly which packages its images held."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from infra.settings import REPOSITORY

if TYPE_CHECKING:
    import docker

PACKAGES_DIR = REPOSITORY / ".state" / "image-packages"
LIST_COMMAND = ["-W", "-f", "${Package}=${Version}\\n"]


def _list_file(image_id: str, directory: Path) -> Path:
    return directory / f"{image_id.removeprefix('sha256:')}.txt"


def record_packages(
    client: docker.DockerClient,
    references: list[str],
    progress: Callable[[str], None],
    directory: Path = PACKAGES_DIR,
) -> None:
    """List the packages of each image that has no list yet, in a throwaway container without network.

    Raises docker.errors.DockerException when an image is missing or the listing fails."""
    directory.mkdir(parents=True, exist_ok=True)
    for reference in references:
        target = _list_file(str(client.images.get(reference).id), directory)
        if target.is_file():
            continue
        listed = client.containers.run(
            reference, LIST_COMMAND, entrypoint=["dpkg-query"], remove=True, network_disabled=True, user="root"
        )
        target.write_bytes(listed)
        progress(f"{reference}: {len(listed.splitlines())} packages recorded")


def package_lists(image_ids: dict[str, str], directory: Path = PACKAGES_DIR) -> dict[str, str]:
    """The recorded package list of each image, by reference, from its content ID (`infra.images.image_ids`); an
    image without a recorded list is left out."""
    lists = {}
    for reference, image_id in image_ids.items():
        path = _list_file(image_id, directory)
        if image_id.startswith("sha256:") and path.is_file():
            lists[reference] = path.read_text()
    return lists
