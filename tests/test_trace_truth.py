# ruff: noqa: E501  (verbatim quotes of man page, trace and iptables-save lines stay unwrapped)
"""What trace sources prove, and only that: placement of chains, families, hex dumps, legacy TRACE walks.

Sources of the lines (each test names its own):
* the xtables-monitor(8) man page, EXAMPLE OUTPUT (iptables 1.8.9, Debian package iptables 1.8.9-2,
  /usr/share/man/man8/xtables-monitor.8.gz; the same text is on man.linuxreviews.org/man8/xtables-monitor.8);
* nftables tests/shell/testcases/trace/0001simple (expected output, ids replaced by "0" upstream);
* captures made on this machine (kernel 6.18, iptables 1.8.9, nftables 1.0.6) in throw-away network
  namespaces: tests/fixtures/traces/*.txt (the VyOS-shaped one loads the chains of vyos-1x
  data/templates/conntrack/nftables-ct.j2 into a namespace);
* a kube-proxy legacy TRACE walk from the public blog post "Tracing iptables on CentOS" (2022-04-22, a
  translation of vocon-it.com "Tracing iptables on CentOS - cheat sheet", 2020-03-30): nslookup from a
  weave pod to kube-dns, tests/fixtures/traces/legacy-trace-kube-proxy-weave.log.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from reportgen.lab.netns import KernelLog, Lab, log_all_netns, run
from reportgen.model import LineRef, VerdictCode
from reportgen.netfilter import ARP, BRIDGE, FORWARD, INET, INGRESS, INPUT, IPV4, OUTPUT, POSTROUTING, PREROUTING
from reportgen.parsers.prefix import PrefixMap
from reportgen.parsers.traces import (
    NftTraceParser,
    XtablesMonitorParser,
    decode_network_header,
    legacy_trace_prefix,
    raw_bytes,
)
from reportgen.pipeline import build_report
from reportgen.render.markdown import render_markdown
from reportgen.render.text import render_text
from reportgen.sources.case import load_spec

FIX = Path(__file__).parent / "fixtures" / "traces"

# xtables-monitor(8), EXAMPLE OUTPUT, verbatim (the leading numbers are the man page's own).
MAN_PAGE = """\
 1 TRACE: 2 fc475095 raw:PREROUTING:rule:0x3:CONTINUE -4 -t raw -A PREROUTING -p icmp -j TRACE
 2 PACKET: 0 fc475095 IN=lo LL=0x304 0000000000000000000000000800 SRC=127.0.0.1 DST=127.0.0.1 LEN=84 TOS=0x0 TTL=64 ID=38349DF
 3 TRACE: 2 fc475095 raw:PREROUTING:return:
 4 TRACE: 2 fc475095 raw:PREROUTING:policy:ACCEPT
 5 TRACE: 2 fc475095 filter:INPUT:return:
 6 TRACE: 2 fc475095 filter:INPUT:policy:DROP
 7 TRACE: 2 0df9d3d8 raw:PREROUTING:rule:0x3:CONTINUE -4 -t raw -A PREROUTING -p icmp -j TRACE
