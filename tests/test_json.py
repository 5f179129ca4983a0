"""JSON schema 5: report.json grows with distinct behaviour, report.jsonl holds every packet.

What a reader of the JSON relies on: every input line is reachable from report.json (a group's line
runs or an unused run), the counts are exact, a repetitive case gives a small report.json (alike
conversations are one kind, told once), every packet's and conversation's whole object can be
rebuilt (jsonfold.read_packets, read_conversations), input text survives the trip byte for byte,
and the streamed writer gives the same bytes as the whole-report one while holding no packet.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
import tracemalloc
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reportgen import JSON_SCHEMA_VERSION
from reportgen.model import ConversationResult, Report, VerdictCode
from reportgen.pipeline import build_report
from reportgen.render import jsonfold, jsonout
from reportgen.render.jsonfold import read_conversations, read_packets
from reportgen.render.jsonout import JsonStream, expand_runs, render_json, write_json
from reportgen.render.write import output_folder
from reportgen.sources.case import load_spec

ROOT = Path(__file__).resolve().parents[1]
PING = ROOT / "samples" / "seed-host-to-container" / "dmesg.log"  # one echo request and its reply


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "tests" / "bench" / "bench_scale.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _docs(report: Report) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """report.json, and every packet's whole object rebuilt from it and report.jsonl."""
    doc, lines = render_json(report)
    parsed = json.loads(doc)
    return parsed, list(read_packets(parsed, lines.splitlines()))


def _numbers(runs: str) -> list[int]:
    return [n for a, b in expand_runs(runs) for n in range(a, b + 1)]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, int]:
    """20k lines of the benchmark's mixed kern.log: distinct TCP flows, interleaved, half noise."""
    log = tmp_path_factory.mktemp("mixed") / "kern.log"
    n = _bench().make_kernlog(log, 20_000)
    return build_report(load_spec([log])), n


def test_every_line_is_reachable_from_report_json_and_counts_are_exact(mixed: tuple[Report, int]) -> None:
    report, total = mixed
    doc, packets = _docs(report)
    assert doc["schema"] == f"reportgen-report/{JSON_SCHEMA_VERSION}" == "reportgen-report/6"
    assert list(doc)[:4] == ["schema", "generator", "packets_file", "summary"]  # the answer first
    behaviours = {b["id"]: b for b in doc["behaviours"]}
    used: Counter[int] = Counter()
    group_ids: dict[tuple[str, str], list[str]] = {}
    conversations = list(read_conversations(doc))
    for c in conversations:
        for g in c["groups"]:
            assert [f["file"] for f in g["lines"]] == ["kern.log"]
            used.update(_numbers(g["lines"][0]["runs"]))
            ids = [f"p{n}" for n in _numbers(g["packets"])]
            assert len(ids) == g["count"]
            group_ids[(c["id"], g["id"])] = ids
            assert len(g["nat"]) == len(behaviours[g["behaviour"]]["nat"])
    unused: Counter[int] = Counter()
    for u in doc["input"]["unused"]:
        nums = _numbers(u["runs"])
        assert len(nums) == u["count"] and nums[0] == u["line"]
        unused.update(nums)
    # Every line once: used by exactly one group or listed unused, never both, none missing.
    assert sorted(used + unused) == list(range(1, total + 1))
    assert (len(used), len(unused)) == (doc["input"]["lines_used"], doc["input"]["lines_unused"])
    assert doc["input"]["lines_total"] == total == report.lines_total
    # The counts: groups sum to the summary's packets, and report.jsonl has each packet once, in its group.
    assert sum(len(ids) for ids in group_ids.values()) == doc["summary"]["packets"] == len(packets) > 1000
    assert sorted(p["id"] for p in packets) == sorted(i for ids in group_ids.values() for i in ids)
    assert all(p["id"] in group_ids[(p["conversation"], p["group"])] for p in packets)
    assert sum(b["counts"]["packets"] for b in doc["behaviours"]) == len(packets)
    # Each behaviour is told once, however many conversations show it.
    told = [b["id"] for b in doc["behaviours"]]
    assert len(told) == len(set(told)) < 20 < len(conversations)
    assert {g["behaviour"] for c in conversations for g in c["groups"]} == set(told)
    # Alike conversations are one kind: the bench's flows differ only in ports, addresses, ids and lines.
    kinds = doc["conversation_kinds"]
    assert sum(k["count"] for k in kinds) == len(kinds[0]["members"]) + sum(len(k["members"]) for k in kinds[1:])
    assert len(kinds) <= 3 and sum(k["count"] for k in kinds) == len(conversations) == doc["summary"]["flows"]


