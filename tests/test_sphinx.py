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


def _src(tmp_path: Path, rst: str, conf: str = "") -> Path:
    src = tmp_path / "src"
    src.mkdir(parents=True)
    (src / "conf.py").write_text('extensions = ["reportgen.integrations.sphinx"]\n' + conf)
    (src / "index.rst").write_text("T\n=\n\n" + rst)
    shutil.copytree(DOCS.parent / "samples" / "seed-host-to-container", src / "case")
    return src


def test_case_inside_the_source_folder_is_embedded(tmp_path: Path):
    src = _src(tmp_path, ".. reportgen:: case\n")
    assert build(src, tmp_path / "out") == 0
    assert "<svg" in (tmp_path / "out" / "index.html").read_text()


def test_paths_outside_the_source_folder_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`.. reportgen:: /` once walked the whole file system; `..` and symlinks could read any file."""
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "dmesg.log").write_text("s3cr3t line\n")
    for i, arg in enumerate(("/", "../../secret", str(outside))):
        src = _src(tmp_path / str(i), f".. reportgen:: {arg}\n")
        assert build(src, tmp_path / f"out{i}") != 0
        assert "outside" in capsys.readouterr().err
    src = _src(tmp_path / "link", ".. reportgen:: case\n")
    (src / "case" / "dmesg.log").unlink()
    (src / "case" / "dmesg.log").symlink_to(outside / "dmesg.log")
    assert build(src, tmp_path / "out-link") != 0
    err = capsys.readouterr().err
    assert "outside the case folder" in err and "s3cr3t" not in err


def test_case_root_setting_allows_a_named_folder(tmp_path: Path):
    src = _src(tmp_path, f".. reportgen:: {DOCS.parent / 'samples' / 'seed-host-to-container'}\n",
               f"reportgen_case_root = {str(DOCS.parent / 'samples')!r}\n")
    assert build(src, tmp_path / "out") == 0


def test_file_insertion_disabled_means_no_file_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    conf = ("def setup(app):\n"
            "    app.connect('builder-inited', lambda app: app.env.settings.update(file_insertion_enabled=False))\n")
    src = _src(tmp_path, ".. reportgen:: case\n", conf)
    build(src, tmp_path / "out")
    assert "file insertion is disabled" in capsys.readouterr().err
    assert "<svg" not in (tmp_path / "out" / "index.html").read_text()
