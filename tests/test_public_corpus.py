"""The public corpus: trace lines people posted publicly, and the facts those lines prove.

Every folder tests/corpus/public/<case>/ holds the lines exactly as posted, a PROVENANCE.md and a
facts.yaml (schema: tests/corpus/README.md). One test per case runs reportgen's own pipeline on the
folder and checks every fact; a failure lists every fact of the case that the report gets wrong.

The report's JSON shape is read ONLY through the adapter functions at the top of this module. They
understand the planned fields (hop ``hook_candidates``/``action``/``redacted``, verdict
``code``/``evidence``) and fall back to today's fields where those are absent, so the corpus
measures the tool as it is today and keeps measuring it while the JSON grows.
"""

from __future__ import annotations

import ipaddress
import json
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

CORPUS = Path(__file__).resolve().parent / "corpus" / "public"
NOT_INPUT = {"PROVENANCE.md", "facts.yaml", "case.yaml", "prefixes.yaml"}

# The closed verdict vocabulary of facts.yaml (tests/corpus/README.md).
VERDICT_CODES = frozenset(
    {
        "delivered-local",
        "delivered-to-port",
        "forwarded-out",
        "dropped-by-rule",
        "dropped-by-policy",
        "rejected",
        "last-seen",
        "unknown",
    }
)
HOP_FIELDS = (
    "family",
    "hook",
    "table",
    "chain",
    "tool",
    "in",
    "out",
    "src",
    "dst",
    "proto",
    "sport",
    "dport",
    "icmp_type",
    "icmp_id",
    "action",
    "redacted",
)
PACKET_FIELDS = ("verdict", "verdict_cites", "role", "nat", "same_packet", "not_same_packet")


# ---------------------------------------------------------------------------------------------
# Adapters: the only code that knows the JSON report's shape.
# ---------------------------------------------------------------------------------------------


def _ref_of(d: dict[str, Any] | None) -> tuple[str, int] | None:
    if not isinstance(d, dict) or "file" not in d or "line" not in d:
        return None
    return str(d["file"]), int(d["line"])


def _hop_lines(hop: dict[str, Any]) -> set[tuple[str, int]]:
    """Every trace line a hop was made from: its packet line and its trace rule lines."""
    refs = {_ref_of(hop.get("line"))}
    refs.update(_ref_of(r.get("line")) for r in hop.get("rules") or [])
    refs.update(_ref_of(r) for r in hop.get("lines") or [])  # conntrack lines, a second base chain's
    return {r for r in refs if r is not None}