def test_a_packets_line_holds_the_schema_3_packet_fields(mixed: tuple[Report, int]) -> None:
    report, _ = mixed
    _, packets = _docs(report)
    p = packets[0]
    assert set(p) == {
        "id",
        "conversation",
        "group",
        "role",
        "path",
        "summary",
        "hops",
        "nat",
        "skipped",
        "verdict",
        "footer",
        "behaviour",
    }
    first = report.packets[0]
    assert (p["id"], p["summary"], len(p["hops"])) == (first.id, first.summary, len(first.hops))
    assert p["hops"][0]["line"] == {"file": "kern.log", "line": first.hops[0].event.record.ref.line}
    assert p["footer"]["code"] == p["verdict"]["code"]


def _repeated_ping(folder: Path, times: int) -> Report:
    """One flow's pattern repeated: the same ping (one ICMP id) sent ``times`` times, a second apart."""
    folder.mkdir()
    out = []
    for i in range(times):
        for ln in PING.read_text().splitlines():
            m = re.fullmatch(r"\[\s*([0-9.]+)\](.*)", ln)
            assert m
            body = m.group(2).replace("SEQ=1 ", f"SEQ={i + 1} ").replace("ID=23020 ", f"ID={23020 + i} ")
            out.append(f"[{float(m.group(1)) + i:12.6f}]{body}")
    (folder / "dmesg.log").write_text("\n".join(out) + "\n")
    return build_report(load_spec([folder / "dmesg.log"]))


def test_report_json_grows_with_behaviours_not_packets(tmp_path: Path) -> None:
    sizes = {}
    for times in (30, 600):
        report = _repeated_ping(tmp_path / str(times), times)
        doc, lines = render_json(report)
        sizes[times] = (len(doc.encode()), len(lines.encode()))
        d = json.loads(doc)
        [conv] = read_conversations(d)
        assert [g["count"] for g in conv["groups"]] == [times, times]  # exact counts, nothing folded away
        assert sorted(
            _numbers(conv["groups"][0]["lines"][0]["runs"]) + _numbers(conv["groups"][1]["lines"][0]["runs"])
        ) == list(range(1, 16 * times + 1))
        assert len(lines.splitlines()) == 2 * times
    (json_small, jsonl_small), (json_big, jsonl_big) = sizes[30], sizes[600]
    assert json_big < 1.1 * json_small, sizes  # 20x the packets: report.json about the same
    # report.jsonl: every packet, each a line of its own values (a diff against its behaviour's example)
    assert jsonl_big > 15 * jsonl_small, sizes


HOSTILE_PREFIX = 'q"b\\s\x01\x1b[1m\u2028\u2029\u202e\ud7ff😀 '


def test_hostile_strings_and_huge_integers_round_trip(tmp_path: Path) -> None:
    huge = 123456789012345678901234567890  # beyond 64 bits: orjson refuses it, json writes it
    (tmp_path / "kern.log").write_text(
        f"[ 1.000001] {HOSTILE_PREFIX}IN=eth0 OUT= MAC= SRC=192.0.2.1 DST=192.0.2.2 LEN=60 TOS=0x00 PREC=0x00 "
        f"TTL=64 ID=1 PROTO=TCP SPT={huge} DPT=22 WINDOW=1 RES=0x00 SYN URGP=0\n"
        f'[ 2.0] not netfilter "\x02\u2028 {huge}\n',
        encoding="utf-8",
    )
    report = build_report(load_spec([tmp_path / "kern.log"]))
    [p] = report.packets
    assert p.hops[0].event.record.prefix == HOSTILE_PREFIX and p.hops[0].event.record.sport == huge
    doc_text, lines = render_json(report)
    assert len(lines.splitlines()) == 1  # one packet, one line: U+2028 and C0 stay escaped or inside a string
    doc = json.loads(doc_text)
    [packet] = read_packets(doc, lines.splitlines())
    for hop in (packet["hops"][0], doc["behaviours"][0]["hops"][0]):
        assert hop["prefix"] == HOSTILE_PREFIX and hop["sport"] == huge
    [u] = doc["input"]["unused"]
    assert u["text"] == report.unused[0].text and "\u2028" in u["text"]
    for text in (doc_text, lines):
        assert not any(chr(c) in text for c in range(32) if chr(c) != "\n")


