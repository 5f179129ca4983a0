"""Sphinx extension: embed a reportgen explanation in documentation.

Usage, in conf.py: ``extensions = ["reportgen.integrations.sphinx"]``; in a page::

    .. reportgen:: ../samples/seed-container-to-internet
       :diagrams: topology, hooks

The path is relative to the page and must resolve inside the case root: the Sphinx source
directory, or ``reportgen_case_root`` in conf.py (relative to the configuration directory), so a
page cannot pull in files from elsewhere; symlinks are resolved first. With docutils'
``file_insertion_enabled`` off (untrusted sources), the directive refuses to read any file.

HTML builders get the summary table, the topology diagram, each packet's verdict and hook diagram
(inline SVG from dot, whose label text dot escapes); other builders get the text explanation as a
literal block. The case files are recorded as dependencies, so a
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
        from reportgen.pipeline import build_report
        from reportgen.render.html import packet_svgs
        from reportgen.render.safe_text import terminal_safe, xml_safe
        from reportgen.render.text import render_text
        from reportgen.sources.case import load_spec

        settings = self.state.document.settings
        if not settings.file_insertion_enabled:
            raise self.warning(f'"{self.name}" directive disabled: file insertion is disabled in this document')
        env = settings.env
        page_dir = Path(env.doc2path(env.docname)).parent
        root = Path(env.config.reportgen_case_root or env.srcdir).resolve()
        case = (page_dir / self.arguments[0]).resolve()
        if not case.is_relative_to(root):
            raise self.error(
                f"reportgen: {self.arguments[0]}: resolves to {case}, outside {root} (set "
                "reportgen_case_root in conf.py to allow another folder)"
            )
        try:
            spec = load_spec([case])
            report = build_report(spec)
        except InputError as exc:
            raise self.error(f"reportgen: {exc}") from exc
        manifests = [case / n for n in ("case.yaml", "prefixes.yaml")] if case.is_dir() else []
        for f in sorted({*spec.traces, *(p for p, _, _ in spec.snapshots), *(m for m in manifests if m.exists())}):
            env.note_dependency(str(f))
        wanted = set((self.options.get("packets") or "").replace(",", " ").split())
        packets = [p for p in report.packets if not wanted or p.id in wanted]
        diagrams = self.options.get("diagrams") or list(DIAGRAMS)
        svgs = {pid: xml_safe(svg) for pid, svg in packet_svgs(report).items()}
        esc = html.escape
        parts = [
            f'<div class="reportgen" data-generator="reportgen {esc(__version__)}">',
            '<table class="docutils"><thead><tr><th>Packet</th><th>Role</th><th>Path</th><th>Verdict</th>'
            "</tr></thead><tbody>",
        ]
        for p in packets:
            verdict = p.verdict.explanation if p.verdict else ""
            parts.append(
                f"<tr><td>{esc(p.id)} {esc(p.summary)}</td><td>{esc(p.role)}</td><td>{esc(p.path)}</td>"
                f"<td>{esc(verdict)}</td></tr>"
            )
        parts.append("</tbody></table>")
        if "topology" in diagrams:
            parts.append(f'<figure class="reportgen-topology">{svgs["topology"]}</figure>')
        if "hooks" in diagrams:
            for p in (p for p in packets if p.id in svgs):  # one diagram per group of alike packets
                parts.append(f"<p><strong>{esc(p.id)}</strong>: {esc(p.summary)}</p>")
                parts.append(f'<figure class="reportgen-hooks">{svgs[p.id]}</figure>')
        parts.append("</div>")
        raw = nodes.raw("", "\n".join(parts), format="html")
        text = nodes.literal_block("", xml_safe(terminal_safe(render_text(report))))
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


def _resolve_root(app: Any, config: Any) -> None:
    """Make reportgen_case_root absolute, relative to the folder of conf.py."""
    if config.reportgen_case_root:
        config.reportgen_case_root = str((Path(app.confdir) / config.reportgen_case_root).resolve())


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("reportgen_case_root", None, "env", [str])
    app.connect("config-inited", _resolve_root)
    app.add_directive("reportgen", ReportgenDirective)
    app.add_node(
        _NonHtml,
        html=(_visit_skip, None),
        latex=(_visit_pass, _depart_pass),
        text=(_visit_pass, _depart_pass),
        man=(_visit_pass, _depart_pass),
        texinfo=(_visit_pass, _depart_pass),
    )
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
