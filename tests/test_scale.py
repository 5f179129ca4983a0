"""The streaming pipeline at scale: flat memory, the same facts as a whole-case reading, every line
accounted for.

Inputs come from the benchmark's generator (tests/bench/bench_scale.py): the lab's TCP connection
replayed as distinct flows, eight open at once, one unrelated kernel line after each netfilter line.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies

from reportgen import pipeline
from reportgen.explain.correlate import Correlator, Track
from reportgen.model import ConversationResult, Event, Nat
from reportgen.pipeline import build_report, stream_case
from reportgen.sources.case import load_spec

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "tests" / "bench" / "bench_scale.py")
assert _spec is not None and _spec.loader is not None
bench_scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_scale)

CASES = sorted(p for p in (ROOT / "samples").iterdir() if p.is_dir()) + sorted(
    p for p in (ROOT / "tests" / "corpus" / "public").iterdir() if p.is_dir()
)

# The child reads its own peak resident set from /proc/self/status (VmHWM): ru_maxrss of a child
# would carry the peak of the pytest process it was forked from across exec.
CHILD = """
import sys
from pathlib import Path
from reportgen.batch import cyclic_gc_paused
from reportgen.pipeline import stream_case
from reportgen.sources.case import load_spec

with cyclic_gc_paused():
    head = stream_case(load_spec([Path(sys.argv[1])]), lambda result: None)
