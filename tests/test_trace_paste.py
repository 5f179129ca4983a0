# ruff: noqa: E501  (verbatim trace lines stay unwrapped)
"""Trace text as people paste it: cut packet lines, elided jumps, trimmed columns, notes in the walk.

The lines are shortened from the public corpus (tests/corpus/public, each case's PROVENANCE.md names
its source); each test asserts one general behaviour, with the kernel fact it rests on.
"""

from __future__ import annotations

import json
from pathlib import Path

from reportgen.model import Action, LineRef, VerdictCode
from reportgen.netfilter import FORWARD, INPUT, OUTPUT, POSTROUTING, PREROUTING
from reportgen.parsers.nft_ruleset import parse_nft_ruleset
from reportgen.parsers.traces import NftTraceParser
from reportgen.pipeline import build_report
from reportgen.render.jsonout import render_json
from reportgen.sources.case import load_spec


def _report(tmp_path: Path, name: str, text: str, *extra: tuple[str, str]):
    (tmp_path / name).write_text(text)
    for fname, body in extra:
        (tmp_path / fname).write_text(body)
    return build_report(load_spec([tmp_path / name, *(tmp_path / f for f, _ in extra)]))


def _packet_of(report, line: int):
    return next(p for p in report.packets for h in p.hops if LineRef("t.txt", line) in h.event.refs)


def test_ruleset_file_with_newline_statements_and_comments_places_base_chains():
    # nft(8): a newline ends a statement like ";" does, and "#" starts a comment (nftables tests/shell
    # trace/0001simple writes "type filter hook prerouting priority 0" alone on its line).
    rs = parse_nft_ruleset(
        "table inet t {\n  chain pre {\n    # first comes the hook\n    type filter hook prerouting priority 0\n"
        "    policy drop\n    meta nftrace set 1\n  }\n  chain foo {\n    return\n  }\n}\n"
    )
    pre, foo = rs.tables[0].chains
    assert (pre.hook, pre.priority, pre.policy, [r.text for r in pre.rules]) == (
        PREROUTING,
        "0",
        Action.DROP,
        ["meta nftrace set 1"],
    )
    assert foo.hook is None and not foo.base


def test_nft_trace_without_family_word_and_with_wrapped_ct_id():
    # nftables commit "src: add conntrack information to trace monitor mode": shortened lines without
    # the family word, and a "ct id" whose value wrapped onto the next line.
    lines = [
        "trace id 32 t PRE_MANGLE conntrack: ct direction original ct state new ct id",
        "2641368242",
        'trace id 32 t PRE_MANGLE packet: iif "enp0s3" ether saddr [..]',
        "trace id 32 t ct_new_pre rule jump rpfilter (verdict jump rpfilter)",
        "trace id 32 t PRE_MANGLE policy accept",
    ]
    p = NftTraceParser()
    fed = [p.feed(LineRef("t", n), line) for n, line in enumerate(lines, start=1)]
    [v] = [v for done, _ in fed for v in done] + list(p.flush())
    assert all(used for _, used in fed)
    # ct_new_pre has no packet line of its own: a base chain's walk starts with one
    # (nf_tables_trace.c), so it is a user chain of PRE_MANGLE's walk whose jump line was cut.
    assert (v.family, v.table, v.chain, [r.chain for r in v.rules]) == (
        "unknown",
        "t",
        "PRE_MANGLE",
        ["ct_new_pre", "PRE_MANGLE"],
    )
    assert v.fields["extra"] == ("conntrack: ct direction original ct state new ct id 2641368242",)


