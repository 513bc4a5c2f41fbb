"""History store: one record per finished run, kept where the run archive is kept, found by fingerprint.

A local directory by default; an S3 bucket through a `prefect-aws` `S3Bucket` block when one is configured. Both use
the same keys, so a history moves between them by copying:

    runs/<fingerprint>/<started_at as %Y%m%dT%H%M%S%fZ, UTC>-<run_id>.json   the record, `HistoryRecord` as JSON
    tests/<test name>/<fingerprint>                                         an empty marker: the index of tests

A key sorts in time order, so one fingerprint's latest runs are the last names of one listing, and only those are
read. Appending is idempotent: the same record is written to the same key.
"""

from __future__ import annotations

import os
import re
import tempfile
from abc import ABC, abstractmethod
from datetime import UTC
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from infra.targets.base import RUN_ID_PATTERN
from stroppy_domain.errors import MESSAGE_CHARS, StroppyError, printable
from stroppy_domain.history import FINGERPRINT_CHARS, HistoryRecord
from stroppy_domain.model_base import NAME_PATTERN

FINGERPRINT_PATTERN = rf"^[0-9a-f]{{{FINGERPRINT_CHARS}}}$"
DEFAULT_LIMIT = 50
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed"}


class HistoryStoreError(StroppyError):
    """A record could not be stored, listed or read, or is not a record; names the key and the destination."""


class HistoryStore(Protocol):
    def append(self, record: HistoryRecord) -> str:
        """Store `record` under its key (again, harmlessly, on a retry); return where. Raises HistoryStoreError."""
        ...

    def latest(self, fingerprint: str, limit: int = DEFAULT_LIMIT) -> list[HistoryRecord]:
        """The last `limit` records of `fingerprint`, oldest first. Raises HistoryStoreError."""
        ...

    def fingerprints(self, test: str) -> list[str]:
        """The fingerprints `test` has records under, sorted. Raises HistoryStoreError."""
        ...

    def tests(self) -> list[str]:
        """The tests with records, sorted. Raises HistoryStoreError."""
        ...


def _checked(value: str, pattern: str, what: str) -> str:
    """`value` itself; raises HistoryStoreError unless it matches `pattern`, so no key can leave the store's root."""
    if not re.fullmatch(pattern, value):
        raise HistoryStoreError(f"{what} {printable(value, 80)!r} does not match {pattern}")
    return value


def _record_keys(record: HistoryRecord) -> tuple[str, str]:
    """The record's key and its test's index marker. Raises HistoryStoreError on a name that cannot be a key or a
    start time without a time zone (whose key would depend on the machine's clock setting)."""
    fingerprint = _checked(record.fingerprint, FINGERPRINT_PATTERN, "fingerprint")
    test = _checked(record.test, NAME_PATTERN, "test name")
    run_id = _checked(record.run_id, RUN_ID_PATTERN, "run id")
    if record.started_at.tzinfo is None:
        raise HistoryStoreError(f"run {run_id}: started_at {record.started_at.isoformat()} has no time zone")
    started = record.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"runs/{fingerprint}/{started}-{run_id}.json", f"tests/{test}/{fingerprint}"


