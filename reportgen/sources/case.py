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
from reportgen.explain.answer import answer_case
from reportgen.explain.correlate import correlate, merge_sources
from reportgen.explain.explain import explain
from reportgen.explain.topology import build_topology
from reportgen.model import Event, HookRef, InputFile, LineRef, LogRecord, Report, RuleHit, Snapshot, UnusedLine
from reportgen.netfilter import HOOKS, INET, INGRESS
from reportgen.parsers.nflog import parse_kernel_message
from reportgen.parsers.prefix import PrefixMap, resolve_hook
from reportgen.parsers.snapshots import PARSERS, detect_kind
from reportgen.parsers.traces import (
    NFT_FAMILY,
    ChainHooks,
    NftTraceParser,
    Visit,
    XtablesMonitorParser,
    detect_trace_format,
    device_hooks,
    legacy_trace_prefix,
    nft_hook,
    table_hooks,
)
from reportgen.sources.framing import LineFramer, read_lines, strip_wrapper

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


def _fingerprint(rec: LogRecord) -> tuple[object, ...]:
    return (rec.src, rec.dst, rec.ipid, rec.proto, rec.sport, rec.dport, rec.icmp_id, rec.icmp_seq, rec.in_dev,
            rec.out_dev, rec.tcp_seq)


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
        hit = RuleHit(table, chain, m.group("type") or "rule", "", "", m.group("num"), rec.ref)
        fp = _fingerprint(rec)
        cur = self.current
        same_packet = cur is not None and cur[0] == fp and cur[1].hook.table == table
        walk_ended = cur is not None and any(h.kind == "policy" for h in cur[2])
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


def _file_events(path: Path, name: str, spec: CaseSpec, unused: list[UnusedLine],
                 appendix: list[tuple[LineRef, str]], counts: dict[str, int],
                 chain_hooks: ChainHooks) -> Iterator[Event]:
    """Stream one trace file into events; every line becomes part of an event or an unused entry."""
    head = [t for _, t in itertools.islice(read_lines(path), 50)]
    fmt = detect_trace_format(head)
    monitor = (XtablesMonitorParser(chain_hooks) if fmt == "xtmon" else NftTraceParser(chain_hooks)
               if fmt == "nfttrace" else None)
    legacy = _LegacyTraceGrouper()
    # Kernel log lines are re-framed (glued records split, wrapped ones joined); monitors keep theirs.
    lines = LineFramer(read_lines(path), split_records=monitor is None)
    for n, text in lines:
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
                yield from _visit_event(v, unused)
            continue
        framed = strip_wrapper(text)
        rec = parse_kernel_message(framed.msg, ref, text, framed.stamp)
        if rec is None:
            # A note or a "..." inside a pasted TRACE walk does not end the walk: the next line of
            # the same packet and table continues it (_LegacyTraceGrouper compares the packet).
            _add_unused(unused, ref, "other line: not a netfilter LOG or ebtables record", text)
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
        yield Event(rec, res.hook)
    yield from legacy.flush()
    if monitor is not None:
        for v in monitor.flush():
            yield from _visit_event(v, unused)
    counts[name] = lines.last_line


def _visit_event(v: Visit, unused: list[UnusedLine]) -> Iterator[Event]:
    # A walk whose packet line the paste cut off still shows the chain, the rules and the verdict:
    # it becomes a hop without header fields, joined to its packet by the trace id (correlate.py).
    if not v.table:
        _add_unused(unused, v.ref, "trace packet line without rule lines: the chain it was seen in is not printed",
                    v.text)
        return
    place = v.place
    if place is None or (place.hook is None and not place.candidates):
        # netdev ingress/egress: device hooks outside the IP and bridge hook graph (netfilter.py).
        for ref in (v.ref, *v.extra, *(r.ref for r in v.rules)):
            _add_unused(unused, ref, f"nft {v.family} chain {v.table} {v.chain}: its hook has no stage in "
                        "reportgen's hook graph", v.text if ref == v.ref else "")
        return
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
        hook = HookRef(v.family, next(h for h in hooks if h in HOOKS), table, v.chain, how,
                       candidates=tuple(hooks) if len(hooks) > 1 else ())
    yield Event(rec, hook, tuple(v.rules), tuple(v.extra))


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
    # Predicted versus observed: each conversation's first packet simulated on the snapshots.
    from reportgen.simulate.compare import predict_conversations

    convs = predict_conversations(convs, packets, tuple(snaps), topo)
    groups, answers, footers, summary = answer_case(convs, packets, topo)
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
        groups=groups, answers=answers, footers=footers, summary=summary,
    )


def _nft_chain_hooks(snaps: list[Snapshot]) -> ChainHooks:
    """(family, table, chain) -> hook for the base chains of nft ruleset snapshots, every family and
    chain type (nft(8) CHAINS: ``type filter|nat|route hook H [device D] priority P;``)."""
    out: ChainHooks = {}
    for s in snaps:
        if s.kind == "nft-ruleset" and isinstance(s.data, dict):
            for t in s.data["tables"]:
                fam = NFT_FAMILY.get(t["family"], t["family"])
                for c in t["chains"]:
                    hook = nft_hook(c["hook"]) if c["hook"] else None
                    if hook is not None:
                        out[(fam, t["name"], c["name"])] = hook
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