def test_walk_without_packet_line_is_a_hop_of_its_packet(tmp_path: Path):
    # openwrt/openwrt#19359: the paste starts at fw4's prerouting policy; the packet line comes with
    # the next walk of the same trace id.
    r = _report(
        tmp_path,
        "t.txt",
        """\
trace id 9c07fc2b inet fw4 prerouting policy accept
trace id 9c07fc2b inet fw4 mangle_forward packet: iif "LanPort" oif "LanPort" ether saddr fc:3c:d7:10:d4:4f ether daddr 40:a5:ef:5d:42:e0 ip saddr 192.168.2.84 ip daddr 34.218.107.222 ip dscp cs0 ip ecn not-ect ip ttl 254 ip id 6687 ip protocol tcp ip length 40 tcp sport 62702 tcp dport 443 tcp flags == ack tcp window 4380
trace id 9c07fc2b inet fw4 mangle_forward policy accept
""",
    )
    [p] = r.packets
    assert not r.unused
    assert [(h.event.hook.chain, h.event.hook.hook, h.event.record.src, h.outcome) for h in p.hops] == [
        ("prerouting", PREROUTING, None, Action.ACCEPT),
        ("mangle_forward", FORWARD, "192.168.2.84", Action.ACCEPT),
    ]
    assert "mangle_forward" in p.verdict.evidence and p.verdict.code is VerdictCode.LAST_SEEN
    assert "None" not in p.summary


def test_two_base_chains_of_one_table_at_one_hook_are_one_packet_two_hops(tmp_path: Path):
    pkt = 'iif "eth0.2" ether saddr 00:00:5e:00:53:b8 ether daddr 00:00:5e:00:53:e0 ip saddr 165.227.75.125 ip daddr 198.51.100.7 ip dscp cs0 ip ecn not-ect ip ttl 243 ip id 54321 ip protocol tcp ip length 44 tcp sport 40066 tcp dport 1234 tcp flags == syn tcp window 1024'
    r = _report(
        tmp_path,
        "t.txt",
        f"""\
trace id efb1d592 inet fw4 raw_prerouting packet: {pkt}
trace id efb1d592 inet fw4 raw_prerouting policy accept
trace id efb1d592 inet fw4 mangle_prerouting packet: {pkt}
trace id efb1d592 inet fw4 mangle_prerouting policy accept
""",
    )
    [p] = r.packets
    assert [(h.event.hook.chain, h.event.hook.hook) for h in p.hops] == [
        ("raw_prerouting", PREROUTING),
        ("mangle_prerouting", PREROUTING),
    ]
    assert "probably dropped" not in p.verdict.explanation and "mangle_prerouting" in p.verdict.evidence


def test_nft_reject_printed_as_drop_is_a_reject(tmp_path: Path):
    # docker/for-linux#1353: nft prints a reject rule's verdict as "drop" (nft_reject sets NF_DROP).
    r = _report(
        tmp_path,
        "t.txt",
        """\
trace id a0369369 inet firewalld filter_FWDO_public rule jump filter_FWDO_public_post (verdict jump filter_FWDO_public_post)
trace id a0369369 inet firewalld filter_FWDO_public_post verdict continue
trace id a0369369 inet firewalld filter_FORWARD rule reject with icmpx type admin-prohibited (verdict drop)
""",
    )
    [p] = r.packets
    [h] = p.hops
    # The walk started in a user chain (its packet line cut); it returns to firewalld's base chain.
    assert (h.event.hook.chain, h.event.hook.hook, h.outcome) == ("filter_FORWARD", FORWARD, Action.REJECT)
    assert p.verdict.code is VerdictCode.REJECTED
    assert json.loads(render_json(r)[1].splitlines()[0])["hops"][0]["action"] == "reject"


def test_chain_order_narrows_an_unplaced_chain(tmp_path: Path):
    # A chain walked before bridge filter FORWARD (iptables-nft's base chain) is not at POSTROUTING.
    r = _report(
        tmp_path,
        "t.txt",
        """\
trace id 6d9a826f bridge filter trace_chain packet: iif "veth89eeb77" oif "veth1cd76c2" ether saddr 02:42:ac:13:00:03 ether daddr 02:42:ac:13:00:02 ip saddr 172.19.0.3 ip daddr 172.19.0.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 11144 ip protocol tcp ip length 60 tcp sport 39771 tcp dport 80 tcp flags == syn tcp window 29200
trace id 6d9a826f bridge filter trace_chain policy accept
trace id 6d9a826f bridge filter FORWARD policy accept
""",
    )
    [p] = r.packets
    assert [(h.event.hook.chain, h.event.hook.hook, h.event.hook.placed) for h in p.hops] == [
        ("trace_chain", FORWARD, True),
        ("FORWARD", FORWARD, True),
    ]


