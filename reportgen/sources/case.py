"""Load a case (a folder with case.yaml, a folder without one, or loose files) and build a Report.

Trace files are streamed line by line; every line ends up either as an event or in the unused list
with a reason. Snapshot files are recognised by their content when no manifest names their kind.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from reportgen.errors import InputError
from reportgen.model import (
    HIT_KINDS,
    Event,
    HitKind,
    HookRef,
    InputFile,
    LineRef,
    LogRecord,
    RuleHit,
    Snapshot,
    UnusedLine,
)
from reportgen.netfilter import HOOKS, INET, INGRESS
from reportgen.parsers.log_rules import LogRules, log_rules
from reportgen.parsers.nflog import parse_kernel_message, record_anchors
from reportgen.parsers.nft_ruleset import NftRuleset
from reportgen.parsers.prefix import PrefixMap, known_backends, resolve_hook, with_backend_table
from reportgen.parsers.snapshots import PARSERS, detect_kind, unread_note
from reportgen.parsers.traces import (
    ChainHooks,
    NftTraceParser,
    Visit,
    XtablesMonitorParser,
    detect_trace_format,
    device_hooks,
    legacy_trace_prefix,
    table_hooks,
)
from reportgen.sources.bounded import RawLine, load_yaml, overlong_reason, raw_lines
from reportgen.sources.framing import LineFramer, Unrelated, decode_line, prefilter, strip_wrapper

APPENDIX_LIMIT = 20000  # trace lines kept for the report appendix; the JSON account covers all


OUTPUT_MARKER = ".reportgen-output"  # written into every output folder; such folders are never read back


@dataclass
class CaseSpec:
    """What to read: resolved paths plus the manifest's words."""

    name: str
    title: str
    description: str
    base: Path
    traces: list[Path] = field(default_factory=list)
    snapshots: list[tuple[Path, str | None, str]] = field(default_factory=list)  # path, kind, host
    prefix_map: PrefixMap = field(default_factory=PrefixMap.empty)
    notes: list[str] = field(default_factory=list)


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name


def is_output_folder(d: Path) -> bool:
    """Whether a folder is one reportgen wrote (its reports must never be read back as input)."""
    return (d / OUTPUT_MARKER).exists()


def case_name(d: Path) -> str:
    """A case's name from its folder: never empty, ``.`` or ``..``, never a path (it names an output folder)."""
    name = d.resolve().name
    return name if name and name not in (".", "..") else "case"


def load_spec(paths: list[Path], prefix_map: PrefixMap | None = None, allow_outside: bool = False) -> CaseSpec:
    """Turn the command-line inputs into a CaseSpec; errors name the file.

    A case folder is read only inside itself: its manifest may not name absolute or ``..`` paths,
    and no file (a symlink) may resolve outside it, unless ``allow_outside``. Loose files given on
    the command line are read as given: the user named them.
    """
    if len(paths) == 1 and paths[0].is_dir():
        d = paths[0]
        if is_output_folder(d):
            raise InputError(str(d), None, f"a reportgen output folder ({OUTPUT_MARKER}); not read as input")
        manifest = d / "case.yaml"
        if manifest.exists():
            spec = _from_manifest(d, manifest, allow_outside)
        else:
            spec = CaseSpec(case_name(d), case_name(d), "", d)
            entries = [p for p in sorted(d.iterdir()) if p.name not in ("prefixes.yaml", OUTPUT_MARKER)]
            _classify(spec, [_inside(d, p, str(p), allow_outside) for p in entries if p.is_file() or p.is_symlink()])
        pm = d / "prefixes.yaml"
        if pm.exists():
            spec.prefix_map = spec.prefix_map.merged(PrefixMap.load(_inside(d, pm, str(pm), allow_outside)))
    else:
        files: list[Path] = []
        seen: set[Path] = set()
        for p in paths:
            if not p.exists():
                raise InputError(str(p), None, "no such file")
            if p.is_dir():
                raise InputError(str(p), None, "give either one case folder or files, not a mix")
            if not p.is_file():
                raise InputError(str(p), None, "not a regular file")
            if is_output_folder(p.parent) and p.name.startswith("report."):
                raise InputError(str(p), None, "a report reportgen wrote; not read back as input")
            real = p.resolve()
            if real not in seen:  # the same file given twice is read once
                seen.add(real)
                files.append(p)
        # Loose files are named by their path below the folder they share, so two dmesg.log from
        # different folders stay two files in the account.
        absolute = [Path(os.path.abspath(p)) for p in files]
        base = Path(os.path.commonpath([p.parent for p in absolute]))
        name = files[0].stem if len(files) == 1 else case_name(base)
        spec = CaseSpec(name, name, "", base)
        _classify(spec, absolute)
    if prefix_map is not None:
        spec.prefix_map = spec.prefix_map.merged(prefix_map)
    return spec


