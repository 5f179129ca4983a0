"""Where each conversation's packets crossed the host: the nodes of the topology diagram's paths.

Computed once here from the explained packets (their hops, path class and verdict), so the topology
renderer only draws: it never works out again where a packet entered or left.
"""

from __future__ import annotations

from collections.abc import Mapping

from reportgen.explain.topology import Topology
from reportgen.model import Conversation, Crossing, Packet, Report


def _endpoint(topo: Topology, mac: str | None, ip: str | None) -> tuple[str, str]:
    name = topo.name(ip) or (topo.name(mac) if mac else None)
    label = ip or mac or "?"
    if name and not name.endswith("own MAC"):
        label = f"{name}\n{label}" if name not in label else label
    return f"ep:{ip or mac}", label


def packet_path(p: Packet, topo: Topology) -> list[tuple[str, str]]:
    """The (node key, label) sequence a packet crossed, from where it came to where it went."""
    hops = [h.event.record for h in p.hops]
    if not hops:
        return []
    first, last = hops[0], hops[-1]
    l3 = next((r for r in hops if r.src), None)
    path: list[tuple[str, str]] = []
    physin = next(
        (
            r.physin or (r.in_dev if r.fmt == "ebtlog" else "")
            for r in hops
            if r.physin or (r.fmt == "ebtlog" and r.in_dev)
        ),
        "",
    )
    in_dev = next((r.in_dev for r in hops if r.fmt != "ebtlog" and r.in_dev), "")
    if p.path == "local-out":
        path.append(("host", "host IP stack"))
    elif physin:
        bridge = topo.bridge_of(physin) or in_dev or "bridge"
        path += [
            _endpoint(topo, first.mac_src, l3.src if l3 else None),
            (f"port:{physin}", physin),
            (f"br:{bridge}", f"bridge {bridge}"),
        ]
    elif in_dev and topo.is_bridge(in_dev):
        # A trace monitor names no bridge port: the frame came from behind the bridge.
        path += [_endpoint(topo, first.mac_src, l3.src if l3 else None), (f"br:{in_dev}", f"bridge {in_dev}")]
    elif in_dev:
        path += [(f"net:{in_dev}", f"beyond {in_dev}"), (f"if:{in_dev}", in_dev)]
    if p.path in ("routed", "local-in", "bridged-to-host") and path and path[-1][0] != "host":
        path.append(("host", "host IP stack"))
    eg_port = next(
        (
            r.physout or (r.out_dev if r.fmt == "ebtlog" else "")
            for r in reversed(hops)
            if r.physout or (r.fmt == "ebtlog" and r.out_dev)
        ),
        "",
    )
    ip_out = next((r.out_dev for r in reversed(hops) if r.fmt != "ebtlog" and r.out_dev), "")
    if p.path in ("local-in", "bridged-to-host") or (p.verdict and not p.verdict.code.passed):
        pass  # a dropped packet's line ends where it was last seen, not at the interface routing chose
    elif eg_port:
        bridge = topo.bridge_of(eg_port) or ip_out or "bridge"
        if not path or path[-1][0] != f"br:{bridge}":  # a packet logged only on the way out has no ingress
            path.append((f"br:{bridge}", f"bridge {bridge}"))
        dst_mac = last.mac_dst if last.fmt == "ebtlog" else None
        l3_last = next((r for r in reversed(hops) if r.src), None)  # after any DNAT
        path += [(f"port:{eg_port}", eg_port), _endpoint(topo, dst_mac, l3_last.dst if l3_last else None)]
    elif ip_out and topo.is_bridge(ip_out):
        l3_last = next((r for r in reversed(hops) if r.src), None)
        if not path or path[-1][0] != f"br:{ip_out}":
            path.append((f"br:{ip_out}", f"bridge {ip_out}"))
        path.append(_endpoint(topo, None, l3_last.dst if l3_last else None))
    elif ip_out:
        path += [(f"if:{ip_out}", ip_out), (f"net:{ip_out}", f"beyond {ip_out}")]
    dedup: list[tuple[str, str]] = []
    for node in path:
        if not dedup or dedup[-1][0] != node[0]:
            dedup.append(node)
    return dedup


def conversation_crossings(conv: Conversation, packets: Mapping[str, Packet], topo: Topology) -> tuple[Crossing, ...]:
    """The path of the first packet of each role of one conversation."""
    out = []
    seen_roles: set[str] = set()
    for pid in conv.packets:
        p = packets.get(pid)
        if p is None or p.role in seen_roles:
            continue
        seen_roles.add(p.role)
        out.append(Crossing(conv.id, p.role, tuple(packet_path(p, topo))))
    return tuple(out)


def crossings(report: Report, topo: Topology) -> tuple[Crossing, ...]:
    """The path of the first packet of each role of each conversation."""
    by_id = {p.id: p for p in report.packets}
    return tuple(c for conv in report.conversations for c in conversation_crossings(conv, by_id, topo))
