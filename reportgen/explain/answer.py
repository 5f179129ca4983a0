"""Answer first: one sentence per conversation, a footer per packet and a case summary.

Everything here is read off facts the explainer already established (verdicts with their evidence,
NAT steps, skipped hooks, hook placement, folded groups): it words them, it decides nothing new.
Every fact that was inferred rather than seen is listed as an assumption, with what would settle it
(in the spirit of ovn-trace's "assuming ct_state=...").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from reportgen.explain.attribution import SNAPSHOT_EVIDENCE, UNKNOWN_ADDRESS_WORDS, nat_type_unknown
from reportgen.explain.topology import Topology
from reportgen.explain.verdicts import prefix_evidence, prefix_words
from reportgen.model import (
    ICMP_PROTOS,
    ICMP_TYPE_NAMES,
    Answer,
    CaseSummary,
    Conversation,
    Endpoint,
    Footer,
    Inferred,
    LateOf,
    LineRef,
    LogRecord,
    NatBy,
    Packet,
    PacketGroup,
    Verdict,
    VerdictCode,
)
from reportgen.parsers.nflog import arp_summary, shown
from reportgen.redact import syslog_hosts

# Worst first: what an on-call engineer needs to see before anything else.
SEVERITY = (
    VerdictCode.DROPPED_BY_RULE,
    VerdictCode.DROPPED_BY_POLICY,
    VerdictCode.REJECTED,
    VerdictCode.LAST_SEEN,
    VerdictCode.UNKNOWN,
    VerdictCode.FORWARDED_OUT,
    VerdictCode.DELIVERED_TO_PORT,
    VerdictCode.DELIVERED_LOCAL,
)
_RANK = {code: n for n, code in enumerate(SEVERITY)}


def plural(n: int, word: str) -> str:
    """ "1 packet", "2 packets" ("1 address", "2 addresses")."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s" if not word.endswith("s") else f"{n} {word}es"


def _record(p: Packet) -> LogRecord | None:
    """The richest IP record of a packet (nf_log lines carry flags and ICMP ids; ebtables' may not)."""
    ips = [h.event.record for h in p.hops if h.event.record.src or h.event.record.redacted]
    return next((r for r in ips if r.fmt == "nflog"), ips[0] if ips else None)


def packet_word(p: Packet) -> str:
    """Name what a packet is: SYN, SYN-ACK, segment, datagram, echo request, frame."""
    r = _record(p)
    if r is None:
        return "frame"
    if r.proto == "TCP":
        flags = set(r.tcp_flags)
        if "SYN" in flags:
            return "SYN-ACK" if "ACK" in flags else "SYN"
        return "RST" if "RST" in flags else "FIN" if "FIN" in flags else "segment"
    if r.proto == "UDP":
        return "datagram"
    if r.proto in ICMP_PROTOS:
        word = ICMP_TYPE_NAMES.get((r.proto, r.icmp_type if r.icmp_type is not None else -1))
        return word or "ICMP message"
    return "packet"


def _addr(topo: Topology, addr: str) -> str:
    name = topo.names.get(addr)
    return f"{name} ({addr})" if name else addr


def _endpoint(topo: Topology, ep: Endpoint, proto: str) -> str:
    """An endpoint as a reader names it: ICMP ids are not ports, so they are left out here."""
    if proto in ICMP_PROTOS or ep.port is None:
        return _addr(topo, ep.addr)
    host = _addr(topo, ep.addr)
    return str(ep) if host == ep.addr else f"{host}:{ep.port}"


def fate(p: Packet, topo: Topology) -> str:
    """Word a packet's verdict: where it ended and what decided it."""
    v = p.verdict
    if v is None:
        return "outcome not established"
    rule = f" by rule '{v.rule}'" + (f" ({v.rule_ref})" if v.rule_ref else "") if v.rule else ""
    if rule and inferred_from(v) is Inferred.SNAPSHOT:
        rule += f", {SNAPSHOT_EVIDENCE}"  # no line shows the rule decide (attribution._snapshot_drop)
    if v.code in (VerdictCode.DROPPED_BY_RULE, VerdictCode.REJECTED):
        verb = "dropped" if v.code is VerdictCode.DROPPED_BY_RULE else "rejected"
        return f"{verb} in {v.where}{rule}" if rule else f"{verb} at {v.where} ({v.evidence})"
    if v.code is VerdictCode.DROPPED_BY_POLICY:
        return f"dropped by the policy of {v.where} ({v.evidence})"
    if v.code is VerdictCode.FORWARDED_OUT:
        return f"routed out {v.where}"
    if v.code is VerdictCode.DELIVERED_TO_PORT:
        ports = [w.strip() for w in v.where.split(",")]
        named = [f"{topo.port_owner(port)} via {port}" if topo.port_owner(port) else port for port in ports]
        return "delivered to " + " and ".join(named)
    if v.code is VerdictCode.DELIVERED_LOCAL:
        return f"delivered to the {v.where}"
    if v.code is VerdictCode.LAST_SEEN:
        return f"last seen at {v.where}; the trace does not show what came next"
    return f"outcome unknown at {v.where} ({v.evidence})"


def _nat_words(p: Packet, proto: str) -> list[str]:
    out = []
    for n in p.nat:
        if n.direction == "original" and n.by is NatBy.RULE:
            # An ICMP echo id stands in for a port in conntrack's tuple; it is not a port to a reader.
            after = n.after.addr if proto in ICMP_PROTOS else str(n.after)
            rule = f" ({n.hook} rule '{n.rule}'" + (f", {n.rule_ref})" if n.rule_ref else ")") if n.rule else ""
            if n.unknown is not None:  # words, not a certain address:port (model.Nat.unknown)
                port = n.after.port if after != n.after.addr and f"port {n.after.port}" not in n.unknown else None
                addr = n.after.addr or UNKNOWN_ADDRESS_WORDS  # model.Nat.unknown: no input shows it
                after = f"{addr}{'' if port is None else f', port {port}'} ({n.unknown})"
            out.append(f"{n.type} to {after}{rule}")
    return out


# A conversation of late packets (model.LateOf): the first clause of its answer, instead of "no reply".
LATE_WORDS = (
    "late {packets} of {conv}'s connection: {conv} closed {since}and its conntrack entry was still in {state} "
    "(kept {timeout:g} s after its last packet), so conntrack matched {them} to {conv}'s entry, with its "
    "directions and NAT"
)
NO_REPLY_WORDS = "no reply in the trace"
# Packets whose direction no packet of the conversation proves (explain._role).
UNKNOWN_DIRECTION_WORDS = "which side opened the connection is not in the trace ({why})"
# Why, per protocol: TCP's opener is its SYN (RFC 9293 3.5); a datagram carries no such mark, and a trace
# may start after conntrack opened the entry (nf_conntrack_proto_udp.c keeps no state but the entry).
UNKNOWN_DIRECTION_WHY = {
    "TCP": "no SYN or SYN-ACK",
    "": "a trace may start mid-flow, and no header, state-NEW rule, nat table or conntrack entry shows the opener",
}

# An nft chain seen with no snapshot to type it: a nat chain would show the opener (attribution.is_nat_table).
NAT_TYPE_UNKNOWN_WORDS = (
    "whether {chains} is a nat chain, which only a connection's first packet traverses, is not known: an nft "
    "table's name does not say, the chain's type does (nft(8) CHAINS), and an nft list ruleset snapshot would show it"
)


def _late_words(late: LateOf, n: int) -> str:
    since = f"{late.seconds:.1f} s earlier " if late.seconds is not None else "earlier "
    return LATE_WORDS.format(
        packets="packet" if n == 1 else "packets",
        conv=late.conversation,
        since=since,
        state=late.state.value,
        timeout=late.state.timeout,
        them="it" if n == 1 else "them",
    )


def _reply_words(p: Packet) -> str:
    rev = [n for n in p.nat if n.direction == "reply"]
    return f"{' and '.join(sorted({n.type for n in rev}))} reversed by conntrack, " if rev else ""


def _group_phrase(groups: Sequence[tuple[PacketGroup, Packet]], packets: dict[str, Packet], topo: Topology) -> str:
    """Say what the packets of some groups did, one clause per fate: "4 SYNs dropped in ..."."""
    # Counts per word in first-seen order: a dict, not a Counter (its __missing__ is interpreted).
    words: dict[str, dict[str, int]] = {}
    for g, first in groups:
        # Groups share a fate when their representatives do (same verdict code, place and rule).
        counts = words.setdefault(fate(first, topo), {})
        for pid in g.packets:
            word = packet_word(packets[pid])
            counts[word] = counts.get(word, 0) + 1
    parts = []
    for what, counts in words.items():
        total = sum(counts.values())
        if len(counts) == 1:
            parts.append(f"{plural(total, next(iter(counts)))} {what}")
        else:
            kinds = ", ".join(plural(n, w) for w, n in counts.items())
            parts.append(f"{plural(total, 'packet')} ({kinds}) {what}")
    return "; ".join(parts)


def conversation_answer(
    conv: Conversation, packets: dict[str, Packet], groups: Sequence[PacketGroup], topo: Topology
) -> Answer:
    """One sentence for a conversation, its worst verdict and what it assumed."""
    mine = [(g, packets[g.first]) for g in groups if g.conversation == conv.id]
    requests = [(g, p) for g, p in mine if p.role == "request"]
    replies = [(g, p) for g, p in mine if p.role == "reply"]
    related = [(g, p) for g, p in mine if p.role == "related"]
    unknown = [(g, p) for g, p in mine if p.role == "unknown"]
    a, b = conv.original
    head = f"{_endpoint(topo, a, conv.proto)} → {_endpoint(topo, b, conv.proto)} {conv.proto}"
    clauses = [_late_words(conv.late_of, len(conv.packets))] if conv.late_of is not None else []
    if requests:
        text = _group_phrase(requests, packets, topo)
        nat = _nat_words(requests[0][1], conv.proto)
        clauses.append(text + (f", {', '.join(nat)}" if nat else ""))
    if replies:
        first = replies[0][1]
        clauses.append(f"reply: {_reply_words(first)}{_group_phrase(replies, packets, topo)}")
    elif requests and conv.late_of is None:  # a closed connection's late packet expects no reply
        clauses.append(NO_REPLY_WORDS)
    if related:
        clauses.append(f"related: {_group_phrase(related, packets, topo)}")
    if unknown:
        why = UNKNOWN_DIRECTION_WHY.get(conv.proto, UNKNOWN_DIRECTION_WHY[""])
        untyped = nat_type_unknown((h.event for h in unknown[0][1].hops), topo) if conv.proto != "TCP" else []
        if untyped:
            why += "; " + NAT_TYPE_UNKNOWN_WORDS.format(chains=", ".join(untyped))
        clauses.append(f"{UNKNOWN_DIRECTION_WORDS.format(why=why)}: {_group_phrase(unknown, packets, topo)}")
    members = [packets[pid] for g, _ in mine for pid in g.packets]
    codes = [p.verdict.code for p in members if p.verdict]
    worst = min(codes, key=_RANK.__getitem__) if codes else VerdictCode.UNKNOWN
    assumptions = fold_cited(a for p in members for a in assumptions_of(p, topo))
    if conv.prediction is not None:
        assumptions += tuple(f"prediction assumes {c}" for c in conv.prediction.conditions)
    return Answer(conv.id, f"{head}: {'; '.join(clauses)}.", worst, assumptions, outcome_counts(members))


def outcome_counts(packets: Iterable[Packet]) -> tuple[tuple[VerdictCode, int], ...]:
    """Count packets per outcome, worst first (a packet the explainer gave no verdict is unknown)."""
    # A dict, not a Counter: Counter's constructor and its __missing__ are interpreted calls.
    counts: dict[VerdictCode, int] = {}
    for p in packets:
        code = _code(p)
        counts[code] = counts.get(code, 0) + 1
    return _worst_first(counts)


def _code(p: Packet) -> VerdictCode:
    """A packet's verdict code, unknown when the explainer gave it none."""
    return p.verdict.code if p.verdict else VerdictCode.UNKNOWN


def _worst_first(counts: Mapping[VerdictCode, int]) -> tuple[tuple[VerdictCode, int], ...]:
    return tuple((c, counts[c]) for c in SEVERITY if counts.get(c, 0))


# Outcomes that state a fact (a drop, a reject, a delivery, an exit), and so are inferred when no line
# shows that fact; last-seen and unknown say by their own words that the trace does not show it.
_FACTS = frozenset(SEVERITY) - {VerdictCode.LAST_SEEN, VerdictCode.UNKNOWN}
# What the case summary says an inferred verdict rests on: "(2 inferred from the log prefix's action word)".
INFERRED_WORDS = {
    Inferred.PREFIX: "the log prefix's action word",
    Inferred.SNAPSHOT: "evaluating the ruleset snapshot",
}


def inferred_from(v: Verdict) -> Inferred | None:
    """What a verdict stating a fact was inferred from when no line shows the fact, else None: the
    prefix of the packet's last LOG line (verdicts.prefix_verdict), or the ruleset snapshot's evaluation
    (attribution._snapshot_drop)."""
    if v.code not in _FACTS:
        return None
    if v.evidence.startswith("prefix "):
        return Inferred.PREFIX
    return Inferred.SNAPSHOT if v.evidence.endswith(SNAPSHOT_EVIDENCE) else None


def inferred_note(code: VerdictCode, n: int, inferred: Sequence[tuple[VerdictCode, Inferred, int]]) -> str:
    """How many of the ``n`` packets counted with ``code`` were given it by inference, and from what:
    " (inferred from ...)" when all of them from one source, " (2 inferred from ...)", or ""."""
    mine = [(basis, k) for c, basis, k in inferred if c is code]
    if not mine:
        return ""
    if len(mine) == 1 and mine[0][1] == n:
        return f" (inferred from {INFERRED_WORDS[mine[0][0]]})"
    return " (" + ", ".join(f"{k} inferred from {INFERRED_WORDS[basis]}" for basis, k in mine) + ")"


@dataclass(frozen=True, slots=True)
class Cited:
    """An assumption about one line. A conversation's packets make the same assumption about each of
    their lines (every retransmitted SYN a '[UFW BLOCK]' line of its own), so alike ones are stated
    once, citing every line (``fold_cited``): the words before the lines, the words after them for one
    line and for several (the verb agrees), and the line."""

    before: str
    after_one: str
    after_many: str
    ref: LineRef


def assumptions_of(p: Packet, topo: Topology) -> list[str | Cited]:
    """The inferred facts of one packet, each with what would confirm it."""
    out: list[str | Cited] = []
    for h in p.hops:
        hook = h.event.hook
        if not hook.placed:
            r = h.event.record
            io = "IN= and OUT=" if r.in_dev and r.out_dev else "IN= only" if r.in_dev else "OUT= only"
            where = f"placed at {' or '.join(hook.candidates)} from {io}; "
            settle = "a prefix map entry or the ruleset's LOG rule would settle the hook"
            out.append(Cited("", f" is {where}{settle}", f" are each {where}{settle}", r.ref))
    if any(s.reason == "conntrack" for s in p.skipped) and not topo.conntrack:
        out.append(
            "the nat table was skipped because the connection was already known to conntrack; "
            "a conntrack -L snapshot would confirm the entry"
        )
    v = p.verdict
    basis = inferred_from(v) if v is not None else None
    if v is not None:
        if basis is Inferred.SNAPSHOT:
            out.append(
                f"the {v.code.value} verdict comes from evaluating the ruleset snapshot, not from a logged "
                "verdict; a rule trace (xtables-monitor --trace or nft monitor trace) would confirm it"
            )
        elif v.evidence.startswith("prefix "):  # also unknown (AUDIT, LIMIT), which inferred_from leaves out
            out.append(_prefix_assumption(p, v))
        elif v.code is VerdictCode.LAST_SEEN:
            out.append(
                f"what happened after {v.where} is not traced; a LOG rule at the next hook, "
                "or a rule trace, would settle it"
            )
    return out


def _prefix_assumption(p: Packet, v: Verdict) -> str | Cited:
    """That a verdict is its prefix's word, citing the line whose prefix it is (the hop whose
    prefix_evidence the verdict's evidence is)."""
    settle = "; the ruleset snapshot would show the rule after the LOG rule"
    for h in reversed(p.hops):
        if prefix_evidence(h.event) == v.evidence:
            words = f"the {v.code.value} verdict is the log prefix's own word ({prefix_words(h.event)} at "
            return Cited(words, ")" + settle, ")" + settle, h.event.record.ref)
    return f"the {v.code.value} verdict is the log prefix's own word ({v.evidence}){settle}"


