"""Render the host topology (bridges, ports, containers, uplinks) with each conversation's path on it.

Node ids are synthetic (n0, n1, ...) assigned in sorted key order; interface names and endpoint
names only ever reach labels, through graphviz.escape.
"""

from __future__ import annotations

import graphviz

from reportgen.explain.topology import Topology
from reportgen.model import Packet, Report

REQUEST_COLOR = "#c0392b"
REPLY_COLOR = "#2471a3"


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


def conversation_paths(report: Report, topo: Topology) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(conversation id, role, path) for the first packet of each role of each conversation."""
    by_id = {p.id: p for p in report.packets}
    out = []
    for conv in report.conversations:
        seen_roles: set[str] = set()
        for pid in conv.packets:
            p = by_id.get(pid)
            if p is None or p.role in seen_roles:
                continue
            seen_roles.add(p.role)
            out.append((conv.id, p.role, packet_path(p, topo)))
    return out


def topology_dot(report: Report, topo: Topology) -> str:
    """Return DOT for the host topology with request (red) and reply (blue, dashed) paths."""
    g = graphviz.Digraph(name="topology")
    # 14 pt labels: a wide host is scaled to the printed page's width and its labels must stay >= 9 pt.
    g.attr(rankdir="LR", fontname="DejaVu Sans", fontsize="14", nodesep="0.25", ranksep="0.35", pad="0.15")
    g.attr("node", fontname="DejaVu Sans", fontsize="14", shape="box", style="rounded", color="#7f8c8d")
    g.attr("edge", color="#bdc3c7", arrowhead="none", fontname="DejaVu Sans")
    labels: dict[str, str] = {"host": "host IP stack"}
    struct: set[tuple[str, str]] = set()
    for br, ports in topo.bridges.items():
        labels[f"br:{br}"] = f"bridge {br}"
        struct.add((f"br:{br}", "host"))
        for port in ports:
            labels[f"port:{port}"] = port
            struct.add((f"port:{port}", f"br:{br}"))
    for r in topo.routes:
        if r.dev and r.dev not in topo.bridges and r.gateway:
            labels[f"if:{r.dev}"] = r.dev
            labels[f"net:{r.dev}"] = f"beyond {r.dev}\n(gateway {r.gateway})"
            struct |= {(f"if:{r.dev}", "host"), (f"net:{r.dev}", f"if:{r.dev}")}
    overlays: list[tuple[str, str, str, str]] = []
    for conv_id, role, path in conversation_paths(report, topo):
        for key, label in path:
            labels.setdefault(key, label)
        for (a, _), (b, _) in zip(path, path[1:], strict=False):
            overlays.append((a, b, role, conv_id))
            if (a, b) not in struct and (b, a) not in struct:
                struct.add((a, b))
    ids = {key: f"n{i}" for i, key in enumerate(sorted(labels))}
    with g.subgraph(name="cluster_host") as h:
        h.attr(label="host", style="rounded,dashed", color="#95a5a6", fontcolor="#7f8c8d")
        for key in sorted(labels):
            if key == "host" or key.startswith(("br:", "port:", "if:")):
                shape = "ellipse" if key == "host" else "box"
                h.node(ids[key], graphviz.escape(labels[key]), shape=shape)
    for key in sorted(labels):
        if key.startswith(("ep:", "net:")):
            g.node(ids[key], graphviz.escape(labels[key]), shape="component" if key.startswith("ep:") else "note")
    # Structural edges always point from the containers towards the uplink, so dot lays the host out
    # left to right: endpoints, ports, bridges, the IP stack, uplinks, what lies beyond them.
    rank = {"ep": 0, "port": 1, "br": 2, "host": 3, "if": 4, "net": 5}
    oriented = {tuple(sorted((a, b), key=lambda k: rank[k.split(":")[0]])) for a, b in struct}
    for a, b in sorted(oriented):
        g.edge(ids[a], ids[b])
    labelled: set[tuple[str, str]] = set()
    for a, b, role, conv_id in overlays:
        color = REQUEST_COLOR if role == "request" else REPLY_COLOR
        # Only a path's first edge is labelled: a label on every edge widened the drawing past the
        # printed page, and the colour and dash already tell request from reply.
        label = "" if (conv_id, role) in labelled else graphviz.escape(f"{conv_id} {role}")
        labelled.add((conv_id, role))
        g.edge(
            ids[a],
            ids[b],
            color=color,
            penwidth="2",
            arrowhead="normal",
            constraint="false",
            style="solid" if role == "request" else "dashed",
            label=label,
            fontcolor=color,
            fontsize="14",
        )
    return g.source
