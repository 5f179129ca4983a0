"""Diagrams of a hop whose line proves only "one of these hooks" (session 9, t9).

firehol/firehol#144: "Gitlab_accept:IN=eth4 OUT=" is a user prefix with IN= only, so the line is
from PREROUTING or INPUT (nf_log_syslog.c prints the hook state's devices; ip_rcv() and
ip_local_deliver() both pass (dev, NULL)). The hop's label says so; the Mermaid box and the SVG node
it is drawn in named the first candidate alone ("IP PREROUTING"), a claim the line does not make.
"""

from __future__ import annotations

import re
from pathlib import Path

from reportgen.pipeline import build_report
from reportgen.render.write import write_report
from reportgen.sources.case import load_spec

CASE = Path(__file__).resolve().parent / "corpus" / "public" / "log-firehol-user-prefix-accept-rst-reply-masked"


def _render(tmp_path: Path, fmt: str) -> Path:
    write_report(build_report(load_spec([CASE])), tmp_path, [fmt])
    return tmp_path / CASE.name


def test_mermaid_box_of_an_unplaced_hop_names_every_candidate(tmp_path: Path) -> None:
    md = (_render(tmp_path, "md") / "report.md").read_text(encoding="utf-8")
    boxes = re.findall(r'  s\d+\["([^"<]*)<br>', md)
    assert boxes == ["IP PREROUTING or INPUT", "IP OUTPUT or POSTROUTING"], boxes


def test_svg_step_of_an_unplaced_hop_names_every_candidate(tmp_path: Path) -> None:
    svg = (_render(tmp_path, "svg") / "svg" / "p1.svg").read_text(encoding="utf-8")
    texts = [re.sub(r"<[^>]*>", "", t) for t in re.findall(r"<text[^>]*>[^<]*</text>", svg)]
    assert "1. ? (at PREROUTING or INPUT)" in texts, texts
