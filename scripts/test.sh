#!/usr/bin/env bash
# The test command: installs everything (uv, the locked Python dependencies, Debian packages), starts the
# services the tests need, runs lint and the whole test suite, and stops the services again.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k reservations`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup.sh

bash scripts/services.sh start
trap 'bash scripts/services.sh stop' EXIT

uv run --frozen ruff check .
uv run --frozen ruff format --check .
uv run --frozen pytest "$@"
