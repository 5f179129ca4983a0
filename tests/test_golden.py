"""Golden outputs for the seed samples: HTML, SVG, JSON and the minimal text and Markdown are
byte-identical run to run.

On a mismatch the real output is written to tests/actual/<case>/; tests/golden/README.md says how
to review and update the gold files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES, SEED_CASES

from reportgen.pipeline import build_report
from reportgen.render.options import Level, RenderOptions
from reportgen.render.write import write_report
from reportgen.sources.case import load_spec

GOLDEN = Path(__file__).parent / "golden"
ACTUAL = Path(__file__).parent / "actual"
FORMATS = ["html", "svg", "json", "text", "md"]
# The minimal level is the golden text format (one line per conversation and per folded group).
OPTIONS = RenderOptions(level=Level.MINIMAL)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", SEED_CASES)
def test_golden(case: str, tmp_path: Path):
    write_report(build_report(load_spec([SAMPLES / case])), tmp_path / "a", FORMATS, OPTIONS)
    write_report(build_report(load_spec([SAMPLES / case])), tmp_path / "b", FORMATS, OPTIONS)
    first, second = _files(tmp_path / "a" / case), _files(tmp_path / "b" / case)
    assert first == second, "two runs on the same input differ"
    gold = _files(GOLDEN / case)
    if first != gold:
        dest = ACTUAL / case
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(tmp_path / "a" / case, dest)
        changed = sorted(k for k in set(first) | set(gold) if first.get(k) != gold.get(k))
        pytest.fail(
            f"{case}: output differs from tests/golden in {changed}; real output in {dest} (see tests/golden/README.md)"
        )
