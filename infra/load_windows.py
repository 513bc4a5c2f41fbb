"""When each run's load went on, in Redis, so a run can say which others loaded its host at the same time, even
those that started and ended inside its own window. One hash (`stroppy:load-windows`) maps a run id to its window
(JSON of `stroppy_domain.host.LoadWindow`, times on the Redis server's clock, so every master agrees on them).
Windows are kept for a day after they end; one never closed (its run died mid-load) is dropped after the longest
load a run may have."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from infra.redis_atomic import server_time_ms, watched_transaction
from infra.reservations import ReservationError
from stroppy_domain.host import LoadWindow, overlapping_runs

if TYPE_CHECKING:
    import redis

KEY = "stroppy:load-windows"
KEPT_AFTER_END_MS = 24 * 3600 * 1000
LONGEST_OPEN_MS = 26 * 3600 * 1000
"""A test's load lasts at most 24 h (StroppyCli.duration) plus its margins."""
T = TypeVar("T")


class LoadWindows:
    """The load windows in the Redis `client` talks to (the caller owns it; every call is bounded by its timeouts)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def open(self, run_id: str, host: str) -> LoadWindow:
        """Record that the run's load starts now on `host` ("" where its machines are their own hosts), and drop
        windows too old to matter. Raises ReservationStoreUnavailable when Redis does not answer."""

        def change(pipe: Any) -> LoadWindow:
            now = server_time_ms(pipe)
            stale = [window.run_id for window in _windows(pipe) if _stale(window, now)]
            window = LoadWindow(run_id=run_id, host=host, started_ms=now)
            pipe.multi()
            if stale:
                pipe.hdel(KEY, *stale)
            pipe.hset(KEY, run_id, window.model_dump_json())
            return window

        return self._transaction(change)

    def close(self, run_id: str) -> list[str]:
        """End the run's window now (a second call keeps the first end) and return the other runs whose load went
        on during it on the same host; nothing when the run never opened one. Raises ReservationStoreUnavailable
        when Redis does not answer, ReservationError when a stored window is malformed."""

        def change(pipe: Any) -> list[str]:
            now = server_time_ms(pipe)
            windows = _windows(pipe)
            mine = next((window for window in windows if window.run_id == run_id), None)
            pipe.multi()
            if mine is None:
                return []
            if mine.ended_ms is None:
                mine = mine.model_copy(update={"ended_ms": now})
                pipe.hset(KEY, run_id, mine.model_dump_json())
            return overlapping_runs(mine, windows)

        return self._transaction(change)

    def _transaction(self, change: Callable[[Any], T]) -> T:
        return watched_transaction(self._client, KEY, change, "load windows")


def _windows(pipe: Any) -> list[LoadWindow]:
    try:
        return [LoadWindow.model_validate_json(raw) for raw in pipe.hgetall(KEY).values()]
    except ValidationError as error:
        raise ReservationError(f"a load window in {KEY} is malformed: {error}") from error


def _stale(window: LoadWindow, now: int) -> bool:
    if window.ended_ms is None:
        return now - window.started_ms > LONGEST_OPEN_MS
    return now - window.ended_ms > KEPT_AFTER_END_MS
