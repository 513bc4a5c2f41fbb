#!/usr/bin/env bash
# Start or stop the services the tests and benchmarks use, on loopback only.
#   scripts/services.sh start   installs what is missing (Debian packages), starts Redis, waits until it answers
#   scripts/services.sh stop    stops what `start` started
# Safe to run twice. State lives in $STROPPY_STATE_DIR (default: .state/ in the checkout).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/.." && pwd)
state=${STROPPY_STATE_DIR:-$root/.state}
redis_port=${STROPPY_REDIS_PORT:-6379}
redis_pidfile=$state/redis.pid

log() { printf '[services] %s\n' "$*" >&2; }

install_packages() { install_debian_packages redis-server; }

redis_answers() { timeout 2 redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG; }

start_redis() {
  if redis_answers; then
    log "redis already answers on 127.0.0.1:$redis_port"
    return 0
  fi
  mkdir -p "$state"
  redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes --pidfile "$redis_pidfile" \
    --dir "$state" --save '' --appendonly no --logfile "$state/redis.log"
  for _ in $(seq 1 100); do
    redis_answers && { log "redis ready on 127.0.0.1:$redis_port"; return 0; }
    sleep 0.1
  done
  log "redis did not answer within 10 s; see $state/redis.log"
  exit 1
}

stop_redis() {
  [ -f "$redis_pidfile" ] || return 0
  stop_pidfile "$redis_pidfile" 5
  log "redis stopped"
}

case "${1:-}" in
  start) install_packages; start_redis ;;
  stop) stop_redis ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
