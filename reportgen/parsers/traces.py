"""Parse rule-tracing output: ``xtables-monitor --trace``, ``nft monitor trace`` and legacy ``TRACE:``.

The monitors print nf_tables' trace netlink events (NFT_MSG_TRACE). The kernel sends the packet headers
with the first event of each (packet, base chain) pair, then one event per rule that matched, the
policy or return (net/netfilter/nf_tables_trace.c), so one *visit* of a base chain is: a packet line
followed by rule/policy lines with the same trace id. Each visit becomes one event (one hop) here,
carrying the rules it hit. The trace id is not enough to follow a packet: the kernel may give the
same packet a new id at a later hook (seen on this machine: raw PREROUTING and filter FORWARD of one
SYN had different ids), so packets are still correlated by their headers.

Where a chain sits (its hook) is never read from the words of its name. It comes from, in order: the
nft ruleset snapshot; the chains that a known generator always creates as base chains (BASE_CHAINS,
each entry citing the project source that defines it); and otherwise the trace itself, which can only
narrow the hook down to the candidates its devices allow (see ``device_hooks``).

Formats: ../shared/reference/trace-formats.md sections 3.1, 3.2 and 4 (iptables xtables-monitor.c,
nftables src/trace.c, ip_tables.c). Streaming: each visit is emitted once it is complete (the next
packet line for the same id, a terminal verdict of its base chain, a line of another trace id), and at
the end of the input.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from sys import intern
from types import MappingProxyType
from typing import Any, Final, cast

from reportgen.model import HitKind, LineRef, LogRecord, RuleHit
from reportgen.netfilter import (
    ARP,
    BRIDGE,
    FORWARD,
    HOOKS,
    INET,
    INPUT,
    IPV4,
    IPV6,
    NETDEV,
    OUTPUT,
    POSTROUTING,
    PREROUTING,
    tables_at,
)
from reportgen.parsers.nflog import _IP_PROTO_NAMES

# Trace ids are printed "%08x" by both monitors, but pastes shorten or re-number them (nftables'
# own test replaces them with "0"), so any run of hex digits is an id.
_XT_PACKET = re.compile(r"^PACKET: (?P<fam>\d+) (?P<id>[0-9a-f]+) (?P<rest>.*)$")
_XT_TRACE = re.compile(
    r"^ ?TRACE: (?P<fam>\d+) (?P<id>[0-9a-f]+) (?P<table>[^:\s]+):(?P<chain>[^:\s]+):"
    r"(?:rule:0x(?P<handle>[0-9a-f]+):(?P<verdict>[A-Z]+(?::\S+)?|0x[0-9a-f]+) *(?P<rule>.*)"
    r"|policy:(?P<policy>\S+) ?|return:(?P<ret>\S*))$"
)
_NFT_FAMILY_WORD = r"(?P<family>ip6?|inet|arp|bridge|netdev|unknown)"
_NFT = re.compile(
    # The family word is missing in shortened pastes (nftables commit "src: add conntrack information
    # to trace monitor mode": "trace id 32 t PRE_RAW packet: ..."); the family is then unknown.
    rf"^trace id (?P<id>[0-9a-f]+) (?:{_NFT_FAMILY_WORD} )?(?P<table>\S+) (?P<chain>\S+) "
    r"(?P<kind>packet: |conntrack: |rule |unknown rule handle |policy |verdict )(?P<rest>.*)$"
)
_NFT_VERDICT = re.compile(r"\(verdict (?P<v>[^()]*)\)$")
_NFT_HANDLE = re.compile(r"# handle (\d+)$")
# What pastes put before a monitor line: indentation, "> " quote marks, and the line numbers of the
# xtables-monitor(8) EXAMPLE OUTPUT (" 1 TRACE: 2 fc475095 ...", as man(1) renders it).
_PASTE_LEAD = re.compile(r"^[>\s]*(?:\d+\s+(?=(?:PACKET|TRACE): ))?")
# A PACKET record that a man page or mail client wrapped: the next line holds only fields and flags.
_XT_WRAPPED = re.compile(r"^\s*(?:(?:[A-Z]+=\S*|[A-Z]{2,3}|FRAG:\d+)\s*)+$")


def _unquote(text: str) -> str:
    return _PASTE_LEAD.sub("", text, count=1)


# Legacy TRACE: ip_tables.c/ip6_tables.c trace_packet() logs "TRACE: %s:%s:%s:%u " (table, chain,
# "rule"/"return"/"policy", rule number) as the prefix of a normal LOG line. Pastes sometimes lose the
# "TRACE: " word; such a record is still recognisably TRACE when its table is one of ip_tables' own
# (iptables(8) TABLES: raw, mangle, nat, filter, security), which no free-form prefix is likely to be.
# The kernel ends the prefix with one space; column-aligned pastes pad it with more.
# A column-aligned paste may cut the ":type:num" tail off a long chain name
# ("filter:DOCKER-ISOLATION-STAGE-1 IN=..."): the table and chain still place the record in the walk.
_TRACE_PREFIX = re.compile(
    r"^(?P<word>TRACE: )?(?P<table>[^:\s]+):(?P<chain>[^:\s]+(?::[^:\s]+)*?)"
    r"(?::(?P<type>rule|return|policy):(?P<num>\d+))?\s*$"
)
LEGACY_TABLES = frozenset({"raw", "mangle", "nat", "filter", "security"})


@functools.lru_cache(maxsize=4096)  # asked for every LOG record; a log has few distinct prefixes
def legacy_trace_prefix(prefix: str) -> re.Match[str] | None:
    """Match a legacy TRACE prefix (with or without its "TRACE: " word); None when it is not one."""
    m = _TRACE_PREFIX.match(prefix)
    if m is None or (not m.group("word") and m.group("table") not in LEGACY_TABLES):
        return None
    if m.group("type") is None and (m.group("table") not in LEGACY_TABLES or not prefix.endswith(" ")):
        return None  # a cut tail is accepted only for ip_tables' own tables, as a column of the paste
    return m


def table_hooks(table: str) -> tuple[str, ...]:
    """The hooks an ip_tables table registers (iptables(8) TABLES; netfilter.py's priority tables)."""
    return tuple(h for h in HOOKS if table in tables_at(IPV4, h))


def device_hooks(in_dev: str, out_dev: str) -> tuple[str, ...]:
    """The hooks whose hook state carries these devices, in hook order.

    nf_log and the trace netlink event print the hook state's in/out devices (nf_log_syslog.c
    nf_log_dump_packet_common, nf_tables_trace.c nf_trace_fill_dev_info). ip_rcv() calls PREROUTING
    with (dev, NULL) and ip_local_deliver() INPUT with (skb->dev, NULL); ip_forward() calls FORWARD
    with (in, out); __ip_local_out() calls OUTPUT with (NULL, out); ip_output() calls POSTROUTING
    with (skb->dev, out), where skb->dev is the input device of a forwarded packet and unset for a
    local one (net/ipv4/ip_input.c, ip_forward.c, ip_output.c; the bridge hooks pass the ports the
    same way: net/bridge/br_input.c, br_forward.c). br_netfilter's POSTROUTING passes (NULL, out)
    (net/bridge/br_netfilter_hooks.c br_nf_post_routing), so POSTROUTING appears in both sets.
    """
    if in_dev and out_dev:
        return (FORWARD, POSTROUTING)
    if in_dev:
        return (PREROUTING, INPUT)
    if out_dev:
        return (OUTPUT, POSTROUTING)
    return HOOKS


def _num(text: str, base: int = 10) -> int | None:
    """A number from a field, or None when the line was cut or damaged (never raise on input)."""
    try:
        return int(text, base)
    except ValueError:
        return None


def _mac(text: str) -> str:
    """Zero-pad an ether_ntoa() MAC (2:42:ac:11:0:2 -> 02:42:ac:11:00:02)."""
    return ":".join(p.zfill(2) for p in text.lower().split(":"))


# ---------------------------------------------------------------------------------------------------
# Where a chain sits.

# nft(8) "ADDRESS FAMILIES": the family words nft prints, and the family names reportgen uses.
NFT_FAMILY = {"ip": IPV4, "ip6": IPV6, "inet": INET, "arp": ARP, "bridge": BRIDGE, "netdev": NETDEV}
# NFPROTO_* numbers (include/uapi/linux/netfilter.h) that xtables-monitor prints as the family.
_NFPROTO = {"1": INET, "2": IPV4, "3": ARP, "5": NETDEV, "7": BRIDGE, "10": IPV6}
# The hooks of each family (nft(8) "ADDRESS FAMILIES"): arp has input and output; netdev has ingress
# and egress, which are device hooks outside the IP/bridge hook graph (netfilter.py has no stage for
# them), so netdev chains are reported as not placed.
FAMILY_HOOKS: dict[str, tuple[str, ...]] = {
    IPV4: HOOKS,
    IPV6: HOOKS,
    INET: HOOKS,
    BRIDGE: HOOKS,
    ARP: (INPUT, OUTPUT),
    NETDEV: (),
}
_NFT_HOOK = {"prerouting": PREROUTING, "input": INPUT, "forward": FORWARD, "output": OUTPUT, "postrouting": POSTROUTING}


def nft_hook(word: str) -> str | None:
    """The hook of an nft ``hook WORD`` clause; None for netdev ingress/egress (no stage for them)."""
    return _NFT_HOOK.get(word.lower())


def _ipt_builtin() -> dict[tuple[str, str, str], str]:
    # iptables-nft and ebtables-nft create each table's base chains named after their hooks
    # (iptables/nft.c, xtables_ipv4[] / xtables_bridge[] builtin_table: e.g. {"nat", ... {"PREROUTING",
    # "nat", NF_INET_PRE_ROUTING, NF_IP_PRI_NAT_DST}}). ebtables' broute table uses "BROUTING".
    out = {}
    for fam in (IPV4, IPV6):
        for hook in HOOKS:
            for table in tables_at(fam, hook):
                out[(fam, table, hook)] = hook
    for hook in HOOKS:
        for table in tables_at(BRIDGE, hook):
            out[(BRIDGE, table, "BROUTING" if table == "broute" else hook)] = hook
    return out


def _generated(fam: tuple[str, ...], table: str, chains: dict[str, str]) -> dict[tuple[str, str, str], str]:
    return {(f, table, c): h for f in fam for c, h in chains.items()}


# Base chains that firewall generators always create, with their hooks. A chain is looked up by
# (family, table, name) exactly: a user chain elsewhere that happens to share a word is not matched.
BASE_CHAINS: dict[tuple[str, str, str], str] = {
    **_ipt_builtin(),
    # OpenWrt firewall4, root/usr/share/firewall4/templates/ruleset.uc: table inet fw4 with chains
    # input/forward/output (type filter), prerouting (filter, for helpers), dstnat (type nat hook
    # prerouting), srcnat (type nat hook postrouting), raw_prerouting, raw_output, mangle_prerouting,
    # mangle_postrouting, mangle_input, mangle_output, mangle_forward.
    **_generated(
        (INET,),
        "fw4",
        {
            "prerouting": PREROUTING,
            "input": INPUT,
            "forward": FORWARD,
            "output": OUTPUT,
            "dstnat": PREROUTING,
            "srcnat": POSTROUTING,
            "raw_prerouting": PREROUTING,
            "raw_output": OUTPUT,
            "mangle_prerouting": PREROUTING,
            "mangle_postrouting": POSTROUTING,
            "mangle_input": INPUT,
            "mangle_output": OUTPUT,
            "mangle_forward": FORWARD,
        },
    ),
    # firewalld, src/firewall/core/nftables.py: IPTABLES_TO_NFT_HOOK maps (table, chain) to a hook and
    # the base chain is named "%s_%s" % (table, chain) in table inet firewalld (raw_PREROUTING in
    # releases before 0.9, filter_PREROUTING from 0.9).
    **_generated(
        (INET,),
        "firewalld",
        {
            "raw_PREROUTING": PREROUTING,
            "mangle_PREROUTING": PREROUTING,
            "nat_PREROUTING": PREROUTING,
            "nat_POSTROUTING": POSTROUTING,
            "nat_OUTPUT": OUTPUT,
            "filter_PREROUTING": PREROUTING,
            "filter_INPUT": INPUT,
            "filter_FORWARD": FORWARD,
            "filter_OUTPUT": OUTPUT,
        },
    ),
    # VyOS (vyos-1x) data/templates/conntrack/nftables-ct.j2: tables ip/ip6 vyos_conntrack, chains
    # PREROUTING (hook prerouting priority -300), PREROUTING_HELPER (prerouting, -5), OUTPUT (output,
    # -300), OUTPUT_HELPER (output, -5).
    **_generated(
        (IPV4, IPV6),
        "vyos_conntrack",
        {"PREROUTING": PREROUTING, "PREROUTING_HELPER": PREROUTING, "OUTPUT": OUTPUT, "OUTPUT_HELPER": OUTPUT},
    ),
    # vyos-1x data/templates/firewall/nftables.j2: table ip vyos_filter has VYOS_FORWARD_<prio>,
    # VYOS_INPUT_<prio>, VYOS_OUTPUT_<prio>, VYOS_PREROUTING_<prio> (prio is "filter" or "raw") and
    # VYOS_FRAG_MARK (prerouting); table ip6 vyos_filter the VYOS_IPV6_* equivalents and
    # VYOS_FRAG6_MARK; table bridge vyos_filter the VYOS_* ones.
    **_generated(
        (IPV4, BRIDGE),
        "vyos_filter",
        {f"VYOS_{h}_{p}": h for h in (FORWARD, INPUT, OUTPUT, PREROUTING) for p in ("filter", "raw")},
    ),
    **_generated((IPV4,), "vyos_filter", {"VYOS_FRAG_MARK": PREROUTING}),
    **_generated(
        (IPV6,),
        "vyos_filter",
        {
            **{f"VYOS_IPV6_{h}_{p}": h for h in (FORWARD, INPUT, OUTPUT, PREROUTING) for p in ("filter", "raw")},
            "VYOS_FRAG6_MARK": PREROUTING,
        },
    ),
}


@dataclass(frozen=True)
class Placement:
    """The hook of a base chain, or every hook it could be at."""

    hook: str | None
    candidates: tuple[str, ...]


ChainHooks = dict[tuple[str, str, str], str]  # (family, table, chain) -> hook, from a ruleset snapshot


def place_chain(family: str, table: str, chain: str, snapshot: ChainHooks) -> Placement:
    """Place a traced base chain from the snapshot or the generator table; else all the family's hooks."""
    hook = snapshot.get((family, table, chain))
    if hook is not None:
        return Placement(hook, ())
    hook = BASE_CHAINS.get((family, table, chain))
    if hook is not None:
        return Placement(hook, ())
    return Placement(None, FAMILY_HOOKS.get(family, HOOKS))


# ---------------------------------------------------------------------------------------------------
# Visits.


@dataclass(init=False)
class Visit:
    """One base-chain visit being assembled."""

    ref: LineRef
    text: str
    fmt: str
    family: str
    table: str
    chain: str
    trace_id: str
    fields: dict[str, object]
    rules: list[RuleHit] = field(default_factory=list)
    extra: list[LineRef] = field(default_factory=list)
    place: Placement | None = None

    # Written out so that mypyc compiles it: a dataclass's own __init__ is interpreted (model.py).
    def __init__(
        self,
        ref: LineRef,
        text: str,
        fmt: str,
        family: str,
        table: str,
        chain: str,
        trace_id: str,
        fields: dict[str, object],
        rules: list[RuleHit] | None = None,
        extra: list[LineRef] | None = None,
        place: Placement | None = None,
    ) -> None:
        self.ref = ref
        self.text = text
        self.fmt = fmt
        self.family = family
        self.table = table
        self.chain = chain
        self.trace_id = trace_id
        self.fields = fields
        self.rules = [] if rules is None else rules
        self.extra = [] if extra is None else extra
        self.place = place

    def record(self) -> LogRecord:
        # Positional, each field read with LogRecord's own default: a call with **fields went through
        # keyword parsing of LogRecord's 38 parameters (and a copy of the dict), once per visit. Each
        # read is f.get(...) on the dict itself, which mypyc compiles to a dict lookup; a bound
        # ``get`` kept in a variable was a generic Python call per field.
        f = self.fields
        return LogRecord(
            self.ref,
            self.text,
            None,
            self.fmt,
            "",
            str(f.get("in_dev", "")),
            str(f.get("out_dev", "")),
            cast(str, f.get("physin", "")),
            cast(str, f.get("physout", "")),
            cast("str | None", f.get("mac_src")),
            cast("str | None", f.get("mac_dst")),
            cast("int | None", f.get("ethertype")),
            cast("str | None", f.get("l3")),
            cast("str | None", f.get("src")),
            cast("str | None", f.get("dst")),
            cast("int | None", f.get("length")),
            cast("int | None", f.get("ttl")),
            cast("int | None", f.get("ipid")),
            cast("tuple[str, ...]", f.get("ip_flags", ())),
            cast("str | None", f.get("proto")),
            cast("int | None", f.get("sport")),
            cast("int | None", f.get("dport")),
            cast("int | None", f.get("icmp_type")),
            cast("int | None", f.get("icmp_code")),
            cast("int | None", f.get("icmp_id")),
            cast("int | None", f.get("icmp_seq")),
            cast("tuple[str, ...]", f.get("tcp_flags", ())),
            cast("int | None", f.get("tcp_seq")),
            cast("int | None", f.get("flowlabel")),
            cast("str | None", f.get("mark")),
            cast(bool, f.get("truncated", False)),
            cast("tuple[str, ...]", f.get("extra", ())),
            cast("tuple[str | None, str | None, str | None, int | None, int | None] | None", f.get("embedded")),
            cast("tuple[str, ...]", f.get("redacted", ())),
            cast(bool, f.get("mac_logged", False)),
            self.trace_id,
            cast("str | None", f.get("logger")),
            cast("tuple[str, ...]", f.get("missing", ())),
        )


def rule_proto(rules: list[RuleHit]) -> str | None:
    """The protocol a matched iptables rule proves: a rule line is only sent for a rule whose matches
    all passed (nf_tables_core.c: nft_trace_packet runs after the rule's expressions), so "-p udp" in
    it (not "! -p udp") proves the packet is UDP."""
    proto = next((p for r in rules if r.kind is HitKind.RULE for p in _IPT_PROTO.findall(r.text)), None)
    return _PROTO_NAMES.get(proto, proto.upper()) if proto else None


def nft_rule_ports(rules: list[RuleHit]) -> dict[str, object]:
    """The protocol and ports a matched nft rule proves ("tcp dport 443 accept"): the kernel traces a
    rule only once all its expressions matched (nf_tables_core.c nft_do_chain), so an equality match
    in it (not "!=", a set or a range) holds for the packet."""
    out: dict[str, object] = {}
    for r in rules:
        if r.kind is not HitKind.RULE:
            continue
        for proto, key, port in _NFT_PORT.findall(r.text):
            out.setdefault("proto", _PROTO_NAMES.get(proto, proto.upper()))
            out.setdefault(key, int(port))
    return out


_NFT_PORT = re.compile(r"(?:^|\s)(tcp|udp|sctp|dccp) (sport|dport) (\d+)(?=\s|$)")
_IPT_PROTO = re.compile(r"(?<!! )-p (tcp|udp|icmp|ipv6-icmp|icmpv6|udplite|sctp|dccp)\b")
_PROTO_NAMES = {
    "tcp": "TCP",
    "udp": "UDP",
    "icmp": "ICMP",
    "ipv6-icmp": "ICMPv6",
    "icmpv6": "ICMPv6",
    "udplite": "UDPLITE",
}


# ---------------------------------------------------------------------------------------------------
# xtables-monitor packet lines.

_XT_KEYS: dict[str, tuple[str, Callable[[str], object]]] = {
    "IN": ("in_dev", str),
    "OUT": ("out_dev", str),
    "MACSRC": ("mac_src", _mac),
    "MACDST": ("mac_dst", _mac),
    "MACPROTO": ("ethertype", lambda v: _num(v, 16)),
    "SRC": ("src", str),
    "DST": ("dst", str),
    "LEN": ("length", _num),
    "TTL": ("ttl", _num),
    "HOPLIMIT": ("ttl", _num),
    "ID": ("ipid", _num),
    "FLOWLBL": ("flowlabel", _num),
    "SPORT": ("sport", _num),
    "DPORT": ("dport", _num),
    "MARK": ("mark", str),
}
# xtables-monitor prints "ID=%d" and "OPT (%02X...)" with no space after them, so flags and the next
# key stick to them (trace-formats.md section 6, item 14).
_XT_GLUE = re.compile(r"(ID=\d+|\))(?=[A-Z])")
_XT_FLAGS = frozenset({"SYN", "ACK", "FIN", "RST", "PSH", "URG"})
# Kernel LOG order of TCP flags (nf_log_dump_tcp_header), so every source prints the same tuple.
_TCP_ORDER = ("CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN")
_TCP_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20, "ECE": 0x40, "CWR": 0x80}
_ARPHRD_LOOPBACK = 0x304  # include/uapi/linux/if_arp.h; loopback uses eth_header (drivers/net/loopback.c)


