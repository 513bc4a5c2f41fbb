"""Result storage: where a run's raw files (summaries, load logs, rendered configs, the plan, the result) are kept.

A local directory by default; an S3 bucket through a `prefect-aws` `S3Bucket` block when one is configured. Storing
is idempotent: a retry writes the same files to the same keys.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol

from stroppy_domain.errors import StroppyError


class ResultStorageError(StroppyError):
    """A file could not be stored; names the file and the destination."""


PROBE_BYTES = 64 * 1024
"""What the probe of a run's directory writes: a directory that cannot take this fails the run before it starts."""


def prepare_run_directory(path: Path) -> None:
    """Make a run's directory under the results directory and prove it takes a file, so that a results directory
    that is read-only, full or not a directory fails the run before anything is created for it.

    Raises ResultStorageError naming the directory and the system's reason."""
    probe = path / ".writable"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(bytes(PROBE_BYTES))
        probe.unlink()
    except OSError as error:
        raise ResultStorageError(
            f"the results directory {path} cannot be written ({error.strerror or error}): free its disk or fix its "
            "permissions (STROPPY_RESULTS_DIR)"
        ) from None


class ResultStorage(Protocol):
    def store(self, run_id: str, source: Path) -> str:
        """Store every file under `source` as the run's files; return where they are.

        Raises ResultStorageError when a file cannot be stored."""
        ...


def _files(source: Path) -> list[Path]:
    return sorted(path for path in source.rglob("*") if path.is_file())


class LocalResultStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def store(self, run_id: str, source: Path) -> str:
        """Copy the files into `<root>/<run_id>`. Raises ResultStorageError when one cannot be copied there."""
        destination = self.root / run_id
        for path in _files(source):
            target = destination / path.relative_to(source)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            except OSError as error:
                raise ResultStorageError(f"cannot store {path} in {target}: {error}") from error
        return str(destination)


class S3ResultStorage:
    """Through a `prefect_aws.S3Bucket`; keys are `<bucket_folder>/<run_id>/<relative path>`."""

    def __init__(self, bucket: Any) -> None:
        self.bucket = bucket

    def store(self, run_id: str, source: Path) -> str:
        """Upload the files under the run's keys. Raises ResultStorageError when one cannot be uploaded."""
        for path in _files(source):
            key = f"{run_id}/{path.relative_to(source).as_posix()}"
            try:
                self.bucket.upload_from_path(path, key)
            except Exception as error:  # botocore raises many unrelated types; all mean "not stored"
                raise ResultStorageError(f"cannot store {path} in s3://{self.bucket.bucket_name}: {error}") from error
        folder = self.bucket.bucket_folder.strip("/")
        return f"s3://{self.bucket.bucket_name}/" + (f"{folder}/" if folder else "") + run_id

    def fetch(self, prefix: str, destination: Path) -> list[str]:
        """Download every file stored under `prefix` into `destination`; returns their paths relative to it.

        Raises ResultStorageError when the download fails."""
        try:
            self.bucket.download_folder_to_path(prefix, destination, _sync=True)
        except Exception as error:  # botocore raises many unrelated types; all mean "not fetched"
            raise ResultStorageError(
                f"cannot fetch {prefix} from s3://{self.bucket.bucket_name} into {destination}: {error}"
            ) from error
        return [str(path.relative_to(destination)) for path in _files(destination)]
