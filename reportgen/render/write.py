"""Write a report's files: the one place that decides output names and order."""

from __future__ import annotations

from pathlib import Path

from reportgen.model import Report
from reportgen.render.options import RenderOptions


def write_report(
    report: Report, out_root: Path, formats: list[str], options: RenderOptions | None = None
) -> list[Path]:
    """Write the requested formats under OUT/<case name>/ and return the paths written."""
    options = options or RenderOptions()
    out = out_root / report.name
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(name: str, data: str | bytes) -> None:
        p = out / name
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data, encoding="utf-8")
        written.append(p)

    svgs: dict[str, str] | None = None
    if {"svg", "html", "pdf"} & set(formats):
        from reportgen.render.html import packet_svgs

        svgs = packet_svgs(report)
    if "svg" in formats and svgs is not None:
        (out / "svg").mkdir(exist_ok=True)
        for pid, svg in svgs.items():
            put(f"svg/{pid}.svg", svg)
    html: str | None = None
    if "html" in formats:
        from reportgen.render.html import render_html

        html = render_html(report, svgs)
    if "html" in formats and html is not None:
        put("report.html", html)
    if "json" in formats:
        from reportgen.render.jsonout import write_json

        with (out / "report.json").open("w", encoding="utf-8") as fh:
            write_json(report, fh)
        written.append(out / "report.json")
    if "text" in formats:
        from reportgen.render.text import render_text

        put("report.txt", render_text(report, options))
    if "md" in formats:
        from reportgen.render.markdown import render_markdown

        put("report.md", render_markdown(report, options))
    if "pdf" in formats and svgs is not None:
        from reportgen.render.pdf import render_pdf

        put("report.pdf", render_pdf(report, svgs, options))
    return written
