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
HEARTBEAT = "heartbeat_at"
KEPT = "kept_until"
_NOT_RESOURCES = {OPENED, HEARTBEAT, KEPT}
# KEYS: the ledger. ARGV: ttl_s. Beats only a ledger that exists: a beat racing teardown must not bring back a closed
# ledger (without an expiry). The time is the Redis server's, one clock for every master and the reaper.
_BEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'heartbeat_at', now[1] * 1000 + math.floor(now[2] / 1000))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""
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

    def beat(self, ttl_s: int) -> bool:
        """Say the run is alive now and renew the ledger's expiry; False when the ledger is gone (not opened yet, or
        closed by teardown). Raises LedgerError when Redis refuses or does not answer."""
        return bool(self._call(lambda: self._client.eval(_BEAT, 1, self.key, ttl_s), "beat"))

    def heartbeat_at(self) -> datetime | None:
        """When the run last said it was alive; None before its first beat or when the ledger is gone.

        Raises LedgerError when Redis refuses or does not answer."""
        raw = self._call(lambda: self._client.hget(self.key, HEARTBEAT), "read")
        return datetime.fromtimestamp(int(raw) / 1000, UTC) if raw else None

    def keep(self, until: datetime, ttl_s: int) -> None:
        """Mark a failed run kept for a look until `until` (the reaper leaves it alone till then), and make the ledger
        outlive that by `ttl_s`. Raises LedgerError when Redis refuses or does not answer."""
        self._call(lambda: self._client.hset(self.key, KEPT, json.dumps(until.isoformat())), "keep")
        self._call(lambda: self._client.expire(self.key, ttl_s), "set the expiry of")

    def kept_until(self) -> datetime | None:
        """Until when a failed run is kept; None when it is not. Raises LedgerError when Redis refuses or does not
        answer."""
        raw = self._call(lambda: self._client.hget(self.key, KEPT), "read")
        return datetime.fromisoformat(json.loads(raw)) if raw else None

    def forget(self, kind: str) -> None:
        """Drop an entry once its resource is gone. Raises LedgerError when Redis refuses or does not answer."""
        self._call(lambda: self._client.hdel(self.key, kind), f"forget {kind} in")

    def entries(self) -> dict[str, Any]:
        """Every entry by kind, the opening time and the heartbeat left out. Raises LedgerError when Redis refuses or
        does not answer."""
        raw = self._call(lambda: self._client.hgetall(self.key), "read")
        return {_text(kind): json.loads(value) for kind, value in raw.items() if _text(kind) not in _NOT_RESOURCES}

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
