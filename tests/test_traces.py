"""Trace sources: xtables-monitor, nft monitor trace, legacy TRACE lines, and mixed sources.

Public example lines come from ../shared/reference/trace-formats.md (sections 3 and 4); the real
captures are the lab samples made on this machine (iptables 1.8.9, nftables 1.0.6).
"""

from __future__ import annotations

from pathlib import Path

from conftest import SAMPLES

from reportgen.explain.correlate import STAGE_ORDER
from reportgen.model import LineRef, VerdictCode
from reportgen.parsers.traces import NftTraceParser, XtablesMonitorParser
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec


def visits(parser, lines):
    out = []
    for n, line in enumerate(lines, start=1):
        done, used = parser.feed(LineRef("t", n), line)
        assert used, line
        out += done
    return out + list(parser.flush())


def test_xtables_monitor_new_layout_public_example():
    lines = [
        "PACKET: 2 1266087f IN=eth0 MACSRC=2:42:ac:16:0:2 MACDST=2:42:ac:16:0:3 MACPROTO=0800 SRC=172.22.0.2 "
        "DST=172.22.0.3 LEN=60 TOS=0x0 TTL=64 ID=4835DF SPORT=57798 DPORT=8080 SYN ",
        " TRACE: 2 1266087f raw:PREROUTING:rule:0x2:CONTINUE  "
        "-4 -t raw -A PREROUTING -p tcp -m tcp --dport 8080 -j TRACE",
        " TRACE: 2 1266087f raw:PREROUTING:return:",
        " TRACE: 2 1266087f raw:PREROUTING:policy:ACCEPT ",
    ]
    [v] = visits(XtablesMonitorParser(), lines)
    rec = v.record()
    assert (rec.mac_src, rec.mac_dst) == ("02:42:ac:16:00:02", "02:42:ac:16:00:03")
    assert (rec.ipid, rec.ip_flags, rec.sport, rec.dport, rec.tcp_flags, rec.proto) == (
        4835, ("DF",), 57798, 8080, ("SYN",), "TCP")
    assert [(r.kind, r.handle, r.verdict) for r in v.rules] == [
        ("rule", "0x2", "continue"), ("return", None, "return"), ("policy", None, "accept")]
    assert v.rules[0].text == "-4 -t raw -A PREROUTING -p tcp -m tcp --dport 8080 -j TRACE"


def test_xtables_monitor_old_layout_man_page_example():
    lines = [
        "TRACE: 2 fc475095 raw:PREROUTING:rule:0x3:CONTINUE -4 -t raw -A PREROUTING -p icmp -j TRACE",
        "PACKET: 0 fc475095 IN=lo LL=0x304 0000000000000000000000000800 SRC=127.0.0.1 DST=127.0.0.1 LEN=84 "
        "TOS=0x0 TTL=64 ID=38349DF",
        "TRACE: 2 fc475095 raw:PREROUTING:return:",
        "TRACE: 2 fc475095 raw:PREROUTING:policy:ACCEPT",
    ]
    [v] = visits(XtablesMonitorParser(), lines)
    rec = v.record()
    assert (v.table, v.chain, rec.in_dev, rec.ipid, rec.src) == ("raw", "PREROUTING", "lo", 38349, "127.0.0.1")
    assert [r.kind for r in v.rules] == ["rule", "return", "policy"]


def test_nft_monitor_trace_upstream_test_output():
    lines = [
        "trace id 0 inet t pre conntrack: ct direction original ct state new ct id 0 ",
        'trace id 0 inet t pre packet: iif "eth0" ether saddr 02:00:00:00:00:02 ether daddr 02:00:00:00:00:01 '
        "ip saddr 10.23.42.2 ip daddr 10.23.42.1 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 0 ip protocol icmp "
        "ip length 84 icmp type echo-request icmp code 0 icmp id 0 icmp sequence 1 ",
        "trace id 0 inet t pre rule icmp type { echo-reply, echo-request } meta mark set 0x00000042 ct state "
        "established,new meta nftrace set 1 (verdict continue)",
        "trace id 0 inet t pre policy accept meta mark 0x00000042 ",
        "trace id 0 inet t input rule meta mark 0x00000042 jump foo (verdict jump foo)",
        "trace id 0 inet t foo rule ct status != dying return (verdict return)",
        "trace id 0 inet t input policy accept meta mark 0x00000042 ",
    ]
    lines = [ln.replace("trace id 0 ", "trace id 00000000 ") for ln in lines]
    got = visits(NftTraceParser(), lines)
    # Two base-chain visits: pre, then input (whose lines come without a packet line of their own).
    assert [(v.table, v.chain) for v in got] == [("t", "pre"), ("t", "input")]
    rec = got[0].record()
    assert (rec.in_dev, rec.src, rec.dst, rec.proto, rec.icmp_type, rec.icmp_seq, rec.ttl) == (
        "eth0", "10.23.42.2", "10.23.42.1", "ICMP", 8, 1, 64)
    assert "conntrack: ct direction original ct state new ct id 0" in rec.extra
    assert [(r.chain, r.kind, r.verdict) for r in got[0].rules] == [("pre", "rule", "continue"),
                                                                   ("pre", "policy", "accept")]
    assert [(r.chain, r.kind, r.verdict) for r in got[1].rules] == [
        ("input", "rule", "jump foo"), ("foo", "rule", "return"), ("input", "policy", "accept")]
    assert got[1].record().src == "10.23.42.2"