def raw_bytes(text: str) -> bytes | None:
    """Decode an xtables-monitor ``NH=``/``LL=`` dump.

    xtables-monitor.c prints them with ``const char *nh; ... printf("%02x", nh[i])``: char is signed on
    x86, so a byte of 0x80 or more is sign-extended to an int and printed as eight digits
    ("ffffffc0" is 0xc0). A byte below 0x80 is two digits, so a byte never starts with a digit >= 8
    unless it is such an eight-digit group. Where char is unsigned (arm64) every byte is two digits;
    a dump with a high first digit not followed by "ffffff" is read that way.
    """
    text = text.lower()
    if not text or any(c not in "0123456789abcdef" for c in text):
        return None
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] in "89abcdef":
            if not (text.startswith("ffffff", i) and len(text) >= i + 8 and text[i + 6] in "89abcdef"):
                return bytes.fromhex(text) if len(text) % 2 == 0 else None
            out.append(int(text[i + 6 : i + 8], 16))
            i += 8
        elif i + 2 <= len(text):
            out.append(int(text[i : i + 2], 16))
            i += 2
        else:
            return None
    return bytes(out)


def decode_network_header(data: bytes) -> dict[str, object]:
    """The fields of an IPv4, IPv6 or ARP header (and of the transport header when the dump has it).

    nf_tables_trace.c nf_trace_fill_pkt_info() dumps up to NFT_TRACETYPE_NETWORK_HSIZE (40) bytes from
    the network header; when the transport offset is not known (tprot_set false) the dump runs on into
    the transport header. Fields the dump does not reach stay unset (unknown), never defaulted.
    """
    f: dict[str, object] = {}
    if len(data) >= 20 and data[0] >> 4 == 4:
        ihl = (data[0] & 0x0F) * 4
        frag = int.from_bytes(data[6:8], "big")
        f.update(
            l3=IPV4,
            length=int.from_bytes(data[2:4], "big"),
            ipid=int.from_bytes(data[4:6], "big"),
            ttl=data[8],
            src=str(ipaddress.IPv4Address(data[12:16])),
            dst=str(ipaddress.IPv4Address(data[16:20])),
        )
        f["ip_flags"] = tuple(n for n, b in (("CE", 0x8000), ("DF", 0x4000), ("MF", 0x2000)) if frag & b)
        proto, l4 = data[9], data[ihl:] if frag & 0x1FFF == 0 else b""
    elif len(data) >= 40 and data[0] >> 4 == 6:
        f.update(
            l3=IPV6,
            length=int.from_bytes(data[4:6], "big") + 40,
            ttl=data[7],
            flowlabel=int.from_bytes(data[1:4], "big") & 0xFFFFF,
            src=str(ipaddress.IPv6Address(data[8:24])),
            dst=str(ipaddress.IPv6Address(data[24:40])),
        )
        proto, l4 = data[6], data[40:]
    elif len(data) >= 8 and data[2:4] == b"\x08\x00" and data[4:6] == b"\x06\x04":
        # ARP for IPv4 over Ethernet (RFC 826; include/uapi/linux/if_arp.h struct arphdr + payload).
        f["l3"] = "arp"
        if len(data) >= 28:
            f.update(src=str(ipaddress.IPv4Address(data[14:18])), dst=str(ipaddress.IPv4Address(data[24:28])))
        return f
    else:
        return f
    f["proto"] = _IP_PROTO_NAMES.get(proto, str(proto))
    if proto in (6, 17, 136) and len(l4) >= 4:
        f.update(sport=int.from_bytes(l4[0:2], "big"), dport=int.from_bytes(l4[2:4], "big"))
        if proto == 6 and len(l4) >= 14:
            f["tcp_flags"] = tuple(n for n in _TCP_ORDER if l4[13] & _TCP_BITS[n])
    elif proto in (1, 58) and len(l4) >= 2:
        f.update(icmp_type=l4[0], icmp_code=l4[1])
        if l4[0] in (0, 8, 128, 129) and len(l4) >= 8:  # echo request/reply carry id and sequence
            f.update(icmp_id=int.from_bytes(l4[4:6], "big"), icmp_seq=int.from_bytes(l4[6:8], "big"))
    return f


