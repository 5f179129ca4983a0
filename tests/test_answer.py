"""Answer first: the bottom line per conversation, the packet footer and the case summary."""

from __future__ import annotations

from pathlib import Path

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
