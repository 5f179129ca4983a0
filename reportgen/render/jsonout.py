"""Write a report as JSON, as it goes (schema: docs/json-schema.md; version in "schema").

Two files. ``report.jsonl`` holds every packet, one compact object per line, written the moment its
conversation is added: a behaviour's example packet whole, every other packet as a diff against it
(render/jsonfold.py). ``report.json`` holds what grows with distinct behaviour, not with packet
count: the case summary, the input account, each behaviour (a group shape, groups.shape) explained
once by its first packet, and each kind of conversation (alike conversations, jsonfold) stated once
with one compact row per member, whose packets and lines are runs. Every input line is reachable
from it: by a group's line runs or by the unused runs. Memory is O(distinct behaviours and kinds):
member rows are spooled to a temporary file and copied into report.json at the end, after the
summary, which is known only then.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson

from reportgen import JSON_SCHEMA_VERSION, __version__
from reportgen.model import (
    NO_CONVERSATION,
    Answer,
    Conversation,
    ConversationResult,
    Endpoint,
    Footer,
    Hop,
    LateOf,
    LineRef,
    LogRecord,
    Nat,
    Packet,
    PacketGroup,
    Prediction,
    Report,
    RuleHit,
    Skipped,
    Verdict,
)
from reportgen.pipeline import UnusedRow, unused_rows
from reportgen.render.jsonfold import Unpatchable, diff, fold_conversation

REPORT_FILE = "report.json"
PACKETS_FILE = "report.jsonl"
# The conversation id explain.py gives packets that show no IP identity (ARP, cut pastes); such
# packets have no Conversation of their own, so their entry carries only groups.


def _ep(e: Endpoint) -> dict[str, Any]:
    return {"addr": e.addr or None, "port": e.port}  # null: no input shows the address (model.Nat.unknown)


def _ref(ref: LineRef | None) -> dict[str, Any] | None:
    return None if ref is None else _line_object(ref)


def _action(h: Hop) -> str | None:
    """What the prefix says happened at the hop, else what the trace shows (Hop.outcome)."""
    action = h.event.hook.action or h.outcome
    return action.value if action is not None else None


# A hop's object (_hop) is made of parts, each a tuple of JSON values: what the hop's place and
# explanation state (_HOP_PLACE), the fields of its record (_HOP_FIELDS), and its rules and lines.
# _hop_diff compares a packet's hop with its example's part by part (the place as a tuple, the fields
# one by one) and builds objects only for the parts that differ: the diff is the same as
# jsonfold.diff of the two hop objects.
_HOP_PLACE = (
    "step",
    "family",
    "table",
    "chain",
    "hook",
    "hook_candidates",
    "stage",
    "recognised_by",
    "action",
    "convention",
    "tool",
    "prefix",
    "in",
    "out",
    "physin",
    "physout",
    "proto",
    "truncated",
    "redacted",
    "explanation",
    "predicted",
)
# The place's values that are tuples in _hop_place and lists in the hop's object.
_HOP_PLACE_LISTS = ("hook_candidates", "redacted", "explanation")
_HOP_FIELDS = (
    "mac_src",
    "mac_dst",
    "src",
    "dst",
    "sport",
    "dport",
    "ttl",
    "ip_id",
    "icmp_type",
    "icmp_code",
    "icmp_id",
    "icmp_seq",
    "stamp",
)


def _hop_place(h: Hop) -> tuple[Any, ...]:
    """The values of _HOP_PLACE (its lists as tuples)."""
    hook = h.event.hook
    r = h.event.record
    return (
        h.step,
        hook.family,
        hook.table,
        # An unplaced hop states no hook: it names every hook it could be (and the chain a trace names).
        hook.base_chain,
        hook.hook if hook.placed else None,
        hook.candidates,
        h.stage,
        hook.how,
        _action(h),
        hook.convention,
        hook.tool,
        r.prefix,
        r.in_dev,
        r.out_dev,
        r.physin or None,
        r.physout or None,
        r.proto,
        r.truncated,
        r.redacted,  # fields the input had masked; their values in _hop_fields are null
        h.explanation,
        h.predicted,
    )


def _place_key(h: Hop) -> tuple[Any, ...]:
    """What _hop_place is a function of: equal keys give equal places (HookRef compares every field),
    and comparing the key (its HookRef usually the example's own object) is cheaper than building
    the place."""
    r = h.event.record
    return (
        h.step,
        h.event.hook,
        h.stage,
        h.outcome,
        r.prefix,
        r.in_dev,
        r.out_dev,
        r.physin,
        r.physout,
        r.proto,
        r.truncated,
        r.redacted,
        h.explanation,
        h.predicted,
    )


def _hop_fields(r: LogRecord) -> tuple[Any, ...]:
    """The values of _HOP_FIELDS."""
    return (
        r.mac_src,
        r.mac_dst,
        r.src,
        r.dst,
        r.sport,
        r.dport,
        r.ttl,
        r.ipid,
        r.icmp_type,
        r.icmp_code,
        r.icmp_id,
        r.icmp_seq,
        r.stamp,
    )


def _place_object(place: tuple[Any, ...]) -> dict[str, Any]:
    d = dict(zip(_HOP_PLACE, place, strict=True))
    for k in _HOP_PLACE_LISTS:
        d[k] = list(d[k])
    return d


def _rule(x: RuleHit) -> dict[str, Any]:
    return {
        "table": x.table,
        "chain": x.chain,
        "kind": x.kind,
        "verdict": x.verdict,
        "text": x.text,
        "handle": x.handle,
        "line": _ref(x.ref),
        "snapshot": _ref(x.snapshot_ref),
    }


def _hop(h: Hop) -> dict[str, Any]:
    r = h.event.record
    return {
        **_place_object(_hop_place(h)),
        **dict(zip(_HOP_FIELDS, _hop_fields(r), strict=True)),
        "rules": [_rule(x) for x in h.event.rules],
        "line": _line_object(r.ref),
        "lines": [_line_object(x) for x in h.event.refs],  # every input line the hop was made from
    }


class _ExampleHop:
    """An example packet's hop in the parts a packet's hop is compared by (_hop_diff)."""

    __slots__ = ("place_key", "place_object", "record", "ref", "refs", "rules")

    def __init__(self, h: Hop) -> None:
        self.place_key = _place_key(h)
        self.place_object = _place_object(_hop_place(h))
        self.record = h.event.record
        self.ref = h.event.record.ref
        self.refs = h.event.refs
        self.rules = h.event.rules


def _fields_diff(out: dict[str, Any], b: LogRecord, r: LogRecord) -> None:
    """Put the _HOP_FIELDS of ``r`` whose values differ from ``b``'s in ``out``, as they are: compared
    one by one, not as tuples built for it (most hops differ from the example's in one or two)."""
    if r.mac_src != b.mac_src:
        out["mac_src"] = r.mac_src
    if r.mac_dst != b.mac_dst:
        out["mac_dst"] = r.mac_dst
    if r.src != b.src:
        out["src"] = r.src
    if r.dst != b.dst:
        out["dst"] = r.dst
    if r.sport != b.sport:
        out["sport"] = r.sport
    if r.dport != b.dport:
        out["dport"] = r.dport
    if r.ttl != b.ttl:
        out["ttl"] = r.ttl
    if r.ipid != b.ipid:
        out["ip_id"] = r.ipid
    if r.icmp_type != b.icmp_type:
        out["icmp_type"] = r.icmp_type
    if r.icmp_code != b.icmp_code:
        out["icmp_code"] = r.icmp_code
    if r.icmp_id != b.icmp_id:
        out["icmp_id"] = r.icmp_id
    if r.icmp_seq != b.icmp_seq:
        out["icmp_seq"] = r.icmp_seq
    if r.stamp != b.stamp:
        out["stamp"] = r.stamp


def _line_object(x: LineRef) -> dict[str, Any]:
    return {"file": x.file, "line": x.line}


def _hop_diff(ex: _ExampleHop, h: Hop) -> dict[str, Any]:
    """jsonfold.diff(_hop(example hop), _hop(h)), without building either object: a part equal to
    the example's adds nothing, and every part's object is a function of its tuple.

    What diff does with each differing value, spelled out: a scalar is taken as it is; a line
    reference (an object of two keys) whole (jsonfold._change); a list of the example's length as
    an object of the differing indexes, a list of another length whole; a rule (an object of eight
    keys) as the diff of its keys. The loops index their tuples: compiled, a zip is an iterator
    call per item.
    """
    out: dict[str, Any] = {}
    if _place_key(h) != ex.place_key:  # rare: the behaviour fixes the hook, stage and explanation
        out.update(diff(ex.place_object, _place_object(_hop_place(h))))
    event = h.event
    r = event.record
    if r is not ex.record:
        _fields_diff(out, ex.record, r)
    # The record's own line is the first of the hop's lines (Event.refs), here and in the example:
    # when it moved, one object stands for it in both places.
    own = _line_object(r.ref) if _moved(ex.ref, r.ref) else None
    if own is not None:
        out["line"] = own
    # Event.refs, without building it for a LOG line's event (no rules, no extra lines).
    refs = event.refs if event.rules or event.extra else (r.ref,)
    base_refs = ex.refs
    if len(refs) != len(base_refs):
        out["lines"] = [_line_object(x) for x in refs]
    else:
        lines: dict[str, Any] = {} if own is None else {"0": own}
        for i in range(1, len(refs)):
            v = refs[i]
            if _moved(base_refs[i], v):
                lines[_index(i)] = _line_object(v)
        if lines:
            out["lines"] = lines
    rules = event.rules
    base_rules = ex.rules
    if len(rules) != len(base_rules):
        out["rules"] = [_rule(x) for x in rules]
    elif rules:
        changed = {}
        for i in range(len(rules)):
            was, rule = base_rules[i], rules[i]
            if was is not rule and (d := _rule_diff(was, rule)):
                changed[_index(i)] = d
        if changed:
            out["rules"] = changed
    return out


# Index keys of a diff's changed list items ("0", "1", ...), made once.
_INDEXES = tuple(str(i) for i in range(64))


def _index(i: int) -> str:
    return _INDEXES[i] if i < len(_INDEXES) else str(i)


def _moved(a: LineRef, b: LineRef) -> bool:
    """a != b, without the dataclass's __eq__ (a Python call per line reference)."""
    return a.line != b.line or a.file != b.file


def _rule_diff(b: RuleHit, v: RuleHit) -> dict[str, Any]:
    """jsonfold.diff(_rule(b), _rule(v)): its texts as they are, its line references whole."""
    out: dict[str, Any] = {}
    if b.table != v.table:
        out["table"] = v.table
    if b.chain != v.chain:
        out["chain"] = v.chain
    if b.kind != v.kind:
        out["kind"] = v.kind
    if b.verdict != v.verdict:
        out["verdict"] = v.verdict
    if b.text != v.text:
        out["text"] = v.text
    if b.handle != v.handle:
        out["handle"] = v.handle
    if _moved(b.ref, v.ref):
        out["line"] = _line_object(v.ref)
    if b.snapshot_ref != v.snapshot_ref:
        out["snapshot"] = _ref(v.snapshot_ref)
    return out


def _prediction(p: Prediction | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "status": p.status,
        "summary": p.summary,
        "predicted": p.predicted,
        "observed": p.observed,
        "stage": p.stage,
        "conditions": list(p.conditions),
    }


def _nat(n: Nat) -> dict[str, Any]:
    return {
        "type": n.type,
        "direction": n.direction,
        "by": n.by,
        "hook": n.hook,
        "field": n.field,
        "before": _ep(n.before),
        "after": _ep(n.after),
        "evidence": n.evidence,
        "rule": n.rule,
        "rule_line": _ref(n.rule_ref),
        "conntrack": n.conntrack,
        # Only on a NAT whose rewritten packet no line shows (model.Nat.unknown): other outputs unchanged.
        **({"unknown": n.unknown} if n.unknown is not None else {}),
    }


def _packet(p: Packet) -> dict[str, Any]:
    d = {"id": p.id, "conversation": p.conversation, **_body(p, None)}
    del d["footer"]
    return d


# The keys of a packet's object besides its ids and hops (_rest_value). _packet_diff compares each
# by what it is made from, field by field (_list_diff, _verdict_diff, _footer_diff):
# a dataclass's == is an interpreted call, and a packet's NAT and skipped hooks are new objects.
_REST_KEYS = ("role", "path", "summary", "nat", "skipped", "verdict", "footer")


def _ref_moved(a: LineRef | None, b: LineRef | None) -> bool:
    """a != b for optional line references, without the dataclass's interpreted __eq__."""
    return a is not b and (a is None or b is None or _moved(a, b))


def _verdict_diff(out: dict[str, Any], b: Verdict | None, v: Verdict | None) -> None:
    """Put jsonfold.diff of the two verdicts' objects (_rest_value "verdict") in ``out`` when they
    differ: a verdict's values are scalars and a line reference, each taken whole; where one of the
    two is None, the new value is taken whole."""
    if b is v:
        return
    if b is None or v is None:
        out["verdict"] = _rest_verdict(v)
        return
    d: dict[str, Any] = {}
    if b.code != v.code:
        d["code"] = v.code.value
    if b.where != v.where:
        d["where"] = v.where
    if b.explanation != v.explanation:
        d["explanation"] = v.explanation
    if b.evidence != v.evidence:
        d["evidence"] = v.evidence
    if b.rule != v.rule:
        d["rule"] = v.rule
    if _ref_moved(b.rule_ref, v.rule_ref):
        d["rule_line"] = _ref(v.rule_ref)
    if d:
        out["verdict"] = d


def _footer_diff(out: dict[str, Any], b: Footer | None, f: Footer | None) -> None:
    """Put jsonfold.diff of the two footers' objects (_footer) in ``out`` when they differ."""
    if b is f:
        return
    if b is None or f is None:
        out["footer"] = _footer(f)
        return
    d: dict[str, Any] = {}
    if b.final != f.final:
        d["final"] = f.final
    if b.decided_by != f.decided_by:
        d["decided_by"] = f.decided_by
    if b.code != f.code:
        d["code"] = f.code.value
    if d:
        out["footer"] = d


def _skipped(s: Skipped) -> dict[str, Any]:
    return {
        "family": s.family,
        "table": s.table,
        "hook": s.hook,
        "stage": s.stage,
        "reason": s.reason,
        "explanation": s.explanation,
        "rule_line": _ref(s.rule_ref),
    }


def _rest_verdict(v: Verdict | None) -> dict[str, Any] | None:
    return (
        None
        if v is None
        else {
            "code": v.code.value,
            "where": v.where,
            "explanation": v.explanation,
            "evidence": v.evidence,
            "rule": v.rule,
            "rule_line": _ref(v.rule_ref),
        }
    )


def _rest_value(key: str, p: Packet, f: Footer | None) -> Any:
    """The value of one of _REST_KEYS in a packet's object."""
    if key == "role":
        return p.role
    if key == "path":
        return p.path
    if key == "summary":
        return p.summary
    if key == "nat":
        return [_nat(n) for n in p.nat]
    if key == "skipped":
        return [_skipped(s) for s in p.skipped]
    if key == "verdict":
        return _rest_verdict(p.verdict)
    assert key == "footer"
    return _footer(f)


class _Example:
    """A behaviour's example packet, as a packet's diff against it reads it (_packet_diff)."""

    __slots__ = ("hops", "role", "path", "summary", "nat", "skipped", "verdict", "footer")

    def __init__(self, p: Packet, f: Footer | None) -> None:
        self.hops = [_ExampleHop(h) for h in p.hops]
        self.role = p.role
        self.path = p.path
        self.summary = p.summary
        self.nat = p.nat
        self.skipped = p.skipped
        self.verdict = p.verdict
        self.footer = f


def _packet_diff(ex: _Example, p: Packet, f: Footer | None) -> dict[str, Any]:
    """jsonfold.diff(_body(example), _body(p)) (raising Unpatchable where it does), with the hops
    compared part by part (_hop_diff) and the rest field by field instead of as objects."""
    out: dict[str, Any] = {}
    # role, path and summary are texts: a differing one is taken whole.
    if p.role != ex.role:
        out["role"] = p.role
    if p.path != ex.path:
        out["path"] = p.path
    if p.summary != ex.summary:
        out["summary"] = p.summary
    _list_diff(out, "nat", ex.nat, p.nat, _nat, _nat_diff)
    _list_diff(out, "skipped", ex.skipped, p.skipped, _skipped, _skipped_diff)
    _verdict_diff(out, ex.verdict, p.verdict)
    _footer_diff(out, ex.footer, f)
    hops = p.hops
    if len(hops) != len(ex.hops):  # a list of another length is given whole
        out["hops"] = [_hop(h) for h in hops]
        return out
    changed = {}
    for i in range(len(hops)):
        d = _hop_diff(ex.hops[i], hops[i])
        if d:
            changed[_index(i)] = d
    if changed:
        out["hops"] = changed
    return out


def _ep_moved(a: Endpoint, b: Endpoint) -> bool:
    """_ep(a) != _ep(b), without Endpoint's interpreted __eq__."""
    return a.addr != b.addr or a.port != b.port


_Item = TypeVar("_Item")


def _list_diff(
    out: dict[str, Any],
    key: str,
    base: Sequence[_Item],
    items: Sequence[_Item],
    whole: Callable[[_Item], dict[str, Any]],
    item_diff: Callable[[_Item, _Item], dict[str, Any]],
) -> None:
    """Put jsonfold.diff of two packets' lists of objects (``whole`` makes an item's object) at
    ``key`` of ``out`` when they differ: a list of another length whole, else the differing items by
    index, each as ``item_diff`` of the two (jsonfold.diff of their objects)."""
    if base is items:
        return
    if len(base) != len(items):
        out[key] = [whole(x) for x in items]
        return
    changed: dict[str, Any] = {}
    for i in range(len(items)):
        b, x = base[i], items[i]
        if b is not x and (d := item_diff(b, x)):
            changed[_index(i)] = d
    if changed:
        out[key] = changed


def _nat_diff(b: Nat, n: Nat) -> dict[str, Any]:
    """jsonfold.diff(_nat(b), _nat(n)): its endpoints and line reference whole. A NAT that states
    "unknown" and one that does not have other keys: Unpatchable, as diff raises."""
    if (b.unknown is None) != (n.unknown is None):
        raise Unpatchable(["unknown"])
    d: dict[str, Any] = {}
    if b.type != n.type:
        d["type"] = n.type
    if b.direction != n.direction:
        d["direction"] = n.direction
    if b.by != n.by:
        d["by"] = n.by
    if b.hook != n.hook:
        d["hook"] = n.hook
    if b.field != n.field:
        d["field"] = n.field
    if _ep_moved(b.before, n.before):
        d["before"] = _ep(n.before)
    if _ep_moved(b.after, n.after):
        d["after"] = _ep(n.after)
    if b.evidence != n.evidence:
        d["evidence"] = n.evidence
    if b.rule != n.rule:
        d["rule"] = n.rule
    if _ref_moved(b.rule_ref, n.rule_ref):
        d["rule_line"] = _ref(n.rule_ref)
    if b.conntrack != n.conntrack:
        d["conntrack"] = n.conntrack
    if b.unknown != n.unknown:
        d["unknown"] = n.unknown
    return d


def _skipped_diff(b: Skipped, s: Skipped) -> dict[str, Any]:
    """jsonfold.diff(_skipped(b), _skipped(s)): its line reference whole."""
    d: dict[str, Any] = {}
    if b.family != s.family:
        d["family"] = s.family
    if b.table != s.table:
        d["table"] = s.table
    if b.hook != s.hook:
        d["hook"] = s.hook
    if b.stage != s.stage:
        d["stage"] = s.stage
    if b.reason != s.reason:
        d["reason"] = s.reason
    if b.explanation != s.explanation:
        d["explanation"] = s.explanation
    if _ref_moved(b.rule_ref, s.rule_ref):
        d["rule_line"] = _ref(s.rule_ref)
    return d


def _unused_runs(unused: Iterable[UnusedRow]) -> list[dict[str, Any]]:
    """Unused lines per file and reason: a count, the lines as runs, and the first line's text.

    The runs text is built as the lines come (_RunsText), never from a list of every run: a kern.log
    whose unrelated lines alternate with netfilter ones has one run per unrelated line, a million
    in a 2M-line file (memory would grow with the input).
    """
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    texts: dict[tuple[str, str], _RunsText] = {}
    for file, line, reason, text, count in unused:
        key = (file, reason)
        e = entries.get(key)
        if e is None:
            e = entries[key] = {"file": file, "reason": reason, "count": 0, "line": line, "text": text}
            texts[key] = _RunsText()
        e["count"] += count
        texts[key].add(line, line + count - 1)
    return [{**e, "runs": texts[k].text()} for k, e in entries.items()]


class _RunsText:
    """The runs text of spans (first, last) as they come: ``a`` (one), ``a-b`` (a to b), and either
    followed by ``/s*n``: the span repeated n times, each s after the previous (``1-9/16*3`` is 1-9,
    17-25, 33-41; ``p1/2*3`` is p1, p3, p5). Spans that touch or overlap are joined first. Three or
    more alike spans at a fixed period make one item, so a behaviour repeated regularly (the same
    exchange every few lines) is one reference however long the case runs.

    It holds O(1) spans while they come in order, so a million unused runs cost no memory. A span that
    comes before the previous one (never, from the pipeline's input-ordered runs) makes it keep every
    span and sort them at the end.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.cur: tuple[int, int] | None = None  # the merged span still growing
        self.group: list[tuple[int, int]] = []  # spans of the current candidate period (at most 2 kept)
        self.count = 0  # spans in the current period, when >= 2
        self.items: list[str] = []
        self.unordered: list[tuple[int, int]] | None = None

    def add(self, a: int, b: int) -> None:
        if self.unordered is not None:
            self.unordered.append((a, b))
        elif self.cur is None:
            self.cur = (a, b)
        elif a < self.cur[0]:
            self.unordered = [*self._spans_so_far(), self.cur, (a, b)]
        elif a <= self.cur[1] + 1:
            self.cur = (self.cur[0], max(b, self.cur[1]))
        else:
            self._feed(self.cur)
            self.cur = (a, b)

    def _spans_so_far(self) -> list[tuple[int, int]]:
        # Only reached on disorder: the items written so far are expanded again.
        done = list(expand_runs(",".join(self.items)))
        if self.count < 2:
            return done + self.group
        (a, b), step = self.group[0], self._step()
        return done + [(a + k * step, b + k * step) for k in range(self.count)]

    def _step(self) -> int:
        return self.group[1][0] - self.group[0][0]

    def _span(self, span: tuple[int, int]) -> str:
        return _span_text(span[0], span[1], self.prefix)

    def _feed(self, span: tuple[int, int]) -> None:
        g = self.group
        if not g:
            g.append(span)
            return
        width = g[0][1] - g[0][0]
        if len(g) == 1:
            g.append(span)
            self.count = 2
            if span[1] - span[0] != width:
                self._emit_first()
            return
        last_start = g[0][0] + (self.count - 1) * self._step()
        if span[1] - span[0] == width and span[0] - last_start == self._step():
            self.count += 1
            return
        if self.count >= 3:
            self.items.append(self._period())
            self.group, self.count = [span], 0
        else:  # two spans were no period: the first is an item, the second starts again with this one
            self._emit_first()
            self._feed(span)

    def _emit_first(self) -> None:
        first, second = self.group
        self.items.append(self._span(first))
        self.group, self.count = [second], 0

    def _period(self) -> str:
        return f"{self._span(self.group[0])}/{self._step()}*{self.count}"

    def text(self) -> str:
        if self.unordered is not None:
            return _runs(_merge(self.unordered), self.prefix)
        if self.cur is not None:
            self._feed(self.cur)
            self.cur = None
        if self.count >= 3:
            self.items.append(self._period())
        else:
            self.items += [self._span(x) for x in self.group]
        self.group, self.count = [], 0
        return ",".join(self.items)


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort spans (first, last) and join those that touch or overlap."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        else:
            out.append((a, b))
    return out


def _runs(spans: Iterable[tuple[int, int]], prefix: str = "") -> str:
    """Sorted spans as runs text: what _RunsText writes for them, in one pass over the list instead
    of its bookkeeping per span (a group's line runs were a fifth of writing the JSON of the nft
    bench input). Spans that touch or overlap are joined first, as _RunsText.add does; spans out of
    order are sorted, as _RunsText.text does (tests/test_json_diff.py holds the two to each other):
    so _runs(spans) is _runs(_merge(spans)), and spans that come sorted are not sorted again."""
    joined: list[tuple[int, int]] = []
    for a, b in spans:
        if joined:
            first, last = joined[-1]
            if a < first:
                # _merge takes the union: spans a list gives again, or an iterator has left, are the same runs.
                return _runs(_merge([*joined, (a, b), *spans]), prefix)
            if a <= last + 1:
                joined[-1] = (first, max(b, last))
                continue
        joined.append((a, b))
    items: list[str] = []
    n = len(joined)
    i = 0
    while i < n:
        a, b = joined[i]
        width = b - a
        j = i + 1
        # Three or more spans of one width at a fixed period make one item; two make two items.
        if j < n and joined[j][1] - joined[j][0] == width:
            step = joined[j][0] - a
            j += 1
            while j < n and joined[j][1] - joined[j][0] == width and joined[j][0] - joined[j - 1][0] == step:
                j += 1
            if j - i >= 3:
                items.append(f"{_span_text(a, b, prefix)}/{step}*{j - i}")
                i = j
                continue
        items.append(_span_text(a, b, prefix))
        i += 1
    return ",".join(items)


def _span_text(a: int, b: int, prefix: str) -> str:
    return f"{prefix}{a}" if a == b else f"{prefix}{a}-{prefix}{b}"


def expand_runs(runs: str) -> Iterator[tuple[int, int]]:
    """The spans (first, last) a runs text names, in order: the inverse of the writer's encoding,
    for readers of report.json (line numbers; packet ids without their "p")."""
    for item in filter(None, runs.split(",")):
        span, _, repeat = item.partition("/")
        a, _, b = span.partition("-")
        first, last = int(a.lstrip("p")), int((b or a).lstrip("p"))
        step, _, times = repeat.partition("*")
        for k in range(int(times) if repeat else 1):
            yield first + k * int(step or 0), last + k * int(step or 0)


def _ids(ids: Sequence[str]) -> str:
    """Packet ids as runs ("p1-p4,p9"); ids not of the form pN (a simulation's "p1.2") are listed."""
    # "p" and ASCII digits, tested without a regex (a call per packet id).
    nums = [x[1:] for x in ids if x[:1] == "p" and len(x) > 1 and x.isascii() and x[1:].isdigit()]
    if len(nums) != len(ids) or any(x.startswith("0") for x in nums):
        return ",".join(ids)
    return _runs(((n, n) for n in map(int, nums)), "p")


def _line_runs(lines: Iterable[tuple[LineRef, int]]) -> list[dict[str, Any]]:
    """A group's line runs as one entry per file, in the order files first appear."""
    per_file: dict[str, list[tuple[int, int]]] = {}
    for ref, last in lines:
        per_file.setdefault(ref.file, []).append((ref.line, max(last, ref.line)))
    return [{"file": f, "runs": _runs(s)} for f, s in per_file.items()]


def _answer(a: Answer | None) -> dict[str, Any]:
    if a is None:
        return {"answer": None, "worst": None, "assumptions": []}
    return {"answer": a.sentence, "worst": a.worst.value, "assumptions": list(a.assumptions)}


def _footer(f: Footer | None) -> dict[str, Any] | None:
    return None if f is None else {"final": f.final, "decided_by": f.decided_by, "code": f.code.value}


def _group(g: PacketGroup, first: Packet) -> dict[str, Any]:
    # Members of a group share their rewrites' addresses (groups.behaviour), so the first packet's
    # before/after stand for all of them. Their kinds, places and evidence are the behaviour's:
    # nat[i] here is the rewrite behaviours[].nat[i] describes (groups.shape keeps their order).
    # The first member (packets[0], model.PacketGroup.first) is the one that stands for the group.
    return {
        "id": g.id,
        "behaviour": g.behaviour,
        "count": g.count,
        "packets": _ids(g.packets),
        "first_stamp": g.first_stamp,
        "last_stamp": g.last_stamp,
        "lines": _line_runs(g.lines),
        "nat": [{"before": _ep(n.before), "after": _ep(n.after)} for n in first.nat],
    }


# The line ends str.splitlines knows that JSON does not escape (C0 ones are escaped already), as text
# and as UTF-8.
_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")
_LINE_BREAK_BYTES = tuple(c.encode() for c in "\x85\u2028\u2029")


def _dumpb(obj: Any) -> bytes:
    """Compact JSON with sorted keys, as UTF-8: one definition, so both files encode alike.

    orjson encodes the same objects byte-identically and twice as fast (the 100k-line benchmark's
    write_json: 1.1 s CPU with json, 0.57 s with orjson, out of 6.7 s for the whole run). It refuses
    integers beyond 64 bits, which untrusted input can hold (SPT= with thirty digits): such an
    object is encoded by the json module instead.
    """
    try:
        data = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        data = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    # Three substring tests on the bytes cost a tenth of a regex search of the text (which was 7 % of
    # writing the 100k-line benchmark's JSON). Each line break's last byte is searched for first: a
    # one-byte search is memchr, and almost every line holds non-ASCII text ("→") but none of these
    # bytes, so the multi-byte searches (half of _dumpb's time on the nft bench input) rarely run.
    nel, lsep, psep = _LINE_BREAK_BYTES
    if (b"\x85" in data or b"\xa8" in data or b"\xa9" in data) and (nel in data or lsep in data or psep in data):
        # JSON may hold these raw, but they end a line for str.splitlines and for JavaScript before
        # ES2019: escaped, a report.jsonl line stays one line for every reader. They can only stand
        # inside a string, where the escape means the same character.
        data = _LINE_BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", data.decode()).encode()
    return data


def _dumps(obj: Any) -> str:
    """_dumpb as text."""
    return _dumpb(obj).decode()


def _fmt(obj: Any, indent: str, levels: int) -> str:
    """JSON text with the outer ``levels`` of objects and lists one member per line (sorted keys), and
    everything deeper compact: readable and diffable, and encoded by json's C encoder."""
    inner = indent + "  "
    if levels > 0 and isinstance(obj, dict) and obj:
        body = ",\n".join(f"{inner}{_dumps(k)}: {_fmt(obj[k], inner, levels - 1)}" for k in sorted(obj))
        return "{\n" + body + "\n" + indent + "}"
    if levels > 0 and isinstance(obj, list) and obj:
        return "[\n" + ",\n".join(inner + _fmt(x, inner, levels - 1) for x in obj) + "\n" + indent + "]"
    return _dumps(obj)


# A behaviour's counts are known only at the end; its text is written when it is first seen, with
# this value where the counts go. It holds a NUL, which no input string can (read_lines drops NUL
# bytes), so it cannot collide with input text; "counts" sorts first, so it is the first match.
_COUNTS_MARK = "\x00counts"
_COUNTS = _dumps(_COUNTS_MARK)

# Member rows of the conversation kinds wait in memory up to this many bytes in all, then go to the
# spool file in one chunk per kind: memory stays bounded however many conversations a case has,
# and report.json is still written kind by kind.
_SPILL_BYTES = 1 << 20
_MEMBER_SEP = b",\n      "


class _Kind:
    """A kind of conversation being written: its shared part and where its member rows are."""

    __slots__ = ("id", "shared", "count", "rows", "chunks")

    def __init__(self, kind_id: str, shared: bytes) -> None:
        self.id = kind_id
        self.shared = shared  # the shared part's JSON (jsonfold.fold_conversation)
        self.count = 0
        self.rows: list[bytes] = []  # rows not yet spilled, each with the separator before it
        self.chunks: list[tuple[int, int]] = []  # (offset, length) of spilled rows in the spool


class JsonStream:
    """Write report.json and report.jsonl while conversations are added, holding no packet.

    ``add`` writes a finished conversation's packets to report.jsonl at once (each as a diff against
    its behaviour's example) and adds the conversation to its kind (its row is spooled); ``close``
    writes report.json from the case head (files, notes, counts, unused runs, summary), the
    behaviours seen and the kinds of conversation, in the order they were first seen, each with its
    members in the order they were added.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._jsonl = (folder / PACKETS_FILE).open("wb")
        # Anonymous temporary files in the output folder: gone when closed, or when the process dies.
        self._rows: IO[bytes] = tempfile.TemporaryFile("w+b", dir=folder)  # noqa: SIM115 closed by close()
        self._behaviour_text: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8", dir=folder)  # noqa: SIM115
        self._reset()

    def _reset(self) -> None:
        self._behaviours: dict[str, list[int]] = {}  # id -> [packets, groups, conversations]
        # Each behaviour's example packet as report.json states it (what a packet's diff is against).
        self._examples: dict[str, _Example] = {}
        self._example_of: dict[str, str] = {}  # behaviour -> its example packet's id
        self._kinds: dict[bytes, _Kind] = {}
        self._buffered = 0

    def restart(self) -> None:
        """Forget everything added: the pipeline is explaining the case again from the start."""
        for fh in (self._jsonl, self._rows, self._behaviour_text):
            fh.seek(0)
            fh.truncate()
        self._reset()

    def add(self, result: ConversationResult) -> None:
        """Write one finished conversation: its packets to report.jsonl, its row to its kind."""
        c = result.conversation
        if c.id == NO_CONVERSATION:
            self._put(c.id, None, None, result.packets, result.groups, result.footers)
        else:
            self._put(c.id, c, result.answer, result.packets, result.groups, result.footers)

    # The stream is itself a sink (pipeline.stream_case calls its sink with each result, and looks
    # for a ``restart`` on it when a late case-wide fact makes it explain the case again). A method,
    # not ``__call__ = add``: a compiled (mypyc) class cannot alias one.
    def __call__(self, result: ConversationResult) -> None:
        self.add(result)

    def _put(
        self,
        conv_id: str,
        conv: Conversation | None,
        answer: Answer | None,
        packets: Sequence[Packet],
        groups: Sequence[PacketGroup],
        footers: Sequence[Footer],
    ) -> None:
        footer_of = {f.packet: f for f in footers}
        by_id = {p.id: p for p in packets}
        group_of: dict[str, PacketGroup] = {}
        counted: set[str] = set()
        for g in groups:
            group_of.update(dict.fromkeys(g.packets, g))
            counts = self._behaviours.get(g.behaviour)
            if counts is None:
                counts = self._behaviours[g.behaviour] = [0, 0, 0]
                first = by_id[g.first]
                body = _body(first, footer_of.get(first.id))
                self._examples[g.behaviour] = _Example(first, footer_of.get(first.id))
                self._example_of[g.behaviour] = first.id
                self._behaviour_text.write(self._behaviour(g, body, first.id, conv_id) + "\0")
            counts[0] += g.count
            counts[1] += 1
            if g.behaviour not in counted:
                counted.add(g.behaviour)
                counts[2] += 1
        # One write per conversation: a buffered write is a call and a copy per packet.
        if packets:
            self._jsonl.write(
                b"\n".join([self._packet_line(p, group_of.get(p.id), footer_of.get(p.id)) for p in packets]) + b"\n"
            )
        entry = _conversation_entry(conv_id, conv, answer, groups, by_id)
        shared, row = fold_conversation(entry)
        # The kind's key is its shared part's own text: conversations share a kind exactly when all
        # that the kind states for them (answer, summary, assumptions and prediction with the
        # member's addresses and ports cut out, worst verdict, protocol, which of its values stand
        # where, and per group the behaviour, count, files and NAT places) is the same, and the row
        # holds all the rest, so unfold_conversation(kind, row) is the member's entry exactly.
        key = _dumpb(shared)
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = _Kind(f"k{len(self._kinds) + 1}", key)
        data = (_MEMBER_SEP if kind.count else b"") + _dumpb(row)
        kind.count += 1
        kind.rows.append(data)
        self._buffered += len(data)
        if self._buffered > _SPILL_BYTES:
            self._spill()

    def _spill(self) -> None:
        self._rows.seek(0, os.SEEK_END)
        for kind in self._kinds.values():
            if kind.rows:
                data = b"".join(kind.rows)
                kind.chunks.append((self._rows.tell(), len(data)))
                self._rows.write(data)
                kind.rows = []
        self._buffered = 0

    def _packet_line(self, p: Packet, g: PacketGroup | None, f: Footer | None) -> bytes:
        """A packet's report.jsonl line: its ids and behaviour, and a diff against the behaviour's
        example packet; the whole packet when it is the example (so the first line of each behaviour
        reads on its own), has no behaviour, or the diff cannot say it."""
        if g is not None and self._example_of[g.behaviour] != p.id:
            try:
                d = _packet_diff(self._examples[g.behaviour], p, f)
            except Unpatchable:
                pass
            else:
                return _dumpb(
                    {"id": p.id, "conversation": p.conversation, "group": g.id, "behaviour": g.behaviour, "diff": d}
                )
        head = {
            "id": p.id,
            "conversation": p.conversation,
            "group": None if g is None else g.id,
            "behaviour": None if g is None else g.behaviour,
        }
        return _dumpb({**head, **_body(p, f)})

    @staticmethod
    def _behaviour(g: PacketGroup, body: dict[str, Any], packet: str, conv_id: str) -> str:
        """A behaviour told once, by the packet that first showed it (its addresses are that packet's)."""
        d = {
            **body,
            "id": g.behaviour,
            "counts": _COUNTS_MARK,
            "example": {"packet": packet, "conversation": conv_id, "group": g.id},
        }
        return _fmt(d, "    ", 2)

    def close(self, report: Report) -> None:
        """Write report.json: the head of ``report`` (its conversations and packets are not read),
        the behaviours and the kinds of conversation added; then close both files."""
        self._jsonl.flush()
        os.fsync(self._jsonl.fileno())
        self._jsonl.close()
        s = report.summary
        summary = (
            None
            if s is None
            else {
                "sentence": s.sentence,
                "flows": s.flows,
                "packets": s.packets,
                "outcomes": {c.value: n for c, n in s.outcomes},
                "first_stamp": s.first_stamp,
                "last_stamp": s.last_stamp,
                "host": s.host,
            }
        )
        if summary is not None and s is not None and s.inferred:
            # Of the outcomes, the packets whose verdict was inferred, per code and source (model.Inferred);
            # only when some were, so a case with none keeps its bytes.
            summary["inferred"] = {c.value: {b.value: k for d, b, k in s.inferred if d is c} for c, _, _ in s.inferred}
        case = {
            "name": report.name,
            "title": report.title,
            "description": report.description,
            "notes": list(report.notes),
        }
        unused = _unused_runs(unused_rows(report.unused))  # one pass over the runs, which may be on disk
        account = {
            "lines_total": report.lines_total,
            "lines_used": report.lines_used,
            "lines_unused": sum(e["count"] for e in unused),  # every run is counted in one entry
            "files": [{"file": f.name, "kind": f.kind, "lines": f.lines} for f in report.files],
            "unused": unused,
        }
        with (self.folder / REPORT_FILE).open("wb") as fh:
            # The answer first: a reader (or `head`) meets the summary before any detail.
            fh.write(
                (
                    f'{{\n  "schema": {_dumps(f"reportgen-report/{JSON_SCHEMA_VERSION}")},\n'
                    f'  "generator": {_dumps(f"reportgen {__version__}")},\n'
                    f'  "packets_file": {_dumps(PACKETS_FILE)},\n'
                    f'  "summary": {_fmt(summary, "  ", 1)},\n'
                    f'  "case": {_fmt(case, "  ", 1)},\n'
                    f'  "input": {_fmt(account, "  ", 2)},\n'
                    '  "behaviours": ['
                ).encode()
            )
            sep = "\n"
            for counts, text in zip(self._behaviours.values(), _records(self._behaviour_text), strict=True):
                packets, groups, convs = counts
                fh.write(
                    (
                        sep
                        + "    "
                        + text.replace(
                            _COUNTS, _dumps({"packets": packets, "groups": groups, "conversations": convs}), 1
                        )
                    ).encode()
                )
                sep = ",\n"
            fh.write(b"\n  ],\n" if self._behaviours else b"],\n")
            # A kind's shared part first (its keys sorted, with its id and member count), then its
            # members, one per line: the kind reads before the rows it explains.
            fh.write(b'  "conversation_kinds": [' + (b"\n" if self._kinds else b""))
            sep_kind = b""
            for kind in self._kinds.values():
                head = _dumpb({**orjson.loads(kind.shared), "id": kind.id, "count": kind.count})
                fh.write(sep_kind + b"    " + head[:-1] + b',"members":[\n      ')
                for offset, length in kind.chunks:
                    self._rows.seek(offset)
                    fh.write(self._rows.read(length))
                fh.write(b"".join(kind.rows) + b"\n    ]}")
                sep_kind = b",\n"
            fh.write(b"\n  ]\n}\n" if self._kinds else b"]\n}\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._rows.close()
        self._behaviour_text.close()


def _conversation_entry(
    conv_id: str,
    conv: Conversation | None,
    answer: Answer | None,
    groups: Sequence[PacketGroup],
    by_id: Mapping[str, Packet],
) -> dict[str, Any]:
    """A conversation's whole entry (schema 4's): what its kind and its member row are cut from."""
    return {
        "id": conv_id,
        "groups": [_group(g, by_id[g.first]) for g in groups],
        **_answer(answer),
        "proto": None if conv is None else conv.proto,
        "summary": None if conv is None else conv.summary,
        "original": None if conv is None else [_ep(conv.original[0]), _ep(conv.original[1])],
        "prediction": None if conv is None else _prediction(conv.prediction),
        # Only a conversation of late packets has it, so every other entry keeps schema 5's keys.
        **({} if conv is None or conv.late_of is None else {"late_of": _late_of(conv.late_of)}),
    }


def _late_of(late: LateOf) -> dict[str, Any]:
    return {
        "conversation": late.conversation,
        # Kernel stamps have microseconds (printk's "%5lu.%06lu"); more digits are float noise.
        "seconds": None if late.seconds is None else round(late.seconds, 6),
        "state": late.state.value,
        "timeout_seconds": late.state.timeout,
    }


def _body(p: Packet, f: Footer | None) -> dict[str, Any]:
    """A packet's object without its ids: what its behaviour's example states for it."""
    return {"hops": [_hop(h) for h in p.hops], **{k: _rest_value(k, p, f) for k in _REST_KEYS}}


def _records(fh: IO[str]) -> Iterator[str]:
    """The NUL-terminated records of a spool file, one at a time."""
    fh.seek(0)
    buf = ""
    for chunk in iter(lambda: fh.read(1 << 20), ""):
        buf += chunk
        *done, buf = buf.split("\0")
        yield from done


def _parts(
    report: Report,
) -> Iterator[tuple[str, Conversation | None, Answer | None, list[Packet], list[PacketGroup], list[Footer]]]:
    """A whole Report cut into its conversations, as the streaming pipeline hands them over; packets
    of no conversation come last."""
    packets: dict[str, list[Packet]] = {}
    for p in report.packets:
        packets.setdefault(p.conversation, []).append(p)
    groups: dict[str, list[PacketGroup]] = {}
    for g in report.groups:
        groups.setdefault(g.conversation, []).append(g)
    conv_of = {p.id: p.conversation for p in report.packets}
    footers: dict[str, list[Footer]] = {}
    for f in report.footers:
        footers.setdefault(conv_of.get(f.packet, NO_CONVERSATION), []).append(f)
    answers = {a.conversation: a for a in report.answers}
    for c in report.conversations:
        yield c.id, c, answers.get(c.id), packets.pop(c.id, []), groups.pop(c.id, []), footers.pop(c.id, [])
    rest = [p for ps in packets.values() for p in ps]
    if rest:
        yield (
            NO_CONVERSATION,
            None,
            None,
            rest,
            [g for gs in groups.values() for g in gs],
            [f for fs in footers.values() for f in fs],
        )


def write_json(report: Report, folder: Path) -> list[str]:
    """Write a whole report's report.json and report.jsonl into ``folder`` (through JsonStream, the one
    writer) and return their names."""
    stream = JsonStream(folder)
    for part in _parts(report):
        stream._put(*part)
    stream.close(report)
    return [REPORT_FILE, PACKETS_FILE]


def render_json(report: Report) -> tuple[str, str]:
    """Return a whole report's report.json and report.jsonl text."""
    with tempfile.TemporaryDirectory(prefix="reportgen-json-") as d:
        folder = Path(d)
        write_json(report, folder)
        return (folder / REPORT_FILE).read_text(encoding="utf-8"), (folder / PACKETS_FILE).read_text(encoding="utf-8")
