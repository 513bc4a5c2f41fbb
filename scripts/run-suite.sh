#!/usr/bin/env bash
# The main job: run a suite on the default (Docker) target through the `stroppy-test-suite` deployment, the way CI
# and the nightly schedule do. Sets everything up (dependencies, Redis, Docker engine, images, Prefect control
# plane), validates the suite, runs it showing each test's steps, prints the results table, and stops what it started.
# Exits non-zero when a test failed.
#   bash scripts/run-suite.sh SUITE_FILE
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
log() { printf '[run-suite] %s\n' "$*" >&2; }
suite=$(realpath "${1:?usage: $0 SUITE_FILE}")
cd "$root"

bash scripts/setup.sh
uv run --frozen stroppy-flows validate "$suite"

trap 'bash scripts/stack.sh stop' EXIT
bash scripts/stack.sh start

use_local_control_plane "${STROPPY_STATE_DIR:-$root/.state}"
uv run --frozen stroppy-flows run "$suite"
