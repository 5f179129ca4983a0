"""Render one self-contained HTML report per case (Jinja2, inline CSS and SVG, nothing fetched)."""

from __future__ import annotations

from importlib import resources

import jinja2

from reportgen import __version__
from reportgen.model import LineRef, Packet, PacketGroup, Report, family_tool
from reportgen.render.dot import dot_to_svg, fit_svg, packet_dot
from reportgen.render.view import (
    ALIKE_NOTE,
    alike_conversations,
    conversation_outcomes,
    endpoint_text,
    first_record,
    flow_text,
    folded_conversations,
    generation_date,
    group_flow_text,
    group_label,
    outcome,
    outcome_counts,
    plural,
    stamp_text,
)

# The box a diagram may fill on an A4 landscape page with 12 mm margins (273 x 186 mm), in points,
# leaving room for its caption and the page footer.
PRINT_BOX = (770.0, 300.0)
PRINT_HOOK_BOX = (380.0, 250.0)  # a path diagram floats beside the verdict: half the width, most of the height
# Never below 9 pt: the diagrams' 13 pt labels may shrink to 70 %, and a taller diagram takes the room.
PRINT_MIN_SCALE = 0.7
# Every family a hop or a skipped hook can have (nft adds inet, arp, netdev): StrictUndefined fails on others.
_TOOL = {f: family_tool(f) for f in ("bridge", "ipv4", "ipv6", "inet", "arp", "netdev")}


def _env() -> jinja2.Environment:
    # autoescape=True (not select_autoescape, which does not cover *.html.j2) and StrictUndefined,
    # so every string from the input is escaped and a typo in a template fails loudly.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("reportgen.templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def diagram_owners(report: Report, neighbours: bool = True) -> dict[str, str]:
    """Map each packet group's first packet to the packet whose diagram it shares.

    Groups of different conversations often draw the very same diagram (300 downloads through one
    MASQUERADE rule): it is drawn once and the others point to it.
    """
    firsts = [g.first for g in report.groups]
    by_id = {p.id: p for p in report.packets}
    owner_of_source: dict[str, str] = {}
    owners = {}
    for pid in firsts:
        # The graph's name is the packet id; without it equal sources are equal drawings.
        source = packet_dot(by_id[pid], neighbours).replace(f"packet_{pid}", "packet", 1)
        owners[pid] = owner_of_source.setdefault(source, pid)
    return owners


def packet_svgs(report: Report, neighbours: bool = True) -> dict[str, str]:
    """Render each distinct hook diagram (keyed by the packet that owns it) and the topology ("topology")."""
    from reportgen.explain.topology import Topology
    from reportgen.render.topology_dot import topology_dot

    by_id = {p.id: p for p in report.packets}
    owners = sorted(set(diagram_owners(report, neighbours).values()), key=lambda pid: int(pid[1:]))
    svgs = {pid: dot_to_svg(packet_dot(by_id[pid], neighbours), pid) for pid in owners}
    if neighbours:
        topo = report.topology if isinstance(report.topology, Topology) else Topology()
        svgs["topology"] = dot_to_svg(topology_dot(report, topo), "topology")
    return svgs


