"""The pipeline: gather a case's input, then correlate, explain, predict and word it into a Report.

The input layer (sources/) only gathers: it reads files, frames and parses lines, and accounts for
every line. Everything a renderer shows is computed here and in explain/, once; renderers only format.
"""

from __future__ import annotations

from dataclasses import replace

from reportgen.explain.answer import answer_case
from reportgen.explain.correlate import correlate, merge_sources
from reportgen.explain.crossing import crossings
from reportgen.explain.explain import explain
from reportgen.explain.topology import build_topology
from reportgen.model import Event, LineRef, Packet, Report, UnusedLine
from reportgen.sources.case import NO_HOP, CaseSpec, gather


def build_report(spec: CaseSpec) -> Report:
    """Read, correlate and explain one case."""
    g = gather(spec)
    topo = build_topology(g.snapshots)
    inferred = _bridges_from_events([ev for evs in g.events for ev in evs])
    topo = replace(topo, bridges={**{b: () for b in sorted(inferred)}, **topo.bridges})
    bridges = frozenset(topo.bridges)
    # Each source is correlated on its own (its lines are in kernel order), then packets seen by
    # several sources (LOG lines, ebtables lines, a trace monitor) are merged in hook order.
    tracks = merge_sources([correlate(evs, bridges) for evs in g.events])
    convs, packets = explain(tracks, topo)
    # Predicted versus observed: each conversation's first packet simulated on the snapshots.
    from reportgen.simulate.compare import predict_conversations

    convs = predict_conversations(convs, packets, g.snapshots, topo)
    groups, answers, footers, summary = answer_case(convs, packets, topo)
    used, unused = _account(g.counts, g.unused, packets, dict(g.appendix), g.joined)
    report = Report(
        name=spec.name, title=spec.title, description=spec.description, files=g.files, snapshots=g.snapshots,
        conversations=tuple(convs), packets=tuple(packets), lines_total=sum(g.counts.values()), lines_used=used,
        unused=tuple(unused), lines=tuple(g.appendix), notes=tuple(g.notes), topology=topo,
        groups=groups, answers=answers, footers=footers, summary=summary,
    )
    return replace(report, crossings=crossings(report, topo))


def _account(counts: dict[str, int], unused: list[UnusedLine], packets: list[Packet],
             texts: dict[LineRef, str], joined: dict[LineRef, int]) -> tuple[int, list[UnusedLine]]:
    """Count used lines from the lines hops refer to; list every other unlisted line as unused.

    The total is never used to derive "used": a line that became no hop and was never listed unused
    (a bug) shows up in the unused list instead of being counted as used.
    """
    used: dict[str, set[int]] = {name: set() for name in counts}
    for p in packets:
        for h in p.hops:
            for ref in h.event.refs:
                if ref.file in used:
                    used[ref.file].update(range(ref.line, joined.get(ref, ref.line) + 1))
    covered: dict[str, list[tuple[int, int]]] = {name: [(n, n) for n in lines] for name, lines in used.items()}
    for u in unused:
        covered.setdefault(u.ref.file, []).append((u.ref.line, max(u.last, u.ref.line)))
    out = list(unused)
    for name, total in counts.items():
        nxt = 1
        for start, end in sorted(covered[name]) + [(total + 1, total + 1)]:
            if start > nxt:
                ref = LineRef(name, nxt)
                out.append(UnusedLine(ref, NO_HOP, texts.get(ref, ""), start - 1 if start - 1 > nxt else 0))
            nxt = max(nxt, end + 1)
    order = {name: i for i, name in enumerate(counts)}
    out.sort(key=lambda u: (order.get(u.ref.file, len(order)), u.ref.line))
    return sum(len(lines) for lines in used.values()), out


def _bridges_from_events(events: list[Event]) -> frozenset[str]:
    """An interface that appears as IN/OUT together with PHYSIN/PHYSOUT is a bridge (br_netfilter)."""
    out = set()
    for ev in events:
        r = ev.record
        if r.physin and r.in_dev:
            out.add(r.in_dev)
        if r.physout and r.out_dev:
            out.add(r.out_dev)
    return frozenset(out)
