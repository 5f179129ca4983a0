"""Render a report as JSON (schema: docs/json-schema.md; version in "schema")."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from reportgen import JSON_SCHEMA_VERSION, __version__
from reportgen.model import Answer, Endpoint, Footer, Hop, LineRef, Nat, Packet, PacketGroup, Prediction, Report


def _ep(e: Endpoint) -> dict[str, Any]:
    return {"addr": e.addr, "port": e.port}


def _ref(ref: LineRef | None) -> dict[str, Any] | None:
    return None if ref is None else {"file": ref.file, "line": ref.line}


def _action(h: Hop) -> str | None:
    """What the prefix says happened at the hop, else what the trace shows (Hop.outcome)."""
    action = h.event.hook.action or h.outcome
    return action.value if action is not None else None


def _hop(h: Hop) -> dict[str, Any]:
    r = h.event.record
    return {
        "rules": [{"table": x.table, "chain": x.chain, "kind": x.kind, "verdict": x.verdict, "text": x.text,
                   "handle": x.handle, "line": _ref(x.ref), "snapshot": _ref(x.snapshot_ref)}
                  for x in h.event.rules],
        "step": h.step,
        "family": h.event.hook.family,
        "table": h.event.hook.table,
        # An unplaced hop states no hook: it names every hook it could be (and the chain a trace names).
        "chain": h.event.hook.base_chain,
        "hook": h.event.hook.hook if h.event.hook.placed else None,
        "hook_candidates": list(h.event.hook.candidates),
        "stage": h.stage,
        "recognised_by": h.event.hook.how,
        "action": _action(h),
        "convention": h.event.hook.convention,
        "prefix": r.prefix,
        "in": r.in_dev,
        "out": r.out_dev,
        "physin": r.physin or None,
        "physout": r.physout or None,
        "mac_src": r.mac_src,
        "mac_dst": r.mac_dst,
        "src": r.src,
        "dst": r.dst,
        "proto": r.proto,
        "sport": r.sport,
        "dport": r.dport,
        "ttl": r.ttl,
        "ip_id": r.ipid,
        "icmp_type": r.icmp_type,
        "icmp_code": r.icmp_code,
        "icmp_id": r.icmp_id,
        "icmp_seq": r.icmp_seq,
        "stamp": r.stamp,
        "truncated": r.truncated,
        "redacted": list(r.redacted),  # fields the input had masked; their values above are null
        "line": {"file": r.ref.file, "line": r.ref.line},
        "lines": [_ref(x) for x in h.event.refs],  # every input line the hop was made from
        "explanation": list(h.explanation),
        "predicted": h.predicted,
    }


def _prediction(p: Prediction | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"status": p.status, "summary": p.summary, "predicted": p.predicted, "observed": p.observed,
            "stage": p.stage, "conditions": list(p.conditions)}


def _nat(n: Nat) -> dict[str, Any]:
    return {"type": n.type, "direction": n.direction, "by": n.by, "hook": n.hook, "field": n.field,
            "before": _ep(n.before), "after": _ep(n.after), "evidence": n.evidence, "rule": n.rule,
            "rule_line": _ref(n.rule_ref), "conntrack": n.conntrack}


def _packet(p: Packet, with_hops: bool = True) -> dict[str, Any]:
    return {
        "id": p.id,
        "conversation": p.conversation,
        "role": p.role,
        "path": p.path,
        "summary": p.summary,
        "hops": [_hop(h) for h in p.hops] if with_hops else [],
        "nat": [_nat(n) for n in p.nat],
        "skipped": [{"family": s.family, "table": s.table, "hook": s.hook, "stage": s.stage,
                     "reason": s.reason, "explanation": s.explanation, "rule_line": _ref(s.rule_ref)}
                    for s in p.skipped],
        "verdict": None if p.verdict is None else {
            "code": p.verdict.code.value, "where": p.verdict.where, "explanation": p.verdict.explanation,
            "evidence": p.verdict.evidence,
            "rule": p.verdict.rule, "rule_line": _ref(p.verdict.rule_ref)},
    }


def _unused(u: Any) -> dict[str, Any]:
    return {"file": u.ref.file, "line": u.ref.line, "last_line": u.ref.line + u.count - 1, "count": u.count,
            "reason": u.reason, "text": u.text}


def report_dict(report: Report, with_lists: bool = True) -> dict[str, Any]:
    """Return the JSON-ready structure of a report (without hops and unused lines if not with_lists)."""
    answers = {a.conversation: a for a in report.answers}
    footers = {f.packet: f for f in report.footers}
    groups: dict[str, list[PacketGroup]] = {}
    for g in report.groups:
        groups.setdefault(g.conversation, []).append(g)
    return {
        "schema": f"reportgen-report/{JSON_SCHEMA_VERSION}",
        "generator": f"reportgen {__version__}",
        "case": {"name": report.name, "title": report.title, "description": report.description,
                 "notes": list(report.notes)},
        "input": {
            "lines_total": report.lines_total,
            "lines_used": report.lines_used,
            "lines_unused": sum(u.count for u in report.unused),
            "files": [{"file": f.name, "kind": f.kind, "lines": f.lines} for f in report.files],
            "unused": [_unused(u) for u in report.unused] if with_lists else [],
        },
        "summary": None if report.summary is None else {
            "sentence": report.summary.sentence, "flows": report.summary.flows, "packets": report.summary.packets,
            "outcomes": {c.value: n for c, n in report.summary.outcomes}, "first_stamp": report.summary.first_stamp,
            "last_stamp": report.summary.last_stamp, "host": report.summary.host},
        "conversations": [
            {"id": c.id, "proto": c.proto, "summary": c.summary, "original": [_ep(c.original[0]), _ep(c.original[1])],
             "packets": list(c.packets), "prediction": _prediction(c.prediction), **_answer(answers.get(c.id)),
             "groups": [_group(g) for g in groups.get(c.id, [])]}
            for c in report.conversations
        ],
        "packets": [{**_packet(p, with_lists), "footer": _footer(footers.get(p.id))} for p in report.packets],
    }


def _answer(a: Answer | None) -> dict[str, Any]:
    if a is None:
        return {"answer": None, "worst": None, "assumptions": []}
    return {"answer": a.sentence, "worst": a.worst.value, "assumptions": list(a.assumptions)}


def _group(g: PacketGroup) -> dict[str, Any]:
    return {"id": g.id, "count": g.count, "first": g.first, "packets": list(g.packets), "first_stamp": g.first_stamp,
            "last_stamp": g.last_stamp,
            "lines": [{"file": ref.file, "first": ref.line, "last": last} for ref, last in g.lines]}


def _footer(f: Footer | None) -> dict[str, Any] | None:
    return None if f is None else {"final": f.final, "decided_by": f.decided_by, "code": f.code.value}


# Long lists (hops, unused lines) are written one compact object per line: readable, diffable, and
# encoded by json's C encoder, which it only uses without indent (the pure-Python indenting encoder
# took two thirds of the time of a 20k-line report). The placeholder holds a NUL, which no input
# string can (read_lines drops NUL bytes), so it cannot collide with input text.
_MARK = "\x00list:"


def _compact(items: Iterable[Any], indent: str) -> Iterator[str]:
    first = True
    for it in items:
        yield ("[\n" if first else ",\n") + indent + "  " + json.dumps(it, sort_keys=True, ensure_ascii=False)
        first = False
    yield "[]" if first else "\n" + indent + "]"


def _chunks(report: Report) -> Iterator[str]:
    """Yield the JSON text piece by piece; hop and unused-line objects are made as they are written."""
    d = report_dict(report, with_lists=False)
    lists: dict[str, Iterable[Any]] = {}
    for p, pd in zip(report.packets, d["packets"], strict=True):
        key = f"{_MARK}{p.id}"
        lists[key], pd["hops"] = (_hop(h) for h in p.hops), key
    lists[_MARK + "unused"] = (_unused(u) for u in report.unused)
    d["input"]["unused"] = _MARK + "unused"
    text = json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False)
    pos = 0
    for start in _find_marks(text):
        q0 = text.index('"', start)
        q1 = text.index('"', q0 + 1)
        key = json.loads(text[q0:q1 + 1])
        line = text[text.rfind("\n", 0, q0) + 1:q0]
        indent = line[: len(line) - len(line.lstrip())]
        yield text[pos:q0]
        yield from _compact(lists[key], indent)
        pos = q1 + 1
    yield text[pos:]
    yield "\n"


def _find_marks(text: str) -> list[int]:
    needle = json.dumps(_MARK)[:-1]  # the encoded mark without its closing quote
    found, i = [], text.find(needle)
    while i >= 0:
        found.append(i)
        i = text.find(needle, i + 1)
    return found


def write_json(report: Report, fh: IO[str]) -> None:
    """Write the report's JSON to a file in chunks."""
    for chunk in _chunks(report):
        fh.write(chunk)


def render_json(report: Report) -> str:
    """Return the report as deterministic JSON text (sorted keys; long lists one item per line)."""
    return "".join(_chunks(report))
