#!/usr/bin/env bash
# Start or stop the services the tests and benchmarks use, on loopback only.
#   scripts/services.sh start      installs what is missing (Debian packages), starts Redis and VictoriaMetrics,
#                                  waits until each answers
#   scripts/services.sh registry   the same for an image registry (only the tests need it)
#   scripts/services.sh stop       stops what `start` and `registry` started
# VictoriaMetrics scrapes the targets that runs register as file_sd files in $state/victoria-metrics/targets
# (STROPPY_METRICS_TARGETS_DIR for the master), and serves queries and imports on 127.0.0.1:8428.
# The registry (Debian's docker-registry, 127.0.0.1:5000) stands in for the cloud's container registry: the tests
# push the service images there and cloud machines' edge flows pull them.
# Safe to run twice. State lives in $STROPPY_STATE_DIR (default: .state/ in the checkout).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/.." && pwd)
state=${STROPPY_STATE_DIR:-$root/.state}
redis_port=${STROPPY_REDIS_PORT:-6379}
redis_pidfile=$state/redis.pid
vm_port=${STROPPY_VM_PORT:-8428}
vm_dir=$state/victoria-metrics
vm_pidfile=$state/victoria-metrics.pid
registry_port=${STROPPY_REGISTRY_PORT:-5000}
registry_dir=$state/registry
registry_pidfile=$state/registry.pid

log() { printf '[services] %s\n' "$*" >&2; }

install_packages() { install_debian_packages curl redis-server victoria-metrics; }

redis_answers() { timeout 2 redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG; }

start_redis() {
  if redis_answers; then
    log "redis already answers on 127.0.0.1:$redis_port"
    return 0
  fi
  mkdir -p "$state"
  # Durable (infra/redis/redis.conf): its append-only file in $state/redis keeps leases and ledgers across restarts.
  mkdir -p "$state/redis"
  redis-server "$root/infra/redis/redis.conf" --bind 127.0.0.1 --port "$redis_port" --daemonize yes \
    --pidfile "$redis_pidfile" --dir "$state/redis" --logfile "$state/redis.log"
  wait_until_answers redis "127.0.0.1:$redis_port" "$state/redis.log" redis_answers
}

vm_answers() { curl -fsS -m 2 "http://127.0.0.1:$vm_port/health" >/dev/null 2>&1; }

start_victoria_metrics() {
  mkdir -p "$vm_dir/targets" "$vm_dir/data"
  # The scrape configuration compose.yaml uses too, pointed at this checkout's targets directory.
  sed "s#/var/lib/stroppy/targets#$vm_dir/targets#" "$root/infra/metrics/scrape.yml" >"$vm_dir/scrape.yml"
  # Short discovery and visibility delays: a run registers its exporters seconds before its load starts, and its
  # dashboards are checked right after it ends. Deduplication makes a retried import of the same samples harmless.
  start_daemon victoria-metrics "127.0.0.1:$vm_port" "$vm_pidfile" "$state/victoria-metrics.log" vm_answers -- \
    victoria-metrics -httpListenAddr="127.0.0.1:$vm_port" -storageDataPath="$vm_dir/data" \
    -retentionPeriod=30d -promscrape.config="$vm_dir/scrape.yml" -promscrape.fileSDCheckInterval=2s \
    -search.latencyOffset=2s -dedup.minScrapeInterval=1s
}

registry_answers() { curl -fsS -m 2 "http://127.0.0.1:$registry_port/v2/" >/dev/null 2>&1; }

start_registry() {
  install_debian_packages curl docker-registry
  mkdir -p "$registry_dir/data"
  cat >"$registry_dir/config.yml" <<CONFIG
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $registry_dir/data}
  delete: {enabled: true}
http: {addr: "127.0.0.1:$registry_port"}
CONFIG
  start_daemon registry "127.0.0.1:$registry_port" "$registry_pidfile" "$state/registry.log" registry_answers -- \
    docker-registry serve "$registry_dir/config.yml"
}

case "${1:-}" in
  start) install_packages; start_redis; start_victoria_metrics ;;
  registry) start_registry ;;
  stop)
    stop_daemon registry "$registry_pidfile" 10
    stop_daemon victoria-metrics "$vm_pidfile" 10
    stop_daemon redis "$redis_pidfile" 5
    ;;
  *) echo "usage: $0 start|registry|stop" >&2; exit 2 ;;
esac