def _inside(d: Path, p: Path, named_by: str, allow_outside: bool, what: str = "file") -> Path:
    """Return p when it is a regular file that resolves inside the case folder d (or allow_outside)."""
    try:
        exists, real = p.exists(), p.resolve()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, a symlink loop
        raise InputError(named_by, None, f"{what} {_rel(p, d)!r}: cannot be opened ({exc})") from exc
    if not exists:
        raise InputError(named_by, None, f"{what} {p.name!r} does not exist")
    if not allow_outside and not real.is_relative_to(d.resolve()):
        raise InputError(
            named_by,
            None,
            f"{what} {_rel(p, d)!r} resolves to {real}, outside the case "
            "folder (a symlink?); a case reads only its own folder unless --allow-outside is given",
        )
    if not p.is_file():
        raise InputError(named_by, None, f"{what} {_rel(p, d)!r} is not a regular file")
    return p


def _entry(d: Path, manifest: Path, entry: object, what: str, allow_outside: bool) -> Path:
    """Resolve one file named in case.yaml: relative, no ``..``, inside the folder (unless allowed)."""
    text = str(entry)
    rel = Path(text)
    if not allow_outside and (rel.is_absolute() or ".." in rel.parts):
        raise InputError(
            str(manifest),
            None,
            f"{what} {text!r}: absolute and '..' paths are refused; a case "
            "reads only its own folder unless --allow-outside is given",
        )
    return _inside(d, d / rel, str(manifest), allow_outside, what)


def _list_of(data: dict[str, object], key: str, manifest: Path) -> list[object]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise InputError(str(manifest), None, f"{key!r} is a list of files")
    return value


def _from_manifest(d: Path, manifest: Path, allow_outside: bool) -> CaseSpec:
    data = load_yaml(_inside(d, manifest, str(manifest), allow_outside)) or {}
    if not isinstance(data, dict):
        raise InputError(str(manifest), None, "a case manifest is a mapping with title, trace, snapshots")
    spec = CaseSpec(case_name(d), str(data.get("title", case_name(d))), str(data.get("description", "")).strip(), d)
    for entry in _list_of(data, "trace", manifest):
        spec.traces.append(_entry(d, manifest, entry, "trace file", allow_outside))
    for entry in _list_of(data, "snapshots", manifest):
        if isinstance(entry, dict):
            fname, kind, host = entry.get("file"), entry.get("kind"), str(entry.get("host", "host"))
            if kind is not None and not isinstance(kind, str):
                raise InputError(str(manifest), None, f"snapshot {fname!r}: kind is a word, not {kind!r}")
        else:
            fname, kind, host = entry, None, "host"
        spec.snapshots.append((_entry(d, manifest, fname, "snapshot file", allow_outside), kind, host))
    for entry in _list_of(data, "attachments", manifest):
        # Outputs kept for the reader (iptables-save, nft, conntrack ...), shown verbatim.
        fname = entry.get("file") if isinstance(entry, dict) else entry
        p = _entry(d, manifest, fname, "attachment", allow_outside)
        kind = str(entry.get("kind", "attachment")) if isinstance(entry, dict) else "attachment"
        spec.snapshots.append((p, "attachment:" + kind, "host"))
    for note in _list_of(data, "notes", manifest):
        spec.notes.append(str(note))
    lab = data.get("lab")
    if isinstance(lab, dict) and isinstance(lab.get("versions"), dict):
        v = {str(k): val for k, val in lab["versions"].items()}
        spec.notes.append(
            "Captured on kernel "
            + str(v.get("kernel"))
            + " with "
            + ", ".join(f"{k} {val}" for k, val in sorted(v.items()) if k != "kernel")
            + "."
        )
    return spec


