"""Render one self-contained HTML report per case (Jinja2, inline CSS and SVG, nothing fetched)."""

from __future__ import annotations

from importlib import resources

import jinja2

from reportgen import __version__
from reportgen.model import LineRef, Report, family_tool
from reportgen.render.dot import dot_to_svg, packet_dot

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


def packet_svgs(report: Report) -> dict[str, str]:
    """Render every packet's hook diagram, and the topology diagram (key "topology"), to SVG."""
    from reportgen.explain.topology import Topology
    from reportgen.render.topology_dot import topology_dot

    svgs = {p.id: dot_to_svg(packet_dot(p)) for p in report.packets}
    topo = report.topology if isinstance(report.topology, Topology) else Topology()
    svgs["topology"] = dot_to_svg(topology_dot(report, topo))
    return svgs


def render_html(report: Report, svgs: dict[str, str] | None = None) -> str:
    """Return the HTML report text."""
    svgs = svgs if svgs is not None else packet_svgs(report)
    file_index = {f.name: i for i, f in enumerate(report.files)}

    def anchor(ref: LineRef) -> str:
        return f"f{file_index.get(ref.file, 0)}-L{ref.line}"

    used_refs = {ref: p.id for p in report.packets for h in p.hops for ref in h.event.refs}
    snap_index = {sn.name: i for i, sn in enumerate(report.snapshots)}
    # Rules the explanation names, highlighted where they stand in the ruleset snapshot.
    hits: set[tuple[str, int]] = set()
    for p in report.packets:
        refs = [n.rule_ref for n in p.nat] + [k.rule_ref for k in p.skipped]
        refs.append(p.verdict.rule_ref if p.verdict else None)
        refs += [hit.snapshot_ref for h in p.hops for hit in h.event.rules]
        hits |= {(ref.file, ref.line) for ref in refs if ref is not None}

    def snap_anchor(ref: LineRef) -> str:
        return f"s{snap_index.get(ref.file, 0)}-L{ref.line}"
    unused_count = sum(u.count for u in report.unused)
    # A long connection repeats the same hook path many times; its diagram is drawn once, and later
    # packets with the same path, skips and verdict point back to it.
    same_as: dict[str, str] = {}
    first_of: dict[tuple[object, ...], str] = {}
    for p in report.packets:
        key = (p.conversation, p.role, p.path, tuple((h.stage, h.event.hook.table) for h in p.hops),
               tuple((k.stage, k.table, k.reason) for k in p.skipped), p.verdict.code if p.verdict else None)
        if key in first_of:
            same_as[p.id] = first_of[key]
        else:
            first_of[key] = p.id
    css = resources.files("reportgen.templates").joinpath("report.css").read_text(encoding="utf-8")
    tmpl = _env().get_template("report.html.j2")
    return tmpl.render(
        r=report, svgs=svgs, anchor=anchor, used_refs=used_refs, unused_count=unused_count, css=css,
        tool=_TOOL, version=__version__, packets_by_id={p.id: p for p in report.packets},
        hits=hits, snap_anchor=snap_anchor, snap_index=snap_index, same_as=same_as,
    )
