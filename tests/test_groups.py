"""Folding identical packets: one group per behaviour within a conversation."""

from __future__ import annotations

from pathlib import Path

from reportgen.explain.groups import group_packets
from reportgen.model import VerdictCode
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _report(name: str):  # type: ignore[no-untyped-def]
    return build_report(load_spec([SAMPLES / name]))


def test_retransmitted_syns_fold_into_one_group() -> None:
    rep = _report("lab-tcp-dropped")
    groups = group_packets(rep.packets)
    # Every packet is in exactly one group, and groups never span conversations.
    ids = [p for g in groups for p in g.packets]
    assert sorted(ids) == sorted(p.id for p in rep.packets)
    by_id = {p.id: p for p in rep.packets}
    for g in groups:
        assert {by_id[p].conversation for p in g.packets} == {g.conversation}
    dropped = [
        g for g in groups if by_id[g.first].verdict and by_id[g.first].verdict.code == VerdictCode.DROPPED_BY_RULE
    ]
    assert len(dropped) == 1
    syns = [p for p in rep.packets if p.verdict and p.verdict.code == VerdictCode.DROPPED_BY_RULE]
    assert dropped[0].count == len(syns) > 1
    g = dropped[0]
    assert g.first_stamp is not None and g.last_stamp is not None and g.last_stamp > g.first_stamp
    # The line runs cover exactly the members' lines.
    covered = {(ref.file, n) for ref, last in g.lines for n in range(ref.line, last + 1)}
    member_lines = {(h.event.record.ref.file, h.event.record.ref.line) for p in syns for h in p.hops}
    assert covered == member_lines


def test_request_and_reply_are_never_one_group() -> None:
    rep = _report("lab-tcp-to-internet")
    by_id = {p.id: p for p in rep.packets}
    for g in group_packets(rep.packets):
        assert len({by_id[p].role for p in g.packets}) == 1
    assert len(group_packets(rep.packets)) < len(rep.packets)