def render_html(
    report: Report, svgs: dict[str, str] | None = None, *, for_print: bool = False, appendix: bool = False
) -> str:
    """Return the HTML report text; ``for_print`` shapes it for the PDF (title block, cited excerpts only)."""
    svgs = svgs if svgs is not None else packet_svgs(report)
    if for_print:
        svgs = {
            k: fit_svg(
                v,
                *(PRINT_BOX if k == "topology" else PRINT_HOOK_BOX),
                min_scale=PRINT_MIN_SCALE,
                page_width=PRINT_BOX[0],
            )[0]
            for k, v in svgs.items()
        }
    file_index = {f.name: i for i, f in enumerate(report.files)}

    def anchor(ref: LineRef) -> str:
        return f"f{file_index.get(ref.file, 0)}-L{ref.line}"

    used_refs = {ref: p.id for p in report.packets for h in p.hops for ref in h.event.refs}
    snap_index = {sn.name: i for i, sn in enumerate(report.snapshots)}
    hits = cited_lines(report)

    def snap_anchor(ref: LineRef) -> str:
        return f"s{snap_index.get(ref.file, 0)}-L{ref.line}"

    unused_count = sum(u.count for u in report.unused)
    by_id = {p.id: p for p in report.packets}
    # Packets of a conversation that behave alike are told once (explain.groups), with their members.
    groups = [(g, by_id[g.first]) for g in report.groups]
    group_of = {pid: g.first for g, _ in groups for pid in g.packets}
    # Conversations that behave like an earlier one are listed under it, not told again.
    alike = alike_conversations(report)
    folded = folded_conversations(report)
    group_of.update({pid: c.id for cs in folded.values() for c in cs for pid in c.packets})
    conv_groups: dict[str, list[tuple[PacketGroup, Packet]]] = {}
    for g, p in groups:
        conv_groups.setdefault(g.conversation, []).append((g, p))
    summary = report.summary
    window = (summary.first_stamp, summary.last_stamp) if summary and summary.first_stamp is not None else None
    css = resources.files("reportgen.templates").joinpath("report.css").read_text(encoding="utf-8")
    tmpl = _env().get_template("report.html.j2")
    return tmpl.render(
        r=report,
        svgs=svgs,
        anchor=anchor,
        used_refs=used_refs,
        unused_count=unused_count,
        css=css,
        tool=_TOOL,
        version=__version__,
        packets_by_id=by_id,
        footers={f.packet: f for f in report.footers},
        hits=hits,
        snap_anchor=snap_anchor,
        snap_index=snap_index,
        groups=groups,
        group_of=group_of,
        group_label=group_label,
        group_flow=lambda g: group_flow_text(by_id, g),
        owner=diagram_owners(report, neighbours=not for_print),
        members=lambda g: [by_id[i] for i in g.packets],
        first_record=first_record,
        endpoint=endpoint_text,
        flow_text=flow_text,
        stamp=stamp_text,
        outcome=outcome,
        counts=outcome_counts(report),
        alike=alike,
        folded=folded,
        alike_note=ALIKE_NOTE,
        conv_groups=conv_groups,
        conv_outcomes=lambda c: conversation_outcomes(by_id, c.packets),
        plural=plural,
        for_print=for_print,
        appendix=appendix or not for_print,
        window=(stamp_text(window[0]), stamp_text(window[1])) if window else None,
        host=summary.host if summary else None,
        generated=generation_date(),
        excerpts={s.name: excerpt(s.text, {n for f, n in hits if f == s.name}) for s in report.snapshots},
    )


def cited_lines(report: Report) -> set[tuple[str, int]]:
    """The (snapshot, line) pairs the explanation names: NAT, skip, verdict and traced rules."""
    hits: set[tuple[str, int]] = set()
    for p in report.packets:
        refs = [n.rule_ref for n in p.nat] + [k.rule_ref for k in p.skipped]
        refs.append(p.verdict.rule_ref if p.verdict else None)
        refs += [hit.snapshot_ref for h in p.hops for hit in h.event.rules]
        hits |= {(ref.file, ref.line) for ref in refs if ref is not None}
    return hits


def excerpt(text: str, cited: set[int], context: int = 2) -> list[tuple[int, str] | None]:
    """The cited lines of a snapshot with ``context`` lines either side; None marks a gap."""
    lines = text.splitlines()
    keep = sorted({n for c in cited for n in range(c - context, c + context + 1) if 1 <= n <= len(lines)})
    out: list[tuple[int, str] | None] = []
    for n in keep:
        if out and out[-1] is not None and out[-1][0] != n - 1:
            out.append(None)
        out.append((n, lines[n - 1]))
    return out