def _xt_fields(rest: str) -> dict[str, object]:
    """The fields of a PACKET line (xtables-monitor.c trace_print_packet).

    It prints no protocol: only ports (for TCP, UDP, UDP-Lite, SCTP and DCCP alike) and, for TCP, the
    flags. So TCP flags prove TCP; ports alone prove nothing about the protocol, and ICMP headers are not
    printed at all (iptables 1.8.9). Those fields stay unknown unless a NH= dump or the matched rule
    shows them.
    """
    toks = _XT_GLUE.sub(r"\1 ", rest).split()
    f: dict[str, object] = {}
    flags: set[str] = set()
    ip_flags: list[str] = []
    ll_type: int | None = None
    i = 0
    while i < len(toks):
        tok = toks[i]
        i += 1
        key, eq, val = tok.partition("=")
        if not eq:
            if tok in _XT_FLAGS:
                flags.add(tok)
            elif tok in ("DF", "MF", "CE"):
                ip_flags.append(tok)
            elif ll_type is not None:
                data = raw_bytes(tok)  # LL=0x%x is followed by the header dump as its own token
                if data is not None and ll_type == _ARPHRD_LOOPBACK and len(data) >= 14:
                    f["ethertype"] = int.from_bytes(data[12:14], "big")
                ll_type = None
            continue
        if key in _XT_KEYS:
            name, conv = _XT_KEYS[key]
            f[name] = conv(val)
        elif key in ("TOS", "TC"):  # only IPv4 prints TOS, only IPv6 TC (xtables-monitor.c)
            f["l3"] = IPV4 if key == "TOS" else IPV6
        elif key == "NFPROTO":
            fam = _NFPROTO.get(val)
            if fam in (IPV4, IPV6):
                f["l3"] = fam
        elif key == "LL":
            ll_type = _num(val.removeprefix("0x"), 16)
        elif key == "NH":
            data = raw_bytes(val)
            if data is not None:
                f.update(decode_network_header(data))
    if f.get("src") and "l3" not in f:
        f["l3"] = IPV6 if ":" in str(f["src"]) else IPV4
    if f.get("ethertype") == 0x0806 and "l3" not in f:
        f["l3"] = "arp"
    if flags:
        f["proto"] = "TCP"
        f["tcp_flags"] = tuple(n for n in _TCP_ORDER if n in flags)
    if ip_flags:
        f["ip_flags"] = tuple(ip_flags)
    return f