assert head.lines_total == int(sys.argv[2]), head.lines_total
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]))
"""


def _peak_kib(path: Path, lines: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(lines)], capture_output=True, text=True, check=True, timeout=120
    )
    return int(out.stdout.strip())


def test_memory_stays_flat_from_50k_to_200k_lines(tmp_path: Path):
    # At the busy host, a million lines a minute (120 us per netfilter and unrelated pair):
    # 50k lines are 3 s of kernel time, past the 1 s a closed conversation waits (CLOSE_SECONDS),
    # so both runs hold what a steady stream holds and only a leak would grow with the input.
    peaks = {}
    for lines in (50_000, 200_000):
        path = tmp_path / f"kern-{lines}.log"
        assert bench_scale.make_kernlog(path, lines, step=0.00012) == lines
        peaks[lines] = _peak_kib(path, lines)
    assert peaks[200_000] <= 1.3 * peaks[50_000], peaks


def _facts(results: list[ConversationResult]) -> list[tuple[object, ...]]:
    """What a reader gets from the results, in conversation order, with group ids left out (they
    number groups in the order they were reported)."""
    out = []
    for r in sorted(results, key=lambda r: (r.conversation.id != "-", r.conversation.id)):
        groups = [(g.conversation, g.first, g.packets, g.first_stamp, g.last_stamp, g.lines) for g in r.groups]
        out.append((r.conversation, r.packets, groups, r.answer, r.footers, r.crossings))
    return out


def _behaviours(results: list[ConversationResult]) -> list[list[tuple[str, ...]]]:
    """Which groups share a behaviour id, across the case."""
    by: dict[str, list[tuple[str, ...]]] = {}
    for r in results:
        for g in r.groups:
            by.setdefault(g.behaviour, []).append(g.packets)
    return sorted(sorted(v) for v in by.values())


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_streamed_results_are_the_whole_case_reading(case: Path):
    spec = load_spec([case])
    streamed: list[ConversationResult] = []
    head = stream_case(spec, streamed.append)
    whole: list[ConversationResult] = []
    pipeline._stream(spec, whole.append, windowed=False)
    assert _facts(streamed) == _facts(whole)
    assert _behaviours(streamed) == _behaviours(whole)
    report = build_report(spec)
    assert [r.conversation.id for r in sorted(streamed, key=lambda r: r.conversation.id)] == sorted(
        [c.id for c in report.conversations] + (["-"] if any(p.conversation == "-" for p in report.packets) else [])
    )
    assert sorted((p for r in streamed for p in r.packets), key=lambda p: int(p.id[1:])) == list(report.packets)
    assert head.conversations == head.packets == head.groups == head.answers == ()
    assert (head.lines_total, head.lines_used, tuple(head.unused)) == (
        report.lines_total,
        report.lines_used,
        report.unused,
    )
    assert head.summary == report.summary


def _sequential_flows(path: Path, lines: int) -> None:
    """The benchmark's flows at a millisecond per line (its own pace, 13 µs, keeps every packet of a
    20k-line case within one settle window)."""
    template = bench_scale.KERN_SAMPLE.read_text().splitlines()
    flows = (bench_scale._kern_flow(template, i) for i in range(10**9))
    with path.open("w") as fh:
        for n, body in enumerate(bench_scale._interleave(flows)):
            if n >= lines:
                break
            fh.write(f"[{1000 + n / 1000:12.6f}]{body}\n")


def test_conversations_leave_before_the_end_of_input_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interpreted: Callable[[str], Any]
):
    path = tmp_path / "kern.log"
    _sequential_flows(path, 20_000)
    read = [0]
    pipeline = interpreted("reportgen.pipeline")  # compiled, it would call trace_events past the patch
    load_spec = interpreted("reportgen.sources.case").load_spec
    real = pipeline.trace_events

    def counting(*args: object, **kw: object) -> list[Iterator[Event]]:
        def count(events: Iterator[Event]) -> Iterator[Event]:
            for ev in events:
                read[0] += 1
                yield ev

        return [count(evs) for evs in real(*args, **kw)]  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "trace_events", counting)
    when: list[int] = []
    streamed: list[ConversationResult] = []

    def sink(r: ConversationResult) -> None:
        when.append(read[0])
        streamed.append(r)

    pipeline.stream_case(load_spec([path]), sink)
    total = read[0]
    early = sum(n < total for n in when)
    assert when[0] < total / 4 and early > 0.8 * len(streamed), (when[0], total, early, len(streamed))
    whole: list[ConversationResult] = []
    pipeline._stream(load_spec([path]), whole.append, windowed=False)
    assert _facts(streamed) == _facts(whole)
    # Each conversation is the lab's whole connection: handshake, data, both FINs, the last ACK.
    sizes = {len(r.packets) for r in streamed[: len(streamed) - 8]}
    assert sizes == {len(whole[0].packets)}


def test_every_line_is_used_or_listed_unused(tmp_path: Path):
    path = tmp_path / "kern.log"
    assert bench_scale.make_kernlog(path, 20_000) == 20_000
    head = stream_case(load_spec([path]), lambda r: None)
    runs = list(head.unused)
    assert head.lines_total == 20_000
    assert head.lines_used == 10_000  # every netfilter line; the generator writes one other line after each
    assert head.lines_used + sum(u.count for u in runs) == head.lines_total
    # Runs are in input order, disjoint, and each names its first line's text.
    assert [u.ref.line for u in runs] == sorted({u.ref.line for u in runs})
    assert all(a.ref.line + a.count <= b.ref.line for a, b in zip(runs, runs[1:], strict=False))
    assert all(u.text and u.reason.startswith("other line") for u in runs)
    assert list(head.unused[:3]) == runs[:3] and len(head.unused) == len(runs) and head.unused[-1] == runs[-1]


class _Restartable(list[ConversationResult]):
    restarts = 0

    def __call__(self, r: ConversationResult) -> None:
        self.append(r)

    def restart(self) -> None:
        self.restarts += 1
        self.clear()


def test_a_hook_place_first_logged_late_reads_the_case_again(tmp_path: Path):
    # mangle FORWARD logs only in the last flows: conversations reported before were explained
    # believing no LOG rule fires there ("no rule" rather than "not logged"), which the end disproves.
    full = tmp_path / "full.log"
    _sequential_flows(full, 20_000)
    lines = full.read_text().splitlines(keepends=True)
    path = tmp_path / "kern.log"
    path.write_text("".join(ln for n, ln in enumerate(lines) if "IPT:mangle:FORWARD" not in ln or n > 19_000))
    spec = load_spec([path])
    whole: list[ConversationResult] = []
    pipeline._stream(spec, whole.append, windowed=False)
    sink = _Restartable()
    head = stream_case(spec, sink)
    assert sink.restarts == 1
    assert _facts(list(sink)) == _facts(whole)
    assert not any("learnt after" in n for n in head.notes)
    # A sink that cannot forget keeps the first pass, and the report says what it rests on.
    plain: list[ConversationResult] = []
    head = stream_case(spec, plain.append)
    assert _facts(plain) != _facts(whole)
    assert any("learnt after some conversations had been reported" in n for n in head.notes)


def _shifted(sample: Path, seconds: float) -> str:
    """A sample's kernel lines with their stamps moved by ``seconds``."""
    out = []
    for ln in sample.read_text().splitlines():
        stamp, rest = ln[1:].split("]", 1)
        out.append(f"[{float(stamp) + seconds:12.6f}]{rest}\n")
    return "".join(out)


