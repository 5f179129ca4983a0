"""Render a report as JSON (schema: docs/json-schema.md; version in "schema")."""

from __future__ import annotations

import json
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


def _packet(p: Packet) -> dict[str, Any]:
    return {
        "id": p.id,
        "conversation": p.conversation,
        "role": p.role,
        "path": p.path,
        "summary": p.summary,
        "hops": [_hop(h) for h in p.hops],
        "nat": [_nat(n) for n in p.nat],
        "skipped": [{"family": s.family, "table": s.table, "hook": s.hook, "stage": s.stage,
                     "reason": s.reason, "explanation": s.explanation, "rule_line": _ref(s.rule_ref)}
                    for s in p.skipped],
        "verdict": None if p.verdict is None else {
            "kind": p.verdict.kind, "where": p.verdict.where, "explanation": p.verdict.explanation,
            "rule": p.verdict.rule, "rule_line": _ref(p.verdict.rule_ref)},
    }


def report_dict(report: Report) -> dict[str, Any]:
    """Return the JSON-ready structure of a report."""
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
            "unused": [{"file": u.ref.file, "line": u.ref.line, "last_line": u.ref.line + u.count - 1,
                        "count": u.count, "reason": u.reason, "text": u.text} for u in report.unused],
        },
        "conversations": [
            {"id": c.id, "proto": c.proto, "summary": c.summary, "original": [_ep(c.original[0]), _ep(c.original[1])],
             "packets": list(c.packets)} for c in report.conversations
        ],
        "packets": [_packet(p) for p in report.packets],
    }


def write_json(report: Report, fh: IO[str]) -> None:
    """Write the same text as render_json() to a file, in chunks (no second copy in memory)."""
    json.dump(report_dict(report), fh, indent=2, sort_keys=True, ensure_ascii=False)
    fh.write("\n")


def render_json(report: Report) -> str:
    """Return the report as deterministic JSON text (sorted keys, fixed indentation)."""
    return json.dumps(report_dict(report), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