class _KeyedStore(ABC):
    """The history over a store of keys; a subclass reads, writes and lists them."""

    def append(self, record: HistoryRecord) -> str:
        """Write the record, then its test's marker (a retry after a failure between them writes both again).

        Raises HistoryStoreError on a record that cannot be keyed or a write that fails."""
        record_key, marker_key = _record_keys(record)
        self._write(record_key, record.model_dump_json().encode())
        self._write(marker_key, b"")
        return self._where(record_key)

    def latest(self, fingerprint: str, limit: int = DEFAULT_LIMIT) -> list[HistoryRecord]:
        """Lists the fingerprint's records once and reads the last `limit`. Raises HistoryStoreError on a bad
        fingerprint or limit, a failed listing or read, or a record that does not parse."""
        folder = f"runs/{_checked(fingerprint, FINGERPRINT_PATTERN, 'fingerprint')}"
        if limit < 1:
            raise HistoryStoreError(f"limit must be at least 1, got {limit}")
        names = sorted(name for name in self._entries(folder) if name.endswith(".json"))[-limit:]
        return [self._parse(f"{folder}/{name}") for name in names]

    def fingerprints(self, test: str) -> list[str]:
        """Raises HistoryStoreError on a bad test name or a failed listing."""
        return sorted(self._entries(f"tests/{_checked(test, NAME_PATTERN, 'test name')}"))

    def tests(self) -> list[str]:
        """Raises HistoryStoreError on a failed listing."""
        return sorted(self._entries("tests"))

    def _parse(self, key: str) -> HistoryRecord:
        data = self._read(key)
        try:
            return HistoryRecord.model_validate_json(data)
        except ValidationError as error:
            problem = printable(str(error), MESSAGE_CHARS)
            raise HistoryStoreError(f"{self._where(key)} is not a history record: {problem}") from error

    @abstractmethod
    def _where(self, key: str) -> str:
        """The key as a path or URL, for the caller and for errors."""

    @abstractmethod
    def _read(self, key: str) -> bytes: ...

    @abstractmethod
    def _write(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def _entries(self, folder: str) -> list[str]:
        """The names directly under `folder`; none when it does not exist."""


class LocalHistoryStore(_KeyedStore):
    """Under a directory; each record is written to a temporary file and renamed, so no reader sees half of one."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _where(self, key: str) -> str:
        return str(self.root / key)

    def _read(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except OSError as error:
            raise HistoryStoreError(f"cannot read {self._where(key)}: {error}") from error

    def _write(self, key: str, data: bytes) -> None:
        path = self.root / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".", suffix=".tmp", delete=False) as file:
                file.write(data)
            os.replace(file.name, path)
        except OSError as error:
            raise HistoryStoreError(f"cannot write {self._where(key)}: {error}") from error

    def _entries(self, folder: str) -> list[str]:
        try:
            return os.listdir(self.root / folder)
        except FileNotFoundError:
            return []
        except OSError as error:
            raise HistoryStoreError(f"cannot list {self._where(folder)}: {error}") from error


def _transient(error: Exception) -> bool:
    """Whether S3 may accept the same call later: no connection, a timeout, a server error or throttling."""
    from botocore import exceptions  # noqa: PLC0415 - the SDK loads only when S3 is used

    if isinstance(error, exceptions.ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or error.response.get("Error", {}).get("Code") in _THROTTLED
    return isinstance(error, exceptions.ConnectionError | exceptions.HTTPClientError)


class S3HistoryStore(_KeyedStore):
    """Through a `prefect_aws.S3Bucket`; keys are `<bucket_folder>/<prefix>/<key>`. A listing is one paginated
    `list_objects_v2` of one prefix, split at '/'."""

    def __init__(self, bucket: Any, prefix: str = "history") -> None:
        self.bucket = bucket
        self.root = "/".join(part for part in (bucket.bucket_folder.strip("/"), prefix.strip("/")) if part)
        self._client: Any = None

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket.bucket_name}/{self._key(key)}"

    def _key(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def _s3(self) -> Any:
        if self._client is None:
            self._client = self.bucket.credentials.get_s3_client()
        return self._client

    def _failure(self, verb: str, key: str, error: Exception) -> HistoryStoreError:
        return HistoryStoreError(f"cannot {verb} {self._where(key)}: {error}", retryable=_transient(error))

    # botocore raises many unrelated types; each `except Exception` below means "not done", and says why.
    def _read(self, key: str) -> bytes:
        try:
            data: bytes = self._s3().get_object(Bucket=self.bucket.bucket_name, Key=self._key(key))["Body"].read()
        except Exception as error:
            raise self._failure("read", key, error) from error
        return data

    def _write(self, key: str, data: bytes) -> None:
        try:
            self._s3().put_object(Bucket=self.bucket.bucket_name, Key=self._key(key), Body=data)
        except Exception as error:
            raise self._failure("write", key, error) from error

    def _entries(self, folder: str) -> list[str]:
        prefix = f"{self._key(folder)}/"
        names: list[str] = []
        try:
            pages = self._s3().get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket.bucket_name, Prefix=prefix, Delimiter="/"):
                names += [common["Prefix"][len(prefix) : -1] for common in page.get("CommonPrefixes", [])]
                names += [item["Key"][len(prefix) :] for item in page.get("Contents", [])]
        except Exception as error:
            raise self._failure("list", folder, error) from error
        return names
