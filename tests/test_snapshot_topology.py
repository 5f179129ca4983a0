"""The topology from ``ip -j`` / ``bridge -j`` snapshots is the one from the text outputs.

The lab collects both; a user may paste only the JSON. The JSON was parsed but never read, so a case
with only ``ip -j addr`` had no bridges, addresses or FDB at all.
"""

from __future__ import annotations

from conftest import SAMPLES

from reportgen.explain.topology import Topology, build_topology
from reportgen.model import Snapshot
from reportgen.parsers.snapshots import Kind
from reportgen.sources.case import load_snapshots, load_spec

TEXT = {Kind.IP_LINK, Kind.IP_ADDR, Kind.BRIDGE_FDB}
JSON = {Kind.IP_LINK_JSON, Kind.IP_ADDR_JSON, Kind.BRIDGE_FDB_JSON}


def _facts(topo: Topology) -> tuple[object, ...]:
    return (topo.bridges, topo.iface_mac, topo.host_addrs, topo.fdb, topo.veth_peer, topo.names)


def _without(snaps: tuple[Snapshot, ...], kinds: set[Kind]) -> tuple[Snapshot, ...]:
    return tuple(s for s in snaps if not (s.kind in kinds and s.host == "host"))


def test_json_snapshots_alone_give_the_text_topology():
    snaps, _ = load_snapshots(load_spec([SAMPLES / "lab-container-to-internet"]))
    assert {s.kind for s in snaps} >= TEXT | JSON
    from_text = build_topology(_without(snaps, JSON))
    from_json = build_topology(_without(snaps, TEXT))
    assert from_text.fdb and from_text.host_addrs and from_text.veth_peer
    assert _facts(from_json) == _facts(from_text)
    # Given both, the facts cite the text snapshot.
    both = build_topology(snaps)
    assert _facts(both) == _facts(from_text) and both.sources == from_text.sources