def fold_cited(found: Iterable[str | Cited]) -> tuple[str, ...]:
    """Assumptions in first-seen order, each once; alike Cited ones once, citing their first line and
    counting the rest. Only the first line is named: report.json folds alike conversations into one
    kind by cutting each "file:line" out of their texts (render/jsonfold.py), and a list or a range of
    line numbers would make every conversation a kind of its own (the lines are in its packets)."""
    lines: dict[str | tuple[str, str, str], list[LineRef]] = {}
    for a in found:
        if isinstance(a, str):
            lines.setdefault(a, [])
        else:
            lines.setdefault((a.before, a.after_one, a.after_many), []).append(a.ref)
    out = []
    for key, refs in lines.items():
        if isinstance(key, str):
            out.append(key)
            continue
        before, after_one, after_many = key
        unique = sorted(set(refs))
        if len(unique) == 1:
            out.append(f"{before}{unique[0]}{after_one}")
        else:
            out.append(f"{before}{unique[0]} and {len(unique) - 1} more of this conversation's lines{after_many}")
    return tuple(out)


def footer(p: Packet) -> Footer:
    """The packet after every rewrite, what decided its fate and its verdict code."""
    r = _record(p)
    if r is None:
        first = p.hops[0].event.record if p.hops else None
        arp = arp_summary(first) if first is not None else None
        if arp is not None and first is not None and first.mac_src is None and first.mac_dst is None:
            final = arp
        elif first is None or (first.mac_src is None and first.mac_dst is None and not first.redacted):
            final = "no header logged"
        else:
            final = f"frame {shown(first, 'mac_src')} → {shown(first, 'mac_dst')}"
    else:
        src, dst = shown(r, "src"), shown(r, "dst")
        sport, dport = r.sport, r.dport
        unknown = ""  # what no line shows of the rewritten packet (model.Nat.unknown)
        for n in p.nat:
            if n.unknown is not None:
                unknown += f" ({n.field} not shown: {n.unknown})"
            if n.field == "source":
                src, sport = n.after.addr or UNKNOWN_ADDRESS_WORDS, n.after.port if n.after.port is not None else sport
                if n.unknown is not None and sport is not None and r.proto not in ICMP_PROTOS:
                    # words, not address:port: Nat.unknown says what of the new source is not certain
                    src, sport = f"{src}, port {'unknown' if n.after.port is None else sport}", None
            else:
                dst, dport = n.after.addr, n.after.port if n.after.port is not None else dport
        if r.proto in ICMP_PROTOS:
            ident = f" id {r.icmp_id}" if r.icmp_id is not None else ""
            ident += f" seq {r.icmp_seq}" if ident and r.icmp_seq is not None else ""  # a cut line lacks SEQ=
            word = packet_word(p)  # "ICMP message" when the type is not known: not "ICMP ICMP message"
            final = f"{r.proto} {'message' if word == 'ICMP message' else word} {src} → {dst}{ident}"
        elif sport is not None or dport is not None:
            final = f"{r.proto} {Endpoint(src, sport)} → {Endpoint(dst, dport)}"
        else:
            final = f"{r.proto or 'IP'} {src} → {dst}"
        final += unknown
    v = p.verdict
    return Footer(p.id, final, v.evidence if v else "nothing in the trace", v.code if v else VerdictCode.UNKNOWN)


class SummaryCounter:
    """The case summary's counts, taken packet by packet in any order (a stream emits conversations as
    they finish): outcomes, the kernel-time window, and the lines of the first packets for the host."""

    HOST_PACKETS: Final = 50  # the first packets whose syslog headers name the host

    def __init__(self) -> None:
        self.counts: Counter[VerdictCode] = Counter()
        self.inferred: dict[tuple[VerdictCode, Inferred], int] = {}  # the counts of verdicts inferred_from gives
        self.packets = 0
        self.first: float | None = None
        self.last: float | None = None
        self.texts: list[str] = []

    def add(self, p: Packet, first: bool) -> None:
        """Count a packet; ``first``: it is one of the case's first HOST_PACKETS packets."""
        self.packets += 1
        self.counts[_code(p)] += 1
        v = p.verdict
        basis = inferred_from(v) if v is not None else None
        if v is not None and basis is not None:
            key = (v.code, basis)
            self.inferred[key] = self.inferred.get(key, 0) + 1
        for h in p.hops:
            st = h.event.record.stamp
            if st is not None:
                self.first = st if self.first is None or st < self.first else self.first
                self.last = st if self.last is None or st > self.last else self.last
        if first:
            self.texts += [h.event.record.text for h in p.hops]

    def summary(self, flows: int, topo: Topology) -> CaseSummary:
        outcomes = _worst_first(self.counts)
        inferred = tuple((c, b, self.inferred[c, b]) for c, _ in outcomes for b in Inferred if (c, b) in self.inferred)
        # The host: kernel.hostname from a sysctl snapshot, else the syslog headers' host names.
        host = topo.sysctl.get("kernel.hostname") or ", ".join(sorted(syslog_hosts(self.texts))) or None
        first, last = self.first, self.last
        parts = [f"{plural(flows, 'flow')}, {plural(self.packets, 'packet')}"]
        if outcomes:
            parts.append(", ".join(f"{k} {c.value}{inferred_note(c, k, inferred)}" for c, k in outcomes))
        if first is not None and last is not None:
            parts.append(f"kernel time {first:.3f}–{last:.3f} s ({last - first:.1f} s)")
        if host:
            parts.append(f"host {host}")
        return CaseSummary(flows, self.packets, outcomes, first, last, host, "; ".join(parts) + ".", inferred)