def test_unplaced_nft_chain_keeps_its_name(tmp_path: Path):
    r = _report(
        tmp_path,
        "t.txt",
        """\
trace id a95ea7ef ip filter trace_chain packet: iif "enp0s25" ip saddr 8.8.8.8 ip daddr 192.168.2.118 ip dscp cs0 ip ecn not-ect ip ttl 115 ip id 0 ip length 84 icmp type echo-reply icmp code net-unreachable icmp id 9253 icmp sequence 1
trace id a95ea7ef ip filter trace_chain policy accept
""",
    )
    hop = json.loads(render_json(r)[1].splitlines()[0])["hops"][0]
    assert (hop["hook"], hop["hook_candidates"], hop["chain"]) == (None, [PREROUTING, INPUT], "trace_chain")


def test_conntrack_direction_decides_the_role(tmp_path: Path):
    r = _report(
        tmp_path,
        "t.txt",
        """\
trace id 0 inet t output conntrack: ct direction reply ct state established ct status seen-reply,confirmed ct id 0
trace id 0 inet t output packet: oif "eth0" ip saddr 10.23.42.1 ip daddr 10.23.42.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 0 ip protocol udp ip length 84 udp sport 5000 udp dport 6000 udp length 64
trace id 0 inet t output policy accept
""",
        ("ruleset.nft", "table inet t {\n  chain output {\n    type filter hook output priority 0\n  }\n}\n"),
    )
    [p] = r.packets
    assert p.role == "reply" and p.hops[0].event.hook.hook == OUTPUT
    assert {ref.line for ref in p.hops[0].event.refs} == {1, 2, 3}


def test_xtables_monitor_walks_under_new_ids_join_by_headers(tmp_path: Path):
    # xtables-monitor 1.8.x prints no PROTO= for ICMP: the protocol is known only in the walk whose
    # rule matched "-p icmp"; it is unknown, not different, in the others.
    r = _report(
        tmp_path,
        "t.txt",
        """\
PACKET: 2 119c5605 IN=docker0 MACSRC=2:42:ac:11:0:2 MACDST=2:42:e6:97:7c:13 MACPROTO=0800 SRC=172.17.0.2 DST=52.142.124.215 LEN=84 TOS=0x0 TTL=64 ID=33480DF
 TRACE: 2 119c5605 raw:PREROUTING:rule:0x4:CONTINUE  -4 -t raw -A PREROUTING -p icmp -j TRACE
 TRACE: 2 119c5605 raw:PREROUTING:policy:ACCEPT
PACKET: 2 2e1c3e85 IN=docker0 OUT=ens160 MACSRC=2:42:ac:11:0:2 MACDST=2:42:e6:97:7c:13 MACPROTO=0800 SRC=172.17.0.2 DST=52.142.124.215 LEN=84 TOS=0x0 TTL=63 ID=33480DF
 TRACE: 2 2e1c3e85 filter:FORWARD:rule:0x48:ACCEPT  -4 -t filter -A FORWARD -i docker0 ! -o docker0 -j ACCEPT
PACKET: 2 2e1c3e85 IN=docker0 OUT=ens160 MACSRC=2:42:ac:11:0:2 MACDST=2:42:e6:97:7c:13 MACPROTO=0800 SRC=172.17.0.2 DST=52.142.124.215 LEN=84 TOS=0x0 TTL=63 ID=33480DF
 TRACE: 2 2e1c3e85 nat:POSTROUTING:rule:0x1e:ACCEPT  -4 -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
""",
    )
    [p] = r.packets
    assert [h.event.hook.hook for h in p.hops] == [PREROUTING, FORWARD, POSTROUTING]
    assert p.verdict.code is VerdictCode.FORWARDED_OUT and "POSTROUTING" in p.verdict.evidence


