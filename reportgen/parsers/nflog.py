"""Parse kernel LOG / nft ``log`` lines (net/netfilter/nf_log_syslog.c) and ebtables ``--log`` lines.

Usage::

    rec = parse_kernel_message(msg, ref, text, stamp)   # LogRecord, or None if not a netfilter line

nf_log_syslog prints ``"%sIN=%s OUT=%s "`` with no separator after the prefix, so the prefix may be
glued to ``IN=`` and may itself contain ``IN=``; the rightmost ``IN=.. OUT=..`` anchor is the real
one (trace-formats.md section 6, items 1-2). The body is tokenised left to right; duplicate keys
(``ID=``, ``LEN=``, ``SEQ=``) are told apart by position, never by a dict.

ebt_log.c prints its own format, ``"%s IN=%s OUT=%s MAC source = %pM MAC dest = %pM proto = 0x%04x"``
with optional ``IP SRC=..`` / ``IPv6 SRC=..`` / ``ARP ..`` tails (trace-formats.md section 2).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import Counter
from dataclasses import replace
from sys import intern
from typing import Final

from reportgen.model import ICMP_PROTOS, PVEFW_LOGGER, LineRef, LogRecord

# Pasted text may carry runs of spaces between the fields, so " +" where the kernel prints one space.
_ANCHOR: Final = re.compile(r"IN=(?P<in>[^\s/:]{0,15}) +OUT=(?P<out>[^\s/:]{0,15})(?= |$)")
# A MAC= value of hex digits and colons only that is not whole bytes was damaged (a typo, a lost
# byte), not masked: nothing in it hides a value, so it is not called redacted.
_HEX_ONLY: Final = re.compile(r"^[0-9A-Fa-f:]+$")
# MACs and addresses are taken as any token and checked afterwards: a paste may have redacted them
# ("xx:xx:..", "<filtered>", "XXX.232.61.230"), and such a line is still a record.
_EBT: Final = re.compile(
    r"^(?:(?P<prefix>.*) )?IN=(?P<in>[^\s/:]{0,15}) +OUT=(?P<out>[^\s/:]{0,15}) +"
    r"MAC source = (?P<smac>\S+) MAC dest = (?P<dmac>\S+) "
    r"proto = 0x(?P<proto>[0-9a-fA-F]{4})(?P<rest>.*)$"
)
_EBT_IP: Final = re.compile(
    r"^ IP SRC=(?P<src>[^\s,]+) IP DST=(?P<dst>[^\s,]+), IP tos=0x[0-9A-Fa-f]{2}, IP proto=(?P<proto>\d+)"
    r"(?: SPT=(?P<spt>\S+) DPT=(?P<dpt>\S+))?"
)
_EBT_IP6: Final = re.compile(
    r"^ IPv6 SRC=(?P<src>[^\s,]+) IPv6 DST=(?P<dst>[^\s,]+), IPv6 priority=0x[0-9A-Fa-f], "
    r"Next Header=(?P<proto>\d+)(?: SPT=(?P<spt>\S+) DPT=(?P<dpt>\S+))?"
)
_IPV4: Final = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
_MAC: Final = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2})*$")
# Keys whose value a paste may have separated from the "=" by spaces ("SRC=     110.110.110.108").
_VALUE_KEYS: Final = frozenset(
    {
        "SRC",
        "DST",
        "LEN",
        "TOS",
        "PREC",
        "TTL",
        "ID",
        "PROTO",
        "SPT",
        "DPT",
        "WINDOW",
        "RES",
        "URGP",
        "SEQ",
        "ACK",
        "TYPE",
        "CODE",
        "MARK",
        "MACSRC",
        "MACDST",
        "MACPROTO",
        "HOPLIMIT",
        "TC",
        "FLOWLBL",
        "UID",
        "GID",
        "PHYSIN",
        "PHYSOUT",
    }
)
_IP_PROTO_NAMES: Final = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 136: "UDPLITE"}
_TCP_FLAGS: Final = frozenset({"AE", "CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN"})
_IP_FLAGS: Final = frozenset({"CE", "DF", "MF"})


@functools.lru_cache(maxsize=65536)
def _norm_addr(text: str) -> str | None:
    """Normalise an address, or return None when it is not one (a paste redacted it).

    nf_log prints IPv6 uncompressed (%pI6), nft and ebt_log may not. IPv4 from %pI4 is already
    canonical, so only IPv6 pays for ipaddress (it is slow).
    """
    if ":" not in text:
        m = _IPV4.match(text)
        return text if m and all(int(o) <= 255 for o in m.groups()) else None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def is_multicast(addr: str | None) -> bool:
    """Whether an address (as a record holds it; None when redacted) is a multicast group address."""
    try:
        return addr is not None and ipaddress.ip_address(addr).is_multicast
    except ValueError:
        return False


@functools.lru_cache(maxsize=4096)  # the same few MACs on every ebtables line
def _mac(text: str) -> str | None:
    """Return a MAC address in lower case, or None when the paste redacted or damaged it."""
    return text.lower() if len(text) == 17 and _MAC.match(text) else None


def _port(text: str | None, name: str, redacted: list[str]) -> int | None:
    if text is None:
        return None
    value = _int(text)
    if value is None:
        redacted.append(name)
    return value


def _int(text: str, base: int = 10) -> int | None:
    try:
        return int(text, base)
    except ValueError:
        return None


def shown(rec: LogRecord, name: str) -> str:
    """Return a record field as text for a reader: "redacted" when the input masked it, "?" when absent.

    Explanations and summaries use this instead of formatting the field, so no output says "None".
    """
    if name in rec.redacted:
        return "redacted"
    value = getattr(rec, name)
    return "?" if value is None else str(value)


def record_anchors(msg: str) -> list[tuple[int, int]]:
    """Return the (start, end) of every ``IN=.. OUT=..`` anchor in a message."""
    m = _ANCHOR.search(msg)
    if m is None:
        return []
    if msg.find(" OUT=", m.end()) < 0:
        return [m.span()]  # the usual line: any later anchor would hold " OUT=" after this one
    return [m.span() for m in _ANCHOR.finditer(msg)]


# Proxmox VE's pvefw-logger reads NFLOG and writes its own line (proxmox/pve-firewall
# src/pvefw-logger.c, "LOG FORMAT": "<VMID> <LOGLEVEL> <CHAIN> <TIME> <TIMEZONE> <MSG>"; print_pkt()
# prints "%d %d %s ", strftime "%d/%b/%Y:%H:%M:%S %z ", the rest of the nflog prefix, then
# "IN=%s " only if indev > 0, "OUT=%s " only if outdev > 0, PHYSIN=/PHYSOUT= likewise, "MAC=" only
# when there is a hardware header). A missing IN= or OUT= is a device the packet did not have, as an
# empty one is in nf_log_syslog.c; the chain is at most MAX_CHAIN_LEN (28) characters, "-" when the
# prefix was not pve-firewall's ":vmid:level:chain: msg".
_PVE_HEAD: Final = re.compile(r"\d+ [0-7] [^\s:]{1,28} \d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4} ")
_PVE_DEVICES: Final = re.compile(
    r"(?:^| )(?=(?:IN|OUT|PHYSIN|PHYSOUT|MAC|SRC)=)(?:IN=(?P<in>\S*) +)?(?:OUT=(?P<out>\S*) +)?"
)


def _parse_pvefw(msg: str, ref: LineRef, text: str, stamp: float | None) -> LogRecord | None:
    head = _PVE_HEAD.match(msg)
    dev = _PVE_DEVICES.search(msg, head.end() - 1) if head else None
    if dev is None:
        return None
    prefix, in_dev, out_dev = intern(msg[: dev.start() + 1]), intern(dev["in"] or ""), intern(dev["out"] or "")
    body = msg[dev.end() :].strip(" ")
    rec = _parse_nflog_body(prefix, in_dev, out_dev, body, ref, text, stamp, tcp_tail="")
    return replace(rec, logger=PVEFW_LOGGER)


def parse_kernel_message(msg: str, ref: LineRef, text: str, stamp: float | None) -> LogRecord | None:
    """Parse one kernel message (wrapper already stripped); None when it is not a netfilter record."""
    if msg[:1].isdigit():
        pve = _parse_pvefw(msg, ref, text, stamp)
        if pve is not None:
            return pve
    if " MAC source = " not in msg:
        return _parse_message(msg, ref, text, stamp)
    # ebt_log without --log-ip prints the same message for every packet of a flow at a hook (only the
    # stamp differs), so its reading is kept: the record is a function of the message alone, apart
    # from the ref, text and stamp it carries (_parse_message reads nothing else).
    if msg in _ebt_messages:
        seen = _ebt_messages[msg]
        return None if seen is None else _same_body(seen, seen.prefix, seen.in_dev, seen.out_dev, ref, text, stamp)
    rec = _parse_message(msg, ref, text, stamp)
    if len(_ebt_messages) >= 4096:
        _ebt_messages.clear()  # bounded: messages with their own addresses and ports come and go
    _ebt_messages[msg] = rec
    return rec


_ebt_messages: Final[dict[str, LogRecord | None]] = {}  # the record of each recent message, None for none


def _parse_message(msg: str, ref: LineRef, text: str, stamp: float | None) -> LogRecord | None:
    if " MAC source = " in msg:
        rec = _parse_ebt(msg, ref, text, stamp)
        if rec is not None:
            return rec
    m = _ANCHOR.search(msg)
    if m is None:
        return None
    if msg.find(" OUT=", m.end()) >= 0:  # maybe a later anchor (record_anchors): the rightmost is the record's
        m = list(_ANCHOR.finditer(msg))[-1]
    body = msg[m.end() :].strip(" ")
    # Prefixes and devices repeat on every line: one string object each, not one per line.
    prefix, in_dev, out_dev = intern(msg[: m.start()]), intern(m.group("in")), intern(m.group("out"))
    return _parse_usual_body(prefix, in_dev, out_dev, body, ref, text, stamp) or _parse_nflog_body(
        prefix, in_dev, out_dev, body, ref, text, stamp
    )


# The body as nf_log_syslog.c prints it for a plain IPv4 or IPv6 TCP, UDP or ICMP echo packet, in its
# own field order: nf_log_dump_packet_common() (PHYSIN=, PHYSOUT=), dump_mac_header() ("MAC=" and 14
# bytes for Ethernet), dump_ipv4_packet() / dump_ipv6_packet() (header, then the CE/DF/MF flags),
# nf_log_dump_tcp_header() (SEQ=/ACK= with --log-tcp-sequence, the flags in CWR..FIN order),
# nf_log_dump_udp_header() and the ICMP echo's ID= and SEQ=, then MARK=. Anything else (options,
# UID=, fragments, ICMP errors, damage a paste made, spaces a paste added) takes the general parser.
_USUAL_BODY: Final = re.compile(
    r"(?:PHYSIN=(?P<physin>\S*) )?(?:PHYSOUT=(?P<physout>\S*) )?"
    r"(?:MAC=(?P<mac>(?:[0-9a-f]{2}:){13}[0-9a-f]{2}) )?"
    r"(?:SRC=(?P<src>[0-9.]+) DST=(?P<dst>[0-9.]+) LEN=(?P<len>\d+) TOS=0x[0-9A-F]{2} PREC=0x[0-9A-F]{2} "
    r"TTL=(?P<ttl>\d+) ID=(?P<ipid>\d+) (?P<ipflags>(?:CE |DF |MF )*)"
    r"|SRC=(?P<src6>[0-9a-f:]+) DST=(?P<dst6>[0-9a-f:]+) LEN=(?P<len6>\d+) TC=\d+ HOPLIMIT=(?P<hoplimit>\d+) "
    r"FLOWLBL=(?P<flowlbl>\d+) )"
    r"PROTO=(?:(?P<tcp>TCP) SPT=(?P<tspt>\d+) DPT=(?P<tdpt>\d+) (?:SEQ=(?P<seq>\d+) (?P<ack>ACK=\d+) )?"
    r"WINDOW=\d+ RES=0x[0-9a-f]{2} (?P<flags>(?:(?:CWR|ECE|URG|ACK|PSH|RST|SYN|FIN) )*)URGP=\d+"
    r"|(?P<udp>UDP) SPT=(?P<uspt>\d+) DPT=(?P<udpt>\d+) LEN=\d+"
    r"|(?P<icmp>ICMP|ICMPv6) TYPE=(?P<type>\d+) CODE=(?P<code>\d+)(?: ID=(?P<iid>\d+) SEQ=(?P<iseq>\d+))?)"
    r"(?: MARK=(?P<mark>\S+))?"
)


@functools.lru_cache(maxsize=4096)
def _ethernet(mac: str) -> tuple[str, str, int]:
    """dump_mac_header()'s Ethernet MAC= value: destination, source, ethertype."""
    return mac[0:17], mac[18:35], int(mac[36:38] + mac[39:41], 16)


