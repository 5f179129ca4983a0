"""Select conversations of a report by flow id, host, port or outcome (``--flow/--host/--port/--verdict``).

Every field is decided by one conversation alone, so a selection is a filter on the stream of
finished conversations (pipeline.stream_case): ``Selecting`` passes the selected ones on and counts
the case summary again over their packets, as ``select`` does for a whole report.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, replace

from reportgen.explain.answer import SummaryCounter
from reportgen.explain.topology import Topology
from reportgen.model import ICMP_PROTOS, NO_CONVERSATION, Conversation, ConversationResult, Packet, Report, id_order
from reportgen.render.view import outcome


@dataclass(frozen=True)
class Selection:
    """What to keep; an empty field keeps everything. A conversation must match every given field."""

    flows: tuple[str, ...] = ()  # conversation ids: c1, c2 ...
    hosts: tuple[str, ...] = ()  # an address either end of the conversation, before or after NAT
    ports: tuple[int, ...] = ()  # a TCP/UDP port either end
    verdicts: tuple[str, ...] = ()  # an outcome any of its packets met

    @property
    def empty(self) -> bool:
        return not (self.flows or self.hosts or self.ports or self.verdicts)


def _matches(c: Conversation, packets: list[Packet], sel: Selection) -> bool:
    if sel.flows and c.id not in sel.flows:
        return False
    if sel.hosts:
        addrs = {e.addr for e in c.original}
        addrs |= {a for p in packets for h in p.hops for a in (h.event.record.src, h.event.record.dst) if a}
        if not addrs & set(sel.hosts):
            return False
    if sel.ports:
        ports = {e.port for e in c.original if c.proto not in ICMP_PROTOS}
        ports |= {x for p in packets for h in p.hops for x in (h.event.record.sport, h.event.record.dport)}
        if not ports & set(sel.ports):
            return False
    return not sel.verdicts or any(outcome(p) in sel.verdicts for p in packets)


class Selecting:
    """A pipeline sink that hands the selected conversations to ``sink`` (packets of no conversation
    are never selected) and counts the selection's summary; ``head`` words the case head for it."""

    def __init__(self, sel: Selection, sink: Callable[[ConversationResult], None]) -> None:
        self.sel, self.sink = sel, sink
        self._reset()

    def _reset(self) -> None:
        self.total = self.kept = 0
        self.counter = SummaryCounter()
        # The syslog lines of the selection's first packets (by id), which name the host: a bounded heap.
        self.first: list[tuple[int, list[str]]] = []

    def restart(self) -> None:
        self._reset()
        restart = getattr(self.sink, "restart", None)
        if restart is not None:
            restart()

    def __call__(self, result: ConversationResult) -> None:
        c = result.conversation
        if c.id == NO_CONVERSATION:
            return
        self.total += 1
        if not _matches(c, list(result.packets), self.sel):
            return
        self.kept += 1
        for p in result.packets:
            self.counter.add(p, False)
            item = (-id_order(p.id), [h.event.record.text for h in p.hops])
            if len(self.first) < SummaryCounter.HOST_PACKETS:
                heapq.heappush(self.first, item)
            elif item > self.first[0]:
                heapq.heapreplace(self.first, item)
        self.sink(result)

    def head(self, head: Report) -> Report:
        """The case head of the selection: its summary counted again, and a note saying what was selected."""
        # The answer layer speaks of the whole case: count again over what belongs to the selection.
        topo = head.topology if isinstance(head.topology, Topology) else Topology()
        self.counter.texts = [t for _, texts in sorted(self.first, reverse=True) for t in texts]
        note = f"Selected {self.kept} of {self.total} conversations ({_describe(self.sel)})."
        return replace(head, summary=self.counter.summary(self.kept, topo), notes=(*head.notes, note))


def select(report: Report, sel: Selection) -> Report:
    """Return the report with only the selected conversations, their packets and groups, and a note."""
    from reportgen.render.digest import results_of

    if sel.empty:
        return report
    kept: list[ConversationResult] = []
    selecting = Selecting(sel, kept.append)
    for result in results_of(report):
        selecting(result)
    ids = {p.id for r in kept for p in r.packets}
    convs = {r.conversation.id for r in kept}
    return replace(
        selecting.head(report),
        conversations=tuple(c for c in report.conversations if c.id in convs),
        packets=tuple(p for p in report.packets if p.id in ids),
        groups=tuple(g for g in report.groups if g.first in ids),
        answers=tuple(a for a in report.answers if a.conversation in convs),
        footers=tuple(f for f in report.footers if f.packet in ids),
        crossings=tuple(c for c in report.crossings if c.conversation in convs),
    )


def _describe(sel: Selection) -> str:
    parts = [f"flow {', '.join(sel.flows)}"] if sel.flows else []
    parts += [f"host {', '.join(sel.hosts)}"] if sel.hosts else []
    parts += [f"port {', '.join(map(str, sel.ports))}"] if sel.ports else []
    parts += [f"verdict {', '.join(sel.verdicts)}"] if sel.verdicts else []
    return "; ".join(parts)
