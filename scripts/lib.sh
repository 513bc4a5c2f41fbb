# Shared by the scripts in this folder; source it, after defining `log`.

# The stack's Python processes (server, workers and their fork servers, the CLI, the tests) keep the bytecode of what
# they import in .venv and the sources' __pycache__: where the machine sets PYTHONDONTWRITEBYTECODE, each process
# compiled every module it imports again (2-3 s of CPU for Prefect alone).
unset PYTHONDONTWRITEBYTECODE

# install_debian_packages PACKAGE...: installs those not yet installed (as root), or says how to.
install_debian_packages() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${missing[*]}; install them as root (apt-get install ${missing[*]})"
    exit 1
  fi
  log "installing ${missing[*]}"
  timeout 600 apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# stop_pidfile PIDFILE GRACE_S [group]: SIGTERM the process (or, with `group`, its process group), SIGKILL what is
# left after GRACE_S seconds, and forget the pidfile. Does nothing without the pidfile.
stop_pidfile() {
  local pidfile=$1 grace=$2 pid target
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  target=$pid
  [ "${3:-}" = group ] && target="-$pid"
  kill -TERM -- "$target" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((grace * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "$target" 2>/dev/null || true
  rm -f "$pidfile"
}

# start_daemon NAME ADDRESS PIDFILE LOGFILE CHECK -- COMMAND...: unless CHECK passes already, runs COMMAND in the
# background (output to LOGFILE, pid to PIDFILE) and waits until CHECK passes.
start_daemon() {
  local name=$1 address=$2 pidfile=$3 logfile=$4 check=$5
  shift 5
  [ "${1:-}" = -- ] && shift
  if "$check"; then
    log "$name already answers on $address"
    return 0
  fi
  nohup "$@" >"$logfile" 2>&1 &
  echo $! >"$pidfile"
  wait_until_answers "$name" "$address" "$logfile" "$check"
}

# stop_daemon NAME PIDFILE GRACE_S: stops what start_daemon (or a daemon writing PIDFILE) started, if anything.
stop_daemon() {
  [ -f "$2" ] || return 0
  stop_pidfile "$2" "$3"
  log "$1 stopped"
}

# wait_until_answers NAME ADDRESS LOGFILE CHECK...: runs CHECK every 0.1 s for at most 10 s; exits if it never passes.
wait_until_answers() {
  local name=$1 address=$2 logfile=$3
  shift 3
  for _ in $(seq 1 100); do
    "$@" && { log "$name ready on $address"; return 0; }
    sleep 0.1
  done
  log "$name did not answer within 10 s; see $logfile"
  exit 1
}

# random_hex: 24 random bytes as 48 hex digits, for a password or an auth string.
random_hex() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# use_local_control_plane STATE_DIR: exports what a client of the local control plane needs, PREFECT_API_URL and
# PREFECT_API_AUTH_STRING. The server requires that auth string (it listens beyond loopback, for the machines): it
# is made once per state directory, in STATE_DIR/prefect/api-auth, readable by its owner only. The UI asks for it.
use_local_control_plane() {
  local file=$1/prefect/api-auth
  if [ ! -s "$file" ]; then
    mkdir -p "$(dirname "$file")"
    (umask 077 && printf 'stroppy:%s' "$(random_hex)" > "$file.new" \
      && mv "$file.new" "$file")
  fi
  export PREFECT_API_URL=http://127.0.0.1:${STROPPY_PREFECT_PORT:-4200}/api
  PREFECT_API_AUTH_STRING=$(cat "$file")
  export PREFECT_API_AUTH_STRING
}
