"""The pipeline: gather a case's input, correlate it in a window, explain each conversation as it
finishes and hand it to a sink; a whole Report is that stream collected.

The input layer (sources/) only gathers: it reads files, frames and parses lines, and accounts for
every line. Everything a renderer shows is computed here and in explain/, once; renderers only format.

Memory is the open conversations and the case's distinct behaviours, not the lines:

* lines are parsed lazily (sources.case), BATCH events at a time; unused lines leave as runs, which go
  to a store that spills to a temporary file (UnusedRuns), keeping the first line's text of each run;
* the Correlator (explain.correlate) hands out a packet once it settled (SETTLE_SECONDS of kernel time
  after its last line, SETTLE_EVENTS events without stamps), joined with its continuations;
* a conversation is finished when conntrack would end its entry or stop caring: a TCP connection
  after its final ACK (both FINs seen, then a packet without FIN: LAST_ACK -> TIME_WAIT) or a RST
  (-> CLOSE) (net/netfilter/nf_conntrack_proto_tcp.c tcp_conntracks) and CLOSE_SECONDS of quiet
  after it (packets still come in TIME_WAIT: the ACK that crossed the final one), any conversation after
  conntrack's timeout for its kind of entry in kernel time (IDLE_SECONDS; IDLE_EVENTS events
  without stamps) without a packet, and every one at the end of input; it is then explained,
  folded, worded, handed to the sink and forgotten. A later packet of the same tuple starts a new
  conversation, as it starts a new conntrack entry; an ICMP error about it is then no longer tied
  to it. A reported closed TCP conversation leaves a tombstone of its tuples while conntrack keeps
  its entry (TIME_WAIT, CLOSE; bounded, TOMBSTONES): a later packet on them that is not a SYN
  starts a conversation of late packets (Conversation.late_of) with the connection's directions,
  since conntrack matched it to that entry (the whole-case reading, windowed=False, files it in the
  connection's own conversation instead).

Case-wide knowledge. Two facts of a packet's explanation depend on the whole trace: which hook places
logged anything at all (explain.CaseFacts: "no-rule" versus "not-logged", which later hooks would
have logged a packet, what the simulator compares), and which interfaces are bridges (inferred from
PHYSIN/PHYSOUT lines; it steers correlation at bridge egress and the path templates). A pass learns
both as it goes and remembers every question it answered "no"; if a fact learnt later would have
answered one "yes" (or a bridge became known after a conversation was explained), the pass is stale,
and the case is read again with the final facts fixed from the start. The sink is told to forget
what it got by its ``restart()`` method; a sink without one keeps the first pass and the report says
so in a note. On every sample and benchmark input one pass sufficed.
"""

from __future__ import annotations

import heapq
import marshal
import re
import tempfile
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain, islice
from typing import IO, Final, overload

from reportgen.explain.answer import SEVERITY, SummaryCounter, conversation_answer, footer
from reportgen.explain.correlate import (
    SETTLE_EVENTS,
    Conversations,
    Correlator,
    Flow,
    Track,
    View,
    correlate,
    merge_sources,
    reverse,
    views,
)
from reportgen.explain.crossing import conversation_crossings
from reportgen.explain.explain import (
    CaseFacts,
    FlowNat,
    conversation_id,
    conversation_of,
    explain_conversation,
    is_reply_for,
)
from reportgen.explain.groups import group_packets
from reportgen.explain.lost import monitor_losses, with_losses
from reportgen.explain.topology import Topology, build_topology
from reportgen.model import (
    NO_CONVERSATION,
    Answer,
    ClosedState,
    Conversation,
    ConversationResult,
    Endpoint,
    Event,
    LateOf,
    LineRef,
    Packet,
    Report,
    Snapshot,
    UnusedLine,
    VerdictCode,
    id_order,
)
from reportgen.sources.case import NO_HOP, CaseSpec, TraceReading, load_snapshots, trace_events, trace_names