@pytest.mark.parametrize(
    ("sample", "gap", "conversations"),
    [
        ("lab-udp-to-internet", 100.0, 1),  # a replied UDP entry lives 180 s without a packet
        ("lab-udp-to-internet", 200.0, 2),  # ... then the same tuple is a new entry
        ("lab-tcp-to-internet", 1000.0, 1),  # an established TCP connection lives 5 days
    ],
)
def test_a_conversation_idle_past_conntracks_timeout_is_reported_and_a_later_packet_starts_anew(
    tmp_path: Path, sample: str, gap: float, conversations: int
):
    # The exchange, then the same exchange again after the gap (the second copy's first packet
    # comes ``gap`` seconds after the first copy's last one).
    lines = (ROOT / "samples" / sample / "dmesg.log").read_text()
    first, last = (float(ln[1:].split("]")[0]) for ln in (lines.splitlines()[0], lines.splitlines()[-1]))
    path = tmp_path / "kern.log"
    path.write_text(lines + _shifted(ROOT / "samples" / sample / "dmesg.log", last - first + gap))
    if sample == "lab-tcp-to-internet":  # keep the connection open: no FIN, no final ACK
        kept = [ln for ln in path.read_text().splitlines(keepends=True) if "FIN" not in ln]
        path.write_text("".join(kept))
    results: list[ConversationResult] = []
    stream_case(load_spec([path]), results.append)
    assert len([r for r in results if r.conversation.id != "-"]) == conversations


@pytest.mark.parametrize(("gap", "conversations"), [(0.0005, 1), (5.0, 2)])
def test_a_packet_just_after_the_final_ack_joins_its_conversation(tmp_path: Path, gap: float, conversations: int):
    """Packets still come after the final ACK (conntrack TIME_WAIT): the client's ACK that crossed the
    server's final one, seen in 2 of 15 live lab captures. It must join the connection, not open a
    second one; a packet long after the close (past CLOSE_SECONDS) is a new conversation."""
    sample = ROOT / "samples" / "lab-tcp-to-internet" / "dmesg.log"
    lines = sample.read_text().splitlines()
    last = float(lines[-1][1:].split("]")[0])
    fin = [ln for ln in lines[47:54]]  # the client's FIN, from its ebtables PREROUTING line to POSTROUTING
    assert all("ACK FIN" in ln or "EB:" in ln for ln in fin)
    late = [
        f"[{last + gap + i * 0.000005:12.6f}]"
        + ln.split("]", 1)[1].replace("ACK FIN", "ACK").replace("ID=40426", "ID=40427")
        for i, ln in enumerate(fin)
    ]
    path = tmp_path / "kern.log"
    path.write_text("\n".join(lines + late) + "\n")
    results: list[ConversationResult] = []
    stream_case(load_spec([path]), results.append)
    convs = [r for r in results if r.conversation.id != "-"]
    assert len(convs) == conversations
    assert sum(len(r.packets) for r in convs) == 9
    # Reported apart, the late ACK is still c1's request direction: its entry was in TIME_WAIT.
    assert [r.packets[0].role for r in convs[1:]] == ["request"] * (conversations - 1)
    assert [r.conversation.late_of and r.conversation.late_of.conversation for r in convs[1:]] == ["c1"] * (
        conversations - 1
    )


# --- what Correlator.feed keeps of an open packet ----------------------------------------------------


