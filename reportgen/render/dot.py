"""Render a packet's path over the hook graph as Graphviz DOT, and DOT as SVG with the real ``dot``.

Node ids come from the stage keys in reportgen.netfilter, never from input text; every label goes
through graphviz.escape (record and HTML-like labels are not used: they do not survive arbitrary
text, per ../shared/reference/stack-notes.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

import graphviz

from reportgen.explain.attribution import UNKNOWN_ADDRESS_WORDS
from reportgen.model import Packet, VerdictCode
from reportgen.netfilter import EDGES, STAGES

PATH_COLOR = "#c0392b"
SKIP_COLOR = "#7f8c8d"
_REASON_SHORT = {
    "conntrack": "skipped: conntrack",
    "no-rule": "no LOG line here",
    "bridge-nf-off": "skipped: bridge-nf off",
    "not-logged": "not logged",
    "no-chain": "passed, no chain",
}


class DotMissing(RuntimeError):
    """Graphviz's dot is not installed."""


def _nid(stage: str) -> str:
    return "s_" + stage.replace("-", "_")


# Diagram names where the netfilter stage titles would read alike side by side: "IP PREROUTING" next
# to "IP PREROUTING (after the bridge)" left readers guessing which one the packet took.
_DIAGRAM_TITLE = {
    "ip-pre-up": "IP PREROUTING on the bridge device",
    "ip-fwd-br": "IP FORWARD of a bridged frame",
    "ip-post-br": "IP POSTROUTING of a bridged frame",
    "br-post-out": "bridge POSTROUTING of a host-sent frame",
}
LEGEND = "\n".join(
    (
        "red: logged this packet, in order",
        "dashed: on its path, not logged (why)",
        "grey: a neighbouring hook it did not take",
    )
)
FONT_SIZE = "13"  # points at 100 %; the print stylesheet keeps diagrams at >= 9 pt (tests/test_looks.py)


def diagram_title(stage: str) -> str:
    """The name a diagram gives a stage."""
    return _DIAGRAM_TITLE.get(stage, STAGES[stage].title)