# ---------------------------------------------------------------------------------------------------
# nft monitor trace packet lines.


# What follows a family word in a packet line (nftables src/trace.c trace_print_packet prints the
# headers as payload expressions, "ip saddr 10.0.0.1"): the field it sets and how to read the value.
# Only these words start a field, so every other token (a value, "dscp cs0") is skipped with one lookup.
_NFT_PAIRS: dict[tuple[str, str], tuple[str, str]] = {
    ("ether", "saddr"): ("mac", "mac_src"),
    ("ether", "daddr"): ("mac", "mac_dst"),
    ("ip", "saddr"): ("addr4", "src"),
    ("ip", "daddr"): ("addr4", "dst"),
    ("ip6", "saddr"): ("addr6", "src"),
    ("ip6", "daddr"): ("addr6", "dst"),
    ("ip", "ttl"): ("num", "ttl"),
    ("ip", "id"): ("num", "ipid"),
    ("ip", "length"): ("num", "length"),
    ("ip", "protocol"): ("proto", "proto"),
    ("ip6", "hoplimit"): ("num", "ttl"),
    ("ip6", "flowlabel"): ("num", "flowlabel"),
    ("ip6", "length"): ("len6", "length"),
    ("ip6", "nexthdr"): ("proto", "proto"),
    ("arp", "operation"): ("arp", ""),
    ("tcp", "sport"): ("port", "sport"),
    ("tcp", "dport"): ("port", "dport"),
    ("udp", "sport"): ("port", "sport"),
    ("udp", "dport"): ("port", "dport"),
    ("tcp", "flags"): ("flags", "tcp_flags"),
    **{(t, k): ("icmp", k) for t in ("icmp", "icmpv6") for k in ("type", "code", "id", "sequence")},
}
_NFT_WORDS = frozenset({"iif", "oif"} | {t for t, _ in _NFT_PAIRS})


