"""Run a command with a clean environment and a hard time bound, summarising its output into a logger."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

BASE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ")
HEAD_LINES = 20
TAIL_LINES = 40
MIN_LOG_INTERVAL_S = 1.0


@dataclass
class ProcessResult:
    exit_code: int | None
    duration_s: float
    timed_out: bool
    tail: list[str] = field(default_factory=list)
    lines: int = 0


MASK = "***"


class OutputSummary:
    """Passes the first lines, then at most one line a second, to `log`; keeps the last lines for the result. Each
    of `secrets` is replaced by `MASK` in both."""

    def __init__(self, log: Callable[[str], None], secrets: Collection[str] = ()) -> None:
        self._log = log
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
        self._last_logged = 0.0
        self._skipped = 0
        self.lines = 0
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def add(self, line: str) -> None:
        for secret in self._secrets:
            line = line.replace(secret, MASK)
        self.lines += 1
        self.tail.append(line)
        now = time.monotonic()
        if self.lines <= HEAD_LINES or now - self._last_logged >= MIN_LOG_INTERVAL_S:
            suffix = f"  [{self._skipped} line(s) not shown]" if self._skipped else ""
            self._log(line + suffix)
            self._last_logged, self._skipped = now, 0
        else:
            self._skipped += 1


def clean_environment(extra: dict[str, str]) -> dict[str, str]:
    """Only the locale and PATH of this process, plus `extra`: nothing of the agent's own settings leaks."""
    env = {key: os.environ[key] for key in BASE_ENV_KEYS if key in os.environ}
    env["HOME"] = "/tmp"
    return env | extra


def run_bounded(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    timeout_s: float,
    log: Callable[[str], None],
    secrets: Collection[str] = (),
) -> ProcessResult:
    """Run `argv`, killing its whole process group once `timeout_s` has passed; `secrets` are masked in its output."""
    started = time.monotonic()
    summary = OutputSummary(log, secrets)
    process = subprocess.Popen(
        argv, cwd=cwd, env=clean_environment(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace", start_new_session=True,
    )  # fmt: skip
    timed_out = threading.Event()

    def stop_on_timeout() -> None:
        timed_out.set()
        os.killpg(process.pid, signal.SIGKILL)

    timer = threading.Timer(timeout_s, stop_on_timeout)
    timer.start()
    try:
        for line in process.stdout or ():
            summary.add(line.rstrip("\n"))
        exit_code = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return ProcessResult(
        exit_code=exit_code,
        duration_s=time.monotonic() - started,
        timed_out=timed_out.is_set(),
        tail=list(summary.tail),
        lines=summary.lines,
    )