def hop_for_line(
    report: dict[str, Any], ref: tuple[str, int], select: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The (packet, hop) made from trace line ``ref``, or None when no hop used it.

    ``select`` picks one record when a physical line holds several (hop fields that must match,
    e.g. ``{prefix: "[UFW ALLOW]", dport: 53152}``).
    """
    for packet in report.get("packets") or []:
        for hop in packet.get("hops") or []:
            if ref in _hop_lines(hop) and all(_same(hop_value(hop, k), v) for k, v in (select or {}).items()):
                return packet, hop
    return None


def packet_for_line(
    report: dict[str, Any], ref: tuple[str, int], select: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    found = hop_for_line(report, ref, select)
    return None if found is None else found[0]


def hook_candidates(hop: dict[str, Any]) -> set[str]:
    """The hooks the report places a hop at: one, or the set it says the line could be."""
    cands = hop.get("hook_candidates")
    if hop.get("hook") is None and cands:
        return {str(c).upper() for c in cands}
    return {str(hop.get("hook")).upper()} if hop.get("hook") else set()


def hop_action(hop: dict[str, Any]) -> str | None:
    """What the report says happened at this hook (drop/reject/accept/audit/limit/log)."""
    if hop.get("action"):
        return str(hop["action"]).lower()
    # Today: only trace sources carry a verdict per hook (the last rule seen there).
    rules = hop.get("rules") or []
    if rules and rules[-1].get("verdict"):
        return str(rules[-1]["verdict"]).lower()
    return None


def is_redacted(hop: dict[str, Any], name: str) -> bool:
    return name in (hop.get("redacted") or [])


def verdict_code(packet: dict[str, Any]) -> str:
    """The packet's verdict in the closed set; today's ``kind`` is mapped when ``code`` is absent."""
    v = packet.get("verdict")
    if not v:
        return "unknown"
    if v.get("code"):
        return str(v["code"])
    kind = v.get("kind")
    said = f"{v.get('explanation') or ''} {v.get('rule') or ''}".lower()
    if kind == "dropped":
        if "reject" in said:
            return "rejected"
        return "dropped-by-policy" if "policy" in said else "dropped-by-rule"
    if kind == "delivered":
        return "delivered-local" if v.get("where") == "local process" else "delivered-to-port"
    if kind == "left":
        return "forwarded-out"
    if kind == "last-seen":
        return "last-seen"
    return "unknown"


def verdict_evidence(packet: dict[str, Any]) -> str:
    v = packet.get("verdict") or {}
    if v.get("evidence"):
        return str(v["evidence"])
    return " ".join(str(v.get(k) or "") for k in ("explanation", "rule"))


def hop_value(hop: dict[str, Any], name: str) -> Any:
    """A header field of a hop (src, dst, proto, sport, dport, icmp_type, icmp_id, in, out ...).

    The JSON ``prefix`` is verbatim, with the blank its rule author put before IN= ("[UFW ALLOW] ");
    facts name it as a reader sees it, trimmed.
    """
    value = hop.get(name)
    return value.strip() if name == "prefix" and isinstance(value, str) else value


def unused_reasons(report: dict[str, Any]) -> dict[tuple[str, int], str]:
    """Every unused line (file, line) with its reason, from report.json's runs per file and reason."""
    from reportgen.render.jsonout import expand_runs

    out: dict[tuple[str, int], str] = {}
    for u in (report.get("input") or {}).get("unused") or []:
        for first, last in expand_runs(u["runs"]):
            out.update(dict.fromkeys(((str(u["file"]), n) for n in range(first, last + 1)), str(u["reason"])))
    return out


def line_accounting(report: dict[str, Any]) -> tuple[int, int]:
    """(trace lines used, trace lines in total) as the report's input accounting states them."""
    inp = report.get("input") or {}
    return int(inp.get("lines_used") or 0), int(inp.get("lines_total") or 0)


def nat_entries(packet: dict[str, Any]) -> list[dict[str, Any]]:
    return list(packet.get("nat") or [])


# ---------------------------------------------------------------------------------------------
# Running a case and checking its facts.
# ---------------------------------------------------------------------------------------------


@dataclass
class CaseResult:
    name: str
    sources: list[str]
    right: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    crash: str = ""  # a traceback's last line, or a clean input error, when the pipeline failed
    lines_used: int = 0
    lines_total: int = 0


def case_dirs() -> list[Path]:
    return sorted(p.parent for p in CORPUS.glob("*/facts.yaml"))


def run_case(case: Path) -> tuple[dict[str, Any], str]:
    """Run reportgen's pipeline in-process on a case folder: (JSON report dict, text report)."""
    from reportgen.pipeline import build_report
    from reportgen.render.jsonfold import read_packets
    from reportgen.render.jsonout import render_json
    from reportgen.render.text import render_text
    from reportgen.sources.case import load_spec

    if (case / "case.yaml").exists():
        spec = load_spec([case])
    else:  # a folder without a manifest: every file but the corpus's own notes is input
        spec = load_spec(sorted(p for p in case.iterdir() if p.is_file() and p.name not in NOT_INPUT))
        spec.name = spec.title = case.name
    report = build_report(spec)
    doc, packets = render_json(report)
    parsed = json.loads(doc)
    return {**parsed, "packets": list(read_packets(parsed, packets.splitlines()))}, render_text(report)


def _parse_ref(text: str) -> tuple[str, int]:
    name, _, num = str(text).rpartition(":")
    return name, int(num)


def _same(a: Any, b: Any) -> bool:
    """Compare a report value with a fact value: "" and None are both 'empty'; case-insensitive;
    IPv6 addresses compare as addresses (the kernel prints them uncompressed)."""
    if a in (None, "") or b in (None, ""):
        return a in (None, "") and b in (None, "")
    try:
        return ipaddress.ip_address(str(a)) == ipaddress.ip_address(str(b))
    except ValueError:
        return str(a).lower() == str(b).lower()


def _check_hop(report: dict[str, Any], fact: dict[str, Any]) -> Iterable[tuple[bool, str]]:
    where = str(fact["line"]) + (f" {fact['select']}" if fact.get("select") else "")
    ref = _parse_ref(str(fact["line"]))
    found = hop_for_line(report, ref, fact.get("select"))
    keys = [k for k in HOP_FIELDS if k in fact]
    if found is None:
        reason = unused_reasons(report).get(ref, "not in any hop")
        for k in keys:
            yield False, f"{where} {k}: line not used ({str(reason)[:70]})"
        return
    _, hop = found
    for k in keys:
        want = fact[k]
        if k == "hook":
            got: Any = hook_candidates(hop)
            wanted = {str(w).upper() for w in (want if isinstance(want, list) else [want])}
            yield got == wanted, f"{where} hook: want {sorted(wanted)}, report says {sorted(got)}"
        elif k == "action":
            got = hop_action(hop)
            yield _same(got, want), f"{where} action: want {want}, report says {got}"
        elif k == "redacted":
            for name in want:
                shown = hop_value(hop, name)
                yield is_redacted(hop, name), f"{where} redacted {name}: not marked redacted (value {shown!r})"
        else:
            got = hop_value(hop, k)
            yield _same(got, want), f"{where} {k}: want {want!r}, report says {got!r}"


def _check_packet(report: dict[str, Any], fact: dict[str, Any]) -> Iterable[tuple[bool, str]]:
    where = str(fact["packet_of"]) + (f" {fact['select']}" if fact.get("select") else "")
    packet = packet_for_line(report, _parse_ref(str(fact["packet_of"])), fact.get("select"))
    keys = [k for k in PACKET_FIELDS if k in fact]
    if packet is None:
        for _ in range(_count_facts([fact])):
            yield False, f"packet of {where}: line not used, no packet"
        return
    pid = packet.get("id")
    for k in keys:
        want = fact[k]
        if k == "verdict":  # one code, or a list when the lines prove only "one of these"
            wanted = set(want) if isinstance(want, list) else {want}
            assert wanted <= VERDICT_CODES, f"facts.yaml: verdict {want!r} is not in the closed set"
            got = verdict_code(packet)
            yield got in wanted, f"packet of {where} verdict: want {want}, report says {got}"
        elif k == "verdict_cites":
            ev = verdict_evidence(packet)
            yield str(want) in ev, f"packet of {where} verdict evidence lacks {want!r}: {ev.strip()[:160]!r}"
        elif k == "role":
            got = packet.get("role")
            yield got == want, f"packet of {where} role: want {want}, report says {got}"
        elif k == "nat":
            got_nat = nat_entries(packet)
            if not want:
                yield not got_nat, f"packet of {where} nat: want none, report says {got_nat!r}"
            for n in want:
                ok = any(
                    _same(g.get("type"), n["type"])
                    and _nat_after(g) in (str(n["after"]), str(n["after"]).split(":")[0])
                    for g in got_nat
                )
                yield ok, f"packet of {where} nat: want {n}, report says {got_nat!r}"
        else:
            for other in want:
                op = packet_for_line(report, _parse_ref(other))
                same = op is not None and op.get("id") == pid
                if k == "same_packet":
                    yield (
                        same,
                        f"{where} and {other}: want the same packet, report says "
                        + (f"{pid} and {op.get('id')}" if op else f"{other} is in no packet"),
                    )
                else:
                    yield not same, f"{where} and {other}: want different packets, report joins them in {pid}"


def _nat_after(n: dict[str, Any]) -> str:
    after = n.get("after") or {}
    addr = after.get("addr") or "unknown address"  # null: no input shows it (docs/json-schema.md)
    return f"{addr}:{after.get('port')}" if after.get("port") is not None else addr


def check_case(case: Path) -> CaseResult:
    data = yaml.safe_load((case / "facts.yaml").read_text(encoding="utf-8")) or {}
    res = CaseResult(case.name, [str(s) for s in data.get("sources") or []])
    facts = data.get("facts") or []
    try:
        report, text = run_case(case)
    except Exception as exc:  # noqa: BLE001 - a crash is a result to report, not a harness error
        from reportgen.errors import InputError

        kind = "input error" if isinstance(exc, InputError) else "crash"
        res.crash = f"{kind}: " + traceback.format_exception_only(type(exc), exc)[-1].strip()
        res.wrong.extend(f"{res.crash} (fact {i + 1})" for i in range(_count_facts(facts)))
        return res
    res.lines_used, res.lines_total = line_accounting(report)
    unused = unused_reasons(report)
    for fact in facts:
        if "line" in fact:
            checks = list(_check_hop(report, fact))
        elif "packet_of" in fact:
            checks = list(_check_packet(report, fact))
        elif "forbidden" in fact:
            checks = [(s not in text, f"text report contains forbidden {s!r}") for s in fact["forbidden"]]
        elif "unused" in fact:
            checks = [(_parse_ref(u) in unused, f"{u}: not listed as unused") for u in fact["unused"]]
        else:
            raise AssertionError(f"{case.name}/facts.yaml: fact without line/packet_of/forbidden/unused: {fact}")
        for ok, msg in checks:
            (res.right if ok else res.wrong).append(msg)
    return res


def _count_facts(facts: list[dict[str, Any]]) -> int:
    n = 0
    for f in facts:
        if "line" in f:
            n += sum(len(f[k]) if k == "redacted" else 1 for k in HOP_FIELDS if k in f)
        elif "packet_of" in f:
            n += sum(
                len(f[k]) if k in ("same_packet", "not_same_packet", "nat") and f[k] else 1
                for k in PACKET_FIELDS
                if k in f
            )
        else:
            n += len(f.get("forbidden") or f.get("unused") or [])
    return n


@pytest.mark.parametrize("case", case_dirs(), ids=lambda p: p.name)
def test_public_case_facts(case: Path) -> None:
    res = check_case(case)
    if res.wrong:
        total = len(res.wrong) + len(res.right)
        pytest.fail(
            f"{len(res.wrong)} of {total} facts wrong in {case.name}:\n" + "\n".join(f"  - {w}" for w in res.wrong),
            pytrace=False,
        )


def test_corpus_is_large_and_sourced() -> None:
    """Issue 8: at least 30 cases from at least 15 distinct public sources, each with its provenance."""
    cases = case_dirs()
    missing = [c.name for c in cases if not (c / "PROVENANCE.md").exists()]
    assert not missing, f"cases without PROVENANCE.md: {missing}"
    sources = {s for c in cases for s in (yaml.safe_load((c / "facts.yaml").read_text()) or {}).get("sources") or []}
    assert len(cases) >= 30 and len(sources) >= 15, f"{len(cases)} cases from {len(sources)} sources"


def test_facts_name_lines_that_exist() -> None:
    """Every "file:line" a facts.yaml names is a line of a file in its case folder (catches typos)."""
    bad = []
    for case in case_dirs():
        data = yaml.safe_load((case / "facts.yaml").read_text(encoding="utf-8")) or {}
        for fact in data.get("facts") or []:
            refs = [fact.get("line"), fact.get("packet_of"), *(fact.get("unused") or [])]
            refs += [*(fact.get("same_packet") or []), *(fact.get("not_same_packet") or [])]
            for ref in filter(None, refs):
                name, line = _parse_ref(str(ref))
                path = case / name
                if not path.is_file() or not 1 <= line <= len(path.read_text(encoding="utf-8").splitlines()):
                    bad.append(f"{case.name}: {ref}")
    assert not bad, bad


def test_adapters_read_the_planned_json_fields_and_todays() -> None:
    """The adapters understand the fields other helpers are adding, and fall back to today's."""
    planned = {"hook": None, "hook_candidates": ["PREROUTING", "INPUT"], "action": "DROP", "redacted": ["src"]}
    assert hook_candidates(planned) == {"PREROUTING", "INPUT"}
    assert hop_action(planned) == "drop" and is_redacted(planned, "src") and not is_redacted(planned, "dst")
    today = {"hook": "FORWARD", "rules": [{"verdict": "ACCEPT", "line": {"file": "t", "line": 2}}]}
    assert hook_candidates(today) == {"FORWARD"} and hop_action(today) == "accept"
    assert verdict_code({"verdict": {"code": "rejected", "kind": "dropped"}}) == "rejected"
    assert verdict_code({"verdict": {"kind": "dropped", "explanation": "the chain policy DROP"}}) == "dropped-by-policy"
    assert verdict_code({"verdict": {"kind": "delivered", "where": "local process"}}) == "delivered-local"
    assert verdict_code({"verdict": None}) == "unknown"
    assert verdict_evidence({"verdict": {"evidence": "prefix [UFW BLOCK]", "explanation": "x"}}) == "prefix [UFW BLOCK]"
    report = {
        "packets": [
            {
                "id": "p1",
                "hops": [
                    {"line": {"file": "k", "line": 1}, "prefix": "[UFW AUDIT]"},
                    {"line": {"file": "k", "line": 1}, "prefix": "[UFW ALLOW]"},
                ],
            }
        ]
    }
    found = hop_for_line(report, ("k", 1), {"prefix": "[UFW ALLOW]"})
    assert found is not None and found[1]["prefix"] == "[UFW ALLOW]"
    assert hop_for_line(report, ("k", 2)) is None
    assert _same("fe80:0000:0000:0000:0000:0000:0000:0001", "fe80::1") and _same(None, "") and not _same("", "eth0")
