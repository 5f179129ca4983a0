# ruff: noqa: E501  (verbatim log lines stay unwrapped)
"""Truth gaps closed in session 8: each fact stated once, in the place it belongs, and nothing stated
that the input does not prove."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import LAB_MARKS

from reportgen.lab.netns import KernelLog, Lab, log_all_netns, run
from reportgen.parsers.prefix import PrefixMap
from reportgen.pipeline import build_report
from reportgen.render.options import Level, RenderOptions
from reportgen.render.write import write_report
from reportgen.sources.case import load_spec

# github:wazuh/wazuh-qa#3422 (public corpus log-ufw-block-forward-ppp0), verbatim.
UFW_BLOCK = (
    "Dec 26 09:05:47 server01 kernel: [126140.629122] [UFW BLOCK] IN=eth0 OUT=ppp0 "
    "MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd SRC=254.253.252.251 DST=191.192.193.194 LEN=52 TOS=0x02 "
    "PREC=0x00 TTL=128 ID=9209 DF PROTO=TCP SPT=17833 DPT=22 WINDOW=8192 RES=0x00 CWR ECE SYN URGP=0\n"
)


def _outputs(tmp_path: Path, files: dict[str, str], formats: list[str]) -> dict[str, str]:
    """Write the files as a case folder and render it at the detailed level: output file name -> text."""
    case = tmp_path / "case"
    case.mkdir(exist_ok=True)
    for name, text in files.items():
        (case / name).write_text(text)
    out = tmp_path / "out"
    write_report(build_report(load_spec([case])), out, formats, RenderOptions(level=Level.DETAILED))
    return {p.name: p.read_text() for p in (out / "case").iterdir() if p.is_file()}


def test_the_ufw_follows_paragraph_is_printed_once(tmp_path: Path):
    """What ufw's own rules do after its [UFW BLOCK] LOG rule (prefix_conventions.yaml `follows`) is
    what a verdict drawn from that prefix rests on: the verdict states it (with what would settle it),
    and the hop points to the verdict instead of printing the same paragraph again."""
    outs = _outputs(tmp_path, {"kern.log": UFW_BLOCK}, ["text", "md", "html", "json"])
    for name in ("report.txt", "report.md", "report.html", "report.json"):
        assert outs[name].count("from two places") == 1, (name, outs[name].count("from two places"))
    doc = json.loads(outs["report.json"])
    [behaviour] = doc["behaviours"]
    verdict = behaviour["verdict"]["explanation"]
    assert verdict.startswith("Dropped at iptables filter FORWARD: its last line carries the prefix '[UFW BLOCK]'")
    assert "from two places" in verdict and "iptables-save" in verdict
    hop = " ".join(behaviour["hops"][0]["explanation"])
    assert "the packet's lines end here, and its verdict says what follows this LOG rule" in hop, hop


def test_a_ufw_block_the_packet_outlives_keeps_its_paragraph_on_the_hop(tmp_path: Path):
    """When the packet is seen after its [UFW BLOCK] line, no verdict rests on that prefix: the hop
    itself says what ufw's rules do after the LOG rule, once."""
    later = UFW_BLOCK.replace("[126140.629122] [UFW BLOCK]", "[126140.629200] nat-postrouting:")
    outs = _outputs(tmp_path, {"kern.log": UFW_BLOCK + later}, ["json"])
    doc = json.loads(outs["report.json"])
    assert outs["report.json"].count("from two places") == 1
    [behaviour] = doc["behaviours"]
    assert "from two places" in " ".join(behaviour["hops"][0]["explanation"])
    assert "from two places" not in behaviour["verdict"]["explanation"]