def test_orjson_and_its_fallback_encode_alike() -> None:
    obj = {"b": [1, 2.5, None, True, 6717.619904], "a": HOSTILE_PREFIX + "\x85", "c": {"z": "\x00\x7f", "y": -(2**63)}}
    fast = jsonout._dumps({**obj, "n": 0})  # orjson
    slow = jsonout._dumps({**obj, "n": 2**64})  # beyond 64 bits: the json module
    assert slow.replace(str(2**64), "0", 1) == fast
    assert json.loads(slow) == {**obj, "n": 2**64}
    assert len(slow.splitlines()) == 1 and "\\u2028" in slow  # escaped, same value


def _results(report: Report) -> list[ConversationResult]:
    """The whole report cut into conversations, as the streaming pipeline hands them to the writer."""
    by_conv = {c.id: c for c in report.conversations}
    answers = {a.conversation: a for a in report.answers}
    out = []
    for conv_id, _, _, packets, groups, footers in jsonout._parts(report):
        c = by_conv[conv_id]
        out.append(ConversationResult(c, tuple(packets), tuple(groups), answers[conv_id], tuple(footers)))
    return out


def test_the_stream_writes_what_the_whole_report_writes(tmp_path: Path, mixed: tuple[Report, int]) -> None:
    report, _ = mixed
    whole, streamed = tmp_path / "whole", tmp_path / "streamed"
    whole.mkdir()
    streamed.mkdir()
    assert write_json(report, whole) == ["report.json", "report.jsonl"]
    stream = JsonStream(streamed)
    results = _results(report)
    for r in [*results, *results[:50]]:  # more than the final pass writes: nothing of it may remain
        stream(r)  # the stream is a sink: called with each result
    stream.restart()  # the pipeline explains the case again: what was added before is forgotten
    for r in results:
        stream.add(r)
    # The head only: close reads no conversation, packet, group, answer or footer of the report.
    stream.close(replace(report, conversations=(), packets=(), groups=(), answers=(), footers=(), crossings=()))
    for name in ("report.json", "report.jsonl"):
        assert (streamed / name).read_bytes() == (whole / name).read_bytes(), name
    assert sorted(p.name for p in streamed.iterdir()) == ["report.json", "report.jsonl"]  # no spool left


def test_the_stream_holds_no_packet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory is O(distinct behaviours and kinds): adding ten times the conversations keeps what is
    held flat; members' rows wait in memory only up to the spill size, then go to the spool."""
    monkeypatch.setattr(jsonout, "_SPILL_BYTES", 16_000)
    report = _repeated_ping(tmp_path / "ping", 2)
    [result] = _results(report)
    stream = JsonStream(tmp_path)
    held = []
    for n in (1000, 10000):
        tracemalloc.start()
        for i in range(n):
            stream.add(replace(result, conversation=replace(result.conversation, id=f"c{i}")))
        held.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
    stream.close(report)
    # What a round leaves held must not grow with its conversations: 9,000 more may add under 7 bytes
    # each. (The base differs by build: mypyc-compiled modules allocate ~100 KB of their own constants
    # on first use, the interpreter ~30 KB, so the bound is on the growth, not an absolute size.)
    assert held[1] < held[0] + 64_000 and held[1] < 256_000, held
    doc = json.loads((tmp_path / "report.json").read_text())
    assert [k["count"] for k in doc["conversation_kinds"]] == [11000] and len(doc["behaviours"]) == 2
    assert doc["behaviours"][0]["counts"] == {"packets": 22000, "groups": 11000, "conversations": 11000}
    # Spilled and held rows come back whole and in the order they were added.
    ids = [f"c{i}" for i in range(1000)] + [f"c{i}" for i in range(10000)]
    assert [c["id"] for c in read_conversations(doc)] == ids


