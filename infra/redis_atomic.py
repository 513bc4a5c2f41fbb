"""What the Redis stores that change several entries at once (CPU leases, load windows) share: a WATCH/MULTI
transaction that returns its callable's value, the Redis server's clock, and transport errors reported as
`ReservationStoreUnavailable` (nothing was written, so a retry is safe)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from infra.reservations import ReservationStoreUnavailable, describe_client

if TYPE_CHECKING:
    import redis

T = TypeVar("T")


def server_time_ms(pipe: Any) -> int:
    """The Redis server's time in milliseconds: one clock for every master."""
    seconds, microseconds = pipe.time()
    return int(seconds) * 1000 + int(microseconds) // 1000


def watched_transaction(client: redis.Redis, key: str, change: Callable[[Any], T], store: str) -> T:
    """Run `change(pipe)` with `key` watched and return its value; Redis runs it again when another client changed
    the key meanwhile. Raises ReservationStoreUnavailable, naming `store`, when Redis does not answer in time;
    redis.ResponseError when Redis refuses a command."""
    import redis  # noqa: PLC0415 - the SDK loads only when a store is used

    # redis-py types the callable as returning None; with value_from_callable it returns the callable's value.
    run: Callable[..., T] = client.transaction  # type: ignore[assignment]
    try:
        return run(change, key, value_from_callable=True)
    except (redis.ConnectionError, redis.TimeoutError) as error:
        raise ReservationStoreUnavailable(f"cannot reach the {store} at {describe_client(client)}: {error}") from error
