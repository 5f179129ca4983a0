"""How reports look: the stylesheet reaches the browser intact and the PDF embeds only sans fonts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import SAMPLES, SEED_CASES

from reportgen.render.write import write_report
from reportgen.sources.case import build_report, load_spec


def test_stylesheet_is_not_html_escaped(tmp_path: Path) -> None:
    write_report(build_report(load_spec([SAMPLES / SEED_CASES[0]])), tmp_path, ["html"])
    html = (tmp_path / SEED_CASES[0] / "report.html").read_text()
    style = html.split("<style>", 1)[1].split("</style>", 1)[0]
    # An escaped quote (&#34;) makes the browser drop the whole font-family declaration.
    assert 'font-family: "DejaVu Sans", sans-serif' in style
    assert "&#34;" not in style and "&quot;" not in style


@pytest.mark.skipif(shutil.which("pdffonts") is None, reason="poppler-utils is not installed (./run installs it)")
@pytest.mark.parametrize("case", SEED_CASES)
def test_pdf_fonts_are_embedded_and_sans(case: str, tmp_path: Path) -> None:
    write_report(build_report(load_spec([SAMPLES / case])), tmp_path, ["pdf"])
    out = subprocess.run(["pdffonts", str(tmp_path / case / "report.pdf")], capture_output=True, text=True, check=True)
    rows = [ln.split() for ln in out.stdout.splitlines()[2:] if ln.strip()]
    assert rows, out.stdout
    names = [r[0].split("+")[-1] for r in rows]
    assert all(n.startswith("DejaVu-Sans") for n in names), names  # no DejaVu-Serif / Times fallback
    # The "emb" column: every font is embedded, so the attachment looks the same everywhere.
    assert all(r[-5] == "yes" for r in rows), out.stdout