# How long a conversation may go without a packet before it is reported: never before conntrack
# would have forgotten its entry, so a later packet of the same tuple is a new entry for the kernel
# too (and meets the nat table again). The longest default timeout of each kind of entry, in seconds:
# TCP established 5 days, any other TCP state at most 120 s (nf_conntrack_proto_tcp.c tcp_timeouts);
# UDP 180 s once replied, as a stream (nf_conntrack_proto_udp.c udp_timeouts); ICMP 30 s
# (nf_conntrack_proto_icmp.c); other protocols 600 s (nf_conntrack_proto_generic.c).
IDLE_SECONDS = {"tcp-established": 432_000.0, "tcp": 120.0, "udp": 180.0, "icmp": 30.0, "other": 600.0}
IDLE_EVENTS = 200_000  # the same for lines without stamps, in events
# After the final ACK or a RST conntrack keeps the entry (TIME_WAIT 120 s, CLOSE 10 s:
# nf_conntrack_proto_tcp.c tcp_timeouts), and packets still come: the other side's ACK that crossed
# the final one, a FIN retransmitted because the final ACK was lost. Such a packet must join its
# conversation, so a closed conversation is reported only after this much quiet kernel time
# (CLOSE_EVENTS events without stamps), not at once; a shorter wait than conntrack's keeps memory
# at the conversations of the last second. A packet of the tuple after that starts a new conversation.
CLOSE_SECONDS = 1.0
CLOSE_EVENTS = 4096
BATCH = 2048  # events parsed before they are correlated
# A reported closed TCP conversation leaves a tombstone: its tuples (every view, the NAT'd reply's
# too) for as long as conntrack keeps its entry (ClosedState.timeout, kernel time; IDLE_EVENTS events
# without stamps). A later packet on them that is not a SYN is one of that connection's packets to the
# kernel (only a SYN re-opens a TIME_WAIT entry: nf_conntrack_proto_tcp.c tcp_conntracks, sTW -> sSS,
# and nf_conntrack_tcp_packet), so its direction and NAT are the entry's, not a new one's. Memory
# stays bounded: at most TOMBSTONES views are kept (the oldest go first). A bench at a million lines a
# minute closes about 5000 connections a minute, some 10,000 in the 120 s of TIME_WAIT, at 2 to 4
# views each; past the bound a late packet is reported as a conversation of its own, as before.
TOMBSTONES = 1 << 16
# Tombstones are dropped this long after conntrack would have (kernel seconds, events without stamps):
# packets are filed up to a settle window (explain.correlate SETTLE_*) and a batch after their lines
# were read, so one may still need a tombstone the latest stamp read has outlived; whether it matches
# is decided by the packet's own stamp (_tombstone).
TOMB_MARGIN_SECONDS = 1.0
TOMB_MARGIN_EVENTS = 2 * (BATCH + SETTLE_EVENTS)

Sink = Callable[[ConversationResult], None]


def stream_case(spec: CaseSpec, sink: Callable[[ConversationResult], None], appendix: bool = False) -> Report:
    """Read, correlate and explain one case, handing each conversation to ``sink`` as it finishes.

    Results come in completion order; conversation and packet ids are first-seen order, as in a whole
    report. Packets of no conversation come last, as one result whose conversation id is
    NO_CONVERSATION. The returned Report is the case head: files, snapshots, notes, topology, line
    counts, unused runs and the summary, with no conversations, packets, groups or answers.
    Group ids ("g1"...) and behaviour ids ("b1"...) are case-wide, numbered in completion order.
    When a case-wide fact learnt late changes an earlier answer, the case is read a second time: a
    sink with a ``restart()`` method is told first, and then gets every result again; a sink without
    one keeps the first pass's results and the head says so in a note (see the module docstring).
    ``appendix``: the head keeps the first trace lines (sources.case.APPENDIX_LIMIT) for a document's
    appendix, and a note when they are not all of them, as build_report's does.
    Run it with the cyclic collector paused (batch.cyclic_gc_paused), as every case is.
    """
    return _stream(spec, sink, appendix=appendix)


def build_report(spec: CaseSpec) -> Report:
    """Read, correlate and explain one case: stream_case, collected into a whole Report."""
    results = _Collected()
    head = _stream(spec, results, appendix=True)
    return results.report(head)


class _Collected:
    """A sink that keeps every result (and forgets them when a stale pass restarts)."""

    def __init__(self) -> None:
        self.results: list[ConversationResult] = []

    def __call__(self, result: ConversationResult) -> None:
        self.results.append(result)

    def restart(self) -> None:
        self.results.clear()

    def report(self, head: Report) -> Report:
        """The whole Report: every result's parts in id order. Groups keep the stream's ids (numbered
        as their conversations finished), so a whole report and a streamed one name them alike."""
        results = self.results
        convs = sorted(
            (r for r in results if r.conversation.id != NO_CONVERSATION), key=lambda r: id_order(r.conversation.id)
        )
        packets = sorted((p for r in results for p in r.packets), key=lambda p: id_order(p.id))
        footers = sorted((f for r in results for f in r.footers), key=lambda f: id_order(f.packet))
        groups = sorted((g for r in results for g in r.groups), key=lambda g: id_order(g.first))
        return replace(
            head,
            conversations=tuple(r.conversation for r in convs),
            packets=tuple(packets),
            groups=tuple(groups),
            answers=tuple(r.answer for r in convs),
            footers=tuple(footers),
            crossings=tuple(c for r in convs for c in r.crossings),
            unused=tuple(head.unused),
        )


def _stream(spec: CaseSpec, sink: Sink, windowed: bool = True, appendix: bool = False) -> Report:
    """stream_case; ``windowed=False`` holds every packet and conversation open to the end of input
    (the whole-case reading, for comparison), ``appendix`` keeps the first trace lines in the head."""
    snaps, notes = load_snapshots(spec)
    base = build_topology(snaps)
    run = _Pass(spec, snaps, base, _Bridges(set(base.bridges), fixed=False), None, sink, windowed)
    head = run.run(notes, appendix)
    if run.stale():
        restart = getattr(sink, "restart", None)
        if restart is None:
            note = (
                "A case-wide fact (a hook place that logged, or a bridge) was learnt after some conversations "
                "had been reported; their skipped-hook reasons may not reflect the whole trace."
            )
            return replace(head, notes=(*head.notes, note))
        restart()
        fixed = _Bridges(run.bridges.known, fixed=True)
        fixed.inferred = run.bridges.inferred
        run = _Pass(spec, snaps, base, fixed, run.facts, sink, windowed)
        head = run.run(notes, appendix)
    return head


