"""An xtables-monitor PACKET line without MARK= shows mark 0.

nf_tables_trace.c puts NFTA_TRACE_MARK in a trace event only when skb->mark is non-zero, and
xtables-monitor prints MARK= whenever the event carries it: kube-proxy's marked NodePort SYN shows
MARK=0x4000, its replies and later segments no MARK= at all. The report used to call their mark unknown
and say "--mark 0x4000/0x4000 not evaluated" at KUBE-FORWARD and KUBE-POSTROUTING.
"""

from __future__ import annotations

from pathlib import Path

from reportgen.explain.attribution import packet_view
from reportgen.explain.topology import Topology
from reportgen.pipeline import build_report
from reportgen.render.write import write_report
from reportgen.sources.case import load_spec

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "lab-public-kube-proxy-nodeport"


def test_packet_line_without_mark_is_mark_zero() -> None:
    report = build_report(load_spec([SAMPLE]))
    seen = {(h.event.record.mark, packet_view(h.event, False, Topology()).mark) for p in report.packets for h in p.hops}
    # Both kinds of PACKET line are in the trace: the marked SYN's and the unmarked packets'.
    assert seen == {("0x4000", 0x4000), (None, 0)}


def test_mark_match_is_evaluated_on_unmarked_packets(tmp_path: Path) -> None:
    write_report(build_report(load_spec([SAMPLE])), tmp_path, ["text"])
    text = (tmp_path / SAMPLE.name / "report.txt").read_text()
    assert "--mark 0x4000/0x4000 not evaluated" not in text
