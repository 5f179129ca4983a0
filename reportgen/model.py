"""The data model: frozen dataclasses shared by parsers, the explainer and the renderers."""

# The records are frozen only where they are compiled (FROZEN): mypy cannot see that value.
# mypy: disable-error-code="literal-required"

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.machinery import EXTENSION_SUFFIXES
from typing import Final

# Each record writes its own __init__, in field order with the dataclass's defaults (dataclasses.replace
# calls it with every field by name). Compiled with mypyc, a dataclass's generated methods stay
# interpreted Python, and a frozen one's __init__ sets each field through object.__setattr__: building
# a LogRecord cost more than parsing its line (docs/performance.md, "Session 7"). A written __init__ is
# compiled to plain stores into the object. It cannot run under a frozen __setattr__ in the
# interpreter, so a record is frozen when this module runs compiled (as it always does in use, and in
# the test suite), and a plain slotted dataclass under REPORTGEN_PURE_PYTHON, whose code never assigns
# a field either. unsafe_hash=True gives the hash frozen=True gives: hash of the fields' tuple.
FROZEN = __file__.endswith(tuple(EXTENSION_SUFFIXES))  # compiled: mypyc's extension module


class Action(StrEnum):
    """What a log prefix or a traced rule says happened to the packet at that hook.

    A LOG/nft ``log`` rule is non-terminating (xt_LOG.c returns XT_CONTINUE; nft_log.c does not set a
    verdict), so a prefix's action word is the rule author's statement about the rule that follows it
    (ufw, firewalld and fwbuilder all emit "log, then the same match with DROP/REJECT/ACCEPT"). It is
    evidence for the hook's outcome, cited as such, not a kernel verdict.
    """

    DROP = "drop"
    REJECT = "reject"
    ACCEPT = "accept"
    AUDIT = "audit"  # logged for auditing only (ufw "[UFW AUDIT]"): no verdict implied
    LIMIT = "limit"  # rate-limit hit (ufw "[UFW LIMIT BLOCK]" drops; plain LIMIT says only that)
    LOG = "log"  # a log line whose prefix states no action


# ICMP types by name (RFC 792 for ICMP; RFC 4443 and, for neighbor discovery, RFC 4861 for ICMPv6).
ICMP_TYPE_NAMES = {
    ("ICMP", 0): "echo reply",
    ("ICMP", 3): "destination unreachable",
    ("ICMP", 8): "echo request",
    ("ICMP", 11): "time exceeded",
    ("ICMPv6", 1): "destination unreachable",
    ("ICMPv6", 3): "time exceeded",
    ("ICMPv6", 128): "echo request",
    ("ICMPv6", 129): "echo reply",
    ("ICMPv6", 135): "neighbor solicitation",
    ("ICMPv6", 136): "neighbor advertisement",
}


# The protocols nf_log prints for ICMP and ICMPv6 (nf_log_syslog.c dump_ipv4_packet "PROTO=ICMP",
# dump_ipv6_packet "PROTO=ICMPv6"), whose ids stand where other protocols have ports (nf_conntrack_proto_icmp.c).
ICMP_PROTOS: Final = frozenset({"ICMP", "ICMPv6"})


class HitKind(StrEnum):
    """What a rule-tracing source shows a packet hit in a chain (RuleHit.kind): a rule, a base chain's
    policy, or the return at a chain's end (legacy TRACE's "rule", "return", "policy": ip_tables.c
    comments[]; nft monitor trace's "rule", "policy" and "verdict", nftables src/trace.c)."""

    RULE = "rule"
    POLICY = "policy"
    RETURN = "return"


HIT_KINDS: Final = {k.value: k for k in HitKind}  # a hit kind by the word a trace prints (a dict: no enum call)


class NatBy(StrEnum):
    """Who applied an address translation (Nat.by): a nat table rule, which sees only a connection's first
    packet, or conntrack, which applies the stored mapping to every later packet and the replies
    (nf_nat_inet_fn, net/netfilter/nf_nat_core.c)."""

    RULE = "rule"
    CONNTRACK = "conntrack"


class VerdictCode(StrEnum):
    """The closed set of final outcomes a packet can be given (documented in docs/json-schema.md)."""

    DELIVERED_LOCAL = "delivered-local"  # reached the host's own stack (INPUT, or up from the bridge)
    DELIVERED_TO_PORT = "delivered-to-port"  # bridged out of a bridge port (e.g. to a container)
    FORWARDED_OUT = "forwarded-out"  # left the host by an interface the trace shows
    DROPPED_BY_RULE = "dropped-by-rule"  # a DROP rule, or a prefix whose action is DROP
    DROPPED_BY_POLICY = "dropped-by-policy"  # a base chain's policy drop
    REJECTED = "rejected"  # REJECT: dropped, and an ICMP error / TCP RST sent back
    LAST_SEEN = "last-seen"  # the trace stops; what happened next is not shown
    UNKNOWN = "unknown"  # the evidence does not decide

    @property
    def passed(self) -> bool:
        """Whether the packet went through every hook of its path (delivered or left)."""
        return self in (VerdictCode.DELIVERED_LOCAL, VerdictCode.DELIVERED_TO_PORT, VerdictCode.FORWARDED_OUT)


