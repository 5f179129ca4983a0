"""The documents' memory and size grow with distinct behaviour, not with conversations (issue 10).

A case of ten times as many conversations that all behave alike keeps the same rows in the digest,
writes text, Markdown and HTML of the same size, and peaks at about the same resident set; the
counts it gives are exact, and it says how many conversations it left out and where they are.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES
from test_browser import FLAGS

from reportgen.batch import CaseJob, cyclic_gc_paused, run_case
from reportgen.pipeline import stream_case
from reportgen.render.digest import FIRST_ROWS, LAST_ROWS, Digest, DigestSink
from reportgen.render.html import render_html
from reportgen.render.markdown import render_markdown
from reportgen.render.text import render_text
from reportgen.sources.case import load_spec

FEW, MANY = 1_000, 10_000  # conversations


def _syns(path: Path, conversations: int) -> None:
    """The lab's first SYN (its nine hooks, forwarded out of the host), sent from a new client port
    to a new server every second of kernel time: each is a conversation of its own, closed by
    conntrack's 120 s timeout of an unanswered SYN, so about 120 are open at a time."""
    template = (SAMPLES / "lab-tcp-to-internet" / "dmesg.log").read_text().splitlines()[:9]
    assert all("DST=203.0.113.10" in ln or "EB:" in ln for ln in template)
    with path.open("w") as fh:
        for i in range(conversations):
            for n, ln in enumerate(template):
                body = ln[ln.index("]") + 1 :].replace("39668", str(1024 + i % 60000))
                body = body.replace("203.0.113.10", f"203.0.113.{1 + i // 60000}")
                fh.write(f"[{1000 + i + n * 1e-5:12.6f}]{body}\n")


def _digest(case: Path) -> Digest:
    sink = DigestSink()
    with cyclic_gc_paused():
        head = stream_case(load_spec([case]), sink, appendix=True)
    return sink.digest(head)


def _kept(d: Digest) -> int:
    """Rows the digest holds: one per conversation told, and the listed ones of each behaviour."""
    return len(d.rows) + sum(len(a.first) + len(a.last) for a in d.folded.values())


def test_rows_and_documents_do_not_grow_with_conversations(tmp_path: Path) -> None:
    digests, docs = {}, {}
    for n in (FEW, MANY):
        case = tmp_path / f"syns{n}"
        case.mkdir()
        _syns(case / "kern.log", n)
        d = digests[n] = _digest(case)
        docs[n] = {
            "text": render_text(d),
            "md": render_markdown(d),
            "html": render_html(d, {"topology": ""} | {p.id: "" for p in d.report.packets}),
        }
    few, many = digests[FEW], digests[MANY]
    assert (few.conversations, many.conversations) == (FEW, MANY)
    assert len(many.report.conversations) == 1  # one behaviour, told once
    assert _kept(many) == _kept(few) == 1 + FIRST_ROWS + LAST_ROWS
    for kind in ("text", "md", "html"):
        # Ten times the conversations: a few more digits, nothing more.
        assert len(docs[MANY][kind]) <= 1.05 * len(docs[FEW][kind]), kind
    # The counts are exact and the left-out conversations are said, with where they are.
    text = " ".join(docs[MANY]["text"].split())
    lines = 9 * MANY
    assert (
        f"c1 and {MANY - 1} other conversations like it: {MANY} packets ({MANY} forwarded-out), kernel time "
        f"1000.000–{1000 + MANY - 1:.3f} s, within lines kern.log:1–kern.log:{lines}" in text
    )
    left = MANY - 1 - FIRST_ROWS - LAST_ROWS
    assert (
        f"… and {left} more conversations like c1, with ids between c{FIRST_ROWS + 1} and "
        f"c{MANY - LAST_ROWS + 1}: every one is in report.json / report.jsonl, by id" in text
    )
    assert f"c{MANY} TCP" in text and f"c{FIRST_ROWS + 2} TCP" not in text


CHILD = """
import sys
from pathlib import Path
from reportgen.batch import CaseJob, run_case

res = run_case(CaseJob((Path(sys.argv[1]),), Path(sys.argv[2]), ("html", "md", "text")))
assert res.error is None, res.error
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]))
"""


def test_document_memory_does_not_grow_with_conversations(tmp_path: Path) -> None:
    # The child's own peak resident set (VmHWM), as test_stream_docs measures the HTML path.
    peaks = {}
    for n in (FEW, MANY):
        case = tmp_path / f"syns{n}"
        case.mkdir()
        _syns(case / "kern.log", n)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(case), str(tmp_path / f"out{n}")],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        peaks[n] = int(out.stdout.strip())
    assert peaks[MANY] <= 1.3 * peaks[FEW], peaks


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (./run installs it as root)")
def test_a_browser_shows_how_many_alike_conversations_were_left_out_and_where(tmp_path: Path) -> None:
    # As tests/test_browser.py does: the DOM a real headless Chromium built from the streamed report,
    # opened at a listed conversation near the end (its <details> opens for the link).
    case = tmp_path / "syns"
    case.mkdir()
    _syns(case / "kern.log", FEW)
    res = run_case(CaseJob((case,), tmp_path / "out", ("html",)))
    assert res.error is None, res.error
    page = (tmp_path / "out" / "syns" / "report.html").as_uri() + f"#c{FEW}"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page]
    dom = subprocess.run(cmd, check=True, capture_output=True, timeout=120, text=True).stdout
    listed = FIRST_ROWS + LAST_ROWS
    assert (
        f"<summary>{FEW - 1} more conversations behave like c1: the same hooks, kinds of NAT and verdicts; only "
        f"their addresses and ports differ; {listed} of them listed here, every one in report.json / report.jsonl "
        "by id</summary>" in dom
    )
    assert '<details open="">' in dom  # the link opened the list
    assert (
        f'<tr class="left-out"><td colspan="3">… and {FEW - 1 - listed} more conversations like c1, with ids between '
        f"c{FIRST_ROWS + 1} and c{FEW - LAST_ROWS + 1}: every one is in report.json / report.jsonl, by id.</td></tr>"
        in dom
    )
    assert len(re.findall(r'<tr id="c\d+">', dom)) == listed
    assert f"c1 and {FEW - 1} other conversations like it: {FEW} packets ({FEW} forwarded-out)" in dom
