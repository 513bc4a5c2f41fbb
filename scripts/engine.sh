#!/usr/bin/env bash
# Start or stop a Docker engine for the tests and for local runs of the Docker target.
#   scripts/engine.sh install installs docker.io and mmdebstrap if missing
#   scripts/engine.sh start   installs docker.io (and mmdebstrap, which builds the base image) if missing, starts
#                             dockerd (overlay2) unless one answers already, and waits until it answers (at most 60 s)
#   scripts/engine.sh stop    stops the dockerd that `start` started (never one it found running)
# Safe to run twice. State lives in $STROPPY_STATE_DIR (default: .state/ in the checkout).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/.." && pwd)
state=${STROPPY_STATE_DIR:-$root/.state}
pidfile=$state/dockerd.pid
docker_cli=/usr/bin/docker

log() { printf '[engine] %s\n' "$*" >&2; }

engine_answers() { timeout 5 "$docker_cli" info >/dev/null 2>&1; }

install_engine() { install_debian_packages docker.io mmdebstrap; }

start() {
  install_engine
  if engine_answers; then
    log "a Docker engine already answers; using it"
    return 0
  fi
  mkdir -p "$state"
  # dockerd detaches from this shell so it outlives the script; it is stopped by `stop` through its pidfile.
  setsid dockerd --storage-driver=overlay2 --pidfile "$pidfile" >"$state/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 120); do
    if engine_answers; then
      log "engine ready: $("$docker_cli" info --format '{{.ServerVersion}} {{.Driver}}')"
      return 0
    fi
    sleep 0.5
  done
  log "the engine did not answer within 60 s; see $state/dockerd.log"
  exit 1
}

stop() {
  [ -f "$pidfile" ] || return 0
  stop_pidfile "$pidfile" 30
  log "engine stopped"
}

case "${1:-}" in
  install) install_engine ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