"""

# nftables tests/shell/testcases/trace/0001simple, expected output (trace ids are "0" there).
NFT_UPSTREAM = [
    "trace id 0 inet t pre conntrack: ct direction original ct state new ct id 0 ",
    'trace id 0 inet t pre packet: iif "eth0" ether saddr $ns2mac ether daddr $ns1mac ip saddr 10.23.42.2 '
    "ip daddr 10.23.42.1 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 0 ip protocol icmp ip length 84 icmp type "
    "echo-request icmp code 0 icmp id 0 icmp sequence 1 ",
    "trace id 0 inet t pre rule icmp type { echo-reply, echo-request } meta mark set 0x00000042 ct state "
    "established,new meta nftrace set 1 (verdict continue)",
    "trace id 0 inet t pre policy accept meta mark 0x00000042 ",
    "trace id 0 inet t input rule meta mark 0x00000042 jump foo (verdict jump foo)",
    "trace id 0 inet t foo rule ct status != dying return (verdict return)",
    "trace id 0 inet t input policy accept meta mark 0x00000042 ",
    "trace id 0 inet t output policy accept ",
]


def _report(tmp_path: Path, name: str, text: str, *extra: tuple[str, str]):
    (tmp_path / name).write_text(text)
    for fname, body in extra:
        (tmp_path / fname).write_text(body)
    return build_report(load_spec([tmp_path / name, *(tmp_path / f for f, _ in extra)]))


def _visits(parser, lines):
    out = []
    for n, line in enumerate(lines, start=1):
        done, _ = parser.feed(LineRef("t", n), line)
        out += done
    return out + list(parser.flush())


# --- xtables-monitor -------------------------------------------------------------------------------


def test_man_page_old_layout_keeps_every_table_walk_of_one_packet_line(tmp_path: Path):
    r = _report(tmp_path, "xtmon.txt", MAN_PAGE)  # pasted with the man page's own line numbers
    p, other = r.packets
    # Lines 3-6: raw PREROUTING, then filter INPUT, both of the one PACKET line (line 2).
    assert [(h.event.hook.table, h.event.hook.hook, h.event.record.ref.line) for h in p.hops] == [
        ("raw", PREROUTING, 2),
        ("filter", INPUT, 2),
    ]
    assert [x.ref.line for x in p.hops[1].event.rules] == [5, 6]
    assert p.verdict.code == VerdictCode.DROPPED_BY_POLICY and "policy DROP of filter INPUT" in p.verdict.explanation
    rec = p.hops[0].event.record
    # LL=0x304 is the loopback's Ethernet-style header: ethertype 0x0800. ICMP is proven by the matched
    # "-p icmp" rule; the ICMP type is printed nowhere, so it stays unknown.
    assert (rec.ethertype, rec.l3, rec.proto, rec.icmp_type, rec.ipid, rec.ip_flags) == (
        0x0800,
        "ipv4",
        "ICMP",
        None,
        38349,
        ("DF",),
    )
    # Line 7: "another packet arriving -- the packet id is different" (the man page); its PACKET line
    # is not shown, so it is a packet of its own without header fields, last seen in raw PREROUTING.
    assert not r.unused
    [h] = other.hops
    assert (h.event.hook.table, h.event.hook.hook, h.event.record.src, h.event.record.ref.line) == (
        "raw",
        PREROUTING,
        None,
        7,
    )
    assert other.verdict.code == VerdictCode.LAST_SEEN


def test_sign_extended_hex_bytes_of_xtables_monitor():
    # xtables-monitor.c: "const char *nh; ... printf("%02x", nh[i])": a byte >= 0x80 is a negative char,
    # sign-extended to int, printed as eight digits.
    assert raw_bytes("45ffffffc0") == b"\x45\xc0"
    assert raw_bytes("45c0") == b"\x45\xc0"  # unsigned char (arm64): two digits per byte
    assert raw_bytes("4") is None and raw_bytes("xyz") is None
    # Real, from tests/fixtures/traces/xtmon-1.8.9-bridge-netdev-arp-inet.txt (bridge family, ICMP echo):
    nh = "45000054fffffffdffffffa240004001ffffffb902ffffffc0000201ffffffc0000202"
    f = decode_network_header(raw_bytes(nh) or b"")
    assert (f["src"], f["dst"], f["proto"], f["ipid"], f["ttl"], f["ip_flags"], f["length"]) == (
        "192.0.2.1",
        "192.0.2.2",
        "ICMP",
        0xFDA2,
        64,
        ("DF",),
        84,
    )
    # The dump ends with the IP header (nf_tables_trace.c dumps the network header up to the transport
    # offset), so the ICMP type is not there: unknown, not defaulted.
    assert "icmp_type" not in f and "sport" not in f


def test_hex_dump_that_reaches_the_transport_header_gives_icmp_and_ports():
    def dump(data: bytes) -> str:  # print bytes the way xtables-monitor.c does on x86
        return "".join(f"{b:02x}" if b < 0x80 else f"ffffff{b:02x}" for b in data)

    ip = bytes.fromhex("4500001c1234000040010000") + bytes([192, 0, 2, 1, 198, 51, 100, 7])
    echo = bytes([8, 0, 0, 0]) + (4660).to_bytes(2, "big") + (3).to_bytes(2, "big")
    f = decode_network_header(raw_bytes(dump(ip + echo)) or b"")
    assert (f["proto"], f["icmp_type"], f["icmp_code"], f["icmp_id"], f["icmp_seq"]) == ("ICMP", 8, 0, 4660, 3)
    reply = bytes([0, 0, 0, 0]) + (4660).to_bytes(2, "big") + (3).to_bytes(2, "big")
    g = decode_network_header(raw_bytes(dump(ip[:12] + ip[16:20] + ip[12:16] + reply)) or b"")
    assert (g["src"], g["dst"], g["icmp_type"], g["icmp_id"]) == ("198.51.100.7", "192.0.2.1", 0, 4660)
    tcp = (40000).to_bytes(2, "big") + (443).to_bytes(2, "big") + bytes(9) + bytes([0x12])  # SYN+ACK
    h = decode_network_header(ip[:9] + bytes([6]) + ip[10:] + tcp)
    assert (h["proto"], h["sport"], h["dport"], h["tcp_flags"]) == ("TCP", 40000, 443, ("ACK", "SYN"))


def test_real_xtables_monitor_capture_families_arp_and_unprinted_fields():
    lines = (FIX / "xtmon-1.8.9-bridge-netdev-arp-inet.txt").read_text().splitlines()
    got = _visits(XtablesMonitorParser(), lines)
    by_fam = {}
    for v in got:
        by_fam.setdefault(v.family, []).append(v)
    arp = by_fam[ARP][0].record()
    assert (arp.l3, arp.src, arp.dst, arp.in_dev) == ("arp", "192.0.2.1", "192.0.2.254", "br0")
    inet = [v.record() for v in by_fam[INET]]
    assert {r.l3 for r in inet} == {"ipv4", "ipv6"}  # NFPROTO=2 / NFPROTO=10 of an inet table
    udp = next(r for r in inet if r.dport == 5353)
    # 1.8.9 prints ports for TCP, UDP, UDP-Lite, SCTP and DCCP alike and no protocol: not "UDP".
    assert (udp.proto, udp.icmp_type, udp.sport) == (None, None, 48376)
    bridged_udp = next(v.record() for v in by_fam[BRIDGE] if v.trace_id == "969ba5bf")
    assert (bridged_udp.proto, bridged_udp.sport) == ("UDP", None)  # NH= says UDP; its ports are not dumped


def test_netdev_chains_are_listed_unused_with_their_reason():
    r = build_report(load_spec([FIX / "xtmon-1.8.9-bridge-netdev-arp-inet.txt"]))
    reasons = {u.reason for u in r.unused}
    assert reasons == {"nft netdev chain rgt4 ing: its hook has no stage in reportgen's hook graph"}
    assert r.lines_total - r.lines_used == sum(u.count for u in r.unused) == 9


# --- nft monitor trace -----------------------------------------------------------------------------


def test_trace_ids_of_any_length_and_no_hook_from_chain_name_words():
    got = _visits(NftTraceParser(), NFT_UPSTREAM)
    assert [(v.table, v.chain) for v in got] == [("t", "pre"), ("t", "input"), ("t", "output")]
    # "pre", "input" and "output" are words, not evidence: without a ruleset snapshot these chains of a
    # user table are not placed; the packet's devices (iif only) leave PREROUTING or INPUT.
    assert all(v.place is not None and v.place.hook is None for v in got)


def test_nft_chains_placed_from_the_trace_devices_or_the_snapshot(tmp_path: Path):
    text = "\n".join(NFT_UPSTREAM) + "\n"
    r = _report(tmp_path, "trace.txt", text)
    hooks = [h.event.hook for p in r.packets for h in p.hops]
    # An inet chain that sees iif only may also be an ingress chain (nft(8): inet ingress since 5.10).
    assert [(h.chain, h.placed, h.candidates) for h in hooks] == [
        ("pre", False, (INGRESS, PREROUTING, INPUT)),
        ("input", False, (INGRESS, PREROUTING, INPUT)),
        ("output", False, (INGRESS, PREROUTING, INPUT)),
    ]
    assert all(h.family == INET for h in hooks)
    ruleset = (
        "table inet t { # handle 3\n\tchain pre { # handle 1\n"
        "\t\ttype filter hook prerouting priority filter; policy accept;\n\t}\n"
        "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n"
        "\tchain output {\n\t\ttype route hook output priority filter; policy accept;\n\t}\n"
        "\tchain foo {\n\t}\n}\n"
    )
    r2 = _report(tmp_path, "trace.txt", text, ("ruleset.nft", ruleset))
    placed = [(h.event.hook.chain, h.event.hook.hook, h.event.hook.placed) for p in r2.packets for h in p.hops]
    assert sorted(placed) == [("input", INPUT, True), ("output", OUTPUT, True), ("pre", PREROUTING, True)]


def test_real_nft_capture_names_the_families():
    lines = (FIX / "nft-1.0.6-netdev-bridge-arp-inet.txt").read_text().splitlines()
    got = _visits(NftTraceParser(), lines)
    fams = {(v.family, v.record().l3) for v in got}
    assert fams == {
        ("netdev", "arp"),
        ("netdev", "ipv4"),
        ("netdev", "ipv6"),
        (BRIDGE, "arp"),
        (BRIDGE, "ipv6"),
        (ARP, "arp"),
        (INET, "ipv4"),
        (INET, "ipv6"),
    }
    echo = next(v.record() for v in got if v.family == INET and v.record().l3 == "ipv4")
    # nft 1.0.6 prints an echo request's code 0 as "net-unreachable" (src/proto.c icmp_code_tbl).
    assert (echo.icmp_type, echo.icmp_code, echo.icmp_id, echo.icmp_seq) == (8, 0, 12232, 1)
    r = build_report(load_spec([FIX / "nft-1.0.6-netdev-bridge-arp-inet.txt"]))
    arp_in = next(h.event.hook for p in r.packets for h in p.hops if h.event.hook.family == ARP)
    # The arp family has input and output hooks only; IN=br0 without OUT= leaves input.
    assert (arp_in.hook, arp_in.placed, arp_in.label) == (INPUT, True, "nft arp rgt3 in1")


def test_vyos_prerouting_and_prerouting_helper_are_one_packet(tmp_path: Path):
    trace = (FIX / "nft-1.0.6-vyos-shaped-prerouting-helper.txt").read_text()
    r = _report(tmp_path, "trace.txt", trace)
    assert r.lines_used == r.lines_total == 22
    assert len(r.packets) == 2  # two pings; the trace id is the same for both (ids are reused)
    for p in r.packets:
        # One packet; each base chain's walk is a hop naming its own chain (and the user chains it jumped to).
        assert [(h.event.hook.table, h.event.hook.chain, h.event.hook.hook) for h in p.hops] == [
            ("vyos_conntrack", "PREROUTING", PREROUTING),
            ("vyos_conntrack", "PREROUTING_HELPER", PREROUTING),
            ("vyos_filter", "VYOS_INPUT_filter", INPUT),
        ]
        assert {x.chain for x in p.hops[1].event.rules} == {"PREROUTING_HELPER", "VYOS_CT_HELPER"}
        assert p.verdict.code == VerdictCode.DELIVERED_LOCAL
        assert "probably dropped" not in p.verdict.explanation
    # Renamed tables: the known-generator table no longer applies; the snapshot places the chains.
    renamed = trace.replace("vyos_conntrack", "ct").replace("vyos_filter", "flt")
    ruleset = (FIX / "nft-1.0.6-vyos-shaped-ruleset.txt").read_text()
    ruleset = ruleset.replace("vyos_conntrack", "ct").replace("vyos_filter", "flt")
    r2 = _report(tmp_path, "trace.txt", renamed, ("ruleset.nft", ruleset))
    assert [[(h.event.hook.table, h.event.hook.hook) for h in p.hops] for p in r2.packets] == [
        [("ct", PREROUTING), ("ct", PREROUTING), ("flt", INPUT)]
    ] * 2
    # Neither: "PREROUTING" is just a name; the hooks stay candidates.
    r3 = _report(tmp_path, "trace.txt", renamed)
    assert {h.event.hook.candidates for p in r3.packets for h in p.hops} == {(PREROUTING, INPUT)}


# --- legacy TRACE ----------------------------------------------------------------------------------


KUBE_NAT = (
    """# Generated by iptables-save v1.8.4 (constructed to match the traced rule numbers)
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-HOSTPORT-MASQ - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-TCOU7JCQXEZGVUNU - [0:0]
:KUBE-SEP-VQ37SWWSIRRGCSAM - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -m mark --mark 0x4000/0x4000 -j MASQUERADE
"""
    + "".join(
        f"-A KUBE-SERVICES -d 10.96.0.{100 + i}/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ\n" for i in range(12)
    )
    + """\