class Inferred(StrEnum):
    """What a verdict that states a fact (a drop, a delivery) rests on when no line shows that fact
    (explain.answer.inferred_from): the case summary counts such verdicts apart from the proven ones."""

    # A log prefix's action word: a LOG rule decides nothing (xt_LOG.c returns XT_CONTINUE; nft_log.c
    # sets no verdict), so the word is the rule author's statement about the rule after it.
    PREFIX = "log prefix"
    # Evaluating the ruleset snapshot from the last logged hook (explain.attribution): the snapshot may
    # not be the ruleset the packet met.
    SNAPSHOT = "ruleset snapshot"


@dataclass(frozen=FROZEN, slots=True, init=False)
class LineRef:
    """Where a line came from: the file (as named in the case) and its 1-based line number."""

    file: str
    line: int

    def __init__(self, file: str, line: int) -> None:
        self.file = file
        self.line = line

    # Written out, as __init__ is (compiled): a LineRef keys dicts of lines and is compared on every
    # hop. They say what the dataclass's own said: equal when of the same class with equal fields,
    # the hash of the fields' tuple.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LineRef) or other.__class__ is not self.__class__:
            return NotImplemented
        return self.file == other.file and self.line == other.line

    def __hash__(self) -> int:
        return hash((self.file, self.line))

    # order=True's comparisons, written out with __eq__ (mypyc gives a class that defines __eq__ every
    # rich comparison, which dataclass(order=True) refuses to overwrite).
    def __lt__(self, other: object) -> bool:
        if not isinstance(other, LineRef) or other.__class__ is not self.__class__:
            return NotImplemented
        return (self.file, self.line) < (other.file, other.line)

    def __le__(self, other: object) -> bool:
        if not isinstance(other, LineRef) or other.__class__ is not self.__class__:
            return NotImplemented
        return (self.file, self.line) <= (other.file, other.line)

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, LineRef) or other.__class__ is not self.__class__:
            return NotImplemented
        return (self.file, self.line) > (other.file, other.line)

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, LineRef) or other.__class__ is not self.__class__:
            return NotImplemented
        return (self.file, self.line) >= (other.file, other.line)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class LogRecord:
    """One kernel log record, parsed: the fields of an nf_log (LOG/nft log) or ebt_log line."""

    ref: LineRef
    text: str  # the whole input line, decoded, without the line end
    stamp: float | None  # kernel monotonic seconds, when the wrapper carried them
    fmt: str  # "nflog" or "ebtlog"
    prefix: str  # verbatim, untrimmed
    in_dev: str
    out_dev: str
    physin: str = ""
    physout: str = ""
    mac_src: str | None = None
    mac_dst: str | None = None
    ethertype: int | None = None
    l3: str | None = None  # "ipv4", "ipv6", "arp" or None
    src: str | None = None
    dst: str | None = None
    length: int | None = None
    ttl: int | None = None  # TTL or HOPLIMIT
    ipid: int | None = None
    ip_flags: tuple[str, ...] = ()
    proto: str | None = None  # "ICMP", "TCP", "UDP", "ICMPv6", or a number as text
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None
    icmp_seq: int | None = None
    tcp_flags: tuple[str, ...] = ()
    tcp_seq: int | None = None
    flowlabel: int | None = None
    mark: str | None = None
    truncated: bool = False
    extra: tuple[str, ...] = ()  # tokens the tokenizer kept but did not interpret
    # The header an ICMP error quotes (the packet it is about): src, dst, proto, sport, dport.
    embedded: tuple[str | None, str | None, str | None, int | None, int | None] | None = None
    # Names of the fields (as in this class: "src", "dst", "mac_src", ...) whose value the paste
    # had redacted ("XXX.232.61.230", "xx:xx:..", "<filtered>"); such a field's value is None and
    # it must be shown as redacted, never as an address.
    redacted: tuple[str, ...] = ()
    # Whether the line printed a MAC field at all (MAC=, even empty or redacted, or MACSRC=). Since
    # xt_LOG (Linux 3.4) the MAC header is logged whenever there is an input device; older ipt_LOG.c
    # logged it only "for input path only" (in && !out), so its absence on a line with IN= and OUT=
    # dates the kernel (prefix.in_out_hooks).
    mac_logged: bool = False
    # The id a trace monitor printed for the event (NFTA_TRACE_ID, net/netfilter/nf_tables_trace.c:
    # a hash of the skb). A hint for joining a packet's walks, not proof: ids are reused, and
    # iptables-nft can show one packet under new ids at later hooks.
    trace_id: str | None = None
    # The daemon that wrote the line when it is not the kernel: PVEFW_LOGGER for Proxmox VE's
    # pvefw-logger, which prints NFLOG packets in its own layout (parsers/nflog.py _parse_pvefw).
    logger: str | None = None
    # The fields the line's format always prints that a record cut off mid-line lacks, in the
    # order they would follow the cut ("TTL", "ID", "PROTO", ...); empty when nothing is missing.
    missing: tuple[str, ...] = ()

    def __init__(
        self,
        ref: LineRef,
        text: str,
        stamp: float | None,
        fmt: str,
        prefix: str,
        in_dev: str,
        out_dev: str,
        physin: str = "",
        physout: str = "",
        mac_src: str | None = None,
        mac_dst: str | None = None,
        ethertype: int | None = None,
        l3: str | None = None,
        src: str | None = None,
        dst: str | None = None,
        length: int | None = None,
        ttl: int | None = None,
        ipid: int | None = None,
        ip_flags: tuple[str, ...] = (),
        proto: str | None = None,
        sport: int | None = None,
        dport: int | None = None,
        icmp_type: int | None = None,
        icmp_code: int | None = None,
        icmp_id: int | None = None,
        icmp_seq: int | None = None,
        tcp_flags: tuple[str, ...] = (),
        tcp_seq: int | None = None,
        flowlabel: int | None = None,
        mark: str | None = None,
        truncated: bool = False,
        extra: tuple[str, ...] = (),
        embedded: tuple[str | None, str | None, str | None, int | None, int | None] | None = None,
        redacted: tuple[str, ...] = (),
        mac_logged: bool = False,
        trace_id: str | None = None,
        logger: str | None = None,
        missing: tuple[str, ...] = (),
    ) -> None:
        self.ref = ref
        self.text = text
        self.stamp = stamp
        self.fmt = fmt
        self.prefix = prefix
        self.in_dev = in_dev
        self.out_dev = out_dev
        self.physin = physin
        self.physout = physout
        self.mac_src = mac_src
        self.mac_dst = mac_dst
        self.ethertype = ethertype
        self.l3 = l3
        self.src = src
        self.dst = dst
        self.length = length
        self.ttl = ttl
        self.ipid = ipid
        self.ip_flags = ip_flags
        self.proto = proto
        self.sport = sport
        self.dport = dport
        self.icmp_type = icmp_type
        self.icmp_code = icmp_code
        self.icmp_id = icmp_id
        self.icmp_seq = icmp_seq
        self.tcp_flags = tcp_flags
        self.tcp_seq = tcp_seq
        self.flowlabel = flowlabel
        self.mark = mark
        self.truncated = truncated
        self.extra = extra
        self.embedded = embedded
        self.redacted = redacted
        self.mac_logged = mac_logged
        self.trace_id = trace_id
        self.logger = logger
        self.missing = missing


