"""A packet group's header states only what every member shares.

The documents tell a group (explain.groups) once: a header with its flow, then its first member's
hops and verdict. Members of a conversation share its addresses, but the packets of no conversation
(a masked address, ARP) share only their behaviour, so their group's members may differ in address,
port and TCP flags. The case that showed it: tests/corpus/public/log-asus-drop-masked-mac-tcp-opt,
where "×2 (p3–p4) unknown: 78.154.18.99:53009 → redacted:53803 UDP" folded a TCP ACK PSH from
17.57.144.4:443 (syslog.log:4), and "×2 (p1–p2) request: 123.14.87.235:1361 → redacted:23 TCP [SYN]"
folded 106.75.13.173:58914 → :67 (syslog.log:2).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reportgen.explain.groups import group_packets
from reportgen.model import Report
from reportgen.pipeline import build_report
from reportgen.render.html import render_html
from reportgen.render.jsonout import render_json
from reportgen.render.markdown import render_markdown
from reportgen.render.options import RenderOptions
from reportgen.render.text import render_text
from reportgen.render.view import first_record, flow_text, group_flow_text
from reportgen.sources.case import load_spec

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus" / "public"
ASUS = CORPUS / "log-asus-drop-masked-mac-tcp-opt" / "syslog.log"
NOT_INPUT = {"PROVENANCE.md", "facts.yaml", "case.yaml", "prefixes.yaml"}


def _asus() -> Report:
    return build_report(load_spec([ASUS]))


def test_asus_groups_say_only_what_their_members_share() -> None:
    report = _asus()
    text, md = render_text(report, RenderOptions(width=1000)), render_markdown(report)
    html = render_html(report)
    # p1 and p2 are both SYNs to a masked address, from different sources and ports: the header says
    # so, and names p1's flow as an example only.
    both = "various:various → redacted:various TCP [SYN] (e.g. p1: 123.14.87.235:1361 → redacted:23 TCP [SYN])"
    assert f"×2 (p1–p2) request [undetermined]: {both}" in text
    assert f"×2 (p1–p2) request: {both.replace('[', chr(92) + '[').replace(']', chr(92) + ']')}" in md
    assert f"×2 (p1–p2) · request · {both}</h2>" in html
    assert f'×2 (p1–p2)</a> request: <span class="flow">{both}</span>' in html
    # The body is p1's; its final packet is p1's, not the group's.
    assert "final packet of p1: TCP 123.14.87.235:1361 → redacted:23" in text
    assert "Final packet of p1: <code>TCP 123.14.87.235:1361 → redacted:23</code>" in html
    # A UDP datagram and a TCP ACK PSH are never one group, even when dropped alike.
    assert "×1 (p3) unknown [undetermined]: 78.154.18.99:53009 → redacted:53803 UDP" in text
    assert "×1 (p4) unknown [undetermined]: 17.57.144.4:443 → redacted:63528 TCP [ACK PSH]" in text
    assert "(p3–p4)" not in text + md + html


def test_groups_without_a_conversation_keep_one_protocol_and_role() -> None:
    report = _asus()
    by_id = {p.id: p for p in report.packets}
    for g in group_packets(report.packets):
        recs = [first_record(by_id[i]) for i in g.packets]
        assert len({r.proto for r in recs if r is not None}) == 1, g
        assert len({by_id[i].role for i in g.packets}) == 1, g


def test_json_states_no_address_for_a_group_of_no_conversation() -> None:
    """report.json's entry for the packets of no conversation names no address; each behaviour's
    addresses are its named example's (docs/json-schema.md)."""
    doc = json.loads(render_json(_asus())[0])
    loose = [k for k in doc["conversation_kinds"] if k["members"][0][0] == "-"]
    assert loose and all(k["original"] is None and k["summary"] is None for k in loose)
    for k in loose:
        assert all(set(g) == {"behaviour", "count", "files", "nat"} for g in k["groups"])
    for b in doc["behaviours"]:
        assert b["example"]["packet"] and b["summary"].startswith(b["footer"]["final"].split(" →")[0])


# An address or address:port as a flow text writes it (IPv4, or IPv6 in brackets or bare).
_ADDRESS = re.compile(
    r"\[[0-9a-fA-F:]+\](?::\d+)?"  # [IPv6]:port
    r"|(?<![\w.:])[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,}"  # IPv6
    r"|\d+\.\d+\.\d+\.\d+(?::\d+)?"  # IPv4[:port]
    r"|redacted:\d+"  # a masked address's port
)


def _reports() -> list[tuple[str, Report]]:
    out = []
    for case in sorted(p.parent for p in CORPUS.glob("*/facts.yaml")):
        if (case / "case.yaml").exists():
            out.append((case.name, build_report(load_spec([case]))))
        else:
            files = sorted(p for p in case.iterdir() if p.is_file() and p.name not in NOT_INPUT)
            out.append((case.name, build_report(load_spec(files))))
    return out


@pytest.fixture(scope="module")
def corpus_reports() -> list[tuple[str, Report]]:
    return _reports()


def test_every_group_header_in_the_corpus_is_true_of_every_member(corpus_reports: list[tuple[str, Report]]) -> None:
    """Every address (and address:port) a group's header states outside its example is in every
    member's own flow: a header never names one member's address for the others."""
    wrong = []
    for name, report in corpus_reports:
        by_id = {p.id: p for p in report.packets}
        for g in report.groups:
            head = group_flow_text(by_id, g).split(" (e.g. ")[0]
            flows = [flow_text(r) for r in (first_record(by_id[i]) for i in g.packets) if r is not None]
            for addr in _ADDRESS.findall(head):
                if not all(addr in f for f in flows):
                    wrong.append(f"{name} {g.id} ({', '.join(g.packets)}): header {head!r} states {addr}")
    assert not wrong, "\n".join(wrong)