@functools.lru_cache(maxsize=4096)
def _nft_mac(text: str) -> str:
    return _mac(text)


# The packet line of a TCP/IPv4 packet as nftables src/trace.c trace_print_packet() prints it on an
# inet, ip or bridge chain (meta iif/oif, the Ethernet header, the IPv4 header, the TCP header), the
# usual line of a trace: one fullmatch reads it as the token walk below does (the skipped dscp and ecn
# values are checked not to be a word the walk would read). Anything else takes the walk.
_NFT_USUAL = re.compile(
    r'(?:iif "(?P<iif>[^"\s]*)" )?(?:oif "(?P<oif>[^"\s]*)" )?'
    r"(?:ether saddr (?P<smac>\S+) ether daddr (?P<dmac>\S+) )?"
    r"ip saddr (?P<src>[0-9.]+) ip daddr (?P<dst>[0-9.]+) ip dscp (?P<dscp>[a-z0-9]+) ip ecn (?P<ecn>[a-z0-9-]+) "
    r"ip ttl (?P<ttl>[0-9]+) ip id (?P<id>[0-9]+) (?:ip protocol (?P<proto>tcp) )?ip length (?P<len>[0-9]+) "
    r"tcp sport (?P<sport>[0-9]+) tcp dport (?P<dport>[0-9]+) tcp flags == (?P<flags>\S+) tcp window [0-9]+"
)


# The usual packet line whole, as nft prints it (with its family word): _NFT and then _NFT_USUAL on
# what follows "packet: " in one match (the trailing \s* is what NftTraceParser.feed strips). Where
# this matches, _NFT reads the same id, family, table and chain: its family word, table and chain are
# each one token, so the optional family is taken whenever it is there, and "packet: " is its first kind.
_NFT_USUAL_LINE = re.compile(
    rf"trace id (?P<tid>[0-9a-f]+) {_NFT_FAMILY_WORD} (?P<table>\S+) (?P<chain>\S+) packet: {_NFT_USUAL.pattern}\s*"
)
_NFT_HEAD_GROUPS = 4  # the groups of _NFT_USUAL_LINE before _NFT_USUAL's


def _nft_fields(rest: str) -> dict[str, object]:
    m = _NFT_USUAL.fullmatch(rest)
    usual = None if m is None else _nft_usual_fields(m.groups())
    if usual is not None:
        return usual
    f: dict[str, object] = {}
    toks = rest.split()
    n = len(toks)
    i = 0
    while i < n:
        t = toks[i]
        i += 1
        if t not in _NFT_WORDS:
            continue
        if t == "iif" or t == "oif":
            f["in_dev" if t == "iif" else "out_dev"] = intern(toks[i].strip('"')) if i < n else ""
            i += 1
            continue
        pair = _NFT_PAIRS.get((t, toks[i] if i < n else ""))
        if pair is None:
            continue
        how, name = pair
        i += 1
        if how == "flags":
            i += 1  # "flags =="
        v = toks[i] if i < n else ""
        i += 1
        if how == "mac":
            f[name] = _nft_mac(v)
        elif how == "addr4" or how == "addr6":
            f[name] = intern(v)
            f["l3"] = IPV4 if how == "addr4" else IPV6
        elif how == "num":
            f[name] = _num(v)
        elif how == "proto":
            f["proto"] = _PROTO_NAMES.get(v)
        elif how == "len6":
            n6 = _num(v)
            f["length"] = None if n6 is None else n6 + 40  # nft prints the payload length; nf_log +40
        elif how == "arp":
            # nftables src/trace.c prints the ARP header through the arp payload expressions.
            f["l3"] = "arp"
            f["ethertype"] = 0x0806
        elif how == "port":
            f[name] = _num(v)
            f["proto"] = "TCP" if t == "tcp" else "UDP"
        elif how == "flags":
            f["tcp_flags"] = _tcp_flags(v)
            f["proto"] = "TCP"
        else:
            f["proto"] = "ICMP" if t == "icmp" else "ICMPv6"
            if name == "type":
                f["icmp_type"] = _ICMP_TYPES[v] if v in _ICMP_TYPES else _num(v)  # "²".isdigit() is True
            elif name == "code":
                f["icmp_code"] = _num(v) if v.isdigit() else _ICMP_CODES[t].get(v)  # "²".isdigit() is True
            elif name == "id":
                f["icmp_id"] = _num(v)
            else:
                f["icmp_seq"] = _num(v)
    return f


