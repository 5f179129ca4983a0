"""Markdown fit for a GitHub/GitLab issue: CommonMark-clean, Mermaid diagrams, folded, within budget."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLES
from markdown_it import MarkdownIt

from reportgen.pipeline import build_report
from reportgen.render.markdown import code, md, render_markdown
from reportgen.render.options import Level, RenderOptions
from reportgen.sources.case import load_spec


def _html(text: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(text)


def test_lab_drop_case_renders_with_its_mermaid_blocks_intact() -> None:
    report = build_report(load_spec([SAMPLES / "lab-tcp-dropped"]))
    text = render_markdown(report)
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    mermaid = [t.content for t in tokens if t.type == "fence" and t.info == "mermaid"]
    assert len(mermaid) == 2  # the topology and the (one) folded group's hook path
    hook = mermaid[1]
    assert hook.startswith("flowchart LR\n") and 'start(["in: vethrd1c1"])' in hook
    assert '["IP FORWARD<br>6. mangle, 7. filter"]' in hook and "dropped-by-rule: iptables filter DOCKER-USER" in hook
    html = _html(text)
    # The answer first: the outcome, then the folded group with its count, ids and time span.
    assert "<strong>1 flow, 4 packets; 4 dropped-by-rule (inferred from evaluating the ruleset snapshot);" in html
    assert "<h3>×4 (p1–p4, 3.1 s) request: 172.17.0.2:51068 → 203.0.113.10:81 TCP [SYN]</h3>" in html
    # The rule and its file:line are code spans, not escaped text.
    assert "<code>iptables-save.txt:46</code>: <code>-A DOCKER-USER -p tcp -m tcp --dport 81 -j DROP</code>" in html
    # Only necessary escaping: no backslash left in the rendered text, none before ( . -
    assert "\\" not in re.sub(r"<code>.*?</code>", "", html)
    assert not re.search(r"\\[(.\-]", text)


def test_escaping_is_minimal_and_safe() -> None:
    assert md("IN=docker0 (port of docker0), net/ipv4/ip_forward.c -> ok") == (
        "IN=docker0 (port of docker0), net/ipv4/ip_forward.c -> ok"
    )
    for evil in ("<script>x</script>", "*bold* _em_", "[a](javascript:x)", "`tick`", "a | b", "~~s~~", "&amp;"):
        html = _html(f"x {md(evil)} y")
        assert html == f"<p>x {evil.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')} y</p>\n", evil
    # A line of input that would start a block stays text.
    for start in ("# h", "- l", "1. n", "> q"):
        assert _html(md(start, line_start=True)) == f"<p>{start.replace('>', '&gt;')}</p>\n"
    # Backticks in input cannot close a code span; control characters become visible pictures.
    assert _html(code("a `` b ` c")) == "<p><code>a `` b ` c</code></p>\n"
    assert md("bell\x07esc\x1b[31m") == "bell\u2407esc\u241b\\[31m"


def test_control_characters_in_a_trace_line_are_escaped(tmp_path: Path) -> None:
    line = (
        "[ 1.000000] drop\x1b[2J IN=eth0 OUT= SRC=192.0.2.1 DST=192.0.2.2 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=1 "
        "PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1 "
    )
    (tmp_path / "t.log").write_text(line + "\n")
    text = render_markdown(build_report(load_spec([tmp_path / "t.log"])))
    assert "\x1b" not in text


@pytest.fixture(scope="module")
def big_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab TCP connection replayed as 300 flows, as tests/bench/bench_scale.py builds it."""
    import shutil

    sys.path.insert(0, str(ROOT / "tests" / "bench"))
    from bench_scale import make_kernlog

    case = tmp_path_factory.mktemp("big") / "flows300"
    shutil.copytree(SAMPLES / "lab-tcp-to-internet", case)
    make_kernlog(case / "dmesg.log", 300 * 62 * 2)
    return case


def test_a_300_flow_case_fits_one_issue_body_and_says_what_it_folded(big_case: Path) -> None:
    report = build_report(load_spec([big_case]))
    text = render_markdown(report)
    assert len(text) <= 60_000
    assert "> **Folded to fit one issue body (60,000 characters):**" in text
    assert re.search(r"\d+ conversations like c1 not listed", text)
    assert text.rstrip().endswith("18600 unused.")
    small = render_markdown(report, RenderOptions(level=Level.MINIMAL, markdown_limit=20_000))
    assert len(small) <= 20_000


def test_conversations_that_behave_alike_are_told_once_and_all_listed(big_case: Path, tmp_path: Path) -> None:
    from reportgen.render.text import render_text
    from reportgen.render.write import write_report

    report = build_report(load_spec([big_case]))
    text = render_text(report, RenderOptions(level=Level.MINIMAL))
    m = re.search(r"\+ (\d+) more conversations behave like c1: the same hooks, kinds of NAT and verdicts", text)
    assert m and int(m.group(1)) >= 290
    assert len(text) < 100_000  # was 3 MB before conversations were folded
    write_report(report, tmp_path, ["html"])
    html = (tmp_path / big_case.name / "report.html").read_text()
    # Nothing is lost: every conversation has its row, every packet's line links somewhere that exists.
    ids = set(re.findall(r' id="([^"]+)"', html))
    assert {c.id for c in report.conversations} <= ids
    assert set(re.findall(r'<td class="pk"><a href="#([^"]+)">', html)) <= ids
    assert html.count('<section class="packet"') < 20
