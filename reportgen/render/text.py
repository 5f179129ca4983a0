"""Render a report as a terminal tree: case summary, then conversation -> folded packet group -> hops.

Three levels (``--level``, after ovn-trace's --minimal/--summary/--detailed): ``minimal`` gives one
line per conversation and per group of packets that behaved alike, and is stable enough to be the
golden format of the tests; ``summary`` adds one line per hop with its kernel timestamp, NAT and
the verdict's reason; ``detailed`` adds every explanation line, the skipped hooks and the rules.
"""

from __future__ import annotations

import textwrap

from reportgen.model import Footer, Packet, PacketGroup, Report, VerdictCode, family_name
from reportgen.render.digest import FIRST_ROWS, Digest, digest_of
from reportgen.render.options import Level, RenderOptions
from reportgen.render.safe_text import terminal_safe
from reportgen.render.view import (
    ALIKE_NOTE,
    alike_line,
    alike_rest,
    alike_totals,
    endpoint_text,
    final_packet_of,
    group_flow_text,
    group_label,
    groups_of,
    outcome,
    plural,
    stamp_text,
)

# ANSI SGR colours (ECMA-48): red for packets that did not get through, green for those that did.
_COLOUR = {
    **{c.value: "31" for c in (VerdictCode.DROPPED_BY_RULE, VerdictCode.DROPPED_BY_POLICY, VerdictCode.REJECTED)},
    **{c.value: "33" for c in (VerdictCode.LAST_SEEN, VerdictCode.UNKNOWN)},
    **{c.value: "32" for c in (VerdictCode.FORWARDED_OUT, VerdictCode.DELIVERED_TO_PORT, VerdictCode.DELIVERED_LOCAL)},
    "bold": "1",
    "dim": "2",
}


class _Out:
    """Lines fitted to the width, coloured only when asked."""

    def __init__(self, opts: RenderOptions) -> None:
        self.opts = opts
        self.lines: list[str] = []

    def paint(self, text: str, what: str) -> str:
        code = _COLOUR.get(what)
        return f"\x1b[{code}m{text}\x1b[0m" if self.opts.colour and code else text

    def add(self, first: str, rest: str, text: str, colour: str = "") -> None:
        """Add text wrapped to the width: ``first`` before its first line, ``rest`` before the others."""
        width = max(40, self.opts.width)
        # Input text is escaped here, before any colour code of ours is added (safe_text.terminal_safe).
        wrapped = textwrap.wrap(
            terminal_safe(text),
            width=width,
            initial_indent=first,
            subsequent_indent=rest,
            break_long_words=False,
            break_on_hyphens=False,
        ) or [first.rstrip()]
        for w in wrapped:
            if colour:
                indent = len(w) - len(w.lstrip(" │├└─"))
                w = w[:indent] + self.paint(w[indent:], colour)
            self.lines.append(w)


def render_text(case: Report | Digest, opts: RenderOptions | None = None) -> str:
    """Return the plain-text explanation of a report at the options' level."""
    case = case if isinstance(case, Digest) else digest_of(case)
    report = case.report
    opts = opts or RenderOptions()
    o = _Out(opts)
    o.add("", "", report.title, "bold")
    o.lines += ["=" * min(len(report.title), opts.width), ""]
    _case_summary(report, o)
    by_id = {p.id: p for p in report.packets}
    answers = {a.conversation: a for a in report.answers}
    footers = {f.packet: f for f in report.footers}
    groups = groups_of(report)
    folded = case.folded
    for conv in report.conversations:  # the first conversation of each behaviour
        o.add("", "    ", f"{conv.id}  {conv.summary}", "bold")
        answer = answers.get(conv.id)
        if answer is not None:
            o.add("    ", "      ", f"answer: {answer.sentence}", answer.worst.value)
        if conv.prediction is not None:
            o.add("    ", "      ", f"prediction: {conv.prediction.status} — {conv.prediction.summary}")
        if answer is not None and opts.level != Level.MINIMAL:
            for a in answer.assumptions:
                o.add("    ", "      ", f"assumes: {a}")
        for g in groups.get(conv.id, []):
            _group(by_id, footers, g, o, "    ")
        alike = folded.get(conv.id)
        if alike is not None:
            o.add(
                "    ",
                "      ",
                f"+ {plural(alike.conversations, 'more conversation')} " + ALIKE_NOTE.format(owner=conv.id) + ":",
            )
            o.add("      ", "          ", alike_totals(conv.id, alike))
            head, tail = alike.listed(FIRST_ROWS)
            rest = alike_rest(conv.id, alike, head, tail)
            for line in [*map(alike_line, head), *([rest] if rest else []), *map(alike_line, tail)]:
                o.add("      ", "          ", line)
        o.lines.append("")
    if groups.get("-"):
        o.lines.append("packets without an IP conversation")
        for g in groups["-"]:
            _group(by_id, footers, g, o, "    ")
        o.lines.append("")
    unused = sum(u.count for u in report.unused)
    o.lines.append(f"input: {report.lines_total} lines, {report.lines_used} used, {unused} unused")
    if opts.level != Level.MINIMAL:
        for u in report.unused[:20]:
            o.add("    ", "        ", f"{u.span}: {u.reason}")
        if len(report.unused) > 20:
            o.lines.append(f"    ... {len(report.unused) - 20} more runs of unused lines (see the JSON report)")
    return "\n".join(o.lines) + "\n"


