"""Parse host snapshot outputs as people paste them: ip link/addr, bridge fdb, brctl, routes, sysctl.

Each parser takes the whole text and returns a typed record (frozen dataclasses, jc style: one
interface, one registry, ``PARSERS``). ``detect_kind`` recognises a snapshot by its content, so files
given without a manifest need no naming convention. Every line a parser does not read is returned in
``unparsed`` with its number and the reason; damaged input never raises anything but InputError.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeAlias

from reportgen.errors import InputError

if TYPE_CHECKING:
    from reportgen.parsers.conntrack import Conntrack
    from reportgen.parsers.docker import DockerNetworks
    from reportgen.parsers.nft_ruleset import NftRuleset
    from reportgen.parsers.ruleset import Ruleset


class Kind(StrEnum):
    """Snapshot kinds: the words of a case manifest's ``kind:`` and of ``detect_kind``."""

    IP_LINK = "ip-link"
    IP_ADDR = "ip-addr"
    IP_LINK_JSON = "ip-link-json"
    IP_ADDR_JSON = "ip-addr-json"
    BRIDGE_FDB = "bridge-fdb"
    BRIDGE_FDB_JSON = "bridge-fdb-json"
    BRCTL_SHOW = "brctl-show"
    BRCTL_SHOWMACS = "brctl-showmacs"
    ROUTE_N = "route-n"
    IP_ROUTE = "ip-route"
    SYSCTL = "sysctl"
    IPTABLES_SAVE = "iptables-save"
    IP6TABLES_SAVE = "ip6tables-save"
    EBTABLES_SAVE = "ebtables-save"
    NFT_RULESET = "nft-ruleset"
    CONNTRACK = "conntrack"
    DOCKER_NETWORK = "docker-network"


# Why a line was not read. A known line that carries nothing the explainer uses is read (not listed);
# these are the lines a parser could not make sense of, each with what would have been needed.
NOT_UNDERSTOOD = "not a line of this snapshot kind"
DETAIL = "a detail line of a kind reportgen does not read"
BEFORE_FIRST = "before the first interface line"
BAD_NUMBER = "a number reportgen cannot read"
BAD_ADDRESS = "an address or prefix reportgen cannot read"
BAD_VALUE = "a value reportgen cannot read"
TOO_FEW_COLUMNS = "too few columns"
NO_DEV = "no dev (a route without an interface: multipath, prohibit, throw ...)"
IPV6_ROUTE_N = "an IPv6 route -n row (read ip -6 route instead)"

