"""Read an ``nft list ruleset`` snapshot as iptables-style rules, so one evaluator serves both.

Each nft rule becomes a ``Rule`` whose matches use the iptables option names the evaluator knows
(``iifname "x"`` → ``-i x``, ``ip saddr`` → ``-s``, ``tcp dport`` → ``-p tcp --dport``, ``ct state`` →
``--ctstate``, ``fib daddr type local`` → ``--dst-type LOCAL``) and whose target is the verdict
(``accept`` → ACCEPT, ``jump X`` → X, ``masquerade`` → MASQUERADE ...). An expression with no
equivalent becomes a match the evaluator reports as "not evaluated"; nothing is approximated.

Base chains are found by (table, chain) as named, and also by the iptables table their type and
priority stand for (nft(8) "CHAIN PRIORITIES": raw -300, mangle -150, dstnat -100, filter 0,
security 50, srcnat 100), so a native nft ruleset answers "nat POSTROUTING" too.
"""

from __future__ import annotations

import ipaddress

from reportgen.model import Action
from reportgen.netfilter import INET, IPV4, IPV6
from reportgen.parsers.nft_ruleset import NftRuleset
from reportgen.parsers.ruleset import Chain, Match, Rule, Ruleset, split_words

_PRIO_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
_STD_TABLE = {
    ("nat", -100): "nat",
    ("nat", 100): "nat",
    ("filter", -300): "raw",
    ("filter", -150): "mangle",
    ("filter", 0): "filter",
    ("filter", 50): "security",
    ("route", -150): "mangle",
}
_VERDICTS = {"accept": "ACCEPT", "drop": "DROP", "return": "RETURN", "continue": "CONTINUE", "queue": "QUEUE"}
# nft(8) "ADDRESS FAMILIES": an inet table sees both IPv4 and IPv6 packets.
_FAMILIES = {IPV4: (IPV4,), IPV6: (IPV6,), INET: (IPV4, IPV6)}


def _prio(text: str | None) -> int | None:
    if text is None:
        return None
    t = text.replace(" ", "")
    for name, val in _PRIO_NAMES.items():
        if t.startswith(name):
            rest = t[len(name) :]
            return val + int(rest) if rest.lstrip("+-").isdigit() else val
    try:
        return int(t)
    except ValueError:
        return None


def _networks(spec: str) -> bool:
    """Whether every member of ``a,b,c`` is an address or prefix (what explain.rules evaluates)."""
    try:
        for part in spec.split(","):
            ipaddress.ip_network(part.strip(), strict=False)
    except ValueError:
        return False
    return True


def _neg(tokens: list[str], i: int) -> tuple[bool, int]:
    if i < len(tokens) and tokens[i] == "!=":
        return True, i + 1
    if i < len(tokens) and tokens[i] == "==":
        return False, i + 1
    return False, i


def _anonymous_set(toks: list[str], i: int) -> tuple[str | None, int]:
    """Read ``{ a, b, c }`` (an anonymous set, nft(8) "SETS") starting at toks[i] as "a,b,c"; None if
    toks[i] opens no anonymous set. Returns the index after the closing brace."""
    if i >= len(toks) or not toks[i].startswith("{"):
        return None, i
    parts: list[str] = []
    while i < len(toks):
        tok = toks[i]
        i += 1
        parts += [p for p in tok.strip("{}").split(",") if p.strip()]
        if tok.endswith("}"):
            return ",".join(p.strip() for p in parts), i
    return None, i


