"""The project's images: names, content-hashed tags, and a builder that skips what is already up to date.

Tags are `<project version>-<hash of the build inputs>`, computed from the repository alone, so the image catalogue
is known without asking an engine. Three images, and a fourth on request:

- the base: Debian trixie, a pinned registry image where one is reachable, else built here with mmdebstrap
  from the Debian mirror and `docker import`ed;
- the database node (`db-node/Dockerfile`): every service of a topology;
- the edge (`edge/Dockerfile`): a run's machine, with this project installed from a wheelhouse built outside;
- the master (the same Dockerfile's `master` target, `build --master`): the edge plus what only the master uses, for
  compose.yaml's master worker.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from infra.images.packages import record_packages
from infra.settings import OrchestrationSettings
from stroppy_domain.errors import StroppyError
from stroppy_domain.settings import ImageCatalogue, PlannerSettings

if TYPE_CHECKING:
    import docker

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent.parent
PROJECT_VERSION = version("stroppy-flows")
DEBIAN_SUITE = "trixie"
REGISTRY_BASE = "debian:trixie-20251117-slim"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
BUILD_TIMEOUT_S = 1800
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")
EDGE_PYTHON = "3.13"
MASTER_ONLY_PACKAGES = ("prefect-aws", "prefect-docker", "grafana-client", "grafana-foundation-sdk", "pygal")
"""Left out of the edge image with what only they need: machines on Docker share the results directory, so they
upload nothing to S3; they start no container and never call Grafana, nor draw a report. (Redis and the Docker SDK
stay: Prefect itself needs them.) Cloud machines install the
whole release (`edge_release`), S3 included."""

Progress = Callable[[str], None]


class ImageBuildError(StroppyError):
    """An image could not be built; the message names the image and the step."""


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:12]


def _mirrors() -> tuple[str, str]:
    return (
        os.environ.get("STROPPY_DEBIAN_MIRROR", DEFAULT_MIRROR),
        os.environ.get("STROPPY_DEBIAN_SECURITY_MIRROR", DEFAULT_SECURITY_MIRROR),
    )


def _mmdebstrap_command(output: Path) -> list[str]:
    mirror, security = _mirrors()
    hook = (
        'printf "#!/bin/sh\\nexit 101\\n" > "$1/usr/sbin/policy-rc.d"; chmod +x "$1/usr/sbin/policy-rc.d"; '
        'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/archives/*.deb'
    )
    return [
        "mmdebstrap", "--variant=minbase", "--include=ca-certificates", f"--customize-hook={hook}", DEBIAN_SUITE,
        str(output), f"deb {mirror} {DEBIAN_SUITE} main", f"deb {mirror} {DEBIAN_SUITE}-updates main",
        f"deb {security} {DEBIAN_SUITE}-security main",
    ]  # fmt: skip


def _project_sources() -> list[Path]:
    packages = ("stroppy_domain", "infra", "blocks", "flows")
    files = [REPOSITORY / "pyproject.toml", REPOSITORY / "uv.lock"]
    for package in packages:
        files += sorted(
            path for path in (REPOSITORY / package).rglob("*") if path.is_file() and "__pycache__" not in path.parts
        )
    return files


@dataclass(frozen=True)
class ImageSet:
    """The tags of the images for the current checkout."""

    base: str
    db_node: str
    edge: str
    master: str

    @classmethod
    def for_checkout(cls) -> ImageSet:
        base_hash = _digest(" ".join(_mmdebstrap_command(Path("rootfs.tar"))).encode())
        db_node_hash = _digest(base_hash.encode(), (HERE / "db-node" / "Dockerfile").read_bytes())
        edge_hash = _digest(base_hash.encode(), *(path.read_bytes() for path in [HERE / "edge" / "Dockerfile"]),
                            *(path.read_bytes() for path in _project_sources()))  # fmt: skip
        return cls(
            base=f"stroppy-flows/debian:{DEBIAN_SUITE}-{base_hash}",
            db_node=f"stroppy-flows/db-node:{PROJECT_VERSION}-{db_node_hash}",
            edge=f"stroppy-flows/edge:{PROJECT_VERSION}-{edge_hash}",
            master=f"stroppy-flows/master:{PROJECT_VERSION}-{edge_hash}",
        )

    def catalogue(self) -> ImageCatalogue:
        """Every service kind runs from the database-node image, which carries PostgreSQL 17."""
        image = self.db_node
        return ImageCatalogue(
            postgres={"17": image}, etcd=image, pgbouncer=image, node_exporter=image, postgres_exporter=image,
            pgbouncer_exporter=image, backup=image,
        )  # fmt: skip


def planner_settings(settings: OrchestrationSettings | None = None) -> PlannerSettings:
    """Planner settings as the master's settings make them: its `address_spaces` over the built-in ranges, and the
    image catalogue in force (its `image_catalogue` setting when it is set, else the images this checkout builds;
    outside a checkout, the built-in defaults)."""
    settings = settings or OrchestrationSettings()
    spaces = {**PlannerSettings().address_spaces, **settings.address_spaces}
    if settings.image_catalogue is not None:
        return PlannerSettings(images=settings.image_catalogue, address_spaces=spaces)
    if not (REPOSITORY / "uv.lock").is_file():
        return PlannerSettings(address_spaces=spaces)
    return PlannerSettings(images=ImageSet.for_checkout().catalogue(), address_spaces=spaces)


def service_images(images: ImageSet) -> list[str]:
    """The images the planned service containers run (what cloud machines pull)."""
    catalogue = images.catalogue()
    return sorted(
        {*catalogue.postgres.values(), catalogue.etcd, catalogue.pgbouncer, catalogue.node_exporter,
         catalogue.postgres_exporter, catalogue.pgbouncer_exporter, catalogue.backup}
    )  # fmt: skip


def push_images(
    client: docker.DockerClient, registry: str, progress: Progress = print, images: ImageSet | None = None
) -> list[str]:
    """Tag the service images as `<registry>/<tag>` and push them; returns the pushed references.

    Raises ImageBuildError when an image cannot be tagged or the registry refuses the push."""
    import docker  # noqa: PLC0415

    pushed = []
    for tag in service_images(images or ImageSet.for_checkout()):
        reference = f"{registry.rstrip('/')}/{tag}"
        repository, _, version = reference.rpartition(":")
        progress(f"push {reference}")
        try:
            client.images.get(tag).tag(repository, version)
            # The engine reports push failures inside the stream, not as an error status.
            for event in client.api.push(repository, tag=version, stream=True, decode=True):
                if "error" in event:
                    raise ImageBuildError(f"push {reference}: {event['error']}")
        except docker.errors.DockerException as error:
            raise ImageBuildError(f"push {reference}: {error}") from error
        pushed.append(reference)
    return pushed


def missing_images(client: docker.DockerClient, images: ImageSet) -> list[str]:
    """The tags of `images` the engine does not have."""
    return [tag for tag in (images.base, images.db_node, images.edge) if not _exists(client, tag)]


def _exists(client: docker.DockerClient, reference: str) -> bool:
    import docker  # noqa: PLC0415 - the SDK loads only when images are built

    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True


IMAGE_LOOKUP_TIMEOUT_S = 30


def image_ids(references: list[str]) -> dict[str, str]:
    """The content ID (the sha256 of its configuration) of each image on this machine's engine, where the images are
    built and pushed from; for a reference it cannot resolve, why not."""
    import docker  # noqa: PLC0415 - the SDK loads only when images are looked up

    try:
        client = docker.from_env(timeout=IMAGE_LOOKUP_TIMEOUT_S)
    except docker.errors.DockerException as error:
        return dict.fromkeys(references, f"unknown: the engine does not answer ({error})")
    ids = {}
    with closing(client):
        for reference in references:
            try:
                ids[reference] = str(client.images.get(reference).id)
            except docker.errors.ImageNotFound:
                ids[reference] = "unknown: not on the engine that builds the images"
            except docker.errors.DockerException as error:
                ids[reference] = f"unknown: {error}"
    return ids


def _run(command: list[str], what: str, progress: Progress) -> None:
    progress(f"{what}: {' '.join(command[:3])} ...")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ImageBuildError(f"{what}: {error}") from error
    if result.returncode != 0:
        raise ImageBuildError(f"{what} failed ({result.returncode}): {(result.stderr or result.stdout)[-2000:]}")


def _base_from_registry(client: docker.DockerClient, tag: str, progress: Progress) -> bool:
    import docker  # noqa: PLC0415

    try:
        client.images.pull(REGISTRY_BASE)
    except docker.errors.APIError as error:
        progress(f"base: registry unreachable ({str(error)[:120]}); building it from the Debian mirror")
        return False
    client.images.get(REGISTRY_BASE).tag(tag)
    progress(f"base: tagged {REGISTRY_BASE} as {tag}")
    return True


def _build_base(client: docker.DockerClient, tag: str, progress: Progress) -> None:
    if _base_from_registry(client, tag, progress):
        return
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("base: mmdebstrap is not installed (apt-get install mmdebstrap)")
    with tempfile.TemporaryDirectory(prefix="stroppy-base-") as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        _run(_mmdebstrap_command(rootfs), "base: mmdebstrap", progress)
        repository, _, version_tag = tag.rpartition(":")
        progress(f"base: importing {rootfs.stat().st_size / 1e6:.0f} MB as {tag}")
        client.api.import_image(
            src=str(rootfs), repository=repository, tag=version_tag, changes=['CMD ["/bin/bash"]', "ENV LANG=C.UTF-8"]
        )
    if not _exists(client, tag):
        raise ImageBuildError(f"base: docker import did not produce {tag}")


def _docker_build(
    client: docker.DockerClient, context: Path, tag: str, base: str, progress: Progress, target: str | None = None
) -> None:
    progress(f"{tag}: building")
    log: list[str] = []
    for chunk in client.api.build(
        path=str(context), tag=tag, buildargs={"BASE": base}, rm=True, forcerm=True, decode=True,
        timeout=BUILD_TIMEOUT_S, labels={"stroppy.image": "true"}, target=target,
    ):  # fmt: skip
        if "error" in chunk:
            raise ImageBuildError(f"{tag}: {chunk['error'].strip()}\n" + "".join(log[-30:]))
        line = chunk.get("stream", "")
        log.append(line)
        if line.startswith("Step "):
            progress(f"{tag}: {line.strip()}")
    if not _exists(client, tag):
        raise ImageBuildError(f"{tag}: the build finished without producing the image\n" + "".join(log[-30:]))


def _project_wheel_and_requirements(
    directory: Path, requirements: Path, hashes: bool, what: str, progress: Progress, pruned: tuple[str, ...] = ()
) -> Path:
    """This project's wheel in `directory` and its locked dependencies (no dev group, no extras, none of `pruned` nor
    what only they need) in `requirements`."""
    _export_requirements(requirements, hashes, what, progress, pruned)
    before = set(directory.glob("*.whl"))
    _run(["uv", "build", "--wheel", "--out-dir", str(directory), str(REPOSITORY)], f"{what}: build the wheel", progress)
    built = sorted(set(directory.glob("*.whl")) - before) or sorted(directory.glob("stroppy_flows-*.whl"))
    if not built:
        raise ImageBuildError(f"{what}: uv build left no wheel in {directory}")
    return built[-1]


def _export_requirements(
    requirements: Path, hashes: bool, what: str, progress: Progress, pruned: tuple[str, ...] = ()
) -> None:
    export = ["uv", "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header", "--format",
              "requirements-txt", *([] if hashes else ["--no-hashes"]), "-o", str(requirements),
              *(argument for package in pruned for argument in ("--prune", package))]  # fmt: skip
    _run(export, f"{what}: export the locked requirements", progress)


def _edge_context(context: Path, progress: Progress, master: bool = False) -> None:
    """The edge build's inputs: this project's wheel in `project/`; in `wheelhouse/`, its locked requirements but
    the master's own (`MASTER_ONLY_PACKAGES`), each as a wheel for the edge image's Python. Kept apart so that a
    change to the project's code leaves the dependencies' layer cached. For the master image, every locked
    requirement too, in `master-wheelhouse/`."""
    wheelhouse = context / "wheelhouse"
    wheelhouse.mkdir()
    requirements = wheelhouse / "requirements.txt"
    _project_wheel_and_requirements(
        context / "project", requirements, hashes=False, what="edge", progress=progress, pruned=MASTER_ONLY_PACKAGES
    )
    _download_wheels(requirements, wheelhouse, "edge", progress)
    if master:
        everything = context / "master-wheelhouse"
        everything.mkdir()
        _export_requirements(everything / "requirements.txt", hashes=False, what="master", progress=progress)
        _download_wheels(everything / "requirements.txt", everything, "master", progress)


def _download_wheels(requirements: Path, wheelhouse: Path, what: str, progress: Progress) -> None:
    platforms = [argument for platform in WHEEL_PLATFORMS for argument in ("--platform", platform)]
    download = [
        "uv", "run", "--no-project", "--with", "pip", "python", "-m", "pip", "download", "--quiet",
        "--requirement", str(requirements), "--dest", str(wheelhouse), "--only-binary=:all:",
        "--python-version", EDGE_PYTHON, "--implementation", "cp", *platforms,
    ]  # fmt: skip
    _run(download, f"{what}: download dependency wheels", progress)


class EdgeReleaseFiles(BaseModel):
    """What cloud machines install: the wheel and its hash-pinned dependencies, each with its sha256."""

    package: Path
    package_sha256: str
    requirements: Path
    requirements_sha256: str


def edge_release(directory: Path, progress: Progress = print) -> EdgeReleaseFiles:
    """Write this checkout's wheel and `requirements.txt` (every dependency with its hashes) into `directory`.

    Raises ImageBuildError when `uv` cannot export the requirements or build the wheel."""
    directory.mkdir(parents=True, exist_ok=True)
    requirements = directory / "requirements.txt"
    wheel = _project_wheel_and_requirements(directory, requirements, hashes=True, what="release", progress=progress)
    return EdgeReleaseFiles(
        package=wheel,
        package_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        requirements=requirements,
        requirements_sha256=hashlib.sha256(requirements.read_bytes()).hexdigest(),
    )


def build_images(
    client: docker.DockerClient, progress: Progress = print, images: ImageSet | None = None, master: bool = False
) -> ImageSet:
    """Build whatever of the three images is missing (and of the master image, with `master`), and record the
    package list of any that has none; returns their tags.

    Raises ImageBuildError when a step fails (the base neither pulled nor built, a `docker build` or a `uv` command
    failing); the engine's own errors pass through as `docker.errors.DockerException`, which the CLI reports."""
    images = images or ImageSet.for_checkout()
    if _exists(client, images.base):
        progress(f"{images.base}: up to date")
    else:
        _build_base(client, images.base, progress)
    if _exists(client, images.db_node):
        progress(f"{images.db_node}: up to date")
    else:
        _docker_build(client, HERE / "db-node", images.db_node, images.base, progress)
    wanted = [(images.edge, "edge"), *([(images.master, "master")] if master else [])]
    for tag, target in wanted:
        if _exists(client, tag):
            progress(f"{tag}: up to date")
            continue
        with tempfile.TemporaryDirectory(prefix=f"stroppy-{target}-") as scratch:
            context = Path(scratch) / "context"
            context.mkdir()
            shutil.copy(HERE / "edge" / "Dockerfile", context / "Dockerfile")
            _edge_context(context, progress, master=target == "master")
            _docker_build(client, context, tag, images.base, progress, target=target)
    record_packages(client, [images.base, images.db_node, *(tag for tag, _ in wanted)], progress)
    _remove_stale(client, images, progress)
    return images


def _remove_stale(client: docker.DockerClient, images: ImageSet, progress: Progress) -> None:
    """Drop earlier builds of the project's images, so a machine keeps one set; images still in use stay."""
    import docker  # noqa: PLC0415

    current = {images.base, images.db_node, images.edge, images.master}
    for image in client.images.list(filters={"reference": "stroppy-flows/*"}):
        for tag in image.tags:
            if tag in current:
                continue
            try:
                client.images.remove(tag, noprune=False)
                progress(f"removed stale image {tag}")
            except docker.errors.APIError as error:
                progress(f"kept stale image {tag}: {error.explanation}")
