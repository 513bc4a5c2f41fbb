"""`python -m infra.images build` builds the missing images; `python -m infra.images tags` prints their tags."""

from __future__ import annotations

import argparse
import json
import sys
import time

from infra.images import ImageBuildError, ImageSet, build_images


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.images", description=__doc__)
    parser.add_argument("command", choices=("build", "tags"))
    args = parser.parse_args()
    if args.command == "tags":
        images = ImageSet.for_checkout()
        print(json.dumps({"base": images.base, "db_node": images.db_node, "edge": images.edge}, indent=2))
        return 0

    import docker  # noqa: PLC0415 - only building needs the engine

    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[images {time.monotonic() - started:6.1f}s] {message}", flush=True)

    try:
        client = docker.from_env(timeout=120)
        images = build_images(client, progress)
    except (ImageBuildError, docker.errors.DockerException) as error:
        print(f"image build failed: {error}", file=sys.stderr)
        return 1
    for reference in (images.base, images.db_node, images.edge):
        size_mb = client.images.get(reference).attrs["Size"] / 1e6
        progress(f"{reference}: {size_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
