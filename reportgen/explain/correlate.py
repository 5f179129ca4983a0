"""Group events into packets, and packets into conversations.

A packet is recognised by what the kernel prints about it, not by adjacency: lines of different
packets interleave (nf_log_syslog prints each record with one printk, from any CPU). An event joins
the most recent open packet when

* its stage is reachable from the packet's last stage in the hook graph (netfilter.EDGES), so a
  second, identical-looking packet (a retransmit) starts a packet of its own instead of merging;
* its L3/L4 identity matches: protocol, IPv4 ID, length, ICMP type/id/sequence or ports, with one
  side (source or destination) allowed to change, which is what NAT does between hooks;
* its L2 identity matches while the frame is still the one that arrived (MACs, bridge port), and
  after routing, the bridge it leaves through is the interface the IP layer chose.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace

from reportgen.model import ICMP_PROTOS, Action, Endpoint, Event, HitKind, HookRef
from reportgen.netfilter import EDGES, ORDERED_AS, REACHABLE, STAGES, stages_for, table_priority
from reportgen.parsers.prefix import HOW_TRACE

# Stages where the MAC header is still the one the frame arrived with.
_INGRESS_L2 = frozenset({"br-pre", "ip-pre", "br-in", "br-fwd", "ip-fwd-br", "br-post", "ip-in", "ip-fwd", "ip-pre-up"})
_EGRESS_L2 = frozenset({"br-out", "br-post-out"})
_MONITORS = ("xtmon", "nfttrace")  # rule-tracing sources whose events carry a trace id
MAX_GAP_SECONDS = 2.0  # events of one packet are microseconds apart; replies are separate packets
SCAN_LIMIT = 512  # open packets considered per event: bounds the work on long logs
# A packet is taken as complete once this much kernel time passed after its last line (its lines are
# microseconds apart), or, for lines without stamps (nft monitor trace, xtables-monitor), this many
# events. A packet whose hooks are further apart (queued to userspace) is then told as two pieces.
SETTLE_SECONDS = 0.25
SETTLE_EVENTS = 4096


Walk = tuple[str, str | None, str | None]  # family, table, nft base chain (_walk)


@dataclass(slots=True, init=False)
class _Kept:
    """What the tests of Correlator.feed read of an open packet, kept up to date by _absorb as feed
    appends its lines (the only change an open packet sees; a settled one is joined, narrowed and
    explained through Track's scanning methods, never through these). Each field is what the method
    named beside it returns."""

    l3: Event | None = None  # l3()
    physin: str = ""  # physin()
    physout: str = ""  # physout()
    macs: dict[bool, tuple[str, str]] = field(default_factory=dict)  # macs(egress), by egress
    ip_out: str = ""  # ip_out()
    trace_ids: set[str | None] = field(default_factory=set)  # every line's trace id
    # Its lines by _walk(), as positions in Track.events and .stages (which only grow while the
    # packet is open): _can_follow compares a line only with lines of the same walk.
    walks: dict[Walk, list[int]] = field(default_factory=dict)

    # Written out so that mypyc compiles it: a dataclass's own __init__ is interpreted (model.py).
    def __init__(
        self,
        l3: Event | None = None,
        physin: str = "",
        physout: str = "",
        macs: dict[bool, tuple[str, str]] | None = None,
        ip_out: str = "",
        trace_ids: set[str | None] | None = None,
        walks: dict[Walk, list[int]] | None = None,
    ) -> None:
        self.l3 = l3
        self.physin = physin
        self.physout = physout
        self.macs = {} if macs is None else macs
        self.ip_out = ip_out
        self.trace_ids = set() if trace_ids is None else trace_ids
        self.walks = {} if walks is None else walks


_SETTLED = _Kept()  # what a settled packet keeps: nothing (feed never asks about it again)


@dataclass(eq=False, init=False)  # identity, not field equality: tracks are compared in hot loops
class Track:
    """A packet being assembled (mutable while correlating)."""

    index: int  # the packet's number: creation order while correlating, output order once handed out
    events: list[Event] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    seq: int = 0  # creation order, for the newest-first scan of candidates
    last_event: int = 0  # the number of the event that last joined it (settling without stamps)
    closed: bool = False  # settled: no event joins it any more
    keys: set[tuple[object, ...]] = field(default_factory=set)  # the index entries that find it
    seen_as: list[tuple[str, Endpoint, Endpoint]] | None = None  # views(), once the packet is complete
    # What the tests of Correlator.feed read of it while open (dropped when it settles).
    kept: _Kept = field(default_factory=_Kept)
    egress: bool = False  # in Correlator.egress_open

    # Written out so that mypyc compiles it: a dataclass's own __init__ is interpreted (model.py).
    def __init__(
        self,
        index: int,
        events: list[Event] | None = None,
        stages: list[str] | None = None,
        seq: int = 0,
        last_event: int = 0,
        closed: bool = False,
        keys: set[tuple[object, ...]] | None = None,
        seen_as: list[tuple[str, Endpoint, Endpoint]] | None = None,
        kept: _Kept | None = None,
        egress: bool = False,
    ) -> None:
        self.index = index
        self.events = [] if events is None else events
        self.stages = [] if stages is None else stages
        self.seq = seq
        self.last_event = last_event
        self.closed = closed
        self.keys = set() if keys is None else keys
        self.seen_as = seen_as
        self.kept = _Kept() if kept is None else kept
        self.egress = egress

    @property
    def last(self) -> Event:
        return self.events[-1]

    def l3(self) -> Event | None:
        for ev in reversed(self.events):
            if ev.record.src is not None:
                return ev
        return None

    def physin(self) -> str:
        for ev in self.events:
            r = ev.record
            if r.physin:
                return r.physin
            if r.fmt == "ebtlog" and r.in_dev:
                return r.in_dev
        return ""

    def physout(self) -> str:
        for ev, st in zip(self.events, self.stages, strict=True):
            r = ev.record
            if r.physout:
                return r.physout
            if r.fmt == "ebtlog" and r.out_dev and st in ("br-fwd", "br-post"):
                return r.out_dev
        return ""

    def macs(self, egress: bool) -> tuple[str, str] | None:
        for ev, st in zip(reversed(self.events), reversed(self.stages), strict=True):
            r = ev.record
            if r.mac_src and r.mac_dst and ((st in _EGRESS_L2) == egress):
                return r.mac_src, r.mac_dst
        return None

    def ip_out(self) -> str:
        for ev in reversed(self.events):
            if ev.record.fmt == "nflog" and ev.record.out_dev:
                return ev.record.out_dev
        return ""


def _absorb(t: Track, ev: Event, stage: str, walk: Walk) -> None:
    """Append a line to an open packet, keeping what feed's tests read of it (_Kept); ``walk`` is
    _walk(ev)."""
    t.events.append(ev)
    t.stages.append(stage)
    k = t.kept
    r = ev.record
    if r.src is not None:
        k.l3 = ev
    if not k.physin:
        k.physin = r.physin or (r.in_dev if r.fmt == "ebtlog" else "")
    if not k.physout:
        k.physout = r.physout or (r.out_dev if r.fmt == "ebtlog" and stage in ("br-fwd", "br-post") else "")
    if r.mac_src and r.mac_dst:
        k.macs[stage in _EGRESS_L2] = (r.mac_src, r.mac_dst)
    if r.fmt == "nflog" and r.out_dev:
        k.ip_out = r.out_dev
    k.trace_ids.add(r.trace_id)
    at = len(t.events) - 1
    same_walk = k.walks.get(walk)
    if same_walk is None:
        k.walks[walk] = [at]
    else:
        same_walk.append(at)


def _stage_candidates(ev: Event) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The stages the event can stand for, and for each last stage of a packet the ones of them the
    hook graph lets follow it (_follows, filled as packets ask)."""
    r = ev.record
    traced = r.fmt in ("xtmon", "nfttrace")
    # The candidates depend on these alone (_candidates reads nothing else), and the stages that may
    # follow a last stage on the candidates and that stage alone (_follows), so a follow map belongs
    # to one key (tests/test_correlate.py checks every cached answer against the uncached one).
    key = (ev.hook.family, ev.hook.hook, traced, bool(r.physout), bool(r.in_dev) and r.in_dev == r.out_dev)
    found = _CANDIDATES.get(key)
    if found is None:
        found = _CANDIDATES[key] = (_candidates(*key), {})
    return found


def _candidates(family: str, hook: str, traced: bool, physout: bool, in_is_out: bool) -> tuple[str, ...]:
    cands = stages_for(family, hook)
    if family != "bridge" and hook in ("FORWARD", "POSTROUTING"):
        # br_netfilter keeps the bridge ports in PHYSOUT only for frames it bridges
        # (nf_log_dump_packet_common prints PHYSOUT from nf_bridge_get_physoutdev()). Trace monitors
        # print no bridge ports; there a bridged frame shows the bridge as both iif and oif.
        bridged = physout or (traced and in_is_out)
        if traced and not bridged:
            # nft trace prints no iif at POSTROUTING for bridged frames (seen in the lab), so both
            # contexts stay possible; the packet's earlier hops decide which one is reachable.
            cands = tuple(sorted(cands, key=lambda c: c.endswith("-br")))
        else:
            cands = tuple(c for c in cands if c.endswith("-br") == bridged)
    return cands


_CANDIDATES: dict[tuple[str, str, bool, bool, bool], tuple[tuple[str, ...], dict[str, tuple[str, ...]]]] = {}
_ENDS_TABLE = (Action.DROP, Action.REJECT, Action.ACCEPT)
# Each stage's (family kind, hook): where _can_follow counts two stages as one hook.
_WHERE = {key: (st.family_kind, st.hook) for key, st in STAGES.items()}


def _follows(last_stage: str, cands: tuple[str, ...]) -> tuple[str, ...]:
    """The candidate stages the hook graph lets follow a packet's last stage (the same hook again, or
    one reachable from it), in candidate order."""
    return tuple(st for st in cands if st == last_stage or st in REACHABLE[last_stage])


def _can_follow(track: Track, ev: Event, stage: str, walk: Walk) -> bool:
    """Whether ``ev`` at ``stage`` can follow the packet's lines, given that the hook graph lets
    ``stage`` follow its last stage (_follows); ``walk`` is _walk(ev)."""
    # Same hook: the kernel prints tables in the order it runs them, so line order is the truth.
    # One packet passes an IP hook once even where two stages stand for it: ip_sabotage_in() stops
    # the IP PREROUTING hooks from running again for a frame br_netfilter already ran them for
    # (net/bridge/br_netfilter_hooks.c), so "ip-pre" then "ip-pre-up" is the same hook twice. A line
    # placed only among candidate hooks proves no hook, so for it only the stage itself counts.
    # Priorities differ by backend (ebtables-nft registers its bridge filter chains, OUTPUT included,
    # at NF_BR_PRI_FILTER_BRIDGED, so filter OUTPUT runs before nat OUTPUT; legacy ebtables runs
    # filter OUTPUT at NF_BR_PRI_FILTER_OTHER, after nat: iptables/nft.c builtin table definitions).
    # A table seen twice at one hook means a second packet (a retransmit or a flooded copy). An nft
    # table may have several base chains at one hook (fw4 raw_prerouting and mangle_prerouting), all
    # walked for one packet in one nf_hook_slow() call (net/netfilter/core.c): there a base chain
    # seen twice means a second packet.
    # A LOG rule lets the packet go on (xt_LOG.c returns XT_CONTINUE), so other LOG rules of the same
    # table may log it again at this hook (ufw's [UFW AUDIT] in ufw-before-logging-output, then
    # [UFW ALLOW] in ufw-after-logging-output): a line with another prefix is the same packet unless an
    # earlier prefix says the table's traversal ended there (DROP, REJECT, ACCEPT). One rule logs a
    # packet once, so the same prefix again is a second packet (a retransmit or a flooded copy).
    same_walk = track.kept.walks.get(walk)
    if not same_walk:
        return True
    where = _WHERE[stage]
    placed = ev.hook.placed
    events, stages = track.events, track.stages
    for at in same_walk:
        e, st = events[at], stages[at]
        if (st == stage or (placed and e.hook.placed and _WHERE[st] == where)) and not _logs_again(e, ev):
            return False
    return True


def _walk(ev: Event) -> Walk:
    """What one packet passes once per hook: a table, or an nft trace's base chain of a table (with
    the family of the hook)."""
    h = ev.hook
    return h.family, h.table, h.chain if ev.record.fmt == "nfttrace" else None


def _logs_again(before: Event, ev: Event) -> bool:
    """Whether one packet can be logged by ``before`` and then by ``ev`` at the same hook and table."""
    return (
        before.record.fmt == ev.record.fmt == "nflog"
        and HOW_TRACE not in (before.hook.how, ev.hook.how)
        and before.hook.action not in _ENDS_TABLE
        and before.record.prefix != ev.record.prefix
    )


def flow_ports(ev: Event) -> tuple[int | None, int | None]:
    """The ports conntrack keys a flow by; an ICMP echo's id stands in for both."""
    r = ev.record
    if r.proto in ICMP_PROTOS and r.icmp_id is not None:
        return r.icmp_id, r.icmp_id
    return r.sport, r.dport


def _l3_matches(a: Event, b: Event) -> bool:
    ra, rb = a.record, b.record
    # A field one source does not print is unknown, not changed: xtables-monitor 1.8.x prints no
    # PROTO= for ICMP (the protocol is known only from a matched "-p icmp" rule of that walk).
    if ra.l3 != rb.l3 or (ra.proto is not None and rb.proto is not None and ra.proto != rb.proto):
        return False
    for x, y in (
        (ra.ipid, rb.ipid),
        (ra.length, rb.length),
        (ra.icmp_type, rb.icmp_type),
        (ra.icmp_seq, rb.icmp_seq),
        (ra.tcp_seq, rb.tcp_seq),
        (ra.flowlabel, rb.flowlabel),
    ):
        if x is not None and y is not None and x != y:
            return False
    # Flags are compared unless a line says TCP but prints no TCP header: xtables-monitor's bridge-family
    # PACKET line shows the network header alone (NH=, no ports, no flags), which says nothing of them.
    if (
        ra.tcp_flags != rb.tcp_flags
        and ra.proto == "TCP"
        and ra.sport is not None
        and (rb.sport is not None or rb.proto != "TCP")
    ):
        return False
    sa, da = flow_ports(a)
    sb, db = flow_ports(b)
    same_src = ra.src == rb.src and (sa is None or sb is None or sa == sb)
    same_dst = ra.dst == rb.dst and (da is None or db is None or da == db)
    # NAT rewrites one side at a hook (DNAT the destination, SNAT the source); the other side stays.
    return same_src or same_dst


def _same_packet(track: Track, ev: Event) -> bool:
    """The tests of _compatible that do not depend on the stage: time, file and L3/L4 identity."""
    r = ev.record
    last = track.events[-1].record  # Track.last, without the property's call
    stamp = r.stamp
    if stamp is None:
        if r.ref.file != last.ref.file:
            return False
    elif last.stamp is not None and abs(stamp - last.stamp) > MAX_GAP_SECONDS:
        return False
    prev_l3 = track.kept.l3
    return r.src is None or prev_l3 is None or _l3_matches(prev_l3, ev)


def _compatible(track: Track, ev: Event, stage: str, bridges: Collection[str]) -> bool:
    """Whether ``ev`` at ``stage`` can be the next line of the packet, given _same_packet."""
    r = ev.record
    k = track.kept
    prev_l3 = k.l3
    if stage in _EGRESS_L2:
        # Leaving through a bridge after routing: the IP layer must have chosen a bridge device,
        # and the bridge frame carries the MACs the neighbour lookup wrote (new ones).
        out = k.ip_out
        if track.stages[-1] not in _EGRESS_L2 and out and bridges and out not in bridges:
            return False
        prev = k.macs.get(True)
        return not (prev and r.mac_src and (r.mac_src, r.mac_dst) != prev)
    if r.mac_src and r.mac_dst and stage in _INGRESS_L2:
        prev = k.macs.get(False)
        if prev and (r.mac_src, r.mac_dst) != prev:
            return False
    physin = k.physin
    this_in = r.physin or (r.in_dev if r.fmt == "ebtlog" else "")
    if physin and this_in and physin != this_in:
        return False
    if r.fmt == "ebtlog" and prev_l3 is None and not k.macs.get(False):
        return False
    if r.src is None and prev_l3 is None and r.fmt == "nflog":
        return False
    # A walk shown without its packet line (a cut paste) joins only a walk of the same trace id.
    if (
        r.fmt in _MONITORS
        and (r.src is None or prev_l3 is None)
        and (r.trace_id is None or r.trace_id not in k.trace_ids)
    ):
        return False
    physout = k.physout
    this_out = r.physout or (r.out_dev if r.fmt == "ebtlog" and stage in ("br-fwd", "br-post") else "")
    return not (physout and this_out and physout != this_out)


def _keys(ev: Event) -> list[tuple[object, ...]]:
    """Index keys under which a packet with this event can be found again."""
    r = ev.record
    keys: list[tuple[object, ...]] = []
    if r.ipid is not None:
        keys.append(("id", r.l3, r.proto, r.ipid))
    elif r.l3 == "ipv6" and r.flowlabel is not None:
        keys.append(("v6", r.proto, r.flowlabel, r.length))
    if r.mac_src and r.mac_dst:
        keys.append(("mac", r.mac_src, r.mac_dst))
    if r.trace_id is not None:
        keys.append(("trace", r.fmt, r.trace_id))
    if ev.hook.how == "TRACE prefix" and r.ipid is None and r.flowlabel is None and r.src is not None:
        # Legacy TRACE lines cut before ID= (a trimmed paste): the addresses are all that is left, and
        # NAT changes only one side at a hook (_l3_matches).
        keys += [("trace-src", r.l3, r.src), ("trace-dst", r.l3, r.dst)]
    return keys


class Correlator:
    """Assemble packets from events in input order, handing each out once it is complete.

    Candidates come from indexes (IP id, IPv6 flow label, MAC pair, and the packets that just left
    IP POSTROUTING for bridge egress), so the cost per event does not grow with the log. A packet
    settles SETTLE_SECONDS of kernel time (SETTLE_EVENTS events without stamps) after its last line;
    settled packets are joined with their continuations (_Joiner) and handed out in packet order.
    ``settle_seconds=None`` and ``settle_events=None`` keep every packet open to the end.
    """

    def __init__(
        self,
        bridges: Collection[str] = frozenset(),
        settle_seconds: float | None = SETTLE_SECONDS,
        settle_events: int | None = SETTLE_EVENTS,
    ) -> None:
        self.bridges = bridges
        self.settle_seconds = settle_seconds
        self.settle_events = settle_events
        self.index: dict[tuple[object, ...], list[Track]] = {}
        self.egress_open: list[Track] = []
        self.pending: deque[Track] = deque()  # created and not settled, in creation order
        self.created = 0
        self.events = 0
        self.now: float | None = None  # the latest kernel stamp seen
        self.joiner = _Joiner()

    def feed(self, ev: Event) -> list[Track]:
        """Add one event; return the packets that are now complete, in packet order."""
        self.events += 1
        stamp = ev.record.stamp
        if stamp is not None and (self.now is None or stamp > self.now):
            self.now = stamp
        cands, follows = _stage_candidates(ev)
        keys = _keys(ev)
        # Most candidates (the other packets of a MAC pair, the packets that just left for bridge
        # egress) have another IP ID, which alone makes _same_packet false (_l3_matches): they are
        # left out of the pool at once. At most 8 packets per key (of at most 5 keys) and 64 egress
        # packets stand in the pool, fewer than SCAN_LIMIT, so leaving them out does not change
        # which packets are scanned.
        ipid = ev.record.ipid if ev.record.src is not None else None
        index = self.index
        pool: dict[int, Track] = {}
        for key in keys:
            lst = index.get(key)
            if lst is not None:
                _gather(pool, lst, ipid)
        if not _EGRESS_L2.isdisjoint(cands):
            _gather(pool, self.egress_open, ipid)
        placed: Track | None = None
        walk = _walk(ev)
        order = sorted(pool, reverse=True)
        if len(order) > SCAN_LIMIT:
            del order[SCAN_LIMIT:]
        for i in order:
            track = pool[i]
            # _can_follow's first test, for every candidate stage at once.
            last_stage = track.stages[-1]
            follow = follows.get(last_stage)
            if follow is None:
                follow = follows[last_stage] = _follows(last_stage, cands)
            if not follow or not _same_packet(track, ev):  # what does not depend on the stage, once per packet
                continue
            for stage in follow:
                if _can_follow(track, ev, stage, walk) and _compatible(track, ev, stage, self.bridges):
                    _absorb(track, ev, stage, walk)
                    placed = track
                    break
            if placed is not None:
                break
        if placed is None:
            placed = Track(index=self.created, seq=self.created)
            self.created += 1
            _absorb(placed, ev, cands[0], walk)
            self.pending.append(placed)
        placed.last_event = self.events
        placed.keys.update(keys)
        for key in keys:
            lst = index.get(key)
            if lst is None:
                index[key] = [placed]
            elif not _holds(lst, placed):
                lst.append(placed)
                del lst[:-8]  # a few recent packets per key are enough; older ones are done
        if placed.stages[-1] in ("ip-post", "br-out", "ip-out") and not placed.egress:
            placed.egress = True
            self.egress_open.append(placed)
            if len(self.egress_open) > 64:
                for t in self.egress_open[:-64]:
                    t.egress = False
                del self.egress_open[:-64]
        if self.pending and self._settled(self.pending[0]):
            out = self._settle()
            return out + self._release()
        return self._release()

    def _release(self) -> list[Track]:
        """Hand out the packets no later piece can continue any more (_Joiner): pieces join a packet
        within MAX_GAP_SECONDS after its last line, and every piece to come begins after the oldest
        open packet began (or now, when none is open)."""
        window = self.joiner.window
        if not window or self.now is None:
            return []
        head = self.pending[0].events[0].record.stamp if self.pending else self.now
        if head is None:
            return []
        return self.joiner.release(min(head, self.now) - MAX_GAP_SECONDS)

    def _settled(self, t: Track) -> bool:
        stamp = t.events[-1].record.stamp
        if (
            self.settle_seconds is not None
            and stamp is not None
            and self.now is not None
            and self.now - stamp > self.settle_seconds
        ):
            return True
        return self.settle_events is not None and self.events - t.last_event > self.settle_events

    def _settle(self) -> list[Track]:
        out: list[Track] = []
        while self.pending and self._settled(self.pending[0]):
            out += self._close(self.pending.popleft())
        return out

    def _close(self, t: Track) -> list[Track]:
        t.closed = True
        # An index entry whose packets are all settled can find nothing any more: forget it, so the
        # index holds the open packets, not every packet of the log.
        for key in t.keys:
            lst = self.index.get(key)
            if lst is not None and all(x.closed for x in lst):
                del self.index[key]
        t.keys.clear()
        t.kept = _SETTLED
        if t.egress:
            t.egress = False
            self.egress_open.remove(t)
        return self.joiner.add(t)

    def finish(self) -> list[Track]:
        """The end of input: every packet still open is complete."""
        out: list[Track] = []
        while self.pending:
            out += self._close(self.pending.popleft())
        return out + self.joiner.finish()


def _gather(pool: dict[int, Track], tracks: list[Track], ipid: int | None) -> None:
    """Add the open packets of an index entry to the pool of candidates, by creation order, leaving
    out those of another IP ID (Correlator.feed)."""
    for t in tracks:
        if t.closed:
            continue
        if ipid is not None:
            l3 = t.kept.l3
            if l3 is not None and (other := l3.record.ipid) is not None and other != ipid:
                continue
        pool[t.seq] = t


def _holds(tracks: list[Track], t: Track) -> bool:
    """``t in tracks`` by identity alone (Track compares by identity): ``in`` asks each other packet's
    __eq__, both ways, before it compares identities."""
    return any(x is t for x in tracks)  # mypyc compiles any() of a generator to a plain loop


def correlate(events: Iterable[Event], bridges: Collection[str] = frozenset()) -> list[Track]:
    """Assemble packets from events in input order, holding every packet open to the end."""
    corr = Correlator(bridges, None, None)
    out: list[Track] = []
    for ev in events:
        out += corr.feed(ev)
    return out + corr.finish()


def _narrow_by_order(track: Track) -> None:
    """Narrow an unplaced hop's hooks by the placed hops of its packet around it.

    A packet meets the hooks in path order (netfilter.EDGES), and a trace prints its walks in the
    order the kernel runs them, so a chain walked before a chain at FORWARD is not at POSTROUTING.
    The hook is set only when one candidate remains; otherwise the candidates shrink.
    """
    events, stages = track.events, track.stages
    n = len(events)
    # The stage order of each placed hop (-1: unplaced), and for each hop the lowest order of a
    # placed hop after it: one pass each way (plain loops; this runs for every packet of an nft trace).
    orders = [-1] * n
    unplaced = False
    for i in range(n):
        if events[i].hook.candidates:  # not HookRef.placed
            unplaced = True
        else:
            orders[i] = STAGE_ORDER[stages[i]]
    if not unplaced:
        return
    his = [0] * n
    hi = len(STAGE_ORDER)
    for i in range(n - 1, -1, -1):
        his[i] = hi
        if orders[i] >= 0:
            hi = min(hi, orders[i])
    lo = -1
    for i in range(n):
        ev = events[i]
        if orders[i] >= 0:
            lo = max(lo, orders[i])
            continue
        hi = his[i]
        # The narrowed hook depends on the hook and the bounds alone: a trace prints the same few
        # walks for every packet, so it is worked out once per (hook, lo, hi).
        key = (ev.hook, lo, hi)
        try:
            narrowed = _NARROWED[key]  # one lookup (HookRef's hash is not kept): a miss is rare
        except KeyError:
            narrowed = _NARROWED[key] = _narrowed(ev.hook, lo, hi)
        if narrowed is None:
            continue
        hook, fits = narrowed
        events[i] = at_hook(ev, hook)
        if stages[i] not in fits:
            stages[i] = fits[0]


_NARROWED: dict[tuple[HookRef, int, int], tuple[HookRef, tuple[str, ...]] | None] = {}


def at_hook(ev: Event, hook: HookRef) -> Event:
    """``replace(ev, hook=hook)`` by Event's constructor: dataclasses.replace is interpreted Python
    (reading every field by name), and an nft trace narrows nearly every event of every packet
    (tests/test_scale.py holds the two equal and fails when Event gains a field this leaves out)."""
    return Event(ev.record, hook, ev.rules, ev.extra)


def _narrowed(h: HookRef, lo: int, hi: int) -> tuple[HookRef, tuple[str, ...]] | None:
    """An unplaced hook narrowed to the candidates with a stage between lo and hi (STAGE_ORDER), and
    the stages of the hook it is ordered by; None when nothing changes."""
    fits = {
        c: tuple(st for st in stages_for(h.family, ORDERED_AS.get(c, c)) if lo <= STAGE_ORDER[st] <= hi)
        for c in h.candidates
    }
    keep = tuple(c for c in h.candidates if fits[c])
    if not keep or keep == h.candidates:
        return None
    first = next((c for c in keep if c not in ORDERED_AS), None)  # the hook the hop is ordered by
    if first is None:
        return None
    hook = replace(
        h,
        hook=first,
        candidates=keep if len(keep) > 1 else (),
        chain=h.chain if h.base_chain or len(keep) > 1 else keep[0],
    )
    return hook, fits[first]


# Bridge stages a frame reaches after br_netfilter bridged it again following a DNAT.
_REBRIDGED = ("br-fwd", "ip-fwd-br", "br-post", "ip-post-br")
JOIN_WINDOW = 64  # earlier packets a continuation is looked for among: they are microseconds apart
FLOOD_GAP_SECONDS = 0.01  # flooded copies of a frame are cloned in one br_flood() call


def _first_l3(track: Track) -> Event | None:
    return next((ev for ev in track.events if ev.record.src is not None), None)


def _same_ip_packet(a: Event, b: Event) -> bool:
    """Same IP datagram (the IPv4 ID or IPv6 flow label, protocol, length and source), any destination."""
    ra, rb = a.record, b.record
    ident = (ra.ipid, rb.ipid) if ra.ipid is not None else (ra.flowlabel, rb.flowlabel)
    if ident[0] is None or ident[0] != ident[1] or ra.l3 != rb.l3 or ra.proto != rb.proto:
        return False
    if ra.length is not None and rb.length is not None and ra.length != rb.length:
        return False
    sa, _ = flow_ports(a)
    sb, _ = flow_ports(b)
    return ra.src == rb.src and (sa is None or sb is None or sa == sb)


def _close(a: Track, b: Track, gap: float) -> bool:
    ta, tb = a.last.record.stamp, b.events[0].record.stamp
    if ta is None or tb is None:
        return a.last.record.ref.file == b.events[0].record.ref.file
    return 0 <= tb - ta <= gap


def _rebridged_after_dnat(a: Track, b: Track) -> bool:
    """Whether b is a continued after br_netfilter bridged it again following a destination rewrite.

    br_nf_pre_routing_finish() (net/bridge/br_netfilter_hooks.c): when the IP PREROUTING hooks changed
    the destination address (DNAT, or conntrack undoing a masquerade on a reply) and the route to the
    new address points back out of the same bridge, the frame is not routed but bridged again
    (bridged_dnat): the neighbour output writes the new destination MAC, keeping the source MAC
    (br_nf_pre_routing_finish_bridge saves it), and the frame goes on to bridge FORWARD. The same
    skb then shows the same source MAC, bridge port, IP ID and source, with a new destination.
    """
    if a.stages[-1] != "ip-pre" or b.stages[0] not in _REBRIDGED or not _close(a, b, MAX_GAP_SECONDS):
        return False
    if not a.physin() or a.physin() != b.physin():
        return False
    ma, mb = a.macs(egress=False), b.macs(egress=False)
    if ma and mb and (ma[0] != mb[0] or ma[1] == mb[1]):
        return False
    la, lb = a.l3(), _first_l3(b)
    if la is None or lb is None or not _same_ip_packet(la, lb):
        return False
    _, da = flow_ports(la)
    _, db = flow_ports(lb)
    return la.record.dst != lb.record.dst or (da is not None and db is not None and da != db)


def _flooded_copy(a: Track, b: Track) -> bool:
    """Whether b is another copy of a's frame, flooded to another port (br_flood clones the skb per
    port, net/bridge/br_forward.c): same bridge port in, same MACs, same IP datagram, another port out."""
    if b.stages[0] not in ("br-fwd", "ip-fwd-br") or b.stages[0] not in a.stages or not _close(a, b, FLOOD_GAP_SECONDS):
        return False
    if not a.physin() or a.physin() != b.physin() or a.macs(egress=False) != b.macs(egress=False):
        return False
    if a.physout() == b.physout():
        return False
    la, lb = _first_l3(a), _first_l3(b)
    if la is None or lb is None:
        # Without IP fields only the timing ties them: both stamps must be there.
        return la is lb is None and a.last.record.stamp is not None and b.events[0].record.stamp is not None
    return _same_ip_packet(la, lb) and la.record.dst == lb.record.dst


def looped_back(track: Track) -> bool:
    """Whether a packet went out over loopback and came back in (see _looped_back)."""
    return "ip-in" in track.stages and any(st in ("ip-out", "ip-post") for st in track.stages)


def _looped_back(a: Track, b: Track) -> bool:
    """Whether b is a's packet coming back in over loopback.

    loopback_xmit() hands the very skb it is given to __netif_rx() (drivers/net/loopback.c), so a
    packet sent with OUT=lo passes IP PREROUTING and INPUT next with IN=lo: the same datagram (IP ID,
    source, ports, length, destination). The hook graph has no edge back to PREROUTING, so the two
    pieces are joined here.
    """
    if a.stages[-1] not in ("ip-out", "ip-post") or b.stages[0] not in ("ip-pre", "ip-in"):
        return False
    if a.last.record.out_dev != "lo" or b.events[0].record.in_dev != "lo" or not _close(a, b, MAX_GAP_SECONDS):
        return False
    la, lb = a.l3(), _first_l3(b)
    if la is None or lb is None or la.record.ipid == 0:  # ID 0 (DF) is not unique to one datagram
        return False
    return _same_ip_packet(la, lb) and la.record.dst == lb.record.dst


class _Joiner:
    """Join the pieces of one packet that the hook graph alone keeps apart: a frame bridged again
    after DNAT, the flooded copies of one frame (one packet with several exits), and a packet that
    loopback hands back to the stack.

    Pieces come in creation order; a piece joins one of the last JOIN_WINDOW packets, or becomes the
    next packet (its index is its number). A packet is handed out, narrowed, once it leaves the window.
    """

    def __init__(self) -> None:
        self.window: deque[Track] = deque()
        self.count = 0

    def add(self, b: Track) -> list[Track]:
        # Only a piece that begins at a bridge stage, or comes in on lo, can continue an earlier packet.
        first = b.stages[0]
        could = first in _REBRIDGED or (first in ("ip-pre", "ip-in") and b.events[0].record.in_dev == "lo")
        target = (
            next(
                (
                    a
                    for a in reversed(self.window)
                    if _rebridged_after_dnat(a, b) or _flooded_copy(a, b) or _looped_back(a, b)
                ),
                None,
            )
            if could
            else None
        )
        if target is not None:
            target.events += b.events
            target.stages += b.stages
            return []
        b.index = self.count
        self.count += 1
        self.window.append(b)
        if len(self.window) <= JOIN_WINDOW:
            return []
        done = self.window.popleft()
        _narrow_by_order(done)
        return [done]

    def release(self, before: float) -> list[Track]:
        """Hand out, in packet order, the first packets whose last line is older than ``before``."""
        out: list[Track] = []
        while self.window:
            stamp = self.window[0].events[-1].record.stamp
            if stamp is None or stamp >= before:
                break
            done = self.window.popleft()
            _narrow_by_order(done)
            out.append(done)
        return out

    def finish(self) -> list[Track]:
        out = list(self.window)
        self.window.clear()
        for t in out:
            _narrow_by_order(t)
        return out


def _topo_order() -> dict[str, int]:
    """A topological order of the stages: any packet's stages appear in it in path order."""
    indeg = {k: 0 for k in EDGES}
    for dsts in EDGES.values():
        for d in dsts:
            indeg[d] += 1
    ready = sorted(k for k, v in indeg.items() if v == 0)
    order: list[str] = []
    while ready:
        k = ready.pop(0)
        order.append(k)
        for d in EDGES[k]:
            indeg[d] -= 1
            if indeg[d] == 0:
                ready.append(d)
                ready.sort()
    return {k: i for i, k in enumerate(order)}


STAGE_ORDER = _topo_order()


def _mergeable(a: Track, b: Track) -> bool:
    # The same hook and table seen twice by one kind of source means two packets; a LOG line and a
    # trace visit of the same chain are the same hop seen twice.
    slots_a = {(st, e.hook.family, e.hook.table, e.record.fmt) for e, st in zip(a.events, a.stages, strict=True)}
    if any(
        (st, e.hook.family, e.hook.table, e.record.fmt) in slots_a for e, st in zip(b.events, b.stages, strict=True)
    ):
        return False
    la, lb = a.l3(), b.l3()
    if la is not None and lb is not None:
        if not any(_l3_matches(x, y) for x in a.events if x.record.src for y in b.events if y.record.src):
            return False
    else:
        ma, mb = a.macs(False), b.macs(False)
        if not (ma and mb and ma == mb):
            return False
    pa, pb = a.physin(), b.physin()
    if pa and pb and pa != pb:
        return False
    merged = sorted(
        zip(a.stages + b.stages, range(len(a.stages) + len(b.stages)), strict=True),
        key=lambda x: (STAGE_ORDER[x[0]], x[1]),
    )
    stages = [st for st, _ in merged]
    return all(y == x or y in REACHABLE[x] for x, y in zip(stages, stages[1:], strict=False))


def _table_runs(evs: list[Event]) -> list[str | None]:
    """The tables of one source's lines at a stage, once per run of lines of one table."""
    runs: list[str | None] = []
    for e in evs:
        if not runs or runs[-1] != e.hook.table:
            runs.append(e.hook.table)
    return runs


def _in_order(small: list[str | None], big: list[str | None]) -> bool:
    """Whether every table of ``small`` is in ``big``, in the same order."""
    rest = iter(big)
    return all(t in rest for t in small)


def _merge_in_stage(a: list[Event], b: list[Event]) -> list[Event]:
    """Merge two sources' events at one stage.

    Each source prints the tables of a hook in the order the kernel ran them. When the tables of one
    are among the other's in the same order, each table's lines of both sit together in that order:
    a LOG line and a trace of one table are one walk. Priorities alone would misplace them where the
    backend's order is not the legacy one (ebtables-nft runs filter OUTPUT before nat OUTPUT,
    iptables/nft.c builtin table definitions). Otherwise by table priority where both are known, else
    a first.
    """
    ra, rb = _table_runs(a), _table_runs(b)
    if None not in ra and None not in rb and len(set(ra)) == len(ra) and len(set(rb)) == len(rb):
        order = ra if _in_order(rb, ra) else rb if _in_order(ra, rb) else None
        if order is not None:
            return [e for t in order for side in (a, b) for e in side if e.hook.table == t]
    out: list[Event] = []
    i = j = 0
    while i < len(a) and j < len(b):
        pa = table_priority(a[i].hook.family, a[i].hook.hook, a[i].hook.table)
        pb = table_priority(b[j].hook.family, b[j].hook.hook, b[j].hook.table)
        if pa is not None and pb is not None and pb < pa:
            out.append(b[j])
            j += 1
        else:
            out.append(a[i])
            i += 1
    return out + a[i:] + b[j:]


def merge_sources(sources: list[list[Track]]) -> list[Track]:
    """Merge packets seen by several sources into one hop sequence each, in hook order.

    Stages are ordered by the hook graph (STAGE_ORDER); at one stage, tables by priority where it is
    known, otherwise each source keeps its own line order.
    """
    if len(sources) == 1:
        return sources[0]
    merged: list[Track] = []
    first_seen: dict[int, tuple[int, int]] = {}
    for src_no, tracks in enumerate(sources):
        used: set[int] = set()
        for t in tracks:
            target = next((m for m in merged if id(m) not in used and _mergeable(m, t)), None)
            if target is None:
                merged.append(t)
                first_seen[id(t)] = (src_no, t.events[0].record.ref.line)
                continue
            used.add(id(target))
            pairs: list[tuple[Event, str]] = []
            for stage in sorted(set(target.stages) | set(t.stages), key=STAGE_ORDER.__getitem__):
                a = [e for e, st in zip(target.events, target.stages, strict=True) if st == stage]
                b = [e for e, st in zip(t.events, t.stages, strict=True) if st == stage]
                pairs += [(e, stage) for e in _merge_in_stage(a, b)]
            target.events = [e for e, _ in pairs]
            target.stages = [st for _, st in pairs]
    merged.sort(key=lambda t: first_seen[id(t)])
    for i, t in enumerate(merged):
        t.index = i
    return merged


# --- conversations -------------------------------------------------------------------------------

View = tuple[str, Endpoint, Endpoint]  # (proto, source, destination) as seen at one hook
UNKNOWN_PROTO = "IP"  # the protocol of a packet whose lines do not print it


def differs(a: Endpoint, b: Endpoint) -> bool:
    """Whether two views of one endpoint show a rewrite: a field one source does not print is unknown,
    not changed (ebtables --log-ip prints no ICMP id, xtables-monitor 1.8.9 no ICMP type)."""
    return a.addr != b.addr or (a.port is not None and b.port is not None and a.port != b.port)


def views(track: Track) -> list[View]:
    """Return the distinct (proto, src, dst) tuples a packet showed along its path, in order.

    A port one source left out is taken from another line of the packet with the same addresses,
    so an ebtables --log-ip line (no ICMP id) does not make a view of its own. Asked only of complete
    packets (after correlation), so the answer is kept on the packet.
    """
    if track.seen_as is None:
        track.seen_as = _views(track)
    return list(track.seen_as)


def _views(track: Track) -> list[View]:
    known: dict[tuple[str, str, str], tuple[int | None, int | None]] = {}
    for ev in track.events:
        r = ev.record
        ports = flow_ports(ev)
        if r.src and r.dst and ports != (None, None):
            known.setdefault((r.proto or UNKNOWN_PROTO, r.src, r.dst), ports)
    out: list[View] = []
    for ev in track.events:
        r = ev.record
        if r.src is None or r.dst is None:
            continue
        # xtables-monitor prints no protocol for ICMP: the addresses still pair a reply with its request.
        proto = r.proto or UNKNOWN_PROTO
        s, d = flow_ports(ev)
        if s is None and d is None:
            s, d = known.get((proto, r.src, r.dst), (None, None))
        v = (proto, Endpoint(r.src, s), Endpoint(r.dst, d))
        if v not in out:
            out.append(v)
    return out


def flow_views(track: Track) -> list[View]:
    """The views that key a packet's connection. A view without ports comes from a line that prints
    no transport header (xtables-monitor's bridge-family PACKET line shows the network header alone,
    NH=): it would join every connection between the same two addresses (a NodePort's and a
    ClusterIP's, both masqueraded to the bridge address), so it keys the packet only when no line
    of it shows ports."""
    vs = views(track)
    return [v for v in vs if v[1].port is not None or v[2].port is not None] or vs


def reverse(v: View) -> View:
    return (v[0], v[2], v[1])


_ICMP_REPLY_TYPES = {("ICMP", 0), ("ICMPv6", 129)}  # echo reply: RFC 792 type 0, RFC 4443 type 129


_ICMP_REQUEST_TYPES = {("ICMP", 8), ("ICMPv6", 128)}  # echo request: RFC 792 type 8, RFC 4443 type 128


def opens_by_itself(track: Track) -> bool:
    """Tell whether a packet is a request by its own header, even with its addresses redacted.

    A TCP SYN without ACK is the first packet of a handshake (RFC 9293 3.5) and an echo request asks
    for a reply: conntrack makes either the original direction of a new entry
    (nf_conntrack_proto_tcp.c tcp_new() accepts only a SYN; nf_conntrack_proto_icmp.c icmp_new()).
    """
    for ev in track.events:
        r = ev.record
        if (r.proto, r.icmp_type) in _ICMP_REQUEST_TYPES:
            return True
        if r.proto == "TCP" and "SYN" in r.tcp_flags and "ACK" not in r.tcp_flags:
            return True
    return False


_CT_DIRECTION = re.compile(r"\bct direction (original|reply)\b")


def ct_direction(track: Track) -> str | None:
    """The conntrack direction an nft trace printed for the packet ("conntrack: ct direction reply",
    nftables >= 1.1.4 from NFTA_TRACE_CT_DIRECTION, net/netfilter/nf_tables_trace.c)."""
    for ev in track.events:
        for x in ev.record.extra:
            m = _CT_DIRECTION.search(x)
            if m:
                return m.group(1)
    return None


def is_reply_by_itself(track: Track) -> bool:
    """Tell whether a packet is a reply without its request: conntrack's direction when the trace
    prints it, else an echo reply, or a TCP SYN-ACK."""
    direction = ct_direction(track)
    if direction is not None:
        return direction == "reply"
    l3 = track.l3()
    if l3 is None:
        return False
    r = l3.record
    if (r.proto, r.icmp_type) in _ICMP_REPLY_TYPES:
        return True
    if r.proto == "TCP" and "SYN" in r.tcp_flags and "ACK" in r.tcp_flags:
        return True
    return _established_from_server_port(track, r.sport, r.dport)


# A traced rule that matched "ct state established" (with "related" at most, never "new"): the packet
# belongs to a connection conntrack has already seen both ways (nf_conntrack_core.c: ESTABLISHED after
# a reply was seen, IP_CT_ESTABLISHED_REPLY for replies).
_CT_ESTABLISHED = re.compile(r"\bct state (?:established|established,related|related,established)(?=\s|$)")
# The default ip_local_port_range (net/ipv4/af_inet.c inet_init_net: 32768-60999) from which a client
# socket gets its port when it does not bind one.
_EPHEMERAL = range(32768, 61000)


def _established_from_server_port(track: Track, sport: int | None, dport: int | None) -> bool:
    """An established packet from a well-known port (< 1024) to an ephemeral one is the server's
    answer: a client takes an ephemeral port, and the service listens on its well-known one."""
    if sport is None or dport is None or sport >= 1024 or dport not in _EPHEMERAL:
        return False
    return any(h.kind is HitKind.RULE and _CT_ESTABLISHED.search(h.text) for ev in track.events for h in ev.rules)


@dataclass(init=False)
class Flow:
    """Packets of one conversation with their direction (True = original)."""

    index: int
    original: View
    members: list[tuple[Track, bool]] = field(default_factory=list)
    related: list[Track] = field(default_factory=list)  # ICMP errors about this connection
    role: dict[int, str] = field(default_factory=dict)  # track index -> "original"/"reply"/"related"
    views: list[View] = field(default_factory=list)  # every view that finds this flow (forgotten on close)
    # Reopened for a closed connection's late packets (Conversations.reopen): its direction is that
    # connection's, known from its own packets, not from this flow's.
    reopened: bool = False

    # Written out so that mypyc compiles it: a dataclass's own __init__ is interpreted (model.py).
    def __init__(
        self,
        index: int,
        original: View,
        members: list[tuple[Track, bool]] | None = None,
        related: list[Track] | None = None,
        role: dict[int, str] | None = None,
        views: list[View] | None = None,
        reopened: bool = False,
    ) -> None:
        self.index = index
        self.original = original
        self.members = [] if members is None else members
        self.related = [] if related is None else related
        self.role = {} if role is None else role
        self.views = [] if views is None else views
        self.reopened = reopened

    def tracks(self) -> list[Track]:
        """Its packets (members and related ICMP errors) in packet order."""
        return sorted([t for t, _ in self.members] + self.related, key=lambda t: t.index)


# ICMP errors that quote the packet they are about (RFC 792 types 3, 4, 5, 11, 12; RFC 4443 1-4);
# conntrack ties them to that packet's connection as RELATED (nf_conntrack_proto_icmp.c icmp_error).
ICMP_ERRORS = {"ICMP": frozenset({3, 4, 5, 11, 12}), "ICMPv6": frozenset({1, 2, 3, 4})}


def _error_view(track: Track) -> View | None:
    for ev in track.events:
        r = ev.record
        if r.embedded and r.icmp_type in ICMP_ERRORS.get(r.proto or "", ()):
            src, dst, proto, sport, dport = r.embedded
            if src and dst and proto:
                return (proto, Endpoint(src, sport), Endpoint(dst, dport))
    return None


class Conversations:
    """Group packets by conntrack tuple as they come, matching every view so NAT'd replies find requests.

    ``is_reply`` tells a packet that opens a conversation of its own whether it is a reply (its
    request not in the trace): by itself (an echo reply, a SYN-ACK) or by a conntrack snapshot.
    A closed flow's views are forgotten: a later packet of the same tuple opens a new conversation.
    """

    def __init__(self, is_reply: Callable[[Track], bool] = is_reply_by_itself) -> None:
        self.is_reply = is_reply
        self.count = 0
        self.by_view: dict[View, tuple[Flow, bool]] = {}

    def find(self, track: Track) -> tuple[Flow, bool | None] | None:
        """The open flow a packet belongs to and its direction (True: original; None: an ICMP error
        about it), without filing it."""
        by_view = self.by_view
        ev_view = _error_view(track)
        if ev_view is not None and (ev_view in by_view or reverse(ev_view) in by_view):
            return by_view.get(ev_view, by_view.get(reverse(ev_view)))[0], None  # type: ignore[index]
        for v in flow_views(track):
            if v in by_view:
                return by_view[v]
            if reverse(v) in by_view:
                f, d = by_view[reverse(v)]
                return f, not d
        return None

    def add(self, track: Track) -> Flow | None:
        """File one packet (in packet order); return its flow, or None when it shows no addresses."""
        return self.file(track, self.find(track))

    def file(self, track: Track, found: tuple[Flow, bool | None] | None) -> Flow | None:
        """add(), given what find() says of the packet now (no flow closed since it was asked)."""
        by_view = self.by_view
        if found is not None and found[1] is None:
            flow = found[0]
            flow.related.append(track)
            flow.role[track.index] = "related"
            return flow
        vs = views(track)
        if not vs:
            return None
        hit: tuple[Flow, bool] | None = None
        if found is not None and found[1] is not None:
            hit = (found[0], found[1])
        if hit is None:
            reply = self.is_reply(track)
            original = reverse(vs[0]) if reply else vs[0]
            flow = Flow(self.count, original)
            self.count += 1
            hit = (flow, not reply)
        flow, forward = hit
        flow.members.append((track, forward))
        flow.role[track.index] = "original" if forward else "reply"
        for v in flow_views(track):
            if v not in by_view:
                by_view[v] = (flow, forward)
                flow.views.append(v)
        return flow

    def reopen(self, track: Track, original: View, forward: bool) -> Flow | None:
        """File a packet that opens a conversation whose direction is already known (a packet matching
        a closed connection's tuple still held by conntrack): ``original`` is that connection's
        original tuple, ``forward`` whether the packet goes its original way."""
        if not views(track):
            return None
        flow = Flow(self.count, original, reopened=True)
        self.count += 1
        return self.file(track, (flow, forward))

    def direction(self, view: View) -> bool:
        """Whether ``view``, a view of an open flow, goes that flow's original way."""
        return self.by_view[view][1]

    def close(self, flow: Flow) -> None:
        for v in flow.views:
            if self.by_view.get(v, (None,))[0] is flow:
                del self.by_view[v]


def group_conversations(
    tracks: list[Track],
    is_reply: Callable[[Track], bool] = is_reply_by_itself,
) -> tuple[list[Flow], dict[int, Flow]]:
    """Group all packets of a case by conntrack tuple (Conversations, never closing one)."""
    convs = Conversations(is_reply)
    flows: list[Flow] = []
    of_track: dict[int, Flow] = {}
    for track in tracks:
        flow = convs.add(track)
        if flow is None:
            continue
        if flow.index == len(flows):
            flows.append(flow)
        of_track[track.index] = flow
    return flows, of_track
