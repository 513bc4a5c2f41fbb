"""The project's own version and git commit, for the manifest of every run."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version

from infra.settings import REPOSITORY

GIT_TIMEOUT_S = 10


def project_version() -> str:
    try:
        return version("stroppy-flows")
    except PackageNotFoundError:
        return "not installed as a package"


def project_commit() -> str:
    """`git rev-parse HEAD` of the master's checkout, with `-dirty` when it has uncommitted changes; or why not."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)  # fmt: skip
        if head.returncode != 0:
            return f"unknown: {head.stderr.strip() or 'not a git checkout'}"
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPOSITORY,
                                capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown: {error}"
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")