def _parse_usual_body(
    prefix: str, in_dev: str, out_dev: str, body: str, ref: LineRef, text: str, stamp: float | None
) -> LogRecord | None:
    """The record of a body in the usual layout (_USUAL_BODY), as _parse_nflog_body would give it;
    None for any other body.

    A packet logged at several hooks (LOG rules in the raw, mangle and filter chains, the usual way to
    follow one) prints the same body at each until routing or NAT changes it, a few lines apart: the
    record of each recent body is kept, and a body met again takes its fields from there (the record
    is a function of the body, apart from what the line and its anchor give: _same_body).
    """
    if body in _usual_bodies:
        seen = _usual_bodies[body]
        return None if seen is None else _same_body(seen, prefix, in_dev, out_dev, ref, text, stamp)
    rec = _read_usual_body(prefix, in_dev, out_dev, body, ref, text, stamp)
    if len(_usual_bodies) >= 4096:
        _usual_bodies.clear()  # bounded: a packet's lines come close together, then never again
    _usual_bodies[body] = rec
    return rec


_usual_bodies: Final[dict[str, LogRecord | None]] = {}


def _same_body(
    seen: LogRecord, prefix: str, in_dev: str, out_dev: str, ref: LineRef, text: str, stamp: float | None
) -> LogRecord:
    """The record of a line whose body is ``seen``'s: its own line, stamp, prefix and devices, every
    other field ``seen``'s (tests/test_kernlog_speed.py checks that none is left out)."""
    return LogRecord(
        ref,
        text,
        stamp,
        seen.fmt,
        prefix,
        in_dev,
        out_dev,
        seen.physin,
        seen.physout,
        seen.mac_src,
        seen.mac_dst,
        seen.ethertype,
        seen.l3,
        seen.src,
        seen.dst,
        seen.length,
        seen.ttl,
        seen.ipid,
        seen.ip_flags,
        seen.proto,
        seen.sport,
        seen.dport,
        seen.icmp_type,
        seen.icmp_code,
        seen.icmp_id,
        seen.icmp_seq,
        seen.tcp_flags,
        seen.tcp_seq,
        seen.flowlabel,
        seen.mark,
        seen.truncated,
        seen.extra,
        seen.embedded,
        seen.redacted,
        seen.mac_logged,
        seen.trace_id,
        seen.logger,
        seen.missing,
    )