class _Bridges:
    """The bridges correlation asks about (a collection of names), remembering each "no" it gave.

    An interface logged as IN/OUT together with PHYSIN/PHYSOUT is a bridge (br_netfilter prints the
    bridge port as PHYSIN/PHYSOUT, net/netfilter/nf_log_syslog.c nf_log_dump_packet_common).
    """

    def __init__(self, known: set[str], fixed: bool) -> None:
        self.known = set(known)
        self.inferred: set[str] = set()  # the ones learnt from the trace
        self.fixed = fixed
        self.denied: set[str] = set()
        self.asked_empty = False

    def __contains__(self, name: object) -> bool:
        if name in self.known:
            return True
        if isinstance(name, str):
            self.denied.add(name)
        return False

    def __bool__(self) -> bool:
        if not self.known:
            self.asked_empty = True
        return bool(self.known)

    def __iter__(self) -> Iterator[str]:
        return iter(self.known)

    def __len__(self) -> int:
        return len(self.known)

    def learn(self, ev: Event) -> bool:
        """Learn from one event; whether it named a bridge not known before."""
        r = ev.record
        # Each (device, port) pair spelt out: asked of every event, and a loop over pairs built them.
        new = False
        if r.physin and r.in_dev and r.in_dev not in self.inferred:
            self.inferred.add(r.in_dev)
            self.known.add(r.in_dev)
            new = True
        if r.physout and r.out_dev and r.out_dev not in self.inferred:
            self.inferred.add(r.out_dev)
            self.known.add(r.out_dev)
            new = True
        return new

    def late(self) -> bool:
        """Whether correlation was told "not a bridge" about an interface learnt to be one later."""
        return bool(self.denied & self.known) or (self.asked_empty and bool(self.known))


def _topology(base: Topology, inferred: set[str]) -> Topology:
    return replace(base, bridges={**{b: () for b in sorted(inferred)}, **base.bridges})


@dataclass(init=False)
class _Open:
    """A conversation still receiving packets."""

    flow: Flow
    last: float | None = None  # kernel time of its latest packet
    last_event: int = 0  # the event count when it got its latest packet (lines without stamps)
    fin: set[bool] = field(default_factory=set)  # the directions (True: original) that sent a FIN
    kind: str = "other"  # the kind of conntrack entry, for its timeout (IDLE_SECONDS)
    directions: set[str] = field(default_factory=set)  # "original" and "reply" once each was seen
    closed: bool = False  # conntrack saw the final ACK or a RST: reported after CLOSE_SECONDS of quiet
    state: ClosedState = ClosedState.TIME_WAIT  # the entry's state once closed (CLOSE after a RST)
    closed_at: float | None = None  # kernel time of the packet that closed it
    late: _Tomb | None = None  # the earlier closed connection its packets belong to

    # Written out so that mypyc compiles it: a dataclass's own __init__ is interpreted (model.py).
    def __init__(
        self,
        flow: Flow,
        last: float | None = None,
        last_event: int = 0,
        fin: set[bool] | None = None,
        kind: str = "other",
        directions: set[str] | None = None,
        closed: bool = False,
        state: ClosedState = ClosedState.TIME_WAIT,
        closed_at: float | None = None,
        late: _Tomb | None = None,
    ) -> None:
        self.flow = flow
        self.last = last
        self.last_event = last_event
        self.fin = set() if fin is None else fin
        self.kind = kind
        self.directions = set() if directions is None else directions
        self.closed = closed
        self.state = state
        self.closed_at = closed_at
        self.late = late


@dataclass(frozen=True, slots=True)
class _Tomb:
    """One view of a reported closed TCP connection, while conntrack still keeps its entry."""

    conversation: str  # the connection's conversation id
    original: View  # its conntrack original tuple
    forward: bool  # whether this view goes the original way
    state: ClosedState
    closed_at: float | None  # kernel time of its close (final ACK or RST)
    last: float | None  # kernel time of its latest packet: each packet refreshes the entry's timer
    last_event: int  # the event count then (lines without stamps)


def _kind(st: _Open) -> str:
    """The kind of conntrack entry a conversation is, for its timeout: a TCP connection is
    established once both directions sent a packet (conntrack's ESTABLISHED follows the handshake)."""
    proto = st.flow.original[0]
    if proto == "TCP":
        return "tcp-established" if len(st.directions) == 2 else "tcp"
    return _ENTRY_KINDS.get(proto, "other")


_ENTRY_KINDS = {"UDP": "udp", "ICMP": "icmp", "ICMPv6": "icmp"}  # _kind of the other protocols


def _tcp_flags(t: Track) -> tuple[str, ...]:
    for ev in t.events:
        if ev.record.tcp_flags:
            return ev.record.tcp_flags
    return ()


class _Pass:
    """One reading of the case with fixed inputs, handing finished conversations to the sink."""

    def __init__(
        self,
        spec: CaseSpec,
        snaps: tuple[Snapshot, ...],
        base: Topology,
        bridges: _Bridges,
        facts: CaseFacts | None,
        sink: Sink,
        windowed: bool,
    ) -> None:
        self.spec, self.snaps, self.base, self.sink, self.windowed = spec, snaps, base, sink, windowed
        self.bridges = bridges
        self.fixed_facts = facts is not None
        self.facts = facts if facts is not None else CaseFacts()
        self.topo = _topology(base, bridges.inferred)
        self.convs = Conversations(is_reply_for(base))  # conntrack -L decides; bridges do not matter
        self.open: dict[int, _Open] = {}
        # The open conversations of each kind, by latest activity (oldest first): each kind times out
        # after its own idle time, so the oldest of each is the next to time out.
        self.idle: dict[str, OrderedDict[int, _Open]] = {kind: OrderedDict() for kind in IDLE_SECONDS}
        self.closing: OrderedDict[int, _Open] = OrderedDict()  # closed conversations, by latest packet
        self.tombs: OrderedDict[View, _Tomb] = OrderedDict()  # reported closed connections, oldest first
        self.loose: list[Track] = []  # packets of no conversation, reported at the end
        self.memo = FlowNat()
        self.shapes: dict[Hashable, str] = {}
        self.groups = 0
        self.flows = 0
        self.losses = monitor_losses(spec.notes)  # a trace monitor's lost events, as capture noted them
        self.summary = SummaryCounter()
        self.traces = trace_names(spec)
        self.account = _Account(self.traces)
        self.runs = _RunSink(self.account.unused)
        self.reading = TraceReading(self.runs)
        self.events = 0
        self.now: float | None = None
        self.explained_with: int | None = None  # bridges known when the first conversation was explained

    def run(self, notes: list[str], appendix: bool) -> Report:
        if not appendix:
            self.reading.appendix = self.account.texts = _FirstTexts()
        streams = trace_events(self.spec, self.snaps, self.reading)
        if len(streams) == 1 and self.windowed:
            corr = Correlator(self.bridges)
            events = streams[0]
            # In batches: parsing a batch, then correlating it, runs each stage's code and data hot
            # (interleaving them event by event took 25 % longer).
            while batch := list(islice(events, BATCH)):
                for ev in batch:
                    self._event(ev)
                for ev in batch:
                    for t in corr.feed(ev):
                        self._track(t)
                self._sweep()
            for t in corr.finish():
                self._track(t)
        else:
            # Several trace files (or no window): each is correlated whole, then packets seen by
            # several sources (LOG lines, ebtables lines, a trace monitor) are merged in hook order.
            per_file = [list(events) for events in streams]
            for ev in (ev for evs in per_file for ev in evs):
                self._event(ev)
            for t in merge_sources([correlate(evs, self.bridges) for evs in per_file]):
                self._track(t)
        self.runs.close()
        for st in sorted(self.open.values(), key=lambda s: s.flow.index):
            self._finish(st.flow)
        if self.loose:
            self._emit(None, self.loose)
        counts = self.reading.counts
        texts = dict(self.reading.appendix) if appendix else self.account.texts.texts
        used, unused = self.account.close(counts, texts, self.reading.spans)
        return Report(
            name=self.spec.name,
            title=self.spec.title,
            description=self.spec.description,
            files=self.reading.files(self.spec, self.snaps),
            snapshots=self.snaps,
            conversations=(),
            packets=(),
            lines_total=sum(counts.values()),
            lines_used=used,
            unused=unused,
            lines=tuple(self.reading.appendix) if appendix else (),
            notes=tuple(notes + (self.reading.appendix_note() if appendix else [])),
            topology=self.topo,
            summary=self.summary.summary(self.flows, self.topo),
        )

    def _event(self, ev: Event) -> None:
        self.events += 1
        stamp = ev.record.stamp
        if stamp is not None and (self.now is None or stamp > self.now):
            self.now = stamp
        if not self.bridges.fixed and self.bridges.learn(ev):
            self.topo = _topology(self.base, self.bridges.inferred)

    def _track(self, t: Track) -> None:
        if not self.fixed_facts:
            self.facts.add(t)
        found = self.convs.find(t)
        if self.windowed and found is not None and self._expired(self.open[found[0].index], t):
            self._finish(found[0])  # reported: conntrack forgot it, or it closed and stayed quiet
            found = self.convs.find(t)
        late = self._tombstone(t) if self.windowed and found is None else None
        if late is not None:
            tomb, forward = late
            flow = self.convs.reopen(t, tomb.original, forward)
        else:
            flow = self.convs.file(t, found)
        if flow is None:
            self.loose.append(t)
            return
        st = self.open.get(flow.index)
        if st is None:
            st = self.open[flow.index] = _Open(flow)
            if late is not None:  # a packet of a closed entry: reported after CLOSE_SECONDS of quiet
                st.late, st.closed, st.state = late[0], True, late[0].state
        self.idle[st.kind].pop(flow.index, None)
        self.closing.pop(flow.index, None)
        role = flow.role[t.index]
        if role != "related":
            st.directions.add(role)
        st.kind = _kind(st)
        (self.closing if st.closed else self.idle[st.kind])[flow.index] = st
        stamp = t.last.record.stamp
        st.last = stamp if stamp is not None else st.last
        st.last_event = self.events
        if not self.windowed or role == "related":
            return
        flags = _tcp_flags(t)
        # conntrack: a RST closes the entry; once both sides sent a FIN, the next packet (the final
        # ACK) takes it to TIME_WAIT (nf_conntrack_proto_tcp.c tcp_conntracks: sLA -> sTW, sRST -> sCL).
        if "RST" in flags or (len(st.fin) == 2 and "FIN" not in flags):
            if not st.closed:
                st.closed, st.closed_at = True, stamp
                st.state = ClosedState.CLOSE if "RST" in flags else ClosedState.TIME_WAIT
            self.idle[st.kind].pop(flow.index, None)
            self.closing[flow.index] = st
        elif "FIN" in flags:
            st.fin.add(role == "original")

    def _tombstone(self, t: Track) -> tuple[_Tomb, bool] | None:
        """The closed connection whose entry conntrack would match packet ``t`` to, and whether ``t``
        goes its original way; None for a SYN (it re-opens the entry as a new connection), or when no
        reported connection's entry is still kept."""
        if not self.tombs:
            return None
        flags = _tcp_flags(t)
        if "SYN" in flags and "ACK" not in flags:
            return None
        stamp = t.events[0].record.stamp
        for v in views(t):
            for key, forward in ((v, True), (reverse(v), False)):
                tomb = self.tombs.get(key)
                if tomb is None:
                    continue
                if tomb.last is not None and stamp is not None:
                    kept = stamp - tomb.last < tomb.state.timeout
                else:
                    kept = self.events - tomb.last_event < IDLE_EVENTS
                if kept:
                    return tomb, tomb.forward == forward
        return None

    def _bury(self, st: _Open) -> None:
        """Keep a reported closed TCP conversation's views while conntrack keeps its entry."""
        flow = st.flow
        if flow.original[0] != "TCP":
            return
        first = st.late
        stamp = self.now
        for v in flow.views:
            forward = self.convs.direction(v)
            if first is not None:  # a late conversation's views are its connection's
                tomb = replace(first, forward=forward, last=st.last, last_event=st.last_event)
            else:
                conv = conversation_id(flow)
                tomb = _Tomb(conv, flow.original, forward, st.state, st.closed_at, st.last, st.last_event)
            self.tombs.pop(v, None)
            self.tombs[v] = tomb
        while self.tombs:
            oldest = next(iter(self.tombs.values()))
            old = (
                stamp - oldest.last >= oldest.state.timeout + TOMB_MARGIN_SECONDS
                if stamp is not None and oldest.last is not None
                else self.events - oldest.last_event >= IDLE_EVENTS + TOMB_MARGIN_EVENTS
            )
            if not old and len(self.tombs) <= TOMBSTONES:
                break
            self.tombs.popitem(last=False)

    def _expired(self, st: _Open, t: Track | None = None) -> bool:
        """Whether conntrack would have forgotten the conversation by packet ``t`` (by now, without),
        or, for a closed one, whether it has been quiet long enough to be reported."""
        now = self.now if t is None else t.events[0].record.stamp
        seconds, events = (CLOSE_SECONDS, CLOSE_EVENTS) if st.closed else (IDLE_SECONDS[st.kind], IDLE_EVENTS)
        if st.last is not None and now is not None:
            return now - st.last >= seconds
        return self.events - st.last_event >= events

    def _sweep(self) -> None:
        """Report the conversations conntrack would have forgotten by now, and the closed ones that
        stayed quiet (memory: they are done)."""
        for queue in (*self.idle.values(), self.closing):
            while queue and self._expired(next(iter(queue.values()))):
                self._finish(next(iter(queue.values())).flow)

    def _finish(self, flow: Flow) -> None:
        st = self.open.pop(flow.index, None)
        if st is not None:
            self.idle[st.kind].pop(flow.index, None)
            self.closing.pop(flow.index, None)
            if st.closed:
                self._bury(st)
        self.convs.close(flow)
        self._emit(flow, flow.tracks(), st.late if st is not None else None)

    def _emit(self, flow: Flow | None, tracks: list[Track], late: _Tomb | None = None) -> None:
        if self.explained_with is None:
            self.explained_with = len(self.bridges.inferred)
        topo = self.topo
        packets = explain_conversation(flow, tracks, topo, self.facts, self.memo)
        by_id = {p.id: p for p in packets}
        groups = group_packets(packets, self.shapes, start=self.groups + 1, spans=self.reading.spans)
        self.groups += len(groups)
        if flow is not None:
            conv = self._predicted(conversation_of(flow), by_id, flow)
            if late is not None:
                first = tracks[0].events[0].record.stamp
                since = first - late.closed_at if first is not None and late.closed_at is not None else None
                conv = replace(conv, late_of=LateOf(late.conversation, since, late.state))
            answer = conversation_answer(conv, by_id, groups, topo)
            crossings = conversation_crossings(conv, by_id, topo)
            self.flows += 1
        else:
            conv, answer, crossings = _no_conversation(packets), _no_conversation_answer(packets), ()
        answer = with_losses(answer, packets, self.losses)
        for p in packets:
            self.summary.add(p, id_order(p.id) <= SummaryCounter.HOST_PACKETS)
            self.account.used(p, self.reading.spans)
        self.sink(
            ConversationResult(conv, tuple(packets), groups, answer, tuple(footer(p) for p in packets), crossings)
        )

    def _predicted(self, conv: Conversation, packets: dict[str, Packet], flow: Flow) -> Conversation:
        """The simulator's prediction for the conversation's first packet (simulate.compare, as
        predict_conversations does for a whole case, with the hook places the case logged at)."""
        topo = self.topo
        if not topo.routes or not (topo.rulesets or topo.nft):
            return conv  # nothing to simulate with (asked before the imports: they run per conversation)
        from reportgen.model import Prediction
        from reportgen.simulate import SimulateError, simulate
        from reportgen.simulate.compare import MAX_CONVERSATIONS, compare, query_for

        first = packets.get(conv.packets[0]) if conv.packets else None
        if first is None or first.role != "request" or flow.index >= MAX_CONVERSATIONS:
            return conv
        q = query_for(first)
        if q is None:
            return conv
        try:
            sim = simulate(self.snaps, q, topo)
        except (SimulateError, ValueError) as exc:  # ValueError: an address the snapshots cannot place
            return replace(conv, prediction=Prediction("undetermined", f"Not simulated: {exc}.", "", ""))
        return replace(conv, prediction=compare(sim.request, first, self.facts.places()))

    def stale(self) -> bool:
        """Whether a statement of this pass may rest on a case-wide fact learnt after it was made."""
        if self.fixed_facts:
            return False
        late_bridge = self.explained_with is not None and len(self.bridges.inferred) != self.explained_with
        return self.facts.stale or self.bridges.late() or late_bridge


def _no_conversation(packets: list[Packet]) -> Conversation:
    """What stands for the packets that show no addresses: no conntrack tuple keys them."""
    none = Endpoint("", None)
    return Conversation(
        NO_CONVERSATION, "", "packets without an IP conversation", (none, none), tuple(p.id for p in packets)
    )


def _no_conversation_answer(packets: list[Packet]) -> Answer:
    codes = [p.verdict.code for p in packets if p.verdict]
    worst = min(codes, key=SEVERITY.index) if codes else VerdictCode.UNKNOWN
    n = len(packets)
    return Answer(NO_CONVERSATION, f"{n} packet{'s' if n != 1 else ''} without an IP conversation.", worst, ())


class _RunSink:
    """The unused-line list sources.case appends to (an UnusedSink), holding only the open run
    (sources.case _add_unused may still extend it); a closed run goes to ``emit`` at once."""

    def __init__(self, emit: Callable[[UnusedLine], None]) -> None:
        self.open: list[UnusedLine] = []
        self.emit = emit

    def __len__(self) -> int:
        return len(self.open)

    def __getitem__(self, i: int) -> UnusedLine:
        return self.open[i]

    def __setitem__(self, i: int, u: UnusedLine) -> None:
        self.open[i] = u

    def append(self, u: UnusedLine) -> None:
        if self.open:
            self.emit(self.open.pop())
        self.open.append(u)

    def close(self) -> None:
        if self.open:
            self.emit(self.open.pop())


class _Covered:
    """The lines of one file accounted for (used by a hop, or listed unused).

    Unused runs come as the file is read, used lines only when their packet is reported, up to a
    conversation's end later, so the lines not yet accounted for are scattered over the recent past
    (in the bench, every other line of the last second). A byte per line of the last WINDOW..2*WINDOW
    lines holds them (merged intervals in a list took an O(n) insert or delete per used line there);
    below it only the lines still uncovered are kept, as sorted intervals (holes), so memory stays
    bounded however long the file.
    """

    WINDOW: Final = 1 << 20  # lines kept as bytes (1 MiB); the bitmap holds at most twice this

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window  # an argument, not a class attribute a test sets: compiled classes are fixed
        self.base = 1  # the line of bits[0]; every line below it is covered unless it is in a hole
        self.bits = bytearray()  # 1: covered
        self.hole_starts: list[int] = []
        self.hole_ends: list[int] = []

    def add(self, a: int, b: int) -> int:
        """Cover lines a..b; return how many of them were not covered before."""
        new = 0
        base = self.base
        if a < base:
            new = self._fill(a, min(b, base - 1))
            if b < base:
                return new
            a = base
        bits = self.bits
        end = base + len(bits)  # the first line past the bitmap
        if b - end >= self.window:  # a long run past the bitmap: covered without a byte per line
            if a < end:
                new += self.add(a, end - 1)
                a = end
            self._compact(end)
            if a > end:
                self._hole(end, a - 1)
            self.base = b + 1
            return new + b - a + 1
        if b >= end:
            bits.extend(bytes(b - end + 1))
        i = a - base
        if a == b:
            if bits[i]:
                return new
            bits[i] = 1
            new += 1
        else:
            j = b - base + 1
            new += j - i - bits.count(1, i, j)
            bits[i:j] = b"\x01" * (j - i)
        if len(bits) > 2 * self.window:
            self._compact(base + len(bits) - self.window)
        return new

    def _hole(self, a: int, b: int) -> None:
        if self.hole_ends and self.hole_ends[-1] == a - 1:
            self.hole_ends[-1] = b
        else:
            self.hole_starts.append(a)
            self.hole_ends.append(b)

    def _compact(self, upto: int) -> None:
        """Move the lines below ``upto`` (at most the bitmap's end) out of the bitmap: its uncovered
        lines become holes."""
        n = upto - self.base
        for m in _UNCOVERED.finditer(self.bits, 0, n):
            self._hole(self.base + m.start(), self.base + m.end() - 1)
        del self.bits[:n]
        self.base = upto

    def _fill(self, a: int, b: int) -> int:
        """Cover a..b below the bitmap: cut it out of the holes; return how many lines it took."""
        s, e = self.hole_starts, self.hole_ends
        i = bisect_left(e, a)
        j = i
        new = 0
        pieces: list[tuple[int, int]] = []
        while j < len(s) and s[j] <= b:
            new += min(e[j], b) - max(s[j], a) + 1
            if s[j] < a:
                pieces.append((s[j], a - 1))
            if e[j] > b:
                pieces.append((b + 1, e[j]))
            j += 1
        if j > i:
            s[i:j] = [p[0] for p in pieces]
            e[i:j] = [p[1] for p in pieces]
        return new

    def gaps(self, total: int) -> Iterator[tuple[int, int]]:
        """The uncovered runs of lines 1..total, in order, each as long as it goes."""
        end = self.base + len(self.bits)
        pieces = chain(
            zip(self.hole_starts, self.hole_ends, strict=True),
            ((self.base + m.start(), self.base + m.end() - 1) for m in _UNCOVERED.finditer(self.bits)),
            [(end, total)] if total >= end else [],
        )
        run: tuple[int, int] | None = None
        for a, b in pieces:
            b = min(b, total)
            if a > b:
                continue
            if run is not None and a == run[1] + 1:
                run = (run[0], b)
                continue
            if run is not None:
                yield run
            run = (a, b)
        if run is not None:
            yield run