_IPLINK_HEAD = re.compile(r"^(?P<idx>\d+): (?P<name>[^:@\s]+)(?:@(?P<peer>[^:\s]+))?: <(?P<flags>[^>]*)>(?P<rest>.*)$")
_FDB = re.compile(r"^(?P<mac>[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}) dev (?P<dev>\S+)(?P<rest>.*)$")
# The value is taken whole and stripped in Python: a lazy ``.*?`` before ``\s*$`` retries the blank run
# at every position, quadratic in a long run of blanks.
_SYSCTL = re.compile(r"^(?P<key>[a-z][\w.\-/]+)[ \t]*=(?P<value>.*)$")
_SHOWMACS = re.compile(
    r"^\s*(?P<port>[0-9]+)\s+(?P<mac>[0-9a-fA-F:]{17})\s+(?P<local>yes|no)\s+"
    r"(?P<age>[0-9]+(?:\.[0-9]+)?)(?:\s|$)"
)
_MAC = re.compile(r"[0-9a-f:]{17}")
_HAIRPIN = re.compile(r"\bhairpin (on|off)\b")
# ip-link(8) detail lines under an interface that carry nothing the topology reads: address lifetimes,
# alternative names, and the per-kind detail lines of ``ip -d link`` (bridge, bridge_slave, veth, vlan).
_IPLINK_DETAIL = ("valid_lft", "altname", "bridge", "veth", "vlan")
# A number wider than any the kernel prints (u32 ifindex and metric; conntrack timeouts in seconds):
# past this, int() would also refuse a string of over 4300 digits with a ValueError.
_MAX_DIGITS = 20


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A snapshot line a parser did not read, and why."""

    line: int
    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class Link:
    """One interface of ``ip link`` / ``ip addr`` (text or ``-j``)."""

    index: int | None
    name: str
    peer_ifindex: int | None  # "@ifN": the veth peer's ifindex in its own netns (ip-link(8))
    flags: tuple[str, ...]
    master: str | None
    mac: str | None
    link_type: str | None
    link_netnsid: int | None
    link_netns: str | None  # ip prints the peer netns's name instead of its id when it has one
    addresses: tuple[str, ...]  # CIDRs, "172.17.0.1/16"
    # A bridge port's hairpin mode (``ip -d link``: "bridge_slave ... hairpin on|off"), and its line.
    hairpin: bool | None = None
    hairpin_line: int = 0


@dataclass(frozen=True, slots=True)
class Links:
    """``ip link`` / ``ip addr`` / ``ip -j link`` / ``ip -j addr``."""

    interfaces: tuple[Link, ...]
    unparsed: tuple[Unparsed, ...] = ()


@dataclass(frozen=True, slots=True)
class FdbEntry:
    """One ``bridge fdb`` entry: a MAC on a port (dev) of a bridge (master)."""

    mac: str
    dev: str | None
    master: str | None
    vlan: int | None
    self_: bool  # "self": the port's own table, not the bridge's
    permanent: bool  # a local (the port's own) or static entry, never learned
    line: int


@dataclass(frozen=True, slots=True)
class Fdb:
    """``bridge fdb`` / ``bridge -j fdb``."""

    entries: tuple[FdbEntry, ...]
    unparsed: tuple[Unparsed, ...] = ()


@dataclass(frozen=True, slots=True)
class BrctlBridge:
    """One bridge of ``brctl show`` with its ports."""

    name: str
    id: str | None
    stp: str | None
    ports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BrctlShow:
    bridges: tuple[BrctlBridge, ...]
    unparsed: tuple[Unparsed, ...] = ()


@dataclass(frozen=True, slots=True)
class BrctlMac:
    """One row of ``brctl showmacs BRIDGE``."""

    port_no: int
    mac: str
    local: bool
    ageing: float


@dataclass(frozen=True, slots=True)
class BrctlShowmacs:
    macs: tuple[BrctlMac, ...]
    unparsed: tuple[Unparsed, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    """One route of ``route -n`` or ``ip route``: the fields the lookup needs, and the rest as printed."""

    dst: str  # the prefix, normalised ("0.0.0.0/0" for default)
    gateway: str | None
    dev: str
    metric: int
    flags: str | None = None  # route -n's Flags column
    src: str | None = None  # ip route's preferred source
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class Routes:
    routes: tuple[Route, ...]
    unparsed: tuple[Unparsed, ...] = ()


# The sysctls reportgen collects (snapshot.py) and the explainer reads, named once. What each means is
# said where it is interpreted (explain/topology.py Topology.brnf_on and .forwarding).
# br_netfilter's switches: pass bridged IPv4/IPv6/ARP frames to the iptables/ip6tables/arptables
# hooks; 1 by default in every netns (Documentation/networking/ip-sysctl.rst "/proc/sys/net/bridge/*";
# net/bridge/br_netfilter_hooks.c brnf_table, brnf_init_net()). They exist only while the
# br_netfilter module is loaded.
BRNF_CALL_IPTABLES = "net.bridge.bridge-nf-call-iptables"
BRNF_CALL_IP6TABLES = "net.bridge.bridge-nf-call-ip6tables"
BRNF_CALL_ARPTABLES = "net.bridge.bridge-nf-call-arptables"
# Routing between interfaces (Documentation/networking/ip-sysctl.rst ip_forward; IPv6:
# conf/all/forwarding).
IP_FORWARD = "net.ipv4.ip_forward"
IPV6_FORWARDING = "net.ipv6.conf.all.forwarding"
# Whether the LOG target logs packets of network namespaces other than the initial one: 0 (the
# default) does not (Documentation/networking/netfilter-sysctl.rst nf_log_all_netns; the syslog
# loggers return early ``if (!net_eq(net, &init_net) && !sysctl_nf_log_all_netns)``,
# net/netfilter/nf_log_syslog.c). Collected so a reader can see why a container's netns logged nothing.
NF_LOG_ALL_NETNS = "net.netfilter.nf_log_all_netns"
# The kernel keeps each of these as an int and prints it in decimal (proc_dointvec, kernel/sysctl.c): a
# value of another shape is damage, not a setting, and is not read.
INT_SYSCTLS = frozenset(
    {BRNF_CALL_IPTABLES, BRNF_CALL_IP6TABLES, BRNF_CALL_ARPTABLES, IP_FORWARD, IPV6_FORWARDING, NF_LOG_ALL_NETNS}
)
_DECIMAL = re.compile(r"-?[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class Sysctl:
    """``sysctl`` output: key (dotted, as ``sysctl -a`` prints it) -> value as printed."""

    values: Mapping[str, str] = field(default_factory=dict)
    unparsed: tuple[Unparsed, ...] = ()


def _nft_head(lines: list[str]) -> bool:
    """Whether a text starts as an nft ruleset: its first line that is not a comment (nft prints a
    "# Warning: table ip filter is managed by iptables-nft" line before such a table, and a ruleset
    file may start with "#!/usr/sbin/nft -f", "flush ruleset" or defines) opens a table."""
    for ln in lines[:50]:
        s = ln.strip()
        if s.startswith("#") or s == "flush ruleset" or s.startswith(("define ", "include ")):
            continue
        # "nft -a list ruleset" ends the line with "# handle N".
        return s.startswith("table ") and (s.endswith("{") or "{ # handle " in s)
    return False


def detect_kind(text: str) -> Kind | None:
    """Return the snapshot kind of a text, or None when it is not a known snapshot."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    first = lines[0].strip()
    if first.startswith("# Generated by ip6tables-save"):
        return Kind.IP6TABLES_SAVE
    if first.startswith("# Generated by ebtables-save"):
        return Kind.EBTABLES_SAVE
    if first.startswith("# Generated by iptables-save") or (
        first.startswith("*") and any(ln.startswith(":") for ln in lines[:5])
    ):
        return Kind.IPTABLES_SAVE
    if _nft_head(lines) or first.startswith('{"nftables"'):  # nft -j: refused by its parser with the reason
        return Kind.NFT_RULESET
    if re.match(r"^(tcp|udp|icmp|icmpv6|sctp|dccp|udplite|gre|unknown)\s+\d+\s+\d+ ", first):
        return Kind.CONNTRACK
    if first.startswith("[") and '"Containers"' in text and '"IPAM"' in text:
        return Kind.DOCKER_NETWORK
    if first.startswith("[{") and '"ifname"' in text:
        if '"addr_info"' in text:
            return Kind.IP_ADDR_JSON
        if '"mac"' in text and '"ifindex"' not in text:
            return Kind.BRIDGE_FDB_JSON
        return Kind.IP_LINK_JSON
    if first.startswith("bridge name"):
        return Kind.BRCTL_SHOW
    if first.startswith("port no"):
        return Kind.BRCTL_SHOWMACS
    if first.startswith("Kernel IP routing table") or first.startswith("Kernel IPv6 routing table"):
        return Kind.ROUTE_N
    if _IPLINK_HEAD.match(first):
        return Kind.IP_ADDR if any(re.match(r"^\s+inet6? ", ln) for ln in lines) else Kind.IP_LINK
    if all(_FDB.match(ln) for ln in lines[:5]):
        return Kind.BRIDGE_FDB
    if all(_SYSCTL.match(ln) and ln.startswith("net.") for ln in lines[:5]):
        return Kind.SYSCTL
    if (
        re.match(r"^(default|unreachable|blackhole|local|broadcast|[\d.]+(/\d+)?|[0-9a-f:]+/\d+) ", first)
        and " dev " in text
    ):
        return Kind.IP_ROUTE
    return None


