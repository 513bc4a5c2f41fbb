"""Leases on a shared host's CPUs in Redis: atomic across concurrent runs and masters, renewable, released on every
path, and gone by themselves when their TTL passes (a run that died without releasing).

One hash per host (`stroppy:cpus:<target>:<host id>`) maps a run id to its grant (JSON of
`stroppy_domain.capacity.CpuGrant`, expiry in milliseconds of the Redis server's clock). Every change runs in a
WATCH/MULTI transaction that reads the hash and the server's time, decides with `stroppy_domain.capacity.allocate`
and writes only if nobody changed the hash meanwhile (else it runs again), so two runs never get the same CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from infra.redis_atomic import server_time_ms, watched_transaction
from infra.reservations import ReservationError, ReservationStoreUnavailable, describe_client
from stroppy_domain.capacity import CpuGrant, HostCapacity, MachineDemand, Shortfall, allocate
from stroppy_domain.model import Isolation

if TYPE_CHECKING:
    import redis

KEY_PREFIX = "stroppy:cpus"
T = TypeVar("T")


class CapacityError(ReservationError):
    """A CPU lease that could not be had or changed; the message names the host and the run."""


class CapacityTimeout(CapacityError):  # noqa: N818 - reads as the condition it reports
    """The run's CPUs did not become free within its bound."""


class CpuLeases:
    """The CPU leases of one host, held in the Redis that `client` talks to (the caller owns it; create it with
    timeouts: every call here is bounded by them). `host_key` names the host: the target and the engine's ID."""

    def __init__(self, client: redis.Redis, host_key: str) -> None:
        self._client = client
        self._key = f"{KEY_PREFIX}:{host_key}"
        self._name = host_key

    @property
    def key(self) -> str:
        return self._key

    def acquire(
        self, host: HostCapacity, run_id: str, demands: Sequence[MachineDemand], isolation: Isolation, ttl_s: int
    ) -> CpuGrant | Shortfall:
        """The run's grant (a run that holds one gets it back, renewed), or what is missing now.

        Raises CapacityError for a missing run id or a TTL that is not positive, and ReservationStoreUnavailable
        when Redis cannot be reached or does not answer in time."""
        if not run_id:
            raise CapacityError("a CPU lease needs a run id")
        if ttl_s <= 0:
            raise CapacityError(f"ttl_s must be positive, got {ttl_s}")

        def change(pipe: Any) -> CpuGrant | Shortfall:
            now = server_time_ms(pipe)
            live, expired = self._read(pipe, now)
            held = next((grant for grant in live if grant.run_id == run_id), None)
            expires = now + ttl_s * 1000
            if held is not None:
                answer: CpuGrant | Shortfall = held.model_copy(update={"expires_ms": expires})
            else:
                answer = allocate(host, live, run_id, demands, isolation, expires)
            pipe.multi()
            if expired:
                pipe.hdel(self._key, *expired)
            if isinstance(answer, CpuGrant):
                pipe.hset(self._key, run_id, answer.model_dump_json())
            return answer

        return self._transaction(change, run_id)

    def renew(self, run_id: str, ttl_s: int) -> CpuGrant:
        """Extend the run's grant to `ttl_s` from now. Raises CapacityError when the run holds none (never had one,
        released, or expired) or the TTL is not positive, ReservationStoreUnavailable when Redis does not answer."""
        if ttl_s <= 0:
            raise CapacityError(f"ttl_s must be positive, got {ttl_s}")

        def change(pipe: Any) -> CpuGrant:
            now = server_time_ms(pipe)
            live, _ = self._read(pipe, now)
            held = next((grant for grant in live if grant.run_id == run_id), None)
            if held is None:
                raise CapacityError(f"run {run_id} holds no CPUs on {self._name}")
            renewed = held.model_copy(update={"expires_ms": now + ttl_s * 1000})
            pipe.multi()
            pipe.hset(self._key, run_id, renewed.model_dump_json())
            return renewed

        return self._transaction(change, run_id)

    def release(self, run_id: str) -> bool:
        """Give the run's CPUs back; False when it held none (releasing twice is fine).

        Raises ReservationStoreUnavailable when Redis cannot be reached or does not answer in time."""
        removed = self._call(lambda: self._client.hdel(self._key, run_id), run_id)
        return bool(removed)

    def grants(self) -> list[CpuGrant]:
        """The live grants, by run id. Raises ReservationStoreUnavailable when Redis does not answer."""

        def read(pipe: Any) -> list[CpuGrant]:
            live, _ = self._read(pipe, server_time_ms(pipe))
            pipe.multi()
            return sorted(live, key=lambda grant: grant.run_id)

        return self._transaction(read, "")

    def _read(self, pipe: Any, now: int) -> tuple[list[CpuGrant], list[str]]:
        live: list[CpuGrant] = []
        expired: list[str] = []
        for run_id, raw in pipe.hgetall(self._key).items():
            name = run_id.decode() if isinstance(run_id, bytes) else run_id
            try:
                grant = CpuGrant.model_validate_json(raw)
            except ValidationError as error:
                raise CapacityError(f"the CPU lease of run {name} on {self._name} is malformed: {error}") from error
            if grant.expires_ms > now:
                live.append(grant)
            else:
                expired.append(name)
        return live, expired

    def _transaction(self, change: Callable[[Any], T], run_id: str) -> T:
        return self._call(lambda: watched_transaction(self._client, self._key, change, "CPU lease store"), run_id)

    def _call(self, operation: Callable[[], T], run_id: str) -> T:
        import redis  # noqa: PLC0415 - the SDK loads only when leases are used

        try:
            return operation()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise ReservationStoreUnavailable(
                f"cannot reach the CPU lease store at {describe_client(self._client)}: {error}"
            ) from error
        except redis.ResponseError as error:
            who = f"run {run_id}" if run_id else "request"
            raise CapacityError(f"Redis refused the CPU lease request of {who} on {self._name}: {error}") from error


def wait_for_cpus(
    acquire: Callable[[], CpuGrant | Shortfall],
    timeout_s: float,
    poll_s: float,
    progress: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> CpuGrant:
    """Ask until a grant comes, saying what is missing whenever that changes ("waiting for capacity: ...").

    Raises CapacityTimeout, with the last shortfall, when none came within `timeout_s`; and whatever `acquire`
    raises."""
    deadline = clock() + timeout_s
    said = ""
    while True:
        answer = acquire()
        if isinstance(answer, CpuGrant):
            return answer
        what = answer.describe()
        if clock() + poll_s > deadline:
            raise CapacityTimeout(f"no capacity within {timeout_s:g} s: the run {what}")
        if what != said:
            progress(f"waiting for capacity: {what}")
            said = what
        sleep(poll_s)
