"""Render a report as Markdown to paste into a GitHub or GitLab issue.

Only what CommonMark would misread is escaped (a backslash before every ``(``, ``.`` and ``-``
makes text unreadable and breaks nothing it protects). Rules and ``file:line`` citations are code
spans whose fence is longer than any backtick run inside, so input can never close them. Diagrams
are Mermaid blocks (GitHub and GitLab draw them), long parts are folded in ``<details>``, and by
default the whole text fits one issue body; what had to be left out is said at the end.
"""

from __future__ import annotations

import re

from reportgen.model import Conversation, Packet, PacketGroup, Report, VerdictCode, id_order
from reportgen.netfilter import STAGES
from reportgen.render.digest import Alike, Digest, digest_of
from reportgen.render.options import Level, RenderOptions
from reportgen.render.view import (
    ALIKE_NOTE,
    alike_line,
    alike_rest,
    alike_totals,
    endpoint_text,
    group_flow_text,
    group_label,
    groups_of,
    outcome,
    plural,
    severity,
    stamp_text,
)

# Outcomes shown in bold: the packet did not get through, or the trace cannot say that it did.
BAD = frozenset(
    c.value
    for c in (
        VerdictCode.DROPPED_BY_RULE,
        VerdictCode.DROPPED_BY_POLICY,
        VerdictCode.REJECTED,
        VerdictCode.LAST_SEEN,
        VerdictCode.UNKNOWN,
    )
)