# LogRecord.logger of a line written by Proxmox VE's pvefw-logger (proxmox/pve-firewall src/pvefw-logger.c).
PVEFW_LOGGER = "pvefw-logger"


@dataclass(frozen=FROZEN, slots=True, init=False)
class HookRef:
    """Which netfilter hook and table a record was logged at."""

    family: str  # bridge / ipv4 / ipv6 (netfilter.FAMILIES; nft adds inet, arp, netdev)
    hook: str  # PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING
    table: str | None
    chain: str
    how: str  # how it was recognised: "prefix words", "prefix map", "TRACE prefix"
    # Every hook the record could have been logged at, in hook order, when the input cannot tell
    # which (an unknown prefix with IN= only: PREROUTING or INPUT). Empty when the hook is known.
    # ``hook`` is then candidates[0], used only to order events; it is never stated as a fact.
    candidates: tuple[str, ...] = ()
    action: Action | None = None  # what the prefix (or convention) says happened at this hook
    convention: str | None = None  # the well-known prefix convention that placed it ("ufw", ...)
    # The command whose rule wrote a log record ("iptables", "ip6tables", "ebtables", "nft bridge",
    # ...), when the evidence tells: a legacy TRACE line, a convention of the prefix, a snapshot, or
    # ebt_log's own layout, which only an ebtables rule prints (prefix.EBT_LOG_WRITER_NOTE). None for
    # a kernel LOG line without such evidence: nf_log_syslog.c prints the same text for iptables' LOG
    # target (xt_LOG.c) and nft's log statement (nft_log.c).
    writer: str | None = None

    def __init__(
        self,
        family: str,
        hook: str,
        table: str | None,
        chain: str,
        how: str,
        candidates: tuple[str, ...] = (),
        action: Action | None = None,
        convention: str | None = None,
        writer: str | None = None,
    ) -> None:
        self.family = family
        self.hook = hook
        self.table = table
        self.chain = chain
        self.how = how
        self.candidates = candidates
        self.action = action
        self.convention = convention
        self.writer = writer

    # Written out, as __init__ is (compiled): correlation keys its caches by hook. They say what the
    # dataclass's own said: equal when of the same class with equal fields, the hash of the fields' tuple.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HookRef) or other.__class__ is not self.__class__:
            return NotImplemented
        return (
            self.family == other.family
            and self.hook == other.hook
            and self.table == other.table
            and self.chain == other.chain
            and self.how == other.how
            and self.candidates == other.candidates
            and self.action == other.action
            and self.convention == other.convention
            and self.writer == other.writer
        )

    def __hash__(self) -> int:
        return hash(
            (
                self.family,
                self.hook,
                self.table,
                self.chain,
                self.how,
                self.candidates,
                self.action,
                self.convention,
                self.writer,
            )
        )

    @property
    def placed(self) -> bool:
        """Whether the hook is known, rather than one of several candidates."""
        return not self.candidates

    @property
    def base_chain(self) -> str | None:
        """The base chain the record was seen in, when known: a placed record's, or the one an nft
        trace or xtables-monitor line names (their events carry the base chain walked, even when no
        snapshot tells its hook). A LOG line or a legacy TRACE walk cut before its built-in chain
        names none."""
        return self.chain if self.placed or self.how in ("nft trace", "xtables-monitor") else None

    @property
    def tool(self) -> str | None:
        """The command whose rules the record was seen in, when the evidence tells: a trace monitor
        prints the rules it walked (nft monitor trace: nft; xtables-monitor: iptables-nft's tables),
        a legacy "TRACE: table:chain:type:rulenum" line comes only from iptables-legacy
        (ip_tables.c/ip6_tables.c trace_packet(); iptables-nft turns -j TRACE into nftrace, which
        nft monitor shows), a log record names its ``writer``. None when nothing tells (a kernel LOG
        line alone)."""
        if self.how == "nft trace":
            return nft_tool(self.family)
        if self.how in ("xtables-monitor", "TRACE prefix"):
            return family_tool(self.family)
        return self.writer

    @property
    def label(self) -> str:
        """Name the place as its tool does; an unplaced record names every hook it could be. When the
        tool is unknown the family of the hook is named instead ("IPv4 filter FORWARD"), never a guess."""
        chain = self.chain if self.placed else " or ".join(self.candidates)
        if not self.placed and self.base_chain:
            chain = f"{self.base_chain} ({chain})"
        return f"{self.tool or family_name(self.family)} {self.table or '?'} {chain}"


