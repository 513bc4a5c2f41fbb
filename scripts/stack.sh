#!/usr/bin/env bash
# The whole local stack, in order: Redis, a Docker engine, the images, the Prefect control plane.
#   scripts/stack.sh start   starts (and installs) each part, builds the images that are not up to date
#   scripts/stack.sh stop    stops each part that was started by these scripts
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  start)
    bash scripts/services.sh start
    bash scripts/engine.sh start
    uv run --frozen python -m infra.images build
    bash scripts/control-plane.sh start
    ;;
  stop)
    bash scripts/control-plane.sh stop
    bash scripts/engine.sh stop
    bash scripts/services.sh stop
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
