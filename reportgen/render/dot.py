"""Render a packet's path over the hook graph as Graphviz DOT, and DOT as SVG with the real ``dot``.

Node ids come from the stage keys in reportgen.netfilter, never from input text; every label goes
through graphviz.escape (record and HTML-like labels are not used: they do not survive arbitrary
text, per ../shared/reference/stack-notes.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import graphviz

from reportgen.model import Packet, VerdictCode
from reportgen.netfilter import EDGES, STAGES

PATH_COLOR = "#c0392b"
SKIP_COLOR = "#7f8c8d"
_REASON_SHORT = {"conntrack": "skipped: conntrack", "no-rule": "no LOG line here", "bridge-nf-off":
                 "skipped: bridge-nf off", "not-logged": "not logged", "no-chain": "passed, no chain"}


class DotMissing(RuntimeError):
    """Graphviz's dot is not installed."""


def _nid(stage: str) -> str:
    return "s_" + stage.replace("-", "_")


def packet_dot(p: Packet) -> str:
    """Return the DOT source of one packet's hook diagram."""
    g = graphviz.Digraph(name=f"packet_{p.id}")
    g.attr(rankdir="LR", fontname="DejaVu Sans", fontsize="10", nodesep="0.25", ranksep="0.35",
           bgcolor="white", pad="0.2")
    g.attr("node", shape="box", style="rounded", fontname="DejaVu Sans", fontsize="10", color="#bdc3c7",
           fontcolor="#95a5a6")
    g.attr("edge", color="#d5d8dc", arrowsize="0.6", fontname="DejaVu Sans")
    steps: dict[str, list[str]] = {}
    for h in p.hops:
        steps.setdefault(h.stage, []).append(f"{h.step}. {h.event.hook.table or '?'}")
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
            nat_notes.setdefault(at, []).append(f"{verb}: {side} {n.before.addr} → {n.after.addr}")
    path = [h.stage for h in p.hops]
    for key, stage in STAGES.items():
        lines = [stage.title]
        lines += steps.get(key, [])
        lines += [f"({x})" for x in skipped.get(key, [])]
        lines += nat_notes.get(key, [])
        label = graphviz.escape("\n".join(lines))
        # The tooltip (an SVG <title>) says where the kernel calls the hook; it is reportgen's own text.
        tip = graphviz.escape(stage.why)
        if key in steps:
            g.node(_nid(key), label, color=PATH_COLOR, fontcolor="#1b2631", penwidth="2",
                   style="rounded,filled", fillcolor="#fdedec", tooltip=tip)
        elif key in skipped:
            g.node(_nid(key), label, color=SKIP_COLOR, fontcolor="#34495e", style="rounded,dashed", tooltip=tip)
        else:
            g.node(_nid(key), label, tooltip=tip)
    first = p.hops[0].event.record if p.hops else None
    start = "host process" if p.path == "local-out" else (
        f"in: {first.physin or first.in_dev}" if first and (first.physin or first.in_dev) else "in")
    g.node("start", graphviz.escape(start), shape="ellipse", color=PATH_COLOR, fontcolor="#1b2631", style="")
    end = p.verdict.where if p.verdict else "?"
    code = p.verdict.code if p.verdict else VerdictCode.LAST_SEEN
    end_label = {VerdictCode.FORWARDED_OUT: f"out: {end}", VerdictCode.DELIVERED_TO_PORT: f"to port: {end}",
                 VerdictCode.DELIVERED_LOCAL: end, VerdictCode.REJECTED: f"rejected\n{end}",
                 VerdictCode.DROPPED_BY_RULE: f"dropped\n{end}", VerdictCode.DROPPED_BY_POLICY: f"dropped\n{end}",
                 VerdictCode.UNKNOWN: f"undetermined\n{end}",
                 }.get(code, f"last seen\n{end}")
    if p.hops and p.hops[0].predicted:
        end_label = f"predicted\n{end_label}"
    g.node("end", graphviz.escape(end_label), shape="ellipse", style="filled",
           fillcolor="#eafaf1" if code.passed else "#fdedec",
           color=PATH_COLOR, fontcolor="#1b2631")
    on_path = set(zip(path, path[1:], strict=False))
    for src, dsts in EDGES.items():
        for dst in dsts:
            if (src, dst) not in on_path:
                g.edge(_nid(src), _nid(dst))
    order = list(dict.fromkeys(path))
    if order:
        g.edge("start", _nid(order[0]), color=PATH_COLOR, penwidth="2")
        for a, b in zip(order, order[1:], strict=False):
            g.edge(_nid(a), _nid(b), color=PATH_COLOR, penwidth="2.2")
        g.edge(_nid(order[-1]), "end", color=PATH_COLOR, penwidth="2",
               style="dashed" if code in (VerdictCode.LAST_SEEN, VerdictCode.UNKNOWN) else "solid")
    return g.source


def dot_to_svg(source: str) -> str:
    """Run dot and return SVG text without the XML prolog (for inlining)."""
    exe = shutil.which("dot")
    if exe is None:
        raise DotMissing("Graphviz 'dot' is not installed: apt-get install graphviz (see README)")
    proc = subprocess.run([exe, "-Tsvg"], input=source.encode("utf-8"), capture_output=True, check=False,
                          timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"dot failed: {proc.stderr.decode('utf-8', 'replace')}")
    svg = proc.stdout.decode("utf-8")
    svg = re.sub(r"^<\?xml[^>]*>\s*<!DOCTYPE[^>]*>\s*", "", svg, flags=re.S)
    return svg