# The command that owns each family's rules (iptables(8), ip6tables(8), ebtables(8)); nft(8) names
# its families "ip", "ip6", "inet", "arp", "bridge", "netdev".
_TOOL_OF_FAMILY = {"bridge": "ebtables", "ipv4": "iptables", "ipv6": "ip6tables"}
_NFT_FAMILY_WORD = {"bridge": "bridge", "ipv4": "ip", "ipv6": "ip6", "inet": "inet", "arp": "arp", "netdev": "netdev"}
# A hook's family as a reader names it, for a label whose tool is unknown.
_FAMILY_NAME = {"bridge": "bridge", "ipv4": "IPv4", "ipv6": "IPv6"}


def family_name(family: str) -> str:
    """A hook family as a reader names it: "IPv4", "IPv6", "bridge"."""
    return _FAMILY_NAME.get(family, family)


def nft_tool(family: str) -> str:
    """nft and the table family it names for a hook family: "nft ip", "nft ip6", "nft bridge"."""
    return f"nft {_NFT_FAMILY_WORD.get(family, family)}"


def family_tool(family: str) -> str:
    """The command whose rules a family's hooks run: iptables/ip6tables/ebtables, or nft for the families
    only nft has (inet, arp, netdev)."""
    if family in _TOOL_OF_FAMILY:
        return _TOOL_OF_FAMILY[family]
    return nft_tool(family)