def _int(text: str) -> int | None:
    """A decimal number, or None (``str.isdigit`` also accepts "²", which ``int`` refuses; and no
    snapshot number is wider than ``_MAX_DIGITS``, which ``int`` may refuse past 4300 digits)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS else None


def _numbered(text: str) -> list[tuple[int, str]]:
    """The non-blank lines of a text with their 1-based numbers."""
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


@dataclass
class _LinkBuilder:
    """The interface being read: its head line's facts, then its ``link/`` and ``inet`` lines'."""

    index: int
    name: str
    peer_ifindex: int | None
    flags: tuple[str, ...]
    master: str | None
    mac: str | None = None
    link_type: str | None = None
    link_netnsid: int | None = None
    link_netns: str | None = None
    addresses: list[str] = field(default_factory=list)
    hairpin: bool | None = None
    hairpin_line: int = 0

    def build(self) -> Link:
        return Link(
            self.index,
            self.name,
            self.peer_ifindex,
            self.flags,
            self.master,
            self.mac,
            self.link_type,
            self.link_netnsid,
            self.link_netns,
            tuple(self.addresses),
            self.hairpin,
            self.hairpin_line,
        )


def parse_ip_link(text: str) -> Links:
    """Parse ``ip link show`` / ``ip addr``: interfaces, veth peers, masters, MACs and addresses."""
    done: list[_LinkBuilder] = []
    unparsed: list[Unparsed] = []
    cur: _LinkBuilder | None = None
    for n, line in _numbered(text):
        m = _IPLINK_HEAD.match(line)
        if m:
            index = _int(m.group("idx"))
            if index is None:
                cur = None
                unparsed.append(Unparsed(n, line, BAD_NUMBER))
                continue
            rest = m.group("rest")
            master = re.search(r"\bmaster (\S+)", rest)
            peer = m.group("peer")
            cur = _LinkBuilder(
                index,
                m.group("name"),
                _int(peer[2:]) if peer and peer.startswith("if") else None,
                tuple(m.group("flags").split(",")),
                master.group(1) if master else None,
            )
            done.append(cur)
            continue
        s = line.strip()
        if cur is None:
            unparsed.append(Unparsed(n, line, BEFORE_FIRST if s.startswith(("link/", "inet")) else NOT_UNDERSTOOD))
        elif s.startswith("link/"):
            parts = s.split()
            cur.link_type = parts[0][5:]
            if len(parts) > 1 and _MAC.fullmatch(parts[1]):
                cur.mac = parts[1]
            ns = re.search(r"link-netnsid (\d+)", s)
            if ns:
                cur.link_netnsid = _int(ns.group(1))
            named = re.search(r"link-netns (\S+)", s)
            if named:
                cur.link_netns = named.group(1)
        elif re.match(r"inet6? ", s):
            cur.addresses.append(s.split()[1])
        elif not s.startswith(_IPLINK_DETAIL):
            unparsed.append(Unparsed(n, line, DETAIL if line[:1].isspace() else NOT_UNDERSTOOD))
        elif "bridge_slave" in s:
            # Searched after the word, not with ".*" between the two: linear in a long line.
            mode = _HAIRPIN.search(s, s.index("bridge_slave"))
            if mode:
                cur.hairpin, cur.hairpin_line = mode.group(1) == "on", n
    return Links(tuple(b.build() for b in done), tuple(unparsed))


def parse_bridge_fdb(text: str) -> Fdb:
    """Parse ``bridge fdb``: MAC, port, master bridge, vlan, and whether it is local (permanent)."""
    entries: list[FdbEntry] = []
    unparsed: list[Unparsed] = []
    for n, line in _numbered(text):
        m = _FDB.match(line.strip())
        if not m:
            unparsed.append(Unparsed(n, line, NOT_UNDERSTOOD))
            continue
        rest = m.group("rest").split()
        vlan_text = _after(rest, "vlan")
        entries.append(
            FdbEntry(
                m.group("mac").lower(),
                m.group("dev"),
                _after(rest, "master"),
                _int(vlan_text) if vlan_text else None,
                "self" in rest,
                "permanent" in rest,
                n,
            )
        )
    return Fdb(tuple(entries), tuple(unparsed))


def _after(words: list[str], key: str) -> str | None:
    """The word after ``key``; None when it is missing or last (a line cut after ``master``)."""
    return words[words.index(key) + 1] if key in words[:-1] else None


def parse_brctl_show(text: str) -> BrctlShow:
    """Parse ``brctl show``: bridges with their id, STP state and ports (continuation lines)."""
    bridges: list[tuple[str, str | None, str | None, list[str]]] = []
    unparsed: list[Unparsed] = []
    for n, line in _numbered(text):
        parts = line.split()
        if line.startswith("bridge name"):
            continue  # the header
        if not line[0].isspace():
            bridges.append(
                (parts[0], parts[1] if len(parts) > 1 else None, parts[2] if len(parts) > 2 else None, parts[3:4])
            )
        elif bridges:
            bridges[-1][3].extend(parts)
        else:
            unparsed.append(Unparsed(n, line, "a port line before the first bridge"))
    return BrctlShow(tuple(BrctlBridge(a, b, c, tuple(d)) for a, b, c, d in bridges), tuple(unparsed))


def parse_brctl_showmacs(text: str) -> BrctlShowmacs:
    """Parse ``brctl showmacs BRIDGE``: port number, MAC, local flag, ageing timer."""
    rows: list[BrctlMac] = []
    unparsed: list[Unparsed] = []
    for n, line in _numbered(text):
        if line.startswith("port no"):
            continue  # the header ("port no  mac addr  is local?  ageing timer")
        m = _SHOWMACS.match(line)
        port = _int(m.group("port")) if m else None
        if m is None or port is None:
            unparsed.append(Unparsed(n, line, NOT_UNDERSTOOD if m is None else BAD_NUMBER))
            continue
        rows.append(BrctlMac(port, m.group("mac").lower(), m.group("local") == "yes", float(m.group("age"))))
    return BrctlShowmacs(tuple(rows), tuple(unparsed))


def parse_route_n(text: str) -> Routes:
    """Parse ``route -n`` (net-tools): destination, gateway, genmask, flags, metric, interface.

    jc has parsers for ``route`` and ``ip route``, but its output is strings keyed by column and
    still needs the same conversion to prefixes and metrics; for two fixed-layout tables that is
    less code than a dependency, and these parsers share one output shape with ``ip -j`` input.
    """
    routes: list[Route] = []
    unparsed: list[Unparsed] = []
    ipv6 = False
    for n, line in _numbered(text):
        parts = line.split()
        if parts[0] == "Kernel":  # "Kernel IP routing table" / "Kernel IPv6 routing table"
            ipv6 = "IPv6" in parts
            continue
        if parts[0] == "Destination":  # the column header
            continue
        if ipv6:
            unparsed.append(Unparsed(n, line, IPV6_ROUTE_N))
            continue
        if len(parts) < 8:
            unparsed.append(Unparsed(n, line, TOO_FEW_COLUMNS))
            continue
        metric = _int(parts[4])
        if metric is None:
            unparsed.append(Unparsed(n, line, BAD_NUMBER))
            continue
        try:
            net = ipaddress.IPv4Network(f"{parts[0]}/{parts[2]}", strict=False)
            ipaddress.IPv4Address(parts[1])
        except ValueError:
            unparsed.append(Unparsed(n, line, BAD_ADDRESS))
            continue
        gateway = None if parts[1] == "0.0.0.0" else parts[1]
        routes.append(Route(str(net), gateway, parts[7], metric, flags=parts[3]))
    return Routes(tuple(routes), tuple(unparsed))


# ip-route(8) ROUTE_TYPE words that may stand before the prefix.
_ROUTE_TYPES = ("unreachable", "blackhole", "local", "broadcast")


def parse_ip_route(text: str) -> Routes:
    """Parse ``ip route`` / ``ip -6 route``: prefix, via, dev, metric, src, scope."""
    routes: list[Route] = []
    unparsed: list[Unparsed] = []
    for n, line in _numbered(text):
        parts = line.split()
        if "dev" not in parts[:-1]:
            unparsed.append(Unparsed(n, line, NO_DEV))
            continue
        dst = parts[1] if parts[0] in _ROUTE_TYPES and len(parts) > 1 else parts[0]

        def opt(key: str, parts: list[str] = parts) -> str | None:
            return parts[parts.index(key) + 1] if key in parts[:-1] else None

        via = opt("via")
        if dst == "default":
            dst = "::/0" if via is not None and ":" in via else "0.0.0.0/0"
        try:
            net = str(ipaddress.ip_network(dst, strict=False))
        except ValueError:
            unparsed.append(Unparsed(n, line, BAD_ADDRESS))
            continue
        metric_text = opt("metric")
        metric = _int(metric_text) if metric_text is not None else 0
        if metric is None:
            unparsed.append(Unparsed(n, line, BAD_NUMBER))
            continue
        routes.append(Route(net, via, parts[parts.index("dev") + 1], metric, src=opt("src"), scope=opt("scope")))
    return Routes(tuple(routes), tuple(unparsed))


def parse_sysctl(text: str) -> Sysctl:
    """Parse ``sysctl`` output lines ``key = value``; a ``/`` in a key is read as a dot (sysctl(8) takes
    either as the separator: both name the same file under /proc/sys)."""
    values: dict[str, str] = {}
    unparsed: list[Unparsed] = []
    for n, line in _numbered(text):
        m = _SYSCTL.match(line.strip())
        if m is None:
            unparsed.append(Unparsed(n, line, NOT_UNDERSTOOD))
            continue
        key, value = m.group("key").replace("/", "."), m.group("value").strip()
        if key in INT_SYSCTLS and not _DECIMAL.fullmatch(value):
            unparsed.append(Unparsed(n, line, BAD_VALUE))
        else:
            values[key] = value
    return Sysctl(values, tuple(unparsed))


def load_json(text: str, what: str) -> object:
    """Decode a JSON snapshot; what cannot be decoded is an InputError naming the line it is on."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError("", exc.lineno, f"not valid {what} JSON: {exc.msg}") from exc
    except ValueError as exc:  # an integer of over 4300 digits (int's limit)
        huge = re.search(r"[0-9]{4301}", text)
        line = text.count("\n", 0, huge.start()) + 1 if huge else None
        raise InputError("", line, f"not valid {what} JSON: a number of over 4300 digits") from exc
    except RecursionError as exc:
        raise InputError("", _deep_line(text), f"not valid {what} JSON: nested too deep") from exc