def _read_usual_body(
    prefix: str, in_dev: str, out_dev: str, body: str, ref: LineRef, text: str, stamp: float | None
) -> LogRecord | None:
    m = _USUAL_BODY.fullmatch(body)
    if m is None:
        return None
    (
        physin,
        physout,
        mac,
        src,
        dst,
        length,
        ttl,
        ipid,
        ipflags,
        src6,
        dst6,
        len6,
        hoplimit,
        flowlbl,
        tcp,
        tspt,
        tdpt,
        seq,
        ack,
        flags,
        udp,
        uspt,
        udpt,
        icmp,
        itype,
        code,
        iid,
        iseq,
        mark,
    ) = m.groups()  # in _USUAL_BODY's order
    if src is not None:
        src, dst = _norm_addr(src), _norm_addr(dst)
        l3, length, ttl, ipid, flowlabel = "ipv4", int(length), int(ttl), int(ipid), None
        ip_flags = _flag_words(ipflags)
    else:
        src, dst = _norm_addr(src6), _norm_addr(dst6)
        l3, length, ttl, ipid, ip_flags, flowlabel = "ipv6", int(len6), int(hoplimit), None, (), int(flowlbl)
    if src is None or dst is None:
        return None  # not an address: the general parser says which field was redacted
    mac_dst, mac_src, ethertype = _ethernet(mac) if mac is not None else (None, None, None)
    sport = dport = icmp_type = icmp_code = icmp_id = icmp_seq = tcp_seq = None
    tcp_flags: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    if tcp is not None:
        proto, sport, dport = "TCP", int(tspt), int(tdpt)
        if seq is not None:
            tcp_seq, extra = int(seq), (ack,)  # ACK= is kept as text, as by the general parser
        tcp_flags = _flag_words(flags)
    elif udp is not None:
        proto, sport, dport = "UDP", int(uspt), int(udpt)
    else:
        proto, icmp_type, icmp_code = icmp, int(itype), int(code)
        if iid is not None:
            icmp_id, icmp_seq = int(iid), int(iseq)
    return LogRecord(
        ref,
        text,
        stamp,
        "nflog",
        prefix,
        in_dev,
        out_dev,
        intern(physin or ""),
        intern(physout or ""),
        mac_src,
        mac_dst,
        ethertype,
        l3,
        src,
        dst,
        length,
        ttl,
        ipid,
        ip_flags,
        proto,
        sport,
        dport,
        icmp_type,
        icmp_code,
        icmp_id,
        icmp_seq,
        tcp_flags,
        tcp_seq,
        flowlabel,
        mark,
        False,
        extra,
        None,
        (),
        mac is not None,
    )


