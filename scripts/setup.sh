#!/usr/bin/env bash
# Installs uv (pinned) and the project's locked dependencies into .venv. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."

uv_version=0.13.8
if ! command -v uv >/dev/null || [ "$(uv --version | cut -d' ' -f2)" != "$uv_version" ]; then
  python3 -m pip install --quiet "uv==$uv_version"
fi
# The `cloud` (python-terraform) and `history` (SciPy) extras are for the master; the edge image installs without them.
uv sync --frozen --quiet --extra cloud --extra history
