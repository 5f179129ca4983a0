"""Render a report as a terminal tree: conversation -> packet -> hops."""

from __future__ import annotations

from reportgen.model import Report, family_tool


def render_text(report: Report) -> str:
    """Return the plain-text explanation of a report."""
    out: list[str] = [report.title, "=" * len(report.title), ""]
    if report.notes:  # a simulation's assumptions, the case's own notes
        out += [f"note: {n}" for n in report.notes] + [""]
    by_id = {p.id: p for p in report.packets}
    listed: set[str] = set()
    for conv in report.conversations:
        out.append(f"{conv.id}  {conv.summary}")
        if conv.prediction is not None:
            out.append(f"    prediction: {conv.prediction.status} — {conv.prediction.summary}")
        for pid in conv.packets:
            listed.add(pid)
            out.extend(_packet(by_id[pid], "    "))
        out.append("")
    loose = [p for p in report.packets if p.id not in listed]
    if loose:
        out.append("packets without an IP conversation")
        for p in loose:
            out.extend(_packet(p, "    "))
        out.append("")
    unused = sum(u.count for u in report.unused)
    out.append(f"input: {report.lines_total} lines, {report.lines_used} used, {unused} unused")
    for u in report.unused[:20]:
        out.append(f"    {u.span}: {u.reason}")
    if len(report.unused) > 20:
        out.append(f"    ... {len(report.unused) - 20} more runs of unused lines (see the JSON report)")
    return "\n".join(out) + "\n"


def _packet(p, ind: str) -> list[str]:  # type: ignore[no-untyped-def]
    out = [f"{ind}├─ {p.id} {p.role}: {p.summary}  [{p.path}]"]
    for h in p.hops:
        r = h.event.record
        ifs = f"IN={r.in_dev or '-'} OUT={r.out_dev or '-'}"
        if r.physin or r.physout:
            ifs += f" PHYSIN={r.physin or '-'} PHYSOUT={r.physout or '-'}"
        ref = f"predicted, {r.ref}" if h.predicted else str(r.ref)
        out.append(f"{ind}│   {h.step:>2}. {h.event.hook.label:<32} {ifs}   ({ref})")
        if r.redacted:
            out.append(f"{ind}│         redacted in the input: {', '.join(r.redacted)}")
        for line in h.explanation:
            out.append(f"{ind}│         {line}")
    for n in p.nat:
        out.append(f"{ind}│   NAT {n.type} ({n.direction}, by {n.by}) at {n.hook}: {n.field} {n.before} → {n.after}")
        out.append(f"{ind}│         {n.evidence}")
        if n.rule:
            out.append(f"{ind}│         rule ({n.rule_ref}): {n.rule}")
        if n.conntrack:
            out.append(f"{ind}│         conntrack: {n.conntrack}")
    for s in p.skipped:
        out.append(f"{ind}│   skipped {family_tool(s.family)} {s.table} {s.hook}: {s.reason} ({s.explanation})")
    if p.verdict:
        out.append(f"{ind}└─ verdict: {p.verdict.code} — {p.verdict.explanation}")
        out.append(f"{ind}   evidence: {p.verdict.evidence}")
    return out