@functools.lru_cache(maxsize=256)
def _flag_words(words: str) -> tuple[str, ...]:
    return tuple(words.split())


def _parse_ebt(msg: str, ref: LineRef, text: str, stamp: float | None) -> LogRecord | None:
    m = _EBT.match(msg)
    if not m:
        return None
    ethertype = int(m.group("proto"), 16)
    rest = m.group("rest")
    redacted: list[str] = []
    smac, dmac = _mac(m.group("smac")), _mac(m.group("dmac"))
    redacted += [name for name, v in (("mac_src", smac), ("mac_dst", dmac)) if v is None]
    fields: dict[str, object] = {}
    extra: tuple[str, ...] = ()
    truncated = False
    ip = _EBT_IP.match(rest) or _EBT_IP6.match(rest)
    if ip:
        proto_num = int(ip.group("proto"))
        src, dst = _norm_addr(ip.group("src")), _norm_addr(ip.group("dst"))
        redacted += [name for name, v in (("src", src), ("dst", dst)) if v is None]
        fields = {
            "l3": "ipv4" if ethertype == 0x0800 else "ipv6",
            "src": src,
            "dst": dst,
            "proto": _IP_PROTO_NAMES.get(proto_num, str(proto_num)),
            "sport": _port(ip.group("spt"), "sport", redacted),
            "dport": _port(ip.group("dpt"), "dport", redacted),
        }
        tail = rest[ip.end() :].strip()
        if tail:
            extra = (tail,)
    elif rest.strip():
        if "INCOMPLETE" in rest:
            truncated = True
        extra = (rest.strip(),)
        if ethertype in (0x0806, 0x8035):
            fields = {"l3": "arp"}
    elif ethertype == 0x0800:
        fields = {"l3": "ipv4"}
    elif ethertype == 0x86DD:
        fields = {"l3": "ipv6"}
    elif ethertype in (0x0806, 0x8035):
        fields = {"l3": "arp"}
    return LogRecord(
        ref=ref,
        text=text,
        stamp=stamp,
        fmt="ebtlog",
        prefix=m.group("prefix") or "",
        in_dev=m.group("in"),
        out_dev=m.group("out"),
        mac_src=smac,
        mac_dst=dmac,
        ethertype=ethertype,
        truncated=truncated,
        extra=extra,
        redacted=tuple(redacted),
        **fields,  # type: ignore[arg-type]
    )