def test_legacy_trace_lines_group_per_hook(tmp_path: Path):
    body = ("IN=docker0 OUT=docker0 PHYSIN=veth0594f4b PHYSOUT=veth57a3dec MAC=02:42:c0:a8:00:03:02:42:c0:a8:00:02:"
            "08:00 SRC=192.168.0.2 DST=192.168.0.3 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=47066 DF PROTO=ICMP TYPE=8 "
            "CODE=0 ID=90 SEQ=1")
    lines = [
        "[5121056.357116] TRACE: raw:PREROUTING:policy:3 IN=docker0 OUT= PHYSIN=veth0594f4b MAC=02:42:c0:a8:00:03:"
        "02:42:c0:a8:00:02:08:00 SRC=192.168.0.2 DST=192.168.0.3 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=47066 DF "
        "PROTO=ICMP TYPE=8 CODE=0 ID=90 SEQ=1",
        f"[5121056.357120] TRACE: filter:FORWARD:rule:1 {body}",
        f"[5121056.357121] TRACE: filter:DOCKER-USER:return:1 {body}",
        f"[5121056.357122] TRACE: filter:FORWARD:rule:4 {body}",
        "[5121056.357130] TRACE: filter:DOCKER-USER:return:1 IN=eth9 OUT= SRC=10.0.0.1 DST=10.0.0.2 LEN=40 "
        "TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=TCP SPT=1 DPT=2 WINDOW=0 RES=0x00 SYN URGP=0",
    ]
    (tmp_path / "k.log").write_text("\n".join(lines) + "\n")
    r = build_report(load_spec([tmp_path / "k.log"]))
    p, cut = r.packets
    assert [(h.event.hook.table, h.event.hook.chain) for h in p.hops] == [("raw", "PREROUTING"), ("filter", "FORWARD")]
    fwd = p.hops[1].event
    assert [(x.chain, x.kind, x.handle) for x in fwd.rules] == [
        ("FORWARD", "rule", "1"), ("DOCKER-USER", "return", "1"), ("FORWARD", "rule", "4")]
    # A walk cut before its built-in chain line is still placed when the facts leave one hook: the
    # filter table has INPUT, FORWARD and OUTPUT, and IN= without OUT= is INPUT (or PREROUTING).
    assert not r.unused
    [hop] = cut.hops
    assert (hop.event.hook.hook, hop.event.hook.placed, hop.event.rules[0].chain) == ("INPUT", True, "DOCKER-USER")


def _check_trace_case(name: str, word: str) -> None:
    r = build_report(load_spec([SAMPLES / name]))
    assert r.lines_used == r.lines_total
    assert len(r.conversations) == 1
    syn, synack = r.packets[0], r.packets[1]
    assert (syn.role, synack.role) == ("request", "reply")
    [m] = syn.nat
    assert m.type == "MASQUERADE" and word in m.rule
    assert {(s.table, s.hook): s.reason for s in synack.skipped}[("nat", "PREROUTING")] == "conntrack"
    assert any(h.event.rules for h in syn.hops)


def test_real_xtables_monitor_trace_of_tcp_to_internet():
    _check_trace_case("lab-xtables-trace-tcp-to-internet", "-j MASQUERADE")


def test_real_nft_monitor_trace_of_tcp_to_internet():
    _check_trace_case("lab-nft-trace-tcp-to-internet", "masquerade")


def test_mixed_ebtables_log_and_nft_trace_give_one_hop_sequence_per_packet():
    r = build_report(load_spec([SAMPLES / "lab-mixed-ebtables-nft-trace"]))
    assert len(r.packets) == 2 and [p.role for p in r.packets] == ["request", "reply"]
    for p in r.packets:
        assert {h.event.record.fmt for h in p.hops} == {"ebtlog", "nfttrace"}
        order = [STAGE_ORDER[h.stage] for h in p.hops]
        assert order == sorted(order), [h.event.hook.label for h in p.hops]
        assert p.hops[0].event.record.fmt == "ebtlog"  # bridge PREROUTING comes first in the kernel
        assert p.verdict.code == VerdictCode.DELIVERED_TO_PORT


def _parse(msg: str):
    from reportgen.parsers.nflog import parse_kernel_message

    return parse_kernel_message(msg, LineRef("t", 1), msg, None)


