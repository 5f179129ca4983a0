"""Parse ``nft list ruleset`` text (optionally with ``-a`` handles): tables, base chains, rules.

nft(8) prints ``table FAMILY NAME {``, then ``chain NAME {`` blocks whose first statement for a base
chain is ``type T hook H priority P; policy V;``, then one rule per line, ``# handle N`` at the end
with ``-a``. Sets, maps, flowtables and other objects are nested blocks, skipped here but counted.
Rules are kept as text with their verdict; reportgen does not evaluate nft rules (it says so).
"""

from __future__ import annotations

import re
from typing import Any

# "nft -a list ruleset" ends table and chain lines with "# handle N" too.
_TABLE = re.compile(r"^table (?P<family>\S+) (?P<name>\S+) \{(?: # handle \d+)?$")
_CHAIN = re.compile(r"^chain (?P<name>\S+) \{(?: # handle \d+)?$")
# nft's scanner ends a statement at ";" or at a newline (nft(8) "LEXICAL CONVENTIONS"), so a ruleset
# file may write "type filter hook input priority 0" alone on its line (nftables tests/shell/testcases/
# trace/0001simple), and "policy drop" on the next.
_BASE = re.compile(
    r"^type (?P<type>\S+) hook (?P<hook>\S+)(?: device \S+)? priority (?P<prio>[^;]+?)\s*(?:;|$)"
    r"(?:\s*policy (?P<policy>\w+)\s*;?)?"
)
_POLICY = re.compile(r"^policy (?P<policy>\w+)\s*;?$")
_HANDLE = re.compile(r"# handle ([0-9]+)$")  # blanks before it are stripped in Python: \s* here is quadratic
_VERDICT = re.compile(
    r"\b(accept|drop|reject(?: with .*)?|return|continue|queue|masquerade(?: .*)?|"
    r"(?:jump|goto) \S+|[sd]nat(?: ip6?)? to \S+|redirect(?: to \S+)?)$"
)


def parse_nft_ruleset(text: str) -> dict[str, Any]:
    """Return {"tables": [{family, name, chains: [{name, type, hook, priority, policy, rules}]}], ...}."""
    tables: list[dict[str, Any]] = []
    objects = 0
    table: dict[str, Any] | None = None
    chain: dict[str, Any] | None = None
    skip_depth = 0
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # nft(8) LEXICAL CONVENTIONS: "#" starts a comment line in a ruleset file
        if skip_depth:
            skip_depth += line.count("{") - line.count("}")
            continue
        if table is None:
            # "nft -a list ruleset" ends table and chain lines with "# handle N" too.
            m = _TABLE.match(_HANDLE.sub("", line).rstrip())
            if m:
                table = {"family": m.group("family"), "name": m.group("name"), "chains": [], "line": n}
                tables.append(table)
            continue
        if chain is None:
            m = _CHAIN.match(_HANDLE.sub("", line).rstrip())
            if m:
                chain = {
                    "name": m.group("name"),
                    "type": None,
                    "hook": None,
                    "priority": None,
                    "policy": None,
                    "rules": [],
                    "line": n,
                }
                table["chains"].append(chain)
            elif line == "}":
                table = None
            elif line.endswith("{"):
                objects += 1
                skip_depth = 1
            continue
        if line == "}":
            chain = None
            continue
        if line.startswith('comment "') and not chain["rules"] and chain["hook"] is None:
            continue  # nft prints a chain's comment before its "type ... hook ..." line
        base = _BASE.match(line)
        if base and not chain["rules"]:
            chain.update(
                type=base.group("type"),
                hook=base.group("hook"),
                priority=base.group("prio").strip(),
                policy=base.group("policy"),
            )
            continue
        pol = _POLICY.match(line)
        if pol and not chain["rules"] and chain["hook"] is not None:
            chain["policy"] = pol.group("policy")
            continue
        h = _HANDLE.search(line)
        body = line[: h.start()].rstrip() if h else line
        verdict = _VERDICT.search(body)
        chain["rules"].append(
            {
                "text": body,
                "handle": int(h.group(1)) if h else None,
                "line": n,
                "verdict": verdict.group(1) if verdict else None,
                "log_prefix": _log_prefix(body),
            }
        )
    return {"tables": tables, "objects_skipped": objects}


def _log_prefix(body: str) -> str | None:
    m = re.search(r'log prefix "((?:[^"\\]|\\.)*)"', body)
    return m.group(1) if m else None
