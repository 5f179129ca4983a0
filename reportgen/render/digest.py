"""What the HTML, PDF, text and Markdown documents tell of a case, kept as the case is read.

The documents tell a case by behaviour: a conversation whose packet groups behave like an earlier
one's (the same protocol and the same case-wide behaviour ids, explain.groups) is told by that one.
So a reader needs in full only the first conversation of each behaviour and the packets of no
conversation. Of the others the documents give exact counts per behaviour (explain.answer
BehaviourCounts) and a few as rows (id, flow, packet count, outcomes, prediction): the first
FIRST_ROWS by id and the last LAST_ROWS, saying how many they left out and that report.json and
report.jsonl have every one by id. ``DigestSink`` is a pipeline sink that keeps exactly that while
the case streams (pipeline.stream_case): memory is the distinct behaviours, not the conversations
and not the packets (issue 10). ``digest_of`` makes the same Digest from a whole Report, so both
readings render byte-identically.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

from reportgen.explain.answer import BehaviourCounter, BehaviourCounts
from reportgen.model import (
    NO_CONVERSATION,
    Answer,
    Conversation,
    ConversationResult,
    Crossing,
    Endpoint,
    LineRef,
    PacketGroup,
    Prediction,
    Report,
    VerdictCode,
    id_order,
)

_T = TypeVar("_T")

# A case of at most this many trace lines lists every line in the HTML appendix, each linked to the
# packet that used it (html.Budget.appendix_lines). While a case has used no more distinct lines than
# this, the sink keeps which packet used each; past it the case cannot be that small.
SMALL_CASE_LINES = 5000


# How many conversations of a behaviour the documents list as rows besides the one told in full: the
# first ones by id and the last ones (the span of the traffic); the others are counted, not listed.
# The HTML screen lists as many first ones (html.SCREEN.alike_rows), the PDF and Markdown fewer.
FIRST_ROWS = 500
LAST_ROWS = 5


@dataclass(frozen=True, slots=True)
class Row:
    """A conversation as one line of a list: what the documents say of one they do not tell in full."""

    id: str
    summary: str
    count: int  # packets
    outcomes: tuple[tuple[str, int], ...]  # packets per outcome, worst first (explain.answer.outcome_counts)
    prediction: Prediction | None


@dataclass(frozen=True, slots=True)
class Alike:
    """The conversations that behave like one told in full: exact counts over all of them and the
    whole behaviour, and a few of them as rows."""

    counts: BehaviourCounts  # every conversation of the behaviour, the one told in full included
    first: tuple[Row, ...]  # the first FIRST_ROWS after the one told, by id
    last: tuple[Row, ...]  # the last LAST_ROWS by id, after ``first``

    @property
    def conversations(self) -> int:
        """How many conversations behave like the one told (it not included)."""
        return self.counts.conversations - 1

    def listed(self, limit: int) -> tuple[tuple[Row, ...], tuple[Row, ...]]:
        """The rows a list of at most ``limit`` first ones shows: those, and when it leaves some out
        the last LAST_ROWS (the list then says how many lie between: view.alike_rest)."""
        rows = self.first + self.last
        if len(rows) == self.conversations and len(rows) <= limit + LAST_ROWS:
            return rows, ()
        return self.first[:limit], rows[-LAST_ROWS:]


@dataclass(frozen=True)
class Digest:
    """A case as the documents tell it.

    ``report`` is the case head with the parts of the conversations told in full (the first of each
    behaviour, in id order) and of the packets of no conversation; its crossings are every
    conversation's (the topology draws them all). ``rows`` has a row of each conversation told.
    """

    report: Report
    rows: dict[str, Row]
    folded: dict[str, Alike]  # conversation told -> the ones that behave like it
    # Every conversation's answer in id order, or as many first ones as the Markdown head can show
    # (DigestSink's answer_room).
    answers: tuple[Answer, ...]
    conversations: int
    packets: int
    hits: frozenset[tuple[str, int]]  # the (snapshot, line) pairs any packet's explanation cites
    used_by: dict[LineRef, str] | None  # a small case's trace lines -> the packet that used each
    conversation_of: dict[str, str] | None  # and that packet's conversation


class _Behaviour:
    """What the sink keeps of one behaviour: the conversation told (the first by id), its counts and
    the rows the documents may list, as heaps that keep the first and the last ones by id."""

    __slots__ = ("lead", "counter", "first", "last")

    def __init__(self, lead: ConversationResult) -> None:
        self.lead = lead
        self.counter = BehaviourCounter()
        self.first: list[tuple[int, str, Row]] = []  # (-number, id, row): the largest on top
        self.last: list[tuple[int, str, Row]] = []  # (number, id, row): the smallest on top

    def add(self, result: ConversationResult, row: Row) -> None:
        c = result.conversation
        self.counter.add(c, result.answer, result.groups)
        # Results come in completion order; the conversation told is the first of its behaviour by id.
        if id_order(c.id) < id_order(self.lead.conversation.id):
            self.lead = result
        n = id_order(c.id)
        # The lead is the smallest id, so it is among the first: one more is kept to list FIRST_ROWS.
        heapq.heappush(self.first, (-n, c.id, row))
        if len(self.first) > FIRST_ROWS + 1:
            heapq.heappop(self.first)
        heapq.heappush(self.last, (n, c.id, row))
        if len(self.last) > LAST_ROWS:
            heapq.heappop(self.last)

    def alike(self) -> Alike | None:
        lead = self.lead.conversation.id
        first = [row for _, _, row in sorted(self.first, reverse=True) if row.id != lead]
        listed = {row.id for row in first}
        last = [row for _, _, row in sorted(self.last) if row.id not in listed and row.id != lead]
        if not first:
            return None
        return Alike(self.counter.counts(), tuple(first), tuple(last))


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
        self.behaviours: dict[tuple[str, tuple[str, ...]], _Behaviour] = {}
        self.conversations = 0
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
        self.conversations += 1
        # A path shared by many conversations is one tuple in memory (the topology draws it once).
        self.crossings += [replace(x, nodes=self.nodes.setdefault(x.nodes, x.nodes)) for x in result.crossings]
        key = self._shared((c.proto, tuple(g.behaviour for g in result.groups)))
        outcomes = self._shared(tuple((code.value, n) for code, n in result.answer.outcomes))
        row = Row(c.id, c.summary, len(result.packets), outcomes, c.prediction)
        self._answer(result.answer)
        behaviour = self.behaviours.get(key)
        if behaviour is None:
            behaviour = self.behaviours[key] = _Behaviour(result)
        behaviour.add(result, row)

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
        leads = sorted((b.lead for b in self.behaviours.values()), key=lambda r: id_order(r.conversation.id))
        rows: dict[str, Row] = {}
        folded: dict[str, Alike] = {}
        for b in self.behaviours.values():
            cid = b.lead.conversation.id
            # The lead is the smallest id of its behaviour: always among the first rows kept.
            rows[cid] = next(row for _, _, row in b.first if row.id == cid)
            alike = b.alike()
            if alike is not None:
                folded[cid] = alike
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
            conversations=self.conversations,
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
