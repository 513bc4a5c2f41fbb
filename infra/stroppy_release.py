"""stroppy releases: pinned in a lock file of the project, downloaded with bounds, verified before use.

`pin` downloads a release once and records its sha256; `install` refuses a version without a recorded checksum,
downloads with a timeout and bounded retries (only transport failures are retried; a checksum mismatch is not),
verifies, and unpacks into a per-run directory.
"""

from __future__ import annotations

import hashlib
import json
import stat
import tarfile
import tempfile
from pathlib import Path

import httpx
from pydantic import BaseModel

from infra.retries import call_with_retries
from stroppy_domain.errors import StroppyError

ARCHIVE_NAME = "stroppy_linux_amd64.tar.gz"
BINARY_NAME = "stroppy"
CHUNK = 1 << 16


class ReleaseError(StroppyError):
    """A release that cannot be pinned or installed; the message names the version and the reason."""


class PinnedRelease(BaseModel):
    version: str
    url: str
    sha256: str


class ReleaseLock(BaseModel):
    """The lock file: version -> pinned release."""

    releases: dict[str, PinnedRelease] = {}

    @classmethod
    def read(cls, path: Path) -> ReleaseLock:
        """The lock file at `path`, empty when there is none. Raises ReleaseError when it is not a lock file."""
        if not path.is_file():
            return cls()
        try:
            return cls.model_validate_json(path.read_text())
        except ValueError as error:
            raise ReleaseError(f"{path}: not a stroppy release lock file: {error}") from error

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n")

    def pinned(self, version: str, path: Path) -> PinnedRelease:
        """The release pinned for `version`. Raises ReleaseError when the lock (read from `path`) has none."""
        release = self.releases.get(version)
        if release is None:
            raise ReleaseError(
                f"stroppy {version} has no recorded checksum in {path}; "
                f"pin it first: stroppy-flows stroppy pin {version}"
            )
        return release


def release_url(template: str, version: str, gateway: str = "127.0.0.1") -> str:
    return template.format(version=version, archive=ARCHIVE_NAME, gateway=gateway)


def download(url: str, destination: Path, timeout_s: float, attempts: int = 3) -> str:
    """Stream `url` into `destination`; returns its sha256. Transport failures and server errors are retried with
    backoff; any other HTTP status is not (the release or its address is wrong).

    Raises ReleaseError when the server answers with an error status, or, retryable, when it stays unreachable."""

    def once() -> str:
        digest = hashlib.sha256()
        with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
            response.raise_for_status()
            with destination.open("wb") as output:
                for chunk in response.iter_bytes(CHUNK):
                    digest.update(chunk)
                    output.write(chunk)
        return digest.hexdigest()

    try:
        return call_with_retries(once, attempts)
    except httpx.HTTPStatusError as error:
        raise ReleaseError(f"{url}: HTTP {error.response.status_code}") from error
    except httpx.TransportError as error:
        raise ReleaseError(f"{url}: unreachable after {attempts} attempts: {error}", retryable=True) from error


def pin(version: str, url: str, lock_path: Path, timeout_s: float = 120) -> PinnedRelease:
    """Download the release once and record its checksum in the lock file.

    Raises ReleaseError when the download fails, the archive cannot be unpacked or holds no stroppy binary, or the
    lock file is not one."""
    with tempfile.TemporaryDirectory(prefix="stroppy-pin-") as scratch:
        archive = Path(scratch) / ARCHIVE_NAME
        checksum = download(url, archive, timeout_s)
        _unpack(archive, Path(scratch) / "unpacked", version)
    release = PinnedRelease(version=version, url=url, sha256=checksum)
    lock = ReleaseLock.read(lock_path)
    lock.releases[version] = release
    lock.write(lock_path)
    return release


def install(release: PinnedRelease, url: str, directory: Path, timeout_s: float) -> Path:
    """Download `url`, check it against the pinned checksum, unpack it into `directory`; returns the binary.

    Raises ReleaseError when the download fails, its sha256 differs from the pinned one, or the archive cannot be
    unpacked or holds no stroppy binary."""
    directory.mkdir(parents=True, exist_ok=True)
    archive = directory / ARCHIVE_NAME
    checksum = download(url, archive, timeout_s)
    if checksum != release.sha256:
        archive.unlink(missing_ok=True)
        raise ReleaseError(
            f"stroppy {release.version} from {url}: sha256 {checksum} does not match the pinned {release.sha256}"
        )
    binary = _unpack(archive, directory, release.version)
    archive.unlink(missing_ok=True)
    return binary


def _unpack(archive: Path, directory: Path, version: str) -> Path:
    try:
        with tarfile.open(archive, "r:gz") as bundle:
            bundle.extractall(directory, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise ReleaseError(f"stroppy {version}: cannot unpack {archive.name}: {error}") from error
    binary = directory / BINARY_NAME
    if not binary.is_file():
        raise ReleaseError(f"stroppy {version}: {archive.name} holds no '{BINARY_NAME}' binary")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary
