"""Select conversations of a report by flow id, host, port or outcome (``--flow/--host/--port/--verdict``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from reportgen.explain.answer import case_summary
from reportgen.explain.topology import Topology
from reportgen.model import Conversation, Packet, Report
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
        ports = {e.port for e in c.original if c.proto not in ("ICMP", "ICMPv6")}
        ports |= {x for p in packets for h in p.hops for x in (h.event.record.sport, h.event.record.dport)}
        if not ports & set(sel.ports):
            return False
    return not sel.verdicts or any(outcome(p) in sel.verdicts for p in packets)


def select(report: Report, sel: Selection) -> Report:
    """Return the report with only the selected conversations, their packets and groups, and a note."""
    if sel.empty:
        return report
    by_id = {p.id: p for p in report.packets}
    keep = [c for c in report.conversations if _matches(c, [by_id[i] for i in c.packets], sel)]
    ids = {i for c in keep for i in c.packets}
    convs = {c.id for c in keep}
    packets = tuple(p for p in report.packets if p.id in ids)
    note = f"Selected {len(keep)} of {len(report.conversations)} conversations ({_describe(sel)})."
    # The answer layer speaks of the whole case: keep what belongs to the selection and count again.
    topo = report.topology if isinstance(report.topology, Topology) else Topology()
    return replace(
        report,
        conversations=tuple(keep),
        packets=packets,
        groups=tuple(g for g in report.groups if g.first in ids),
        answers=tuple(a for a in report.answers if a.conversation in convs),
        footers=tuple(f for f in report.footers if f.packet in ids),
        crossings=tuple(c for c in report.crossings if c.conversation in convs),
        summary=case_summary(packets, len(keep), topo),
        notes=(*report.notes, note),
    )


def _describe(sel: Selection) -> str:
    parts = [f"flow {', '.join(sel.flows)}"] if sel.flows else []
    parts += [f"host {', '.join(sel.hosts)}"] if sel.hosts else []
    parts += [f"port {', '.join(map(str, sel.ports))}"] if sel.ports else []
    parts += [f"verdict {', '.join(sel.verdicts)}"] if sel.verdicts else []
    return "; ".join(parts)
