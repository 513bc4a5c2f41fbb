"""Per-run subnet reservations in Redis: atomic, leased, renewable, released on every path.

Each address space (a target and its base CIDR) is one sorted set whose members are the reserved subnets and
whose scores are their lease expiry in milliseconds of the Redis server's clock, plus two hashes mapping
subnet -> run id and run id -> subnet. Every operation is a single Lua script, so Redis runs it atomically:
two runs can never take the same or overlapping subnets, and a failure never leaves half a reservation.
Expired leases are swept inside every script, so a run that died without releasing frees its subnet after
its TTL.
"""

from __future__ import annotations

import builtins
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from stroppy_domain.errors import StroppyError
from stroppy_domain.model import Target
from stroppy_domain.settings import AddressSpace
from stroppy_domain.subnets import host_capacity

if TYPE_CHECKING:
    import redis

KEY_PREFIX = "stroppy:subnets"
DEFAULT_TTL_S = 6 * 3600

_SWEEP = """
local function sweep(leases, owners, runs, now)
  local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  for _, subnet in ipairs(expired) do
    local run = redis.call('HGET', owners, subnet)
    redis.call('HDEL', owners, subnet)
    if run and redis.call('HGET', runs, run) == subnet then
      redis.call('HDEL', runs, run)
    end
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
  end
  return expired
end

local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
"""

# KEYS: leases, owners, runs. ARGV: run_id, base start (int), base end (int), prefix, ttl_ms.
# Returns {subnet, expires_at_ms} or an error reply naming the reason.
_RESERVE = (
    _SWEEP
    + """
local leases, owners, runs = KEYS[1], KEYS[2], KEYS[3]
local run_id = ARGV[1]
local base_start, base_end = tonumber(ARGV[2]), tonumber(ARGV[3])
local prefix, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
sweep(leases, owners, runs, now)

local held = redis.call('HGET', runs, run_id)
if held then
  local held_prefix = tonumber(string.match(held, '/(%d+)$'))
  if held_prefix ~= prefix then
    return redis.error_reply('CONFLICT run ' .. run_id .. ' already holds ' .. held)
  end
  redis.call('ZADD', leases, now + ttl, held)
  return {held, tostring(now + ttl)}
end

local ranges = {}
for _, subnet in ipairs(redis.call('ZRANGE', leases, 0, -1)) do
  local a, b, c, d, bits = string.match(subnet, '^(%d+)%.(%d+)%.(%d+)%.(%d+)/(%d+)$')
  local start = ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
  table.insert(ranges, {start, start + 2 ^ (32 - tonumber(bits)) - 1})
end
table.sort(ranges, function(x, y) return x[1] < y[1] end)

local size = 2 ^ (32 - prefix)
local candidate = base_start
for _, range in ipairs(ranges) do
  if range[2] >= candidate then
    if range[1] > candidate + size - 1 then
      break
    end
    candidate = (math.floor(range[2] / size) + 1) * size
  end
end
if candidate + size - 1 > base_end then
  return redis.error_reply('EXHAUSTED')
end

local subnet = string.format('%d.%d.%d.%d/%d',
  math.floor(candidate / 16777216) % 256, math.floor(candidate / 65536) % 256,
  math.floor(candidate / 256) % 256, candidate % 256, prefix)
redis.call('ZADD', leases, now + ttl, subnet)
redis.call('HSET', owners, subnet, run_id)
redis.call('HSET', runs, run_id, subnet)
return {subnet, tostring(now + ttl)}
"""
)

# KEYS: leases, owners, runs. ARGV: run_id, ttl_ms. Returns {subnet, expires_at_ms} or an error reply.
_RENEW = (
    _SWEEP
    + """
local leases, owners, runs = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
sweep(leases, owners, runs, now)
local subnet = redis.call('HGET', runs, ARGV[1])
if not subnet then
  return redis.error_reply('NOT_HELD')
end
redis.call('ZADD', leases, now + tonumber(ARGV[2]), subnet)
return {subnet, tostring(now + tonumber(ARGV[2]))}
"""
)

# KEYS: leases, owners, runs. ARGV: run_id. Returns the released subnet, or false when the run held none.
_RELEASE = (
    _SWEEP
    + """
local leases, owners, runs = KEYS[1], KEYS[2], KEYS[3]
sweep(leases, owners, runs, now_ms())
local subnet = redis.call('HGET', runs, ARGV[1])
if not subnet then
  return false
end
redis.call('ZREM', leases, subnet)
redis.call('HDEL', owners, subnet)
redis.call('HDEL', runs, ARGV[1])
return subnet
"""
)

# KEYS: leases, owners, runs. Returns the subnets whose leases had expired.
_SWEEP_ONLY = _SWEEP + "return sweep(KEYS[1], KEYS[2], KEYS[3], now_ms())\n"


class ReservationError(StroppyError):
    """A reservation request that could not be met; the message names the address space and the run."""


class SubnetsExhausted(ReservationError):  # noqa: N818 - reads as the condition it reports
    """Every subnet of the address space is leased."""


class ReservationNotHeld(ReservationError):  # noqa: N818 - reads as the condition it reports
    """The run holds no subnet (never reserved, released, or its lease expired)."""


class ReservationStoreUnavailable(ReservationError):  # noqa: N818 - reads as the condition it reports
    """Redis could not be reached or did not answer in time; nothing was changed, so a retry is safe."""

    retryable = True


