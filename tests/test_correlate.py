"""Correlation edge cases: retransmits, interleaving, drops, loose files without a manifest."""

from __future__ import annotations

import json
from pathlib import Path

from reportgen.model import VerdictCode
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "samples" / "seed-container-to-container" / "dmesg.log"


def _report(tmp_path: Path, lines: list[str], name: str = "t.log"):
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines))
    return build_report(load_spec([p]))


def test_identical_retransmit_stays_a_separate_packet(tmp_path: Path):
    req = SEED.read_text().splitlines()[:11]
    report = _report(tmp_path, req + req)
    assert [len(p.hops) for p in report.packets] == [11, 11]
    assert [h.event.record.ref.line for h in report.packets[1].hops] == list(range(12, 23))
    # One conntrack entry (same ICMP id and addresses), so one conversation with two requests.
    assert report.packets[0].conversation == report.packets[1].conversation
    assert [p.role for p in report.packets] == ["request", "request"]


def test_interleaved_packets_are_separated(tmp_path: Path):
    lines = SEED.read_text().splitlines()
    req, rep = lines[:11], lines[11:]
    mixed = []
    for i in range(max(len(req), len(rep))):
        mixed += req[i : i + 1] + rep[i : i + 1]
    report = _report(tmp_path, mixed)
    assert [p.role for p in report.packets] == ["request", "reply"]
    assert [len(p.hops) for p in report.packets] == [11, 9]


def test_probable_drop_names_the_last_hook(tmp_path: Path):
    lines = SEED.read_text().splitlines()
    # The reply stops after mangle FORWARD, although filter FORWARD logs other packets.
    report = _report(tmp_path, lines[:11] + lines[11:17])
    rep = report.packets[1]
    assert rep.verdict.code == VerdictCode.LAST_SEEN
    assert "iptables mangle FORWARD" in rep.verdict.where
    assert "iptables filter FORWARD" in rep.verdict.explanation
    assert "probably dropped" in rep.verdict.explanation


def test_loose_files_without_manifest_are_classified_by_content(tmp_path: Path):
    case = ROOT / "samples" / "seed-container-to-internet"
    files = [case / n for n in ("dmesg.log", "route-n.txt", "ip-link.txt", "sysctl.txt")]
    report = build_report(load_spec(files))
    kinds = {f.name: f.kind for f in report.files}
    assert kinds == {"dmesg.log": "trace", "route-n.txt": "route-n", "ip-link.txt": "ip-link", "sysctl.txt": "sysctl"}
    assert report.packets[0].nat[0].type == "MASQUERADE"


def test_unused_lines_are_listed_with_reasons(tmp_path: Path):
    lines = SEED.read_text().splitlines()[:3] + [
        "[ 3281.4] net_ratelimit: 3 callbacks suppressed",
        "",
        "[ 3281.5] odd: IN= OUT= SRC=192.0.2.1 DST=192.0.2.2 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=1 "
        "PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1 ",
    ]
    report = _report(tmp_path, lines)
    assert report.lines_total == 6 and report.lines_used == 3
    reasons = {u.ref.line: u.reason for u in report.unused}
    assert reasons[4].startswith("other line")
    assert reasons[5] == "blank line"
    assert "prefix map" in reasons[6]


def test_runs_of_unused_lines_are_grouped_but_counted(tmp_path: Path):
    from reportgen.render.jsonout import render_json

    lines = ["[ 1.0] usb 1-1: new device"] * 5 + SEED.read_text().splitlines()[:2] + ["", ""]
    report = _report(tmp_path, lines)
    assert [(u.ref.line, u.count) for u in report.unused] == [(1, 5), (8, 2)]
    d = json.loads(render_json(report)[0])["input"]
    assert (d["lines_total"], d["lines_used"], d["lines_unused"]) == (9, 2, 7)
    assert [(u["runs"], u["count"]) for u in d["unused"]] == [("1-5", 5), ("8-9", 2)]


def test_the_stages_that_may_follow_are_those_of_the_hook_graph():
    """feed caches, per stage-candidates key (_stage_candidates: family, hook, traced, PHYSOUT, IN = OUT),
    the candidate stages and, per last stage of a packet, those the hook graph lets follow it. Every
    cached answer is what the uncached functions say for that key: a follow map shared between two
    keys (a key too small) would hold another key's answers."""
    from reportgen.explain import correlate

    for case in sorted((ROOT / "samples").iterdir()):
        if case.is_dir():
            build_report(load_spec([case]))
    assert len(correlate._CANDIDATES) > 5
    for key, (cands, follows) in correlate._CANDIDATES.items():
        assert cands == correlate._candidates(*key)
        for last, follow in follows.items():
            assert follow == correlate._follows(last, cands), (key, last)
