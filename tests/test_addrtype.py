"""-m addrtype decided from the host's addresses (xt_addrtype.c asks inet_addr_type for the address's
one type): what ufw's INPUT chains ask of every packet (ufw-not-local, ufw-after-input)."""

from __future__ import annotations

import pytest

from reportgen.explain.rules import PacketView, match_one
from reportgen.parsers.ruleset import Match

LOCAL = frozenset({"198.51.100.10", "172.17.0.1"})


def _dst_type(dst: str, want: str, local: frozenset[str] | None = LOCAL, negated: bool = False) -> bool | None:
    view = PacketView("198.51.100.1", dst, "TCP", 40000, 8081, "ens33", "", local_addrs=local)
    return match_one(Match("--dst-type", (want,), negated, "addrtype"), view)


@pytest.mark.parametrize(
    ("dst", "want", "expected"),
    [
        ("198.51.100.10", "LOCAL", True),
        ("198.51.100.10", "BROADCAST", False),  # an own address has the one type LOCAL
        ("198.51.100.10", "MULTICAST", False),
        ("203.0.113.7", "LOCAL", False),
        ("203.0.113.7", "BROADCAST", None),  # a directed broadcast the snapshot may not list
        ("255.255.255.255", "BROADCAST", True),
        ("224.0.0.251", "MULTICAST", True),
        ("224.0.0.251", "BROADCAST", False),
        ("198.51.100.10", "UNICAST", None),
    ],
)
def test_dst_type(dst: str, want: str, expected: bool | None) -> None:
    assert _dst_type(dst, want) is expected


def test_negation_and_unknown_addresses() -> None:
    assert _dst_type("198.51.100.10", "BROADCAST", negated=True) is True
    assert _dst_type("198.51.100.10", "LOCAL", local=None) is None
    assert _dst_type("198.51.100.10", "BROADCAST", local=None) is None
