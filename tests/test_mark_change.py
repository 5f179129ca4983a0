"""A mark set between two lines of one packet is stated, with what would show who set it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

LINE = (
    "Nov 28 10:00:00 gw kernel: [1000.0000{n}0] {prefix}: IN= OUT=eth0 SRC=192.0.2.5 DST=203.0.113.10 "
    "LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=40000 DPT=443 WINDOW=64240 RES=0x00 SYN URGP=0{tail}"
)


def _hops(tmp_path: Path, first_tail: str, second_tail: str) -> list[str]:
    """The explanation of each hop of the one packet of two lines (mangle OUTPUT, then POSTROUTING)."""
    lines = [LINE.format(n=0, prefix="mangle-out", tail=first_tail), LINE.format(n=1, prefix="post", tail=second_tail)]
    (tmp_path / "kern.log").write_text("\n".join(lines) + "\n")
    [packet] = build_report(load_spec([tmp_path])).packets
    return [" ".join(h.explanation) for h in packet.hops]


def test_a_mark_set_between_two_lines_is_stated(tmp_path: Path) -> None:
    first, second = _hops(tmp_path, "", " MARK=0x3f00")
    assert "Mark 0x0 → 0x3f00 since the previous hop" in second
    assert "Mark" not in first


@pytest.mark.parametrize(
    ("first_tail", "second_tail"),
    [
        (" MARK=0x3f00", " MARK=0x3f00"),  # kept
        ("", ""),  # no mark either side: nf_log_syslog.c prints MARK= only when it is not 0
        (" MARK=0x3f0O", " MARK=0x3f00"),  # a mangled mark is not read: no change can be claimed
    ],
)
def test_no_change_is_claimed_without_two_read_marks_that_differ(
    tmp_path: Path, first_tail: str, second_tail: str
) -> None:
    assert not any("Mark " in h for h in _hops(tmp_path, first_tail, second_tail))


def test_a_cut_line_proves_no_mark_zero(tmp_path: Path) -> None:
    # The first line is cut before its end (URGP= is missing; every field that tells the packet is there): its
    # absent MARK= says nothing.
    lines = [
        LINE.format(n=0, prefix="mangle-out", tail="").removesuffix(" URGP=0"),
        LINE.format(n=1, prefix="post", tail=" MARK=0x3f00"),
    ]
    (tmp_path / "kern.log").write_text("\n".join(lines) + "\n")
    [packet] = build_report(load_spec([tmp_path])).packets
    assert packet.hops[0].event.record.truncated
    assert not any("Mark " in " ".join(h.explanation) for h in packet.hops)


def test_a_mangled_mark_does_not_stop_the_rule_walk(tmp_path: Path) -> None:
    # The ruleset snapshot's walk reads each line's mark: 'MARK=0xzz' was a ValueError traceback.
    sample = Path(__file__).resolve().parents[1] / "samples" / "lab-tcp-dropped"
    case = tmp_path / "case"
    shutil.copytree(sample, case)
    log = case / "dmesg.log"
    log.write_text(log.read_text().replace("URGP=0", "URGP=0 MARK=0xzz"))
    report = build_report(load_spec([case]))
    assert report.packets and all(p.verdict is not None for p in report.packets)
