"""Sphinx extension: embed a reportgen explanation in documentation.

Usage, in conf.py: ``extensions = ["reportgen.integrations.sphinx"]``; in a page::

    .. reportgen:: ../samples/seed-container-to-internet
       :diagrams: topology, hooks

The path is relative to the page. HTML builders get the summary table, the topology diagram, each
packet's verdict and hook diagram (inline SVG from dot, whose label text dot escapes); other builders
get the text explanation as a literal block. The case files are recorded as dependencies, so a
changed trace rebuilds the page.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive, directives

from reportgen import __version__

DIAGRAMS = ("topology", "hooks")


def _diagram_choice(arg: str | None) -> list[str]:
    names = [a.strip() for a in (arg or "").split(",") if a.strip()] or list(DIAGRAMS)
    bad = [n for n in names if n not in DIAGRAMS]
    if bad:
        raise ValueError(f"unknown diagram {', '.join(bad)}; choose from {', '.join(DIAGRAMS)}")
    return names


class ReportgenDirective(Directive):
    """``.. reportgen:: CASE`` renders a case's explanation into the page."""

    required_arguments = 1
    has_content = False
    option_spec = {"diagrams": _diagram_choice, "packets": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        from reportgen.errors import InputError
        from reportgen.render.html import packet_svgs
        from reportgen.render.text import render_text
        from reportgen.sources.case import build_report, load_spec

        env = self.state.document.settings.env
        page_dir = Path(env.doc2path(env.docname)).parent
        case = (page_dir / self.arguments[0]).resolve()
        try:
            report = build_report(load_spec([case]))
        except InputError as exc:
            raise self.error(f"reportgen: {exc}") from exc
        for f in sorted(case.rglob("*") if case.is_dir() else [case]):
            if f.is_file():
                env.note_dependency(str(f))
        wanted = set((self.options.get("packets") or "").replace(",", " ").split())
        packets = [p for p in report.packets if not wanted or p.id in wanted]
        diagrams = self.options.get("diagrams") or list(DIAGRAMS)
        svgs = packet_svgs(report)
        esc = html.escape
        parts = [f'<div class="reportgen" data-generator="reportgen {esc(__version__)}">',
                 "<table class=\"docutils\"><thead><tr><th>Packet</th><th>Role</th><th>Path</th><th>Verdict</th>"
                 "</tr></thead><tbody>"]
        for p in packets:
            verdict = p.verdict.explanation if p.verdict else ""
            parts.append(f"<tr><td>{esc(p.id)} {esc(p.summary)}</td><td>{esc(p.role)}</td><td>{esc(p.path)}</td>"
                         f"<td>{esc(verdict)}</td></tr>")
        parts.append("</tbody></table>")
        if "topology" in diagrams:
            parts.append(f'<figure class="reportgen-topology">{svgs["topology"]}</figure>')
        if "hooks" in diagrams:
            for p in (p for p in packets if p.id in svgs):  # one diagram per group of alike packets
                parts.append(f"<p><strong>{esc(p.id)}</strong>: {esc(p.summary)}</p>")
                parts.append(f'<figure class="reportgen-hooks">{svgs[p.id]}</figure>')
        parts.append("</div>")
        raw = nodes.raw("", "\n".join(parts), format="html")
        text = nodes.literal_block("", render_text(report))
        only_html = nodes.container(classes=["reportgen-html"])
        only_html += raw
        # Non-HTML builders drop raw HTML; the literal block keeps the explanation readable there.
        return [only_html, _NonHtml("", text)]


class _NonHtml(nodes.General, nodes.Element):
    """A node shown by non-HTML builders only."""


def _visit_skip(self: Any, node: nodes.Node) -> None:
    raise nodes.SkipNode


def _visit_pass(self: Any, node: nodes.Node) -> None:
    pass


def _depart_pass(self: Any, node: nodes.Node) -> None:
    pass


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("reportgen", ReportgenDirective)
    app.add_node(_NonHtml, html=(_visit_skip, None), latex=(_visit_pass, _depart_pass),
                 text=(_visit_pass, _depart_pass), man=(_visit_pass, _depart_pass),
                 texinfo=(_visit_pass, _depart_pass))
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