def _nft_usual_fields(groups: tuple[str | Any, ...]) -> dict[str, object] | None:
    """_nft_fields of an _NFT_USUAL line from its match's groups, keys in the order the walk sets them
    first; None when a value the line skips (dscp, ecn) is a word the walk would read."""
    iif, oif, smac, dmac, src, dst, dscp, ecn, ttl, ipid, proto, length, sport, dport, flags = groups
    if dscp in _NFT_WORDS or ecn in _NFT_WORDS:
        return None
    f: dict[str, object] = {}
    if iif is not None:
        f["in_dev"] = intern(iif)
    if oif is not None:
        f["out_dev"] = intern(oif)
    if smac is not None:
        f["mac_src"] = _nft_mac(smac)
        f["mac_dst"] = _nft_mac(dmac)
    f["src"] = intern(src)
    f["l3"] = IPV4
    f["dst"] = intern(dst)
    # Each number read as the str it is (re types a group str | Any): mypyc then parses it directly,
    # where int() of an Any is a generic call.
    f["ttl"] = int(cast(str, ttl))
    f["ipid"] = int(cast(str, ipid))
    if proto is not None:
        f["proto"] = "TCP"
    f["length"] = int(cast(str, length))
    f["sport"] = int(cast(str, sport))
    f["proto"] = "TCP"
    f["dport"] = int(cast(str, dport))
    f["tcp_flags"] = _tcp_flags(flags)
    return f


# The header fields that tell one packet from another (a later chain may rewrite marks or DSCP).
# nftables src/proto.c icmp_code_tbl / icmpv6_code_tbl: nft prints an ICMP code by these names (1.0.6
# does so even for echo requests, whose code 0 shows as "net-unreachable").
_ICMP_CODES = {
    "icmp": {
        "net-unreachable": 0,
        "host-unreachable": 1,
        "prot-unreachable": 2,
        "port-unreachable": 3,
        "frag-needed": 4,
        "net-prohibited": 9,
        "host-prohibited": 10,
        "admin-prohibited": 13,
    },
    "icmpv6": {
        "no-route": 0,
        "admin-prohibited": 1,
        "addr-unreachable": 3,
        "port-unreachable": 4,
        "policy-fail": 5,
        "reject-route": 6,
    },
}
_ICMP_TYPES = {
    "echo-reply": 0,
    "destination-unreachable": 3,
    "echo-request": 8,
    "time-exceeded": 11,
    "parameter-problem": 12,
    "nd-router-solicit": 133,
    "nd-router-advert": 134,
    "nd-neighbor-solicit": 135,
    "nd-neighbor-advert": 136,
}


@functools.lru_cache(maxsize=1024)
def _tcp_flags(text: str) -> tuple[str, ...]:
    if text.startswith("0x"):
        bits = _num(text, 16) or 0
        names = {n for n, b in _TCP_BITS.items() if bits & b}
    else:
        names = {p.upper() for p in text.split("|")}
    return tuple(n for n in _TCP_ORDER if n in names)


# ---------------------------------------------------------------------------------------------------
# The parsers.


@dataclass(init=False)
class _PacketLine:
    """A packet line and its fields, kept for the later chain walks of the same trace id."""

    ref: LineRef
    text: str
    fields: dict[str, object]

    # Written out so that mypyc compiles it: a dataclass's own __init__ is interpreted (model.py).
    def __init__(self, ref: LineRef, text: str, fields: dict[str, object]) -> None:
        self.ref = ref
        self.text = text
        self.fields = fields


class TraceParser:
    """Feed lines one by one; completed visits come out in kernel order."""

    fmt = ""

    def __init__(self, chain_hooks: ChainHooks | None = None) -> None:
        self.chain_hooks: ChainHooks = chain_hooks or {}
        self.open: dict[str, Visit] = {}  # the visit under way of each trace id, in the order they began
        # The packet line of each recent trace id: the kernel sends the headers only with the first
        # event of a (packet, base chain) pair, and xtables-monitor may print one PACKET line for the
        # walks of several tables (xtables-monitor(8) EXAMPLE: raw PREROUTING, then filter INPUT).
        # Oldest first: the bound drops the oldest, which a dict finds by a scan past the keys deleted
        # before it (a plain dict's _remember cost 2 µs a packet line; OrderedDict.popitem is O(1)).
        self.packets: OrderedDict[str, _PacketLine] = OrderedDict()
        self.pending_ct: dict[str, list[tuple[LineRef, str]]] = {}
        self.places: dict[tuple[str, str, str], Placement] = {}  # _place's answers (Placement is frozen)

    def _place(self, family: str, table: str, chain: str) -> Placement:
        """place_chain with this parser's snapshot, once per chain (a trace walks the same few)."""
        key = (family, table, chain)
        place = self.places.get(key)
        if place is None:
            if len(self.places) >= 4096:
                self.places.clear()  # bounded: a hostile trace may name any number of chains
            place = self.places[key] = place_chain(family, table, chain, self.chain_hooks)
        return place

    def _remember(self, tid: str, pkt: _PacketLine) -> None:
        self.packets.pop(tid, None)
        self.packets[tid] = pkt
        if len(self.packets) > 4096:
            self.packets.popitem(last=False)

    def _start(
        self, ref: LineRef, text: str, family: str, table: str, chain: str, tid: str, fields: dict[str, object]
    ) -> Visit:
        v = Visit(ref, text, self.fmt, family, table, chain, tid, dict(fields))
        if table:
            v.place = self._place(family, table, chain)
        self.open[tid] = v
        return v

    def _close(self, tid: str) -> list[Visit]:
        # A list, not a generator: it runs for most lines, and a generator is an object more each time.
        v = self.open.pop(tid, None)
        return [] if v is None else [v]

    def flush(self) -> Iterator[Visit]:
        for tid in list(self.open):
            yield from self._close(tid)

    @staticmethod
    def _jumped_to(v: Visit, chain: str) -> bool:
        """Whether a rule of this visit jumped or went to the chain (jump foo / JUMP:foo)."""
        return any(_jump_target(r.verdict) == chain for r in v.rules)


# Asked of every rule of a visit for each line of a chain other than the visit's: a trace has few
# distinct verdicts.
@functools.lru_cache(maxsize=1024)
def _jump_target(verdict: str) -> str | None:
    """The chain a jump or goto verdict names (nft "jump foo", xtables-monitor "JUMP:foo" lowercased to
    "jump:foo"); None for any other verdict."""
    head, _, target = verdict.replace(":", " ", 1).partition(" ")
    return target if head in ("jump", "goto") else None


