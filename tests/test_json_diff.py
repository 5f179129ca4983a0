"""report.jsonl's packet diffs: the writer's part-by-part diff (jsonout._packet_diff) is the diff of
the two packets' whole objects (jsonfold.diff), byte for byte.

The writer compares a packet's hops with its example's by cheap keys (jsonout._place_key, the
record's fields, its lines and rules) and builds objects only for what differs. A key that leaves
out something the object shows would drop that change from report.jsonl silently; the variant test
below changes every field of the model a hop is made from, one at a time, and fails then.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reportgen.model import Action, Footer, HitKind, Hop, LineRef, Packet, Report, RuleHit
from reportgen.pipeline import build_report
from reportgen.render import jsonfold, jsonout
from reportgen.sources.case import load_spec

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p.name for p in (ROOT / "samples").iterdir() if p.is_dir())


def _report(case: str) -> Report:
    return build_report(load_spec([ROOT / "samples" / case]))


def _want(ex: Packet, fex: Footer | None, p: Packet, f: Footer | None) -> str:
    try:
        return jsonout._dumps(jsonfold.diff(jsonout._body(ex, fex), jsonout._body(p, f)))
    except jsonfold.Unpatchable:
        return "unpatchable"


def _got(ex: Packet, fex: Footer | None, p: Packet, f: Footer | None) -> str:
    try:
        return jsonout._dumps(jsonout._packet_diff(jsonout._Example(ex, fex), p, f))
    except jsonfold.Unpatchable:
        return "unpatchable"


@pytest.mark.parametrize("case", SAMPLES)
def test_packet_diff_is_the_diff_of_the_objects(case: str) -> None:
    """Every packet against every other packet of the sample (its behaviour's example or not, so
    hops of other places, lengths and rules are compared too)."""
    report = _report(case)
    footer = {f.packet: f for f in report.footers}
    packets = report.packets[:40]
    for ex, p in itertools.product(packets, packets):
        assert _got(ex, footer.get(ex.id), p, footer.get(p.id)) == _want(ex, footer.get(ex.id), p, footer.get(p.id))


# A value for a field that is None, by the field's annotation.
_FOR_NONE = {"Action": Action.DROP, "int": 7, "float": 1.5, "str": "x", "LineRef": LineRef("x", 1)}


# An item for a tuple field that is empty, by the annotation of its items.
_ITEM = {
    "str": "x",
    "LineRef": LineRef("x", 1),
    "RuleHit": RuleHit("filter", "INPUT", HitKind.RULE, "accept", "-j ACCEPT", None, LineRef("x", 1)),
}


def _other(value: Any, annotation: str) -> Any:
    """A value of the field's type that differs from ``value``."""
    if value is None:
        return next((v for k, v in _FOR_NONE.items() if annotation.startswith(k + " ")), None)
    if isinstance(value, bool):
        return not value
    if isinstance(value, enum.Enum):
        return next(m for m in type(value) if m != value)
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple):
        if value:
            return (*value, value[0])
        item = annotation.removeprefix("tuple[").split(",")[0]
        return (_ITEM[item],) if item in _ITEM else None
    if isinstance(value, LineRef):
        return dataclasses.replace(value, line=value.line + 1)
    return None  # a nested object (the embedded header): not part of the hop's object


@functools.cache
def _annotations() -> dict[tuple[str, str], str]:
    """Each model dataclass field's annotation as model.py spells it. A mypyc-compiled dataclass
    reports a union field's type as plain ``type`` (dataclasses.fields), so read the source."""
    tree = ast.parse((ROOT / "reportgen" / "model.py").read_text(encoding="utf-8"))
    return {
        (c.name, a.target.id): ast.unparse(a.annotation)
        for c in tree.body
        if isinstance(c, ast.ClassDef)
        for a in c.body
        if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)
    }


def _variants(obj: Any) -> list[tuple[str, Any]]:
    """obj with one field changed, for each field _other can change."""
    out = []
    for f in dataclasses.fields(obj):
        new = _other(getattr(obj, f.name), _annotations().get((type(obj).__name__, f.name), str(f.type)))
        if new is not None:
            out.append((f.name, dataclasses.replace(obj, **{f.name: new})))
    return out


def _hop_variants(h: Hop) -> list[tuple[str, Hop]]:
    e = h.event
    out = [(f"hop.{name}", v) for name, v in _variants(h) if name != "event"]
    out += [
        (f"record.{n}", dataclasses.replace(h, event=dataclasses.replace(e, record=r))) for n, r in _variants(e.record)
    ]
    out += [(f"hook.{n}", dataclasses.replace(h, event=dataclasses.replace(e, hook=k))) for n, k in _variants(e.hook)]
    out += [(f"event.{n}", dataclasses.replace(h, event=v)) for n, v in _variants(e) if n in ("rules", "extra")]
    for i, rule in enumerate(e.rules):
        for n, r in _variants(rule):
            rules = (*e.rules[:i], r, *e.rules[i + 1 :])
            out.append((f"rules[{i}].{n}", dataclasses.replace(h, event=dataclasses.replace(e, rules=rules))))
    return out


