"""Subnet arithmetic, the reference for the atomic Redis script."""

from __future__ import annotations

import pytest

from stroppy_domain.subnets import SubnetError, first_free_subnet, host_capacity, machine_addresses, overlapping

FIRST_FREE = [
    # (base, prefix, taken, expected)
    ("10.0.0.0/16", 24, [], "10.0.0.0/24"),
    ("10.0.0.0/16", 24, ["10.0.0.0/24"], "10.0.1.0/24"),
    ("10.0.0.0/16", 24, ["10.0.0.0/24", "10.0.2.0/24"], "10.0.1.0/24"),
    ("10.0.0.0/16", 24, ["10.0.0.0/23"], "10.0.2.0/24"),
    ("10.0.0.0/16", 23, ["10.0.1.0/24"], "10.0.2.0/23"),
    ("10.0.0.0/16", 24, ["10.0.5.0/24", "10.0.0.0/24"], "10.0.1.0/24"),
    ("10.0.0.0/16", 24, ["192.168.0.0/24"], "10.0.0.0/24"),
    ("10.0.0.0/29", 29, [], "10.0.0.0/29"),
]


@pytest.mark.parametrize(("base", "prefix", "taken", "expected"), FIRST_FREE)
def test_first_free_subnet(base: str, prefix: int, taken: list[str], expected: str) -> None:
    assert first_free_subnet(base, prefix, taken) == expected


@pytest.mark.parametrize(
    ("base", "prefix", "taken", "message"),
    [
        ("10.0.0.0/24", 25, ["10.0.0.0/25", "10.0.0.128/25"], "no free /25"),
        ("10.0.0.0/24", 16, [], "does not fit"),
    ],
)
def test_first_free_subnet_errors(base: str, prefix: int, taken: list[str], message: str) -> None:
    with pytest.raises(SubnetError, match=message):
        first_free_subnet(base, prefix, taken)


@pytest.mark.parametrize(("prefix", "capacity"), [(24, 251), (29, 3), (30, 0), (28, 11)])
def test_host_capacity(prefix: int, capacity: int) -> None:
    assert host_capacity(prefix) == capacity


def test_machine_addresses_skip_the_reserved_start() -> None:
    assert machine_addresses("10.0.0.0/29", 3) == ["10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(SubnetError, match="holds 3 machines, 4 are needed"):
        machine_addresses("10.0.0.0/29", 4)


@pytest.mark.parametrize(
    ("networks", "expected"),
    [
        ({"bridge": ["172.17.0.0/16"]}, []),
        ({"lab": ["172.28.5.0/24"]}, ["lab (172.28.5.0/24)"]),
        ({"wide": ["172.0.0.0/8"]}, ["wide (172.0.0.0/8)"]),
        ({"two": ["10.0.0.0/24", "172.28.255.0/24"]}, ["two (172.28.255.0/24)"]),
        ({"v6": ["fd00::/64"], "none": [""], "host": ["172.28.0.1"]}, ["host (172.28.0.1/32)"]),
        ({"b": ["172.28.1.0/24"], "a": ["172.28.2.0/24"]}, ["a (172.28.2.0/24)", "b (172.28.1.0/24)"]),
    ],
    ids=["apart", "inside", "around", "one of several", "IPv6 and empty subnets ignored", "sorted by name"],
)
def test_networks_inside_or_around_the_address_space_are_named(
    networks: dict[str, list[str]], expected: list[str]
) -> None:
    assert overlapping("172.28.0.0/16", networks) == expected
