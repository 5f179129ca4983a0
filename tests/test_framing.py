"""Framing of pasted kernel log text: wrappers, glued records, wrapped records, stray spaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from reportgen.model import LineRef
from reportgen.parsers.nflog import parse_kernel_message
from reportgen.parsers.prefix import PrefixMap, resolve_hook
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec
from reportgen.sources.framing import LineFramer, strip_wrapper

REC = (
    "IN=eth0 OUT= MAC=00:15:5d:e6:a2:01:2a:a3:c6:42:b1:90:08:00 SRC=172.25.230.143 DST=172.25.230.141 LEN=214 "
    "TOS=0x00 PREC=0x00 TTL=128 ID=43131 PROTO=UDP SPT=53540 DPT=1514 LEN=194"
)


def frame(text: str) -> list[tuple[int, str]]:
    return list(LineFramer(enumerate(text.split("\n"), start=1)))


def parse(line: str):
    f = strip_wrapper(line)
    return parse_kernel_message(f.msg, LineRef("t", 1), line, f.stamp), f


@pytest.mark.parametrize(
    ("line", "stamp", "prefix"),
    [
        # Ubuntu Forums "bridge routing problem" (okinobk, 2012): syslog without a date, indented.
        (
            "  19:51:36 virthost kernel: [7680080.105160] IN=tun0 OUT=br1  SRC=10.8.3.6 DST=192.168.3.8 LEN=56 "
            "TOS=0x00 PREC=0x00 TTL=63 ID=16872  DF PROTO=TCP SPT=55065 DPT=22 WINDOW=5840 RES=0x00 SYN URGP=0 ",
            7680080.105160,
            "",
        ),
        # /dev/kmsg-style priority before a dmesg stamp.
        ("<4>[ 3529.289825] [UFW BLOCK] " + REC, 3529.289825, "[UFW BLOCK] "),
        # firewalld/firewalld#876: RFC 3339 stamp, host, kernel stamp and the printk caller id.
        (
            "2021-11-04T18:33:46.114797+01:00 rpi4tumhon kernel: [17748.074339][    C0] "
            '"filter_IN_public_REJECT: "IN=eth0 OUT= MAC=33:33:00:00:00:01:98:9b:cb:9d:f4:36:86:dd '
            "SRC=fe80:0000:0000:0000:9a9b:cbff:fe9d:f436 "
            "DST=ff02:0000:0000:0000:0000:0000:0000:0001 LEN=64 TC=0 HOPLIMIT=255 FLOWLBL=758639 PROTO=UDP SPT=53805 "
            "DPT=53805 LEN=24",
            17748.074339,
            '"filter_IN_public_REJECT: "',
        ),
        ("2021-03-04T10:11:12.123456+01:00 host kernel: [  123.456789] [    T1] x: " + REC, 123.456789, "x: "),
        # centminmod-abuseipdb-reporter readme.md: syslog without a host name.
        ("Apr  4 02:44:18 kernel: Firewall: *TCP_IN Blocked* " + REC, None, "Firewall: *TCP_IN Blocked* "),
    ],
)
def test_wrappers(line, stamp, prefix):
    rec, f = parse(line)
    assert rec is not None and f.wrapped
    assert rec.prefix == prefix
    assert f.stamp == (pytest.approx(stamp) if stamp else None)


def test_runs_of_spaces_inside_fields():
    rec, _ = parse(
        "IN=eth0  OUT=eth1 SRC=     110.110.110.108 DST=  192.0.2.9 LEN=60 TOS=0x00 PROTO=TCP SPT=  1234 DPT=80 SYN"
    )
    assert (rec.in_dev, rec.out_dev) == ("eth0", "eth1")
    assert (rec.src, rec.dst, rec.sport, rec.dport) == ("110.110.110.108", "192.0.2.9", 1234, 80)
    assert rec.redacted == ()


def test_wrapped_record_is_joined():
    # "Understanding UFW log", https://newbetuts.com/1116145-understanding-ufw-log: one record the
    # poster broke over seven lines.
    text = (
        "Feb 6 16:27:08 jonasgroenbek kernel: [71910.873115]\n"
        "[UFW BLOCK] IN=eth0 OUT=\n"
        "MAC=a6:8d:e2:51:62:4c:f0:4b:3a:4f:80:30:08:00\n"
        "SRC=77.72.85.26 DST=157.230.26.180\n"
        "LEN=40 TOS=0x00 PREC=0x00 TTL=251 ID=62215 PROTO=TCP\n"
        "SPT=42772 DPT=3194 WINDOW=1024\n"
        "RES=0x00 SYN URGP=0"
    )
    out = frame(text)
    assert [n for n, _ in out] == [1]
    rec, f = parse(out[0][1])
    assert f.stamp == pytest.approx(71910.873115) and rec.prefix == "[UFW BLOCK] "
    assert (rec.src, rec.dst, rec.sport, rec.dport, rec.tcp_flags) == (
        "77.72.85.26",
        "157.230.26.180",
        42772,
        3194,
        ("SYN",),
    )
    hook = resolve_hook(rec, PrefixMap.empty()).hook
    assert (hook.convention, hook.hook) == ("ufw", "INPUT")


def test_stray_tail_is_not_joined_to_a_complete_record():
    # netdata/netdata#2047 (FireHOL): the paste starts with the tail of a record whose start is missing.
    text = (
        " TTL=128 ID=31585 PROTO=UDP SPT=137 DPT=137 LEN=58 MARK=0 \n"
        "Apr  2 19:54:54 box IN-work: IN=realize OUT= MAC=45:00:00:4e SRC=192.168.9.10 DST=255.255.255.255 "
        "LEN=78 TOS=00 PREC=0x00 TTL=128 ID=31586 PROTO=UDP SPT=137 DPT=137 LEN=58 MARK=0 \n"
        " TTL=128 ID=31587 PROTO=UDP"
    )
    assert [n for n, _ in frame(text)] == [1, 2, 3]


def test_several_records_on_one_line_are_split_and_keep_the_line():
    one = "Jan 28 19:51:36 virthost kernel: [7680080.105160] [UFW BLOCK] " + REC
    two = "Jan 28 19:51:37 virthost kernel: [7680081.000001] [UFW ALLOW] " + REC.replace("43131", "43132")
    out = frame(one + " " + two + "  [UFW AUDIT] " + REC)
    assert [n for n, _ in out] == [1, 1, 1]
    recs = [parse(t) for _, t in out]
    assert [r.prefix for r, _ in recs] == ["[UFW BLOCK] ", "[UFW ALLOW] ", "[UFW AUDIT] "]
    assert [r.ipid for r, _ in recs] == [43131, 43132, 43131]
    assert recs[1][1].stamp == pytest.approx(7680081.000001)


def test_prefix_holding_in_out_is_not_split():
    # trace-formats.md section 6: a prefix may contain "IN=.. OUT=.."; the rightmost anchor is the real one.
    out = frame("IN=fake OUT=fake test IN=eth0 OUT= SRC=192.0.2.1 DST=192.0.2.2 LEN=60 TOS=0x00 PROTO=TCP")
    assert len(out) == 1


def test_a_case_counts_every_physical_line(tmp_path: Path):
    (tmp_path / "syslog").write_text(
        "Feb 6 16:27:08 jonasgroenbek kernel: [71910.873115]\n[UFW BLOCK] IN=eth0 OUT=\n"
        "MAC=a6:8d:e2:51:62:4c:f0:4b:3a:4f:80:30:08:00\nSRC=77.72.85.26 DST=157.230.26.180\n"
        "LEN=40 TOS=0x00 PREC=0x00 TTL=251 ID=62215 PROTO=TCP\nSPT=42772 DPT=3194 WINDOW=1024\n"
        "RES=0x00 SYN URGP=0\n\nunrelated line\n"
    )
    report = build_report(load_spec([tmp_path]))
    assert report.lines_total == 9
    assert report.lines_used == 7
    assert [u.reason.split(":")[0] for u in report.unused] == ["blank line", "other line"]
    assert len(report.packets) == 1


def test_records_with_other_text_between_them_on_one_line():
    # A forum post (Ubuntu Forums, D-Link DWM-156, 2014): twenty minutes of dmesg pasted as one line,
    # with a shell prompt, USB messages between the records and "^" marking the lost line breaks.
    line = (
        "luis@luis-G41M-Combo:~$ dmesg | tail -20 [ 2224.539728] usb 1-3: USB disconnect, device number 5 "
        "[ 2228.248057] [UFW AUDIT] IN=eth0 OUT= MAC=1c:6f:65:43:ac:46:28:c6:8e:91:ac:06:08:00^ SRC=10.0.0.2 "
        "DST=10.0.0.3 LEN=78 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF PROTO=UDP^ SPT=46370 DPT=137 LEN=58 "
        "[ 2242.358103] [UFW AUDIT] IN= OUT=eth0 SRC=10.0.0.3 DST=180.178.127.10 LEN=122^ TOS=0x00 PREC=0x00 "
        "TTL=64 ID=65211 DF PROTO=UDP SPT=51413 DPT=53152 LEN=102 ^ [ 2242.358118] [UFW ALLOW] IN= OUT=eth0 "
        "SRC=10.0.0.3 DST=180.178.127.10 LEN=122^ TOS=0x00 PREC=0x00 TTL=64 ID=65211 DF PROTO=UDP SPT=51413 "
        "DPT=53152 LEN=102^ [ 2249.236024] usb 1-3: new high-speed USB device number 6 using ehci_hcd "
        "[ 2258.451593] [UFW AUDIT] IN=eth0 OUT= MAC=1c:6f:65:43:ac:46:28:c6:8e:91:ac:06:08:00^ SRC=10.0.0.2 "
        "DST=10.0.0.3 LEN=78 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF PROTO=UDP^ SPT=42867 DPT=137 LEN=58"
    )
    out = frame(line)
    recs = [parse(t) for _, t in out]
    assert [n for n, _ in out] == [1, 1, 1, 1]
    assert [(r.prefix, r.sport, r.dport, r.proto) for r, _ in recs] == [
        ("[UFW AUDIT] ", 46370, 137, "UDP"),
        ("[UFW AUDIT] ", 51413, 53152, "UDP"),
        ("[UFW ALLOW] ", 51413, 53152, "UDP"),
        ("[UFW AUDIT] ", 42867, 137, "UDP"),
    ]
    assert [f.stamp for _, f in recs] == pytest.approx([2228.248057, 2242.358103, 2242.358118, 2258.451593])
    assert recs[0][0].mac_src == "28:c6:8e:91:ac:06" and recs[0][0].redacted == ()


def test_forum_markup_is_removed():
    # Ubuntu Forums "UFW and VPN ppp0 rules" (2013): BBCode font tags around a masked source.
    line = (
        '[FONT=arial][28444.859428] [UFW BLOCK] IN=ppp0 OUT= MAC= [/FONT][FONT=arial]SRC=[/FONT][x]("tel:'
        '190.32.195.151")xx.xxx.xxx.xxx[FONT=arial] DST=yyy.yyy.yyy.yyy[/FONT][FONT=arial] LEN=40 TOS=0x08 '
        "PREC=0x20 TTL=238 ID=46914 PROTO=TCP SPT=19780 DPT=39569 WINDOW=0 RES=0x00 ACK RST URGP=0 [/FONT]"
    )
    ((n, text),) = frame(line)
    rec, f = parse(text)
    assert f.stamp == pytest.approx(28444.859428) and rec.prefix == "[UFW BLOCK] "
    assert (rec.src, rec.dst, rec.sport, rec.dport) == (None, None, 19780, 39569)
    assert rec.redacted == ("src", "dst")


def test_localized_month_syslog_header_is_a_wrapper(tmp_path: Path):
    # Verbatim from github teejee2008/ukuu#111 (a zh_CN journal): strftime %b renders the month "11月".
    (tmp_path / "kern.log").write_text(
        "11月 15 14:31:10 user kernel: [UFW BLOCK] IN=enp3s0 OUT= MAC= SRC=192.168.1.104 DST=239.192.152.143 "
        "LEN=164 TOS=0x00 PREC=0x00 TTL=1 ID=41470 DF PROTO=UDP SPT=36949 DPT=6771 LEN=144 \n"
    )
    report = build_report(load_spec([tmp_path]))
    [p] = report.packets
    hook = p.hops[0].event.hook
    assert p.hops[0].event.record.prefix == "[UFW BLOCK] "
    assert (hook.convention, hook.table, hook.hook, hook.placed) == ("ufw", "filter", "INPUT", True)