def test_legacy_trace_walk_survives_notes_and_a_cut_column(tmp_path: Path):
    # A kube-proxy ClusterIP from nat OUTPUT (a Chinese blog post, see the corpus case
    # trace-legacy-k8s-calico-clusterip-output): the poster's notes sit inside the walk. A record whose
    # ":type:num" a column-aligned paste cut off stays in the walk too.
    head = "kernel: [207676.15] TRACE: "
    fields = "IN= OUT=ens192 SRC=10.12.22.151 DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=31766 DF PROTO=TCP SPT=47644 DPT={dport} SEQ=1655794081 ACK=0 WINDOW=29200 RES=0x00 SYN URGP=0"
    pre = fields.format(dst="10.100.3.59", dport=80)
    r = _report(
        tmp_path,
        "t.txt",
        f"""\
{head}nat:OUTPUT:rule:2 {pre}
{head}nat:KUBE-SERVICES:rule:3 {pre}

# the service's chain
{head}nat:KUBE-SVC-5MRENC7Q6ZQR6GKR {pre}
# here the ClusterIP becomes the pod's address
{head}nat:KUBE-SEP-M7XDXP4L3HZCSYD6:rule:2 {pre}
{head}filter:OUTPUT:rule:1 {fields.format(dst="192.168.2.4", dport=8080)}
""",
    )
    [p] = r.packets
    nat, flt = p.hops
    assert [x.ref.line for x in nat.event.rules] == [1, 2, 5, 7]
    assert (nat.event.hook.hook, nat.outcome, flt.event.hook.hook) == (OUTPUT, Action.ACCEPT, OUTPUT)
    [dnat] = p.nat
    assert (dnat.type, dnat.after.addr, dnat.after.port) == ("DNAT", "192.168.2.4", 8080)
    # The walk ends on KUBE-SEP-*'s rule 2 (a terminal target), after which DST is the pod's.
    assert (dnat.rule, dnat.rule_ref) == ("nat KUBE-SEP-M7XDXP4L3HZCSYD6 rule 2", LineRef("t.txt", 7))
    assert {u.ref.line for u in r.unused} == {3, 4, 6}


def test_established_answer_from_a_service_port_is_a_reply(tmp_path: Path):
    # A DNS answer on lo (corpus trace-nft-inet-lo-dns-reply): accepted by "ct state established,related"
    # and sent from port 53 to an ephemeral port (ip_local_port_range 32768-60999): the server's answer.
    # A rule that also takes "new", or a port that is not well known, proves no direction: the first
    # datagram a trace shows may come after the one that opened the entry (nf_conntrack_proto_udp.c).
    line = 'trace id 78653943 inet hf input packet: iif "lo" ip saddr 127.0.0.53 ip daddr 127.0.0.1 ip dscp cs0 ip ecn not-ect ip ttl 1 ip id 64669 ip protocol udp ip length 168 udp sport {sport} udp dport 36520 udp length 148'
    rule = "trace id 78653943 inet hf input rule ct state {state} accept (verdict accept)"
    for sport, state, role in (
        (53, "established,related", "reply"),
        (53, "established,new", "unknown"),
        (5353, "established", "unknown"),
    ):
        r = _report(tmp_path, "t.txt", line.format(sport=sport) + "\n" + rule.format(state=state) + "\n")
        assert [p.role for p in r.packets] == [role], (sport, state)


def test_inet_chain_before_prerouting_may_be_ingress(tmp_path: Path):
    # openwrt fw4 with the poster's own "debug" base chain (corpus trace-nft-fw4-wg-invalid-drop): it
    # runs before raw_prerouting and sees iif only, so it is an inet ingress chain (Linux >= 5.10) or
    # a prerouting one; never INPUT, which comes after PREROUTING.
    pkt = 'iif "wg0" ip saddr 222.195.90.107 ip daddr 114.214.173.252 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 19723 ip protocol icmp ip length 84 icmp type echo-reply icmp code net-unreachable icmp id 14312 icmp sequence 881'
    r = _report(
        tmp_path,
        "t.txt",
        f"""\
trace id 146d2af5 inet fw4 debug packet: {pkt}
trace id 146d2af5 inet fw4 debug policy accept
trace id 146d2af5 inet fw4 raw_prerouting packet: {pkt}
trace id 146d2af5 inet fw4 raw_prerouting policy accept
""",
    )
    [p] = r.packets
    debug, raw = (h.event.hook for h in p.hops)
    assert (debug.chain, debug.candidates, debug.hook) == ("debug", ("INGRESS", PREROUTING), PREROUTING)
    assert (raw.chain, raw.placed) == ("raw_prerouting", True)
    assert debug.label == "nft inet fw4 debug (INGRESS or PREROUTING)"
