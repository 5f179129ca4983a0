"""Load a case (a folder with case.yaml, a folder without one, or loose files) and build a Report.

Trace files are streamed line by line; every line ends up either as an event or in the unused list
with a reason. Snapshot files are recognised by their content when no manifest names their kind.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from reportgen.errors import InputError
from reportgen.explain.correlate import correlate, merge_sources
from reportgen.explain.explain import explain
from reportgen.explain.groups import group_packets
from reportgen.explain.topology import build_topology
from reportgen.model import Event, HookRef, InputFile, LineRef, LogRecord, Report, RuleHit, Snapshot, UnusedLine
from reportgen.netfilter import HOOKS
from reportgen.parsers.nflog import parse_kernel_message
from reportgen.parsers.prefix import PrefixMap, resolve_hook
from reportgen.parsers.snapshots import PARSERS, detect_kind
from reportgen.parsers.traces import NftTraceParser, Visit, XtablesMonitorParser, base_chain_hook, detect_trace_format
from reportgen.sources.framing import read_lines, strip_wrapper

APPENDIX_LIMIT = 20000  # trace lines kept for the report appendix; the JSON account covers all


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


def load_spec(paths: list[Path], prefix_map: PrefixMap | None = None) -> CaseSpec:
    """Turn the command-line inputs into a CaseSpec; errors name the file."""
    if len(paths) == 1 and paths[0].is_dir():
        d = paths[0]
        manifest = d / "case.yaml"
        if manifest.exists():
            spec = _from_manifest(d, manifest)
        else:
            spec = CaseSpec(d.name, d.name, "", d)
            _classify(spec, sorted(p for p in d.iterdir() if p.is_file() and p.name != "prefixes.yaml"))
        pm = d / "prefixes.yaml"
        if pm.exists():
            spec.prefix_map = spec.prefix_map.merged(PrefixMap.load(pm))
    else:
        for p in paths:
            if not p.exists():
                raise InputError(str(p), None, "no such file")
            if p.is_dir():
                raise InputError(str(p), None, "give either one case folder or files, not a mix")
        base = paths[0].parent
        name = paths[0].stem if len(paths) == 1 else base.name or "case"
        spec = CaseSpec(name, name, "", base)
        _classify(spec, paths)
    if prefix_map is not None:
        spec.prefix_map = spec.prefix_map.merged(prefix_map)
    return spec


def _from_manifest(d: Path, manifest: Path) -> CaseSpec:
    try:
        data = yaml.safe_load(manifest.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(str(manifest), mark.line + 1 if mark else None, f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(str(manifest), None, "a case manifest is a mapping with title, trace, snapshots")
    spec = CaseSpec(d.name, str(data.get("title", d.name)), str(data.get("description", "")).strip(), d)
    for entry in data.get("trace", []) or []:
        p = d / str(entry)
        if not p.exists():
            raise InputError(str(manifest), None, f"trace file {entry!r} does not exist")
        spec.traces.append(p)
    for entry in data.get("snapshots", []) or []:
        if isinstance(entry, dict):
            fname, kind, host = str(entry.get("file")), entry.get("kind"), str(entry.get("host", "host"))
        else:
            fname, kind, host = str(entry), None, "host"
        p = d / fname
        if not p.exists():
            raise InputError(str(manifest), None, f"snapshot file {fname!r} does not exist")
        spec.snapshots.append((p, kind, host))
    for entry in data.get("attachments", []) or []:
        # Outputs kept for the reader (iptables-save, nft, conntrack ...), shown verbatim.
        p = d / str(entry.get("file") if isinstance(entry, dict) else entry)
        if not p.exists():
            raise InputError(str(manifest), None, f"attachment {p.name!r} does not exist")
        kind = str(entry.get("kind", "attachment")) if isinstance(entry, dict) else "attachment"
        spec.snapshots.append((p, "attachment:" + kind, "host"))
    for note in data.get("notes", []) or []:
        spec.notes.append(str(note))
    lab = data.get("lab")
    if isinstance(lab, dict) and isinstance(lab.get("versions"), dict):
        v = lab["versions"]
        spec.notes.append("Captured on kernel " + str(v.get("kernel")) + " with " +
                          ", ".join(f"{k} {val}" for k, val in sorted(v.items()) if k != "kernel") + ".")
    return spec


def _classify(spec: CaseSpec, files: list[Path]) -> None:
    for p in files:
        if p.suffix in (".yaml", ".yml") and p.name != "prefixes.yaml":
            continue
        head = p.open("rb").read(4096).decode("utf-8", errors="replace")
        kind = detect_kind(head)
        if kind:
            spec.snapshots.append((p, kind, "host"))
        else:
            spec.traces.append(p)


def _add_unused(unused: list[UnusedLine], ref: LineRef, reason: str, text: str) -> None:
    """Record an unused line, extending the previous run when it is the next line with the same reason."""
    if unused:
        prev = unused[-1]
        end = max(prev.last, prev.ref.line)
        if prev.ref.file == ref.file and prev.reason == reason and end + 1 == ref.line:
            unused[-1] = UnusedLine(prev.ref, reason, prev.text, ref.line)
            return
    unused.append(UnusedLine(ref, reason, text))


_TRACE_PREFIX = re.compile(r"^TRACE: (?P<table>[^:]+):(?P<chain>.+):(?P<type>rule|return|policy):(?P<num>\d+) ?$")


def _fingerprint(rec: LogRecord) -> tuple[object, ...]:
    return (rec.src, rec.dst, rec.ipid, rec.proto, rec.sport, rec.dport, rec.icmp_id, rec.icmp_seq, rec.in_dev,
            rec.out_dev, rec.tcp_seq)


class _LegacyTraceGrouper:
    """Group legacy ``TRACE:`` kernel lines of one packet at one hook into one event.

    ipt_do_table() logs one line per matched rule, then the policy or return, while it walks one
    table's chain for one packet (ip_tables.c trace_packet), so those lines are consecutive; a user
    chain's lines carry only the chain's name and belong to the visit that jumped there.
    """

    def __init__(self) -> None:
        self.current: tuple[tuple[object, ...], Event, list[RuleHit]] | None = None

    def feed(self, rec: LogRecord, m: re.Match[str]) -> tuple[list[Event], str | None]:
        table, chain = m.group("table"), m.group("chain")
        hit = RuleHit(table, chain, m.group("type"), "", "", m.group("num"), rec.ref)
        fp = _fingerprint(rec)
        cur = self.current
        same_packet = cur is not None and cur[0] == fp and cur[1].hook.table == table
        if chain not in HOOKS:
            if cur is None or not same_packet:
                return [], f"TRACE line in user chain {chain!r} without its built-in chain visit"
            cur[2].append(hit)
            return [], None
        walk_ended = cur is not None and any(h.kind == "policy" for h in cur[2])
        if cur is not None and same_packet and cur[1].hook.chain == chain and not walk_ended:
            cur[2].append(hit)  # the same chain walk goes on, back from a user chain (a policy ends it)
            return [], None
        out = self.flush()
        fam = rec.l3 if rec.l3 in ("ipv4", "ipv6") else "ipv4"
        self.current = (fp, Event(rec, HookRef(fam, chain, table, chain, "TRACE prefix")), [hit])
        return out, None

    def flush(self) -> list[Event]:
        if self.current is None:
            return []
        _, ev, hits = self.current
        self.current = None
        return [replace(ev, rules=tuple(hits))]


def _file_events(path: Path, name: str, spec: CaseSpec, unused: list[UnusedLine],
                 appendix: list[tuple[LineRef, str]], counts: dict[str, int],
                 chain_hooks: dict[tuple[str, str], str]) -> Iterator[Event]:
    """Stream one trace file into events; every line becomes part of an event or an unused entry."""
    head = [t for _, t in itertools.islice(read_lines(path), 50)]
    fmt = detect_trace_format(head)
    monitor = XtablesMonitorParser() if fmt == "xtmon" else NftTraceParser() if fmt == "nfttrace" else None
    legacy = _LegacyTraceGrouper()
    n = 0
    for n, text in read_lines(path):
        ref = LineRef(name, n)
        if len(appendix) < APPENDIX_LIMIT:
            appendix.append((ref, text))
        if not text.strip():
            _add_unused(unused, ref, "blank line", text)
            continue
        if monitor is not None:
            visits, used = monitor.feed(ref, text)
            if not used:
                _add_unused(unused, ref, f"other line: not a {fmt} trace event", text)
            for v in visits:
                yield from _visit_event(v, unused, chain_hooks)
            continue
        framed = strip_wrapper(text)
        rec = parse_kernel_message(framed.msg, ref, text, framed.stamp)
        if rec is None:
            yield from legacy.flush()
            _add_unused(unused, ref, "other line: not a netfilter LOG or ebtables record", text)
            continue
        t = _TRACE_PREFIX.match(rec.prefix)
        if t and not spec.prefix_map.lookup(rec.prefix):
            done, problem = legacy.feed(rec, t)
            yield from done
            if problem:
                _add_unused(unused, ref, problem, text)
            continue
        yield from legacy.flush()
        res = resolve_hook(rec, spec.prefix_map)
        if res.hook is None:
            _add_unused(unused, ref, f"hook not recognised: {res.problem}", text)
            continue
        yield Event(rec, res.hook)
    yield from legacy.flush()
    if monitor is not None:
        for v in monitor.flush():
            yield from _visit_event(v, unused, chain_hooks)
    counts[name] = n


def _visit_event(v: Visit, unused: list[UnusedLine], chain_hooks: dict[tuple[str, str], str]) -> Iterator[Event]:
    hook = base_chain_hook(v.table, v.chain, v.family) or chain_hooks.get((v.table, v.chain))
    if not v.text:
        for r in v.rules:
            _add_unused(unused, r.ref, "trace rule line whose packet line is missing", "")
        return
    if hook is None:
        for ref in (v.ref, *(r.ref for r in v.rules)):
            _add_unused(unused, ref, f"base chain {v.table} {v.chain}: its hook is not in its name; add an nft "
                        "ruleset snapshot", v.text if ref == v.ref else "")
        return
    how = "nft trace" if v.fmt == "nfttrace" else "xtables-monitor"
    table = v.table if v.table else None
    yield Event(v.record(), HookRef(v.family, hook, table, v.chain, how), tuple(v.rules))


def build_report(spec: CaseSpec) -> Report:
    """Read, correlate and explain one case."""
    snaps = []
    for path, kind, host in spec.snapshots:
        text = path.read_text(encoding="utf-8", errors="replace")
        k = kind or detect_kind(text)
        if k is not None and k.startswith("attachment:"):
            k = k.split(":", 1)[1]
            # Attachments whose kind reportgen can read are parsed too; the rest are shown verbatim.
            if k not in PARSERS:
                snaps.append(Snapshot(_rel(path, spec.base), k, text, None, host))
                continue
        if k is None or k not in PARSERS:
            raise InputError(str(path), None, f"unknown snapshot kind {k!r}; known: {', '.join(sorted(PARSERS))}")
        try:
            data = PARSERS[k](text)
        except InputError as exc:
            raise InputError(str(path), exc.line, exc.message, exc.text) from exc
        except ValueError as exc:
            raise InputError(str(path), None, f"cannot parse as {k}: {exc}") from exc
        snaps.append(Snapshot(_rel(path, spec.base), k, text, data, host))
    topo = build_topology(tuple(snaps))
    unused: list[UnusedLine] = []
    appendix: list[tuple[LineRef, str]] = []
    counts: dict[str, int] = {}
    chain_hooks = _nft_chain_hooks(snaps)
    per_file = [list(_file_events(p, _rel(p, spec.base), spec, unused, appendix, counts, chain_hooks))
                for p in spec.traces]
    events = [ev for evs in per_file for ev in evs]
    inferred = _bridges_from_events(events)
    topo = replace(topo, bridges={**{b: () for b in sorted(inferred)}, **topo.bridges})
    bridges = frozenset(topo.bridges)
    # Each source is correlated on its own (its lines are in kernel order), then packets seen by
    # several sources (LOG lines, ebtables lines, a trace monitor) are merged in hook order.
    tracks = merge_sources([correlate(evs, bridges) for evs in per_file])
    convs, packets = explain(tracks, topo)
    total = sum(counts.values())
    files = tuple(InputFile(_rel(p, spec.base), "trace", counts.get(_rel(p, spec.base), 0)) for p in spec.traces)
    files += tuple(InputFile(s.name, s.kind, len(s.text.splitlines())) for s in snaps)
    notes = list(spec.notes)
    if len(appendix) < total:
        notes.append(f"The appendix shows the first {len(appendix)} of {total} trace lines.")
    return Report(
        name=spec.name, title=spec.title, description=spec.description, files=files, snapshots=tuple(snaps),
        conversations=tuple(convs), packets=tuple(packets), lines_total=total,
        lines_used=total - sum(u.count for u in unused),
        unused=tuple(unused), lines=tuple(appendix), notes=tuple(notes), topology=topo,
        groups=group_packets(packets),
    )


def _nft_chain_hooks(snaps: list[Snapshot]) -> dict[tuple[str, str], str]:
    """(table, chain) -> hook for base chains named in an nft ruleset snapshot."""
    out: dict[tuple[str, str], str] = {}
    for s in snaps:
        if s.kind == "nft-ruleset" and isinstance(s.data, dict):
            for t in s.data["tables"]:
                for c in t["chains"]:
                    if c["hook"]:
                        out[(t["name"], c["name"])] = c["hook"].upper()
    return out


def _bridges_from_events(events: list[Event]) -> frozenset[str]:
    """An interface that appears as IN/OUT together with PHYSIN/PHYSOUT is a bridge (br_netfilter)."""
    out = set()
    for ev in events:
        r = ev.record
        if r.physin and r.in_dev:
            out.add(r.in_dev)
        if r.physout and r.out_dev:
            out.add(r.out_dev)
    return frozenset(out)
