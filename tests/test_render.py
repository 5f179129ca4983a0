"""Renderers: escaping of untrusted text everywhere it lands, PDF isolation and content, Markdown."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import SAMPLES

from reportgen.pipeline import build_report
from reportgen.render.dot import dot_to_svg, packet_dot
from reportgen.render.html import packet_svgs, render_html
from reportgen.render.jsonout import render_json
from reportgen.render.markdown import render_markdown
from reportgen.render.pdf import html_to_pdf, render_pdf
from reportgen.render.text import render_text
from reportgen.sources.case import load_spec

EVIL_PREFIX = '<script>alert(1)</script>"];x[label="iptable/raw-PREROUTE'
EVIL_IF = 'a"b<i>\\{'


@pytest.fixture()
def evil_report(tmp_path: Path):
    line = (
        f"[ 1.000000] {EVIL_PREFIX}IN={EVIL_IF} OUT= SRC=192.0.2.1 DST=192.0.2.2 LEN=84 TOS=0x00 PREC=0x00 "
        "TTL=64 ID=1 PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1 "
    )
    p = tmp_path / "evil.log"
    p.write_text(line + "\n" + "[ 1.1] <img src=x onerror=alert(2)> *not* a record | ` \n")
    report = build_report(load_spec([p]))
    assert report.packets and report.packets[0].hops[0].event.record.in_dev == EVIL_IF
    return report


def test_html_escapes_input(evil_report):
    html = render_html(evil_report)
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html


def test_dot_and_svg_escape_input(evil_report):
    src = packet_dot(evil_report.packets[0])
    svg = dot_to_svg(src)  # dot would fail on a broken label
    assert "a&quot;b&lt;i&gt;" in svg and "<i>" not in svg
    assert "script" not in src  # the prefix never reaches the diagram


def test_markdown_escapes_input(evil_report):
    from markdown_it import MarkdownIt

    md = render_markdown(evil_report)
    html = MarkdownIt("commonmark").enable("table").render(md)
    # Input text reaches the reader as text: as a code span (the interface) or escaped (the explanation).
    assert "<i>" not in html and "<script" not in html and "<img" not in html
    assert "<code>IN=a&quot;b&lt;i&gt;\\{ OUT=-</code>" in html and "Received on a&quot;b&lt;i&gt;\\{;" in html


def test_json_keeps_input_verbatim(evil_report):
    doc, lines = render_json(evil_report)
    assert json.loads(lines.splitlines()[0])["hops"][0]["prefix"] == EVIL_PREFIX
    assert json.loads(doc)["input"]["unused"][0]["line"] == 2


def test_pdf_fetches_nothing_outside_the_report(tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-CONTENT-1234")
    html = (
        f'<html><body><p>hello pdf</p><img src="file://{secret}">'
        f'<a rel="attachment" href="file://{secret}">x</a>'
        '<img src="http://192.0.2.1/x.png"></body></html>'
    )
    pdf = html_to_pdf(html)
    assert pdf.startswith(b"%PDF")
    assert b"TOPSECRET" not in pdf
    import pypdf

    text = "".join(pg.extract_text() for pg in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert "hello pdf" in text


def test_pdf_report_has_the_explanation_as_text():
    import pypdf

    report = build_report(load_spec([SAMPLES / "seed-container-to-internet"]))
    pdf = render_pdf(report, packet_svgs(report))
    text = " ".join(pg.extract_text() for pg in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert "MASQUERADE" in text and "192.168.0.10" in text
    assert "IP FORWARD" in text  # the diagram stays vector: its labels are text in the PDF


def test_pdf_is_reproducible():
    report = build_report(load_spec([SAMPLES / "seed-host-to-container"]))
    svgs = packet_svgs(report)
    assert render_pdf(report, svgs) == render_pdf(report, svgs)


def test_topology_diagram_overlays_request_and_reply_paths():
    from reportgen.explain.crossing import packet_path
    from reportgen.render.topology_dot import topology_dot

    for case in ("seed-container-to-internet", "lab-nft-trace-tcp-to-internet"):
        report = build_report(load_spec([SAMPLES / case]))
        src = topology_dot(report, report.topology)
        assert "c1 request" in src and "c1 reply" in src, case
        req = [label for _, label in packet_path(report.packets[0], report.topology)]
        assert req[0].endswith("172.17.0.2") and req[-1].startswith("beyond ens33"), (case, req)
        assert "host IP stack" in req
    svg = dot_to_svg(src)
    # Each path is labelled once, at its first edge; the colour marks every edge of it.
    assert svg.count(">c1 request<") == 1 and svg.count(">c1 reply<") == 1
    assert svg.count('stroke="#c0392b"') >= 4 and svg.count('stroke="#2471a3"') >= 4


def test_repeated_hook_paths_are_told_once_as_a_folded_group():
    import re

    report = build_report(load_spec([SAMPLES / "lab-tcp-to-internet"]))
    html = render_html(report)
    sections = re.findall(r'<section class="packet" id="(p\d+)">(.*?)</section>', html, flags=re.S)
    # 8 packets, 3 behaviours: the SYN, the 3 later requests, the 4 replies; each drawn once.
    assert [pid for pid, _ in sections] == ["p1", "p2", "p3"]
    assert all(body.count("<svg") == 1 for _, body in sections)
    heads = [re.search(r"<h2>(.*?)</h2>", body).group(1) for _, body in sections]
    assert heads[1].startswith("×4 (p2, p4, p6, p8, 3 ms) · reply")
    # Every member is still reachable by its own id, and listed with its line and time.
    for pid in (f"p{i}" for i in range(1, 9)):
        assert f'id="{pid}"' in html
    assert "<td>p8</td><td>" in sections[1][1]


def test_topology_path_of_a_dropped_packet_stops_inside_the_host():
    from reportgen.explain.crossing import packet_path

    report = build_report(load_spec([SAMPLES / "lab-tcp-rejected"]))
    labels = [label for _, label in packet_path(report.packets[0], report.topology)]
    assert labels[-1] == "host IP stack" and not any(x.startswith("beyond") for x in labels)


def test_nft_only_families_render_everywhere():
    # An nft trace in table inet skips inet hooks: the HTML table of tools had no "inet" and the
    # template (StrictUndefined) failed (tests/corpus/public/trace-nft-k8s-node-iptables-nft-input).
    case = Path(__file__).parent / "corpus" / "public" / "trace-nft-k8s-node-iptables-nft-input"
    report = build_report(load_spec([case]))
    assert any(s.family == "inet" for p in report.packets for s in p.skipped)
    assert "nft inet" in render_html(report) and "nft inet" in render_text(report)
