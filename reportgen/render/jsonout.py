"""Render a report as JSON (schema: docs/json-schema.md; version in "schema")."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from reportgen import JSON_SCHEMA_VERSION, __version__
from reportgen.model import Endpoint, Hop, LineRef, Nat, Packet, Report


def _ep(e: Endpoint) -> dict[str, Any]:
    return {"addr": e.addr, "port": e.port}


def _ref(ref: LineRef | None) -> dict[str, Any] | None:
    return None if ref is None else {"file": ref.file, "line": ref.line}


def _hop(h: Hop) -> dict[str, Any]:
    r = h.event.record
    return {
        "rules": [{"table": x.table, "chain": x.chain, "kind": x.kind, "verdict": x.verdict, "text": x.text,
                   "handle": x.handle, "line": _ref(x.ref), "snapshot": _ref(x.snapshot_ref)}
                  for x in h.event.rules],
        "step": h.step,
        "family": h.event.hook.family,
        "table": h.event.hook.table,
        "chain": h.event.hook.chain,
        "hook": h.event.hook.hook,
        "stage": h.stage,
        "recognised_by": h.event.hook.how,
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
        "stamp": r.stamp,
        "truncated": r.truncated,
        "line": {"file": r.ref.file, "line": r.ref.line},
        "explanation": list(h.explanation),
    }


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
            "kind": p.verdict.kind, "where": p.verdict.where, "explanation": p.verdict.explanation,
            "rule": p.verdict.rule, "rule_line": _ref(p.verdict.rule_ref)},
    }


def _unused(u: Any) -> dict[str, Any]:
    return {"file": u.ref.file, "line": u.ref.line, "last_line": u.ref.line + u.count - 1, "count": u.count,
            "reason": u.reason, "text": u.text}


def report_dict(report: Report, with_lists: bool = True) -> dict[str, Any]:
    """Return the JSON-ready structure of a report (without hops and unused lines if not with_lists)."""
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
        "conversations": [
            {"id": c.id, "proto": c.proto, "summary": c.summary, "original": [_ep(c.original[0]), _ep(c.original[1])],
             "packets": list(c.packets)} for c in report.conversations
        ],
        "packets": [_packet(p, with_lists) for p in report.packets],
    }


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
