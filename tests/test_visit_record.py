"""Visit.record() builds its LogRecord positionally (a keyword call was 3.7 % of an nft run): it must be
the record the keyword call gave, field for field, and no field a trace parser reads may be dropped."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from reportgen.model import LineRef, LogRecord
from reportgen.parsers.traces import NftTraceParser, TraceParser, Visit, XtablesMonitorParser

ROOT = Path(__file__).resolve().parent.parent
# The fields Visit.record() sets itself rather than from the parsed packet line.
OWN = {"ref", "text", "stamp", "fmt", "prefix", "trace_id"}
FIELDS = {f.name: f for f in dataclasses.fields(LogRecord)}


def _by_keyword(v: Visit) -> LogRecord:
    f = dict(v.fields)
    in_dev, out_dev = str(f.pop("in_dev", "")), str(f.pop("out_dev", ""))
    return LogRecord(
        ref=v.ref,
        text=v.text,
        stamp=None,
        fmt=v.fmt,
        prefix="",
        in_dev=in_dev,
        out_dev=out_dev,
        trace_id=v.trace_id,
        **f,  # type: ignore[arg-type]
    )


def _annotations() -> dict[str, str]:
    # The declared types as written in model.py: compiled, dataclasses.fields() holds type objects
    # (``int | None`` becomes ``type``), so they are read from the source.
    tree = ast.parse((ROOT / "reportgen" / "model.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LogRecord")
    return {
        s.target.id: ast.unparse(s.annotation)
        for s in cls.body
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
    }


TYPES = _annotations()


def _value(name: str, i: int) -> object:
    # A distinct value of the field's own type, so a field passed in the wrong position shows.
    t = TYPES[name]
    if name == "embedded":
        return (f"e{i}", None, None, i, None)
    if t.startswith("tuple"):
        return (f"{name}{i}",)
    if t == "bool":
        return True
    if t.startswith("int"):
        return 1000 + i
    return f"{name}{i}"


def test_every_field_lands_in_its_own_place() -> None:
    fields = {n: _value(n, i) for i, n in enumerate(FIELDS) if n not in OWN}
    v = Visit(LineRef("t", 1), "text", "nfttrace", "ip", "filter", "FORWARD", "abc", fields)
    got = v.record()
    assert got == _by_keyword(v)
    assert {n: getattr(got, n) for n in fields} == fields


def _visits(parser: TraceParser, path: Path) -> list[Visit]:
    out: list[Visit] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        out += parser.feed(LineRef(path.name, n), line)[0]
    return out + list(parser.flush())


TRACES = sorted(
    [*ROOT.glob("samples/*/xtables-monitor.txt"), *ROOT.glob("samples/*/nft-monitor-trace.txt")]
    + [p for p in ROOT.glob("tests/corpus/public/trace-xtm-*/trace.txt")]
    + [p for p in ROOT.glob("tests/corpus/public/trace-nft-*/trace.txt")]
)


@pytest.mark.parametrize("path", TRACES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_traces_read_the_same_record_and_drop_no_field(path: Path) -> None:
    xt = path.name == "xtables-monitor.txt" or path.parent.name.startswith("trace-xtm-")
    visits = _visits(XtablesMonitorParser() if xt else NftTraceParser(), path)
    assert visits
    for v in visits:
        assert set(v.fields) <= set(FIELDS) - OWN, set(v.fields) - set(FIELDS)
        assert v.record() == _by_keyword(v)
