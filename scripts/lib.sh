# Shared by the scripts in this folder; source it, after defining `log`.

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