# ebt_log.c prints one packet's record in pieces; a journal or syslog keeps a piece that an interrupting
# message broke off as an entry of its own (tests/test_trace_truth.py EBT_PIECES_SYSLOG). Two hosts
# logging to one syslog file interleave such pieces.
EBT_TWO_HOSTS = """\
Nov 28 05:00:01 alpha kernel: [  100.000001] eb-in IN=veth1 OUT= MAC source = 02:42:ac:11:00:02 MAC dest = 02:42:ac:11:00:03 proto = 0x0800
Nov 28 05:00:01 beta kernel: [  100.000002]  IP SRC=10.9.9.9 IP DST=10.9.9.8, IP tos=0x00, IP proto=17
Nov 28 05:00:01 beta kernel: [  100.000002]  SPT=5353 DPT=5353
"""
EBT_SAME_HOST_LATER = """\
Nov 28 05:00:01 alpha kernel: [  100.000001] eb-in IN=veth1 OUT= MAC source = 02:42:ac:11:00:02 MAC dest = 02:42:ac:11:00:03 proto = 0x0800
Nov 28 05:00:09 alpha kernel: [  108.000002]  IP SRC=10.9.9.9 IP DST=10.9.9.8, IP tos=0x00, IP proto=17
"""
# A syslog without the kernel's own stamp: only the wall clock (one-second resolution) tells.
EBT_CLOCK_ONLY = """\
Nov 28 05:00:01 alpha kernel: eb-in IN=veth1 OUT= MAC source = 02:42:ac:11:00:02 MAC dest = 02:42:ac:11:00:03 proto = 0x0800
Nov 28 05:00:02 alpha kernel:  IP SRC=172.17.0.2 IP DST=172.17.0.3, IP tos=0x00, IP proto=6
Nov 28 05:00:02 alpha kernel:  SPT=40000 DPT=80
Nov 28 05:00:01 alpha kernel: eb-in IN=veth1 OUT= MAC source = 02:42:ac:11:00:02 MAC dest = 02:42:ac:11:00:03 proto = 0x0800
Nov 28 05:00:05 alpha kernel:  IP SRC=10.9.9.9 IP DST=10.9.9.8, IP tos=0x00, IP proto=17
"""


def _report(tmp_path: Path, text: str):
    (tmp_path / "kern.log").write_text(text)
    return build_report(load_spec([tmp_path / "kern.log"]))


def test_ebt_log_pieces_of_another_host_are_not_joined(tmp_path: Path):
    report = _report(tmp_path, EBT_TWO_HOSTS)
    [p] = report.packets
    r = p.hops[0].event.record
    assert (r.src, r.dst, r.sport) == (None, None, None), "another host's piece was glued to the record"
    piece, rest = report.unused
    assert piece.reason.startswith("an ebt_log piece whose wrapper names another host than the record"), piece
    assert rest.reason.startswith("an ebt_log piece after a piece that was not joined"), rest


def test_ebt_log_pieces_stamped_apart_are_not_joined(tmp_path: Path):
    report = _report(tmp_path, EBT_SAME_HOST_LATER)
    [p] = report.packets
    assert p.hops[0].event.record.src is None
    [u] = report.unused
    assert u.reason.startswith("an ebt_log piece stamped more than 1 s from the record on the line before")
    # Pieces within a second of the record by the wall clock are joined; four seconds away are not.
    report = _report(tmp_path, EBT_CLOCK_ONLY)
    first, second = (p.hops[0].event.record for p in report.packets)
    assert (first.src, first.dst, first.sport, first.dport) == ("172.17.0.2", "172.17.0.3", 40000, 80)
    assert second.src is None
    [u] = report.unused
    assert u.reason.startswith("an ebt_log piece stamped more than 1 s")


# Calico's MASQUERADE --random-fully ends the nat POSTROUTING walk and no line shows the packet after it;
# the case has no ip addr snapshot (github:projectcalico/calico, tests/corpus/public/.../PROVENANCE.md).
CALICO = Path(__file__).parent / "corpus" / "public" / "trace-xtm-kube-proxy-calico-clusterip-output-k3s"


def test_an_unshown_source_nat_address_is_null_in_json_and_worded_elsewhere(tmp_path: Path):
    """No input shows the address MASQUERADE took: JSON's nat[].after.addr is null (never words in an
    address field), `unknown` says what is unknown and what would settle it, and the other outputs write
    "unknown address" where the address would be."""
    out = tmp_path / "out"
    write_report(
        build_report(load_spec([CALICO])), out, ["json", "text", "md", "html"], RenderOptions(level=Level.DETAILED)
    )
    case = out / CALICO.name
    doc = json.loads((case / "report.json").read_text())
    [masq] = [n for b in doc["behaviours"] for n in b["nat"] if n["type"] == "MASQUERADE" and n["by"] == "rule"]
    assert masq["after"] == {"addr": None, "port": None}
    assert masq["unknown"].startswith("the new source address, the one MASQUERADE takes from vxlan.calico:")
    assert "an ip addr snapshot of the host would" in masq["unknown"]  # what would settle the address
    assert masq["unknown"].endswith("or a line of its reply would show the new source")
    assert doc["schema"] == "reportgen-report/6"
    for name in ("report.txt", "report.md", "report.html"):
        text = (case / name).read_text()
        for mark in ("`", "<code>", "</code>", "│"):  # markup, and the text output's wrapped tree
            text = text.replace(mark, "")
        assert "192.168.1.88:49058 → unknown address" in " ".join(text.split()), name


def _udp(n: int, prefix: str, src: str, dst: str, sport: int, dport: int, out: str = "", mac: str = "") -> str:
    return (
        f"Nov 28 05:00:0{n} host kernel: [ 10{n}.000001] {prefix}IN=eth0 OUT={out} {mac}"
        f"SRC={src} DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID={n} PROTO=UDP SPT={sport} DPT={dport} LEN=40\n"
    )