# An nft reject statement ends a rule (nft(8) REJECT STATEMENT: reject [with ...]); iptables prints
# "-j REJECT [--reject-with ...]".
_REJECT_STATEMENT = re.compile(r"(?:^|\s)(?:reject(?: with \S+(?: type \S+)?)?|-j REJECT(?: --reject-with \S+)?)$")


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class RuleHit:
    """A rule, policy or return a trace source says the packet hit at a hook."""

    table: str
    chain: str
    kind: HitKind
    verdict: str  # lowercase: accept, drop, continue, jump X, return, ...
    text: str  # the rule as the tool printed it ("" for policy/return)
    handle: str | None  # nft handle (0x.. from xtables-monitor) or legacy TRACE rule number
    ref: LineRef
    snapshot_ref: LineRef | None = None  # the same rule in the ruleset snapshot, when one is given

    def __init__(
        self,
        table: str,
        chain: str,
        kind: HitKind,
        verdict: str,
        text: str,
        handle: str | None,
        ref: LineRef,
        snapshot_ref: LineRef | None = None,
    ) -> None:
        self.table = table
        self.chain = chain
        self.kind = kind
        self.verdict = verdict
        self.text = text
        self.handle = handle
        self.ref = ref
        self.snapshot_ref = snapshot_ref

    @property
    def rejects(self) -> bool:
        """Whether the rule rejected: nft prints a reject rule's verdict as "drop", because the reject
        expression sends its error and then sets NF_DROP (net/netfilter/nft_reject_inet.c)."""
        head = self.verdict.split(":")[0]
        return head.startswith("reject") or (head == "drop" and bool(_REJECT_STATEMENT.search(self.text)))

    @property
    def decisive(self) -> bool:
        """Drop and reject end the packet's life (nf_tables verdicts NF_DROP; REJECT sends an error)."""
        return self.verdict.split(":")[0] in ("drop", "reject")


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class Event:
    """A record placed at its hook, with the rules a trace source saw it hit there."""

    record: LogRecord
    hook: HookRef
    rules: tuple[RuleHit, ...] = ()
    # Further lines the event was made from: nft trace "conntrack:" lines, and the packet line of a
    # second base chain at the same hook (parsers/traces.py NftTraceParser).
    extra: tuple[LineRef, ...] = ()

    def __init__(
        self,
        record: LogRecord,
        hook: HookRef,
        rules: tuple[RuleHit, ...] = (),
        extra: tuple[LineRef, ...] = (),
    ) -> None:
        self.record = record
        self.hook = hook
        self.rules = rules
        self.extra = extra

    @property
    def refs(self) -> tuple[LineRef, ...]:
        own = self.record.ref
        if not self.rules and not self.extra:
            return (own,)
        # LineRef's fields compared, not its ==: compiled (mypyc), == of a dataclass is a call through
        # the type's slot, and on nft traces it was most of this property's time (docs/performance.md).
        line, file = own.line, own.file
        return (
            own,
            *[r.ref for r in self.rules if r.ref.line != line or r.ref.file != file],
            *[x for x in self.extra if x.line != line or x.file != file],
        )


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class UnusedLine:
    """Input lines that did not become events, and why: a run of consecutive lines with one reason.

    Runs keep the account complete without holding every line of a multi-GB log in memory; the text
    is that of the first line of the run.
    """

    ref: LineRef
    reason: str
    text: str
    last: int = 0  # last line of the run (inclusive); 0 means the run is the one line ref.line

    def __init__(self, ref: LineRef, reason: str, text: str, last: int = 0) -> None:
        self.ref = ref
        self.reason = reason
        self.text = text
        self.last = last

    @property
    def count(self) -> int:
        return max(self.last, self.ref.line) - self.ref.line + 1

    @property
    def span(self) -> str:
        return str(self.ref) if self.count == 1 else f"{self.ref}-{self.last}"