def packet_dot(p: Packet, neighbours: bool = True) -> str:
    """Return the DOT source of one packet's compact hook diagram: its hooks and their neighbours.

    Without ``neighbours`` only the hooks on its path are drawn: a narrow column that the printed
    report sets beside the packet's verdict at full size.
    """
    g = graphviz.Digraph(name=f"packet_{p.id}")
    g.attr(
        rankdir="TB",
        fontname="DejaVu Sans",
        fontsize="12",
        nodesep="0.25",
        ranksep="0.22",
        bgcolor="white",
        pad="0.15",
        fontcolor="#566573",
    )
    if neighbours:  # the narrow paper form has its one-line legend in the page's caption
        g.attr(label=graphviz.escape(LEGEND), labelloc="b")
    g.attr(
        "node",
        shape="box",
        style="rounded",
        fontname="DejaVu Sans",
        fontsize=FONT_SIZE,
        color="#bdc3c7",
        fontcolor="#7f8c8d",
        margin="0.12,0.05",
    )
    g.attr("edge", color="#d5d8dc", arrowsize="0.7", fontname="DejaVu Sans")
    steps: dict[str, list[str]] = {}
    for h in p.hops:
        # A hop whose line proves only "one of these hooks" is drawn in its first candidate's box;
        # its step names every candidate, so the box does not claim the first one (HookRef.label).
        ref = h.event.hook
        where = "" if ref.placed else f" (at {' or '.join(ref.candidates)})"
        steps.setdefault(h.stage, []).append(f"{h.step}. {ref.table or '?'}{where}")
    skipped: dict[str, list[str]] = {}
    for s in p.skipped:
        skipped.setdefault(s.stage, []).append(f"{s.table}: {_REASON_SHORT.get(s.reason, s.reason)}")
    # NAT happens at a nat-table slot: show it in the box of the stage it belongs to.
    nat_notes: dict[str, list[str]] = {}
    for n in p.nat:
        hook = n.hook.split()[-1]
        at = next((h.stage for h in p.hops if h.event.hook.hook == hook and h.event.hook.family != "bridge"), None)
        if at:
            verb = n.type if n.direction == "original" else f"conntrack undoes {n.type}"
            side = "src" if n.field == "source" else "dst"
            after = n.after.addr or UNKNOWN_ADDRESS_WORDS  # model.Nat.unknown: no input shows it
            nat_notes.setdefault(at, []).append(f"{verb}: {side} {n.before.addr} → {after}")
    path = [h.stage for h in p.hops]
    on = set(steps) | set(skipped)
    # Near neighbours: the stages one edge before or after a stage the packet passed, so the reader
    # sees where it could have gone instead (bridge FORWARD vs INPUT, INPUT vs FORWARD).
    # Not past the last logged stage: what follows it is the verdict, drawn as the end node.
    last = path[-1] if path else None
    near = {d for s in on if s != last for d in EDGES[s]} | {s for s, ds in EDGES.items() if on & set(ds)}
    drawn = [k for k in STAGES if k in on or (neighbours and k in near)]
    for key in drawn:
        # One line per kind of fact keeps each box two or three lines high, so the diagram of a
        # routed packet fits half a printed page at full size.
        lines = [diagram_title(key)]
        lines += [", ".join(steps[key])] if key in steps else []
        lines += [f"({'; '.join(skipped[key])})"] if key in skipped else []
        lines += nat_notes.get(key, [])
        label = graphviz.escape("\n".join(lines))
        # The tooltip (an SVG <title>) says where the kernel calls the hook; it is reportgen's own text.
        tip = graphviz.escape(STAGES[key].why)
        if key in steps:
            g.node(
                _nid(key),
                label,
                color=PATH_COLOR,
                fontcolor="#1b2631",
                penwidth="2",
                style="rounded,filled",
                fillcolor="#fdedec",
                tooltip=tip,
            )
        elif key in skipped:
            g.node(_nid(key), label, color=SKIP_COLOR, fontcolor="#34495e", style="rounded,dashed", tooltip=tip)
        else:
            g.node(_nid(key), label, tooltip=tip)
    first = p.hops[0].event.record if p.hops else None
    start = (
        "host process"
        if p.path == "local-out"
        else (f"in: {first.physin or first.in_dev}" if first and (first.physin or first.in_dev) else "in")
    )
    g.node("start", graphviz.escape(start), shape="ellipse", color=PATH_COLOR, fontcolor="#1b2631", style="")
    end = p.verdict.where if p.verdict else "?"
    code = p.verdict.code if p.verdict else VerdictCode.LAST_SEEN
    end_label = {
        VerdictCode.FORWARDED_OUT: f"out: {end}",
        VerdictCode.DELIVERED_TO_PORT: f"to port: {end}",
        VerdictCode.DELIVERED_LOCAL: end,
        VerdictCode.REJECTED: f"rejected\n{end}",
        VerdictCode.DROPPED_BY_RULE: f"dropped\n{end}",
        VerdictCode.DROPPED_BY_POLICY: f"dropped\n{end}",
        VerdictCode.UNKNOWN: f"undetermined\n{end}",
    }.get(code, f"last seen\n{end}")
    if p.hops and p.hops[0].predicted:
        end_label = f"predicted\n{end_label}"
    g.node(
        "end",
        graphviz.escape(end_label),
        shape="ellipse",
        style="filled",
        fillcolor="#eafaf1" if code.passed else "#fdedec",
        color=PATH_COLOR,
        fontcolor="#1b2631",
    )
    on_path = set(zip(path, path[1:], strict=False))
    shown = set(drawn)
    for src in drawn:
        for dst in EDGES[src]:
            if dst in shown and (src, dst) not in on_path:
                g.edge(_nid(src), _nid(dst))
    order = list(dict.fromkeys(path))
    if order:
        g.edge("start", _nid(order[0]), color=PATH_COLOR, penwidth="2")
        for a, b in zip(order, order[1:], strict=False):
            g.edge(_nid(a), _nid(b), color=PATH_COLOR, penwidth="2.2")
        g.edge(
            _nid(order[-1]),
            "end",
            color=PATH_COLOR,
            penwidth="2",
            style="dashed" if code in (VerdictCode.LAST_SEEN, VerdictCode.UNKNOWN) else "solid",
        )
        if not neighbours:
            # On paper the start and the end sit beside the first and last hook, not a row of their
            # own: two rows fewer keep a bridged packet's diagram beside its verdict at >= 9 pt.
            for node, stage in (("start", order[0]), ("end", order[-1])):
                with g.subgraph() as row:
                    row.attr(rank="same")
                    row.node(node)
                    row.node(_nid(stage))
    return g.source