def _kept_is_scanned(t: Track, _walk: Callable[[Event], object]) -> None:
    """Every field feed's tests read instead of scanning the packet's lines is what the scan says."""
    k = t.kept
    assert k.l3 is t.l3()
    assert (k.physin, k.physout, k.ip_out) == (t.physin(), t.physout(), t.ip_out())
    assert (k.macs.get(False), k.macs.get(True)) == (t.macs(egress=False), t.macs(egress=True))
    assert k.trace_ids == {e.record.trace_id for e in t.events}
    walks: dict[object, list[int]] = {}  # each walk's lines, as positions in t.events and t.stages
    for at, e in enumerate(t.events):
        walks.setdefault(_walk(e), []).append(at)
    assert k.walks == walks


def _check_open_packets(monkeypatch: pytest.MonkeyPatch, modules: Callable[[str], Any]) -> list[int]:
    """Check every open packet after each Correlator.feed; on the interpreted modules (conftest's
    interpreted fixture): a compiled pipeline would call the compiled feed past the patch."""
    checked = [0]
    correlate = modules("reportgen.explain.correlate")
    feed = correlate.Correlator.feed

    def checking(self: Correlator, ev: Event) -> list[Track]:
        out = feed(self, ev)
        for t in self.pending:  # the open packets (created, not settled)
            _kept_is_scanned(t, correlate._walk)
            checked[0] += 1
        assert all(t.egress and not t.closed for t in self.egress_open)
        assert all(t.kept is correlate._SETTLED for t in self.joiner.window)  # settled packets keep nothing
        return out

    monkeypatch.setattr(correlate.Correlator, "feed", checking)
    return checked


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_open_packets_keep_what_their_lines_say(
    case: Path, monkeypatch: pytest.MonkeyPatch, interpreted: Callable[[str], Any]
):
    _check_open_packets(monkeypatch, interpreted)
    interpreted("reportgen.pipeline").build_report(interpreted("reportgen.sources.case").load_spec([case]))


def test_open_packets_keep_what_their_lines_say_at_bench_scale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interpreted: Callable[[str], Any]
):
    checked = _check_open_packets(monkeypatch, interpreted)
    kern, nft = tmp_path / "kern.log", tmp_path / "nft.txt"
    bench_scale.make_kernlog(kern, 4000)
    bench_scale.make_nft(nft, 4000)
    for path in (kern, nft):
        interpreted("reportgen.pipeline").stream_case(
            interpreted("reportgen.sources.case").load_spec([path]), lambda result: None
        )
    assert checked[0] > 10_000


# The hot paths copy an Event or a Nat with one field changed by their constructors, not by
# dataclasses.replace (interpreted Python); a field added to either would silently be left out.
EVENT_FIELDS = ["record", "hook", "rules", "extra"]
NAT_FIELDS = [
    "type",
    "direction",
    "hook",
    "field",
    "before",
    "after",
    "evidence",
    "by",
    "rule",
    "rule_ref",
    "conntrack",
    "unknown",
]


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_fast_copies_and_line_references_are_the_generic_ones(case: Path):
    """at_hook and _nat_with are dataclasses.replace, and Event.refs (which compares line references by
    field) is the expression by LineRef's ==, on every event and NAT of every sample and corpus case."""
    from dataclasses import fields, replace

    from reportgen.explain.correlate import at_hook
    from reportgen.explain.explain import _nat_with
    from reportgen.model import HookRef, LineRef

    assert [f.name for f in fields(Event)] == EVENT_FIELDS, "Event changed: update correlate.at_hook"
    assert [f.name for f in fields(Nat)] == NAT_FIELDS, "Nat changed: update explain._nat_with"
    report = build_report(load_spec([case]))
    other = HookRef("ipv4", "FORWARD", "filter", "FORWARD", "test")
    for p in report.packets:
        for h in p.hops:
            ev = h.event
            assert at_hook(ev, other) == replace(ev, hook=other)
            assert ev.refs == _generic_refs(ev)
            # An extra line that is the record's own (and one in another file at the same line).
            own = ev.record.ref
            more = replace(ev, extra=(*ev.extra, own, LineRef(own.file + "x", own.line)))
            assert more.refs == _generic_refs(more)
        for nat in p.nat:
            for args in ((nat.type, nat.rule, nat.rule_ref, nat.conntrack), ("SNAT", "rule", LineRef("f", 1), "ct")):
                typ, rule, ref, ct = args
                assert _nat_with(nat, typ, rule, ref, ct) == replace(
                    nat, type=typ, rule=rule, rule_ref=ref, conntrack=ct
                )