def _tokens(body: str) -> list[str]:
    """Split the body on spaces, keeping bracket groups ``[...]`` and ``OPT (...)`` as one token."""
    if "[" not in body and "(" not in body:
        return body.split()  # the common case: plain KEY=value and flag tokens
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        if body[i] == " ":
            i += 1
            continue
        if body[i] == "[":
            depth, j = 0, i
            while j < n:
                if body[j] == "[":
                    depth += 1
                elif body[j] == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            out.append(body[i : j + 1])
            i = j + 1
            continue
        if body.startswith("OPT (", i):
            j = body.find(")", i)
            j = n - 1 if j < 0 else j
            out.append(body[i : j + 1])
            i = j + 1
            continue
        j = body.find(" ", i)
        j = n if j < 0 else j
        out.append(body[i:j])
        i = j
    return out


def _join_values(toks: list[str]) -> list[str]:
    """Rejoin ``KEY=`` and its value when a paste put spaces between them (``SRC=     110.110.110.108``)."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if (
            tok.endswith("=")
            and tok[:-1] in _VALUE_KEYS
            and i + 1 < len(toks)
            and "=" not in toks[i + 1]
            and not toks[i + 1].startswith("[")
        ):
            out.append(tok + toks[i + 1])
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def _parse_nflog_body(
    prefix: str,
    in_dev: str,
    out_dev: str,
    body: str,
    ref: LineRef,
    text: str,
    stamp: float | None,
    quoted: bool = False,
    tcp_tail: str = "URGP",
) -> LogRecord:
    f: dict[str, object] = {}
    extra: list[str] = []
    ip_flags: list[str] = []
    tcp_flags: list[str] = []
    proto: str | None = None
    seen_len = 0
    redacted: list[str] = []
    toks = _tokens(body)
    if "= " in body:
        toks = _join_values(toks)
    missing = () if quoted else _cut_off(toks, tcp_tail)
    if missing and not text.endswith(" ") and toks[-1] not in _TCP_FLAGS and toks[-1] not in _IP_FLAGS:
        # Every field is printed with a space after it, so without one the last token of a cut
        # record may itself be cut ("T", "TTL=6" of "TTL=64"): it is not used.
        toks = toks[:-1]
        missing = _cut_off(toks, tcp_tail)
    truncated = bool(missing)
    arp_at = toks.index("ARP") + 1 if "ARP" in toks else len(toks)
    i = 0
    while i < len(toks):
        tok = toks[i]
        i += 1
        if tok.startswith("["):
            if tok.endswith("]") and tok.startswith("[SRC=") and not quoted:
                # ICMP error: the quoted header (section 1.4). nf_log_syslog.c dump_ipv4_packet
                # recurses only once ("Only recurse once"), so deeper quotes are damage, kept as text.
                extra.append("embedded:" + tok)
                inner = _parse_nflog_body("", "", "", tok[1:-1], ref, "", None, quoted=True)
                f["embedded"] = (inner.src, inner.dst, inner.proto, inner.sport, inner.dport)
            elif tok.endswith("]"):
                extra.append(tok)
            else:
                truncated = True  # a dangling bracket means the record was cut off (section 6, 19)
                extra.append(tok)
            continue
        key, eq, val = tok.partition("=")
        if key[:1].isdigit() and key.lstrip("0123456789") in _VALUE_KEYS:
            key = key.lstrip("0123456789")  # a book's callout number glued to the field ("2SRC=")
        if not eq:
            if tok in _TCP_FLAGS and proto == "TCP":
                tcp_flags.append(tok)
            elif tok in _IP_FLAGS and proto is None:
                ip_flags.append(tok)
            elif tok == "TRUNCATED" or tok.startswith("OPT (TRUNC"):
                truncated = True
            elif tok == "INCOMPLETE":
                # "INCOMPLETE [N bytes]" is a cut-off header; a bare IPv6 "FRAG:x INCOMPLETE ID:.."
                # only means more fragments follow (trace-formats.md section 6, item 10).
                if i < len(toks) and toks[i].endswith("bytes]"):
                    truncated = True
                    i += 1
            elif tok.startswith("OPT (") and not tok.endswith(")"):
                truncated = True
                extra.append(tok)
            else:
                extra.append(tok)
            continue
        if key == "PHYSIN":
            f["physin"] = val
        elif key == "PHYSOUT":
            f["physout"] = val
        elif key == "MAC":
            f["mac_logged"] = True
            if not _MAC.match(val):
                if _HEX_ONLY.match(val):
                    extra.append(tok)  # hex bytes a paste damaged ("000:53:00:.."): unread, not masked
                elif val:
                    redacted += ["mac_src", "mac_dst"]  # "xx:xx:..", "<filtered>", "***": not bytes
            elif val.count(":") == 13:  # Ethernet: destination, source, ethertype (dump_mac_header)
                parts = val.split(":")
                f["mac_dst"] = ":".join(parts[0:6]).lower()
                f["mac_src"] = ":".join(parts[6:12]).lower()
                f["ethertype"] = _int(parts[12] + parts[13], 16)  # None when damaged (not hex)
        elif key in ("MACSRC", "MACDST") and i > arp_at:
            # After "ARP": dump_arp_packet() (nf_log_syslog.c) prints the ARP payload's sender and
            # target hardware addresses ("MACSRC=%pM IPSRC=%pI4 MACDST=%pM IPDST=%pI4"), not the
            # Ethernet header's; a request's target is 00:00:00:00:00:00. Kept as text.
            extra.append(tok)
        elif key in ("MACSRC", "MACDST"):
            f["mac_logged"] = True
            name = "mac_src" if key == "MACSRC" else "mac_dst"
            if name not in f:
                f[name] = _mac(val)
                if f[name] is None:
                    redacted.append(name)
        elif key == "MACPROTO" and "ethertype" not in f:
            f["ethertype"] = _int(val, 16)
        elif key in ("SRC", "DST"):
            name = key.lower()
            if name not in f:
                f[name] = _norm_addr(val)
                if f[name] is None:
                    redacted.append(name)
        elif key == "LEN":
            seen_len += 1
            if seen_len == 1:
                f["length"] = _int(val)
        elif key == "TOS":
            f["l3"] = "ipv4"
        elif key in ("PREC", "WINDOW", "RES", "URGP"):
            continue  # printed by dump_ipv4_packet/nf_log_dump_tcp_header; nothing here depends on them
        elif key == "TC":
            f["l3"] = "ipv6"
        elif key in ("TTL", "HOPLIMIT"):
            f["ttl"] = _int(val)
        elif key == "FLOWLBL":
            f["flowlabel"] = _int(val)
        elif key == "ID" and proto is None:
            f["ipid"] = _int(val)
        elif key == "PROTO":
            proto = val
            f["proto"] = val
        elif key == "SPT" and "sport" not in f:
            f["sport"] = _port(val, "sport", redacted)
        elif key == "DPT" and "dport" not in f:
            f["dport"] = _port(val, "dport", redacted)
        elif key == "SEQ":
            if proto in ICMP_PROTOS:
                f["icmp_seq"] = _int(val)
            elif proto == "TCP":
                f["tcp_seq"] = _int(val)
        elif key == "ID" and proto in ICMP_PROTOS:
            f["icmp_id"] = _int(val)
        elif key == "TYPE":
            f["icmp_type"] = _int(val)
        elif key == "CODE":
            f["icmp_code"] = _int(val)
        elif key == "MARK":
            f["mark"] = val
        elif key == "ARP HTYPE" or tok.startswith("HTYPE="):
            f["l3"] = "arp"
        else:
            extra.append(tok)
    if toks and toks[-1] == "ARP":
        f["l3"] = "arp"
    if "ARP" in toks:
        f["l3"] = "arp"
    return LogRecord(
        ref=ref,
        text=text,
        stamp=stamp,
        fmt="nflog",
        prefix=prefix,
        in_dev=in_dev,
        out_dev=out_dev,
        ip_flags=tuple(ip_flags),
        tcp_flags=tuple(tcp_flags),
        truncated=truncated,
        extra=tuple(extra),
        redacted=tuple(dict.fromkeys(redacted)),
        missing=missing,
        **f,  # type: ignore[arg-type]
    )


# What dump_ipv4_packet() / dump_ipv6_packet() (net/netfilter/nf_log_syslog.c) print for every IP
# packet before its protocol part, in order (pvefw-logger's print_iphdr()/print_ip6hdr() print the
# same, proxmox/pve-firewall src/pvefw-logger.c); then "PROTO=", except after an IPv4 AH fragment or
# an IPv6 non-first fragment, ESP or unknown extension header (trace-formats.md sections 1.4-1.5).
_IPV4_HEAD = ("SRC", "DST", "LEN", "TOS", "PREC", "TTL", "ID", "PROTO")
_IPV6_HEAD = ("SRC", "DST", "LEN", "TC", "HOPLIMIT", "FLOWLBL")
# The protocol part when the header could be read and the packet is not a fragment:
# nf_log_dump_tcp_header() "SPT= DPT= [SEQ= ACK=] WINDOW= RES= flags URGP=" (pvefw-logger's TCP
# part ends with the flags, no RES= or URGP=), nf_log_dump_udp_header() "SPT= DPT= LEN=", ICMP
# "TYPE= CODE=".
_PROTO_PART: Final = {
    "TCP": ("SPT", "DPT", "WINDOW"),
    "UDP": ("SPT", "DPT", "LEN"),
    "UDPLITE": ("SPT", "DPT", "LEN"),
    "ICMP": ("TYPE", "CODE"),
    "ICMPv6": ("TYPE", "CODE"),
}


_ECHO: Final = frozenset({("ICMP", "0"), ("ICMP", "8"), ("ICMPv6", "128"), ("ICMPv6", "129")})


def _cut_off(toks: list[str], tcp_tail: str) -> tuple[str, ...]:
    """The fields an IP record's format always prints that these tokens lack: a record cut off by a
    paste, a log transport or a size limit (printk's, pvefw-logger's 508 bytes) ends early.

    Only a record whose IP header dump started (a SRC= field) is judged, and only by fields the
    format prints whatever the packet: the kernel's own markers (TRUNCATED, INCOMPLETE [N bytes],
    FRAG:) and the IPv6 headers after which the line ends say the line is complete as printed.
    """
    keys = [t.partition("=")[0] for t in toks if "=" in t and not t.startswith("[")]
    if "SRC" not in keys or any(t == "TRUNCATED" or t.startswith(("FRAG", "INCOMPLETE", "OPT")) for t in toks):
        return ()
    src = next(t for t in toks if t.startswith("SRC="))
    v6 = ":" in src or "TC" in keys or "HOPLIMIT" in keys
    if v6 and ("ESP" in toks or "Unknown" in toks):
        return ()
    proto = next((t[6:] for t in toks if t.startswith("PROTO=")), None)
    part = _PROTO_PART.get(proto or "", ())
    # The kernel prints an echo's "ID=%u SEQ=%u" after TYPE= CODE= (nf_log_syslog.c
    # dump_ipv4_packet() ICMP_ECHO/ICMP_ECHOREPLY, dump_ipv6_packet() ICMPV6_ECHO_REQUEST/REPLY);
    # pvefw-logger's ICMP part (tcp_tail "") is not held to it here.
    icmp_type = next((t[5:] for t in toks if t.startswith("TYPE=")), None)
    if tcp_tail and (proto, icmp_type) in _ECHO:
        part += ("ID", "SEQ")
    if proto == "TCP" and tcp_tail and "WINDOW" in keys:
        part += (tcp_tail,)
    order = (_IPV6_HEAD + (("PROTO",) if "FLOWLBL" not in keys else ()) if v6 else _IPV4_HEAD) + part
    # A key the format prints twice (the IP header's LEN= and UDP's LEN=) is present as often as the
    # record holds it: the header's LEN= does not stand for the UDP one.
    have = Counter(keys[keys.index("SRC") :])
    seen: Counter[str] = Counter()
    present = []
    for k in order:
        seen[k] += 1
        present.append(seen[k] <= have[k])
    last = max(i for i, p in enumerate(present) if p)
    if not all(present[:last]):
        return ()  # a field is missing before the last one: an edited line, not one cut off at its end
    return order[last + 1 :]


def logger_note(rec: LogRecord) -> str | None:
    """Say which daemon wrote a record that the kernel did not, and what its layout proves."""
    if rec.logger != PVEFW_LOGGER:
        return None
    absent = " and ".join(n for n, v in (("IN=", rec.in_dev), ("OUT=", rec.out_dev)) if not v)
    devices = (
        f"; it prints IN= and OUT= only for a device the packet has (print_pkt()), so the missing "
        f"{absent} means no such device, as an empty one does in a kernel LOG line"
        if absent
        else ""
    )
    policy = _PVE_POLICY.search(rec.prefix)
    said = (
        f" '{policy['said']}' is the NFLOG rule pve-firewall puts right before the last rule of {policy['chain']}, "
        f"which it writes for the {policy['policy']} policy configured for that chain (src/PVE/Firewall.pm "
        f"ruleset_add_chain_policy(): {_PVE_POLICY_RULE[policy['policy']]}). "
        "It proves the packet matched no earlier rule of that chain that ended it; "
        "it is a rule of a user chain, not the built-in chain's iptables policy, and it does not say "
        "which rule would have let the packet through."
        if policy
        else ""
    )
    return (
        "Written by Proxmox VE's pvefw-logger from an NFLOG rule of pve-firewall, not by the kernel's "
        f"LOG target (proxmox/pve-firewall src/pvefw-logger.c){devices}. Its time stamp is the "
        f"logger's clock; it prints no RES= or URGP=.{said}"
    )


# The header pvefw-logger prints (chain) and a chain-policy message of pve-firewall ("policy DROP: ").
_PVE_POLICY_RULE: Final = {
    "DROP": "-j DROP",
    "REJECT": "-g PVEFW-reject, which drops broadcasts and ICMP and rejects the rest",
}
_PVE_POLICY: Final = re.compile(r"^\d+ [0-7] (?P<chain>\S+) .* (?P<said>policy (?P<policy>DROP|REJECT)):")


# ARP opcodes (include/uapi/linux/if_arp.h ARPOP_REQUEST, ARPOP_REPLY).
_ARP_OPS: Final = {"1": "request", "2": "reply"}


def arp_summary(rec: LogRecord) -> str | None:
    """Describe an nf_log ARP record by its ARP fields (dump_arp_packet(), nf_log_syslog.c prints
    "ARP HTYPE= PTYPE= OPCODE=" and, for Ethernet/IPv4, "MACSRC= IPSRC= MACDST= IPDST=" of the ARP
    payload); None when the record has none."""
    if rec.l3 != "arp" or rec.fmt != "nflog":
        return None
    fields = dict(t.split("=", 1) for t in rec.extra if "=" in t)
    op = fields.get("OPCODE")
    what = f"ARP {_ARP_OPS.get(op or '', f'opcode {op}')}" if op else "ARP packet"
    if "IPSRC" in fields and "IPDST" in fields:
        return f"{what} {fields['IPSRC']} ({fields.get('MACSRC', '?')}) → {fields['IPDST']}"
    return what


def cut_note(rec: LogRecord) -> str:
    """Say what a cut-off record lacks and what is therefore unknown."""
    last = rec.text.rstrip().rsplit(" ", 1)[-1]
    unknown = [
        what
        for what, needs in (
            ("the protocol", {"PROTO"}),
            ("the ports", {"PROTO", "SPT", "DPT"}),
            ("the TCP flags", {"PROTO", "WINDOW", "URGP"}),
            ("the IP ID", {"ID"}),
            ("the TTL", {"TTL", "HOPLIMIT"}),
            ("the ICMP type", {"TYPE"}),
            ("the ICMP echo id and sequence", {"SEQ"}),
        )
        if needs & set(rec.missing)
        # An ID= missing after a whole IP header is the echo's (_cut_off).
        and not (what == "the IP ID" and "SEQ" in rec.missing and "TTL" not in rec.missing)
        and not (what == "the TCP flags" and rec.proto not in (None, "TCP"))
        and not (what == "the ports" and rec.proto in ICMP_PROTOS)
    ]
    # The last token of a cut record without its trailing space is not read (it may itself be cut,
    # "TYPE=8" of "TYPE=80"), so it heads the missing fields: it is there, but not read, not missing
    # (firewalld/firewalld#1015: "... PROTO=ICMP TYPE=8").
    cut = rec.missing[:1] if rec.missing and last.startswith(f"{rec.missing[0]}=") else ()
    gone = rec.missing[len(cut) :]
    head = f"The record is cut off after {last!r}"
    if cut:
        head += f", a field the cut may have shortened, so {cut[0]} is not read"
    if gone:
        head += (
            f"{'; ' if cut else ': '}{', '.join(gone)} {'is' if len(gone) == 1 else 'are'} missing "
            f"(the log format always prints {'it' if len(gone) == 1 else 'them'})"
        )
    return (
        f"{head}, so {', '.join(unknown) or 'those fields'} {'is' if len(unknown) == 1 else 'are'} unknown; "
        f"nothing here is concluded from {'it' if len(unknown) == 1 else 'them'}."
    )