def dot_to_svg(source: str, id_prefix: str = "") -> str:
    """Run dot and return SVG text without the XML prolog, for inlining.

    ``id_prefix`` scopes Graphviz's element ids (graph0, node1, edge1 ...) so that several diagrams on
    one page never share an id; the SVG scales down to its container (its viewBox is kept).
    """
    return dots_to_svgs([(source, id_prefix)])[0]


def dots_to_svgs(graphs: Sequence[tuple[str, str]]) -> list[str]:
    """Render several DOT graphs (source, id prefix) with one ``dot`` process; return their SVGs in order.

    dot lays out every graph of its input in turn and writes one SVG document per graph, each
    opening with its XML prolog: one process instead of one per diagram.
    """
    if not graphs:
        return []
    exe = shutil.which("dot")
    if exe is None:
        raise DotMissing("Graphviz 'dot' is not installed: apt-get install graphviz (see README)")
    source = "\n".join(src for src, _ in graphs)
    timeout = 60 + 5 * len(graphs)
    data = source.encode("utf-8")
    proc = subprocess.run([exe, "-Tsvg"], input=data, capture_output=True, check=False, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"dot failed: {proc.stderr.decode('utf-8', 'replace')}")
    docs = proc.stdout.decode("utf-8").split("<?xml")[1:]
    if len(docs) != len(graphs):
        raise RuntimeError(f"dot wrote {len(docs)} drawings for {len(graphs)} graphs")
    return [_inline("<?xml" + doc, prefix) for doc, (_, prefix) in zip(docs, graphs, strict=True)]


def _inline(svg: str, id_prefix: str) -> str:
    svg = re.sub(r"^<\?xml[^>]*>\s*<!DOCTYPE[^>]*>\s*", "", svg, flags=re.S)
    # dot names the group of the second and later graphs of one input "page0,1_graph0"; drawn on
    # their own they are "graph0": keep the one-graph name, so a drawing is the same however it is run.
    svg = re.sub(r'(\sid=")page\d+,\d+_', r"\1", svg)
    if id_prefix:
        svg = re.sub(r'(\sid=")', rf"\1{id_prefix}-", svg)
    return svg.replace("<svg ", '<svg style="max-width:100%;height:auto" ', 1)


_SIZE = re.compile(r'<svg ([^>]*?)width="([\d.]+)pt" height="([\d.]+)pt"')


def fit_svg(
    svg: str, max_width: float, max_height: float, min_scale: float = 0.0, page_width: float | None = None
) -> tuple[str, float]:
    """Scale an SVG's stated size (pt) down to fit a box, keeping its viewBox; return it and the scale.

    The box gives way to ``min_scale`` (labels stay legible): the drawing then takes more room, up
    to ``page_width``, which it never exceeds, since a drawing wider than the page would be cut.
    Print engines size an inline SVG by its width and height attributes; a CSS max-width alone
    shrank the drawing but kept its height, leaving half a page blank.
    """
    m = _SIZE.search(svg)
    if m is None:
        return svg, 1.0
    w, h = float(m.group(2)), float(m.group(3))
    scale = min(1.0, max(min(max_width / w, max_height / h), min_scale))
    if page_width is not None:
        scale = min(scale, page_width / w)
    # The fixed size replaces the screen's "scale down to the column" style, which print engines
    # apply to the width only.
    attrs = m.group(1).replace('style="max-width:100%;height:auto" ', "")
    sized = f'<svg {attrs}width="{w * scale:.1f}pt" height="{h * scale:.1f}pt"'
    return svg[: m.start()] + sized + svg[m.end() :], scale
