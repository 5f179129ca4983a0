"""Render the host topology (bridges, ports, containers, uplinks) with each conversation's path on it.

Node ids are synthetic (n0, n1, ...) assigned in sorted key order; interface names and endpoint
names only ever reach labels, through graphviz.escape.
"""

from __future__ import annotations

import graphviz

from reportgen.explain.topology import Topology
from reportgen.model import Report
from reportgen.render.view import id_runs

REQUEST_COLOR = "#c0392b"
REPLY_COLOR = "#2471a3"
# A path whose direction the trace does not prove (explain._role "unknown"): neither red nor blue.
UNKNOWN_COLOR = "#7f8c8d"
# How each role's path is drawn (colour, line style); related ICMP errors are drawn as replies.
_ROLE_STYLE = {"request": (REQUEST_COLOR, "solid"), "unknown": (UNKNOWN_COLOR, "dotted")}


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
    # Conversations that cross the host the same way are drawn as one path, labelled with all their
    # ids: three hundred downloads through one uplink are one red line, not three hundred.
    alike: dict[tuple[str, tuple[tuple[str, str], ...]], list[str]] = {}
    for c in report.crossings:
        alike.setdefault((c.role, c.nodes), []).append(c.conversation)
    overlays: list[tuple[str, str, str, str]] = []
    for (role, nodes), convs in alike.items():
        conv_id, path = id_runs(convs, 3), list(nodes)
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
        color, style = _ROLE_STYLE.get(role, (REPLY_COLOR, "dashed"))
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
            style=style,
            label=label,
            fontcolor=color,
            fontsize="14",
        )
    return g.source
