"""Parse rule-tracing output: ``xtables-monitor --trace`` and ``nft monitor trace``.

Both come from nf_tables' trace netlink events (NFT_MSG_TRACE). The kernel sends the packet headers
with the first event of each (packet, base chain) pair, then one event per rule that matched, the
policy or return (net/netfilter/nf_tables_trace.c), so one *visit* of a base chain is: a packet line
followed by rule/policy lines with the same trace id. Each visit becomes one event (one hop) here,
carrying the rules it hit. The trace id is not enough to follow a packet: the kernel may give the
same packet a new id at a later hook (seen on this machine: raw PREROUTING and filter FORWARD of one
SYN had different ids), so packets are still correlated by their headers.

Formats: ../shared/reference/trace-formats.md sections 3.1 and 3.2 (iptables xtables-monitor.c,
nftables src/trace.c). Streaming: each visit is emitted as soon as it is complete (the next packet
line for the same id, or a terminal verdict of its base chain), and at the end of the input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from reportgen.model import LineRef, LogRecord, RuleHit
from reportgen.netfilter import BRIDGE, HOOKS, IPV4, IPV6

_XT_PACKET = re.compile(r"^PACKET: (?P<fam>\d+) (?P<id>[0-9a-f]{8}) (?P<rest>.*)$")
_XT_TRACE = re.compile(
    r"^ ?TRACE: (?P<fam>\d+) (?P<id>[0-9a-f]{8}) (?P<table>[^:\s]+):(?P<chain>[^:\s]+):"
    r"(?:rule:0x(?P<handle>[0-9a-f]+):(?P<verdict>[A-Z]+(?::\S+)?|0x[0-9a-f]+) *(?P<rule>.*)"
    r"|policy:(?P<policy>\S+) ?|return:(?P<ret>\S*))$"
)
_NFT = re.compile(
    r"^trace id (?P<id>[0-9a-f]{8}) (?P<family>ip6?|inet|arp|bridge|netdev|unknown) (?P<table>\S+) (?P<chain>\S+) "
    r"(?P<kind>packet: |conntrack: |rule |unknown rule handle |policy |verdict )(?P<rest>.*)$"
)
_NFT_VERDICT = re.compile(r"\(verdict (?P<v>[^()]*)\)$")
# xtables-monitor prints "ID=%d" with no space after it, so flags and the next key stick to it
# (trace-formats.md section 6, item 14).
_XT_ID = re.compile(r"ID=(\d+)(?=[A-Z]|\s|$)")
_NFPROTO = {"2": IPV4, "10": IPV6, "7": BRIDGE}
_XT_VERDICTS = {"0xfffffffb": "RETURN"}  # NFT_RETURN (-5) printed as %x (section 3.1)
_TCP_BITS = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20),
             ("ECE", 0x40), ("CWR", 0x80))
_PROTO_NAMES = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP", "ipv6-icmp": "ICMPv6", "icmpv6": "ICMPv6"}


def _num(text: str, base: int = 10) -> int | None:
    """A number from a field, or None when the line was cut or damaged (never raise on input)."""
    try:
        return int(text, base)
    except ValueError:
        return None


def _mac(text: str) -> str:
    """Zero-pad an ether_ntoa() MAC (2:42:ac:11:0:2 -> 02:42:ac:11:00:02)."""
    return ":".join(p.zfill(2) for p in text.lower().split(":"))


@dataclass
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

    def record(self) -> LogRecord:
        return LogRecord(ref=self.ref, text=self.text, stamp=None, fmt=self.fmt, prefix="",
                         in_dev=str(self.fields.pop("in_dev", "")), out_dev=str(self.fields.pop("out_dev", "")),
                         **self.fields)  # type: ignore[arg-type]


_XT_KEYS: dict[str, tuple[str, Callable[[str], object]]] = {
    "IN": ("in_dev", str), "OUT": ("out_dev", str), "MACSRC": ("mac_src", _mac), "MACDST": ("mac_dst", _mac),
    "MACPROTO": ("ethertype", lambda v: _num(v, 16)), "SRC": ("src", str), "DST": ("dst", str),
    "LEN": ("length", _num), "TTL": ("ttl", _num), "HOPLIMIT": ("ttl", _num), "ID": ("ipid", _num),
    "FLOWLBL": ("flowlabel", _num), "SPORT": ("sport", _num), "DPORT": ("dport", _num), "MARK": ("mark", str),
}


def _xt_fields(rest: str) -> dict[str, object]:
    rest = _XT_ID.sub(lambda m: f"ID={m.group(1)} ", rest)
    f: dict[str, object] = {}
    flags: list[str] = []
    ip_flags: list[str] = []
    for tok in rest.split():
        key, eq, val = tok.partition("=")
        if not eq:
            if tok in ("SYN", "ACK", "FIN", "RST", "PSH", "URG"):
                flags.append(tok)
            elif tok in ("DF", "MF", "CE"):
                ip_flags.append(tok)
            continue
        if key in _XT_KEYS:
            name, conv = _XT_KEYS[key]
            f[name] = conv(val)
        elif key in ("TOS", "TC"):  # only IPv4 prints TOS, only IPv6 TC (xtables-monitor.c)
            f["l3"] = IPV4 if key == "TOS" else IPV6
    if f.get("src") and "l3" not in f:
        f["l3"] = IPV6 if ":" in str(f["src"]) else IPV4
    if "sport" in f:
        f["proto"] = "TCP" if flags else "UDP"  # xtables-monitor prints TCP flags only for TCP
    if flags:
        f["tcp_flags"] = tuple(n for n, _ in _TCP_BITS_ORDER if n in flags)
    if ip_flags:
        f["ip_flags"] = tuple(ip_flags)
    return f


# Kernel LOG order of TCP flags (nf_log_dump_tcp_header), so both sources print the same tuple.
_TCP_BITS_ORDER = (("CWR", 0), ("ECE", 0), ("URG", 0), ("ACK", 0), ("PSH", 0), ("RST", 0), ("SYN", 0),
                   ("FIN", 0))


def _nft_fields(rest: str) -> dict[str, object]:
    f: dict[str, object] = {}
    toks = rest.split()
    i = 0

    def take(n: int = 1) -> str:
        nonlocal i
        val = " ".join(toks[i:i + n])
        i += n
        return val

    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        i += 1
        if t in ("iif", "oif"):
            f["in_dev" if t == "iif" else "out_dev"] = take().strip('"')
        elif t == "ether" and nxt in ("saddr", "daddr"):
            i += 1
            f["mac_src" if nxt == "saddr" else "mac_dst"] = _mac(take())
        elif t in ("ip", "ip6") and nxt in ("saddr", "daddr"):
            i += 1
            f["src" if nxt == "saddr" else "dst"] = take()
            f["l3"] = IPV4 if t == "ip" else IPV6
        elif t == "ip" and nxt in ("ttl", "id", "length"):
            i += 1
            f[{"ttl": "ttl", "id": "ipid", "length": "length"}[nxt]] = _num(take())
        elif t == "ip" and nxt == "protocol":
            i += 1
            f["proto"] = _PROTO_NAMES.get(take())
        elif t == "ip6" and nxt in ("hoplimit", "flowlabel", "length", "nexthdr"):
            i += 1
            v = take()
            n = _num(v)
            if nxt == "hoplimit":
                f["ttl"] = n
            elif nxt == "flowlabel":
                f["flowlabel"] = n
            elif nxt == "length":
                f["length"] = None if n is None else n + 40  # nft prints the payload length; nf_log +40
            else:
                f["proto"] = _PROTO_NAMES.get(v)
        elif t in ("tcp", "udp") and nxt in ("sport", "dport"):
            i += 1
            f["sport" if nxt == "sport" else "dport"] = _num(take())
            f["proto"] = t.upper()
        elif t == "tcp" and nxt == "flags":
            i += 2  # "flags =="
            f["tcp_flags"] = _tcp_flags(take())
            f["proto"] = "TCP"
        elif t in ("icmp", "icmpv6") and nxt in ("type", "code", "id", "sequence"):
            i += 1
            v = take()
            f["proto"] = "ICMP" if t == "icmp" else "ICMPv6"
            if nxt == "type":
                f["icmp_type"] = _ICMP_TYPES[v] if v in _ICMP_TYPES else _num(v)  # "²".isdigit() is True
            elif nxt == "code":
                f["icmp_code"] = _num(v)
            elif nxt == "id":
                f["icmp_id"] = _num(v)
            else:
                f["icmp_seq"] = _num(v)
    return f


_ICMP_TYPES = {"echo-reply": 0, "destination-unreachable": 3, "echo-request": 8, "time-exceeded": 11,
               "parameter-problem": 12, "nd-neighbor-solicit": 135, "nd-neighbor-advert": 136}


def _tcp_flags(text: str) -> tuple[str, ...]:
    names: set[str] = set()
    if text.startswith("0x"):
        bits = _num(text, 16) or 0
        names = {n for n, b in _TCP_BITS if bits & b}
    else:
        names = {p.upper() for p in text.split("|")}
    return tuple(n for n, _ in _TCP_BITS_ORDER if n in names)


def _family(fam: str, fields: dict[str, object]) -> str:
    if fam in ("ip",):
        return IPV4
    if fam == "ip6":
        return IPV6
    if fam == "bridge":
        return BRIDGE
    return str(fields.get("l3") or IPV4)


class TraceParser:
    """Feed lines one by one; completed visits come out in kernel order."""

    def __init__(self) -> None:
        self.open: dict[str, Visit] = {}
        self.order: list[str] = []
        # The packet fields of recently closed visits, by trace id: the kernel sends the headers only
        # with the first event of a (packet, base chain) pair, so a later chain's lines may come
        # without a packet line of their own (nftables tests/shell/testcases/trace/0001simple).
        self.last_fields: dict[str, tuple[str, dict[str, object]]] = {}
        self.pending_ct: dict[str, list[tuple[LineRef, str]]] = {}

    def _close(self, tid: str) -> Iterator[Visit]:
        v = self.open.pop(tid, None)
        if v is not None:
            self.order.remove(tid)
            if v.text:
                self.last_fields[tid] = (v.family, dict(v.fields))
                if len(self.last_fields) > 4096:
                    self.last_fields.pop(next(iter(self.last_fields)))
            yield v

    def flush(self) -> Iterator[Visit]:
        for tid in list(self.order):
            yield from self._close(tid)


class XtablesMonitorParser(TraceParser):
    """``xtables-monitor --trace`` (iptables ≥ 1.8.7: PACKET line first; older: TRACE lines first)."""

    fmt = "xtmon"

    def feed(self, ref: LineRef, text: str) -> tuple[list[Visit], bool]:
        """Return (completed visits, whether the line was used)."""
        out: list[Visit] = []
        m = _XT_PACKET.match(text)
        if m:
            tid = m.group("id")
            pending = self.open.get(tid)
            if pending is not None and not pending.text:
                # ≤ 1.8.6 printed the rule line before the PACKET line: complete that visit.
                pending.ref, pending.text = ref, text
                pending.fields = _xt_fields(m.group("rest"))
                return out, True
            out += list(self._close(tid))
            fields = _xt_fields(m.group("rest"))
            fam = _NFPROTO.get(m.group("fam"), str(fields.get("l3") or IPV4))
            self.open[tid] = Visit(ref, text, self.fmt, fam, "", "", tid, fields)
            self.order.append(tid)
            return out, True
        t = _XT_TRACE.match(text)
        if not t:
            return out, False
        tid = t.group("id")
        v = self.open.get(tid)
        if v is None:
            v = Visit(ref, "", self.fmt, _NFPROTO.get(t.group("fam"), IPV4), "", "", tid, {})
            self.open[tid] = v
            self.order.append(tid)
        if not v.table:
            v.table, v.chain = t.group("table"), t.group("chain")
        if t.group("policy") is not None:
            kind, verdict, rule, handle = "policy", t.group("policy"), "", None
        elif t.group("ret") is not None:
            kind, verdict, rule, handle = "return", "RETURN", "", None
        else:
            kind, handle = "rule", "0x" + t.group("handle")
            verdict = _XT_VERDICTS.get(t.group("verdict"), t.group("verdict"))
            rule = t.group("rule").strip()
        head, sep, target = verdict.partition(":")  # JUMP:DOCKER-USER: the chain name keeps its case
        verdict = head.lower() + sep + target
        v.rules.append(RuleHit(t.group("table"), t.group("chain"), kind, verdict, rule, handle, ref))
        if _ends_visit(kind, verdict) and v.text:
            out += list(self._close(tid))
        return out, True


class NftTraceParser(TraceParser):
    """``nft monitor trace`` (nftables src/trace.c; ``conntrack:`` lines from v1.1.4)."""

    fmt = "nfttrace"

    def feed(self, ref: LineRef, text: str) -> tuple[list[Visit], bool]:
        out: list[Visit] = []
        m = _NFT.match(text.rstrip())
        if not m:
            return out, False
        tid, kind, rest = m.group("id"), m.group("kind").strip(), m.group("rest")
        table, chain = m.group("table"), m.group("chain")
        if kind == "packet:":
            out += list(self._close(tid))
            fields = _nft_fields(rest)
            fam = _family(m.group("family"), fields)
            if fam != BRIDGE and "l3" not in fields:
                fields["l3"] = fam
            new = Visit(ref, text, self.fmt, fam, table, chain, tid, fields)
            for ct_ref, ct in self.pending_ct.pop(tid, []):
                new.extra.append(ct_ref)
                prior = new.fields.get("extra", ())
                new.fields["extra"] = (*(prior if isinstance(prior, tuple) else ()), "conntrack: " + ct)
            self.open[tid] = new
            self.order.append(tid)
            return out, True
        if kind == "conntrack:":
            # nftables >= 1.1.4 prints the conntrack state just before the packet line it belongs to.
            self.pending_ct.setdefault(tid, []).append((ref, rest.strip()))
            return out, True
        v: Visit | None = self.open.get(tid)
        if v is not None and (v.table, v.chain) != (table, chain) and self._is_base(v, table, chain):
            out += list(self._close(tid))
            v = None
        if v is None:
            if tid not in self.last_fields:
                return out, False
            fam, fields = self.last_fields[tid]
            v = Visit(ref, text, self.fmt, fam, table, chain, tid, dict(fields))
            self.open[tid] = v
            self.order.append(tid)
        if kind == "policy":
            verdict, rule_text, handle, hit_kind = rest.split()[0] if rest.split() else "", "", None, "policy"
        else:
            vm = _NFT_VERDICT.search(rest)
            verdict = vm.group("v") if vm else ""
            body = _NFT_VERDICT.sub("", rest).strip()
            handle_m = re.search(r"# handle (\d+)$", body)
            handle = handle_m.group(1) if handle_m else None
            rule_text = body[: handle_m.start()].rstrip() if handle_m else body  # no \s* regex: quadratic
            if kind == "unknown rule handle":
                handle, rule_text = rest.split()[0], ""
            hit_kind = "return" if kind == "verdict" else "rule"
        v.rules.append(RuleHit(table, chain, hit_kind, verdict, rule_text, handle, ref))
        if _ends_visit(hit_kind, verdict):
            out += list(self._close(tid))
        return out, True

    @staticmethod
    def _is_base(v: Visit, table: str, chain: str) -> bool:
        """A line from another table, or from a chain no rule of this visit jumped to, is a new visit."""
        if table != v.table:
            return True
        return not any(r.verdict.split()[-1] == chain for r in v.rules if r.verdict.startswith(("jump", "goto")))


def _ends_visit(kind: str, verdict: str) -> bool:
    """A policy, or an accept/drop/reject/queue/stolen verdict, ends the packet's visit of this base
    chain (nf_tables_core.c nft_do_chain returns to the hook); continue, jump, goto and return do not."""
    words = verdict.split(":")[0].split()
    return kind == "policy" or (bool(words) and words[0] in ("accept", "drop", "reject", "queue", "stolen"))


def detect_trace_format(lines: list[str]) -> str | None:
    """Tell a trace-monitor file from the first lines: "xtmon", "nfttrace", or None."""
    for line in lines:
        if _XT_PACKET.match(line) or _XT_TRACE.match(line):
            return "xtmon"
        if _NFT.match(line.rstrip()):
            return "nfttrace"
    return None


def base_chain_hook(table: str, chain: str, family: str) -> str | None:
    """The hook of a base chain from its name (iptables-nft names chains after hooks)."""
    up = chain.upper()
    if up in HOOKS:
        return up
    words = {"pre": "PREROUTING", "prerouting": "PREROUTING", "input": "INPUT", "in": "INPUT",
             "forward": "FORWARD", "fwd": "FORWARD", "output": "OUTPUT", "out": "OUTPUT",
             "post": "POSTROUTING", "postrouting": "POSTROUTING"}
    for w in re.split(r"[^a-z0-9]+", chain.lower()):
        if w in words:
            return words[w]
    return None