def _case_summary(report: Report, o: _Out) -> None:
    if report.summary is not None:
        o.add("", "  ", report.summary.sentence)
    if o.opts.level == Level.DETAILED:
        if report.description:
            for para in report.description.splitlines():
                o.add("", "", para)
        for note in report.notes:
            o.add("", "", note)
    o.lines.append("")


def _group(by_id: dict[str, Packet], footers: dict[str, Footer], g: PacketGroup, o: _Out, ind: str) -> None:
    p = by_id[g.first]
    word = outcome(p)
    where = f" — {p.verdict.where}" if p.verdict and p.verdict.where else ""
    head = f"{group_label(g)} {p.role} [{p.path}]: {group_flow_text(by_id, g)}"
    o.add(f"{ind}├─ ", f"{ind}│     ", head)
    o.add(f"{ind}│  ", f"{ind}│     ", f"{word}{where}", word)
    if o.opts.level == Level.MINIMAL:
        return
    for h in p.hops:
        rec = h.event.record
        ifs = f"IN={rec.in_dev or '-'} OUT={rec.out_dev or '-'}"
        if rec.physin or rec.physout:
            ifs += f" PHYSIN={rec.physin or '-'} PHYSOUT={rec.physout or '-'}"
        stamp = stamp_text(rec.stamp)
        ref = f"predicted, {rec.ref}" if h.predicted else str(rec.ref)
        o.add(
            f"{ind}│   {h.step:>2}. ",
            f"{ind}│         ",
            f"{stamp + '  ' if stamp else ''}{h.event.hook.label}  {ifs}  ({ref})",
        )
        if rec.redacted:
            o.add(f"{ind}│         ", f"{ind}│         ", f"redacted in the input: {', '.join(rec.redacted)}")
        if o.opts.level == Level.DETAILED:
            for line in h.explanation:
                o.add(f"{ind}│         ", f"{ind}│         ", line)
    for n in p.nat:
        o.add(
            f"{ind}│   ",
            f"{ind}│         ",
            f"NAT {n.type} ({n.direction}, by {n.by}) at {n.hook}: {n.field} {endpoint_text(p, n.before)} → "
            f"{endpoint_text(p, n.after)}",
        )
        if o.opts.level == Level.DETAILED:
            o.add(f"{ind}│         ", f"{ind}│         ", n.evidence)
            if n.rule:
                o.add(f"{ind}│         ", f"{ind}│         ", f"rule ({n.rule_ref}): {n.rule}")
            if n.conntrack:
                o.add(f"{ind}│         ", f"{ind}│         ", f"conntrack: {n.conntrack}")
    if o.opts.level == Level.DETAILED:
        for s in p.skipped:
            o.add(
                f"{ind}│   ",
                f"{ind}│         ",
                f"skipped {family_name(s.family)} {s.table} {s.hook}: {s.reason} ({s.explanation})",
            )
    if p.verdict:
        rule = f" [{p.verdict.rule_ref}: {p.verdict.rule}]" if p.verdict.rule_ref and p.verdict.rule else ""
        o.add(f"{ind}└─ ", f"{ind}     ", f"verdict: {outcome(p)} — {p.verdict.explanation}{rule}")
        o.add(f"{ind}   ", f"{ind}     ", f"evidence: {p.verdict.evidence}")
        f = footers.get(p.id)
        if f is not None:
            o.add(f"{ind}   ", f"{ind}     ", f"final packet{final_packet_of(footers, g)}: {f.final}")
