# ruff: noqa: E501  (verbatim log lines stay unwrapped)
"""Session 9's truth gaps: the case summary carries the hedge of what it counts, and facts stand on what
the input proves."""

from __future__ import annotations

import json
from pathlib import Path

from reportgen.pipeline import build_report
from reportgen.render.options import Level, RenderOptions
from reportgen.render.write import write_report
from reportgen.sources.case import load_spec

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
# github:wazuh/wazuh-qa#3422 (public corpus log-ufw-block-forward-ppp0), verbatim.
UFW_BLOCK = (
    "Dec 26 09:05:47 server01 kernel: [126140.629122] [UFW BLOCK] IN=eth0 OUT=ppp0 "
    "MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd SRC=254.253.252.251 DST=191.192.193.194 LEN=52 TOS=0x02 "
    "PREC=0x00 TTL=128 ID=9209 DF PROTO=TCP SPT=17833 DPT=22 WINDOW=8192 RES=0x00 CWR ECE SYN URGP=0\n"
)
FORMATS = ["text", "md", "html", "json"]


def _outputs(tmp_path: Path, case: Path) -> dict[str, str]:
    """Render a case folder in every text format: output file name -> text."""
    out = tmp_path / "out"
    write_report(build_report(load_spec([case])), out, FORMATS, RenderOptions(level=Level.DETAILED))
    return {p.name: p.read_text() for p in (out / case.name).iterdir() if p.is_file()}


def _case(tmp_path: Path, files: dict[str, str]) -> Path:
    case = tmp_path / "case"
    case.mkdir(exist_ok=True)
    for name, text in files.items():
        (case / name).write_text(text)
    return case


def test_a_count_drawn_from_a_prefix_says_so_at_the_top(tmp_path: Path):
    """A [UFW BLOCK] line is a LOG rule's word (xt_LOG.c returns XT_CONTINUE): the packet's verdict
    below says the drop is the prefix's, so the case summary's count must not state it as proven."""
    outs = _outputs(tmp_path, _case(tmp_path, {"kern.log": UFW_BLOCK + UFW_BLOCK.replace("ID=9209", "ID=9210")}))
    hedged = "2 dropped-by-rule (inferred from the log prefix's action word)"
    doc = json.loads(outs["report.json"])
    assert doc["summary"]["sentence"].startswith(f"1 flow, 2 packets; {hedged};"), doc["summary"]
    assert doc["summary"]["outcomes"] == {"dropped-by-rule": 2}
    assert doc["summary"]["inferred"] == {"dropped-by-rule": {"log prefix": 2}}
    assert outs["report.txt"].splitlines()[3].startswith(f"1 flow, 2 packets; {hedged};")
    assert f"**1 flow, 2 packets; {hedged};" in outs["report.md"]
    html_hedged = "2 dropped-by-rule</span> (inferred from the log prefix&#39;s action word)."
    assert html_hedged in outs["report.html"]


def test_a_policy_drop_reached_by_evaluating_the_snapshot_is_hedged_at_every_level(tmp_path: Path):
    """Docker bypasses UFW (samples/lab-public-ufw-docker-published-port): the [UFW BLOCK] packets'
    drop is INPUT's policy, which only the iptables-save snapshot's evaluation reaches. The summary,
    the answer and its assumptions say so, as they already did for a rule the evaluation reaches."""
    outs = _outputs(tmp_path, SAMPLES / "lab-public-ufw-docker-published-port")
    doc = json.loads(outs["report.json"])
    summary = doc["summary"]
    assert (
        "3 dropped-by-policy (inferred from evaluating the ruleset snapshot), 4 forwarded-out, 4 delivered-to-port;"
        in summary["sentence"]
    )
    assert summary["inferred"] == {"dropped-by-policy": {"ruleset snapshot": 3}}
    text = " ".join(outs["report.txt"].split())  # the text report wraps its lines
    answer = "answer: 198.51.100.1:46722 → 198.51.100.10:8081 TCP: 3 SYNs dropped by the policy of iptables filter INPUT (policy DROP of filter INPUT (iptables-save.txt), reached by evaluating the ruleset snapshot); no reply in the trace."
    assert answer in text
    assert (
        f"{answer} prediction: agrees — Prediction and trace agree: 5 hooks in the same order, dropped-by-policy (iptables filter INPUT (IP INPUT)). assumes: the dropped-by-policy verdict comes from evaluating the ruleset snapshot, not from a logged verdict"
        in text
    )


