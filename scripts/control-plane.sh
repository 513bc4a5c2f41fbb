#!/usr/bin/env bash
# A local Prefect control plane for tests and development.
#   scripts/control-plane.sh start    starts a Prefect server, runs `stroppy-flows setup` (work pools stroppy-master
#                                     and stroppy-edge, each target's run limit, block types, blocks from
#                                     STROPPY_SETUP_*), starts the master workers and deploys the flows of
#                                     prefect.yaml; waits (bounded) for each
#   scripts/control-plane.sh install  installs Debian's PostgreSQL server when STROPPY_PREFECT_DATABASE=postgresql
#   scripts/control-plane.sh workers  starts the master workers that are not running (after one was killed)
#   scripts/control-plane.sh stop     stops the master workers, the server and its database
# Settings (environment):
#   STROPPY_PREFECT_DATABASE  sqlite (default: a file in $STROPPY_STATE_DIR/prefect) or postgresql (Debian's
#                             PostgreSQL server, its cluster in $STROPPY_STATE_DIR/prefect-db, on 127.0.0.1 at
#                             STROPPY_PREFECT_DB_PORT, default 5433): what a team sharing the server runs
#   STROPPY_MASTER_WORKERS    how many master workers serve stroppy-master (default 1)
# A new SQLite database starts as a copy of an empty one kept in ${XDG_CACHE_HOME:-~/.cache}/stroppy-flows.
# Needs Redis and a Docker engine for runs (scripts/services.sh, scripts/engine.sh). Safe to run twice.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/.." && pwd)
state=${STROPPY_STATE_DIR:-$root/.state}
port=${STROPPY_PREFECT_PORT:-4200}
export PREFECT_HOME=$state/prefect
database=${STROPPY_PREFECT_DATABASE:-sqlite}
workers=${STROPPY_MASTER_WORKERS:-1}
use_local_control_plane "$state"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_RESULTS_PERSIST_BY_DEFAULT=true
# The master's flow results, outside the results directory that Docker machines share (and could write).
export PREFECT_LOCAL_STORAGE_PATH=$state/prefect/results
export STROPPY_RESULTS_DIR=$state/results
cd "$root"

log() { printf '[control-plane] %s\n' "$*" >&2; }
server_healthy() { curl -fsS --max-time 2 "$PREFECT_API_URL/health" >/dev/null 2>&1; }

case "$database" in sqlite | postgresql) ;; *)
  log "STROPPY_PREFECT_DATABASE=$database: expected sqlite or postgresql"; exit 2 ;;
esac
case "$workers" in [1-9] | [1-9][0-9]) ;; *)
  log "STROPPY_MASTER_WORKERS=$workers: expected a number of workers from 1 to 99"; exit 2 ;;
esac
db_port=${STROPPY_PREFECT_DB_PORT:-5433}
if [ "$database" = postgresql ]; then
  if ! [[ $db_port =~ ^[1-9][0-9]{0,4}$ ]] || [ "$db_port" -gt 65535 ]; then
    log "STROPPY_PREFECT_DB_PORT=$db_port: expected a TCP port number, 1 to 65535"; exit 2
  fi
  # pg_ctl starts the server through a shell command line with its paths in double quotes.
  case "$state" in *[\"\$\`\\]*)
    log "STROPPY_STATE_DIR=$state: the server's database cannot live under a path with \", \$, \` or \\"; exit 2 ;;
  esac
fi

# The server's own database, when it is PostgreSQL: a cluster of Debian's server in the state directory, owned by
# the `postgres` account when these scripts run as root (PostgreSQL refuses to), listening on loopback only, with a
# password made once per state directory and readable by its owner only.
db_dir=$state/prefect-db
db_password_file=$state/prefect/db-password
as_db_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_bin() { local bin; bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1); echo "$bin/$1"; }

