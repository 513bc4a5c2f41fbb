#!/usr/bin/env bash
# A local Prefect control plane for tests and development.
#   scripts/control-plane.sh start   starts a Prefect server (SQLite, in $STROPPY_STATE_DIR/prefect), runs
#                                    `stroppy-flows setup` (work pools stroppy-master and stroppy-edge, block types,
#                                    blocks from STROPPY_SETUP_*), deploys the flows of prefect.yaml and starts the
#                                    master worker; waits (bounded) for each
#   scripts/control-plane.sh stop    stops the master worker and the server
# Needs Redis and a Docker engine for runs (scripts/services.sh, scripts/engine.sh). Safe to run twice.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/.." && pwd)
state=${STROPPY_STATE_DIR:-$root/.state}
port=${STROPPY_PREFECT_PORT:-4200}
export PREFECT_HOME=$state/prefect
use_local_control_plane "$state"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_RESULTS_PERSIST_BY_DEFAULT=true
# The master's flow results, outside the results directory that Docker machines share (and could write).
export PREFECT_LOCAL_STORAGE_PATH=$state/prefect/results
export STROPPY_RESULTS_DIR=$state/results
cd "$root"

log() { printf '[control-plane] %s\n' "$*" >&2; }
server_healthy() { curl -fsS --max-time 2 "$PREFECT_API_URL/health" >/dev/null 2>&1; }

start() {
  mkdir -p "$PREFECT_HOME" "$PREFECT_LOCAL_STORAGE_PATH"
  if ! server_healthy; then
    # Machines reach the API through their network's gateway, so the server listens beyond loopback, and requires
    # the auth string every client of it sends (the master passes it on to the machines it starts).
    PREFECT_SERVER_API_AUTH_STRING=$PREFECT_API_AUTH_STRING \
      setsid uv run --frozen prefect server start --host 0.0.0.0 --port "$port" \
      >"$state/prefect-server.log" 2>&1 < /dev/null &
    echo $! > "$state/prefect-server.pid"
    for _ in $(seq 1 120); do server_healthy && break; sleep 0.5; done
    server_healthy || { log "the Prefect server did not answer within 60 s; see $state/prefect-server.log"; exit 1; }
  fi
  log "server ready at $PREFECT_API_URL"
  # Work pools, block types, and the blocks the environment configures (STROPPY_SETUP_*).
  timeout 120 uv run --frozen stroppy-flows setup >"$state/setup.log" 2>&1 \
    || { log "setup failed; see $state/setup.log"; exit 1; }
  # STROPPY_FLOWS_DIR must stay unset here: the pull step resolves it on each worker, not at deploy time.
  env -u STROPPY_FLOWS_DIR timeout 120 uv run --frozen prefect deploy --all --no-prompt >"$state/prefect-deploy.log" 2>&1 \
    || { log "deploy failed; see $state/prefect-deploy.log"; exit 1; }
  log "deployed: $(grep -c 'Deployment .* successfully created' "$state/prefect-deploy.log" || true) deployment(s)"
  if [ ! -f "$state/master-worker.pid" ] || ! kill -0 "$(cat "$state/master-worker.pid")" 2>/dev/null; then
    # Flow runs beat every 30 s: the automation `stroppy-flows setup` creates marks one CRASHED when its beats stop
    # (flows/setup.py), so a run whose process died with its machine does not stay RUNNING for ever.
    STROPPY_FLOWS_DIR=$root PREFECT_WORKER_QUERY_SECONDS=1 PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30 \
      setsid uv run --frozen prefect worker start --pool stroppy-master \
      --name "master-$(hostname)" --type process --limit 10 >"$state/master-worker.log" 2>&1 < /dev/null &
    echo $! > "$state/master-worker.pid"
  fi
  log "master worker started (log: $state/master-worker.log)"
}

stop() {
  stop_pidfile "$state/master-worker.pid" 10 group
  stop_pidfile "$state/prefect-server.pid" 10 group
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
