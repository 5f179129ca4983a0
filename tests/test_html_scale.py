"""Big cases in HTML and PDF (issue 10): output grows with distinct behaviour, not with packets.

The cases are the lab TCP connection replayed as distinct flows (tests/bench/bench_scale.py), with
the lab's host snapshots: every flow behaves like the first, so a case four times as long has four
times the packets and no new behaviour.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLES

from reportgen.model import Report
from reportgen.pipeline import build_report
from reportgen.render import digest as digest_mod
from reportgen.render import html as html_mod
from reportgen.render.digest import digest_of
from reportgen.render.view import outcome, severity
from reportgen.render.write import write_report
from reportgen.sources.case import load_spec

SMALL, LARGE = 12_000, 48_000  # trace lines: about 100 and 390 conversations


def _case(root: Path, lines: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "bench"))
    from bench_scale import make_kernlog

    case = root / f"flows{lines}"
    shutil.copytree(SAMPLES / "lab-tcp-to-internet", case)
    make_kernlog(case / "dmesg.log", lines)
    return case


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Report]:
    root = tmp_path_factory.mktemp("scale")
    return {n: build_report(load_spec([_case(root, n)])) for n in (SMALL, LARGE)}


@pytest.fixture(scope="module")
def written(reports: dict[int, Report], tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    out = tmp_path_factory.mktemp("out")
    for report in reports.values():
        write_report(report, out, ["html", "pdf"])
    return {n: out / report.name for n, report in reports.items()}


def test_html_size_grows_with_behaviour_not_with_packets(reports: dict[int, Report], written: dict[int, Path]):
    small, large = reports[SMALL], reports[LARGE]
    assert len(large.packets) >= 3.5 * len(small.packets)
    size = {n: (written[n] / "report.html").stat().st_size for n in written}
    assert size[LARGE] < 1.5 * size[SMALL], size
    html = (written[LARGE] / "report.html").read_text()
    # Each behaviour is told once: the sections are those of the two kinds of conversation, not 390.
    assert html.count('<section class="packet"') < 10
    # Nothing is lost: the appendix says how many lines it left out, and every link has its target.
    kept = f"{len(large.lines)} trace lines of {large.lines_total} kept for the appendix"
    assert f"{kept}: only the lines this report links are listed here" in html
    gaps = sum(
        int(n) for n in re.findall(r'<tr class="gap"><td class="ln">⋮</td><td colspan="2">(\d+) lines? not', html)
    )
    assert gaps + html.count('<tr id="f0-L') == len(large.lines)
    ids = set(re.findall(r' id="([^"]+)"', html))
    assert set(re.findall(r'href="#([^"]+)"', html)) <= ids


def test_the_summary_comes_first(reports: dict[int, Report], written: dict[int, Path]):
    html = (written[LARGE] / "report.html").read_text()
    body = html.split("</header>", 1)[1]
    assert body.lstrip().startswith('<section id="summary">')
    summary = body.split("</section>", 1)[0]
    packets = len(reports[LARGE].packets)
    assert re.search(rf"{len(reports[LARGE].conversations)} conversations, {packets} packets:", summary)


def test_worst_verdicts_lead_the_summary_and_the_detail():
    # Two lab captures in one case: c1 leaves the host, c2 (the dropped capture) is last seen inside it.
    report = build_report(
        load_spec([SAMPLES / "lab-tcp-to-internet" / "dmesg.log", SAMPLES / "lab-tcp-dropped" / "dmesg.log"])
    )
    worst = {a.conversation: a.worst.value for a in report.answers}
    assert severity(worst["c2"]) < severity(worst["c1"])
    html = html_mod.render_html(report)
    summary = html.split('<section id="summary">', 1)[1].split("</section>", 1)[0]
    assert re.findall(r'<li class="answer verdict-[a-z-]+"><strong>(c\d+)</strong>', summary) == ["c2", "c1"]
    assert re.findall(r'<td rowspan="\d+" id="(c\d+)">', summary) == ["c2", "c1"]
    sections = re.findall(r'<p class="meta">Conversation (c\d+) ', html)
    assert sections.index("c2") < sections.index("c1")


def test_left_out_alike_conversations_are_counted_and_named(
    reports: dict[int, Report], monkeypatch: pytest.MonkeyPatch
) -> None:
    report = reports[LARGE]
    alike = digest_of(report).folded["c1"]
    monkeypatch.setattr(html_mod, "SCREEN", replace(html_mod.SCREEN, alike_rows=30))
    html = html_mod.render_html(report, {"topology": ""} | html_mod.packet_svgs(report))
    rows = re.findall(r'<tr id="(c\d+)"><td><strong>', html)
    others = [c.id for c in report.conversations[1:]]  # every one behaves like c1
    # The first rows, one sentence for the rest, and the last rows: the span of the traffic.
    assert rows == others[:30] + others[-digest_mod.LAST_ROWS :]
    left = len(others) - 30 - digest_mod.LAST_ROWS
    sentence = (
        f"… and {left} more conversations like c1, with ids between {others[29]} and {others[-5]}: "
        "every one is in report.json / report.jsonl, by id."
    )
    assert sentence in html
    # The counts are exact, over every conversation, listed or not.
    outcomes = Counter(outcome(p) for p in report.packets)
    assert {code.value: n for code, n in alike.counts.outcomes} == outcomes
    assert alike.counts.packets == len(report.packets) and alike.conversations == len(others)
    assert f"c1 and {len(others)} other conversations like it: {len(report.packets)} packets (" in html


def test_alike_conversations_follow_the_behaviour_ids_of_their_groups(reports: dict[int, Report]):
    report = reports[SMALL]
    assert "c2" in [row.id for row in digest_of(report).folded["c1"].first]
    # The explain layer says c2's first group is a behaviour of its own: the renderer follows it,
    # it does not look at the packets again.
    first = next(g for g in report.groups if g.conversation == "c2")
    groups = tuple(replace(g, behaviour="b-own") if g is first else g for g in report.groups)
    alike = digest_of(replace(report, groups=groups))
    assert "c1" not in alike.folded or "c2" not in [row.id for row in alike.folded["c1"].first]
    assert "c2" in [c.id for c in alike.report.conversations]  # told in full


def test_one_dot_process_for_every_hook_diagram(reports: dict[int, Report], monkeypatch: pytest.MonkeyPatch):
    from reportgen.render import dot

    runs: list[bytes] = []
    real = subprocess.run

    def counting(argv, **kw):  # type: ignore[no-untyped-def]
        runs.append(kw["input"])
        return real(argv, **kw)

    monkeypatch.setattr(dot.subprocess, "run", counting)
    report = reports[LARGE]
    svgs = html_mod.packet_svgs(report)
    # The hook diagrams in one process, the topology in its own: not one per packet or per group.
    assert len(runs) == 2 and len(report.groups) > 1000
    assert runs[0].count(b"digraph ") == len(svgs) - 1
    # The same drawing as dot gives for the graph alone.
    pid = next(k for k in svgs if k != "topology")
    source = dot.packet_dot(next(p for p in report.packets if p.id == pid))
    assert svgs[pid] == dot.dot_to_svg(source, pid)


def test_pdf_stays_a_few_pages_and_says_what_it_left_out(reports: dict[int, Report], written: dict[int, Path]):
    import pypdf

    pages = {n: len(pypdf.PdfReader(str(written[n] / "report.pdf")).pages) for n in written}
    assert pages[LARGE] <= pages[SMALL] + 1 and pages[LARGE] <= 12, pages
    text = " ".join(pg.extract_text() for pg in pypdf.PdfReader(str(written[LARGE] / "report.pdf")).pages)
    text = re.sub(r"\s+", " ", text)
    report = reports[LARGE]
    others = [c.id for c in report.conversations[1:]]
    shown = html_mod.PRINT.alike_rows
    assert (
        f"… and {len(others) - shown - digest_mod.LAST_ROWS} more conversations like c1, with ids between "
        f"{others[shown - 1]} and {others[-digest_mod.LAST_ROWS]}: every one is in report.json / report.jsonl, "
        "by id." in text
    )


def test_pdf_of_a_big_case_is_reproducible(reports: dict[int, Report], tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    from reportgen.render.pdf import render_pdf

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    report = reports[SMALL]
    svgs = html_mod.packet_svgs(report)
    assert render_pdf(report, svgs) == render_pdf(report, svgs)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (./run installs it as root)")
def test_chromium_renders_a_big_case_summary_first(written: dict[int, Path], tmp_path: Path):
    from test_browser import FLAGS

    page = written[LARGE] / "report.html"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()]
    t = time.perf_counter()
    dom = subprocess.run(cmd, check=True, capture_output=True, timeout=120, text=True).stdout
    secs = time.perf_counter() - t
    # The title block, then the summary: the first thing a reader meets is the outcome counts.
    after_header = dom.split("<body", 1)[1].split("</header>", 1)[1].lstrip()
    assert after_header.startswith('<section id="summary">'), secs
    assert re.match(r'<section id="summary">\s*<h2>Summary</h2>\s*<p class="outcomes">\d+ conversations', after_header)
    assert "behave like c1" in dom and "<svg" in dom


def test_conversations_beyond_the_budget_are_counted_and_listed(monkeypatch: pytest.MonkeyPatch):
    report = build_report(
        load_spec([SAMPLES / "lab-tcp-to-internet" / "dmesg.log", SAMPLES / "lab-tcp-dropped" / "dmesg.log"])
    )
    monkeypatch.setattr(html_mod, "PRINT", replace(html_mod.PRINT, conversations=1))
    from reportgen.render.pdf import print_html

    html = print_html(report, {"topology": ""})
    # c2 (last seen inside the host) is told; c1 only has its row, and the page says where the rest is.
    assert "1 more conversation left out: 1 conversation unlike those above (c1); see report.html / report.json" in html
    assert re.findall(r'<p class="meta">Conversation (c\d+) ', html) == ["c2"]
    assert '<tr id="c1"><td><strong>c1</strong>' in html


def test_links_point_only_to_lines_the_appendix_lists(monkeypatch: pytest.MonkeyPatch):
    # The pipeline keeps the first lines of a long trace for the appendix; a told packet whose
    # lines come later names them as text, not as links to nowhere.
    report = build_report(load_spec([SAMPLES / "lab-tcp-to-internet"]))
    report = replace(report, lines=report.lines[:20])
    monkeypatch.setattr(html_mod, "SCREEN", replace(html_mod.SCREEN, appendix_lines=10))
    html = html_mod.render_html(report)
    ids = set(re.findall(r' id="([^"]+)"', html))
    hrefs = set(re.findall(r'href="#([^"]+)"', html))
    assert hrefs <= ids, sorted(hrefs - ids)[:5]
    assert any(h.startswith("f0-L") for h in hrefs)  # the lines it lists are still linked


def test_ids_are_named_as_runs_and_long_groups_by_their_ends():
    from reportgen.model import PacketGroup
    from reportgen.render.view import group_label, id_runs

    assert id_runs(["c2", "c3", "c4", "c7", "c9", "c10"], 10) == "c2–c4, c7, c9–c10"
    # At most `limit` runs, then how many ids the rest holds (c9 and c10).
    assert id_runs(["c2", "c3", "c4", "c7", "c9", "c10"], 2) == "c2–c4, c7, and 2 more"
    members = tuple(f"p{2 * i}" for i in range(1, 301))
    group = PacketGroup("g1", "c1", "p2", members, 1.0, 4.5, ())
    assert group_label(group) == "×300 (p2, p4, p6, …, p600, 3.5 s)"


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (./run installs it as root)")
def test_later_conversations_are_told_on_demand_and_a_link_opens_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_browser import FLAGS

    report = build_report(
        load_spec([SAMPLES / "lab-tcp-to-internet" / "dmesg.log", SAMPLES / "lab-tcp-dropped" / "dmesg.log"])
    )
    monkeypatch.setattr(html_mod, "SCREEN", replace(html_mod.SCREEN, open_conversations=1))
    page = tmp_path / "report.html"
    page.write_text(html_mod.render_html(report), encoding="utf-8")
    first_of_c1 = next(g.first for g in report.groups if g.conversation == "c1")

    def dom(fragment: str) -> str:
        profile = tmp_path / f"profile{fragment}"
        cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri() + fragment]
        return subprocess.run(cmd, check=True, capture_output=True, timeout=120, text=True).stdout

    closed = re.findall(r'<details class="conversation"( open="")?>', dom(""))
    assert closed == [""]  # c2, the worst, is open; c1 waits in one closed <details>
    opened = dom(f"#{first_of_c1}")
    assert re.findall(r'<details class="conversation"( open="")?>', opened) == [' open=""']
    details = opened.split('<details class="conversation" open="">', 1)[1].split("</details>", 1)[0]
    assert f'<section class="packet" id="{first_of_c1}">' in details
