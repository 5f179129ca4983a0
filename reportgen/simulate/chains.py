"""The base chains registered at each hook, from every ruleset snapshot, in priority order.

Each table of each family registers its own base chains with the hook (nf_register_net_hook,
net/netfilter/core.c), so iptables-nft's tables, ebtables' and a native nft table such as
firewalld's or a user's own ``table inet x`` all run at the same hook, ordered by priority. The
iptables tables use the fixed priorities of netfilter.table_priority; an nft base chain states its own
(nft(8) "CHAIN PRIORITIES").
"""

from __future__ import annotations

from dataclasses import dataclass

from reportgen.model import Action, Snapshot
from reportgen.netfilter import BRIDGE, INET, IPV4, IPV6, table_priority, tables_at
from reportgen.parsers.nft_rules import _STD_TABLE, _prio, rule_from_nft
from reportgen.parsers.nft_ruleset import NftRuleset, NftTable
from reportgen.parsers.ruleset import Chain, Ruleset
from reportgen.parsers.snapshots import Kind, Links

# nft(8) "ADDRESS FAMILIES": the packet families each table family sees.
_NFT_SEES = {IPV4: (IPV4,), IPV6: (IPV6,), INET: (IPV4, IPV6), BRIDGE: (BRIDGE,)}
# nft(8): the bridge family's standard priority names differ from the IP ones.
_BRIDGE_PRIO = {"dstnat": -300, "filter": -200, "out": 100, "srcnat": 300}
_SAVE_KINDS: dict[str, str] = {Kind.IPTABLES_SAVE: IPV4, Kind.IP6TABLES_SAVE: IPV6, Kind.EBTABLES_SAVE: BRIDGE}


@dataclass(frozen=True)
class BaseChain:
    """One base chain at one hook: where it sits and where its rules came from."""

    family: str  # the packet family it sees: bridge, ipv4 or ipv6
    hook: str
    priority: int
    table: str
    chain: str
    rules: Ruleset  # the table's chains, for jumps
    source: str  # the snapshot file
    line: int  # the chain's declaration in that file (its policy is there)
    nat: bool  # a NAT chain: consulted only for a connection's first packet (nf_nat_core.c)
    tool: str  # "iptables" / "ip6tables" / "ebtables" (a *-save file) or "nft <family>"
    std_table: str  # the iptables/ebtables table its place stands for (itself for a *-save table)

    @property
    def label(self) -> str:
        return f"{self.tool} {self.table} {self.chain}"


def hairpin_modes(snaps: tuple[Snapshot, ...]) -> dict[str, tuple[bool, str]]:
    """Each bridge port's hairpin mode from ``ip -d link`` (bridge_slave ... hairpin on|off), with its line."""
    out: dict[str, tuple[bool, str]] = {}
    for s in snaps:
        if s.kind != Kind.IP_LINK or s.host != "host" or not isinstance(s.data, Links):
            continue
        for itf in s.data.interfaces:
            if itf.hairpin is not None:
                out[itf.name] = (itf.hairpin, f"{s.name}:{itf.hairpin_line}")
    return out


def _save_chain_lines(text: str) -> dict[tuple[str, str], int]:
    """Lines of the ':CHAIN POLICY' declarations of an iptables-save file, by (table, chain)."""
    out: dict[tuple[str, str], int] = {}
    table = ""
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":") and table:
            out[(table, line[1:].split()[0])] = n
    return out


def _nft_priority(family: str, text: str | None) -> int | None:
    if text is None:
        return None
    if family == BRIDGE:
        t = text.replace(" ", "")
        for name, val in _BRIDGE_PRIO.items():
            if t.startswith(name):
                rest = t[len(name) :]
                return val + int(rest) if rest.lstrip("+-").isdigit() else val
    return _prio(text)


def _std_table(family: str, hook: str, name: str, ctype: str, prio: int) -> str:
    """The iptables/ebtables table an nft base chain's place stands for: ebtables-nft keeps the table
    names; otherwise the type and priority tell (nft(8) "CHAIN PRIORITIES")."""
    if family == BRIDGE:
        if name in ("filter", "nat", "broute"):
            return name
        return next((t for t in tables_at(BRIDGE, hook) if table_priority(BRIDGE, hook, t) == prio), name)
    return _STD_TABLE.get((ctype, prio), name)


