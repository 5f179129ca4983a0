"""Redaction: consistent, prefix-preserving pseudonyms; nothing original survives."""

from __future__ import annotations

import ipaddress

from reportgen.redact import Redactor, syslog_hosts


def test_prefix_preserving_and_consistent() -> None:
    r = Redactor(b"key")
    a, b, c = (ipaddress.ip_address(r.ip(x)) for x in ("8.8.8.8", "8.8.4.4", "9.9.9.9"))
    common = lambda x, y: 32 - (int(x) ^ int(y)).bit_length()  # noqa: E731
    assert common(a, b) == common(ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("8.8.4.4"))
    assert common(a, c) == common(ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("9.9.9.9"))
    assert r.ip("8.8.8.8") == str(a) != "8.8.8.8"
    # Same key, same pseudonyms; another key, others.
    assert Redactor(b"key").ip("8.8.8.8") == str(a)
    assert Redactor(b"other").ip("8.8.8.8") != str(a)


def test_readable_ranges_kept_and_private_stays_private() -> None:
    r = Redactor(b"key")
    for kept in ("203.0.113.10", "198.51.100.1", "192.0.2.7", "127.0.0.1", "2001:db8::1", "255.255.255.255"):
        assert r.ip(kept) == kept
    for private, net in (
        ("172.17.0.2", "172.16.0.0/12"),
        ("10.1.2.3", "10.0.0.0/8"),
        ("192.168.1.5", "192.168.0.0/16"),
    ):
        new = r.ip(private)
        assert new != private and ipaddress.ip_address(new) in ipaddress.ip_network(net)


def test_network_addresses_keep_zero_host_bits() -> None:
    r = Redactor(b"key")
    out = r.text("-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE")
    net = ipaddress.ip_network(out.split()[3])  # strict: host bits must be zero
    assert ipaddress.ip_address(r.ip("172.17.0.2")) in net


def test_macs_keep_local_bit_and_eui64_agrees() -> None:
    r = Redactor(b"key")
    mac = r.mac("02:42:ac:11:00:02")
    assert mac != "02:42:ac:11:00:02" and int(mac[:2], 16) & 0x03 == 0x02  # locally administered, unicast
    assert int(r.mac("00:1b:21:3a:4f:10")[:2], 16) & 0x03 == 0  # universally administered stays so
    v6 = ipaddress.IPv6Address(r.ip("fe80::42:acff:fe11:2"))
    iid = int(v6) & ((1 << 64) - 1)
    embedded = ((iid >> 40) << 24 | (iid & 0xFFFFFF)) ^ (0x02 << 40)
    assert f"{embedded:012x}" == mac.replace(":", "")
    assert str(v6).startswith("fe80::")


def test_nflog_line_keeps_its_layout() -> None:
    r = Redactor(b"key", ["web1"])
    line = (
        "Nov 27 16:23:38 web1 kernel: [ 1465.197264] IPT IN=docker0 OUT= PHYSIN=veth1 "
        "MAC=02:42:ff:e7:b5:d2:02:42:ac:11:00:02:08:00 SRC=172.17.0.2 DST=203.0.113.10 "
        "SRC6=fe80:0000:0000:0000:0042:acff:fe11:0002"
    )
    out = r.text(line)
    for original in ("web1", "02:42:ff:e7:b5:d2", "02:42:ac:11:00:02", "172.17.0.2", "0042:acff:fe11:0002"):
        assert original not in out
    assert ":08:00 SRC=" in out and "DST=203.0.113.10" in out and "IN=docker0" in out
    assert out.split("SRC6=")[1].count(":") == 7 and len(out.split("SRC6=")[1]) == 39  # still uncompressed
    assert r.mapping["name"]["web1"] in out


def test_ipv4_mapped_and_timestamps() -> None:
    r = Redactor(b"key")
    assert r.text("::ffff:8.8.8.8") == f"::ffff:{r.ip('8.8.8.8')}"
    assert r.text("at 16:23:38 and 12:34") == "at 16:23:38 and 12:34"


def test_syslog_hosts() -> None:
    lines = ["Nov 27 16:23:38 web1 kernel: [1.0] x", "2024-01-02T03:04:05.123+01:00 gw-2 kernel: y", "junk"]
    assert syslog_hosts(lines) == {"web1", "gw-2"}