# Inline: the characters that start emphasis, code, links, HTML, entities, GFM strikethrough and
# table cells (CommonMark 0.31 sections 2.4 "Backslash escapes", 6.2-6.6; GFM 6.5 strikethrough).
# A ">" opens nothing inline (only a quote, at a line's start), and an underscore inside a word
# opens no emphasis (CommonMark 6.2, rule 2), so nf_tables stays as is.
_INLINE = re.compile(r"[\\`*\[\]<&|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# What opens a block when it starts a line: heading, quote, list, thematic break, setext underline.
_BLOCK_START = re.compile(r"^(\s*)(?:([#>+=-])|(\d{1,9})([.)]))")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _controls(text: str) -> str:
    # Control characters become their visible Unicode pictures (U+2400 block): never swallowed, never
    # a terminal escape when the Markdown is catted.
    return _CONTROL.sub(lambda m: chr(0x2400 + ord(m.group(0))) if m.group(0) != "\x7f" else "\u2421", text)


def md(text: object, line_start: bool = False) -> str:
    """Escape text for Markdown: only what CommonMark or GFM would interpret there.

    ``line_start``: the text begins a line, so a leading ``#``, ``-``, ``>`` or ``1.`` is escaped too.
    """
    s = _INLINE.sub(lambda m: "\\" + m.group(0), _controls(str(text))).replace("\n", " ")
    if not line_start:
        return s
    return _BLOCK_START.sub(
        lambda m: m.group(1) + ("\\" + m.group(2) if m.group(2) else m.group(3) + "\\" + m.group(4)), s, count=1
    )


def code(text: object) -> str:
    """Return text as a code span that no backtick inside can close (CommonMark 6.1)."""
    s = _controls(str(text)).replace("\n", " ").replace("|", "\u2223")  # a | would end a GFM table cell
    longest = max((len(r) for r in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _mermaid_label(text: str) -> str:
    # Inside ["..."] Mermaid reads entity codes (#quot; #lt; ...); a backtick would start its own
    # Markdown-string syntax, and <br> is the only markup we mean.
    s = _controls(text)
    for ch, ent in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"), ("`", "#96;"), ("\n", " ")):
        s = s.replace(ch, ent)
    return s


def hook_mermaid(p: Packet) -> str:
    """A Mermaid flowchart of the hooks a packet visited, in order, from where it came to its verdict."""
    order: dict[str, list[str]] = {}
    # A hop whose line proves only "one of these hooks" sits at its first candidate's stage; its box
    # names every candidate, as the hop's own label does (HookRef.label), never the first alone.
    unplaced: dict[str, tuple[str, ...]] = {}
    for h in p.hops:
        order.setdefault(h.stage, []).append(f"{h.step}. {h.event.hook.table or '?'}")
        if not h.event.hook.placed:
            unplaced[h.stage] = h.event.hook.candidates
    rec = p.hops[0].event.record if p.hops else None
    start = (
        "host process"
        if p.path == "local-out"
        else f"in: {rec.physin or rec.in_dev}"
        if rec and (rec.physin or rec.in_dev)
        else "in"
    )
    end = f"{outcome(p)}: {p.verdict.where}" if p.verdict else outcome(p)
    lines = ["```mermaid", "flowchart LR", f'  start(["{_mermaid_label(start)}"])']
    prev = "start"
    for n, (stage, tables) in enumerate(order.items()):
        title = STAGES[stage].title if stage in STAGES else stage
        if stage in unplaced and stage in STAGES:
            title = title.replace(STAGES[stage].hook, " or ".join(unplaced[stage]), 1)
        lines.append(f'  s{n}["{_mermaid_label(title)}<br>{_mermaid_label(", ".join(tables))}"]')
        lines.append(f"  {prev} --> s{n}")
        prev = f"s{n}"
    lines.append(f'  finish(["{_mermaid_label(end)}"])')
    unsure = outcome(p) in (VerdictCode.LAST_SEEN.value, VerdictCode.UNKNOWN.value)
    lines.append(f"  {prev} {'-.->' if unsure else '-->'} finish")
    bad = outcome(p) in BAD
    lines.append(f"  style finish fill:{'#fdedec' if bad else '#eafaf1'}")
    lines.append("```")
    return "\n".join(lines)


def topology_mermaid(report: Report) -> str:
    """A Mermaid flowchart of the host with each conversation's request path."""
    ids: dict[str, str] = {}
    labels: dict[str, str] = {}
    edges: dict[tuple[str, str], list[str]] = {}
    for c in report.crossings:
        conv_id, role, path = c.conversation, c.role, c.nodes
        for key, label in path:
            labels.setdefault(key, label)
        for (a, _), (b, _) in zip(path, path[1:], strict=False):
            edges.setdefault((a, b), []).append(f"{conv_id} {role}")
    if not edges:
        return ""
    for key in sorted(labels):
        ids[key] = f"n{len(ids)}"
    lines = ["```mermaid", "flowchart LR"]
    lines += [f'  {ids[k]}["{_mermaid_label(labels[k]).replace(chr(10), "<br>")}"]' for k in sorted(labels)]
    for (a, b), who in sorted(edges.items()):
        names = sorted(set(who), key=lambda w: (id_order(w.split()[0]), w))
        text = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        lines.append(f'  {ids[a]} -->|"{_mermaid_label(text)}"| {ids[b]}')
    lines.append("```")
    return "\n".join(lines)


class _Budget:
    """Parts of the document and their size as joined, against the character limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0

    def fits(self, text: str, share: float = 1.0) -> bool:
        return self.size + len(text) + 1 <= self.limit * share

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text) + 1


def render_markdown(case: Report | Digest, opts: RenderOptions | None = None) -> str:
    """Return the report as Markdown at the options' level, within the options' character budget.

    The worst conversations come first; when the budget runs short, a conversation is told at the
    minimal level, then only in the summary table, and the end says what was folded.
    """
    case = case if isinstance(case, Digest) else digest_of(case)
    report = case.report
    opts = opts or RenderOptions()
    by_id = {p.id: p for p in report.packets}
    groups = groups_of(report)
    alike_of = case.folded
    # The digest's conversations are the first of each behaviour: the others are told by them.
    convs = sorted(report.conversations, key=lambda c: (_worst(c, by_id), id_order(c.id)))
    tail = _tail(report)
    # Room for the folding note and the input account, which always close the document.
    doc = _Budget(opts.markdown_limit - len(tail) - 600)
    head = _head(case)
    if not doc.fits(head, 0.2):
        head = head[: int(doc.limit * 0.2)].rsplit("\n", 1)[0] + "\n\n(The description is cut here.)\n"
    doc.add(head)
    folded: list[str] = []
    rows = [_row(c, g, by_id) for c in convs for g in groups.get(c.id, [])]
    rows += [_row(None, g, by_id) for g in groups.get("-", [])]
    shown = []
    table = "## Conversations\n\n| Conversation | Packets | Outcome |\n|---|---|---|"
    size = len(table)
    for r in rows:
        if doc.size + size + len(r) + 1 > doc.limit * 0.45:
            break
        shown.append(r)
        size += len(r) + 1
    if len(shown) < len(rows):
        folded.append(f"{len(rows) - len(shown)} of {len(rows)} summary rows")
    doc.add("\n".join([table, *shown]) + "\n")
    topo = topology_mermaid(report)
    if topo:
        block = "<details><summary>Topology diagram</summary>\n\n" + topo + "\n\n</details>\n"
        if doc.fits(block, 0.6):
            doc.add(block)
        else:
            folded.append("the topology diagram")
    minimal = omitted = 0
    for c in convs:
        alike, unlisted = _alike(c, alike_of.get(c.id), int(doc.limit * 0.1))
        full = _conversation(c, groups.get(c.id, []), by_id, opts.level) + alike
        short = _conversation(c, groups.get(c.id, []), by_id, Level.MINIMAL) + alike
        if doc.fits(full):
            doc.add(full)
        elif doc.fits(short):
            doc.add(short)
            minimal += 1
        else:
            omitted += 1
            continue
        if unlisted:
            folded.append(f"{unlisted} conversations like {c.id} not listed")
    if minimal:
        folded.append(f"{plural(minimal, 'conversation')} told at level minimal")
    if omitted:
        folded.append(f"{plural(omitted, 'conversation')} not told beyond the summary table")
    loose = groups.get("-", [])
    if loose:
        section = _loose(loose, by_id, opts.level)
        if doc.fits(section):
            doc.add(section)
        else:
            folded.append(f"{plural(len(loose), 'packet group')} without a conversation")
    if folded:
        doc.add(
            f"> **Folded to fit one issue body ({opts.markdown_limit:,} characters):** "
            f"{md('; '.join(folded))}. report.json and report.jsonl have everything.\n"
        )
    doc.add(tail)
    return "\n".join(doc.parts)


def _worst(c: Conversation, by_id: dict[str, Packet]) -> int:
    return min((severity(outcome(by_id[i])) for i in c.packets if i in by_id), default=99)


def _head(case: Digest) -> str:
    report = case.report
    out = [f"# {md(report.title)}", ""]
    if report.summary is not None:
        out += [f"**{md(report.summary.sentence)}**", ""]
    for a in case.answers:
        out.append(f"- {code(a.conversation)} {md(a.sentence)}")
    if case.answers:
        out.append("")
    if report.description:
        out += [md(para, line_start=True) for para in report.description.splitlines() if para.strip()]
        out.append("")
    for note in report.notes:
        out += [f"> {md(note)}", ""]
    return "\n".join(out)


def _row(c: Conversation | None, g: PacketGroup, by_id: dict[str, Packet]) -> str:
    p = by_id[g.first]
    word = outcome(p)
    where = f" — {md(p.verdict.where)}" if p.verdict and p.verdict.where else ""
    conv = f"{c.id} {md(c.summary)}" if c else "—"
    verdict = f"**{word}**" if word in BAD else word
    return f"| {conv} | {md(group_label(g))} {p.role}: {md(group_flow_text(by_id, g))} | {verdict}{where} |"


def _conversation(c: Conversation, groups: list[PacketGroup], by_id: dict[str, Packet], level: Level) -> str:
    out = [f"## {c.id}: {md(c.summary)}", ""]
    if c.prediction is not None:
        out += [f"Prediction from the snapshots: **{c.prediction.status}**. {md(c.prediction.summary)}", ""]
    for g in groups:
        out.append(_group(g, by_id, level))
    return "\n".join(out)


def _alike(owner: Conversation, alike: Alike | None, room: int) -> tuple[str, int]:
    """The conversations told by ``owner`` in a <details>: their exact counts, then the digest's rows,
    one line each, as many first ones as fit ``room`` characters, what was left out and the last ones;
    and how many were left out."""
    if alike is None:
        return "", 0
    fits = 0
    size = sum(len(md(alike_line(c))) + 3 for c in alike.last)
    for c in alike.first:
        size += len(md(alike_line(c))) + 3
        if size > room:
            break
        fits += 1
    head, tail = alike.listed(fits)
    rest = alike_rest(owner.id, alike, head, tail)
    lines = [f"- {md(line)}" for line in [*map(alike_line, head), *([rest] if rest else []), *map(alike_line, tail)]]
    summary = f"{plural(alike.conversations, 'more conversation')} {ALIKE_NOTE.format(owner=owner.id)}"
    block = ["", f"<details><summary>{md(summary)}</summary>", "", f"{md(alike_totals(owner.id, alike))}.", ""]
    return "\n".join([*block, *lines, "", "</details>", ""]), alike.conversations - len(head) - len(tail)


def _loose(groups: list[PacketGroup], by_id: dict[str, Packet], level: Level) -> str:
    return "\n".join(["## Packets without an IP conversation", "", *(_group(g, by_id, level) for g in groups)])


def _group(g: PacketGroup, by_id: dict[str, Packet], level: Level) -> str:
    p = by_id[g.first]
    out = [f"### {md(group_label(g))} {p.role}: {md(group_flow_text(by_id, g))}", ""]
    v = p.verdict
    word = outcome(p)
    verdict = f"**Verdict: {word}.** {md(v.explanation) if v else ''}"
    if v and v.rule_ref and v.rule:
        verdict += f" Rule {code(v.rule_ref)}: {code(v.rule)}"
    if v:
        verdict += f" Evidence: {md(v.evidence)}."
    out += [verdict, ""]
    if level == Level.MINIMAL:
        return "\n".join(out)
    out += [hook_mermaid(p), ""]
    hops = []
    for h in p.hops:
        r = h.event.record
        ifs = f"IN={r.in_dev or '-'} OUT={r.out_dev or '-'}"
        if r.physin or r.physout:
            ifs += f" PHYSIN={r.physin or '-'} PHYSOUT={r.physout or '-'}"
        stamp = f" at {stamp_text(r.stamp)}" if r.stamp is not None else ""
        ref = f"predicted, {r.ref}" if h.predicted else str(r.ref)
        hops.append(f"{h.step}. {code(h.event.hook.label)} {code(ifs)} ({code(ref)}{stamp})")
        if r.redacted:
            hops.append(f"   redacted in the input: {', '.join(r.redacted)}")
        if level == Level.DETAILED:
            hops += [f"   {md(line, line_start=True)}" for line in h.explanation]
    for n in p.nat:
        before, after = code(endpoint_text(p, n.before)), code(endpoint_text(p, n.after))
        nat = f"- NAT {n.type} ({n.direction}, by {n.by}) at {md(n.hook)}: {n.field} {before} → {after}"
        if level == Level.DETAILED and n.rule and n.rule_ref:
            nat += f"; rule {code(n.rule_ref)}: {code(n.rule)}"
        hops.append(nat)
    if level == Level.DETAILED:
        for s in p.skipped:
            ref = f" ({code(s.rule_ref)})" if s.rule_ref else ""
            hops.append(f"- skipped {code(f'{s.family} {s.table} {s.hook}')}: {s.reason} — {md(s.explanation)}{ref}")
    out += [
        f"<details><summary>{plural(len(p.hops), 'hop')}, {plural(len(p.nat), 'address translation')}"
        # As the HTML says: a group's body is its first member's (its hops cite that one's lines).
        + (f" ({p.id}'s)" if g.count > 1 else "")
        + "</summary>",
        "",
        *hops,
        "",
        "</details>",
        "",
    ]
    return "\n".join(out)


def _tail(report: Report) -> str:
    unused = sum(u.count for u in report.unused)
    return f"Input: {report.lines_total} trace lines, {report.lines_used} used, {unused} unused.\n"