def _classify(spec: CaseSpec, files: list[Path]) -> None:
    for p in files:
        if p.suffix in (".yaml", ".yml") and p.name != "prefixes.yaml":
            continue
        with p.open("rb") as fh:
            head = fh.read(4096).decode("utf-8", errors="replace")
        kind = detect_kind(head)
        if kind:
            spec.snapshots.append((p, kind, "host"))
        else:
            spec.traces.append(p)


def _add_unused(unused: UnusedSink, ref: LineRef, reason: str, text: str) -> None:
    """Record an unused line, extending the previous run when it is the next line with the same reason."""
    if unused:
        prev = unused[-1]
        end = max(prev.last, prev.ref.line)
        if prev.ref.file == ref.file and prev.reason == reason and end + 1 == ref.line:
            unused[-1] = UnusedLine(prev.ref, reason, prev.text, ref.line)
            return
    unused.append(UnusedLine(ref, reason, text))


def _fingerprint(rec: LogRecord) -> tuple[object, ...]:
    return (
        rec.src,
        rec.dst,
        rec.ipid,
        rec.proto,
        rec.sport,
        rec.dport,
        rec.icmp_id,
        rec.icmp_seq,
        rec.in_dev,
        rec.out_dev,
        rec.tcp_seq,
    )


# ip_tables.c trace_packet() logs "TRACE: <table>:<chain>:<rule|return|policy>:<num> " and then the
# packet's fields (nf_log_syslog.c): a line that stops before them is a record cut off by the paste.
_TRACE_WORD = "TRACE:"
_CUT_TRACE = "a legacy TRACE record cut off before its packet fields: its rule and packet are not in the line"
# nftables src/trace.c prints "trace id <id> <family> <table> <chain> packet: " and then the packet's
# header fields; a line that ends at "packet:" was cut by the paste.
_CUT_NFT_PACKET = "an nft trace packet line cut off after 'packet:': its packet fields are not in the line"


def _same_walk_packet(walk: tuple[object, ...], fp: tuple[object, ...], truncated: bool) -> bool:
    """Whether a record's fingerprint is the walk's packet. A record the paste cut off lacks the
    fields after the cut (None): it is the walk's packet when every field it still shows agrees, so
    a cut user-chain line goes on the walk its table's built-in chain started (zfl9/ss-tproxy#104),
    not to a walk of its own at a guessed hook."""
    if walk == fp:
        return True
    return truncated and all(b is None or a == b for a, b in zip(walk, fp, strict=True))