@dataclass(frozen=FROZEN, slots=True, init=False)
class Endpoint:
    """An address and port (the ICMP echo id stands in for ports), as conntrack keys a flow."""

    addr: str
    port: int | None

    def __init__(self, addr: str, port: int | None) -> None:
        self.addr = addr
        self.port = port

    # Written out, as __init__ is (compiled): correlation compares and hashes endpoints for every
    # packet. They say what the dataclass's own said: equal when of the same class with equal fields,
    # the hash of the fields' tuple.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Endpoint) or other.__class__ is not self.__class__:
            return NotImplemented
        return self.addr == other.addr and self.port == other.port

    def __hash__(self) -> int:
        return hash((self.addr, self.port))

    def __str__(self) -> str:
        if self.port is None:
            return self.addr
        if ":" in self.addr:
            return f"[{self.addr}]:{self.port}"
        return f"{self.addr}:{self.port}"


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class Nat:
    """An address translation: what it was, where it happened and the evidence for it."""

    type: str  # "DNAT", "SNAT" or "MASQUERADE"
    direction: str  # "original" (the rule's own rewrite) or "reply" (conntrack reversing it)
    hook: str  # e.g. "ipv4 nat POSTROUTING"
    field: str  # "source" or "destination"
    before: Endpoint
    after: Endpoint
    evidence: str
    by: NatBy = NatBy.RULE  # the nat table decided (first packet), or conntrack's stored mapping
    rule: str | None = None  # the ruleset rule that made the mapping, when a snapshot has it
    rule_ref: LineRef | None = None
    conntrack: str | None = None  # the conntrack -L entry that shows the mapping
    # What no line shows of ``after``, in words, and what would settle it, when the trace shows the SNAT
    # or MASQUERADE rule but not the rewritten packet (attribution.unshown_source_nat); ``after`` then
    # holds an empty address (never a made-up one, nor words) where the address is unknown, and a port
    # of None where the port is unknown.
    unknown: str | None = None

    def __init__(
        self,
        type: str,
        direction: str,
        hook: str,
        field: str,
        before: Endpoint,
        after: Endpoint,
        evidence: str,
        by: NatBy = NatBy.RULE,
        rule: str | None = None,
        rule_ref: LineRef | None = None,
        conntrack: str | None = None,
        unknown: str | None = None,
    ) -> None:
        self.type = type
        self.direction = direction
        self.hook = hook
        self.field = field
        self.before = before
        self.after = after
        self.evidence = evidence
        self.by = by
        self.rule = rule
        self.rule_ref = rule_ref
        self.conntrack = conntrack
        self.unknown = unknown


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class Skipped:
    """A hook the packet's path passes but where no line of this packet was logged."""

    stage: str
    family: str
    table: str
    hook: str
    reason: str  # "conntrack", "no-rule", "bridge-nf-off", "not-logged"
    explanation: str
    rule_ref: LineRef | None = None

    def __init__(
        self,
        stage: str,
        family: str,
        table: str,
        hook: str,
        reason: str,
        explanation: str,
        rule_ref: LineRef | None = None,
    ) -> None:
        self.stage = stage
        self.family = family
        self.table = table
        self.hook = hook
        self.reason = reason
        self.explanation = explanation
        self.rule_ref = rule_ref


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class Verdict:
    """What became of the packet, and the evidence that decided it."""

    code: VerdictCode
    where: str
    explanation: str
    # What decided it, with its line: the rule text and file:line, the prefix's action, the chain
    # policy, the exit hop, or "last seen; the next hook is not traced".
    evidence: str
    rule: str | None = None
    rule_ref: LineRef | None = None

    def __init__(
        self,
        code: VerdictCode,
        where: str,
        explanation: str,
        evidence: str,
        rule: str | None = None,
        rule_ref: LineRef | None = None,
    ) -> None:
        self.code = code
        self.where = where
        self.explanation = explanation
        self.evidence = evidence
        self.rule = rule
        self.rule_ref = rule_ref


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class Hop:
    """One event of a packet, with its place on the path and its explanation."""

    step: int
    event: Event
    stage: str
    explanation: tuple[str, ...]
    # True when the hop was predicted by the simulator (reportgen.simulate) from the snapshots: its
    # event's record is synthetic and its line reference names the snapshot rule, not a kernel line.
    predicted: bool = False
    # What a rule-tracing source shows happened at this hook when no prefix says it (explain.py
    # trace_outcome): the last traced verdict, or ACCEPT when the packet's own lines go on.
    outcome: Action | None = None

    def __init__(
        self,
        step: int,
        event: Event,
        stage: str,
        explanation: tuple[str, ...],
        predicted: bool = False,
        outcome: Action | None = None,
    ) -> None:
        self.step = step
        self.event = event
        self.stage = stage
        self.explanation = explanation
        self.predicted = predicted
        self.outcome = outcome


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class Packet:
    """One packet instance: its hops in hook order and what the explainer concluded."""

    id: str
    conversation: str
    role: str  # "request", "reply", or "unknown" (a frame without IP fields)
    path: str  # bridged, bridged-to-host, routed, local-in, local-out, undetermined
    summary: str
    hops: tuple[Hop, ...]
    nat: tuple[Nat, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    verdict: Verdict | None = None

    def __init__(
        self,
        id: str,
        conversation: str,
        role: str,
        path: str,
        summary: str,
        hops: tuple[Hop, ...],
        nat: tuple[Nat, ...] = (),
        skipped: tuple[Skipped, ...] = (),
        verdict: Verdict | None = None,
    ) -> None:
        self.id = id
        self.conversation = conversation
        self.role = role
        self.path = path
        self.summary = summary
        self.hops = hops
        self.nat = nat
        self.skipped = skipped
        self.verdict = verdict


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class PacketGroup:
    """Packets of one conversation that behave alike (explain.groups.behaviour), told once."""

    id: str
    conversation: str
    first: str  # the packet that stands for the group; its hops and texts are the group's
    packets: tuple[str, ...]  # every member's id, in input order
    first_stamp: float | None  # kernel time of the earliest and latest line of the group
    last_stamp: float | None
    lines: tuple[tuple[LineRef, int], ...]  # the members' lines as runs: (first line, last line number)
    # The case-wide id ("b1", ...) of the group's shape (groups.shape): groups of different
    # conversations with the same behaviour share it, so a writer can explain a behaviour once.
    behaviour: str = ""

    def __init__(
        self,
        id: str,
        conversation: str,
        first: str,
        packets: tuple[str, ...],
        first_stamp: float | None,
        last_stamp: float | None,
        lines: tuple[tuple[LineRef, int], ...],
        behaviour: str = "",
    ) -> None:
        self.id = id
        self.conversation = conversation
        self.first = first
        self.packets = packets
        self.first_stamp = first_stamp
        self.last_stamp = last_stamp
        self.lines = lines
        self.behaviour = behaviour

    @property
    def count(self) -> int:
        return len(self.packets)


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class Crossing:
    """The topology nodes (key, label) a conversation's first packet of one role crossed, in order."""

    conversation: str
    role: str
    nodes: tuple[tuple[str, str], ...]

    def __init__(self, conversation: str, role: str, nodes: tuple[tuple[str, str], ...]) -> None:
        self.conversation = conversation
        self.role = role
        self.nodes = nodes


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class Answer:
    """A conversation's bottom line: one sentence, its worst verdict and what it assumed."""

    conversation: str
    sentence: str
    worst: VerdictCode
    assumptions: tuple[str, ...]  # inferred facts, each with what would confirm it
    # The conversation's packets per outcome, worst first (explain.answer.outcome_counts).
    outcomes: tuple[tuple[VerdictCode, int], ...] = ()

    def __init__(
        self,
        conversation: str,
        sentence: str,
        worst: VerdictCode,
        assumptions: tuple[str, ...],
        outcomes: tuple[tuple[VerdictCode, int], ...] = (),
    ) -> None:
        self.conversation = conversation
        self.sentence = sentence
        self.worst = worst
        self.assumptions = assumptions
        self.outcomes = outcomes


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class Footer:
    """A packet's footer: the packet after every rewrite, what decided and the verdict code."""

    packet: str
    final: str
    decided_by: str
    code: VerdictCode

    def __init__(self, packet: str, final: str, decided_by: str, code: VerdictCode) -> None:
        self.packet = packet
        self.final = final
        self.decided_by = decided_by
        self.code = code


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class CaseSummary:
    """The case at a glance: flows, outcomes (worst first), the capture window and the host."""

    flows: int
    packets: int
    outcomes: tuple[tuple[VerdictCode, int], ...]
    first_stamp: float | None  # kernel time (seconds since boot) of the first and last line used
    last_stamp: float | None
    host: str | None
    sentence: str
    # Of the outcomes, the packets whose verdict was inferred, not shown by a line: (code, what it was
    # inferred from, packets), worst first.
    inferred: tuple[tuple[VerdictCode, Inferred, int], ...] = ()

    def __init__(
        self,
        flows: int,
        packets: int,
        outcomes: tuple[tuple[VerdictCode, int], ...],
        first_stamp: float | None,
        last_stamp: float | None,
        host: str | None,
        sentence: str,
        inferred: tuple[tuple[VerdictCode, Inferred, int], ...] = (),
    ) -> None:
        self.flows = flows
        self.packets = packets
        self.outcomes = outcomes
        self.first_stamp = first_stamp
        self.last_stamp = last_stamp
        self.host = host
        self.sentence = sentence
        self.inferred = inferred


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class Prediction:
    """The simulator's prediction for a conversation's first packet, set beside what the trace shows."""

    status: str  # "agrees", "diverges" or "undetermined" (the snapshot cannot decide, or cannot be simulated)
    summary: str  # one line: what agrees, or the first hop where prediction and trace part
    predicted: str  # the predicted outcome and the rule that decided it
    observed: str  # the trace's outcome for the same packet
    stage: str | None = None  # the first stage where they part (None when they agree)
    conditions: tuple[str, ...] = ()  # assumptions the prediction rests on

    def __init__(
        self,
        status: str,
        summary: str,
        predicted: str,
        observed: str,
        stage: str | None = None,
        conditions: tuple[str, ...] = (),
    ) -> None:
        self.status = status
        self.summary = summary
        self.predicted = predicted
        self.observed = observed
        self.stage = stage
        self.conditions = conditions


# The conversation id of packets that show no addresses (ARP frames, cut pastes): they belong to no flow.
NO_CONVERSATION = "-"


def id_number(ident: str) -> int | None:
    """The number of an id like "p12", "c3", "g4" or "b2" (the explain layer numbers them from 1 in
    first-seen order, a letter then the number); None for an id that is not of that form, such as
    NO_CONVERSATION."""
    tail = ident[1:]
    return int(tail) if tail.isdigit() else None


def id_order(ident: str) -> int:
    """A sort key for ids: their number, 0 for an id without one (NO_CONVERSATION)."""
    return id_number(ident) or 0


class ClosedState(StrEnum):
    """The conntrack states a closed TCP entry waits in before it is destroyed, each with its default
    timeout in seconds (nf_conntrack_proto_tcp.c tcp_timeouts: TIME_WAIT 2 minutes after the final
    ACK, CLOSE 10 s after a RST)."""

    TIME_WAIT = "TIME_WAIT"
    CLOSE = "CLOSE"

    @property
    def timeout(self) -> float:
        return 120.0 if self is ClosedState.TIME_WAIT else 10.0


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class LateOf:
    """The closed TCP connection whose conntrack entry a conversation's packets matched: they came on
    its tuple after it was reported, while its entry still waited in ``state``, so conntrack counted
    them as that connection's packets (direction and NAT as the entry says), not as a new entry."""

    conversation: str  # the id of the earlier conversation
    seconds: float | None  # kernel time from its close (final ACK or RST) to the first late packet
    state: ClosedState

    def __init__(self, conversation: str, seconds: float | None, state: ClosedState) -> None:
        self.conversation = conversation
        self.seconds = seconds
        self.state = state


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class Conversation:
    """The packets of one flow (one conntrack entry): requests and replies."""

    id: str
    proto: str
    summary: str
    original: tuple[Endpoint, Endpoint]
    packets: tuple[str, ...]
    prediction: Prediction | None = None  # set when the case has snapshots to simulate with
    late_of: LateOf | None = None  # set when its packets belong to an earlier conversation's closed entry

    def __init__(
        self,
        id: str,
        proto: str,
        summary: str,
        original: tuple[Endpoint, Endpoint],
        packets: tuple[str, ...],
        prediction: Prediction | None = None,
        late_of: LateOf | None = None,
    ) -> None:
        self.id = id
        self.proto = proto
        self.summary = summary
        self.original = original
        self.packets = packets
        self.prediction = prediction
        self.late_of = late_of


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class InputFile:
    """One input file of a case and how it was used."""

    name: str
    kind: str  # "trace" or a snapshot kind
    lines: int

    def __init__(self, name: str, kind: str, lines: int) -> None:
        self.name = name
        self.kind = kind
        self.lines = lines


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class Snapshot:
    """A host snapshot: the parsed facts the explainer may use, plus the raw text for the report."""

    name: str
    kind: str
    text: str
    data: object | None = None  # None: not parsed. Not plain "object": mypyc's dataclass annotations fail on it
    host: str = "host"  # whose view it is: the host, or a container named in the manifest

    def __init__(self, name: str, kind: str, text: str, data: object | None = None, host: str = "host") -> None:
        self.name = name
        self.kind = kind
        self.text = text
        self.data = data
        self.host = host


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class Report:
    """Everything a renderer needs, already sorted."""

    name: str
    title: str
    description: str
    files: tuple[InputFile, ...]
    snapshots: tuple[Snapshot, ...]
    conversations: tuple[Conversation, ...]
    packets: tuple[Packet, ...]
    lines_total: int
    lines_used: int
    # Runs of unused lines in input order: a tuple, or a streamed case head's store on disk
    # (pipeline.UnusedRuns); either way, iterate it rather than copy it.
    unused: Sequence[UnusedLine]
    lines: tuple[tuple[LineRef, str], ...] = field(default=())  # every trace line, for the appendix
    notes: tuple[str, ...] = ()
    topology: object | None = None  # explain.topology.Topology, for the topology diagram (as data above)
    groups: tuple[PacketGroup, ...] = ()  # the packets folded by behaviour, in first-seen order
    answers: tuple[Answer, ...] = ()  # one per conversation, in conversation order
    footers: tuple[Footer, ...] = ()  # one per packet, in packet order
    summary: CaseSummary | None = None
    crossings: tuple[Crossing, ...] = ()  # each conversation's path over the host topology

    def __init__(
        self,
        name: str,
        title: str,
        description: str,
        files: tuple[InputFile, ...],
        snapshots: tuple[Snapshot, ...],
        conversations: tuple[Conversation, ...],
        packets: tuple[Packet, ...],
        lines_total: int,
        lines_used: int,
        unused: Sequence[UnusedLine],
        lines: tuple[tuple[LineRef, str], ...] = (),
        notes: tuple[str, ...] = (),
        topology: object | None = None,
        groups: tuple[PacketGroup, ...] = (),
        answers: tuple[Answer, ...] = (),
        footers: tuple[Footer, ...] = (),
        summary: CaseSummary | None = None,
        crossings: tuple[Crossing, ...] = (),
    ) -> None:
        self.name = name
        self.title = title
        self.description = description
        self.files = files
        self.snapshots = snapshots
        self.conversations = conversations
        self.packets = packets
        self.lines_total = lines_total
        self.lines_used = lines_used
        self.unused = unused
        self.lines = lines
        self.notes = notes
        self.topology = topology
        self.groups = groups
        self.answers = answers
        self.footers = footers
        self.summary = summary
        self.crossings = crossings


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class ConversationResult:
    """One finished conversation, explained and worded: the unit the pipeline hands its writers.

    The streaming pipeline emits one as soon as its conversation is complete (TCP FIN/RST or idle in
    kernel time), so a writer can put it on disk and forget it; a whole Report is these results
    collected. ``packets`` and ``footers`` are in packet order, ``groups`` in first-seen order.
    """

    conversation: Conversation
    packets: tuple[Packet, ...]
    groups: tuple[PacketGroup, ...]
    answer: Answer
    footers: tuple[Footer, ...]
    crossings: tuple[Crossing, ...] = ()

    def __init__(
        self,
        conversation: Conversation,
        packets: tuple[Packet, ...],
        groups: tuple[PacketGroup, ...],
        answer: Answer,
        footers: tuple[Footer, ...],
        crossings: tuple[Crossing, ...] = (),
    ) -> None:
        self.conversation = conversation
        self.packets = packets
        self.groups = groups
        self.answer = answer
        self.footers = footers
        self.crossings = crossings


@dataclass(frozen=FROZEN, slots=True, init=False, unsafe_hash=True)
class CaseTotals:
    """What is known of a case only once its whole input has been read: counts and the summary.

    ``unused`` is every line no hop used, as runs, in input order (it may be large: a writer should
    iterate it once). ``lines`` is the appendix (every trace line) and is empty when not asked for.
    """

    lines_total: int
    lines_used: int
    unused: tuple[UnusedLine, ...]
    summary: CaseSummary
    lines: tuple[tuple[LineRef, str], ...] = ()

    def __init__(
        self,
        lines_total: int,
        lines_used: int,
        unused: tuple[UnusedLine, ...],
        summary: CaseSummary,
        lines: tuple[tuple[LineRef, str], ...] = (),
    ) -> None:
        self.lines_total = lines_total
        self.lines_used = lines_used
        self.unused = unused
        self.summary = summary
        self.lines = lines