-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU
-A KUBE-SVC-TCOU7JCQXEZGVUNU -m statistic --mode random --probability 0.50000000000 -j KUBE-MARK-MASQ
-A KUBE-SVC-TCOU7JCQXEZGVUNU -j KUBE-SEP-VQ37SWWSIRRGCSAM
-A KUBE-SEP-VQ37SWWSIRRGCSAM -s 10.44.0.47/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-VQ37SWWSIRRGCSAM -p udp -m udp -j DNAT --to-destination 10.44.0.47:53
COMMIT
"""
)


def test_kube_proxy_walk_user_chains_belong_to_the_builtin_chain_and_carry_the_nat_rules(tmp_path: Path):
    log = (FIX / "legacy-trace-kube-proxy-weave.log").read_text()
    r = _report(tmp_path, "kern.log", log, ("iptables-save.txt", KUBE_NAT))
    assert r.lines_used == r.lines_total == 22
    events = {(h.event.hook.table, h.event.hook.hook): h.event for p in r.packets for h in p.hops}
    assert set(events) == {("raw", PREROUTING), ("nat", PREROUTING), ("filter", FORWARD), ("nat", POSTROUTING)}
    pre = events[("nat", PREROUTING)]
    assert [x.chain for x in pre.rules] == [
        "PREROUTING",
        "KUBE-SERVICES",
        "KUBE-MARK-MASQ",
        "KUBE-MARK-MASQ",
        "KUBE-SERVICES",
        "KUBE-SVC-TCOU7JCQXEZGVUNU",
        "KUBE-SEP-VQ37SWWSIRRGCSAM",
    ]
    # The rule number of the TRACE line points at the snapshot's rule: the DNAT and the MASQUERADE are
    # carried with their text and place, for the explainer to state.
    dnat = pre.rules[-1]
    assert dnat.text.endswith("-j DNAT --to-destination 10.44.0.47:53") and dnat.snapshot_ref is not None
    masq = events[("nat", POSTROUTING)].rules[-1]
    assert (masq.chain, masq.handle) == ("KUBE-POSTROUTING", "1") and masq.text.endswith("-j MASQUERADE")
    masq_line = next(n for n, ln in enumerate(KUBE_NAT.splitlines(), 1) if ln.startswith("-A KUBE-POSTROUTING"))
    assert masq.snapshot_ref == LineRef("iptables-save.txt", masq_line)


def test_trace_records_without_the_trace_word_and_user_chains_named_like_hooks(tmp_path: Path):
    log = (FIX / "legacy-trace-kube-proxy-weave.log").read_text().splitlines()
    # A paste that lost "TRACE: " (the kernel's own words) is still a TRACE walk of ip_tables' tables.
    damaged = [ln.replace("TRACE: ", "") for ln in log[:8]]
    assert legacy_trace_prefix("raw:PREROUTING:rule:2 ") and not legacy_trace_prefix("myfw:PREROUTING:rule:2 ")
    # Column-aligned pastes pad the prefix (GKE kube-dns walk in the blog post "Deep dive into Kubernetes
    # Networking: my kube-dns is not working!", 2020-01-26): "TRACE: nat:KUBE-SVC-TCOU7JCQXEZGVUNU:rule:2     IN=cbr0".
    assert legacy_trace_prefix("TRACE: nat:KUBE-SVC-TCOU7JCQXEZGVUNU:rule:2     ").group("num") == "2"
    # A cut paste starting in a user chain whose name holds a hook word: mangle has every hook, and
    # IN= without OUT= leaves PREROUTING or INPUT; "FORWARD" in the name is not evidence.
    cut = log[0].replace("TRACE: raw:PREROUTING:policy:3", "TRACE: mangle:KUBE-FORWARD:rule:1")
    r = _report(tmp_path, "kern.log", "\n".join([*damaged, "", cut]) + "\n")
    assert [u.reason for u in r.unused] == ["blank line"]
    hooks = [h.event.hook for p in r.packets for h in p.hops]
    assert [(h.table, h.hook, h.placed) for h in hooks[:2]] == [("raw", PREROUTING, True), ("nat", PREROUTING, True)]
    assert [x.chain for x in r.packets[0].hops[1].event.rules][:3] == ["PREROUTING", "KUBE-SERVICES", "KUBE-MARK-MASQ"]
    kube_fwd = next(h for h in hooks if h.table == "mangle")
    assert (kube_fwd.placed, kube_fwd.candidates, kube_fwd.chain) == (False, (PREROUTING, INPUT), "KUBE-FORWARD")
    assert "FORWARD" not in kube_fwd.candidates


def test_walk_cut_before_its_builtin_line_is_placed_when_one_hook_remains(tmp_path: Path):
    log = (FIX / "legacy-trace-kube-proxy-weave.log").read_text().splitlines()
    # From the real walk, keep only the POSTROUTING walk's user chain line (KUBE-POSTROUTING): the nat
    # table's hooks with OUT= and no IN= are OUTPUT or POSTROUTING; nat has both, so it stays open.
    r = _report(tmp_path, "kern.log", log[-1] + "\n")
    [h] = [h.event.hook for p in r.packets for h in p.hops]
    assert (h.placed, h.candidates) == (False, (OUTPUT, POSTROUTING))
    # filter with IN= and OUT= (line 10, WEAVE-NPC-EGRESS) can only be FORWARD.
    r = _report(tmp_path, "kern.log", log[9] + "\n")
    [h] = [h.event.hook for p in r.packets for h in p.hops]
    assert (h.hook, h.placed, h.family) == (FORWARD, True, IPV4)


def test_one_packet_line_then_walks_of_two_tables_without_a_policy_line_between():
    # Real lines (tests/fixtures/traces/xtmon-1.8.9-bridge-netdev-arp-inet.txt, lines 1, 2, 5, 6), with
    # the policy line of the first walk left out, as a grep'ed paste does; and a SYN flag: TCP.
    lines = [
        "PACKET: 1 e65966c8 IN=br0 NFPROTO=2 MACSRC=b2:b7:15:a0:b7:e6 MACDST=82:78:40:17:ea:68 MACPROTO=0800 "
        "SRC=192.0.2.1 DST=192.0.2.2 LEN=84 TOS=0x0 TTL=64 ID=64930 DF SPORT=1 DPORT=2 SYN ",
        " TRACE: 1 e65966c8 rgt2:p1:rule:0x2:CONTINUE  ",
        " TRACE: 7 e65966c8 rgt:f1:rule:0x2:CONTINUE  ",
        " TRACE: 7 e65966c8 rgt:f1:policy:ACCEPT ",
    ]
    got = _visits(XtablesMonitorParser(), lines)
    assert [(v.family, v.table, v.ref.line, [r.ref.line for r in v.rules]) for v in got] == [
        (INET, "rgt2", 1, [2]),
        (BRIDGE, "rgt", 1, [3, 4]),
    ]
    assert {v.record().proto for v in got} == {"TCP"}  # only TCP prints flags (xtables-monitor.c)


def test_a_matched_rule_proves_the_protocol_for_every_walk_of_the_packet_line():
    # The real UDP packet line of the capture; its rule line as iptables 1.8.9 prints an iptables-nft
    # rule (the man page's "-4 -t raw -A PREROUTING -p icmp -j TRACE" with -p udp): only a rule whose
    # matches all passed is traced, so the packet is UDP, in this walk and in the next table's.
    lines = [
        "PACKET: 2 969ba5bf IN=br0 MACSRC=b2:b7:15:a0:b7:e6 MACDST=82:78:40:17:ea:68 MACPROTO=0800 SRC=192.0.2.1 "
        "DST=192.0.2.2 LEN=29 TOS=0x0 TTL=64 ID=16829 DF SPORT=48376 DPORT=5353 ",
        " TRACE: 2 969ba5bf raw:PREROUTING:rule:0x3:CONTINUE  -4 -t raw -A PREROUTING -p udp -j TRACE",
        " TRACE: 2 969ba5bf raw:PREROUTING:policy:ACCEPT ",
        " TRACE: 2 969ba5bf filter:INPUT:policy:ACCEPT ",
    ]
    got = _visits(XtablesMonitorParser(), lines)
    assert [(v.table, v.record().proto) for v in got] == [("raw", "UDP"), ("filter", "UDP")]
    assert _visits(XtablesMonitorParser(), lines[:1])[0].record().proto is None


# The ruleset of the namespace the nft capture came from, as nft 1.0.6 lists it (tables made with
# "nft add chain ... '{ type filter hook H [device D] priority 0; }'"; a comment added to show that a
# chain comment before the type line does not hide the hook).
CAPTURE_RULESET = """table bridge rgt {
\tchain f1 {
\t\tcomment "bridge forward"
\t\ttype filter hook forward priority filter; policy accept;
\t\tmeta nftrace set 1
\t}
}
table inet rgt2 {
\tchain p1 {
\t\ttype filter hook prerouting priority filter; policy accept;
\t\tmeta nftrace set 1
\t}
}
table arp rgt3 {
\tchain in1 {
\t\ttype filter hook input priority filter; policy accept;
\t\tmeta nftrace set 1
\t}
}
table netdev rgt4 {
\tchain ing {
\t\ttype filter hook ingress device "va" priority filter; policy accept;
\t\tmeta nftrace set 1
\t}
}
"""


def test_snapshot_places_chains_of_every_family(tmp_path: Path):
    trace = (FIX / "nft-1.0.6-netdev-bridge-arp-inet.txt").read_text()
    r = _report(tmp_path, "trace.txt", trace, ("ruleset.nft", CAPTURE_RULESET))
    placed = {
        (h.event.hook.family, h.event.hook.chain, h.event.hook.hook, h.event.hook.placed)
        for p in r.packets
        for h in p.hops
    }
    assert placed == {(BRIDGE, "f1", FORWARD, True), (INET, "p1", PREROUTING, True), (ARP, "in1", INPUT, True)}
    assert {u.reason for u in r.unused} == {
        "nft netdev chain rgt4 ing: its hook has no stage in reportgen's hook graph"
    }


def test_a_packet_line_without_rule_lines_is_listed_with_its_reason(tmp_path: Path):
    lines = (FIX / "xtmon-1.8.9-bridge-netdev-arp-inet.txt").read_text().splitlines()
    r = _report(tmp_path, "xtmon.txt", "\n".join([lines[0], lines[3]]) + "\n")  # two PACKET lines, grep'ed
    assert [(u.span, u.reason) for u in r.unused] == [
        ("xtmon.txt:1-2", "trace packet line without rule lines: the chain it was seen in is not printed")
    ]


def test_man_page_as_man_renders_it_wrapped_and_quoted(tmp_path: Path):
    # man(1) indents the example, and a narrow terminal wraps the PACKET record before "LEN=".
    lines = ["       xtables-monitor --trace", ""] + ["        " + ln for ln in MAN_PAGE.splitlines()]
    lines[3] = lines[3].replace(" LEN=84", "\n              LEN=84")
    r = _report(tmp_path, "xtmon.txt", "\n".join(lines) + "\n")
    p, _ = r.packets  # the second: line 7's packet, whose PACKET line is not shown
    rec = p.hops[0].event.record
    assert (rec.src, rec.length, rec.ipid, rec.ttl, rec.proto) == ("127.0.0.1", 84, 38349, 64, "ICMP")
    assert [h.event.hook.table for h in p.hops] == ["raw", "filter"] and p.verdict.code in (
        VerdictCode.DROPPED_BY_RULE,
        VerdictCode.DROPPED_BY_POLICY,
    )
    # nft lines quoted with "> " (a mail or forum reply) are read as well.
    quoted = ["> " + ln.replace("trace id 0 ", "trace id 9 ") for ln in NFT_UPSTREAM]
    assert len(_visits(NftTraceParser(), quoted)) == 3


# --- records that are not the kernel's, and records cut off ----------------------------------------

# crowdsecurity/hub#168 (https://github.com/crowdsecurity/hub/pull/168), description, verbatim: a
# Proxmox VE pvefw-logger line without OUT= and a kernel LOG line the stored copy ends at "T".
HUB168 = (
    Path(__file__).parent / "corpus" / "public" / "log-pvefw-policy-drop-no-out-cut-hub168" / "syslog"
).read_text()


def _hop_text(report, line: int) -> str:
    hops = [h for p in report.packets for h in p.hops if h.event.record.ref.line == line]
    assert len(hops) == 1, [p.id for p in report.packets]
    return " ".join(hops[0].explanation)


def test_pvefw_logger_line_without_out_is_a_pve_record_and_policy_drop_is_said_for_what_it_is(tmp_path: Path):
    from reportgen.parsers.nflog import parse_kernel_message
    from reportgen.sources.framing import strip_wrapper

    line = HUB168.splitlines()[1]
    rec = parse_kernel_message(strip_wrapper(line).msg, LineRef("syslog", 2), line, None)
    assert rec is not None and rec.logger == "pvefw-logger"
    assert (rec.in_dev, rec.out_dev, rec.src, rec.dport, rec.tcp_flags) == (
        "enp1s0f0",
        "",
        "10.11.12.13",
        8123,
        ("SYN",),
    )
    assert not rec.truncated  # pvefw-logger's TCP part ends with the flags: no RES=/URGP= is not a cut
    report = _report(tmp_path, "syslog", HUB168)
    said = _hop_text(report, 2)
    assert "the missing OUT= means no such device" in said
    assert "'policy DROP' is the NFLOG rule pve-firewall puts right before the last rule of PVEFW-HOST-IN" in said
    assert "not the built-in chain's iptables policy" in said and "does not say which rule" in said
    (packet,) = [p for p in report.packets if p.hops[0].event.record.ref.line == 2]
    assert packet.verdict.code is VerdictCode.DROPPED_BY_RULE
    assert (packet.hops[0].event.hook.hook, packet.hops[0].event.hook.chain) == (INPUT, "PVEFW-HOST-IN")


def test_a_record_cut_mid_field_says_so_and_uses_nothing_after_the_cut(tmp_path: Path):
    report = _report(tmp_path, "syslog", HUB168)
    (rec,) = [h.event.record for p in report.packets for h in p.hops if h.event.record.ref.line == 3]
    assert rec.truncated and rec.missing == ("TTL", "ID", "PROTO")
    assert rec.ttl is None and rec.proto is None and "T" not in rec.extra
    said = _hop_text(report, 3)
    assert "The record is cut off after 'T': TTL, ID, PROTO are missing" in said
    assert "the protocol, the ports, the TCP flags, the IP ID, the TTL are unknown" in said


def test_a_cut_value_is_not_used_but_a_complete_one_before_a_space_is():
    from reportgen.parsers.nflog import parse_kernel_message

    head = "Firewall: IN=em1 OUT= MAC=24:6e:96:82:7c:28:a0:93:51:b7:55:ef:08:00 SRC=10.11.12.13 DST=14.15.16.17 LEN=40 TOS=0x00 PREC=0x00 TTL=6"
    cut = parse_kernel_message(head, LineRef("k", 1), head, None)
    assert cut is not None and cut.ttl is None and cut.missing == ("TTL", "ID", "PROTO")
    spaced = parse_kernel_message(head + " ", LineRef("k", 1), head + " ", None)
    assert spaced is not None and spaced.ttl == 6 and spaced.missing == ("ID", "PROTO")
    # A line a poster edited (fields left out before the last one) is not called cut.
    edited = "x: IN= OUT=ens3 SRC=192.0.2.1 DST=194.146.251.101 PROTO=UDP DPT=123"
    rec = parse_kernel_message(edited, LineRef("k", 1), edited, None)
    assert rec is not None and not rec.truncated and rec.dport == 123


def test_a_cut_record_is_not_folded_under_a_whole_one_in_the_documents(tmp_path: Path):
    """The documents tell one conversation per behaviour and list the rest as "behave like" rows.
    A conversation whose record is cut off must not be one of those rows: its note (what is missing,
    what is therefore unknown) would be said nowhere in the text, Markdown or HTML."""
    head = "[  100.000001] FWD: IN=eth0 OUT=eth1 SRC=10.0.0.1 DST=10.0.0.{} LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID={} DF "
    whole = head.format(2, 1) + "PROTO=TCP SPT=1 DPT=2 WINDOW=1 RES=0x00 SYN URGP=0 "
    cut = head.format(3, 2) + "PROTO=TCP SPT=5 DPT=6"
    report = _report(tmp_path, "kern.log", f"{whole}\n{cut}\n")
    for doc in (render_text(report), render_markdown(report)):
        assert "The record is cut off after 'DPT=6'" in doc


def test_a_udp_record_cut_in_its_port_is_cut_though_the_ip_header_printed_len():
    """UDP's part ends "SPT= DPT= LEN=" and the IP header printed a LEN= too: that one must not stand
    for the UDP LEN=, or a record cut mid-port ("DPT=5" of "DPT=53") is read as port 5."""
    from reportgen.parsers.nflog import parse_kernel_message

    head = "FW: IN=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=UDP SPT=1000"
    cut = parse_kernel_message(head + " DPT=5", LineRef("k", 1), head + " DPT=5", None)
    assert cut is not None and cut.dport is None and cut.missing == ("DPT", "LEN")
    whole = parse_kernel_message(head + " DPT=53 LEN=40", LineRef("k", 1), head + " DPT=53 LEN=40", None)
    assert whole is not None and whole.dport == 53 and whole.missing == ()


def test_an_icmp_echo_record_cut_in_its_echo_id_is_cut():
    """The kernel prints "ID=%u SEQ=%u" after an echo's TYPE= CODE= (nf_log_syslog.c): a record cut
    there ("ID=128" of "ID=12847", no trailing space) does not give echo id 128, and its note does
    not call the IP ID (read whole) unknown."""
    from reportgen.parsers.nflog import cut_note, parse_kernel_message

    head = (
        "FW: IN=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=7 DF PROTO=ICMP TYPE=8 CODE=0"
    )
    cut = parse_kernel_message(head + " ID=128", LineRef("k", 1), head + " ID=128", None)
    assert cut is not None and cut.icmp_id is None and cut.ipid == 7 and cut.missing == ("ID", "SEQ")
    assert "the IP ID" not in cut_note(cut) and "the ICMP echo id" in cut_note(cut)
    whole = head + " ID=12847 SEQ=1"
    rec = parse_kernel_message(whole, LineRef("k", 1), whole, None)
    assert rec is not None and rec.icmp_id == 12847 and rec.missing == ()


def _input_hop(tmp_path: Path, dst: str, *extra: tuple[str, str]) -> str:
    tmp_path.mkdir(exist_ok=True)
    line = (
        f"[  100.000001] r1 IPT:filter:INPUT IN=docker0 OUT= MAC=ff:ff:ff:ff:ff:ff:02:42:ac:11:00:02:08:00 "
        f"SRC=172.17.0.2 DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=UDP SPT=68 DPT=67 LEN=40 \n"
    )
    return _hop_text(_report(tmp_path, "dmesg.log", line, *extra), 1)


def test_a_broadcast_delivered_at_input_is_not_called_a_local_address(tmp_path: Path):
    # The kernel delivers a subnet's broadcast address and 255.255.255.255 at INPUT as RTN_BROADCAST,
    # not RTN_LOCAL (fib_add_ifaddr(), net/ipv4/fib_frontend.c; ip_route_input_slow(), route.c).
    ip_addr = (Path(__file__).parents[1] / "samples" / "lab-host-to-container" / "ip-addr.txt").read_text()
    text = _input_hop(tmp_path, "172.17.255.255", ("ip-addr.txt", ip_addr))
    assert "172.17.255.255 is the broadcast address of 172.17.0.0/16 on docker0" in text
    assert "a local address" not in text
    assert "172.17.0.1 is a local address" in _input_hop(tmp_path / "own", "172.17.0.1", ("ip-addr.txt", ip_addr))
    assert "limited broadcast" in _input_hop(tmp_path / "lim", "255.255.255.255")
    # No snapshot of the host's addresses or routes: which of the two it was is unknown, and said so.
    text = _input_hop(tmp_path / "none", "10.0.0.255")
    assert "10.0.0.255 is a local or a broadcast address of the host (an ip addr snapshot would say which)" in text


# --- which tool wrote a log line ----------------------------------------------------------------------


def _hop_labels(report) -> dict[int, tuple[str, str | None]]:
    return {h.event.record.ref.line: (h.event.hook.label, h.event.hook.tool) for p in report.packets for h in p.hops}


def test_a_kernel_log_line_names_the_family_not_a_tool_it_cannot_prove(tmp_path: Path):
    # A LOG line is the same text whether iptables' LOG (xt_LOG.c) or nft's log (nft_log.c) wrote it:
    # both go through nf_log_syslog.c. firewalld's STATE_INVALID_DROP: is written by either backend
    # (public corpus log-firewalld-state-invalid-drop-forward-br0, firewalld#1061).
    line = (
        "Jul  5 09:02:31 expresso kernel: STATE_INVALID_DROP: IN=br0 OUT=br0 MAC=00:00:00:00:00:01:00:00:00:00:00:02:08:00 "
        "SRC=10.50.0.2 DST=192.168.1.120 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=0 DF PROTO=TCP SPT=8554 DPT=51066 "
        "WINDOW=28960 RES=0x00 ACK SYN URGP=0\n"
    )
    report = _report(tmp_path, "messages", line)
    assert _hop_labels(report) == {1: ("IPv4 ? FORWARD", None)}
    text = render_text(report)
    assert "iptables ?" not in text and "Dropped at IPv4 ? FORWARD" in text
    assert "does not tell iptables from nftables" in _hop_text(report, 1)
    # The same line next to an nft ruleset of firewalld's table: the nftables backend, table inet firewalld.
    nft = "table inet firewalld {\n\tchain filter_FORWARD {\n\t\ttype filter hook forward priority filter + 10; policy accept;\n\t}\n}\n"
    (tmp_path / "messages").write_text(line)
    (tmp_path / "nft-ruleset.txt").write_text(nft)
    spec = load_spec([tmp_path / "messages", tmp_path / "nft-ruleset.txt"])
    report = build_report(spec)
    assert _hop_labels(report) == {1: ("nft inet firewalld FORWARD", "nft inet")}
    assert "does not tell iptables from nftables" not in _hop_text(report, 1)


def test_conventions_and_layouts_that_prove_the_tool(tmp_path: Path):
    lines = [
        # VyOS 1.4+ bridge firewall: nft table bridge vyos_filter (vyos-1x test_firewall.py).
        "Dec 05 14:42:22 kernel: [bri-FWD-filter-default-D]IN=eth2 OUT=eth1 MAC=33:33:00:00:00:16:50:00:00:06:00:00:86:dd "
        "SRC=0000:0000:0000:0000:0000:0000:0000:0001 DST=ff02:0000:0000:0000:0000:0000:0000:0016 LEN=96 TC=0 HOPLIMIT=1 "
        "FLOWLBL=0 PROTO=ICMPv6 TYPE=143 CODE=0",
        # ufw on IPv6: ip6tables (ufw's backend_iptables.py drives ip6tables-restore for ufw6 chains).
        "Dec 05 14:42:23 kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:00:00:00:00:01:00:00:00:00:00:02:86:dd "
        "SRC=2001:0db8:0000:0000:0000:0000:0000:0001 DST=2001:0db8:0000:0000:0000:0000:0000:0002 LEN=80 TC=0 HOPLIMIT=64 "
        "FLOWLBL=0 PROTO=TCP SPT=40000 DPT=22 WINDOW=64800 RES=0x00 SYN URGP=0",
        # OpenWrt fw4: table inet fw4.
        "Dec 05 14:42:24 kernel: reject wan in: IN=wan OUT= MAC=00:00:00:00:00:01:00:00:00:00:00:02:08:00 SRC=192.0.2.7 "
        "DST=198.51.100.1 LEN=60 TOS=0x00 PREC=0x00 TTL=50 ID=1 DF PROTO=TCP SPT=40001 DPT=23 WINDOW=64240 RES=0x00 SYN URGP=0",
    ]
    labels = _hop_labels(_report(tmp_path, "kern.log", "\n".join(lines) + "\n"))
    assert labels[1] == ("nft bridge vyos_filter FORWARD", "nft bridge")
    assert labels[2][1] == "ip6tables" and labels[2][0].startswith("ip6tables filter INPUT")
    assert labels[3] == ("nft inet fw4 INPUT", "nft inet")


def test_ebt_log_layout_names_ebtables(tmp_path: Path):
    """Only ebt_log.c's own target prints "MAC source = ..." (ebt_log_packet()); ebt_log registers no
    nf_logger, and an nft bridge table's log statement goes through nf_log_packet(), which takes the
    bridge family's registered logger (net/netfilter/nf_log.c; nf_log_syslog.c's, whose layout is
    "MAC= SRC="): the line names ebtables, and the hop says why (tests/test_truth8.py captures both)."""
    line = "Dec 05 14:42:25 kernel: x IN=veth1 OUT= MAC source = 02:42:ac:11:00:02 MAC dest = 02:42:ac:11:00:03 proto = 0x0800\n"
    report = _report(tmp_path, "kern.log", line)
    label, tool = _hop_labels(report)[1]
    assert tool == "ebtables" and label.startswith("ebtables"), label
    text = _hop_text(report, 1)
    assert "only ebt_log's target prints it" in text and "nf_log_packet() (net/netfilter/nf_log.c)" in text, text


def test_an_ipv6_destination_taken_in_at_input_is_not_called_a_broadcast_address(tmp_path: Path):
    # shairport-sync#1173 (public corpus log-ufw6-block-udp-airplay-quoted): IPv6 has no broadcast
    # addresses (RFC 4291 section 2), so a unicast destination delivered at INPUT is the host's.
    line = (
        "Mar 28 17:52:13 pngnsd kernel: [352350.459085] [UFW BLOCK] IN=eno1 OUT= MAC=4c:72:b9:21:d8:09:a0:fb:c5:40:53:3d:86:dd "
        "SRC=2600:1700:2ec2:4440:91aa:88a7:934f:128d DST=2600:1700:2ec2:4440:38ae:c076:e602:5c35 LEN=1181 TC=0 HOPLIMIT=64 "
        "FLOWLBL=746621 PROTO=UDP SPT=63479 DPT=6003 LEN=1141 \n"
    )
    text = _hop_text(_report(tmp_path, "ufw.log", line), 1)
    assert "a local or a broadcast address" not in text
    assert "is an address of the host (IPv6 has no broadcast addresses)" in text


@pytest.mark.lab
def test_lab_iptables_legacy_iptables_nft_and_nft_log_print_the_same_line():
    """The claim behind 'the line does not tell iptables from nftables', captured: one ping to the
    lab host, logged at INPUT by an iptables-legacy LOG rule (xt_LOG), an iptables-nft LOG rule and an
    nft log statement (nft_log.c). After the prefix the three kernel lines are the same text, and
    reportgen names no tool for any of them."""
    lab = Lab()
    with log_all_netns(lab.tag):
        try:
            lab.build(ipv6=False)
            h, tag = lab.host, lab.tag
            rule = ["-p", "icmp", "-j", "LOG", "--log-prefix"]
            run(["iptables-legacy", "-I", "INPUT", *rule, f"{tag}L: "], ns=h)
            run(["iptables-nft", "-I", "INPUT", *rule, f"{tag}N: "], ns=h)
            run(
                [
                    "nft",
                    "add table ip rgtool; add chain ip rgtool in { type filter hook input priority 5; }; "
                    f'add rule ip rgtool in icmp type echo-request log prefix "{tag}F: "',
                ],
                ns=h,
            )
            klog = KernelLog()
            try:
                run(["ping", "-c1", "-W2", "172.17.0.1"], ns=lab.ns("c1"))
                lines = klog.read(lambda msg: msg.startswith(tag) and "TYPE=8 " in msg)
            finally:
                klog.close()
        finally:
            lab.teardown()
    bodies = {ln.split("] ", 1)[1][len(tag) : len(tag) + 1]: ln.split(": ", 1)[1] for ln in lines}
    assert set(bodies) == {"L", "N", "F"}, lines
    assert bodies["L"] == bodies["N"] == bodies["F"], bodies
    log = "\n".join(lines) + "\n"
    assert "PHYSIN=" in log  # br_netfilter ran the IP INPUT hook for the bridged frame
    spec_dir = Path(tempfile.mkdtemp(prefix="rgtool"))
    try:
        (spec_dir / "dmesg.log").write_text(log)
        report = build_report(load_spec([spec_dir / "dmesg.log"]))
    finally:
        shutil.rmtree(spec_dir)
    tools = {h.event.hook.tool for p in report.packets for h in p.hops}
    assert tools == {None}, tools


# Captured on this machine (kernel 6.18, nftables 1.0.6) in a lab namespace: nft `log ... flags all`
# at input and output of the lab host for a TCP connection refused with a RST (macdecode prints
# MACSRC/MACDST/MACPROTO, tcpseq SEQ/ACK, tcpopt OPT; nf_log_syslog.c dump_mac_header/dump_tcp_header).
FLAGS_ALL = (
    "[30058.322311] rfdin: IN=docker0 OUT= PHYSIN=vethrfdc1 MACSRC=02:42:ac:11:00:02 MACDST=02:42:ff:e7:b5:d2 "
    "MACPROTO=0800 SRC=172.17.0.2 DST=172.17.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=42866 DF PROTO=TCP SPT=33198 "
    "DPT=9 SEQ=232596770 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 OPT (020405B40402080ACD54A15F000000000103030A) \n"
    "[30058.322339] rfdout: IN= OUT=docker0 SRC=172.17.0.1 DST=172.17.0.2 LEN=40 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF "
    "PROTO=TCP SPT=9 DPT=33198 SEQ=0 ACK=232596771 WINDOW=0 RES=0x00 ACK RST URGP=0 \n"
)


def test_nft_log_flags_all_and_a_last_line_that_may_be_postrouting(tmp_path: Path):
    report = _report(tmp_path, "dmesg.log", FLAGS_ALL)
    hops = {h.event.record.ref.line: h for p in report.packets for h in p.hops}
    assert (hops[1].event.record.mac_src, hops[1].event.record.mac_dst) == ("02:42:ac:11:00:02", "02:42:ff:e7:b5:d2")
    assert {h.event.hook.tool for h in hops.values()} == {None}
    rst = next(p for p in report.packets if p.hops[0].event.record.ref.line == 2)
    assert rst.hops[0].event.hook.candidates == ("OUTPUT", "POSTROUTING")
    # OUT= only: OUTPUT or POSTROUTING. Were it POSTROUTING, the packet was leaving: "no POSTROUTING
    # line shows it leave" would be false.
    assert "no POSTROUTING line shows it leave" not in rst.verdict.explanation
    assert "If the line is from POSTROUTING the packet was leaving by OUT=docker0" in rst.verdict.explanation


def test_a_bridged_frame_last_seen_at_bridge_forward_is_not_said_to_be_routed(tmp_path: Path):
    # VyOS documentation (public corpus log-vyos-bridge-arp-continue-default-drop): the bridge picks
    # the port (br_forward.c), no routing decision is made for a bridged frame.
    line = (
        "Dec 05 14:37:47 kernel: [bri-NAM-TEST-10-C]IN=eth1 OUT=eth2 ARP HTYPE=1 PTYPE=0x0800 OPCODE=1 "
        "MACSRC=50:00:00:04:00:00 IPSRC=10.11.11.101 MACDST=00:00:00:00:00:00 IPDST=10.11.11.102\n"
    )
    [p] = _report(tmp_path, "show-log.txt", line).packets
    assert "Routing chose" not in p.verdict.explanation
    assert "The bridge chose OUT=eth2, but no bridge POSTROUTING line shows it leave" in p.verdict.explanation


def test_a_log_line_pasted_among_nft_trace_output_is_read_as_a_kernel_record() -> None:
    """A kernel LOG line in a file of nft monitor trace output (a journal holding both,
    tests/corpus/public/trace-nft-nixos-fw-tailscale0-tun-cut, NixOS/nixpkgs#490273) is read as the
    nf_log_syslog.c record it is: its own packet, not an unused line, and not joined to the traced SYN."""
    case = Path(__file__).parent / "corpus" / "public" / "trace-nft-nixos-fw-tailscale0-tun-cut"
    report = build_report(load_spec([case / "journal.txt"]))
    assert all(u.ref.line != 1 for u in report.unused), [(u.ref, u.reason) for u in report.unused]
    by_line = {h.event.record.ref.line: p for p in report.packets for h in p.hops}
    log = by_line[1].hops[0].event.record
    assert (log.in_dev, log.sport, log.dport, log.ipid) == ("tailscale0", 50896, 443, 29515)
    assert by_line[1] is not by_line[5]


def test_a_hook_missing_from_a_filtered_paste_is_not_explained_by_rules_alone() -> None:
    """The poster of tests/corpus/public/trace-legacy-dmesg-T-uid-ping-reply filtered raw-table lines
    out of their second listing (egrep -v 'security|raw'): a skipped hook the input lacks a line for
    must name that the line may be missing from the paste, not only rule-based causes."""
    case = Path(__file__).parent / "corpus" / "public" / "trace-legacy-dmesg-T-uid-ping-reply"
    report = build_report(load_spec([case / "dmesg.txt"]))
    skips = [s for p in report.packets for s in p.skipped if s.reason == "not-logged"]
    assert skips and all("not in the input" in s.explanation for s in skips), [s.explanation for s in skips]


# tests/corpus/public/log-ufw-block-udp-igmp/kern.log line 1 (wazuh/wazuh-ruleset#649), verbatim.
UFW_BLOCK = (
    "Nov 18 13:39:49 UFW kernel: [10051.313745] [UFW BLOCK] IN=eth0 OUT= MAC=c2:56:27:73:33:cf:c4:f0:81:b0:93:24:08:00 "
    "SRC=205.205.205.205 DST=192.168.8.100 LEN=44 TOS=0x00 PREC=0x00 TTL=128 ID=43131 PROTO=UDP SPT=40952 DPT=23 LEN=194\n"
)


def test_ufw_block_says_what_ufws_own_rules_put_after_the_log_rule(tmp_path: Path):
    """ufw 0.36.2's filter table (reportgen/lab/data/ufw-0.36.2-filter.rules) prints [UFW BLOCK] from
    ufw-after-logging-input/-forward, after which only ufw-reject-*, ufw-track-* and the built-in
    chain's policy DROP remain, and from ufw-logging-deny, which INVALID/not-local DROP rules follow:
    the LOG rule is not "right before the rule it names", and without a snapshot the line cannot tell
    a policy from a rule, or a drop from a reject."""
    report = _report(tmp_path, "kern.log", UFW_BLOCK)
    [p] = report.packets
    assert p.verdict.code is VerdictCode.DROPPED_BY_RULE  # the prefix's word, as documented
    text = p.verdict.explanation
    assert "right before the rule it names" not in text, text
    assert "ufw-after-logging-input" in text and "policy DROP" in text and "ufw-logging-deny" in text, text
    assert "iptables-save" in text, text  # what would settle it
    hop = _hop_text(report, 1)
    # Said once: the hop points to the verdict that states it (tests/test_truth8.py).
    assert "right before a DROP rule" not in hop and "ufw-reject-*" not in hop, hop
    assert "its verdict says what follows this LOG rule" in hop, hop


def test_ufw_limit_block_is_right_before_its_reject_and_audit_says_no_outcome(tmp_path: Path):
    """ufw-user-limit is LOG "[UFW LIMIT BLOCK] " then -j REJECT (ufw-0.36.2-filter.rules): there the
    prefix does sit right before the rule it names; [UFW AUDIT] is ufw-before-logging-*'s, before any
    of ufw's verdicts."""
    limit = UFW_BLOCK.replace("[UFW BLOCK]", "[UFW LIMIT BLOCK]")
    audit = UFW_BLOCK.replace("[UFW BLOCK]", "[UFW AUDIT]").replace("ID=43131", "ID=43132")
    report = _report(tmp_path, "kern.log", limit + audit)
    by_line = {p.hops[0].event.record.ref.line: p for p in report.packets}
    assert by_line[1].verdict.code is VerdictCode.REJECTED
    assert "ufw-user-limit, whose next and last rule is -j REJECT" in by_line[1].verdict.explanation
    assert by_line[2].verdict.code is not VerdictCode.DROPPED_BY_RULE
    assert "before any of its allow or deny rules" in _hop_text(report, 2)


# A UDP conversation whose first packet the trace shows from a port that is not well known, with no NEW
# state, nat table or snapshot behind it: conntrack makes the first datagram it sees the original
# direction (nf_conntrack_proto_udp.c has no "new" check), and the trace may have started after that one.
def _udp_line(n: int, src: str, dst: str, sport: int, dport: int, prefix: str = "fwd: ") -> str:
    return (
        f"Nov 28 05:00:0{n} host kernel: [ 10{n}.000001] {prefix}IN=eth0 OUT=eth1 MAC=00:00:00:00:00:01:00:00:00:00:00:02:08:00 "
        f"SRC={src} DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID={n} PROTO=UDP SPT={sport} DPT={dport} LEN=40\n"
    )


def test_a_udp_conversations_first_packet_is_not_called_a_request_without_evidence(tmp_path: Path):
    text = _udp_line(1, "192.0.2.7", "198.51.100.9", 40001, 51820) + _udp_line(
        2, "198.51.100.9", "192.0.2.7", 51820, 40001
    )
    report = _report(tmp_path, "kern.log", text)
    assert [p.role for p in report.packets] == ["unknown", "unknown"]


def test_a_udp_packet_to_a_well_known_port_or_through_nat_is_a_request(tmp_path: Path):
    # A datagram from an ephemeral port to port 53: a client's to a service.
    dns = _udp_line(1, "192.0.2.7", "198.51.100.9", 40001, 53) + _udp_line(2, "198.51.100.9", "192.0.2.7", 53, 40001)
    assert [p.role for p in _report(tmp_path, "kern.log", dns).packets] == ["request", "reply"]
    # A datagram to a group address: no host sends from one, so it cannot be an entry's reply direction.
    ssdp = _udp_line(1, "192.0.2.7", "239.255.255.250", 40001, 1900)
    assert [p.role for p in _report(tmp_path, "kern.log", ssdp).packets] == ["request"]
    # A datagram from a well-known port to an ephemeral one is no request (an SSDP answer, say).
    answer = _udp_line(1, "192.0.2.1", "192.0.2.12", 1900, 41797)
    assert [p.role for p in _report(tmp_path, "kern.log", answer).packets] == ["unknown"]
    # The nat table sees only a conntrack entry's first packet (nf_nat_inet_fn): a LOG rule there proves it.
    nat = _udp_line(1, "192.0.2.7", "198.51.100.9", 40001, 51820, prefix="nat-pre: ").replace(" OUT=eth1", " OUT=")
    (tmp_path / "nat.log").write_text(nat)
    (tmp_path / "map.yaml").write_text('prefixes:\n  "nat-pre:": "ipv4 nat PREROUTING"\n')
    report = build_report(load_spec([tmp_path / "nat.log"], prefix_map=PrefixMap.load(tmp_path / "map.yaml")))
    [p] = report.packets
    assert p.role == "request" and p.hops[0].event.hook.table == "nat"


# ebt_log.c prints its record in pieces (" IP SRC=... IP proto=%d", " SPT=%u DPT=%u"): a kernel without
# KERN_CONT on them (before 4.9's printk change), or a journal that keeps an interrupted continuation as
# an entry of its own, logs each piece on a line of its own; a paste wraps the long record over indented
# lines. Either way it is one record.
EBT_PIECES_SYSLOG = """\
Nov 28 05:00:01 host kernel: [  100.000001] eb-in IN=veth1 OUT= MAC source = 02:42:ac:11:00:02 MAC dest = 02:42:ac:11:00:03 proto = 0x0800
Nov 28 05:00:01 host kernel: [  100.000001]  IP SRC=172.17.0.2 IP DST=172.17.0.3, IP tos=0x00, IP proto=6
Nov 28 05:00:01 host kernel: [  100.000001]  SPT=40000 DPT=80
"""
EBT_WRAPPED_INDENTED = """\
eb-in IN=veth1 OUT= MAC source = 02:42:ac:11:00:02
    MAC dest = 02:42:ac:11:00:03 proto = 0x0800
    IP SRC=172.17.0.2 IP DST=172.17.0.3,
    IP tos=0x00, IP proto=6 SPT=40000 DPT=80
"""


@pytest.mark.parametrize("text", [EBT_PIECES_SYSLOG, EBT_WRAPPED_INDENTED], ids=["pieces", "indented"])
def test_an_ebt_log_record_over_several_lines_is_one_record(tmp_path: Path, text: str):
    report = _report(tmp_path, "kern.log", text)
    assert not report.unused, [(u.span, u.reason) for u in report.unused]
    [p] = report.packets
    r = p.hops[0].event.record
    assert (r.src, r.dst, r.proto, r.sport, r.dport) == ("172.17.0.2", "172.17.0.3", "TCP", 40000, 80)
    # A second record's pieces do not join the first one: a repeated piece starts nothing of its own.
    twice = _report(tmp_path, "kern.log", text + text)
    assert len(twice.packets) == 2
