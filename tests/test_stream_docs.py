"""Every format is written from the stream: the same documents as a whole-case reading, the same ids
whichever formats are asked, selections on the stream, and flat memory on the HTML path (issue 10)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLES

from reportgen.batch import CaseJob, cyclic_gc_paused, run_case
from reportgen.pipeline import build_report
from reportgen.render.options import RenderOptions
from reportgen.render.write import write_report
from reportgen.select import Selection, select
from reportgen.sources.case import load_spec

ALL = sorted(p for p in SAMPLES.iterdir() if p.is_dir())
FORMATS = ("html", "svg", "json", "text", "md")
EVERYTHING = Selection()

_spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "tests" / "bench" / "bench_scale.py")
assert _spec is not None and _spec.loader is not None
bench_scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_scale)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _streamed(case: Path, out: Path, formats: tuple[str, ...], selection: Selection = EVERYTHING) -> dict[str, bytes]:
    res = run_case(CaseJob((case,), out, formats, selection=selection, options=RenderOptions(), debug=True))
    assert res.error is None, res.error
    return _files(out / case.name)


def _whole(case: Path, out: Path, formats: tuple[str, ...], selection: Selection = EVERYTHING) -> dict[str, bytes]:
    with cyclic_gc_paused():
        report = select(build_report(load_spec([case])), selection)
    write_report(report, out, list(formats), RenderOptions())
    return _files(out / case.name)


@pytest.mark.parametrize("case", ALL, ids=[c.name for c in ALL])
def test_streamed_documents_are_the_whole_case_documents(case: Path, tmp_path: Path) -> None:
    # The documents tell the first conversation of each behaviour in full and the others as rows
    # (render.digest): kept from the stream, they must say exactly what the whole case says.
    streamed = _streamed(case, tmp_path / "s", FORMATS)
    whole = _whole(case, tmp_path / "w", FORMATS)
    assert set(streamed) == set(whole)
    assert [k for k in streamed if streamed[k] != whole[k]] == []


@pytest.mark.parametrize(
    "selection",
    [
        Selection(verdicts=("dropped",)),
        Selection(flows=("c2",)),
        Selection(ports=(80,)),
        Selection(hosts=("10.0.0.2",)),
    ],
    ids=["verdict", "flow", "port", "host"],
)
def test_selection_on_the_stream_is_the_selection_of_the_whole_case(selection: Selection, tmp_path: Path) -> None:
    for case in ALL:
        streamed = _streamed(case, tmp_path / "s" / case.name, ("json", "text", "md", "html"), selection)
        whole = _whole(case, tmp_path / "w" / case.name, ("json", "text", "md", "html"), selection)
        different = [k for k in streamed if streamed[k] != whole.get(k)]
        # report.json lists conversations as they finished when streamed; the rest is the same.
        assert [k for k in different if k != "report.json"] == [], case.name
        assert b"Selected " in streamed["report.txt"] or selection.empty


def test_a_big_case_streamed_tells_what_the_whole_case_tells(tmp_path: Path) -> None:
    # 20,000 lines of one connection replayed: over 300 conversations that behave alike, so the
    # documents fold them, list rows and cut the Markdown head (which lists every answer).
    case = tmp_path / "big"
    case.mkdir()
    _repetitive(case / "kern.log", 20_000)
    formats = ("html", "text", "md", "pdf")
    streamed = _streamed(case, tmp_path / "s", formats)
    whole = _whole(case, tmp_path / "w", formats)
    assert b"(The description is cut here.)" in streamed["report.md"]
    assert b"more conversations behave like c1" in streamed["report.txt"]
    assert [k for k in streamed if streamed[k] != whole[k] and k != "report.pdf"] == []
    assert _pdf_text(streamed["report.pdf"]) == _pdf_text(whole["report.pdf"])


def _pdf_text(pdf: bytes) -> str:
    import io

    import pypdf

    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def test_group_ids_are_the_same_whichever_formats_are_asked(tmp_path: Path) -> None:
    # In this case a conversation that started later finished first. Group and behaviour ids used to
    # follow the order conversations finished when JSON was written alone (as it streams) and the
    # order they started when another format was asked too (the whole case was read instead).
    case = SAMPLES / "lab-trap-ipv6-container-to-outside"
    alone = _streamed(case, tmp_path / "a", ("json",))
    with_html = _streamed(case, tmp_path / "b", ("json", "html"))
    assert alone["report.json"] == with_html["report.json"]
    assert alone["report.jsonl"] == with_html["report.jsonl"]
    # and a whole-case reading (build_report) names them alike too
    whole = _whole(case, tmp_path / "c", ("json",))
    assert b'"g1"' in whole["report.json"]
    assert whole["report.jsonl"] == alone["report.jsonl"]


def _repetitive(path: Path, lines: int) -> None:
    """The bench's repetitive kern.log (one connection replayed flow after flow) at the issue's busy
    host, 120 us a line: 50k lines are 6 s of kernel time, past the 1 s a closed conversation waits."""
    template = bench_scale.KERN_SAMPLE.read_text().splitlines()
    with path.open("w") as fh:
        n, flow = 0, 0
        while n < lines:
            for body in bench_scale._kern_flow(template, flow % 60000):
                if n < lines:
                    fh.write(f"[{1000 + n * 0.00012:12.6f}]{body}\n")
                    n += 1
            flow += 1


CHILD = """
import sys
from pathlib import Path
from reportgen.batch import CaseJob, run_case

res = run_case(CaseJob((Path(sys.argv[1]),), Path(sys.argv[2]), ("json", "html", "md", "text")))
assert res.error is None, res.error
assert res.lines_total == int(sys.argv[3]), res.lines_total
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]))
"""


def test_html_memory_stays_flat_from_50k_to_200k_lines(tmp_path: Path) -> None:
    # The documents keep the first conversation of each behaviour and a row per conversation, not
    # every packet: the same traffic four times as long may not take much more memory (the child's
    # own peak resident set, VmHWM, as tests/test_scale.py measures the JSON path).
    peaks = {}
    for lines in (50_000, 200_000):
        path = tmp_path / f"kern-{lines}.log"
        _repetitive(path, lines)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(tmp_path / f"out{lines}"), str(lines)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        peaks[lines] = int(out.stdout.strip())
    assert peaks[200_000] <= 1.3 * peaks[50_000], peaks


def test_a_record_wrapped_over_two_lines_is_the_whole_appendix(tmp_path: Path) -> None:
    """The appendix holds a wrapped record's every line: a two-line case whose one record wraps is
    shown whole, so the whole case says no "first 1 of 2 trace lines" the stream does not say."""
    case = tmp_path / "wrapped"
    case.mkdir()
    (case / "kern.log").write_text(
        "[  100.000001] FWD: IN=eth0 OUT=eth1 SRC=10.0.0.1 DST=10.0.0.2 LEN=60 TOS=0x00 PREC=0x00\n"
        " TTL=64 ID=1 DF PROTO=TCP SPT=1 DPT=2 WINDOW=1 RES=0x00 SYN URGP=0 \n"
    )
    assert build_report(load_spec([case])).notes == ()
    streamed = _streamed(case, tmp_path / "s", FORMATS)
    whole = _whole(case, tmp_path / "w", FORMATS)
    assert [k for k in streamed if streamed[k] != whole.get(k)] == []