def test_a_rule_reached_by_evaluating_the_snapshot_is_hedged_in_the_answer(tmp_path: Path):
    """samples/lab-tcp-dropped: no line shows the DOCKER-USER DROP rule decide; the answer names the
    rule with how it was found, and the summary counts the drops as inferred."""
    outs = _outputs(tmp_path, SAMPLES / "lab-tcp-dropped")
    doc = json.loads(outs["report.json"])
    assert "4 dropped-by-rule (inferred from evaluating the ruleset snapshot);" in doc["summary"]["sentence"]
    text = " ".join(outs["report.txt"].split())
    assert (
        "4 SYNs dropped in iptables filter DOCKER-USER by rule '-A DOCKER-USER -p tcp -m tcp --dport 81 -j DROP' (iptables-save.txt:46), reached by evaluating the ruleset snapshot; no reply"
        in text
    )


def test_a_traced_drop_is_counted_without_a_hedge(tmp_path: Path):
    """A policy drop the nft trace reports (samples/lab-trap-nft-forward-drop) is proven: no hedge."""
    doc = json.loads(_outputs(tmp_path, SAMPLES / "lab-trap-nft-forward-drop")["report.json"])
    assert "dropped-by-policy" in doc["summary"]["outcomes"]
    assert "inferred" not in doc["summary"] and "inferred" not in doc["summary"]["sentence"]


# One UDP datagram between two unprivileged ports (so no port says who opened), traced in an nft table
# named "nat": only the chain's type makes it a NAT chain (nft(8) CHAINS: "type nat hook ..."), whose
# chains see only a connection's first packet (nf_nat_inet_fn, net/netfilter/nf_nat_core.c).
NFT_UDP = (
    'trace id aa000001 ip {table} postrouting packet: iif "eth1" oif "eth0" ip saddr 10.0.0.2 ip daddr 198.51.100.7 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 4242 ip protocol udp ip length 40 udp sport 40000 udp dport 50000 udp length 20\n'
    "trace id aa000001 ip {table} postrouting policy accept\n"
)
NFT_RULESET = "table ip {table} {{\n\tchain postrouting {{\n\t\ttype {type} hook postrouting priority 100; policy accept;\n\t}}\n}}\n"
OPENER_UNKNOWN = "which side opened the connection is not in the trace"


def _answer(tmp_path: Path, files: dict[str, str]) -> str:
    doc = json.loads(_outputs(tmp_path, _case(tmp_path, files))["report.json"])
    [kind] = doc["conversation_kinds"]
    [member] = kind["members"]
    # The kind's answer with the member's values put back (docs/json-schema.md, conversation_kinds).
    parts = kind["answer"]
    return "".join(p if isinstance(p, str) else str(member[1][p]) for p in parts) if isinstance(parts, list) else parts


def test_an_nft_table_named_nat_is_no_nat_table_when_its_chain_is_a_filter_chain(tmp_path: Path):
    """The snapshot types the chain of table ip nat 'filter': it sees every packet, so its line does
    not show the conversation's opener."""
    answer = _answer(
        tmp_path,
        {"trace.txt": NFT_UDP.format(table="nat"), "nft-ruleset.txt": NFT_RULESET.format(table="nat", type="filter")},
    )
    assert OPENER_UNKNOWN in answer, answer
    assert "is a nat chain" not in answer  # the snapshot shows the type: nothing is unknown


def test_an_nft_chain_of_type_nat_shows_the_opener_whatever_its_table_is_named(tmp_path: Path):
    answer = _answer(
        tmp_path,
        {"trace.txt": NFT_UDP.format(table="masq"), "nft-ruleset.txt": NFT_RULESET.format(table="masq", type="nat")},
    )
    assert OPENER_UNKNOWN not in answer and "1 datagram" in answer, answer


def test_an_nft_table_named_nat_without_a_snapshot_is_said_to_be_unknown(tmp_path: Path):
    answer = _answer(tmp_path, {"trace.txt": NFT_UDP.format(table="nat")})
    assert OPENER_UNKNOWN in answer, answer
    assert (
        "whether nft ip nat postrouting is a nat chain, which only a connection's first packet traverses, is not "
        "known: an nft table's name does not say, the chain's type does (nft(8) CHAINS), and an nft list ruleset "
        "snapshot would show it" in answer
    )