def _deep_line(text: str, depth: int = 500) -> int | None:
    """The line where arrays and objects first nest ``depth`` deep (brackets in strings not counted)."""
    level, line, in_string, escaped = 0, 1, False, False
    for ch in text:
        if ch == "\n":
            line += 1
        elif in_string:
            in_string, escaped = (ch != '"' or escaped), (ch == "\\" and not escaped)
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            level += 1
            if level >= depth:
                return line
        elif ch in "]}":
            level -= 1
    return None


def _json_entries(text: str, what: str, key: str) -> tuple[list[tuple[int, str, dict[str, Any]]], tuple[Unparsed, ...]]:
    """The objects of ``-j`` output's top-level array that have a string ``key``: (the line each starts
    on, its ``key``, the object); the other entries come back unparsed. Not JSON, or not an array, is
    an InputError naming the line."""
    data = load_json(text, what)
    if not isinstance(data, list):
        start = len(text) - len(text.lstrip())
        raise InputError(
            "", text.count("\n", 0, start) + 1, f"{what} JSON is an array of objects, not {_json_type(data)}"
        )
    # json.loads has checked the text: walking the array again with raw_decode cannot fail, and gives
    # where each entry starts (counted on from the previous one, so the walk stays linear).
    decoder = json.JSONDecoder()
    entries: list[tuple[int, str, dict[str, Any]]] = []
    unparsed: list[Unparsed] = []
    pos, line, counted = text.index("[") + 1, 1, 0
    for value in data:
        while text[pos] in " \t\r\n,":
            pos += 1
        line += text.count("\n", counted, pos)
        counted = pos
        _, pos = decoder.raw_decode(text, pos)
        first = text[counted:pos].split("\n", 1)[0]
        if not isinstance(value, dict):
            unparsed.append(Unparsed(line, first, f"{_json_type(value)}, not an object"))
        elif not isinstance(value.get(key), str) or not value[key]:
            unparsed.append(Unparsed(line, first, f"no {key} string"))
        else:
            entries.append((line, value[key], value))
    return entries, tuple(unparsed)