def _kind_count(tmp_path: Path, results: list[ConversationResult]) -> list[int]:
    tmp_path.mkdir()
    stream = JsonStream(tmp_path)
    for r in results:
        stream.add(r)
    stream.close(_repeated_ping(tmp_path / "head", 1))
    return [k["count"] for k in json.loads((tmp_path / "report.json").read_text())["conversation_kinds"]]


def test_a_kind_folds_only_conversations_that_say_the_same(tmp_path: Path) -> None:
    """Conversations that differ only in their own identity (id, addresses, ports, cited lines, group
    ids, packets, lines, stamps) are one kind; one whose answer, verdict or groups differ is not:
    the kind's key must cover everything the kind states."""
    log = tmp_path / "kern.log"
    _bench().make_repetitive(log, 124)  # the sample's connection twice: another client port and IP ids
    r, again = _results(build_report(load_spec([log])))
    assert (r.conversation.original[0].port, again.conversation.original[0].port) == (1024, 1025)
    assert _kind_count(tmp_path / "alike", [r, again]) == [2]
    c, a = r.conversation, r.answer
    g0 = r.groups[0]
    others = [
        replace(r, answer=replace(a, sentence=a.sentence + " Also this.")),
        replace(r, answer=replace(a, worst=VerdictCode.DROPPED_BY_RULE)),
        replace(r, answer=replace(a, assumptions=(*a.assumptions, "one more"))),
        replace(r, conversation=replace(c, proto="UDP")),
        replace(r, groups=(replace(g0, behaviour="b9"), *r.groups[1:])),
        replace(r, groups=(replace(g0, packets=g0.packets[:1]), *r.groups[1:])) if g0.count > 1 else None,
        replace(r, groups=r.groups[:-1]),
    ]
    for i, o in enumerate(x for x in others if x is not None):
        assert _kind_count(tmp_path / f"o{i}", [r, o]) == [1, 1], o


@pytest.mark.parametrize("case", sorted(p.name for p in (ROOT / "samples").iterdir() if p.is_dir()))
def test_report_json_and_jsonl_rebuild_every_object_exactly(case: str) -> None:
    """read_packets gives each packet's whole object as the writer renders it from the model (schema
    4's line plus its behaviour), and read_conversations each conversation's entry, byte for byte."""
    report = build_report(load_spec([ROOT / "samples" / case]))
    doc_text, lines = render_json(report)
    doc = json.loads(doc_text)
    footers = {f.packet: f for f in report.footers}
    group_of = {pid: g for g in report.groups for pid in g.packets}
    want = [
        {
            **jsonout._packet(p),
            "footer": jsonout._footer(footers.get(p.id)),
            "group": group_of[p.id].id,
            "behaviour": group_of[p.id].behaviour,
        }
        for part in jsonout._parts(report)
        for p in part[3]
    ]
    got = list(read_packets(doc, lines.splitlines()))
    assert [jsonout._dumps(x) for x in got] == [jsonout._dumps(x) for x in want]
    assert any("diff" in json.loads(x) for x in lines.splitlines()) or len(report.packets) == len(doc["behaviours"])
    by_id = {p.id: p for p in report.packets}
    entries = [
        jsonout._conversation_entry(conv_id, conv, answer, groups, by_id)
        for conv_id, conv, answer, _, groups, _ in jsonout._parts(report)
    ]
    assert sorted(jsonout._dumps(c) for c in read_conversations(doc)) == sorted(jsonout._dumps(e) for e in entries)