def _generic_refs(ev: Event) -> tuple[object, ...]:
    own = ev.record.ref
    return (own, *(r.ref for r in ev.rules if r.ref != own), *(x for x in ev.extra if x != own))


def test_unused_rows_are_the_runs(tmp_path: Path):
    """unused_rows reads a spilled store's runs back as tuples: the same runs, in the same order, as
    its UnusedLines, with and without lines no hop used (gaps, merged in)."""
    from reportgen.model import LineRef, UnusedLine
    from reportgen.pipeline import UnusedRuns, unused_rows

    kern = tmp_path / "kern.log"
    bench_scale.make_kernlog(kern, 12_000)  # 6,000 unrelated lines: more runs than a chunk holds
    head = stream_case(load_spec([kern]), lambda result: None)
    runs = head.unused
    assert isinstance(runs, UnusedRuns) and runs.chunks, "the runs did not spill to disk"

    def rows(unused: Iterable[UnusedLine]) -> list[tuple[object, ...]]:
        return [(u.ref.file, u.ref.line, u.reason, u.text, u.count) for u in unused]

    assert list(unused_rows(runs)) == rows(runs)
    assert sum(r[4] for r in unused_rows(runs)) == head.lines_total - head.lines_used
    runs.gaps = [UnusedLine(LineRef(kern.name, 3), "gap", "x", 5), UnusedLine(LineRef(kern.name, 9_999), "gap", "y")]
    assert list(unused_rows(runs)) == rows(runs)
    assert list(unused_rows(tuple(runs))) == rows(runs)


# Texts made of what a citation's look-around reads: file-name characters, colons, ASCII and other
# scripts' digits, word characters, full stops and spaces.
_CITED = strategies.text(alphabet=strategies.sampled_from(list("kern.logx:0123456789_ é٣²a-/")), max_size=40)


@given(text=_CITED, name=strategies.sampled_from(["kern.log", "x", "log", "a:1", "é.log"]))
@settings(max_examples=500, deadline=None)
def test_one_files_citations_are_cut_as_the_regex_cuts_them(text: str, name: str) -> None:
    """jsonfold._cut_file_citations (str.find) gives the parts and member values the citation regex
    gives, whatever stands before, in and after a citation."""
    from reportgen.render.jsonfold import _citation, _cut_citations, _cut_file_citations

    def collect() -> tuple[list[int], Callable[[Any], int]]:
        seen: list[int] = []

        def ref(value: Any) -> int:
            seen.append(value)
            return len(seen) - 1

        return seen, ref

    fast_values, fast_ref = collect()
    slow_values, slow_ref = collect()
    for t in (text, f"{name}:{text}", f"{text} {name}:12.{text}{name}:7{name}:"):
        assert _cut_file_citations(t, name, fast_ref) == _cut_citations(t, _citation((name,)), slow_ref)
    assert fast_values == slow_values


@given(
    ids=strategies.lists(
        strategies.one_of(
            strategies.integers(0, 40).map(lambda n: f"p{n}"), strategies.sampled_from(["p", "p٣", "q1", "p1.2", "p01"])
        )
    )
)
@settings(max_examples=300, deadline=None)
def test_packet_id_runs_take_only_p_and_ascii_digits(ids: list[str]) -> None:
    """jsonout._ids writes runs exactly when every id is "p" and ASCII digits without a leading zero
    (what the regex p([0-9]+) it replaced accepted), and lists the ids otherwise."""
    import re

    from reportgen.render.jsonout import _ids, expand_runs

    runs = all(re.fullmatch(r"p([0-9]+)", x) and not x.startswith("p0") for x in ids)
    text = _ids(ids)
    if runs:
        assert sorted({n for a, b in expand_runs(text) for n in range(a, b + 1)}) == sorted({int(x[1:]) for x in ids})
    else:
        assert text == ",".join(ids)
