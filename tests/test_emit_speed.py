"""The emit stage's faster forms say what the plain ones said.

groups.group_packets collects a group's lines per file by number and its stamps in one pass
(explain/groups.py); answer.outcome_counts counts in a dict. Each is held here to the plain
computation it replaced, on every sample's packets.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from reportgen.explain.answer import SEVERITY, outcome_counts
from reportgen.explain.groups import group_packets
from reportgen.model import LineRef, Packet, VerdictCode
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p.name for p in (ROOT / "samples").iterdir() if p.is_dir())


def _packets(case: str) -> tuple[Packet, ...]:
    return build_report(load_spec([ROOT / "samples" / case])).packets


def _plain_lines(members: list[Packet]) -> list[tuple[str, int, int]]:
    """Every line of every hop (Event.refs), sorted by (file, line), touching lines joined."""
    refs = sorted({(r.file, r.line) for p in members for h in p.hops for r in h.event.refs})
    out: list[tuple[str, int, int]] = []
    for file, line in refs:
        if out and out[-1][0] == file and out[-1][2] + 1 >= line:
            out[-1] = (file, out[-1][1], max(out[-1][2], line))
        else:
            out.append((file, line, line))
    return out


@pytest.mark.parametrize("case", SAMPLES)
def test_group_lines_and_stamps_are_those_of_every_hop(case: str) -> None:
    packets = _packets(case)
    by_id = {p.id: p for p in packets}
    for g in group_packets(packets):
        members = [by_id[x] for x in g.packets]
        assert [(ref.file, ref.line, last) for ref, last in g.lines] == _plain_lines(members)
        stamps = [h.event.record.stamp for p in members for h in p.hops if h.event.record.stamp is not None]
        assert (g.first_stamp, g.last_stamp) == ((min(stamps), max(stamps)) if stamps else (None, None))


def test_group_lines_of_several_files_come_in_file_order() -> None:
    """One group's lines in two files, the later-sorting file's seen first: runs per file, files in
    name order."""
    packets = [p for case in SAMPLES[:6] for p in _packets(case)]
    first = next(p for p in packets if p.hops)
    packets = [first, dataclasses.replace(first, id="p9999")]  # one behaviour: one group
    moved = [
        dataclasses.replace(
            p,
            conversation="c1",
            hops=tuple(
                dataclasses.replace(
                    h,
                    event=dataclasses.replace(
                        h.event, record=dataclasses.replace(h.event.record, ref=LineRef(name, h.event.record.ref.line))
                    ),
                )
                for h in p.hops
            ),
        )
        for p, name in zip(packets, ("z.log", "a.log"), strict=True)
    ]
    (group,) = group_packets(moved)
    files = [ref.file for ref, _ in group.lines]
    assert {"a.log", "z.log"} <= set(files)
    assert files == sorted(files)
    for g in group_packets(moved):
        members = [p for p in moved if p.id in g.packets]
        assert [(ref.file, ref.line, last) for ref, last in g.lines] == _plain_lines(members)


@pytest.mark.parametrize("case", SAMPLES)
def test_outcome_counts_are_a_counters(case: str) -> None:
    packets = _packets(case)
    counts = Counter(p.verdict.code if p.verdict else VerdictCode.UNKNOWN for p in packets)
    assert outcome_counts(packets) == tuple((c, counts[c]) for c in SEVERITY if counts[c])