def rule_from_nft(table: str, chain: str, num: int, line: int, text: str) -> Rule:
    """Translate one nft rule into a Rule for reportgen.explain.rules."""
    try:
        toks = split_words(text)
    except ValueError:
        return Rule(table, chain, num, line, text, (Match("nft", (text,), False, "nft"),), None, ())
    matches: list[Match] = []
    target: str | None = None
    targs: list[Match] = []
    goto = False
    i = 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if t in ("iifname", "oifname"):
            neg, i = _neg(toks, i + 1)
            name = toks[i] if i < len(toks) else ""
            if name.startswith(("{", "$", "@")):
                return _unsupported(table, chain, num, line, text, matches, f"{t} {name}")
            matches.append(
                Match("-i" if t == "iifname" else "-o", (name[:-1] + "+" if name.endswith("*") else name,), neg, None)
            )
            i += 1
        elif t in ("ip", "ip6") and nxt in ("saddr", "daddr"):
            neg, i = _neg(toks, i + 2)
            val = toks[i] if i < len(toks) else ""
            members, after = _anonymous_set(toks, i)
            if members is not None and _networks(members):  # any member matches (explain.rules reads the list)
                matches.append(Match("-s" if nxt == "saddr" else "-d", (members,), neg, None))
                i = after
                continue
            if val.startswith("@"):  # a named set: its members are not read
                return _unsupported(table, chain, num, line, text, matches, f"{t} {nxt} set")
            if members is not None or not _networks(val):
                # A range (10.0.0.1-10.0.0.9), a $variable no define set, a map: the evaluator reads
                # prefixes only, and would take anything else for "no match".
                return _unsupported(table, chain, num, line, text, matches, f"{t} {nxt} {val}")
            matches.append(Match("-s" if nxt == "saddr" else "-d", (val,), neg, None))
            i += 1
        elif (
            (t == "meta" and nxt == "l4proto") or (t == "ip" and nxt == "protocol") or (t == "ip6" and nxt == "nexthdr")
        ):
            neg, i = _neg(toks, i + 2)
            matches.append(Match("-p", (toks[i] if i < len(toks) else "",), neg, None))
            i += 1
        elif t in ("tcp", "udp", "th") and nxt in ("sport", "dport"):
            neg, i = _neg(toks, i + 2)
            val = toks[i] if i < len(toks) else ""
            members, after = _anonymous_set(toks, i)
            if members is not None:  # a port list, as multiport's --dports reads it
                val, i = members, after - 1
            elif val.startswith("@"):
                return _unsupported(table, chain, num, line, text, matches, f"{t} {nxt} set")
            if t != "th":
                matches.append(Match("-p", (t,), False, None))
            matches.append(Match("--" + nxt, (val.replace("-", ":"),), neg, t))
            i += 1
        elif t == "ct" and nxt == "state":
            neg, i = _neg(toks, i + 2)
            val = toks[i] if i < len(toks) else ""
            members, after = _anonymous_set(toks, i)
            if members is not None:
                val, i = members, after - 1
            matches.append(Match("--ctstate", (val.upper(),), neg, "conntrack"))
            i += 1
        elif t == "fib" and nxt in ("daddr", "saddr") and toks[i + 2 : i + 4] == ["type", "local"]:
            matches.append(Match("--dst-type" if nxt == "daddr" else "--src-type", ("LOCAL",), False, "addrtype"))
            i += 4
        elif t == "counter":
            i += 1
            while i + 1 < len(toks) and toks[i] in ("packets", "bytes"):
                i += 2
        elif t == "comment":
            i += 2
        elif t == "log":
            target = "LOG"
            i += 1
            while i + 1 < len(toks) and toks[i] in ("prefix", "level", "flags", "group", "snaplen"):
                if toks[i] == "prefix":
                    targs.append(Match("--log-prefix", (toks[i + 1],), False, "target"))
                i += 2
        elif t == "meta" and i + 2 < len(toks) and toks[i + 2] == "set":
            i += 4  # meta mark/nftrace set V: sets, does not decide
        elif t in _VERDICTS:
            target = _VERDICTS[t]
            i += 1
        elif t == "reject":
            target = "REJECT"
            i = len(toks)
        elif t in ("jump", "goto"):
            target, goto = nxt, t == "goto"
            i += 2
        elif t == "masquerade":
            target = "MASQUERADE"
            i = len(toks)
        elif t in ("snat", "dnat", "redirect"):
            target = {"snat": "SNAT", "dnat": "DNAT", "redirect": "REDIRECT"}[t]
            rest = toks[i + 1 :]
            if rest[:1] == ["to"] and len(rest) > 1:
                targs.append(Match("--to", (rest[1],), False, "target"))
            i = len(toks)
        else:
            return _unsupported(table, chain, num, line, text, matches, t)
    return Rule(table, chain, num, line, text, tuple(matches), target, tuple(targs), goto)


def _unsupported(table: str, chain: str, num: int, line: int, text: str, matches: list[Match], what: str) -> Rule:
    # A match the evaluator does not know: match_one() returns None for it, so evaluation stops here.
    # The rule's verdict is still read from its end, so a caller knows what hangs on the match (a
    # rule that only logs changes nothing; one that drops does).
    return Rule(
        table, chain, num, line, text, (*matches, Match(f"nft:{what}", (), False, "nft")), _tail_target(text), ()
    )


def _tail_target(text: str) -> str | None:
    try:
        toks = split_words(text)
    except ValueError:
        return None
    for k in range(len(toks) - 1, -1, -1):
        t = toks[k]
        if t in _VERDICTS:
            return _VERDICTS[t]
        if t in ("jump", "goto") and k + 1 < len(toks):
            return toks[k + 1]
        if t in ("reject", "masquerade", "snat", "dnat", "redirect"):
            return {
                "reject": "REJECT",
                "masquerade": "MASQUERADE",
                "snat": "SNAT",
                "dnat": "DNAT",
                "redirect": "REDIRECT",
            }[t]
    return "LOG" if "log" in toks else None


def rulesets_from_nft(data: NftRuleset, source: str) -> dict[str, Ruleset]:
    """Build one Ruleset per IP family from a parsed nft ruleset (parsers.nft_ruleset)."""
    out: dict[str, Ruleset] = {}
    for t in data.tables:
        for family in _FAMILIES.get(t.family, ()):
            rs = out.setdefault(family, Ruleset(family, source))
            chains = rs.tables.setdefault(t.name, {})
            for c in t.chains:
                chain = Chain(c.name, (c.policy or Action.ACCEPT).upper() if c.base else None)
                for n, r in enumerate(c.rules, start=1):
                    chain.rules.append(rule_from_nft(t.name, c.name, n, r.line, r.expr))
                chains[c.name] = chain
                # nft(8) TABLES: a dormant table's base chains are unregistered, so it stands for no hook.
                std = _STD_TABLE.get((c.type or "", _prio(c.priority) or 0)) if c.base and not t.dormant else None
                if std is not None and c.hook_word is not None:
                    alias = rs.tables.setdefault(std, {})
                    alias.setdefault(c.hook_word.upper(), chain)
                    # Chains it jumps to must be found from the alias table too.
                    for other in t.chains:
                        if not other.base:
                            alias.setdefault(other.name, chains.get(other.name) or Chain(other.name, None))
    # Fill user chains defined after the base chain that jumps to them.
    for rs in out.values():
        for chains in rs.tables.values():
            for name, ch in list(chains.items()):
                if not ch.rules and ch.policy is None:
                    for tchains in rs.tables.values():
                        real = tchains.get(name)
                        if real is not None and real.rules:
                            chains[name] = real
    return out
