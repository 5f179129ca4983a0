"""Render one self-contained HTML report per case (Jinja2, inline CSS and SVG, nothing fetched)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import jinja2

from reportgen import __version__
from reportgen.explain.answer import inferred_note
from reportgen.model import Conversation, LineRef, Packet, PacketGroup, Report, family_name, id_number
from reportgen.render.digest import FIRST_ROWS, SMALL_CASE_LINES, Alike, Digest, Row, digest_of
from reportgen.render.dot import dot_to_svg, dots_to_svgs, fit_svg, packet_dot
from reportgen.render.view import (
    ALIKE_ELSEWHERE,
    ALIKE_NOTE,
    SEVERITY,
    alike_rest,
    alike_totals,
    endpoint_text,
    final_packet_of,
    first_record,
    flow_text,
    generation_date,
    group_flow_text,
    group_label,
    groups_of,
    id_runs,
    outcome,
    plural,
    severity,
    stamp_text,
)

# The box a diagram may fill on an A4 landscape page with 12 mm margins (273 x 186 mm), in points,
# leaving room for its caption and the page footer.
PRINT_BOX = (770.0, 300.0)
PRINT_HOOK_BOX = (380.0, 250.0)  # a path diagram floats beside the verdict: half the width, most of the height
# Never below 9 pt: the diagrams' 13 pt labels may shrink to 70 %, and a taller diagram takes the room.
PRINT_MIN_SCALE = 0.7
# Every family a skipped hook can have (nft adds inet, arp, netdev): StrictUndefined fails on others. A
# skipped hook logged no line, so nothing tells which tool's rules run there: its family is named.
_TOOL = {f: family_name(f) for f in ("bridge", "ipv4", "ipv6", "inet", "arp", "netdev")}


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


@dataclass(frozen=True)
class Budget:
    """How much of a big case one document tells; every cut is said in the document, with where the rest is.

    A small case fits every limit and is told whole. The limits keep a 2M-line case of repetitive
    traffic to a few megabytes of HTML (issue 10) and to a few pages of PDF.
    """

    conversations: int  # conversations told in full (worst verdict first); the others get a row each
    alike_rows: int  # first rows listing the conversations that behave like a told one (at most digest.FIRST_ROWS)
    members: int  # member rows (and anchors) listed per packet group
    line_runs: int  # line runs named per packet group beyond its listed members
    appendix_lines: int  # up to this many trace lines the appendix lists every line, beyond it the cited ones
    unused_rows: int  # runs of unused lines listed
    open_conversations: int  # told conversations shown open; the later ones are folded in <details>


SCREEN = Budget(
    conversations=200,
    alike_rows=FIRST_ROWS,
    members=50,
    line_runs=20,
    appendix_lines=SMALL_CASE_LINES,
    unused_rows=500,
    open_conversations=20,
)
PRINT = Budget(
    conversations=5,
    alike_rows=20,
    members=10,
    line_runs=5,
    appendix_lines=SMALL_CASE_LINES,
    unused_rows=50,
    open_conversations=5,  # paper has no <details> to open: every told conversation is printed
)


@dataclass(frozen=True)
class Plan:
    """What one document tells of a case: the view the template formats, decided once."""

    folded: dict[str, Alike]  # told conversation -> the ones that behave like it
    told: list[Conversation]  # conversations told in full, worst verdict first
    untold: list[Row]  # conversations unlike the others, beyond the budget: a row each, no detail
    groups: list[PacketGroup]  # the packet groups told, in the order of ``told`` (then those without one)


def plan(case: Digest, budget: Budget) -> Plan:
    """Choose what a document tells: conversations worst verdict first, alike ones folded under them."""
    report = case.report
    worst = {a.conversation: severity(a.worst.value) for a in report.answers}
    # The digest's conversations are the first of each behaviour; sorted() is stable: conversations
    # of equal severity keep their input order.
    lead = sorted(report.conversations, key=lambda c: worst.get(c.id, len(SEVERITY)))
    told, untold = lead[: budget.conversations], [case.rows[c.id] for c in lead[budget.conversations :]]
    by_conv = groups_of(report)
    groups = [g for c in told for g in by_conv.get(c.id, [])] + by_conv.get("-", [])
    return Plan(case.folded, told, untold, groups)


def diagram_owners(report: Report, groups: Sequence[PacketGroup], neighbours: bool = True) -> dict[str, str]:
    """Map each told group's first packet to the packet whose diagram it shares.

    Groups of different conversations often draw the very same diagram (300 downloads through one
    MASQUERADE rule): it is drawn once and the others point to it.
    """
    by_id = {p.id: p for p in report.packets}
    owner_of_source: dict[str, str] = {}
    owners = {}
    for g in groups:
        # The graph's name is the packet id; without it equal sources are equal drawings.
        source = packet_dot(by_id[g.first], neighbours).replace(f"packet_{g.first}", "packet", 1)
        owners[g.first] = owner_of_source.setdefault(source, g.first)
    return owners


def packet_svgs(case: Report | Digest, neighbours: bool = True, budget: Budget | None = None) -> dict[str, str]:
    """Render each distinct hook diagram of the told groups (keyed by the packet that owns it) and
    the topology ("topology"), with one dot process.

    The told groups are those of ``budget`` (the screen's with the neighbouring hooks, else the
    paper's): a conversation that behaves like another is told by that one and draws nothing.
    """
    from reportgen.explain.topology import Topology
    from reportgen.render.topology_dot import topology_dot

    case = case if isinstance(case, Digest) else digest_of(case)
    report = case.report
    told = plan(case, budget or (SCREEN if neighbours else PRINT)).groups
    by_id = {p.id: p for p in report.packets}
    owners = sorted(set(diagram_owners(report, told, neighbours).values()), key=_packet_order)
    graphs = [(packet_dot(by_id[pid], neighbours), pid) for pid in owners]
    svgs = dict(zip(owners, dots_to_svgs(graphs), strict=True))
    if neighbours:
        # The topology gets a dot of its own: laid out after other graphs in one process, its
        # clusters came out differently about one run in fifteen (Graphviz 2.43), and output must be
        # byte-identical. The hook diagrams have no clusters and came out the same in every run.
        topo = report.topology if isinstance(report.topology, Topology) else Topology()
        svgs["topology"] = dot_to_svg(topology_dot(report, topo), "topology")
    return svgs


def _packet_order(pid: str) -> tuple[int, str]:
    n = id_number(pid)
    return (-1 if n is None else n, pid)


def render_html(
    case: Report | Digest, svgs: dict[str, str] | None = None, *, for_print: bool = False, appendix: bool = False
) -> str:
    """Return the HTML report text; ``for_print`` shapes it for the PDF (title block, cited excerpts only)."""
    case = case if isinstance(case, Digest) else digest_of(case)
    report = case.report
    budget = PRINT if for_print else SCREEN
    svgs = svgs if svgs is not None else packet_svgs(case, budget=budget)
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
    appendix = appendix or not for_print
    file_index = {f.name: i for i, f in enumerate(report.files)}

    def anchor(ref: LineRef) -> str:
        return f"f{file_index.get(ref.file, 0)}-L{ref.line}"

    snap_index = {sn.name: i for i, sn in enumerate(report.snapshots)}
    hits = case.hits

    def snap_anchor(ref: LineRef) -> str:
        return f"s{snap_index.get(ref.file, 0)}-L{ref.line}"

    unused_count = sum(u.count for u in report.unused)
    by_id = {p.id: p for p in report.packets}
    view = plan(case, budget)
    # Packets of a conversation that behave alike are told once (explain.groups), with their members.
    groups = [(g, by_id[g.first]) for g in view.groups]
    told_ids = {c.id for c in view.told}
    # Where a packet is told: its group's section, else the row of the conversation that lists it.
    group_of = {pid: g.first for g, _ in groups for pid in g.packets}
    # The rows each list of alike conversations shows (digest.Alike.listed).
    alike_lists = {cid: alike.listed(budget.alike_rows) for cid, alike in view.folded.items()}
    listed = {o.id for c in view.told if c.id in view.folded for rows in alike_lists[c.id] for o in rows}
    listed |= {c.id for c in view.untold}
    # Only the appendix looks packets up here, by the lines they used (case.used_by).
    conv_of = case.conversation_of or {}
    group_of.update({pid: cid for pid, cid in conv_of.items() if cid in listed})
    conv_groups: dict[str, list[tuple[PacketGroup, Packet]]] = {}
    for g, p in groups:
        conv_groups.setdefault(g.conversation, []).append((g, p))
    shown_lines, used_refs = _appendix_lines(case, groups, budget, by_id)
    summary = report.summary
    window = (summary.first_stamp, summary.last_stamp) if summary and summary.first_stamp is not None else None
    answers = {a.conversation: a for a in report.answers}
    footers = {f.packet: f for f in report.footers}
    css = resources.files("reportgen.templates").joinpath("report.css").read_text(encoding="utf-8")
    tmpl = _env().get_template("report.html.j2")
    return tmpl.render(
        r=report,
        n_conversations=case.conversations,
        n_packets=case.packets,
        svgs=svgs,
        anchor=anchor,
        used_refs=used_refs,
        unused_count=unused_count,
        css=css,
        tool=_TOOL,
        version=__version__,
        packets_by_id=by_id,
        footers=footers,
        final_of=lambda g: final_packet_of(footers, g),
        hits=hits,
        snap_anchor=snap_anchor,
        snap_index=snap_index,
        groups=groups,
        group_of=group_of,
        group_label=group_label,
        group_flow=lambda g: group_flow_text(by_id, g),
        owner=diagram_owners(report, view.groups, neighbours=not for_print),
        members=lambda g: [by_id[i] for i in g.packets[: budget.members]],
        first_record=first_record,
        endpoint=endpoint_text,
        flow_text=flow_text,
        stamp=stamp_text,
        outcome=outcome,
        counts={} if report.summary is None else {c.value: n for c, n in report.summary.outcomes},
        # How many of each count were inferred, in the summary sentence's words (answer.inferred_note).
        hedges={} if summary is None else {c.value: inferred_note(c, n, summary.inferred) for c, n in summary.outcomes},
        told=view.told,
        told_ids=told_ids,
        untold=view.untold,
        on_demand=set() if for_print else {c.id for c in view.told[budget.open_conversations :]},
        conv_summary={c.id: c.summary for c in view.told},
        untold_alike=sum(view.folded[c.id].conversations for c in view.untold if c.id in view.folded),
        answers=[answers[c.id] for c in view.told if c.id in answers],
        folded=view.folded,
        alike_note=ALIKE_NOTE,
        alike_elsewhere=ALIKE_ELSEWHERE,
        alike_rest=alike_rest,
        alike_lists=alike_lists,
        alike_totals=alike_totals,
        budget=budget,
        id_runs=id_runs,
        conv_groups=conv_groups,
        plural=plural,
        for_print=for_print,
        appendix=appendix,
        shown_lines=shown_lines,
        # The lines the appendix lists, the only ones a link may point to.
        listed_lines=set() if not appendix else {row[0] for row in shown_lines if not isinstance(row, int)},
        window=(stamp_text(window[0]), stamp_text(window[1])) if window else None,
        host=summary.host if summary else None,
        generated=generation_date(),
        excerpts={s.name: excerpt(s.text, {n for f, n in hits if f == s.name}) for s in report.snapshots},
    )


def _appendix_lines(
    case: Digest, groups: list[tuple[PacketGroup, Packet]], budget: Budget, by_id: dict[str, Packet]
) -> tuple[list[tuple[LineRef, str] | int], dict[LineRef, str]]:
    """The appendix's rows and, for each row's line, the packet that used it.

    A small case lists every trace line. A big one lists the lines the report links (the told
    packets' hops, the listed members' and unused runs' first lines), with the number of lines left
    out between them (an int), and looks up only the packets it tells: a 2M-line case's map of every
    line to its packet took longer than the rest of the page.
    """
    report = case.report
    if len(report.lines) <= budget.appendix_lines:
        # A case this small used at most SMALL_CASE_LINES lines, so the digest kept who used each.
        assert case.used_by is not None
        return list(report.lines), case.used_by
    members = [by_id[pid] for g, _ in groups for pid in g.packets[: budget.members]]
    used = {ref: m.id for m in members if m.hops for ref in m.hops[0].event.refs}
    used |= {ref: p.id for _, p in groups for h in p.hops for ref in h.event.refs}
    linked = set(used) | {u.ref for u in report.unused[: budget.unused_rows]}
    out: list[tuple[LineRef, str] | int] = []
    gap = 0
    for ref, text in report.lines:
        if ref in linked:
            if gap:
                out.append(gap)
            out.append((ref, text))
            gap = 0
        else:
            gap += 1
    if gap:
        out.append(gap)
    return out, used


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
