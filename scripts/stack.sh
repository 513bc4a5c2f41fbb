#!/usr/bin/env bash
# The whole local stack: Redis and VictoriaMetrics; then a Docker engine and the images beside the Prefect control
# plane, which needs neither.
#   scripts/stack.sh start   starts (and installs) each part, builds the images that are not up to date
#   scripts/stack.sh stop    stops each part that was started by these scripts
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  start)
    bash scripts/services.sh start
    # Packages first, one apt-get at a time: two at once would fight over dpkg's lock.
    bash scripts/engine.sh install
    bash scripts/control-plane.sh install
    bash scripts/control-plane.sh start &
    control_plane=$!
    engine=0
    { bash scripts/engine.sh start && uv run --frozen python -m infra.images build; } || engine=$?
    wait "$control_plane"
    exit "$engine"
    ;;
  stop)
    # Each part stops on its own: none needs another to go down.
    bash scripts/control-plane.sh stop & control_plane=$!
    bash scripts/engine.sh stop & engine=$!
    services=0
    bash scripts/services.sh stop || services=$?
    failed=0
    wait "$control_plane" || failed=$?
    wait "$engine" || failed=$?
    [ "$failed" -eq 0 ] || exit "$failed"
    exit "$services"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