def test_texts_are_cut_at_whole_values_only() -> None:
    """A member's value is cut out of a text only as a whole token; filling gives the text back."""
    text = "10.0.0.1:80 → 10.0.0.10:1080 via eth80, port 80. kern.log:80 and x.log:80"
    slots = [("10.0.0.1", 0), ("80", 1)]
    parts = jsonfold.cut_values(text, slots)
    assert parts == [0, ":", 1, " → 10.0.0.10:1080 via eth80, port ", 1, ". kern.log:", 1, " and x.log:", 1]
    assert jsonfold.fill_values(parts, ["10.0.0.1", 80]) == text
    assert jsonfold.cut_values("no value here", slots) == "no value here"


def test_a_diff_patches_back_to_the_packet() -> None:
    base = {"a": 1, "hops": [{"x": 1, "y": 0, "line": {"file": "k", "line": 3}}, {"x": 2}], "v": None, "l": [1]}
    new = {"a": 1, "hops": [{"x": 1, "y": 0, "line": {"file": "k", "line": 9}}, {"x": 5}], "v": {"c": 1}, "l": [1, 2]}
    d = jsonfold.diff(base, new)
    # The small line reference is whole (patching by key gives it back); the hop is diffed by key.
    assert d == {"hops": {"0": {"line": {"file": "k", "line": 9}}, "1": {"x": 5}}, "v": {"c": 1}, "l": [1, 2]}
    assert jsonfold.patch(base, d) == new and base["hops"][0]["line"]["line"] == 3  # base untouched
    for other_keys in ({"v": {"c": 1}}, {"v": [1]}):  # a patch would keep "c", or index a list
        with pytest.raises(jsonfold.Unpatchable):
            jsonfold.diff(other_keys, {"v": {"d": 1}})


@pytest.mark.parametrize("seed", range(20))
def test_runs_name_exactly_their_numbers(seed: int) -> None:
    rng = random.Random(seed)
    nums: set[int] = set()
    start = rng.randint(1, 50)
    for _ in range(rng.randint(0, 12)):  # periodic blocks, plain spans and strays
        width, step, times = rng.randint(0, 4), rng.randint(6, 20), rng.randint(1, 8)
        nums.update(start + k * step + w for k in range(times) for w in range(width + 1))
        start += step * times + rng.randint(1, 40)
        nums.update(rng.sample(range(start, start + 30), rng.randint(0, 3)))
        start += 31
    text = jsonout._runs(jsonout._merge((n, n) for n in nums))
    assert _numbers(text) == sorted(nums), text
    assert jsonout._runs([(1, 9), (17, 25), (33, 41), (49, 57)]) == "1-9/16*4"
    assert jsonout._ids(("p1", "p3", "p5", "p7", "p10")) == "p1/2*4,p10"
    assert jsonout._ids(("p1.1", "p1.2")) == "p1.1,p1.2"  # a simulation's ids are listed as they are


@pytest.mark.parametrize("case", sorted(p.name for p in (ROOT / "samples").iterdir() if p.is_dir()))
def test_every_trace_line_of_every_sample_is_named(case: str) -> None:
    """Trace sources too: a rule line of xtables-monitor, nft monitor trace or legacy TRACE is named by
    its packet's group, as the LOG line is."""
    doc, _ = _docs(build_report(load_spec([ROOT / "samples" / case])))
    named: set[tuple[str, int]] = set()
    for c in read_conversations(doc):
        for g in c["groups"]:
            named.update((f["file"], n) for f in g["lines"] for n in _numbers(f["runs"]))
    named.update((u["file"], n) for u in doc["input"]["unused"] for n in _numbers(u["runs"]))
    traces = [f for f in doc["input"]["files"] if f["kind"] == "trace"]
    assert traces and named == {(f["file"], n) for f in traces for n in range(1, f["lines"] + 1)}