@pytest.mark.parametrize(
    "case", ["lab-nft-trace-tcp-to-internet", "lab-tcp-to-internet", "lab-xtables-trace-tcp-to-internet"]
)
def test_a_change_of_any_field_a_hop_shows_is_in_the_diff(case: str) -> None:
    """A packet with one field of one hop changed (its record, hook, rules, lines, step, stage,
    explanation...) differs from the original exactly as the objects do: nothing the hop's object
    shows is left out of the keys the writer compares."""
    report = _report(case)
    footer = {f.packet: f for f in report.footers}
    checked: set[str] = set()
    for p in report.packets[:3]:
        f = footer.get(p.id)
        for i, h in enumerate(p.hops):
            for name, variant in _hop_variants(h):
                q = dataclasses.replace(p, hops=(*p.hops[:i], variant, *p.hops[i + 1 :]))
                assert _got(p, f, q, f) == _want(p, f, q, f), name
                checked.add(name.split(".")[0] + "." + name.split(".")[-1])
    # The fields the hop's object reads were all changed at least once.
    for name in (
        "record.prefix",
        "record.stamp",
        "record.ipid",
        "record.ref",
        "hook.action",
        "hop.outcome",
        "hop.explanation",
    ):
        assert name in checked


@pytest.mark.parametrize("case", ["lab-tcp-to-internet", "lab-published-port", "lab-tcp-dropped"])
def test_a_change_of_any_field_of_the_packet_or_footer_is_in_the_diff(case: str) -> None:
    """The same for what a packet states besides its hops: role, path, summary, NAT, skipped hooks,
    verdict and footer (jsonout._rest_models)."""
    report = _report(case)
    footer = {f.packet: f for f in report.footers}
    checked: set[str] = set()
    for p in report.packets[:4]:
        f = footer.get(p.id)
        variants = [(n, q, f) for n, q in _variants(p) if n not in ("id", "conversation", "hops")]
        variants += [(f"footer.{n}", p, g) for n, g in (_variants(f) if f else []) if n != "packet"]
        variants += (
            [(f"verdict.{n}", dataclasses.replace(p, verdict=v), f) for n, v in _variants(p.verdict)]
            if p.verdict
            else []
        )
        for i, nat in enumerate(p.nat):
            for n, x in _variants(nat):
                variants.append((f"nat.{n}", dataclasses.replace(p, nat=(*p.nat[:i], x, *p.nat[i + 1 :])), f))
        for i, sk in enumerate(p.skipped):
            for n, x in _variants(sk):
                variants.append(
                    (f"skipped.{n}", dataclasses.replace(p, skipped=(*p.skipped[:i], x, *p.skipped[i + 1 :])), f)
                )
        for name, q, g in variants:
            assert _got(p, f, q, g) == _want(p, f, q, g), name
            checked.add(name)
    for name in (
        "summary",
        "role",
        "footer.decided_by",
        "footer.code",
        "verdict.evidence",
        "verdict.code",
    ):
        assert name in checked
    assert "nat.evidence" in checked or not any(p.nat for p in report.packets[:4])


def _streamed(spans: list[tuple[int, int]], prefix: str) -> str:
    text = jsonout._RunsText(prefix)
    for a, b in spans:
        text.add(a, b)
    return text.text()


@given(
    st.lists(st.tuples(st.integers(1, 60), st.integers(0, 4)), max_size=30),
    st.booleans(),
    st.sampled_from(["", "p"]),
)
def test_runs_in_one_pass_are_the_streamed_runs(starts: list[tuple[int, int]], ordered: bool, prefix: str) -> None:
    """jsonout._runs (a list of spans at once) writes what _RunsText (spans as they come, for the unused
    lines) writes: touching, overlapping, periodic and unordered spans alike."""
    spans = [(a, a + w) for a, w in starts]
    if ordered:
        spans.sort()
    assert jsonout._runs(spans, prefix) == _streamed(spans, prefix)
    assert jsonout._runs(iter(spans), prefix) == _streamed(spans, prefix)


def test_runs_of_periodic_spans() -> None:
    spans = [(1, 9), (17, 25), (33, 41), (49, 57), (60, 60), (62, 62), (70, 71), (80, 81), (90, 91), (95, 96)]
    assert jsonout._runs(spans) == _streamed(spans, "") == "1-9/16*4,60,62,70-71/10*3,95-96"