def test_extra_fields_from_the_reference():
    arp = _parse("test: IN=veth0 OUT= MACSRC=86:6c:92:ea:d6:73 MACDST=0e:3b:eb:86:73:76 VPROTO=8100 VID=10 "
                 "MACPROTO=0806 ARP HTYPE=1 PTYPE=0x0800 OPCODE=2 MACSRC=86:6c:92:ea:d6:73 IPSRC=192.168.10.2 "
                 "MACDST=0e:3b:eb:86:73:76 IPDST=192.168.10.1")
    assert (arp.l3, arp.mac_src, arp.mac_dst, arp.ethertype) == ("arp", "86:6c:92:ea:d6:73", "0e:3b:eb:86:73:76", 0x806)
    vyos = _parse("[bri-NAM-TEST-10-C]IN=eth1 OUT=eth2 ARP HTYPE=1 PTYPE=0x0800 OPCODE=1 MACSRC=50:00:00:04:00:00 "
                  "IPSRC=10.11.11.101 MACDST=00:00:00:00:00:00 IPDST=10.11.11.102")
    assert (vyos.prefix, vyos.in_dev, vyos.out_dev, vyos.l3) == ("[bri-NAM-TEST-10-C]", "eth1", "eth2", "arp")
    uid = _parse("DROP: IN= OUT=eth0 SRC=192.0.2.10 DST=198.51.100.5 LEN=60 TOS=0x10 PREC=0x00 TTL=64 ID=54321 DF "
                 "PROTO=TCP SPT=40000 DPT=22 SEQ=123456789 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 "
                 "OPT (020405B40402080A0001E2400000000001030307) UID=1000 GID=1000 MARK=0x2a ")
    assert (uid.tcp_seq, uid.tcp_flags, uid.mark, uid.sport) == (123456789, ("SYN",), "0x2a", 40000)
    assert "UID=1000" in uid.extra and "GID=1000" in uid.extra
    v6 = _parse("v6: IN=eth0 OUT= SRC=2001:0db8:0000:0000:0000:0000:0000:0001 DST=2001:0db8:0000:0000:0000:0000:0000:"
                "0002 LEN=1280 TC=0 HOPLIMIT=64 FLOWLBL=0 FRAG:0 INCOMPLETE ID:1a2b3c4d PROTO=UDP SPT=5000 DPT=5001 "
                "LEN=3008 ")
    assert (v6.src, v6.length, v6.proto, v6.sport, v6.truncated) == ("2001:db8::1", 1280, "UDP", 5000, False)
    eb6 = _parse("br: IN=eth1 OUT= MAC source = 52:54:00:12:34:56 MAC dest = 33:33:00:00:00:01 proto = 0x86dd "
                 "IPv6 SRC=fe80:0000:0000:0000:5054:00ff:fe12:3456 IPv6 DST=ff02:0000:0000:0000:0000:0000:0000:0001, "
                 "IPv6 priority=0x0, Next Header=58")
    assert (eb6.l3, eb6.src, eb6.dst, eb6.proto) == ("ipv6", "fe80::5054:ff:fe12:3456", "ff02::1", "ICMPv6")
    ebarp = _parse("br: IN=eth1 OUT= MAC source = 52:54:00:12:34:56 MAC dest = ff:ff:ff:ff:ff:ff proto = 0x0806 ARP "
                   "HTYPE=1, PTYPE=0x0800, OPCODE=1 ARP MAC SRC=52:54:00:12:34:56 ARP IP SRC=192.0.2.1 ARP MAC "
                   "DST=00:00:00:00:00:00 ARP IP DST=192.0.2.2")
    assert (ebarp.fmt, ebarp.l3, ebarp.ethertype) == ("ebtlog", "arp", 0x806)
    assert ebarp.extra[0].startswith("ARP HTYPE=1")


def test_real_legacy_trace_lines_on_an_iptables_legacy_host():
    r = build_report(load_spec([SAMPLES / "lab-legacy-trace-container-to-internet"]))
    assert r.lines_used == r.lines_total and [p.role for p in r.packets] == ["request", "reply"]
    req, rep = r.packets
    fwd = next(h for h in req.hops if h.event.hook.chain == "FORWARD")
    # One event per chain walk: FORWARD's rules, the user chains it jumped to, back to FORWARD.
    assert [x.chain for x in fwd.event.rules][:2] == ["FORWARD", "DOCKER-USER"]
    assert fwd.event.rules[-1].verdict == "accept" and fwd.event.rules[-1].snapshot_ref is not None
    assert req.nat[0].type == "MASQUERADE" and req.nat[0].rule.endswith("-j MASQUERADE")
    assert {(s.table, s.hook): s.reason for s in rep.skipped}[("nat", "PREROUTING")] == "conntrack"