def test_a_streamed_case_appears_whole_or_not_at_all(tmp_path: Path, mixed: tuple[Report, int]) -> None:
    """The wiring a streaming run uses: JsonStream in output_folder's hidden folder, swapped in at the end."""
    report, _ = mixed
    results = _results(report)
    head = replace(report, conversations=(), packets=(), groups=(), answers=(), footers=(), crossings=())
    with output_folder(tmp_path, "case") as (folder, final):
        stream = JsonStream(folder)
        for r in results:
            stream.add(r)
        stream.close(head)
        assert not final.exists()  # nothing shows while the case is being read
    before = {n: (final / n).read_bytes() for n in ("report.json", "report.jsonl")}
    assert before["report.json"] == render_json(report)[0].encode()
    with pytest.raises(RuntimeError), output_folder(tmp_path, "case") as (folder, _):
        stream = JsonStream(folder)
        stream.add(results[0])
        raise RuntimeError("the run fails half way")
    assert {n: (final / n).read_bytes() for n in before} == before  # the last good report stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]  # no hidden folder left


def test_packets_of_no_conversation_have_an_entry_of_their_own() -> None:
    """Frames without IP fields (ebtables with bridge-nf off) belong to no conversation: their groups
    still name them and their lines, under the entry "-", which states no answer it does not have."""
    report = build_report(load_spec([ROOT / "samples" / "lab-bridge-nf-off"]))
    doc, packets = _docs(report)
    [entry] = [c for c in read_conversations(doc) if c["id"] == "-"]
    assert (entry["answer"], entry["worst"], entry["original"]) == (None, None, None)
    named = {f"p{n}" for g in entry["groups"] for n in _numbers(g["packets"])}
    assert named == {p["id"] for p in packets if p["conversation"] == "-"} and named


def _whole_list_runs(spans: list[tuple[int, int]], prefix: str = "") -> str:
    """The runs encoding over a whole sorted, merged list: the greedy encoder the writer had before it
    encoded runs as they come, kept here as the specification the streaming encoder must meet."""
    items: list[str] = []
    i, n = 0, len(spans)
    while i < n:
        a, b = spans[i]
        span = f"{prefix}{a}" if a == b else f"{prefix}{a}-{prefix}{b}"
        if i + 2 < n:
            step, width = spans[i + 1][0] - a, b - a
            j = i + 1
            while j < n and spans[j][1] - spans[j][0] == width and spans[j][0] - spans[j - 1][0] == step:
                j += 1
            if j - i >= 3:
                items.append(f"{span}/{step}*{j - i}")
                i = j
                continue
        items.append(span)
        i += 1
    return ",".join(items)


@given(
    st.lists(st.tuples(st.integers(0, 2), st.sampled_from([0, 1, 1, 2, 5, 5, 5])), max_size=30),
    st.booleans(),
    st.sampled_from(["", "p"]),
)
def test_unused_runs_are_encoded_as_they_come_exactly_as_from_the_whole_list(steps, shuffle, prefix):
    """The unused lines' runs text is built while the runs stream by (a 2M-line kern.log has a million
    of them): it must be the text the whole sorted list gives, also if a run comes out of order."""
    from reportgen.render.jsonout import _merge, _RunsText

    spans, x = [], 1
    for width, gap in steps:
        spans.append((x, x + width))
        x += width + gap
    fed = list(reversed(spans)) if shuffle else spans
    r = _RunsText(prefix)
    for a, b in fed:
        r.add(a, b)
    assert r.text() == _whole_list_runs(_merge(spans), prefix)


def test_a_record_wrapped_over_two_lines_names_both_in_its_group(tmp_path: Path) -> None:
    """A LOG record a paste wrapped onto a second line uses both lines: the input account counts both
    as used, so its group's line runs must name both (else line 2 is counted but nowhere)."""
    (tmp_path / "kern.log").write_text(
        "[  100.000001] FWD: IN=eth0 OUT=eth1 SRC=10.0.0.1 DST=10.0.0.2 LEN=60 TOS=0x00 PREC=0x00\n"
        " TTL=64 ID=1 DF PROTO=TCP SPT=1 DPT=2 WINDOW=1 RES=0x00 SYN URGP=0 \n"
    )
    doc, _ = _docs(build_report(load_spec([tmp_path])))
    assert doc["input"]["lines_used"] == 2
    [conv] = read_conversations(doc)
    assert [(f["file"], f["runs"]) for g in conv["groups"] for f in g["lines"]] == [("kern.log", "1-2")]
