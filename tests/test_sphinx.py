"""The documentation build step: the Sphinx directive embeds explanations, with real Sphinx and dot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

sphinx_build = pytest.importorskip("sphinx.cmd.build")
DOCS = Path(__file__).resolve().parent.parent / "docs"


def build(src: Path, out: Path, builder: str = "html") -> int:
    return sphinx_build.build_main(["-b", builder, "-q", "-W", "-E", str(src), str(out)])


def test_docs_embed_sample_reports(tmp_path: Path):
    assert build(DOCS, tmp_path / "html") == 0
    page = (tmp_path / "html" / "samples.html").read_text()
    assert page.count("<svg") >= 8
    assert "Left the host via ens33." in page
    assert "Dropped by rule 1 of DOCKER-USER" in page


def test_text_builder_gets_the_text_explanation(tmp_path: Path):
    assert build(DOCS, tmp_path / "text", "text") == 0
    text = (tmp_path / "text" / "samples.txt").read_text()
    assert "verdict: forwarded-out — Left the host via ens33." in text
    assert "<svg" not in text


def test_bad_case_path_fails_the_build_with_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(DOCS / "conf.py", src / "conf.py")
    (src / "index.rst").write_text("T\n=\n\n.. reportgen:: no-such-case\n")
    assert build(src, tmp_path / "out") != 0
    assert "no-such-case: no such file" in capsys.readouterr().err
