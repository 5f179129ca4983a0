"""Write OUT/index.html: one row per case of a batch, with its outcomes, worst verdict and files."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from reportgen import __version__
from reportgen.render.html import _env
from reportgen.render.view import generation_date

if TYPE_CHECKING:
    from reportgen.batch import CaseResult

# Which file stands for which format in a case folder, in the order the index links them.
FORMAT_FILES = (
    ("HTML", "report.html"),
    ("PDF", "report.pdf"),
    ("Markdown", "report.md"),
    ("text", "report.txt"),
    ("JSON", "report.json"),
)


def render_index(results: list[CaseResult]) -> str:
    """Return the batch index page."""
    css = resources.files("reportgen.templates").joinpath("report.css").read_text(encoding="utf-8")
    rows = []
    for res in results:
        written = set(res.written)
        links = [(label, f"{res.name}/{name}") for label, name in FORMAT_FILES if f"{res.name}/{name}" in written]
        rows.append((res, links))
    failed = sum(1 for r in results if r.error)
    return (
        _env()
        .get_template("index.html.j2")
        .render(
            rows=rows,
            css=css,
            version=__version__,
            generated=generation_date(),
            failed=failed,
            warned=sum(1 for r in results if r.warnings),
        )
    )


def write_index(results: list[CaseResult], out: Path) -> Path:
    """Write OUT/index.html and return its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(render_index(results), encoding="utf-8")
    return path