_UNCOVERED = re.compile(rb"\x00+")


class _FirstTexts:
    """Where sources.case puts the first APPENDIX_LIMIT trace lines when no appendix is asked for (an
    Appendix that shows none): a line's text is kept only until the line is accounted for, for the run
    of lines no hop used ("no hop"), whose text is its first line's."""

    def __init__(self) -> None:
        self.lines = 0
        self.last = 0  # the highest line number kept
        self.texts: dict[LineRef, str] = {}

    def append(self, item: tuple[LineRef, str]) -> None:
        self.lines += 1
        self.texts[item[0]] = item[1]
        self.last = max(self.last, item[0].line)

    def __len__(self) -> int:
        return self.lines

    def __iter__(self) -> Iterator[tuple[LineRef, str]]:
        return iter(())

    def drop(self, file: str, first: int, last: int) -> None:
        if self.texts and first <= self.last:
            for n in range(first, min(last, self.last) + 1):
                self.texts.pop(LineRef(file, n), None)


class _Account:
    """Every trace line used or listed unused, counted as packets are reported."""

    def __init__(self, traces: list[str]) -> None:
        self.covered = {name: _Covered() for name in traces}
        self.used_lines = 0
        self.runs = UnusedRuns(traces)
        self.texts = _FirstTexts()

    def unused(self, u: UnusedLine) -> None:
        last = max(u.last, u.ref.line)
        self.covered[u.ref.file].add(u.ref.line, last)
        if self.texts.texts and u.ref.line <= self.texts.last:  # drop()'s own test, without the call
            self.texts.drop(u.ref.file, u.ref.line, last)
        self.runs.add(u)

    def used(self, p: Packet, spans: dict[str, dict[int, int]]) -> None:
        # Each hop's lines (Event.refs) without building that tuple: a line met twice (a rule line that
        # is its record's own) is counted once all the same, _Covered.add counting only new lines.
        for h in p.hops:
            ev = h.event
            self._use(ev.record.ref, spans)
            for r in ev.rules:
                self._use(r.ref, spans)
            for x in ev.extra:
                self._use(x, spans)

    def _use(self, ref: LineRef, spans: dict[str, dict[int, int]]) -> None:
        cov = self.covered.get(ref.file)
        if cov is not None:
            wrapped = spans.get(ref.file)
            last = wrapped.get(ref.line, ref.line) if wrapped else ref.line
            self.used_lines += cov.add(ref.line, last)
            texts = self.texts
            if texts.texts and ref.line <= texts.last:
                texts.drop(ref.file, ref.line, last)

    def close(
        self, counts: dict[str, int], texts: dict[LineRef, str], spans: dict[str, dict[int, int]]
    ) -> tuple[int, UnusedRuns]:
        """Count used lines; list every line neither used nor listed as unused ("no hop")."""
        gaps = []
        for name, total in counts.items():
            for first, last in self.covered[name].gaps(total):
                ref = LineRef(name, first)
                gaps.append(UnusedLine(ref, NO_HOP, texts.get(ref, ""), last if last > first else 0))
        self.runs.close(gaps)
        return self.used_lines, self.runs


