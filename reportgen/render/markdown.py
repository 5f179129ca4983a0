"""Render a report as Markdown, escaping every input string."""

from __future__ import annotations

import re

from reportgen.model import Report

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def md(text: object) -> str:
    """Escape text for Markdown (inline): backslash every character Markdown could interpret."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def render_markdown(report: Report) -> str:
    """Return the report as Markdown: summary table, then each packet's hops."""
    out = [f"# {md(report.title)}", ""]
    if report.description:
        out += [md(report.description), ""]
    out += ["| Packet | Role | Path | Verdict |", "|---|---|---|---|"]
    for p in report.packets:
        out.append(f"| {md(p.id)} {md(p.summary)} | {p.role} | {p.path} | {md(p.verdict.code if p.verdict else '')}: "
                   f"{md(p.verdict.where if p.verdict else '')} |")
    for c in report.conversations:
        if c.prediction is not None:
            out.append(f"- {md(c.id)} prediction {c.prediction.status}: {md(c.prediction.summary)}")
    for p in report.packets:
        out += ["", f"## {md(p.id)}: {md(p.summary)}", "", f"Path: {p.path}. Verdict: "
                f"{md(p.verdict.explanation if p.verdict else '')}"
                + (f" Evidence: {md(p.verdict.evidence)}." if p.verdict else ""), ""]
        for h in p.hops:
            r = h.event.record
            ref = f"predicted, {r.ref}" if h.predicted else r.ref
            out.append(f"{h.step}. `{md(h.event.hook.label)}` IN={md(r.in_dev or '-')} OUT={md(r.out_dev or '-')} "
                       f"({md(ref)}): {md(' '.join(h.explanation))}")
            if r.redacted:
                out.append(f"   (redacted in the input: {', '.join(r.redacted)})")
        for n in p.nat:
            out.append(f"- NAT {n.type} ({n.direction}) at {md(n.hook)}: {md(n.before)} → {md(n.after)}")
        for s in p.skipped:
            out.append(f"- skipped {md(s.family)} {md(s.table)} {md(s.hook)}: {s.reason}")
    unused = sum(u.count for u in report.unused)
    out += ["", f"Input: {report.lines_total} lines, {report.lines_used} used, {unused} unused.", ""]
    return "\n".join(out)