@dataclass(frozen=True)
class Reservation:
    run_id: str
    subnet: str
    expires_at: datetime


T = TypeVar("T")


def _expiry(milliseconds: bytes | str | int) -> datetime:
    return datetime.fromtimestamp(int(milliseconds) / 1000, tz=UTC)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SubnetReservations:
    """Reservations of one target's address space, held in the Redis that `client` talks to.

    The client is owned by the caller (create it with timeouts: every call here is bounded by them).
    """

    def __init__(self, client: redis.Redis, target: Target, space: AddressSpace) -> None:
        self._client = client
        self._space = space
        network = ipaddress.IPv4Network(space.base_cidr)
        self._base = (int(network.network_address), int(network.broadcast_address))
        key = f"{KEY_PREFIX}:{target}:{space.base_cidr}"
        self._keys = [f"{key}:leases", f"{key}:owners", f"{key}:runs"]
        self._reserve = client.register_script(_RESERVE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._sweep = client.register_script(_SWEEP_ONLY)
        self._name = f"{target} {space.base_cidr}"

    def reserve(self, run_id: str, machines: int, ttl_s: int = DEFAULT_TTL_S) -> Reservation:
        """Lease a free subnet for `machines` machines; a run that already holds one gets it back, renewed.

        Raises ReservationError for a missing run id, a TTL that is not positive, more machines than a subnet holds,
        a run already holding a subnet of another size, or a request Redis refuses; SubnetsExhausted when every
        subnet is leased; ReservationStoreUnavailable when Redis cannot be reached or does not answer in time."""
        if not run_id:
            raise ReservationError("a reservation needs a run id")
        if ttl_s <= 0:
            raise ReservationError(f"ttl_s must be positive, got {ttl_s}")
        capacity = host_capacity(self._space.prefix)
        if machines > capacity:
            raise ReservationError(
                f"run {run_id} needs {machines} machines, but a /{self._space.prefix} subnet of {self._name} "
                f"holds {capacity}"
            )
        reply = self._call(
            lambda: self._reserve(keys=self._keys, args=[run_id, *self._base, self._space.prefix, ttl_s * 1000]),
            run_id,
        )
        subnet, expires = reply
        return Reservation(run_id, _text(subnet), _expiry(expires))

    def renew(self, run_id: str, ttl_s: int = DEFAULT_TTL_S) -> Reservation:
        """Extend the lease of the run's subnet to `ttl_s` from now.

        Raises ReservationNotHeld when the run holds no subnet (never reserved, released, or expired), and
        ReservationStoreUnavailable when Redis cannot be reached or does not answer in time."""
        subnet, expires = self._call(lambda: self._renew(keys=self._keys, args=[run_id, ttl_s * 1000]), run_id)
        return Reservation(run_id, _text(subnet), _expiry(expires))

    def release(self, run_id: str) -> str | None:
        """Give the run's subnet back; returns it, or None when the run held none (releasing twice is fine).

        Raises ReservationStoreUnavailable when Redis cannot be reached or does not answer in time."""
        released = self._call(lambda: self._release(keys=self._keys, args=[run_id]), run_id)
        return _text(released) if released else None

    def list(self) -> list[Reservation]:
        """Current leases, lowest subnet first (expired ones included until the next sweep).

        Raises ReservationStoreUnavailable when Redis cannot be reached or does not answer in time."""

        def read() -> tuple[list[tuple[bytes, float]], dict[bytes, bytes]]:
            pipe = self._client.pipeline(transaction=True)
            pipe.zrange(self._keys[0], 0, -1, withscores=True)
            pipe.hgetall(self._keys[1])
            leases, owners = pipe.execute()
            return leases, owners

        leases, owners = self._call(read, "")
        reservations = [
            Reservation(_text(owners.get(subnet, b"")), _text(subnet), _expiry(int(score))) for subnet, score in leases
        ]
        return sorted(reservations, key=lambda item: ipaddress.IPv4Network(item.subnet))

    def sweep_expired(self) -> builtins.list[str]:  # `list` in this class body is the method above
        """Drop leases whose TTL has passed; returns the subnets freed.

        Raises ReservationStoreUnavailable when Redis cannot be reached or does not answer in time."""
        return [_text(subnet) for subnet in self._call(lambda: self._sweep(keys=self._keys, args=[]), "")]

    def _call(self, operation: Callable[[], T], run_id: str) -> T:
        import redis  # noqa: PLC0415 - the SDK loads only when reservations are used

        try:
            return operation()
        except redis.ResponseError as error:
            message = str(error)
            who = f"run {run_id}" if run_id else "request"
            if message.startswith("EXHAUSTED"):
                raise SubnetsExhausted(
                    f"no free /{self._space.prefix} subnet left in {self._name} for {who}; "
                    "wait for running tests to finish or sweep expired leases"
                ) from None
            if message.startswith("NOT_HELD"):
                raise ReservationNotHeld(f"{who} holds no subnet in {self._name}") from None
            if message.startswith("CONFLICT"):
                raise ReservationError(f"{message.removeprefix('CONFLICT ')} in {self._name}") from None
            raise ReservationError(f"Redis refused the reservation request for {who}: {message}") from error
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise ReservationStoreUnavailable(
                f"cannot reach the reservation store at {describe_client(self._client)}: {error}"
            ) from error


def describe_client(client: Any) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