class _LegacyTraceGrouper:
    """Group legacy ``TRACE:`` kernel lines of one packet at one hook into one event.

    ipt_do_table() walks one table's chain for one packet and logs one line per matched rule, then the
    policy or return (ip_tables.c trace_packet), so a walk's lines are consecutive. A user chain's
    lines carry only the chain's name: they belong to the walk that jumped there, and so to the hook of
    the built-in chain the walk started in. The hook is never read from a chain's name: "KUBE-FORWARD"
    is a user chain. Only the kernel's own built-in chain names (ip_tables.c hooknames) are hooks.
    """

    def __init__(self) -> None:
        self.current: tuple[tuple[object, ...], Event, list[RuleHit]] | None = None

    def feed(self, rec: LogRecord, m: re.Match[str]) -> list[Event]:
        table, chain = m.group("table"), m.group("chain")
        # A record whose ":type:num" tail the paste cut off still shows a rule of the chain was met.
        hit = RuleHit(table, chain, HIT_KINDS.get(m.group("type") or "", HitKind.RULE), "", "", m.group("num"), rec.ref)
        fp = _fingerprint(rec)
        cur = self.current
        # A TRACE line is logged for an IPv4/IPv6 packet, whose SRC= and DST= nf_log_syslog.c
        # (dump_ipv4_packet/dump_ipv6_packet) always prints: a line without them was cut.
        cut = rec.truncated or (rec.src is None and rec.dst is None)
        same_packet = cur is not None and _same_walk_packet(cur[0], fp, cut) and cur[1].hook.table == table
        walk_ended = cur is not None and any(h.kind is HitKind.POLICY for h in cur[2])
        if cur is not None and same_packet and not walk_ended and (chain not in HOOKS or cur[1].hook.chain == chain):
            cur[2].append(hit)  # the walk goes on: into a user chain, or back from one (a policy ends it)
            return []
        out = self.flush()
        fam = rec.l3 if rec.l3 in ("ipv4", "ipv6") else "ipv4"
        if chain in HOOKS:
            hook = HookRef(fam, chain, table, chain, "TRACE prefix")
        else:
            hook = self._user_chain_start(fam, table, chain, rec)
        self.current = (fp, Event(rec, hook), [hit])
        return out

    @staticmethod
    def _user_chain_start(fam: str, table: str, chain: str, rec: LogRecord) -> HookRef:
        """A walk whose built-in chain line is missing (a cut paste): the table's hooks that the
        record's devices allow; one of them is the hook, several are candidates."""
        hooks = [h for h in device_hooks(rec.in_dev, rec.out_dev) if h in table_hooks(table)]
        hooks = hooks or list(table_hooks(table) or HOOKS)
        if len(hooks) == 1:
            return HookRef(fam, hooks[0], table, hooks[0], "TRACE prefix")
        return HookRef(fam, hooks[0], table, chain, "TRACE prefix", candidates=tuple(hooks))

    def flush(self) -> list[Event]:
        if self.current is None:
            return []
        _, ev, hits = self.current
        self.current = None
        return [replace(ev, rules=tuple(hits))]


def _other_reason(other: str, monitor: bool, fmt: str | None, text: str) -> str:
    """Why a line of a trace file was not read: ``other``, unless a monitor's file holds a kernel LOG
    record (nf_log_syslog.c's "IN=... OUT=..." fields), which that monitor's parser does not read:
    the reason then says so and how to have it read, instead of calling it an other line."""
    if monitor and record_anchors(text):
        return f"a kernel LOG record in a file read as {fmt} output: not read here; in a file of its own it would be"
    if monitor and fmt == "nfttrace" and text.rstrip().endswith(" packet:") and text.startswith("trace id "):
        return _CUT_NFT_PACKET  # firewalld/firewalld#527: "trace id cb6bc762 inet firewalld filter_PREROUTING packet:"
    if not monitor and _TRACE_WORD in text and strip_wrapper(text).msg.lstrip().startswith(_TRACE_WORD):
        return _CUT_TRACE  # kubernetes/kubernetes#107965: "... kernel: [448136.197779] TRACE: nat"
    return other