class XtablesMonitorParser(TraceParser):
    """``xtables-monitor --trace`` (iptables ≥ 1.8.7: PACKET line first; older: TRACE lines first)."""

    fmt = "xtmon"

    def __init__(self, chain_hooks: ChainHooks | None = None) -> None:
        super().__init__(chain_hooks)
        self.wrapped: tuple[str, str] | None = None  # the last PACKET line (id, fields), if a wrap may follow

    def feed(self, ref: LineRef, text: str) -> tuple[list[Visit], bool]:
        """Return (completed visits, whether the line was used)."""
        out: list[Visit] = []
        line = _unquote(text)
        m = _XT_PACKET.match(line)
        if m is None and self.wrapped is not None and _XT_WRAPPED.match(line):
            tid, rest = self.wrapped
            self.wrapped = None
            m = _XT_PACKET.match(f"PACKET: 0 {tid} {rest} {line}")
            if m is not None and self.packets.get(tid) is not None:
                self.packets[tid].fields.update(_xt_fields(m.group("rest")))
                v = self.open.get(tid)
                if v is not None and v.ref == self.packets[tid].ref:
                    v.fields.update(self.packets[tid].fields)
                return out, True
        self.wrapped = None
        if m:
            tid = m.group("id")
            self.wrapped = (tid, m.group("rest"))
            fields = _xt_fields(m.group("rest"))
            self._remember(tid, _PacketLine(ref, text, fields))
            pending = self.open.get(tid)
            if pending is not None and not pending.text:
                # ≤ 1.8.6 printed the rule line before the PACKET line: complete that visit.
                if fields.get("proto") is None and rule_proto(pending.rules):
                    fields["proto"] = rule_proto(pending.rules)
                pending.ref, pending.text, pending.fields = ref, text, dict(fields)
                return out, True
            out += self._close(tid)
            fam = _NFPROTO.get(m.group("fam"), "")
            self._start(ref, text, fam, "", "", tid, fields)
            return out, True
        t = _XT_TRACE.match(line)
        if not t:
            return out, False
        tid, table, chain = t.group("id"), t.group("table"), t.group("chain")
        fam = _NFPROTO.get(t.group("fam"), IPV4)  # the table's family (NFTNL_TABLE_FAMILY)
        v = self.open.get(tid)
        if v is not None and v.table and (table != v.table or (chain != v.chain and not self._jumped_to(v, chain))):
            out += self._close(tid)  # another table's (or base chain's) walk of the same packet
            v = None
        if v is None:
            seen = self.packets.get(tid)
            if seen is not None:
                v = self._start(seen.ref, seen.text, fam, table, chain, tid, seen.fields)
            else:
                v = self._start(ref, "", fam, table, chain, tid, {})
        if not v.table:
            v.family, v.table, v.chain = fam, table, chain
            v.place = self._place(fam, table, chain)
        if t.group("policy") is not None:
            kind, verdict, rule, handle = HitKind.POLICY, t.group("policy"), "", None
        elif t.group("ret") is not None:
            kind, verdict, rule, handle = HitKind.RETURN, "RETURN", "", None
        else:
            kind, handle = HitKind.RULE, "0x" + t.group("handle")
            verdict = _XT_VERDICTS.get(t.group("verdict"), t.group("verdict"))
            rule = t.group("rule").strip()
        head, sep, target = verdict.partition(":")  # JUMP:DOCKER-USER: the chain name keeps its case
        verdict = head.lower() + sep + target
        v.rules.append(RuleHit(table, chain, kind, verdict, rule, handle, ref))
        proto = rule_proto(v.rules[-1:])
        seen = self.packets.get(tid)
        for fields in (v.fields, seen.fields if seen is not None else {}):
            if proto and fields.get("proto") is None:
                fields["proto"] = proto  # later walks of the same packet line share it
        if _ends_visit(kind, verdict) and v.text:
            out += self._close(tid)
        return out, True


_XT_VERDICTS = {"0xfffffffb": "RETURN"}  # NFT_RETURN (-5) printed as %x (section 3.1)


class _NftLine:
    """What an nft monitor trace line says apart from its trace id (_nft_line); read only (cached).

    A plain class, not a NamedTuple: mypyc compiles its constructor, a NamedTuple's is interpreted
    (one per packet line)."""

    def __init__(
        self,
        kind: str,  # "packet:", "conntrack:", "rule", "unknown rule handle", "policy" or "verdict"
        table: str,
        chain: str,
        family: str,
        rest: str,
        # For rule, policy and verdict lines:
        verdict: str,
        rule_text: str,
        handle: str | None,
        hit_kind: HitKind,
        proven: Mapping[str, object],  # protocol and ports the rule proves (nft_rule_ports)
        ends: bool,  # the line ends the packet's visit of its base chain (_ends_visit)
    ) -> None:
        self.kind = kind
        self.table = table
        self.chain = chain
        self.family = family
        self.rest = rest
        self.verdict = verdict
        self.rule_text = rule_text
        self.handle = handle
        self.hit_kind = hit_kind
        self.proven = proven
        self.ends = ends


def _nft_line(line: str) -> tuple[str, _NftLine] | None:
    """A trace line (lead and trailing space taken off) as its trace id and what it says; None when it
    is not one (_NFT). Everything but the id is read from the text after it: every packet's walk
    repeats the same rule lines under its own id, so that text is read once (_nft_line_body)."""
    if not line.startswith("trace id "):
        return None
    cut = line.find(" ", 9)
    tid = line[9:cut]
    if cut < 0 or not tid or tid.strip("0123456789abcdef"):
        return None  # _NFT's id is [0-9a-f]+ followed by a space
    after = line[cut + 1 :]
    body = _BODIES.get(after)
    if body is None:
        body = _nft_line_body(after)
        if body is None:
            return None
        if len(_BODIES) >= _BODIES_MAX:
            _BODIES.clear()  # bounded: a trace repeats a few rule lines; other texts pass through
        _BODIES[after] = body
    return tid, body


# _nft_line_body's answers, keyed by the whole text after the trace id, which is all _NFT reads
# besides the id. A dict, not functools.lru_cache: compiled, a lookup in it is a C call, where the
# LRU's wrapper was a generic Python call per line. The usual packet line never comes here
# (NftTraceParser.feed reads it whole); another packet line (its own header values) passes through.
_BODIES: Final[dict[str, _NftLine]] = {}
_BODIES_MAX: Final = 8192


def _nft_line_body(after_id: str) -> _NftLine | None:
    m = _NFT.match("trace id 0 " + after_id)
    if not m:
        return None
    kind, rest, table, chain, family = m.group("kind", "rest", "table", "chain", "family")
    kind = kind.strip()
    table, chain = intern(table), intern(chain)  # on every rule of every packet: one object each
    fam = NFT_FAMILY.get(family or "unknown", "unknown")
    verdict, rule_text, handle, hit_kind = "", "", None, HitKind.RULE
    proven: Mapping[str, object] = {}
    if kind == "policy":
        verdict, rule_text, handle, hit_kind = rest.split()[0] if rest.split() else "", "", None, HitKind.POLICY
    elif kind not in ("packet:", "conntrack:"):
        vm = _NFT_VERDICT.search(rest)
        verdict = vm.group("v") if vm else ""
        body = (rest[: vm.start()] if vm else rest).strip()  # the verdict ends the line: "$" in the pattern
        handle_m = _NFT_HANDLE.search(body)
        handle = handle_m.group(1) if handle_m else None
        rule_text = body[: handle_m.start()].rstrip() if handle_m else body  # no \s* regex: quadratic
        if kind == "unknown rule handle":
            handle, rule_text = rest.split()[0], ""
        hit_kind = HitKind.RETURN if kind == "verdict" else HitKind.RULE
        if "port " in rule_text:  # only "sport N"/"dport N" prove one
            proven = MappingProxyType(
                nft_rule_ports([RuleHit(table, chain, hit_kind, verdict, rule_text, handle, _NO_REF)])
            )
    return _NftLine(
        kind, table, chain, fam, rest, verdict, rule_text, handle, hit_kind, proven, _ends_visit(hit_kind, verdict)
    )


_NO_REF = LineRef("", 0)