# An unused run as (file, first line, reason, text of its first line, number of lines).
UnusedRow = tuple[str, int, str, str, int]


def unused_rows(unused: Sequence[UnusedLine]) -> Iterator[UnusedRow]:
    """Every run of unused lines, in order, as an UnusedRow (cheaper than the UnusedLines of a store)."""
    return unused.rows() if isinstance(unused, UnusedRuns) else (_row(u) for u in unused)


def _row(u: UnusedLine) -> UnusedRow:
    return u.ref.file, u.ref.line, u.reason, u.text, u.count


def _stored_row(t: tuple[str, int, str, str, int]) -> UnusedRow:
    f, n, reason, text, last = t  # as _store keeps a run; the count as UnusedLine.count says it
    return f, n, reason, text, max(last, n) - n + 1


class UnusedRuns(Sequence[UnusedLine]):
    """Runs of unused lines in input order (file by file, then line), kept on disk past CHUNK runs.

    A kern.log with one unrelated line after each netfilter line has a run per packet line; holding
    them would make memory grow with the input. Runs arrive nearly in order (the framer reads a line
    ahead), so the newest REORDER of them are held back and sorted with the next chunk.
    """

    CHUNK = 4096  # runs per chunk written to the temporary file
    REORDER = 256  # runs held back to restore input order

    def __init__(self, traces: list[str]) -> None:
        self.order = {name: i for i, name in enumerate(traces)}
        self.buf: list[UnusedLine] = []  # runs not yet stored; the last REORDER may still move
        self.mem: list[tuple[str, int, str, str, int]] = []
        self.file: IO[bytes] | None = None
        self.chunks: list[tuple[int, int]] = []  # offset and size of each stored chunk
        self.stored = 0
        self.gaps: list[UnusedLine] = []

    def _key(self, u: UnusedLine) -> tuple[int, int]:
        return self.order.get(u.ref.file, len(self.order)), u.ref.line

    def add(self, u: UnusedLine) -> None:
        self.buf.append(u)
        if len(self.buf) >= self.CHUNK + self.REORDER:
            self.buf.sort(key=self._key)  # nearly sorted: timsort takes it in one pass
            self._store(self.buf[: self.CHUNK])
            del self.buf[: self.CHUNK]

    def _store(self, runs: list[UnusedLine]) -> None:
        self.mem += [(u.ref.file, u.ref.line, u.reason, u.text, u.last) for u in runs]
        self.stored += len(runs)
        if len(self.mem) >= self.CHUNK:
            if self.file is None:
                self.file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the runs
            # One blob per chunk, read back whole: marshal.load() on a file reads it object by object.
            blob = marshal.dumps(self.mem)
            self.file.seek(0, 2)
            self.chunks.append((self.file.tell(), len(blob)))
            self.file.write(blob)
            self.mem = []

    def close(self, gaps: list[UnusedLine]) -> None:
        """Take the last runs, and the lines no hop used (in input order)."""
        self.buf.sort(key=self._key)
        self._store(self.buf)
        self.buf = []
        self.gaps = sorted(gaps, key=self._key)

    def _runs(self) -> Iterator[UnusedLine]:
        for offset, size in self.chunks:
            assert self.file is not None
            self.file.seek(offset)
            chunk = marshal.loads(self.file.read(size))
            yield from (UnusedLine(LineRef(f, n), reason, text, last) for f, n, reason, text, last in chunk)
        yield from (UnusedLine(LineRef(f, n), reason, text, last) for f, n, reason, text, last in self.mem)

    def __iter__(self) -> Iterator[UnusedLine]:
        if not self.gaps:  # the usual case: every line a hop or a run (a merge costs a key per run)
            return self._runs()
        return heapq.merge(self._runs(), self.gaps, key=self._key)

    def rows(self) -> Iterator[UnusedRow]:
        """The runs in the same order as plain tuples (unused_rows), read back without making an
        UnusedLine and a LineRef of each: a dataclass's constructor is interpreted Python even
        compiled, and the writers read a bench kern.log's 50,000 runs more than once."""
        if self.gaps:
            yield from (_row(u) for u in self)
            return
        for offset, size in self.chunks:
            assert self.file is not None
            self.file.seek(offset)
            yield from (_stored_row(t) for t in marshal.loads(self.file.read(size)))
        yield from (_stored_row(t) for t in self.mem)

    def __len__(self) -> int:
        return self.stored + len(self.gaps)

    @overload
    def __getitem__(self, i: int) -> UnusedLine: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[UnusedLine]: ...

    def __getitem__(self, i: int | slice) -> UnusedLine | Sequence[UnusedLine]:
        if isinstance(i, slice):
            if min(i.start or 0, i.stop or 0, i.step or 1) < 0:
                return tuple(self)[i]
            return tuple(islice(self, i.start, i.stop, i.step))
        n = i + len(self) if i < 0 else i
        for u in islice(self, n, None):
            return u
        raise IndexError(i)
