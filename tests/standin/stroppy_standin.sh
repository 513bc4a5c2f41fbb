#!/bin/sh
# A stand-in for the stroppy release binary, which cannot be downloaded on these machines. It answers the same
# command shapes (version; gen --workdir DIR --preset NAME; run SCRIPT SQL -- ... --summary-export FILE), drives a
# real TPC-B load with pgbench against DRIVER_URL (password from PGPASSFILE, as pgx reads it) for DURATION, and
# writes a k6 --summary-export file from what pgbench measured and, with `--out csv=FILE`, k6's CSV samples
# (iteration_duration in ms and checks, per transaction) from pgbench's per-transaction log.
# STANDIN_HANG=1 makes `run` never finish.
set -eu
command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
  version)
    echo "stroppy stand-in"
    ;;
  gen)
    workdir=.; preset=tpcb
    while [ $# -gt 0 ]; do
      case "$1" in
        --workdir) workdir=$2; shift 2 ;;
        --preset) preset=$2; shift 2 ;;
        *) shift ;;
      esac
    done
    echo "// stand-in k6 script for $preset" > "$workdir/$preset.ts"
    echo "-- stand-in schema for $preset" > "$workdir/$preset.sql"
    ;;
  run)
    summary=summary.json; samples=
    while [ $# -gt 0 ]; do
      case "$1" in
        --summary-export) summary=$2; shift 2 ;;
        --out) case "$2" in csv=*) samples=${2#csv=} ;; esac; shift 2 ;;
        *) shift ;;
      esac
    done
    if [ "${STANDIN_HANG:-0}" = 1 ]; then
      echo "hanging on purpose"
      sleep 100000
    fi
    pgbench --initialize --scale="${SCALE_FACTOR:-1}" --quiet "$DRIVER_URL"
    output=$(pgbench --client=2 --time="${DURATION%s}" --progress=5 --log --log-prefix=standin_log "$DRIVER_URL" 2>&1)
    echo "$output"
    if [ -n "$samples" ]; then
      echo "metric_name,timestamp,metric_value,check,error,error_code,group,scenario" > "$samples"
      cat standin_log.* | awk '$3 ~ /^[0-9]+$/ {
        printf "iteration_duration,%s,%.3f,,,,,default\n", $5, $3 / 1000
        printf "checks,%s,1,committed,,,,default\n", $5
      }' >> "$samples"
      rm -f standin_log.*
    fi
    count=$(echo "$output" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
    tps=$(echo "$output" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
    latency=$(echo "$output" | sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p')
    printf '{"metrics": {"iterations": {"count": %s, "rate": %s}, "iteration_duration": {"avg": %s}, ' \
      "$count" "$tps" "$latency" > "$summary"
    printf '"checks": {"value": 1, "passes": %s, "fails": 0, "thresholds": {"rate>0.99": false}}}}\n' "$count" >> "$summary"
    ;;
  *)
    echo "usage: stroppy version | gen --workdir DIR --preset NAME | run SCRIPT SQL -- K6_ARGS" >&2
    exit 2
    ;;
esac
