"""The LOG / ebtables line parser and the log wrappers, on the edge cases of trace-formats.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from reportgen.model import LineRef
from reportgen.parsers.nflog import parse_kernel_message, shown
from reportgen.sources.framing import read_lines, strip_wrapper

REF = LineRef("t.log", 1)


def parse(msg: str):
    return parse_kernel_message(msg, REF, msg, None)


def test_prefix_glued_to_in_and_fields():
    r = parse("iptable/raw-PREROUTEIN=docker0 OUT= PHYSIN=veth694b3b7 MAC=02:42:ac:11:00:03:02:42:ac:11:00:02:08:00 "
              "SRC=172.17.0.2 DST=172.17.0.3 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=11201 DF PROTO=ICMP TYPE=8 "
              "CODE=0 ID=11 SEQ=0 ")
    assert r.prefix == "iptable/raw-PREROUTE"
    assert (r.in_dev, r.out_dev, r.physin) == ("docker0", "", "veth694b3b7")
    assert (r.mac_dst, r.mac_src, r.ethertype) == ("02:42:ac:11:00:03", "02:42:ac:11:00:02", 0x0800)
    # ID= twice: the IP ID first, then the ICMP echo id (dump_ipv4_packet order)
    assert (r.ipid, r.icmp_id, r.icmp_seq, r.icmp_type) == (11201, 11, 0, 8)
    assert r.ip_flags == ("DF",) and r.ttl == 64 and r.length == 84


def test_prefix_with_spaces_and_fake_in_uses_rightmost_anchor():
    r = parse("my IN=x OUT=y rule: IN=eth0 OUT= MAC= SRC=192.0.2.1 DST=192.0.2.2 LEN=60 TOS=0x00 PREC=0x00 "
              "TTL=64 ID=1 PROTO=TCP SPT=1000 DPT=22 WINDOW=100 RES=0x00 SYN URGP=0 ")
    assert r.prefix == "my IN=x OUT=y rule: "
    assert r.in_dev == "eth0" and r.mac_src is None
    assert (r.sport, r.dport, r.tcp_flags) == (1000, 22, ("SYN",))


def test_udp_second_len_and_tcp_seq_vs_ack_flag():
    r = parse("IN=eth0 OUT= SRC=192.0.2.1 DST=192.0.2.2 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=7 PROTO=UDP "
              "SPT=5353 DPT=53 LEN=40 ")
    assert r.length == 60 and r.proto == "UDP"
    t = parse("TRACE: raw:PREROUTING:policy:3 IN=virbr0 OUT= SRC=192.0.2.1 DST=192.0.2.2 LEN=60 TOS=0x00 "
              "PREC=0x00 TTL=64 ID=14247 DF PROTO=TCP SPT=42954 DPT=3128 SEQ=3127975600 ACK=0 WINDOW=29200 "
              "RES=0x00 ACK SYN URGP=0 OPT (020405B40402080A10B629170000000001030307)")
    assert t.tcp_seq == 3127975600 and t.tcp_flags == ("ACK", "SYN")
    assert not t.truncated


def test_ipv6_uncompressed_addresses_are_normalised():
    r = parse("[UFW BLOCK] IN=enp8s0 OUT= MAC=a8:5e:45:b6:d7:21:54:52:84:c8:a4:8c:86:dd "
              "SRC=2804:833c:1026:8f01:35b3:3ba1:4eba:c4ba DST=2408:8210:2421:6950:5452:84c8:a48c:0003 LEN=152 "
              "TC=0 HOPLIMIT=48 FLOWLBL=337547 PROTO=UDP SPT=37221 DPT=51413 LEN=112")
    assert r.l3 == "ipv6" and r.dst == "2408:8210:2421:6950:5452:84c8:a48c:3"
    assert r.ttl == 48 and r.flowlabel == 337547


def test_icmp_error_embedded_header_does_not_override_outer_fields():
    r = parse("Inbound IN=wlan0 OUT= SRC=74.181.76.25 DST=192.168.2.2 LEN=56 TOS=0x00 PREC=0x00 TTL=63 ID=817 DF "
              "PROTO=ICMP TYPE=3 CODE=3 [SRC=192.168.2.2 DST=74.181.76.25 LEN=129 TOS=0x00 PREC=0x00 TTL=63 ID=0 "
              "DF PROTO=UDP SPT=24060 DPT=24060 LEN=109 ] ")
    assert (r.src, r.dst, r.ipid, r.icmp_type, r.proto) == ("74.181.76.25", "192.168.2.2", 817, 3, "ICMP")
    assert r.sport is None
    assert any(x.startswith("embedded:[SRC=192.168.2.2") for x in r.extra)


def test_truncated_records_are_marked():
    assert parse("fw: IN=eth0 OUT= SRC=192.0.2.1 DST=192.0.2.2 LEN=40 TOS=0x00 PREC=0x00 TTL=64 ID=9 PROTO=TCP "
                 "INCOMPLETE [8 bytes] ").truncated
    assert parse("fw: IN=eth0 OUT= SRC=192.0.2.1 DST=192.0.2.2 LEN=40 TOS=0x00 PREC=0x00 TTL=64 ID=9 PROTO=ICMP "
                 "TYPE=3 CODE=1 [SRC=192.0.2.2 DST=").truncated


def test_ebtables_line():
    r = parse("ctc/ebtable/filter-forward IN=veth694b3b7 OUT=veth8f77b15 MAC source = 02:42:ac:11:00:02 "
              "MAC dest = 02:42:ac:11:00:03 proto = 0x0800")
    assert r.fmt == "ebtlog" and r.prefix == "ctc/ebtable/filter-forward"
    assert (r.in_dev, r.out_dev, r.mac_src, r.ethertype) == ("veth694b3b7", "veth8f77b15", "02:42:ac:11:00:02", 0x800)
    ip = parse("br: IN=eth1 OUT=eth2 MAC source = 52:54:00:12:34:56 MAC dest = 52:54:00:65:43:21 proto = 0x0800 "
               "IP SRC=192.0.2.1 IP DST=192.0.2.2, IP tos=0x00, IP proto=6 SPT=51514 DPT=22")
    assert (ip.src, ip.dst, ip.proto, ip.sport, ip.dport) == ("192.0.2.1", "192.0.2.2", "TCP", 51514, 22)


def test_unrelated_kernel_lines_are_not_records():
    assert parse("net_ratelimit: 12 callbacks suppressed") is None
    assert parse("nf_conntrack: table full, dropping packet") is None


@pytest.mark.parametrize(("line", "stamp"), [
    ("[ 3281.370286] fw: IN=eth0 OUT= ", 3281.370286),
    ("[Wed Nov 27 06:33:51 2024] fw: IN=eth0 OUT= ", None),
    ("Nov 27 06:33:51 myhost kernel: fw: IN=eth0 OUT= ", None),
    ("Nov 27 06:33:51.370286 myhost kernel: fw: IN=eth0 OUT= ", None),
    ("2024-11-27T06:33:51+0100 myhost kernel: fw: IN=eth0 OUT= ", None),
    ("2024-11-27T06:33:51.370286+01:00 myhost kernel: fw: IN=eth0 OUT= ", None),
    ("Jul  3 08:02:51 desk kernel: [171281.739717] fw: IN=eth0 OUT= ", 171281.739717),
    ("Jan  1 21:23:16 cos74 kernel: fw: IN=eth0 OUT= ", None),
    ("<4>[ 3281.370286] fw: IN=eth0 OUT= ", 3281.370286),
    ("fw: IN=eth0 OUT= ", None),
])
def test_wrappers(line, stamp):
    f = strip_wrapper(line)
    assert f.msg == "fw: IN=eth0 OUT= "
    assert f.stamp == stamp


def test_read_lines_crlf_nul_and_bad_utf8(tmp_path: Path):
    p = tmp_path / "x.log"
    p.write_bytes(b"\xef\xbb\xbfa\r\nb\xff\x00c\r\n\n")
    assert list(read_lines(p)) == [(1, "a"), (2, "b\ufffdc"), (3, "")]


# Redacted pastes. Lines from public sources, verbatim where cited.
REDACTED = [
    # centminmod/centminmod-abuseipdb-reporter readme.md (CSF report, masked octets)
    ("Firewall: *TCP_IN Blocked* IN=eth0 OUT= MAC=00:16:3c:58:ef:51:00:0c:db:f5:6d:00:08:00 SRC=35.xxx.xxx.xxx "
     "DST=0.0.0.x LEN=44 TOS=0x00 PREC=0x00 TTL=17 ID=6799 PROTO=TCP SPT=14833 DPT=111 WINDOW=1024 RES=0x00 SYN "
     "URGP=0 ", ("src", "dst")),
    # pitkley/dfw#705, comment by MichaelVoelkel, 2024-01-01 (no prefix, <filtered>)
    ("IN=eth0 OUT=br-d65ccc79fc1d MAC=<filtered> SRC=<filtered> DST=172.20.0.2 LEN=64 TOS=0x00 PREC=0x00 TTL=50 "
     "ID=0 DF PROTO=TCP SPT=54694 DPT=9115 WINDOW=65535 RES=0x00 SYN URGP=0 MARK=0xdf ", ("mac_src", "mac_dst", "src")),
    # http://citadel.tistory.com/tag/Firewall (stars)
    ("[UFW BLOCK INPUT]: IN=eth0 OUT= MAC=*************** SRC=*.*.*.* DST=**.**.***.*** LEN=52 TOS=0x00 PREC=0x00 "
     "TTL=42 ID=23860 DF PROTO=TCP SPT=8000 DPT=42776 WINDOW=35568 RES=0x00 ACK URGP=0",
     ("mac_src", "mac_dst", "src", "dst")),
    # LukeSmithxyz/emailwiz#251 (words in place of the values)
    ("[UFW BLOCK] IN=eth0 OUT= MAC=mac_address SRC=source_ip DST=server_ip LEN=68 TOS=0x00 PREC=0x00 TTL=108 "
     "ID=1499 PROTO=UDP SPT=60874 DPT=161 LEN=48 ", ("mac_src", "mac_dst", "src", "dst")),
    # log2timeline/plaso#4204 (impossible octets, copied from help.ubuntu.com/community/UFW)
    ("[UFW BLOCK] IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd SRC=444.333.222.111 "
     "DST=111.222.333.444 LEN=103 TOS=0x00 PREC=0x00 TTL=52 ID=0 DF PROTO=UDP SPT=53 DPT=36427 LEN=83",
     ("src", "dst")),
    # The other masks people use.
    ("x: IN=eth0 OUT= MAC=xx:xx:xx:xx:xx:xx:xx:xx:xx:xx:xx:xx:08:00 SRC=XXX.232.61.230 DST=x.x.x.x LEN=52 TOS=0x00 "
     "PROTO=TCP SPT=xxx DPT=22 SYN", ("mac_src", "mac_dst", "src", "dst", "sport")),
    ("x: IN=eth0 OUT= MAC=[redacted] SRC=a.b.c.d DST=[redacted] LEN=52 TOS=0x00 PROTO=TCP SPT=1 DPT=*** SYN",
     ("mac_src", "mac_dst", "src", "dst", "dport")),
    ("x: IN=eth0 OUT= MACSRC=xx:xx:xx:xx:xx:xx MACDST=52:54:00:65:43:21 MACPROTO=0800 SRC=2001:db8::x DST=::1 "
     "LEN=52 TC=0 PROTO=UDP SPT=1 DPT=2", ("mac_src", "src")),
    (" IN=eth1 OUT=eth0 MAC source = xx:xx:xx:xx:xx:xx MAC dest = <filtered> proto = 0x0800 IP SRC=<filtered> "
     "IP DST=192.0.2.3, IP tos=0x00, IP proto=6 SPT=*** DPT=80", ("mac_src", "mac_dst", "src", "sport")),
]


@pytest.mark.parametrize(("msg", "fields"), REDACTED)
def test_redacted_values_are_none_and_named(msg, fields):
    r = parse(strip_wrapper(msg).msg)
    assert r is not None
    assert r.redacted == fields
    for name in fields:
        assert getattr(r, name) is None
    assert shown(r, fields[0]) == "redacted"


def test_real_values_are_not_redacted():
    r = parse("x: IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 SRC=192.0.2.1 DST=2001:db8::1 "
              "LEN=1 TOS=0x00 PROTO=TCP SPT=1 DPT=2")
    assert r.redacted == () and r.dst == "2001:db8::1" and shown(r, "dport") == "2" and shown(r, "icmp_id") == "?"
    # A MAC header of another length (a tun device's 4 bytes, netdata#2047) is real, not redacted.
    assert parse("IN-work: IN=realize OUT= MAC=45:00:00:4e SRC=192.168.9.10 DST=255.255.255.255 LEN=78 TOS=00 "
                 "PROTO=UDP SPT=137 DPT=137 LEN=58").redacted == ()


def test_redacted_fields_are_shown_as_redacted_where_hops_are_rendered(tmp_path: Path):
    import json
    import re

    from reportgen.pipeline import build_report
    from reportgen.render.html import render_html
    from reportgen.render.jsonfold import read_packets
    from reportgen.render.jsonout import render_json
    from reportgen.render.markdown import render_markdown
    from reportgen.render.text import render_text
    from reportgen.sources.case import load_spec

    (tmp_path / "kern.log").write_text("\n".join(m for m, _ in REDACTED) + "\n")
    report = build_report(load_spec([tmp_path]))
    assert report.lines_used == report.lines_total == len(REDACTED)
    doc, lines = render_json(report)
    hops = [h for p in read_packets(json.loads(doc), lines.splitlines()) for h in p["hops"]]
    assert sorted(tuple(h["redacted"]) for h in hops) == sorted(f for _, f in REDACTED)
    assert all(h[name] is None for h in hops for name in h["redacted"])
    html = render_html(report)
    cells = re.findall(r'<td class="addrs">(.*?)</td>', html)
    # Packets that behave alike are folded (one told, the others listed), so fewer hops are drawn
    # than lines read; every drawn one shows its masked fields as redacted, never as None.
    assert 0 < len(cells) <= len(REDACTED) and all("None" not in c for c in cells)
    assert sum(c.count(">redacted<") for c in cells) >= len(cells)
    for text in (render_text(report), render_markdown(report)):
        assert "None" not in text and text.count("redacted in the input:") >= len(cells)
