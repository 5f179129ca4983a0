"""Legacy TRACE lines that a paste cut off (session 9, t9): public traces end mid-record.

ip_tables.c trace_packet() logs "TRACE: <table>:<chain>:<type>:<num> " and then the packet's fields
(nf_log_syslog.c dump_ipv4_packet, which always prints SRC= and DST=). A line cut before the packet
fields is still the walk it is printed in; a line cut before its chain is no record at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reportgen.pipeline import build_report
from reportgen.render.jsonfold import read_packets
from reportgen.render.jsonout import expand_runs, render_json
from reportgen.sources.case import load_spec

CORPUS = Path(__file__).resolve().parent / "corpus" / "public"

HEAD = (
    "TRACE: mangle:PREROUTING:rule:1 IN=docker0 OUT= PHYSIN=veth0ffaa4d "
    "MAC=02:42:66:f8:0e:f1:02:42:ac:11:00:04:08:00 SRC=172.17.0.4 DST=8.8.8.8 LEN=51 TOS=0x00 "
    "PREC=0x00 TTL=64 ID=36862 DF PROTO=UDP SPT=43398 DPT=53 LEN=31"
)


def _report(files: list[Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    doc, packets = render_json(build_report(load_spec(files)))
    parsed = json.loads(doc)
    return list(read_packets(parsed, packets.splitlines())), parsed


def _hops_of_line(packets: list[dict[str, Any]], line: int) -> list[dict[str, Any]]:
    return [
        h
        for p in packets
        for h in p["hops"]
        if any(r["line"]["line"] == line for r in h.get("rules") or []) or h["line"]["line"] == line
    ]


def test_cut_user_chain_line_stays_in_the_walk_that_jumped_there(tmp_path: Path) -> None:
    """zfl9/ss-tproxy#104: the cut SSTP_PREROUTING line is mangle PREROUTING's walk; before the fix
    it became a hop of its own at "PREROUTING or INPUT" and mangle PREROUTING was said to accept."""
    trace = tmp_path / "trace.log"
    cut = "TRACE: mangle:SSTP_PREROUTING:rule:3 IN=docker0 OUT= PHYSIN=veth0ffaa4d MAC=" + HEAD.split("MAC=")[1][:41]
    trace.write_text(f"{HEAD}\n{cut}\n", encoding="utf-8")
    packets, _ = _report([trace])
    assert len(packets) == 1
    (hop,) = packets[0]["hops"]
    assert (hop["hook"], hop["table"], hop["hook_candidates"]) == ("PREROUTING", "mangle", [])
    assert [(r["chain"], r["handle"]) for r in hop["rules"]] == [("PREROUTING", "1"), ("SSTP_PREROUTING", "3")]
    assert not hop.get("action"), "nothing shows what mangle PREROUTING decided"
    assert packets[0]["verdict"]["code"] == "last-seen"


def test_cut_line_whose_devices_disagree_is_not_joined(tmp_path: Path) -> None:
    """A cut line joins the walk only when every field it still shows agrees: another IN= is
    another packet (or another hook), never the walk's continuation."""
    trace = tmp_path / "trace.log"
    cut = "TRACE: mangle:SSTP_PREROUTING:rule:3 IN=eth0 OUT= MAC=02:42:66:f8:0e:f1:02:42:ac:11:00:04:08:00"
    trace.write_text(f"{HEAD}\n{cut}\n", encoding="utf-8")
    packets, _ = _report([trace])
    (cut_hop,) = _hops_of_line(packets, 2)
    assert cut_hop["in"] == "eth0" and cut_hop["line"]["line"] == 2
    (head_hop,) = _hops_of_line(packets, 1)
    assert [r["chain"] for r in head_hop["rules"]] == ["PREROUTING"]


def test_trace_word_without_its_chain_is_listed_as_a_cut_trace_record() -> None:
    """kubernetes/kubernetes#107965 ends in "... kernel: [448136.197779] TRACE: nat": a TRACE record
    cut before its chain, not "not a netfilter LOG record"."""
    case = CORPUS / "trace-legacy-kube-services-iptables-nft-spaces-in-fields"
    _, parsed = _report([case])
    reasons = {
        (u["file"], n): u["reason"]
        for u in parsed["input"]["unused"]
        for first, last in expand_runs(u["runs"])
        for n in range(first, last + 1)
    }
    assert "legacy TRACE record cut off" in reasons[("messages", 3)]


def test_an_iptables_convention_s_reject_is_in_the_filter_table() -> None:
    """Ysurac/openmptcprouter#1671 "Shorewall:OUTPUT:REJECT:": x_tables' REJECT exists only in the
    filter table (ipt_REJECT.c .table = "filter"), so the chain OUTPUT is filter OUTPUT; before, the
    table was left unknown. A disposition that is not REJECT names no table."""
    from reportgen.parsers.prefix import match_convention

    rej = match_convention("Shorewall:OUTPUT:REJECT:")
    assert rej is not None and (rej.hooks, rej.table) == (("OUTPUT",), "filter")
    acc = match_convention("Shorewall:OUTPUT:ACCEPT:")
    assert acc is not None and acc.table is None


def test_nft_trace_packet_line_cut_after_packet_colon_is_named_as_such() -> None:
    """firewalld/firewalld#527 ends in "trace id cb6bc762 inet firewalld filter_PREROUTING packet:":
    an nft trace packet line cut by the paste, not "not a nfttrace trace event"."""
    _, parsed = _report([CORPUS / "trace-nft-firewalld-calico-trace-chain-cut"])
    reasons = {
        (u["file"], n): u["reason"]
        for u in parsed["input"]["unused"]
        for first, last in expand_runs(u["runs"])
        for n in range(first, last + 1)
    }
    assert reasons[("trace.txt", 5)].startswith("an nft trace packet line cut off after 'packet:'")