def _live_save(snaps: tuple[Snapshot, ...], family: str) -> Snapshot | None:
    """The save file whose rules the kernel runs: with iptables-nft and -legacy both saved, the one
    holding rules (the same choice explain.topology makes)."""
    best: tuple[int, Snapshot] | None = None
    for s in snaps:
        if _SAVE_KINDS.get(s.kind) == family and isinstance(s.data, Ruleset):
            count = sum(len(c.rules) for chains in s.data.tables.values() for c in chains.values())
            if best is None or count > best[0]:
                best = (count, s)
    return best[1] if best else None


def base_chains(snaps: tuple[Snapshot, ...]) -> dict[tuple[str, str], list[BaseChain]]:
    """Every base chain by (family, hook), sorted by priority (file order breaks ties)."""
    out: dict[tuple[str, str], list[BaseChain]] = {}
    covered: dict[str, set[str]] = {}
    for family in (IPV4, IPV6, BRIDGE):
        snap = _live_save(snaps, family)
        if snap is None:
            continue
        rs = snap.data
        assert isinstance(rs, Ruleset)
        lines = _save_chain_lines(snap.text)
        tool = {IPV4: "iptables", IPV6: "ip6tables", BRIDGE: "ebtables"}[family]
        # iptables-legacy's tables are x_tables, never the nf_tables tables nft lists under the same
        # names (xtables-nft(8)): both run. Without a header, the same names are taken as one table.
        covered[family] = set(rs.tables) if rs.nf_tables is not False else set()
        for table, chains in rs.tables.items():
            for name, chain in chains.items():
                prio = table_priority(family, name, table) if chain.policy is not None else None
                if prio is None:
                    continue
                out.setdefault((family, name), []).append(
                    BaseChain(
                        family,
                        name,
                        prio,
                        table,
                        name,
                        rs,
                        snap.name,
                        lines.get((table, name), 0),
                        table == "nat",
                        tool,
                        table,
                    )
                )
    for snap in snaps:
        if snap.kind != Kind.NFT_RULESET or not isinstance(snap.data, NftRuleset):
            continue
        for t in snap.data.tables:
            _add_nft_table(out, covered, snap.name, t)
    for at_hook in out.values():
        at_hook.sort(key=lambda c: c.priority)  # stable: file order among equal priorities
    return out


def _add_nft_table(
    out: dict[tuple[str, str], list[BaseChain]], covered: dict[str, set[str]], source: str, t: NftTable
) -> None:
    sees = _NFT_SEES.get(t.family, ())
    # A table an iptables-save file already showed is the same kernel table (iptables-nft writes
    # "table ip filter"); counting it twice would run its rules twice.
    if t.family in (IPV4, IPV6, BRIDGE) and any(t.name in covered.get(f, set()) for f in sees):
        return
    if t.dormant:
        return  # nft(8) TABLES: a dormant table's base chains are unregistered
    for family in sees:
        rs = Ruleset(family, source)
        chains: dict[str, Chain] = rs.tables.setdefault(t.name, {})
        for c in t.chains:
            chain = Chain(c.name, (c.policy or Action.ACCEPT).upper() if c.base else None)
            chain.rules = [rule_from_nft(t.name, c.name, n, r.line, r.expr) for n, r in enumerate(c.rules, start=1)]
            chains[c.name] = chain
        for c in t.chains:
            prio = _nft_priority(t.family, c.priority) if c.base else None
            hook = c.hook
            if prio is None or hook is None:
                continue  # netdev-style hooks (ingress, egress) are outside the hook graph the walk follows
            std = _std_table(family, hook, t.name, c.type or "", prio)
            out.setdefault((family, hook), []).append(
                BaseChain(
                    family,
                    hook,
                    prio,
                    t.name,
                    c.name,
                    rs,
                    source,
                    c.line,
                    c.type == "nat",
                    f"nft {t.nft_family}",
                    std,
                )
            )