def _file_events(
    path: Path,
    name: str,
    spec: CaseSpec,
    unused: UnusedSink,
    appendix: Appendix,
    counts: dict[str, int],
    chain_hooks: ChainHooks,
    spans: dict[str, dict[int, int]],
    backends: Mapping[str, str],
    rules: LogRules,
) -> Iterator[Event]:
    """Stream one trace file into events; every line becomes part of an event or an unused entry.

    ``spans[name]`` is the live map of records wrapped over several physical lines (first -> last),
    complete for every record already yielded.
    """
    head = [_text(raw) for raw in itertools.islice(raw_lines(path), 50) if not raw.overlong]
    fmt = detect_trace_format(head)
    monitor = (
        XtablesMonitorParser(chain_hooks)
        if fmt == "xtmon"
        else NftTraceParser(chain_hooks)
        if fmt == "nfttrace"
        else None
    )
    legacy = _LegacyTraceGrouper()
    # Kernel log lines are re-framed (glued records split, wrapped ones joined); monitors keep theirs.
    physical: list[int] = [0]
    other = (
        f"other line: not a {fmt} trace event"
        if monitor is not None
        else "other line: not a netfilter LOG or ebtables record"
    )
    checked = _checked_lines(path, name, unused, physical, prefilter(fmt))
    # Trace monitors keep their lines as printed: no framer (one generator less per line).
    framer = LineFramer(checked) if monitor is None else None
    spans[name] = framer.spans if framer is not None else {}
    lines: Iterator[tuple[int, str | Unrelated]] = checked if framer is None else iter(framer)
    appendix_full = False  # the appendix only grows: once full, it is not asked again per line
    for n, item in lines:
        # The prefilter saw the line cannot be part of a record: Unrelated, or the framer's flag.
        unrelated = isinstance(item, Unrelated)
        text = item.text if isinstance(item, Unrelated) else item
        ref = LineRef(name, n)
        if not appendix_full:
            if len(appendix) < APPENDIX_LIMIT:
                appendix.append((ref, text))
            else:
                appendix_full = True
        if unrelated or (framer is not None and framer.unrelated):
            _add_unused(unused, ref, _other_reason(other, monitor is not None, fmt, text), text)
            continue
        if not text or text.isspace():  # blank: what text.strip() would empty, without the copy
            _add_unused(unused, ref, "blank line", text)
            continue
        if monitor is not None:
            visits, used = monitor.feed(ref, text)
            # A kernel LOG record among nft monitor trace lines (a journal holding both) is read as
            # one; nft's trace lines name devices as iif/oif, never "IN=" (nftables src/trace.c).
            kernel = not used and fmt == "nfttrace" and bool(record_anchors(text))
            if not used and not kernel:
                _add_unused(unused, ref, _other_reason(other, True, fmt, text), text)
            for v in visits:
                ev = _visit_event(v, unused)
                if ev is not None:
                    yield ev
            if not kernel:
                continue
        framed = strip_wrapper(text)
        rec = parse_kernel_message(framed.msg, ref, text, framed.stamp)
        if rec is None:
            # A note or a "..." inside a pasted TRACE walk does not end the walk: the next line of
            # the same packet and table continues it (_LegacyTraceGrouper compares the packet).
            # An ebt_log piece the framer would not join (framing._pieces_apart) says why.
            why = framer.unjoined.get(n, other) if framer is not None else other
            _add_unused(unused, ref, _other_reason(why, False, fmt, text), text)
            continue
        t = legacy_trace_prefix(rec.prefix)
        if t and not spec.prefix_map.lookup(rec.prefix):
            yield from legacy.feed(rec, t)
            continue
        yield from legacy.flush()
        res = resolve_hook(rec, spec.prefix_map)
        if res.hook is None:
            _add_unused(unused, ref, f"hook not recognised: {res.problem}", text)
            continue
        yield Event(rec, rules.place(with_backend_table(res.hook, rec.prefix, backends), rec.prefix))
    yield from legacy.flush()
    if monitor is not None:
        for v in monitor.flush():
            ev = _visit_event(v, unused)
            if ev is not None:
                yield ev
    counts[name] = physical[0]


def _checked_lines(
    path: Path, name: str, unused: UnusedSink, physical: list[int], may_be_record: Callable[[str], bool] | None
) -> Iterator[tuple[int, str | Unrelated]]:
    """Decode a trace file's lines; an overlong one is listed unused and never decoded or parsed, so
    parsers stay linear and memory bounded. ``physical[0]`` is the number of lines read so far.
    A line the prefilter rejects comes as Unrelated (framing.prefilter)."""
    for raw in raw_lines(path):
        n = raw.number
        physical[0] = n
        if raw.overlong:
            _add_unused(unused, LineRef(name, n), overlong_reason(raw.size), "")
            continue
        text = decode_line(raw.data, n == 1)
        if may_be_record is not None and not may_be_record(text):
            yield n, Unrelated(text)
            continue
        yield n, text


def _text(raw: RawLine) -> str:
    return decode_line(raw.data, raw.number == 1)