def test_iptables_nat_table_is_the_nat_table(tmp_path: Path):
    """iptables-nft's table named nat is iptables' nat table (iptable_nat.c; xtables-monitor prints its
    rules): its chains see only a connection's first packet, so the datagram opened the connection."""
    trace = (
        "PACKET: 2 0badf00d IN=eth1 OUT=eth0 SRC=10.0.0.2 DST=198.51.100.7 LEN=40 TOS=0x0 TTL=63 ID=4242 SPORT=40000 DPORT=50000 \n"
        " TRACE: 2 0badf00d nat:POSTROUTING:rule:0x5:CONTINUE  -4 -t nat -A POSTROUTING -p udp -j TRACE\n"
        " TRACE: 2 0badf00d nat:POSTROUTING:policy:ACCEPT \n"
    )
    answer = _answer(tmp_path, {"xtables-monitor.txt": trace})
    assert OPENER_UNKNOWN not in answer and "1 datagram" in answer, answer


# Two hosts logging to one syslog file: each host's ebt_log record comes in pieces (ebt_log.c prints
# them with separate printk calls) and the other host's lines come in between.
EBT_INTERLEAVED = """\
Nov 28 05:00:01 alpha kernel: [  100.000001] eb-in IN=veth1 OUT= MAC source = 02:42:ac:11:00:02 MAC dest = 02:42:ac:11:00:03 proto = 0x0800
Nov 28 05:00:01 beta kernel: [  200.000001] eb-in IN=vethb OUT= MAC source = 02:42:ac:11:00:09 MAC dest = 02:42:ac:11:00:08 proto = 0x0800
Nov 28 05:00:01 alpha kernel: [  100.000002]  IP SRC=172.17.0.2 IP DST=172.17.0.3, IP tos=0x00, IP proto=6
Nov 28 05:00:01 beta kernel: [  200.000002]  IP SRC=10.9.9.9 IP DST=10.9.9.8, IP tos=0x00, IP proto=17
Nov 28 05:00:01 alpha kernel: [  100.000002]  SPT=40000 DPT=80
Nov 28 05:00:01 beta kernel: [  200.000002]  SPT=5353 DPT=5353
Nov 28 05:00:01 gamma kernel: [  300.000002]  SPT=5353 DPT=5353
"""


def test_ebt_log_pieces_of_two_interleaved_hosts_join_their_own_hosts_records(tmp_path: Path):
    (tmp_path / "kern.log").write_text(EBT_INTERLEAVED)
    report = build_report(load_spec([tmp_path / "kern.log"]))
    alpha, beta = (p.hops[0].event.record for p in report.packets)
    assert (alpha.ref.line, alpha.src, alpha.dst, alpha.proto, alpha.sport, alpha.dport) == (
        1,
        "172.17.0.2",
        "172.17.0.3",
        "TCP",
        40000,
        80,
    )
    assert (beta.ref.line, beta.src, beta.dst, beta.proto, beta.sport, beta.dport) == (
        2,
        "10.9.9.9",
        "10.9.9.8",
        "UDP",
        5353,
        5353,
    )
    # gamma logged no record: its piece stays unused, saying why.
    [lone] = report.unused
    assert lone.ref.line == 7
    assert lone.reason.startswith("an ebt_log piece whose host logged no ebt_log record open for it"), lone


def test_a_delivery_past_an_input_log_rule_rests_on_the_snapshot_and_says_so(tmp_path: Path):
    """samples/lab-host-to-container: the reply's last line is a LOG rule in filter INPUT, which decides
    nothing (xt_LOG.c); only the snapshot's evaluation says no later rule drops it."""
    outs = _outputs(tmp_path, SAMPLES / "lab-host-to-container")
    doc = json.loads(outs["report.json"])
    assert "1 delivered-local (inferred from evaluating the ruleset snapshot);" in doc["summary"]["sentence"]
    text = " ".join(outs["report.txt"].split())
    assert (
        "evidence: IP INPUT hop at dmesg.log:15, iptables filter INPUT; no later rule drops it, reached by evaluating the ruleset snapshot"
        in text
    )
    assert "assumes: the delivered-local verdict comes from evaluating the ruleset snapshot" in text
