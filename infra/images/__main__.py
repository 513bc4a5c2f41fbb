"""`python -m infra.images build [--master]` builds the missing images (with `--master`, the master image too, for
compose.yaml); `python -m infra.images tags` prints their tags;
`python -m infra.images release [--out DIR]` writes what cloud machines install (the wheel and its hash-pinned
requirements) and the settings that pin them; `python -m infra.images push REGISTRY` pushes the service images
there (STROPPY_CLOUD_IMAGE_REGISTRY), logged in with the `DockerRegistryCredentials` block STROPPY_REGISTRY_BLOCK
names when one is saved. Images are built on, and pushed from, the engine the environment names (the stack's)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from infra.images import REPOSITORY, ImageBuildError, ImageSet, build_images, edge_release, push_images


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.images", description=__doc__)
    parser.add_argument("command", choices=("build", "tags", "release", "push"))
    parser.add_argument("registry", nargs="?", help="push: the registry, e.g. cr.yandex/<registry id>")
    parser.add_argument("--out", type=Path, default=REPOSITORY / ".state" / "release", help="release: where to write")
    parser.add_argument("--master", action="store_true", help="build: the master image too (compose.yaml's master)")
    args = parser.parse_args()
    if args.command == "tags":
        images = ImageSet.for_checkout()
        print(json.dumps(dataclasses.asdict(images), indent=2))
        return 0
    if args.command == "release":
        return _release(args.out)
    if args.command == "push" and not args.registry:
        parser.error("push needs the registry, e.g. `push cr.yandex/crp0123456789abcdef`")

    import docker  # noqa: PLC0415 - only building and pushing need the engine

    from infra.containers import registry_login  # noqa: PLC0415
    from infra.settings import OrchestrationSettings  # noqa: PLC0415
    from infra.targets.base import TargetError  # noqa: PLC0415

    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[images {time.monotonic() - started:6.1f}s] {message}", flush=True)

    try:
        client = docker.from_env(timeout=120)
        if args.command == "push":
            credentials = OrchestrationSettings().registry_block
            if registry_login(client, credentials):
                progress(f"logged in with block {credentials}")
            for reference in push_images(client, args.registry, progress):
                progress(f"pushed {reference}")
            return 0
        images = build_images(client, progress, master=args.master)
    except (ImageBuildError, TargetError, docker.errors.DockerException) as error:
        print(f"image {args.command} failed: {error}", file=sys.stderr)
        return 1
    for reference in (images.base, images.db_node, images.edge, *([images.master] if args.master else [])):
        size_mb = client.images.get(reference).attrs["Size"] / 1e6
        progress(f"{reference}: {size_mb:.0f} MB")
    return 0


def _release(directory: Path) -> int:
    try:
        files = edge_release(directory, progress=lambda message: print(f"[release] {message}", flush=True))
    except ImageBuildError as error:
        print(f"release failed: {error}", file=sys.stderr)
        return 1
    print(
        f"Publish {files.package} and {files.requirements} where the cloud machines can download them, then set:\n"
        f"  STROPPY_CLOUD_PACKAGE_URL=<where {files.package.name} is served>\n"
        f"  STROPPY_CLOUD_PACKAGE_SHA256={files.package_sha256}\n"
        f"  STROPPY_CLOUD_REQUIREMENTS_URL=<where {files.requirements.name} is served>\n"
        f"  STROPPY_CLOUD_REQUIREMENTS_SHA256={files.requirements_sha256}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