@dataclass(frozen=True, slots=True)
class BehaviourCounts:
    """Exact counts over every conversation of one behaviour: the documents list a few of them as rows
    and say how many they left out, so the counts must not come from the rows."""

    conversations: int
    packets: int
    outcomes: tuple[tuple[VerdictCode, int], ...]  # packets per outcome, worst first
    first_stamp: float | None  # kernel time of the first and last line any of their packets used
    last_stamp: float | None
    predictions: tuple[tuple[str, int], ...]  # conversations per prediction status, by status
    # The first and the last input line any of their packets used (other behaviours' lines may lie between).
    first_line: LineRef | None = None
    last_line: LineRef | None = None


class BehaviourCounter:
    """A behaviour's counts, taken conversation by conversation in any order (a stream emits
    conversations as they finish), from what explain said of each: its answer's outcome counts, its
    groups' time spans and its prediction."""

    def __init__(self) -> None:
        self.conversations = 0
        self.outcomes: Counter[VerdictCode] = Counter()
        self.first: float | None = None
        self.last: float | None = None
        self.predictions: Counter[str] = Counter()
        self.first_line: LineRef | None = None
        self.last_line: LineRef | None = None

    def add(self, conv: Conversation, answer: Answer, groups: Iterable[PacketGroup]) -> None:
        """Count one conversation of the behaviour."""
        self.conversations += 1
        self.outcomes.update(dict(answer.outcomes))
        for g in groups:
            if g.first_stamp is not None and (self.first is None or g.first_stamp < self.first):
                self.first = g.first_stamp
            if g.last_stamp is not None and (self.last is None or g.last_stamp > self.last):
                self.last = g.last_stamp
            if g.lines:  # runs of lines in (file, line) order (explain.groups._spans)
                first, (ref, end) = g.lines[0][0], g.lines[-1]
                last = LineRef(ref.file, end)
                self.first_line = first if self.first_line is None or first < self.first_line else self.first_line
                self.last_line = last if self.last_line is None or last > self.last_line else self.last_line
        if conv.prediction is not None:
            self.predictions[conv.prediction.status] += 1

    def counts(self) -> BehaviourCounts:
        """The counts so far."""
        return BehaviourCounts(
            self.conversations,
            sum(self.outcomes.values()),
            _worst_first(self.outcomes),
            self.first,
            self.last,
            tuple(sorted(self.predictions.items())),
            self.first_line,
            self.last_line,
        )


def case_summary(packets: Iterable[Packet], flows: int, topo: Topology) -> CaseSummary:
    """Count outcomes (worst first), the capture's kernel-time window and the host."""
    counter = SummaryCounter()
    for n, p in enumerate(packets, start=1):
        counter.add(p, n <= counter.HOST_PACKETS)
    return counter.summary(flows, topo)


def answer_case(
    convs: Sequence[Conversation], packets: Sequence[Packet], topo: Topology
) -> tuple[tuple[PacketGroup, ...], tuple[Answer, ...], tuple[Footer, ...], CaseSummary]:
    """Fold the packets and word the case: groups, one answer per conversation, footers, summary."""
    from reportgen.explain.groups import group_packets

    groups = group_packets(packets)
    by_id = {p.id: p for p in packets}
    answers = tuple(conversation_answer(c, by_id, groups, topo) for c in convs)
    return groups, answers, tuple(footer(p) for p in packets), case_summary(packets, len(convs), topo)