def _visit_event(v: Visit, unused: UnusedSink) -> Event | None:
    # The visit's event, or None when its lines are listed unused (a function, not a generator: it
    # runs for every visit).
    # A walk whose packet line the paste cut off still shows the chain, the rules and the verdict:
    # it becomes a hop without header fields, joined to its packet by the trace id (correlate.py).
    if not v.table:
        _add_unused(
            unused, v.ref, "trace packet line without rule lines: the chain it was seen in is not printed", v.text
        )
        return None
    place = v.place
    if place is None or (place.hook is None and not place.candidates):
        # netdev ingress/egress: device hooks outside the IP and bridge hook graph (netfilter.py).
        for ref in (v.ref, *v.extra, *(r.ref for r in v.rules)):
            _add_unused(
                unused,
                ref,
                f"nft {v.family} chain {v.table} {v.chain}: its hook has no stage in reportgen's hook graph",
                v.text if ref == v.ref else "",
            )
        return None
    how = "nft trace" if v.fmt == "nfttrace" else "xtables-monitor"
    table = v.table if v.table else None
    rec = v.record()
    if place.hook is not None:
        hook = HookRef(v.family, place.hook, table, v.chain, how)
    else:
        # Not in the snapshot nor a known generator's base chain: the trace's devices narrow the hooks
        # (device_hooks); the hook is unknown unless one remains. Never guessed from the name.
        hooks = [h for h in device_hooks(rec.in_dev, rec.out_dev) if h in place.candidates] or list(place.candidates)
        if v.family == INET and rec.in_dev and not rec.out_dev:
            hooks.insert(0, INGRESS)  # an inet chain seeing iif only may be an ingress chain (nft(8))
        hook = HookRef(
            v.family,
            next(h for h in hooks if h in HOOKS),
            table,
            v.chain,
            how,
            candidates=tuple(hooks) if len(hooks) > 1 else (),
        )
    return Event(rec, hook, tuple(v.rules), tuple(v.extra))


MAX_SNAPSHOT_BYTES = 64 << 20  # a host snapshot is kilobytes; beyond this it is not a snapshot
NO_HOP = "read, but no hop of any packet refers to this line"


def _read_snapshot(path: Path) -> tuple[str, list[str]]:
    """A snapshot's text, overlong lines left empty (and named in the returned problems)."""
    size = path.stat().st_size
    if size > MAX_SNAPSHOT_BYTES:
        return "", [f"{size} bytes: over the {MAX_SNAPSHOT_BYTES}-byte limit for a snapshot"]
    lines, problems = [], []
    for raw in raw_lines(path):
        if raw.overlong:
            problems.append(f"line {raw.number}: {overlong_reason(raw.size)}")
        lines.append(_text(raw))
    return "\n".join(lines) + ("\n" if lines else ""), problems


def _snapshot(path: Path, name: str, kind: str | None, host: str) -> tuple[Snapshot, str | None]:
    """Read and parse one snapshot; a snapshot that cannot be parsed comes back unused, with the reason."""
    text, problems = _read_snapshot(path)
    k = kind or detect_kind(text)
    if k is not None and k.startswith("attachment:"):
        k = k.split(":", 1)[1]
        # Attachments whose kind reportgen can read are parsed too; the rest are shown verbatim.
        if k not in PARSERS:
            return Snapshot(name, k, text, None, host), None
    elif kind is not None and kind not in PARSERS:
        raise InputError(str(path), None, f"unknown snapshot kind {kind!r}; known: {', '.join(sorted(PARSERS))}")
    if k is None:
        return Snapshot(name, "unknown", text, None, host), "its content is not a snapshot kind reportgen knows"
    if not text:
        return Snapshot(name, k, text, None, host), problems[0] if problems else "the file is empty"
    try:
        data = PARSERS[k](text)
    except InputError as exc:
        where = f"line {exc.line}: " if exc.line else ""
        return Snapshot(name, k, text, None, host), f"cannot be read as {k}: {where}{exc.message}"
    except Exception as exc:  # noqa: BLE001 - a parser bug must not take the whole report down
        return Snapshot(
            name, k, text, None, host
        ), f"reportgen failed to parse it as {k} ({type(exc).__name__}: {exc}); this is a reportgen bug"
    unread = unread_note(data)
    return Snapshot(name, k, text, data, host), "; ".join([*problems, *([unread] if unread else [])]) or None