class NftTraceParser(TraceParser):
    """``nft monitor trace`` (nftables src/trace.c; ``conntrack:`` lines from v1.1.4).

    Two base chains of one table at one hook (VyOS vyos_conntrack PREROUTING, priority -300, and
    PREROUTING_HELPER, priority -5) are walked one after the other for the same packet, in one call of
    nf_hook_slow() (net/netfilter/core.c), each walk starting with its own packet line. Each walk is
    a visit (a hop naming its own chain); correlation keeps them in one packet (correlate.py).
    """

    fmt = "nfttrace"

    def __init__(self, chain_hooks: ChainHooks | None = None) -> None:
        super().__init__(chain_hooks)
        self.ct_chain: dict[LineRef, tuple[str, str, str]] = {}  # where each conntrack line was printed

    def feed(self, ref: LineRef, text: str) -> tuple[list[Visit], bool]:
        if " packet: " in text:  # the substring test keeps other lines off the longer match
            m = _NFT_USUAL_LINE.fullmatch(text)
            groups = None if m is None else m.groups()
            fields = None if groups is None else _nft_usual_fields(groups[_NFT_HEAD_GROUPS:])
            if groups is not None and fields is not None:
                tid, family, table, chain = groups[:_NFT_HEAD_GROUPS]
                fam = NFT_FAMILY.get(family, "unknown")
                return self._packet(ref, text, tid, fam, intern(table), intern(chain), fields)
        out: list[Visit] = []
        # A line as nft prints it starts with "trace id"; only a paste adds a lead to take off.
        line = (text if text.startswith("trace id ") else _unquote(text)).rstrip()
        parsed = _nft_line(line)
        if parsed is None:
            return out, self._ct_id_wrapped(text)
        tid, nl = parsed
        kind, table, chain, fam, rest = nl.kind, nl.table, nl.chain, nl.family, nl.rest
        if kind == "conntrack:":
            # nftables >= 1.1.4 prints the conntrack state just before the packet line it belongs to.
            self.pending_ct.setdefault(tid, []).append((ref, rest.strip()))
            self.ct_chain[ref] = (fam, table, chain)
            return out, True
        if kind == "packet:":
            return self._packet(ref, text, tid, fam, table, chain, _nft_fields(rest))
        v: Visit | None = self.open.get(tid)
        if v is not None and self._is_base(v, table, chain, kind):
            out += self._close(tid)
            v = None
        if v is None:
            pkt = self.packets.get(tid)
            if pkt is None:  # the paste starts after this packet's packet line: a hop without headers
                v = self._start(ref, "", fam, table, chain, tid, {})
            else:
                v = self._start(ref, text, fam, table, chain, tid, pkt.fields)
        v.rules.append(RuleHit(table, chain, nl.hit_kind, nl.verdict, nl.rule_text, nl.handle, ref))
        proven = nl.proven
        if proven and v.fields.get("proto") in (None, proven.get("proto")):
            for key, value in proven.items():
                v.fields.setdefault(key, value)  # a packet line cut by the paste ("[..]") did not print them
        if nl.ends:
            out += self._close(tid)
        return out, True

    def _packet(
        self, ref: LineRef, text: str, tid: str, fam: str, table: str, chain: str, fields: dict[str, object]
    ) -> tuple[list[Visit], bool]:
        """A packet line: it starts the walk of a base chain (and ends the id's visit under way)."""
        out = self._close(tid)
        if fam == ARP:
            fields["l3"] = "arp"
        elif fam in (IPV4, IPV6):
            fields.setdefault("l3", fam)  # an ip (ip6) table sees only IPv4 (IPv6) packets: nft(8)
        self._remember(tid, _PacketLine(ref, text, fields))
        new = self._start(ref, text, fam, table, chain, tid, fields)
        if self.pending_ct:
            for ct_ref, ct in self.pending_ct.pop(tid, []):
                new.extra.append(ct_ref)
                prior = new.fields.get("extra", ())
                new.fields["extra"] = (*(prior if isinstance(prior, tuple) else ()), "conntrack: " + ct)
        return out, True

    def flush(self) -> Iterator[Visit]:
        # A "conntrack:" line whose packet line the paste left out: a walk without headers at its chain.
        for tid, pending in list(self.pending_ct.items()):
            for ct_ref, ct in pending:
                fam, table, chain = self.ct_chain[ct_ref]
                yield from self._close(tid)
                self._start(ct_ref, "", fam, table, chain, tid, {"extra": ("conntrack: " + ct,)})
                yield from self._close(tid)
        self.pending_ct.clear()
        yield from super().flush()

    def _ct_id_wrapped(self, text: str) -> bool:
        """A "conntrack:" line wrapped before its ct id value: the value alone on the next line."""
        line = _unquote(text).strip()
        for pending in self.pending_ct.values():
            ref, ct = pending[-1]
            if line.isdigit() and ct.endswith("ct id"):
                pending[-1] = (ref, f"{ct} {line}")
                return True
        return False

    def _is_base(self, v: Visit, table: str, chain: str, kind: str) -> bool:
        """Whether a line of another chain starts a new visit (another base chain's walk).

        The kernel sends the packet with the first event of each base chain walk (nft_do_chain()
        calls nft_trace_init() per walk; nft_trace_notify() dumps the packet while
        !info->packet_dumped, net/netfilter/nf_tables_trace.c), so a walk starts with a packet line.
        A line of another chain without one belongs to the walk under way: a user chain whose jump
        line the paste left out. It is another walk only when the chain is known to be a base chain:
        a policy line (nft_do_chain prints the policy of base chains only) or the snapshot or a
        known generator places it. A visit whose packet line was cut and that started in a user
        chain takes the base chain it returns to.
        """
        if table != v.table:
            return True
        if chain == v.chain or self._jumped_to(v, chain):
            return False
        known_base = kind == "policy" or self._place(v.family, table, chain).hook is not None
        if not known_base:
            return False
        started_in_user_chain = (
            not v.text
            and (v.place is None or v.place.hook is None)
            and not any(r.kind is HitKind.POLICY for r in v.rules)
        )
        if started_in_user_chain:
            v.chain, v.place = chain, self._place(v.family, table, chain)
            return False
        return True


def _ends_visit(kind: HitKind, verdict: str) -> bool:
    """A policy, or an accept/drop/reject/queue/stolen verdict, ends the packet's visit of this base
    chain (nf_tables_core.c nft_do_chain returns to the hook); continue, jump, goto and return do not."""
    words = verdict.split(":")[0].split()
    return kind is HitKind.POLICY or (bool(words) and words[0] in ("accept", "drop", "reject", "queue", "stolen"))


def detect_trace_format(lines: list[str]) -> str | None:
    """Tell a trace-monitor file from the first lines: "xtmon", "nfttrace", or None."""
    for text in lines:
        line = _unquote(text)
        if _XT_PACKET.match(line) or _XT_TRACE.match(line):
            return "xtmon"
        if _NFT.match(line.rstrip()):
            return "nfttrace"
    return None
