"""Which rule of the ruleset snapshots printed a LOG line: the tool, table and chain its prefix stands for.

A kernel LOG line does not say which tool's rule printed it: nf_log_syslog.c prints the same text for
iptables' LOG target (xt_LOG.c) and nft's log statement (nft_log.c), and ebtables-nft's log too. It
does print the rule's prefix verbatim, so when the ruleset snapshots hold exactly one place with a
LOG rule of that prefix, that place is evidence: the rule's tool, its table, the base chain (hook)
that reaches it. A prefix found in no rule says nothing; one found at several places says only what
they agree on (a prefix in both a bridge and an IP rule says nothing, since the line's layout does not
tell a bridge log from an IP one).

One rule can be shown twice: iptables-nft keeps its rules in nf_tables (xtables-nft(8): "Adding a rule
will result in that rule being added to the nf_tables kernel subsystem instead"), so an iptables-save
whose header says "(nf_tables)" (parsers.ruleset.Ruleset.nf_tables) and ``nft list ruleset`` both list
it, as table ``ip filter`` chain ``FORWARD``: one place, written by iptables. iptables-legacy keeps its
rules in x_tables, which ``nft list ruleset`` never shows, so a legacy rule and an nft rule with the
same prefix are two places.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from reportgen.model import HookRef, Snapshot, family_tool, nft_tool
from reportgen.netfilter import BRIDGE, HOOKS, INET, IPV4, IPV6, PREROUTING, tables_at
from reportgen.parsers.nft_ruleset import NftRuleset, NftTable
from reportgen.parsers.prefix import HOW_MAP
from reportgen.parsers.ruleset import Ruleset

# The packet families a table's rules see (nft(8) ADDRESS FAMILIES: inet sees IPv4 and IPv6).
_SEES = {IPV4: (IPV4,), IPV6: (IPV6,), INET: (IPV4, IPV6), BRIDGE: (BRIDGE,)}
# iptables(8)/ebtables(8): a table's built-in chains are named after their hooks; ebtables' broute
# table has BROUTING, which runs at bridge PREROUTING (ebtable_broute.c).
_BUILTIN = {**{h: h for h in HOOKS}, "BROUTING": PREROUTING}
# The tables iptables-nft and ebtables-nft create (iptables/nft.c xtables_ipv4[], xtables_bridge[]).
_XT_TABLES = {
    is_bridge: frozenset(t for h in HOOKS for t in tables_at(BRIDGE if is_bridge else IPV4, h))
    for is_bridge in (False, True)
}
_MEMO_LIMIT = 65536  # placed hooks remembered, as prefix.resolve_hook bounds its cache
_JUMP = re.compile(r'\b(?:jump|goto)\s+"?([^\s,;{}"]+)')  # nft(8) VERDICT STATEMENT: jump/goto CHAIN


@dataclass(frozen=True, slots=True)
class LogPlace:
    """A LOG rule's place: its tool, table and chain, and the base chains (with their hooks) reaching it."""

    key: tuple[str, str, str, str]  # (kernel store, table family, table, chain): one kernel table chain
    tools: frozenset[str]  # who may have written it: "iptables", "ip6tables", "ebtables", "nft <family>"
    family: str  # the table's family (IPV4, IPV6, INET, BRIDGE)
    table: str
    bases: tuple[tuple[str, str], ...]  # (base chain, hook) pairs whose walk reaches the rule
    ref: str  # "file:line" of the rule


def _reach(edges: Mapping[str, Iterable[str]], start: str) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _save_places(rs: Ruleset, prefixes: dict[str, list[LogPlace]]) -> None:
    tools = frozenset({family_tool(rs.family)})
    store = "nf_tables" if rs.nf_tables else "x_tables" if rs.nf_tables is False else f"unknown:{rs.source}"
    for table, chains in rs.tables.items():
        edges = {n: [r.target for r in c.rules if r.target in chains] for n, c in chains.items()}
        reached = {b: _reach(edges, b) for b in chains if b in _BUILTIN}
        for name, chain in chains.items():
            bases = tuple((b, _BUILTIN[b]) for b, seen in reached.items() if name in seen)
            for r in chain.rules:
                # ebtables(8) writes --log-prefix among the matches (the log watcher), iptables after -j LOG.
                lp = r.arg("--log-prefix") if r.target == "LOG" else None
                if lp is None:
                    lp = next((m.values[0] for m in r.matches if m.opt == "--log-prefix" and m.values), None)
                if lp is not None:
                    key = (store, rs.family, table, name)
                    prefixes.setdefault(lp.rstrip(), []).append(
                        LogPlace(key, tools, rs.family, table, bases, f"{rs.source}:{r.line}")
                    )


def _nft_tools(t: NftTable) -> frozenset[str]:
    """Who may have written an nft table's rules. nftables src/rule.c table_print() warns that
    iptables-nft manages a table holding xt expressions: iptables' (or ebtables') own. A table named as
    iptables-nft and ebtables-nft name theirs (iptables/nft.c builtin_table: raw, mangle, filter,
    security, nat; bridge filter, nat) may be theirs or written with nft (nft does not print xt
    expressions it can translate as such): either. Any other table only nft writes."""
    xt = family_tool(t.family)
    if t.iptables_nft and t.family != INET:
        return frozenset({xt})
    if t.family != INET and t.name in _XT_TABLES[t.family == BRIDGE]:
        return frozenset({xt, nft_tool(t.family)})
    return frozenset({nft_tool(t.family)})