def test_a_nat_table_read_off_prefix_words_proves_no_first_packet(tmp_path: Path):
    """The nat table sees only a conntrack entry's first packet (nf_nat_inet_fn), so a LOG rule there
    proves the packet opened its entry, but only when the input proves the table: "nat" in a prefix
    ("nat-pre: ") is the rule author's word. Neither datagram of a conversation between two high ports
    is then called a request or a reply; with a prefix map saying "ipv4 nat PREROUTING" the first is."""
    mac = "MAC=00:00:00:00:00:01:00:00:00:00:00:02:08:00 "
    text = _udp(1, "nat-prerouting: ", "192.0.2.7", "198.51.100.9", 40001, 51820, mac=mac) + _udp(
        2, "nat-prerouting: ", "198.51.100.9", "192.0.2.7", 51820, 40001, mac=mac
    )
    (tmp_path / "kern.log").write_text(text)
    report = build_report(load_spec([tmp_path / "kern.log"]))
    first = report.packets[0].hops[0].event.hook
    assert (first.table, first.how) == ("nat", "prefix words")  # the words place it; they prove no first packet
    assert [p.role for p in report.packets] == ["unknown", "unknown"]
    (tmp_path / "map.yaml").write_text('prefixes:\n  "nat-prerouting:": "ipv4 nat PREROUTING"\n')
    mapped = build_report(load_spec([tmp_path / "kern.log"], prefix_map=PrefixMap.load(tmp_path / "map.yaml")))
    assert [p.role for p in mapped.packets] == ["request", "reply"]


@LAB_MARKS[0]
@LAB_MARKS[1]
def test_lab_an_nft_bridge_log_statement_does_not_print_ebt_logs_layout():
    """Which bridge logger prints what, captured: one ping from container1 to container2 across the lab
    bridge, logged at bridge FORWARD by an ebtables --log rule and by an nft bridge table's log
    statement. ebt_log.c's target calls ebt_log_packet() itself ("MAC source = ..."); ebt_log registers
    no nf_logger, and nft_log.c's nf_log_packet() (net/netfilter/nf_log.c) takes the logger registered
    for the bridge family and the log type (loggers[NFPROTO_BRIDGE][NF_LOG_TYPE_LOG]: nf_log_syslog.c's
    bridge logger), which prints nf_log_syslog's "IN= OUT= ... MAC= SRC=" layout."""
    lab = Lab()
    with log_all_netns(lab.tag):
        try:
            lab.build(ipv6=False)
            h, tag = lab.host, lab.tag
            run(["ebtables", "-A", "FORWARD", "-p", "IPv4", "--log", "--log-ip", "--log-prefix", f"{tag}E"], ns=h)
            run(
                [
                    "nft",
                    "add table bridge rgblog; add chain bridge rgblog fw { type filter hook forward priority 5; }; "
                    f'add rule bridge rgblog fw ether type ip icmp type echo-request log prefix "{tag}F "',
                ],
                ns=h,
            )
            klog = KernelLog()
            try:
                c2 = run(["ip", "-4", "-o", "addr", "show", "eth0"], ns=lab.ns("c2")).stdout.split()[3].split("/")[0]
                run(["ping", "-c1", "-W2", c2], ns=lab.ns("c1"), check=False)
                lines = klog.read(lambda msg: msg.startswith(tag))
            finally:
                klog.close()
        finally:
            lab.teardown()
    ebt = [ln for ln in lines if f"] {tag}E " in ln or f"] {tag}E IN=" in ln]
    nft = [ln for ln in lines if f"] {tag}F " in ln]
    assert ebt and nft, lines
    assert all(" MAC source = " in ln for ln in ebt), ebt
    assert all(" MAC source = " not in ln and " MAC=" in ln and " SRC=" in ln for ln in nft), nft


def test_a_postrouting_hop_that_shows_in_does_not_call_in_empty(tmp_path: Path):
    """ip_output() passes the input device to POSTROUTING since Linux 5.5: a forwarded packet's nat
    POSTROUTING line shows IN=eth0, and the hop must not say IN is empty."""
    later = UFW_BLOCK.replace("[126140.629122] [UFW BLOCK]", "[126140.629200] nat-postrouting:")
    doc = json.loads(_outputs(tmp_path, {"kern.log": UFW_BLOCK + later}, ["json"])["report.json"])
    [behaviour] = doc["behaviours"]
    hop = " ".join(behaviour["hops"][1]["explanation"])
    assert "IN is empty" not in hop and "IN=eth0 is the device it came in on" in hop, hop
