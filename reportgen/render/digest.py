"""What the HTML, PDF, text and Markdown documents tell of a case, kept as the case is read.

The documents tell a case by behaviour: a conversation whose packet groups behave like an earlier
one's (the same protocol and the same case-wide behaviour ids, explain.groups) is told by that one and
listed as a row (its id, flow, packet count, outcomes, prediction, answer). So a reader needs in full
only the first conversation of each behaviour and the packets of no conversation; everything else
is a row. ``DigestSink`` is a pipeline sink that keeps exactly that while the case streams
(pipeline.stream_case): memory is the distinct behaviours and one small row per conversation, not
the packets. ``digest_of`` makes the same Digest from a whole Report, so both readings render
byte-identically.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

from reportgen.model import (
    NO_CONVERSATION,
    Answer,
    Conversation,
    ConversationResult,
    Crossing,
    Endpoint,
    LineRef,
    Packet,
    PacketGroup,
    Prediction,
    Report,
    VerdictCode,
    id_order,
)
from reportgen.render.view import outcome, severity

_T = TypeVar("_T")

# A case of at most this many trace lines lists every line in the HTML appendix, each linked to the
# packet that used it (html.Budget.appendix_lines). While a case has used no more distinct lines than
# this, the sink keeps which packet used each; past it the case cannot be that small.
SMALL_CASE_LINES = 5000


@dataclass(frozen=True, slots=True)
class Row:
    """A conversation as one line of a list: what the documents say of one they do not tell in full."""

    id: str
    summary: str
    count: int  # packets
    outcomes: tuple[tuple[str, int], ...]  # packets per outcome, worst first
    prediction: Prediction | None


@dataclass(frozen=True)
class Digest:
    """A case as the documents tell it.

    ``report`` is the case head with the parts of the conversations told in full (the first of each
    behaviour, in id order) and of the packets of no conversation; its crossings are every
    conversation's (the topology draws them all). ``rows`` has every conversation, in id order.
    """

    report: Report
    rows: dict[str, Row]
    folded: dict[str, list[Row]]  # conversation told -> the later ones that behave like it, in id order
    # Every conversation's answer in id order, or as many first ones as the Markdown head can show
    # (DigestSink's answer_room).
    answers: tuple[Answer, ...]
    conversations: int
    packets: int
    hits: frozenset[tuple[str, int]]  # the (snapshot, line) pairs any packet's explanation cites
    used_by: dict[LineRef, str] | None  # a small case's trace lines -> the packet that used each
    conversation_of: dict[str, str] | None  # and that packet's conversation


def outcome_counts(packets: tuple[Packet, ...]) -> tuple[tuple[str, int], ...]:
    """Count packets per outcome, worst first."""
    counts: dict[str, int] = {}
    for p in packets:
        word = outcome(p)
        counts[word] = counts.get(word, 0) + 1
    return tuple(sorted(counts.items(), key=lambda kv: (severity(kv[0]), kv[0])))


class DigestSink:
    """A pipeline sink keeping what the documents tell (see the module docstring).

    ``answer_room``: keep the answers of the first conversations (by id) whose sentences hold at
    least this many characters, all when None. The Markdown head lists every answer and is cut at a
    fifth of the document's limit (markdown.render_markdown), so that limit is room enough there.
    """

    def __init__(self, answer_room: int | None = None) -> None:
        self.answer_room = answer_room
        self.restart()

    def restart(self) -> None:
        """Forget every result (a stale pass is read again: pipeline.stream_case)."""
        self.leads: dict[tuple[str, tuple[str, ...]], ConversationResult] = {}
        self.rows: list[tuple[tuple[str, tuple[str, ...]], Row]] = []
        self.loose: ConversationResult | None = None
        self.crossings: list[Crossing] = []
        self.nodes: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}
        self.packets = 0
        self.hits: set[tuple[str, int]] = set()
        self.used: dict[LineRef, tuple[str, str]] | None = {}
        # Rows of many conversations share their outcome counts and behaviour keys: one tuple each.
        self.shared: dict[object, object] = {}
        self.answers: dict[str, Answer] = {}
        self.answer_sizes: list[tuple[int, int, str]] = []  # a heap of (-number, sentence length, id)
        self.answer_size = 0

    def __call__(self, result: ConversationResult) -> None:
        c = result.conversation
        self.packets += len(result.packets)
        for p in result.packets:
            refs = [n.rule_ref for n in p.nat] + [k.rule_ref for k in p.skipped]
            refs.append(p.verdict.rule_ref if p.verdict else None)
            refs += [hit.snapshot_ref for h in p.hops for hit in h.event.rules]
            self.hits.update((ref.file, ref.line) for ref in refs if ref is not None)
        self._used(result)
        # Groups in first-seen order, as a whole report lists them (explain.groups numbers them so).
        result = replace(result, groups=tuple(sorted(result.groups, key=lambda g: id_order(g.first))))
        if c.id == NO_CONVERSATION:
            self.loose = result
            return
        # A path shared by many conversations is one tuple in memory (the topology draws it once).
        self.crossings += [replace(x, nodes=self.nodes.setdefault(x.nodes, x.nodes)) for x in result.crossings]
        key = self._shared((c.proto, tuple(g.behaviour for g in result.groups)))
        row = Row(c.id, c.summary, len(result.packets), self._shared(outcome_counts(result.packets)), c.prediction)
        self.rows.append((key, row))
        self._answer(result.answer)
        lead = self.leads.get(key)
        # Results come in completion order; the conversation told is the first of its behaviour by id.
        if lead is None or id_order(c.id) < id_order(lead.conversation.id):
            self.leads[key] = result

    def _shared(self, value: _T) -> _T:
        return self.shared.setdefault(value, value)  # type: ignore[return-value]

    def _answer(self, a: Answer) -> None:
        self.answers[a.conversation] = a
        if self.answer_room is None:
            return
        # A sentence's length is at most its line's in the Markdown head (escaping only adds).
        heapq.heappush(self.answer_sizes, (-id_order(a.conversation), len(a.sentence), a.conversation))
        self.answer_size += len(a.sentence)
        while self.answer_sizes and self.answer_size - self.answer_sizes[0][1] >= self.answer_room:
            _, size, cid = heapq.heappop(self.answer_sizes)
            self.answer_size -= size
            del self.answers[cid]

    def _used(self, result: ConversationResult) -> None:
        """Which packet used each trace line, while the case may still be small enough to list them all."""
        if self.used is None:
            return
        for p in result.packets:
            for h in p.hops:
                for ref in h.event.refs:
                    # A whole report maps a line to the last packet (by id) that used it.
                    had = self.used.get(ref)
                    if had is None or id_order(had[0]) < id_order(p.id):
                        self.used[ref] = (p.id, result.conversation.id)
        # Lines of a small case, and the snapshot lines its predicted hops cite: a generous bound.
        if len(self.used) > 4 * SMALL_CASE_LINES:
            self.used = None

    def digest(self, head: Report, answered: set[str] | None = None) -> Digest:
        """The Digest of the case whose head (pipeline.stream_case's return) is ``head``; ``answered``:
        the conversations that have an answer, when not all of them do (digest_of)."""
        leads = sorted(self.leads.values(), key=lambda r: id_order(r.conversation.id))
        lead_of = {key: r.conversation.id for key, r in self.leads.items()}
        rows: dict[str, Row] = {}
        folded: dict[str, list[Row]] = {}
        for key, row in sorted(self.rows, key=lambda kr: id_order(kr[1].id)):
            rows[row.id] = row
            if lead_of[key] != row.id:
                folded.setdefault(lead_of[key], []).append(row)
        told = [*leads, *([self.loose] if self.loose is not None else [])]
        report = replace(
            head,
            conversations=tuple(r.conversation for r in leads),
            packets=tuple(sorted((p for r in told for p in r.packets), key=lambda p: id_order(p.id))),
            groups=tuple(sorted((g for r in told for g in r.groups), key=lambda g: id_order(g.first))),
            answers=tuple(r.answer for r in leads if answered is None or r.conversation.id in answered),
            footers=tuple(sorted((f for r in told for f in r.footers), key=lambda f: id_order(f.packet))),
            # sorted() is stable: a conversation's crossings keep their order.
            crossings=tuple(sorted(self.crossings, key=lambda x: id_order(x.conversation))),
        )
        used = self.used
        answers = (a for cid, a in self.answers.items() if answered is None or cid in answered)
        return Digest(
            report=report,
            rows=rows,
            folded=folded,
            answers=tuple(sorted(answers, key=lambda a: id_order(a.conversation))),
            conversations=len(rows),
            packets=self.packets,
            hits=frozenset(self.hits),
            used_by=None if used is None else {ref: pid for ref, (pid, _) in used.items()},
            conversation_of=None if used is None else {pid: cid for pid, cid in used.values()},
        )


# What stands in for what a hand-made Report leaves out; DigestSink.digest leaves such answers out.
_NOWHERE = Endpoint("", None)
_UNANSWERED = Answer(NO_CONVERSATION, "", VerdictCode.UNKNOWN, ())


def results_of(report: Report) -> Iterator[ConversationResult]:
    """A whole report's conversations as the pipeline handed them out (packets of none last)."""
    by_id = {p.id: p for p in report.packets}
    groups: dict[str, list[PacketGroup]] = {}
    for g in report.groups:
        groups.setdefault(g.conversation, []).append(g)
    answers = {a.conversation: a for a in report.answers}
    footers = {f.packet: f for f in report.footers}
    crossings: dict[str, list[Crossing]] = {}
    for x in report.crossings:
        crossings.setdefault(x.conversation, []).append(x)
    placed: set[str] = set()
    for c in report.conversations:
        packets = tuple(by_id[i] for i in c.packets if i in by_id)
        placed.update(c.packets)
        yield ConversationResult(
            c,
            packets,
            tuple(groups.get(c.id, [])),
            answers.get(c.id) or _UNANSWERED,
            tuple(footers[p.id] for p in packets if p.id in footers),
            tuple(crossings.get(c.id, [])),
        )
    loose = tuple(p for p in report.packets if p.id not in placed)
    if loose:
        ids = tuple(p.id for p in loose)
        yield ConversationResult(
            Conversation(NO_CONVERSATION, "", "", (_NOWHERE, _NOWHERE), ids),
            loose,
            tuple(groups.get(NO_CONVERSATION, [])),
            _UNANSWERED,
            tuple(footers[i] for i in ids if i in footers),
        )


def digest_of(report: Report) -> Digest:
    """The Digest of a whole report: what DigestSink keeps of the same case as it streams."""
    sink = DigestSink()
    for result in results_of(report):
        sink(result)
    return sink.digest(report, {a.conversation for a in report.answers})