start_database() {
  install_debian_packages postgresql
  if [ ! -s "$db_password_file" ]; then
    (umask 077 && random_hex > "$db_password_file")
  fi
  if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$state"; then
    log "the postgres account cannot enter $state, where the server's database lives; make it and its parents o+x"
    exit 1
  fi
  if [ ! -f "$db_dir/PG_VERSION" ]; then
    mkdir -p "$db_dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$db_dir" && chmod 700 "$db_dir"
    local pwfile
    pwfile=$(mktemp)
    cp "$db_password_file" "$pwfile"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$pwfile"
    as_db_owner timeout 120 "$(pg_bin initdb)" -D "$db_dir" -U prefect --pwfile="$pwfile" \
      --auth-local=scram-sha-256 --auth-host=scram-sha-256 >"$state/prefect-db-init.log" 2>&1 \
      || { rm -f "$pwfile"; log "initdb failed; see $state/prefect-db-init.log"; exit 1; }
    rm -f "$pwfile"
  fi
  # Where it listens, in a file of its own in the configuration's quoting, not on pg_ctl's command line.
  grep -qx "include_if_exists = 'stroppy.conf'" "$db_dir/postgresql.conf" \
    || echo "include_if_exists = 'stroppy.conf'" >> "$db_dir/postgresql.conf"
  printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\n" \
    "$db_port" "${db_dir//\'/\'\'}" > "$db_dir/stroppy.conf"
  if ! as_db_owner "$(pg_bin pg_ctl)" -D "$db_dir" status >/dev/null 2>&1; then
    as_db_owner "$(pg_bin pg_ctl)" -D "$db_dir" -l "$db_dir/server.log" -w -t 60 start >/dev/null \
      || { log "PostgreSQL did not start within 60 s; see $db_dir/server.log"; exit 1; }
  fi
  PGPASSWORD=$(cat "$db_password_file") timeout 30 psql -h 127.0.0.1 -p "$db_port" -U prefect -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'prefect'" | grep -q 1 \
    || PGPASSWORD=$(cat "$db_password_file") timeout 30 createdb -h 127.0.0.1 -p "$db_port" -U prefect prefect
  log "PostgreSQL for the server ready on 127.0.0.1:$db_port"
}

stop_database() {
  [ -f "$db_dir/postmaster.pid" ] || return 0
  as_db_owner "$(pg_bin pg_ctl)" -D "$db_dir" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

# start_workers: the master workers 1..STROPPY_MASTER_WORKERS that are not running.
start_workers() {
  local index pidfile
  for index in $(seq 1 "$workers"); do
    pidfile=$state/master-worker-$index.pid
    if [ ! -f "$pidfile" ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      # Flow runs beat every 30 s: the automation `stroppy-flows setup` creates marks one CRASHED when its beats
      # stop (flows/setup.py), so a run whose process died with its machine does not stay RUNNING for ever.
      STROPPY_FLOWS_DIR=$root PREFECT_WORKER_QUERY_SECONDS=1 PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30 \
        setsid uv run --frozen stroppy-flows master-worker \
        --name "master-$(hostname)-$index" --limit 10 >"$state/master-worker-$index.log" 2>&1 < /dev/null &
      echo $! > "$pidfile"
    fi
  done
  log "$workers master worker(s) running (logs: $state/master-worker-*.log)"
}

# A new SQLite database starts as a copy of an empty one kept in the user's cache per locked dependency set: on a
# new state directory (the main job's fresh clone) the server spent 18 s migrating its schema and registering the
# block types. The copy is taken with SQLite's backup API once the server that made it answers, before
# `stroppy-flows setup` stores any block in it, so it holds the schema and Prefect's block types and nothing else.
sqlite_template=${XDG_CACHE_HOME:-$HOME/.cache}/stroppy-flows/prefect-server-$(sha256sum uv.lock | cut -c1-16)

keep_sqlite_template() {
  [ -f "$PREFECT_HOME/memo_store.toml" ] && [ ! -e "$sqlite_template" ] || return 0
  local made
  mkdir -p "$(dirname "$sqlite_template")"
  made=$(mktemp -d "$sqlite_template.XXXXXX")
  timeout 60 python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))' \
    "$PREFECT_HOME/prefect.db" "$made/prefect.db" \
    && cp "$PREFECT_HOME/memo_store.toml" "$made/" \
    && mv -T "$made" "$sqlite_template" 2>/dev/null \
    || rm -rf "$made"
}

start() {
  mkdir -p "$PREFECT_HOME" "$PREFECT_LOCAL_STORAGE_PATH"
  local database_url="" new_sqlite=false
  if [ "$database" = postgresql ]; then
    start_database
    database_url="postgresql+asyncpg://prefect:$(cat "$db_password_file")@127.0.0.1:$db_port/prefect"
  elif [ ! -e "$PREFECT_HOME/prefect.db" ]; then
    if [ -f "$sqlite_template/prefect.db" ]; then
      cp "$sqlite_template/prefect.db" "$sqlite_template/memo_store.toml" "$PREFECT_HOME/"
      log "server database copied from $sqlite_template"
    else
      new_sqlite=true
    fi
  fi
  if ! server_healthy; then
    # Machines reach the API through their network's gateway, so the server listens beyond loopback, and requires
    # the auth string every client of it sends (the master passes it on to the machines it starts). Runs' slots of
    # their target's limit are leases kept in files, so a restart of the server does not lose them.
    # The database's password reaches the server through its environment, never a command line.
    (
      export PREFECT_SERVER_API_AUTH_STRING=$PREFECT_API_AUTH_STRING
      export PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=prefect.server.concurrency.lease_storage.filesystem
      [ -z "$database_url" ] || export PREFECT_API_DATABASE_CONNECTION_URL=$database_url
      exec setsid uv run --frozen prefect server start --host 0.0.0.0 --port "$port"
    ) >"$state/prefect-server.log" 2>&1 < /dev/null &
    echo $! > "$state/prefect-server.pid"
    for _ in $(seq 1 120); do server_healthy && break; sleep 0.5; done
    server_healthy || { log "the Prefect server did not answer within 60 s; see $state/prefect-server.log"; exit 1; }
  fi
  log "server ready at $PREFECT_API_URL"
  [ "$new_sqlite" = false ] || keep_sqlite_template
  # Work pools, block types, and the blocks the environment configures (STROPPY_SETUP_*).
  timeout 120 uv run --frozen stroppy-flows setup >"$state/setup.log" 2>&1 \
    || { log "setup failed; see $state/setup.log"; exit 1; }
  # The workers need only their pool: they start (and import the flows) while the flows are deployed.
  start_workers
  # STROPPY_FLOWS_DIR must stay unset here: the pull step resolves it on each worker, not at deploy time.
  env -u STROPPY_FLOWS_DIR timeout 120 uv run --frozen prefect deploy --all --no-prompt >"$state/prefect-deploy.log" 2>&1 \
    || { log "deploy failed; see $state/prefect-deploy.log"; exit 1; }
  log "deployed: $(grep -c 'Deployment .* successfully created' "$state/prefect-deploy.log" || true) deployment(s)"
}

stop() {
  local pidfile
  for pidfile in "$state"/master-worker*.pid; do
    [ -e "$pidfile" ] && stop_pidfile "$pidfile" 10 group
  done
  stop_pidfile "$state/prefect-server.pid" 10 group
  stop_database
  log "stopped"
}

case "${1:-}" in
  install) [ "$database" = sqlite ] || install_debian_packages postgresql ;;
  start) start ;;
  workers) start_workers ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|workers|stop" >&2; exit 2 ;;
esac
