"""Fold identical packets: the packets of one conversation that behave alike form one group.

Two packets behave alike when they are in the same conversation and direction and take the same
hops (stage, family, table, chain), skip the same hooks for the same reasons, are rewritten alike
and meet the same verdict. TCP flags, IP ids and stamps may differ: a group of four retransmitted
SYNs, or of 300 ACKs of one download, is one behaviour told once, with a count, its packet ids, its
line span and its time span. Renderers fold by these groups; nothing here re-derives a fact.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

from reportgen.model import LineRef, Packet, PacketGroup


def shape(p: Packet) -> Hashable:
    """A packet's behaviour without its addresses and ports: hooks, skips, kinds of NAT, verdict, and
    which fields a cut-off record lacks.

    Conversations whose groups have the same shapes behave alike (three hundred downloads through
    one MASQUERADE rule differ only in their ports).
    """
    return (
        p.role,
        p.path,
        # A record cut off (LogRecord.missing) is told by its own note of what is unknown: it is not
        # folded under a packet whose records are whole.
        tuple(
            (h.stage, h.event.hook.family, h.event.hook.table, h.event.hook.chain, h.event.record.missing)
            for h in p.hops
        ),
        tuple((s.stage, s.table, s.reason) for s in p.skipped),
        # The rule that rewrote or decided, by its text: a trace source (nft monitor trace,
        # xtables-monitor, legacy TRACE) prints the rule again for every packet, on a line of its own,
        # so its line reference would make every packet a behaviour of its own.
        tuple((n.type, n.direction, n.by, n.field, n.rule) for n in p.nat),
        None if p.verdict is None else (p.verdict.code, p.verdict.where, p.verdict.rule),
    )


def behaviour(p: Packet, its_shape: Hashable | None = None) -> Hashable:
    """Return what must be equal for two packets of a conversation to be told once: the shape
    (``its_shape`` when the caller has it), the protocol and the addresses NAT rewrote."""
    its_shape = shape(p) if its_shape is None else its_shape
    # A conversation has one protocol; the packets of no conversation (an address masked, a frame
    # without one) do not, and a group's header and body tell one protocol (render.view
    # group_flow_text): a TCP segment and a UDP datagram dropped alike are two groups.
    protos = tuple(h.event.record.proto for h in p.hops)
    return (p.conversation, protos, its_shape, tuple((str(n.before), str(n.after)) for n in p.nat))


def group_packets(
    packets: Iterable[Packet],
    shapes: dict[Hashable, str] | None = None,
    start: int = 1,
    spans: Mapping[str, Mapping[int, int]] | None = None,
) -> tuple[PacketGroup, ...]:
    """Group packets by behaviour, in the order each behaviour first appears.

    ``shapes`` maps each shape seen so far in the case to its behaviour id; it is extended here, so
    a caller that groups conversation by conversation passes the same dict every time. Groups are
    numbered from ``start`` ("g1"... by default; a caller numbering case-wide passes its next number).
    ``spans`` (file -> first line -> last line of a record wrapped over several lines) makes a
    group's lines name a wrapped record's every line, as the input account counts them used.
    """
    shapes = {} if shapes is None else shapes
    members: dict[Hashable, list[Packet]] = {}
    first_shape: dict[Hashable, Hashable] = {}  # each behaviour's shape
    for p in packets:
        its_shape = shape(p)
        key = behaviour(p, its_shape)
        members.setdefault(key, []).append(p)
        first_shape.setdefault(key, its_shape)
    groups = []
    for n, (key, ps) in enumerate(members.items(), start=start):
        # Every line of every hop (Event.refs: rule and conntrack lines too), distinct, per file by
        # line number: sorting a file's numbers is cheaper than sorting (file, line) pairs, and no
        # LineRef is hashed or ordered (its dataclass methods were most of grouping's time on the
        # nft bench input); read from the event without building Event.refs. The stamps' least and
        # greatest are kept in the same pass, compared as min() and max() compare them.
        by_file: dict[str, dict[int, LineRef]] = {}
        first_stamp: float | None = None
        last_stamp: float | None = None
        for p in ps:
            for h in p.hops:
                ev = h.event
                r = ev.record
                stamp = r.stamp
                if stamp is not None:
                    if first_stamp is None or stamp < first_stamp:
                        first_stamp = stamp
                    if last_stamp is None or stamp > last_stamp:
                        last_stamp = stamp
                own = r.ref
                lines = by_file.get(own.file)
                if lines is None:
                    lines = by_file[own.file] = {}
                lines[own.line] = own
                for hit in ev.rules:
                    ref = hit.ref
                    if ref.file != own.file:
                        by_file.setdefault(ref.file, {})[ref.line] = ref
                    else:
                        lines[ref.line] = ref
                for x in ev.extra:
                    if x.file != own.file:
                        by_file.setdefault(x.file, {})[x.line] = x
                    else:
                        lines[x.line] = x
        groups.append(
            PacketGroup(
                id=f"g{n}",
                conversation=ps[0].conversation,
                first=ps[0].id,
                packets=tuple(p.id for p in ps),
                first_stamp=first_stamp,
                last_stamp=last_stamp,
                lines=_spans(by_file, spans or {}),
                behaviour=shapes.setdefault(first_shape[key], f"b{len(shapes) + 1}"),
            )
        )
    return tuple(groups)


def _spans(
    by_file: dict[str, dict[int, LineRef]], wrapped: Mapping[str, Mapping[int, int]]
) -> tuple[tuple[LineRef, int], ...]:
    """Compress line references (per file, by line number) into runs (first line, last line number)
    per file, in (file, line) order; a wrapped record's reference stands for its lines up to its last."""
    out: list[tuple[LineRef, int]] = []
    for file in sorted(by_file):
        lines = by_file[file]
        spans = wrapped.get(file)
        for line in sorted(lines):
            ref = lines[line]
            last = spans.get(line, line) if spans else line
            if out and out[-1][0].file == file and out[-1][1] + 1 >= line:
                out[-1] = (out[-1][0], max(out[-1][1], last))
            else:
                out.append((ref, last))
    return tuple(out)