def _json_type(value: object) -> str:
    """What a JSON value is, in JSON's words."""
    for kind, name in ((dict, "an object"), (list, "an array"), (str, "a string"), (bool, "a boolean")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else "a number"


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _mac(value: object) -> str | None:
    """A link address that is a MAC, as the text parser takes it from ``link/TYPE ADDRESS``."""
    return value if isinstance(value, str) and _MAC.fullmatch(value) else None


def _num(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_ip_json(text: str) -> Links:
    """Parse ``ip -j link``/``ip -j addr`` into the same records as the text parser.

    Fields of an unexpected type are left out (None) instead of reaching the topology; an entry
    without an interface name is unparsed.
    """
    ifaces = []
    entries, unparsed = _json_entries(text, "ip -j", "ifname")
    for _, name, it in entries:
        flags = it.get("flags")
        addrs = it.get("addr_info")
        ifaces.append(
            Link(
                index=_num(it.get("ifindex")),
                name=name,
                peer_ifindex=_num(it.get("link_index")),
                flags=tuple(f for f in flags if isinstance(f, str)) if isinstance(flags, list) else (),
                master=_str(it.get("master")),
                mac=_mac(it.get("address")),
                link_type=_str(it.get("link_type")),
                link_netnsid=_num(it.get("link_netnsid")),
                link_netns=None,
                addresses=tuple(
                    f"{a['local']}/{a['prefixlen']}"
                    for a in addrs
                    if isinstance(a, dict) and _str(a.get("local")) and _num(a.get("prefixlen")) is not None
                )
                if isinstance(addrs, list)
                else (),
            )
        )
    return Links(tuple(ifaces), unparsed)


def parse_bridge_fdb_json(text: str) -> Fdb:
    """Parse ``bridge -j fdb`` into the same records as the text parser; an entry without a MAC is
    unparsed."""
    found = []
    entries, unparsed = _json_entries(text, "bridge -j fdb", "mac")
    for line, mac, e in entries:
        flags = e.get("flags")
        found.append(
            FdbEntry(
                mac=mac.lower(),
                dev=_str(e.get("ifname")),
                master=_str(e.get("master")),
                vlan=_num(e.get("vlan")),
                self_=isinstance(flags, list) and "self" in flags,
                permanent=e.get("state") == "permanent",
                line=line,
            )
        )
    return Fdb(tuple(found), unparsed)


def _ruleset(family: str) -> Callable[[str], Ruleset]:
    def parse(text: str) -> Ruleset:
        from reportgen.parsers.ruleset import parse_ruleset

        return parse_ruleset(text, family=family)

    return parse


def _nft(text: str) -> NftRuleset:
    from reportgen.parsers.nft_ruleset import parse_nft_ruleset

    return parse_nft_ruleset(text)


def _conntrack(text: str) -> Conntrack:
    from reportgen.parsers.conntrack import parse_conntrack

    return parse_conntrack(text)


def _docker(text: str) -> DockerNetworks:
    from reportgen.parsers.docker import parse_docker_network

    return parse_docker_network(text)


# What a snapshot's parser returns (Snapshot.data).
SnapshotData: TypeAlias = (
    "Links | Fdb | BrctlShow | BrctlShowmacs | Routes | Sysctl | Ruleset | NftRuleset | Conntrack | DockerNetworks"
)

PARSERS: dict[str, Callable[[str], SnapshotData]] = {
    Kind.IP_LINK: parse_ip_link,
    Kind.IP_ADDR: parse_ip_link,
    Kind.BRIDGE_FDB: parse_bridge_fdb,
    Kind.BRCTL_SHOW: parse_brctl_show,
    Kind.BRCTL_SHOWMACS: parse_brctl_showmacs,
    Kind.ROUTE_N: parse_route_n,
    Kind.IP_ROUTE: parse_ip_route,
    Kind.SYSCTL: parse_sysctl,
    Kind.IP_LINK_JSON: parse_ip_json,
    Kind.IP_ADDR_JSON: parse_ip_json,
    Kind.BRIDGE_FDB_JSON: parse_bridge_fdb_json,
    Kind.IPTABLES_SAVE: _ruleset("ipv4"),
    Kind.IP6TABLES_SAVE: _ruleset("ipv6"),
    Kind.EBTABLES_SAVE: _ruleset("bridge"),
    Kind.CONNTRACK: _conntrack,
    Kind.NFT_RULESET: _nft,
    Kind.DOCKER_NETWORK: _docker,
}


UNREAD_SHOWN = 5  # unread lines named one by one in the snapshot's note; the rest are counted


def unread_note(data: object) -> str | None:
    """Say which lines of a parsed snapshot were not read, and why: the first few, then how many more."""
    unparsed = getattr(data, "unparsed", ())
    if not isinstance(unparsed, tuple) or not unparsed:
        return None
    shown = [f"line {u.line} not read ({u.reason})" for u in unparsed[:UNREAD_SHOWN] if isinstance(u, Unparsed)]
    more = len(unparsed) - UNREAD_SHOWN
    return "; ".join(shown + ([f"{more} more lines not read"] if more > 0 else []))