def load_snapshots(spec: CaseSpec) -> tuple[tuple[Snapshot, ...], list[str]]:
    """Read and parse a case's snapshots; the notes say which could not be used and why."""
    snaps = []
    notes = list(spec.notes)
    for path, kind, host in spec.snapshots:
        snap, problem = _snapshot(path, _rel(path, spec.base), kind, host)
        snaps.append(snap)
        if problem and snap.data is None:
            notes.append(f"Snapshot {snap.name} was not used: {problem}.")
        elif problem:
            notes.append(f"Snapshot {snap.name}: {problem}.")
    return tuple(snaps), notes


# Where _file_events puts unused runs and appendix lines: a list, or pipeline's sinks that override
# append (and len). Typed as protocols, not list: compiled code (mypyc) calls a list's own methods
# directly, skipping a subclass's overrides, so those sinks are plain classes.
class UnusedSink(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, i: int, /) -> UnusedLine: ...
    def __setitem__(self, i: int, u: UnusedLine, /) -> None: ...
    def append(self, u: UnusedLine, /) -> None: ...


class Appendix(Protocol):
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[tuple[LineRef, str]]: ...
    def append(self, item: tuple[LineRef, str], /) -> None: ...


@dataclass
class TraceReading:
    """The account of a case's trace files, filled while their events are read (trace_events)."""

    unused: UnusedSink  # where unused runs go; the last entry may still grow (_add_unused)
    appendix: Appendix = field(default_factory=lambda: list[tuple[LineRef, str]]())  # the first APPENDIX_LIMIT lines
    counts: dict[str, int] = field(default_factory=dict)  # trace file -> physical lines read, once read
    spans: dict[str, dict[int, int]] = field(default_factory=dict)  # file -> wrapped record first -> last

    def files(self, spec: CaseSpec, snaps: tuple[Snapshot, ...]) -> tuple[InputFile, ...]:
        files = tuple(InputFile(name, "trace", self.counts.get(name, 0)) for name in trace_names(spec))
        return files + tuple(InputFile(s.name, s.kind, len(s.text.splitlines())) for s in snaps)

    def appendix_note(self) -> list[str]:
        total = sum(self.counts.values())
        # An entry is a record: one wrapped over several lines shows them all, and several records
        # of one line show that line once.
        shown = len(
            {
                (ref.file, n)
                for ref, _ in self.appendix
                for n in range(ref.line, self.spans.get(ref.file, {}).get(ref.line, ref.line) + 1)
            }
        )
        return [f"The appendix shows the first {shown} of {total} trace lines."] if shown < total else []


def trace_names(spec: CaseSpec) -> list[str]:
    """The trace files' names as lines refer to them (relative to the case folder)."""
    return [_rel(p, spec.base) for p in spec.traces]


def trace_events(spec: CaseSpec, snaps: tuple[Snapshot, ...], reading: TraceReading) -> list[Iterator[Event]]:
    """One lazy stream of events per trace file, in kernel order; reading them fills ``reading``."""
    chain_hooks = _nft_chain_hooks(list(snaps))
    # Which backend a project (firewalld) runs decides the table some of its prefixes are logged from.
    backends = known_backends(s.text for s in snaps)
    # The ruleset snapshots' LOG rules tell the tool, table and chain a prefix was logged from.
    rules = log_rules(snaps)
    return [
        _file_events(
            p,
            _rel(p, spec.base),
            spec,
            reading.unused,
            reading.appendix,
            reading.counts,
            chain_hooks,
            reading.spans,
            backends,
            rules,
        )
        for p in spec.traces
    ]


def _nft_chain_hooks(snaps: list[Snapshot]) -> ChainHooks:
    """(family, table, chain) -> hook for the base chains of nft ruleset snapshots, every family and
    chain type (nft(8) CHAINS: ``type filter|nat|route hook H [device D] priority P;``)."""
    out: ChainHooks = {}
    for s in snaps:
        if isinstance(s.data, NftRuleset):
            for t in s.data.tables:
                for c in t.chains:
                    if c.hook is not None:
                        out[(t.family, t.name, c.name)] = c.hook
    return out
