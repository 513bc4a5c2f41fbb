#!/usr/bin/env bash
# The test command: installs everything (uv, the locked Python dependencies, Debian packages), starts the
# services the tests need (Redis, a Docker engine, a Prefect server with the master worker), builds the images that
# are not up to date, runs lint, the type checker and the whole test suite, and stops the services it started.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k reservations`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
log() { printf '[test] %s\n' "$*" >&2; }

bash scripts/setup.sh
# The browser test (tests/e2e/test_ui.py) drives Debian's Chromium; the cloud-init user-data is checked by its schema.
install_debian_packages chromium cloud-init

trap 'bash scripts/stack.sh stop' EXIT
# The end-to-end tests serve stand-in stroppy releases (tests/e2e/test_stroppy_release.py) and bound loads tightly.
export STROPPY_RELEASE_URL="http://{gateway}:18765/{version}/{archive}"
export STROPPY_RELEASE_LOCK="$root/.state/stroppy-standin.lock.json"
export STROPPY_LOAD_MARGIN_S=30
# Runs annotate and link Grafana through the stand-in the end-to-end tests serve (tests/e2e/conftest.py).
export STROPPY_GRAFANA_BLOCK=grafana-standin
# The control plane as a team runs it: the Prefect server on PostgreSQL and two master workers
# (tests/e2e/test_master_workers.py kills one mid-suite).
export STROPPY_PREFECT_DATABASE=postgresql STROPPY_MASTER_WORKERS=2
bash scripts/stack.sh start
use_local_control_plane "${STROPPY_STATE_DIR:-$root/.state}"
# The cloud target's tests push the service images to a registry and have machines pull them from it.
bash scripts/services.sh registry

uv run --frozen ruff check .
uv run --frozen ruff format --check .
uv run --frozen mypy
uv run --frozen python scripts/generate_references.py --check
# The slowest tests, to keep the whole run short as tests are added.
uv run --frozen pytest --durations=25 "$@"