def _nft_places(
    source: str, t: NftTable, shown: set[tuple[str, str, str, str]], out: dict[str, list[LogPlace]]
) -> None:
    if t.family not in _SEES or t.dormant:
        return  # arp/netdev tables are outside the hook graph; a dormant table runs nothing (nft(8) TABLES)
    names = {c.name for c in t.chains}
    edges = {c.name: [j for r in c.rules for j in _JUMP.findall(r.text) if j in names] for c in t.chains}
    reached = {c.name: (c.hook, _reach(edges, c.name)) for c in t.chains if c.hook is not None}
    for c in t.chains:
        bases = tuple((b, hook) for b, (hook, seen) in reached.items() if hook is not None and c.name in seen)
        for r in c.rules:
            if r.log_prefix is None:
                continue
            key = ("nf_tables", t.family, t.name, c.name)
            if key in shown:
                continue  # the same rule an iptables-nft save lists: one place, already counted
            out.setdefault(r.log_prefix.rstrip(), []).append(
                LogPlace(key, _nft_tools(t), t.family, t.name, bases, f"{source}:{r.line}")
            )


@dataclass
class LogRules:
    """The LOG rules of a case's ruleset snapshots by prefix, and the hooks placed by them (memo)."""

    places: dict[str, list[LogPlace]]
    memo: dict[tuple[HookRef, str], HookRef]

    def place(self, hook: HookRef, prefix: str) -> HookRef:
        """The hook with what the snapshots' LOG rule of this prefix shows: tool, table, base chain,
        and the hook itself when the record could be at several. Unchanged without such evidence."""
        if not self.places:
            return hook
        key = (hook, prefix)
        done = self.memo.get(key)
        if done is None:
            done = _placed(hook, self.places.get(prefix.rstrip(), []))
            if len(self.memo) < _MEMO_LIMIT:
                self.memo[key] = done
        return done


def log_rules(snaps: Iterable[Snapshot]) -> LogRules:
    """Index the LOG rules of every ruleset snapshot (iptables-save, ip6tables-save, ebtables-save,
    nft list ruleset) by their prefix."""
    places: dict[str, list[LogPlace]] = {}
    shown: set[tuple[str, str, str, str]] = set()
    nft: list[tuple[str, NftRuleset]] = []
    for s in snaps:
        if isinstance(s.data, Ruleset):
            s.data.source = s.name
            _save_places(s.data, places)
            if s.data.nf_tables:
                shown |= {("nf_tables", s.data.family, t, c) for t, chains in s.data.tables.items() for c in chains}
        elif isinstance(s.data, NftRuleset):
            nft.append((s.name, s.data))
    for name, data in nft:
        for t in data.tables:
            _nft_places(name, t, shown, places)
    return LogRules(places, {})


def _placed(hook: HookRef, found: list[LogPlace]) -> HookRef:
    if not found:
        return hook  # no rule prints this prefix: nothing to say
    kind = hook.family == BRIDGE
    if any((p.family == BRIDGE) != kind for p in found):
        return hook  # a bridge rule and an IP rule both print it: the line's layout does not tell which
    # IPv4 or IPv6 the record's own layout tells: a rule of the other version did not print it.
    mine = [p for p in found if hook.family in _SEES.get(p.family, ())]
    possible = hook.candidates or (hook.hook,)
    fit = [h for h in possible if any(h == hk for p in mine for _, hk in p.bases)]
    if not fit:
        return hook  # the snapshot's rule sits where this record cannot be: another time's ruleset
    # A rule no base chain at these hooks reaches (a user chain nothing jumps to) printed nothing here.
    places = {p.key: p for p in mine if any(hk in fit for _, hk in p.bases)}.values()
    tools = frozenset().union(*(p.tools for p in places))
    tables = {p.table for p in places}
    bases = {b for p in places for b, hk in p.bases if hk in fit}
    said: list[str] = []
    new = hook
    if len(tools) == 1:
        new = replace(new, writer=next(iter(tools)))
        said.append("tool")
    elif hook.writer is not None and hook.writer not in tools:
        new = replace(new, writer=None)  # what the prefix or layout said, no rule of that tool prints it
        said.append("tool left open")
    if len(tables) == 1 and hook.how == HOW_MAP and hook.table not in (None, *tables):
        return hook  # the user's prefix map names another table: it stands, the snapshot may be older
    if len(tables) == 1:
        new = replace(new, table=next(iter(tables)))
        said.append("table")
    if len(fit) == 1 and not hook.placed:
        new = replace(new, hook=fit[0], chain=fit[0], candidates=())
        said.append("hook")
    elif len(fit) < len(possible):
        new = replace(new, hook=fit[0], candidates=tuple(fit))
        said.append("hooks")
    if len(bases) == 1 and new.placed:
        new = replace(new, chain=next(iter(bases)))
        said.append("chain")
    if not said:
        return hook
    refs = sorted({p.ref for p in places})
    what = ", ".join(said[:-1]) + (" and " if len(said) > 1 else "") + said[-1]
    rule = "rule" if len(refs) == 1 else "rules"
    return replace(new, how=f"{hook.how}, {what} by the LOG {rule} at {' and '.join(refs)}")
