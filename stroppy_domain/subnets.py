"""Subnet arithmetic for per-run networks (IPv4).

In every subnet the network address and the next three are left free (`.1` is the bridge gateway on
Docker, `.2`/`.3` are kept for the provider), and the broadcast address is never used, so a /24 offers
machines `.4` to `.254`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from stroppy_domain.errors import StroppyError

RESERVED_AT_START = 4


class SubnetError(StroppyError, ValueError):
    """A subnet request that cannot be met; the message says which limit was hit."""


def host_capacity(prefix: int) -> int:
    """How many machines fit into one subnet of this prefix."""
    addresses: int = 2 ** (32 - prefix)  # an int: IPv4 prefixes are at most 32 (typeshed cannot tell the sign)
    return max(0, addresses - RESERVED_AT_START - 1)


def machine_addresses(subnet: str, count: int) -> list[str]:
    """The first `count` machine addresses of `subnet`, in order; raises SubnetError when it holds fewer."""
    network = ipaddress.IPv4Network(subnet)
    capacity = host_capacity(network.prefixlen)
    if count > capacity:
        raise SubnetError(f"subnet {subnet} holds {capacity} machines, {count} are needed")
    first = int(network.network_address) + RESERVED_AT_START
    return [str(ipaddress.IPv4Address(first + offset)) for offset in range(count)]


def first_free_subnet(base_cidr: str, prefix: int, taken: Iterable[str]) -> str:
    """The lowest subnet of size /`prefix` inside `base_cidr` that overlaps none of `taken`.

    Subnets of any size count as taken: a reserved /23 blocks both of its /24s. This is the reference
    for the atomic Redis script in `infra.reservations`, which applies the same rule server-side.

    Raises SubnetError when `prefix` does not fit inside `base_cidr`, or no free subnet of that size is left.
    """
    base = ipaddress.IPv4Network(base_cidr)
    if not base.prefixlen <= prefix <= 32:
        raise SubnetError(f"prefix /{prefix} does not fit inside {base_cidr}")
    ranges = sorted(
        (int(net.network_address), int(net.broadcast_address))
        for net in (ipaddress.IPv4Network(cidr) for cidr in taken)
    )
    size = 2 ** (32 - prefix)
    candidate = int(base.network_address)
    for start, end in ranges:
        if end < candidate:
            continue
        if start > candidate + size - 1:
            break
        candidate = (end // size + 1) * size
    if candidate + size - 1 > int(base.broadcast_address):
        raise SubnetError(f"no free /{prefix} subnet left in {base_cidr}")
    return f"{ipaddress.IPv4Address(candidate)}/{prefix}"


def overlapping(base_cidr: str, networks: dict[str, list[str]]) -> list[str]:
    """`name (subnet)` for each subnet of `networks` (name -> its subnets) that shares addresses with `base_cidr`;
    subnets that are not IPv4 networks are not in its way."""
    space = ipaddress.IPv4Network(base_cidr)
    found = []
    for name, subnets in sorted(networks.items()):
        for subnet in subnets:
            try:
                other = ipaddress.ip_network(subnet, strict=False)
            except ValueError:
                continue
            if isinstance(other, ipaddress.IPv4Network) and space.overlaps(other):
                found.append(f"{name} ({other})")
    return found
