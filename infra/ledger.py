"""A run's ledger in Redis: every resource is written here before it is created, so teardown never depends on a
step's output. The ledger expires on its own, so a run whose master died cannot keep it forever; a reaper reads
open ledgers to find what such runs left behind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from stroppy_domain.errors import StroppyError

if TYPE_CHECKING:
    import redis

KEY_PREFIX = "stroppy:ledger"
OPENED = "opened_at"
T = TypeVar("T")


class LedgerError(StroppyError):
    """The ledger could not be read or written; the message names the run."""


class RunLedger:
    """The ledger of one run. The Redis client belongs to the caller."""

    def __init__(self, client: redis.Redis, run_id: str) -> None:
        self._client = client
        self.run_id = run_id
        self.key = f"{KEY_PREFIX}:{run_id}"

    def open(self, ttl_s: int) -> None:
        """Start the ledger (idempotent) and set how long it outlives its last write.

        Raises LedgerError when Redis refuses or does not answer."""
        now = datetime.now(UTC).isoformat()
        self._call(lambda: self._client.hsetnx(self.key, OPENED, json.dumps(now)), "open")
        self._call(lambda: self._client.expire(self.key, ttl_s), "set the expiry of")

    def record(self, kind: str, value: Any) -> None:
        """Write down a resource (by kind) before it is created; recording again replaces the value.

        Raises LedgerError when Redis refuses or does not answer."""
        self._call(lambda: self._client.hset(self.key, kind, json.dumps(value)), f"record {kind} in")

    def forget(self, kind: str) -> None:
        """Drop an entry once its resource is gone. Raises LedgerError when Redis refuses or does not answer."""
        self._call(lambda: self._client.hdel(self.key, kind), f"forget {kind} in")

    def entries(self) -> dict[str, Any]:
        """Every entry by kind, the opening time left out. Raises LedgerError when Redis refuses or does not answer."""
        raw = self._call(lambda: self._client.hgetall(self.key), "read")
        return {_text(kind): json.loads(value) for kind, value in raw.items() if _text(kind) != OPENED}

    def opened_at(self) -> datetime | None:
        """When the run opened its ledger; None when the ledger is gone.

        Raises LedgerError when Redis refuses or does not answer."""
        raw = self._call(lambda: self._client.hget(self.key, OPENED), "read")
        return datetime.fromisoformat(json.loads(raw)) if raw else None

    def close(self) -> None:
        """Delete the ledger: the run holds nothing any more. Raises LedgerError when Redis refuses or does not
        answer."""
        self._call(lambda: self._client.delete(self.key), "close")

    def _call(self, operation: Callable[[], T], what: str) -> T:
        import redis  # noqa: PLC0415 - the SDK loads only when a ledger is used

        try:
            return operation()
        except redis.RedisError as error:
            transient = isinstance(error, redis.ConnectionError | redis.TimeoutError)
            raise LedgerError(f"cannot {what} the ledger of run {self.run_id}: {error}", retryable=transient) from error


def open_ledgers(client: redis.Redis) -> list[str]:
    """Run ids whose ledgers are still open."""
    return sorted(_text(key).removeprefix(f"{KEY_PREFIX}:") for key in client.scan_iter(f"{KEY_PREFIX}:*"))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
