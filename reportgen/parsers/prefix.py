"""Recognise the hook a log line came from: from its prefix words, a TRACE prefix, or a prefix map.

The kernel does not print the hook in a LOG line; only the prefix the rule author chose can tell.
So the recognition is conservative: a line whose prefix names no chain, or names two, stays
unresolved with a hint, and is never placed by guesswork.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from reportgen.errors import InputError
from reportgen.model import HookRef, LogRecord
from reportgen.netfilter import BRIDGE, FORWARD, HOOKS, INPUT, IPV4, IPV6, OUTPUT, POSTROUTING, PREROUTING

_FAMILY_WORDS = {
    "eb": BRIDGE, "ebt": BRIDGE, "ebtable": BRIDGE, "ebtables": BRIDGE, "bridge": BRIDGE, "br": BRIDGE,
    "ipt": IPV4, "iptable": IPV4, "iptables": IPV4, "ip4": IPV4, "ipv4": IPV4, "ip": IPV4, "v4": IPV4,
    "ip6t": IPV6, "ip6table": IPV6, "ip6tables": IPV6, "ip6": IPV6, "ipv6": IPV6, "v6": IPV6,
}
_TABLE_WORDS = {"raw": "raw", "mangle": "mangle", "nat": "nat", "filter": "filter", "security": "security",
                "broute": "broute", "mgl": "mangle", "flt": "filter"}
_CHAIN_WORDS = {
    "prerouting": PREROUTING, "preroute": PREROUTING, "prerout": PREROUTING, "pre": PREROUTING,
    "input": INPUT, "in": INPUT, "inp": INPUT,
    "forward": FORWARD, "fwd": FORWARD, "forw": FORWARD,
    "output": OUTPUT, "out": OUTPUT,
    "postrouting": POSTROUTING, "postroute": POSTROUTING, "postrout": POSTROUTING, "post": POSTROUTING,
    "brouting": "BROUTING",
}
# The only table that has a given chain, where there is just one: ebtables(8) "TABLES" (filter has
# INPUT, FORWARD, OUTPUT; nat has PREROUTING, OUTPUT, POSTROUTING; broute has BROUTING) and
# iptables(8) "TABLES" (raw: PREROUTING, OUTPUT; ...). An unnamed table is inferred only when unique.
_UNIQUE_TABLE = {
    (BRIDGE, INPUT): "filter", (BRIDGE, FORWARD): "filter",
    (BRIDGE, PREROUTING): "nat", (BRIDGE, POSTROUTING): "nat", (BRIDGE, "BROUTING"): "broute",
}
_TRACE = re.compile(r"^TRACE: (?P<table>[^:]+):(?P<chain>.+):(?P<type>rule|return|policy):(?P<num>\d+) ?$")

MAP_HINT = (
    "add it to a prefix map (prefixes.yaml in the case folder, or --prefix-map FILE), e.g. "
    "prefixes: {{{example!r}: 'ipv4 filter INPUT'}}"
)


@dataclass(frozen=True)
class Resolution:
    """The hook of a record, or why it could not be told."""

    hook: HookRef | None
    problem: str | None = None


@dataclass(frozen=True)
class PrefixMap:
    """User-given prefix -> hook mapping (exact prefix, trimmed, or ``re:PATTERN``)."""

    exact: dict[str, tuple[str, str | None, str]]
    patterns: tuple[tuple[re.Pattern[str], tuple[str, str | None, str]], ...]
    cache: dict[tuple[str, str, str | None], Resolution] = field(default_factory=dict, compare=False, repr=False)

    @staticmethod
    def empty() -> PrefixMap:
        return PrefixMap({}, ())

    @staticmethod
    def load(path: Path) -> PrefixMap:
        """Read a YAML prefix map; errors name the file and the entry."""
        from reportgen.sources.bounded import load_yaml  # size and alias limits: the file may be hostile

        data = load_yaml(path) or {}
        entries = data.get("prefixes", data) if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            raise InputError(str(path), None, "a prefix map is a mapping 'prefix: \"family table chain\"'")
        exact: dict[str, tuple[str, str | None, str]] = {}
        pats: list[tuple[re.Pattern[str], tuple[str, str | None, str]]] = []
        for key, spec in entries.items():
            target = _parse_spec(str(path), str(key), spec)
            if str(key).startswith("re:"):
                try:
                    pats.append((re.compile(str(key)[3:]), target))
                except re.error as exc:
                    raise InputError(str(path), None, f"bad pattern {key!r}: {exc}") from exc
            else:
                exact[str(key).strip()] = target
        return PrefixMap(exact, tuple(pats))

    def merged(self, other: PrefixMap) -> PrefixMap:
        return PrefixMap({**self.exact, **other.exact}, self.patterns + other.patterns)

    def lookup(self, prefix: str) -> tuple[str, str | None, str] | None:
        hit = self.exact.get(prefix.strip())
        if hit:
            return hit
        for pat, target in self.patterns:
            if pat.search(prefix):
                return target
        return None


def _parse_spec(path: str, key: str, spec: object) -> tuple[str, str | None, str]:
    if isinstance(spec, dict):
        fam, table, chain = spec.get("family"), spec.get("table"), spec.get("chain")
    elif isinstance(spec, str) and len(spec.split()) == 3:
        fam, table, chain = spec.split()
    else:
        raise InputError(path, None, f"entry {key!r}: expected 'family table chain', got {spec!r}")
    fam = {"ip": IPV4, "ip4": IPV4, "ip6": IPV6, "eb": BRIDGE}.get(str(fam), str(fam))
    if fam not in (BRIDGE, IPV4, IPV6):
        raise InputError(path, None, f"entry {key!r}: family must be bridge, ipv4 or ipv6, not {fam!r}")
    chain_u = str(chain).upper()
    if chain_u not in HOOKS and chain_u != "BROUTING":
        raise InputError(path, None, f"entry {key!r}: chain must be a hook name, not {chain!r}")
    return fam, (str(table) if table not in (None, "?", "-") else None), chain_u


def _record_family(rec: LogRecord) -> str | None:
    if rec.fmt == "ebtlog":
        return BRIDGE
    if rec.l3 in (IPV4, IPV6):
        return rec.l3
    return None


def resolve_hook(rec: LogRecord, prefix_map: PrefixMap) -> Resolution:
    """Place a record at its hook, or explain why that cannot be done.

    The answer depends only on the prefix, the record's layout and the map, and a log repeats a few
    prefixes many times, so it is cached per map.
    """
    key = (rec.prefix, rec.fmt, rec.l3)
    hit = prefix_map.cache.get(key)
    if hit is None:
        hit = _resolve(rec, prefix_map)
        if len(prefix_map.cache) < 65536:
            prefix_map.cache[key] = hit
    return hit


def _resolve(rec: LogRecord, prefix_map: PrefixMap) -> Resolution:
    mapped = prefix_map.lookup(rec.prefix)
    if mapped:
        fam, table, chain = mapped
        if fam != BRIDGE and rec.l3 in (IPV4, IPV6):
            fam = rec.l3  # an inet table logs both; the record's own layout decides
        hook = PREROUTING if chain == "BROUTING" else chain
        return Resolution(HookRef(fam, hook, table, chain, "prefix map"))
    t = _TRACE.match(rec.prefix)
    if t:
        chain = t.group("chain")
        fam = _record_family(rec) or IPV4
        if chain not in HOOKS:
            return Resolution(None, f"TRACE line in user chain {chain!r}: its hook is not printed")
        return Resolution(HookRef(fam, chain, t.group("table"), chain, "TRACE prefix"))
    return _from_words(rec)


def _from_words(rec: LogRecord) -> Resolution:
    words = [w.lower() for w in re.split(r"[^A-Za-z0-9]+", rec.prefix) if w]
    example = rec.prefix.strip() or "(empty prefix)"
    fams = {_FAMILY_WORDS[w] for w in words if w in _FAMILY_WORDS}
    tables = {_TABLE_WORDS[w] for w in words if w in _TABLE_WORDS}
    chains = {_CHAIN_WORDS[w] for w in words if w in _CHAIN_WORDS}
    # Short words ("in", "out", "pre", "post") only count when no full chain name is present.
    full = {_CHAIN_WORDS[w] for w in words if w in _CHAIN_WORDS and len(w) > 4}
    if full:
        chains = full
    if not chains:
        return Resolution(None, f"prefix {example!r} names no chain; " + MAP_HINT.format(example=example))
    if len(chains) > 1 or len(tables) > 1:
        return Resolution(
            None, f"prefix {example!r} names several chains or tables; " + MAP_HINT.format(example=example)
        )
    chain = next(iter(chains))
    family = _record_family(rec)
    if BRIDGE in fams or chain == "BROUTING" or "broute" in tables:
        family = BRIDGE
    if family is None:
        return Resolution(None, f"record has no IP or bridge layout to tell its family ({example!r})")
    table = next(iter(tables)) if tables else _UNIQUE_TABLE.get((family, chain))
    hook = PREROUTING if chain == "BROUTING" else chain
    return Resolution(HookRef(family, hook, table, chain, "prefix words"))
