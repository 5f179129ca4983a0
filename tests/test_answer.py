"""Answer first: the bottom line per conversation, the packet footer and the case summary."""

from __future__ import annotations

import json
from pathlib import Path

from reportgen.cli import main as cli_main
from reportgen.model import VerdictCode
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _report(name: str):  # type: ignore[no-untyped-def]
    return build_report(load_spec([SAMPLES / name]))


def test_dropped_flow_says_how_many_where_and_by_which_rule() -> None:
    rep = _report("lab-tcp-dropped")
    [answer] = rep.answers
    assert answer.worst is VerdictCode.DROPPED_BY_RULE
    assert answer.sentence.startswith("container1 (172.17.0.2):51068 → 203.0.113.10:81 TCP: 4 SYNs dropped in ")
    assert "'-A DOCKER-USER -p tcp -m tcp --dport 81 -j DROP' (iptables-save.txt:46)" in answer.sentence
    assert answer.sentence.endswith("no reply in the trace.")
    # The drop was reached by evaluating the snapshot, not logged: that is an assumption, with its cure.
    assert any("rule trace" in a for a in answer.assumptions)
    assert rep.summary is not None and rep.summary.outcomes == ((VerdictCode.DROPPED_BY_RULE, 4),)


def test_container_to_container_is_delivered_to_the_container_not_left() -> None:
    rep = _report("seed-container-to-container")
    [answer] = rep.answers
    assert "delivered to container2 via veth8f77b15" in answer.sentence
    assert "reply: 1 echo reply delivered to container1 via veth694b3b7" in answer.sentence
    assert "left" not in answer.sentence.lower() and ":11" not in answer.sentence  # ICMP ids are not ports


def test_nat_named_with_its_rule_and_reversal_on_the_reply() -> None:
    rep = _report("lab-tcp-to-internet")
    [answer] = rep.answers
    assert "routed out ens33, MASQUERADE to 198.51.100.10:39668 (ipv4 nat POSTROUTING rule" in answer.sentence
    assert "reply: MASQUERADE reversed by conntrack" in answer.sentence
    assert "4 packets (1 SYN, 2 segments, 1 FIN)" in answer.sentence
    first = rep.footers[0]
    assert first.final == "TCP 198.51.100.10:39668 → 203.0.113.10:80"  # after the MASQUERADE
    assert first.code is VerdictCode.FORWARDED_OUT and "OUT=ens33" in first.decided_by


def test_summary_lists_the_worst_outcome_first() -> None:
    rep = _report("lab-tcp-rejected")
    assert rep.summary is not None
    assert [c for c, _ in rep.summary.outcomes] == [VerdictCode.REJECTED, VerdictCode.DELIVERED_TO_PORT]
    # The REJECT rule is reached by evaluating the snapshot, which the summary says (session 9).
    assert rep.summary.sentence.startswith(
        "1 flow, 2 packets; 1 rejected (inferred from evaluating the ruleset snapshot), 1 delivered-to-port; "
        "kernel time "
    )


def _blocked_syns(tmp_path: Path, lines: list[int], total: int) -> list[str]:
    """The assumptions of one conversation of retransmitted '[UFW BLOCK]' SYNs, the SYNs on the given
    lines of a kern.log of ``total`` lines (the others unrelated)."""
    text = []
    for n in range(1, total + 1):
        if n in lines:
            text.append(
                f"Nov 28 10:00:00 gw kernel: [{1000 + n}.000000] [UFW BLOCK] IN=eth0 OUT= "
                "MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.51.100.7 DST=192.0.2.10 LEN=60 "
                f"TOS=0x00 PREC=0x00 TTL=52 ID={100 + n} DF PROTO=TCP SPT=40000 DPT=22 WINDOW=64240 "
                "RES=0x00 SYN URGP=0"
            )
        else:
            text.append(f"Nov 28 10:00:00 gw sshd[7]: unrelated line {n}")
    (tmp_path / "kern.log").write_text("\n".join(text) + "\n")
    [answer] = build_report(load_spec([tmp_path])).answers
    return list(answer.assumptions)


def test_a_retransmitted_drop_is_assumed_once_citing_every_line(tmp_path: Path) -> None:
    # Forty SYNs each logged by '[UFW BLOCK]' make one assumption, not forty that differ by their line.
    [said] = _blocked_syns(tmp_path, [1, 2, 3, 5, 7, *range(9, 44)], 43)
    assert "(action DROP, ufw convention) at kern.log:1 and 39 more of this conversation's lines)" in said
    assert said.startswith("the dropped-by-rule verdict is the log prefix's own word")


def test_alike_conversations_with_folded_assumptions_are_one_kind(tmp_path: Path) -> None:
    # report.json folds alike conversations into one kind by cutting their "file:line" citations out
    # (render/jsonfold.py): the folded assumption must cite no other line number.
    text = []
    for port in range(40000, 40006):
        for n in range(3):  # three SYNs per connection, each its own '[UFW BLOCK]' line
            text.append(
                f"Nov 28 10:00:00 gw kernel: [{port - 39000 + n / 10:.6f}] [UFW BLOCK] IN=eth0 OUT= "
                "MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.51.100.7 DST=192.0.2.10 LEN=60 "
                f"TOS=0x00 PREC=0x00 TTL=52 ID={port + n} DF PROTO=TCP SPT={port} DPT=22 WINDOW=64240 "
                "RES=0x00 SYN URGP=0"
            )
            text.append(f"Nov 28 10:00:00 gw sshd[7]: unrelated line {port} {n}")
    case = tmp_path / "case"
    case.mkdir()
    (case / "kern.log").write_text("\n".join(text) + "\n")
    out = tmp_path / "out"
    assert cli_main(["report", str(case), "-o", str(out), "--format", "json"]) == 0
    report = json.loads((out / "case" / "report.json").read_text())
    assert len(report["conversation_kinds"]) == 1, [k["assumptions"] for k in report["conversation_kinds"]]


def test_one_line_is_cited_alone(tmp_path: Path) -> None:
    [said] = _blocked_syns(tmp_path, [4], 6)
    assert "(action DROP, ufw convention) at kern.log:4); the ruleset snapshot" in said
