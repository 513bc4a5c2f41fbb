"""The size of each image of this checkout, the edge's largest layers, and how long its agent takes to load.

Needs the engine (`bash scripts/engine.sh start`); builds whatever image is missing first:

    uv run python benchmarks/images.py [--rounds 3]

The load time is a container's `python -c "import flows.edge"` (what every edge agent and edge flow run imports),
from start to exit, median of N rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import docker

from infra.images import ImageSet, build_images

LAYERS_SHOWN = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = docker.from_env(timeout=120)
    images = build_images(client, progress=lambda message: None)
    for reference in (images.base, images.db_node, images.edge):
        print(f"{reference}: {client.images.get(reference).attrs['Size'] / 1e6:.0f} MB")
    layers = sorted(client.api.history(images.edge), key=lambda layer: layer["Size"], reverse=True)
    print("edge's largest layers:")
    for layer in layers[:LAYERS_SHOWN]:
        print(f"  {layer['Size'] / 1e6:6.0f} MB  {layer['CreatedBy'][:100]}")
    print(f"edge agent's imports: {_median_import_s(client, images, args.rounds):.2f} s median of {args.rounds}")


def _median_import_s(client: docker.DockerClient, images: ImageSet, rounds: int) -> float:
    seconds = []
    for _ in range(rounds):
        started = time.monotonic()
        client.containers.run(
            images.edge, ["python", "-c", "import flows.edge"], remove=True, network_disabled=True, user="nobody"
        )
        seconds.append(time.monotonic() - started)
    return statistics.median(seconds)


if __name__ == "__main__":
    main()
