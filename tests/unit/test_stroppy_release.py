"""Pinned stroppy releases: the lock file, and what an install refuses."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from infra.stroppy_release import PinnedRelease, ReleaseError, ReleaseLock, _unpack, install


def test_an_unpinned_version_is_refused_with_the_command_that_pins_it(tmp_path: Path) -> None:
    lock_path = tmp_path / "stroppy.lock.json"
    ReleaseLock(releases={"v5.0.0": PinnedRelease(version="v5.0.0", url="u", sha256="a" * 64)}).write(lock_path)
    lock = ReleaseLock.read(lock_path)
    assert lock.pinned("v5.0.0", lock_path).sha256 == "a" * 64
    with pytest.raises(ReleaseError, match=r"pin it first: stroppy-flows stroppy pin v5\.1\.0"):
        lock.pinned("v5.1.0", lock_path)


def test_an_unreachable_release_is_reported_after_bounded_retries(tmp_path: Path) -> None:
    release = PinnedRelease(version="v5.0.0", url="http://127.0.0.1:1/stroppy.tar.gz", sha256="0" * 64)
    with pytest.raises(ReleaseError, match=r"unreachable after 3 attempts"):
        install(release, release.url, tmp_path / "run", timeout_s=2)
    assert not (tmp_path / "run" / "stroppy").exists()


def test_an_archive_without_the_binary_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "release.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        info = tarfile.TarInfo("README")
        info.size = 2
        bundle.addfile(info, io.BytesIO(b"hi"))
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(ReleaseError, match="holds no 'stroppy' binary"):
        _unpack(archive, tmp_path / "out", "v5.0.0")
