"""Parse ``iptables-save``/``ip6tables-save`` (and ``ebtables-save``) into tables, chains and rules.

Format (iptables-save(8)): ``*table`` opens a table, ``:CHAIN POLICY [pkts:bytes]`` declares a chain
(policy ``-`` for user chains), ``[pkts:bytes] -A CHAIN args`` appends a rule (the counter prefix only
with ``-c``), ``COMMIT`` closes the table, ``#`` lines are comments. Rules are kept with their
1-based position in the chain (what ``iptables -L --line-numbers`` and legacy TRACE print) and their
line in the file, so a report can point at them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reportgen.errors import InputError

# Options that take no value, and the ones that take two; everything else takes one.
_FLAG_OPTS = frozenset(
    {
        "--physdev-is-bridged",
        "--physdev-is-in",
        "--physdev-is-out",
        "--syn",
        "-f",
        "--fragment",
        "--log-tcp-sequence",
        "--log-tcp-options",
        "--log-ip-options",
        "--log-uid",
        "--log-macdecode",
        "--random",
        "--random-fully",
        "--persistent",
        "--rcheck",
        "--set",
        "--update",
        "--rsource",
        "--rdest",
        "--log-ip",
        "--log-ip6",
        "--log-arp",
    }
)
_TWO_VALUE_OPTS = frozenset({"--tcp-flags", "--match-set"})  # iptables-extensions(8): --match-set NAME FLAGS
_ALIASES = {
    "--source": "-s",
    "--destination": "-d",
    "--in-interface": "-i",
    "--out-interface": "-o",
    "--protocol": "-p",
    "--jump": "-j",
    "--goto": "-g",
    "--match": "-m",
    "--source-port": "--sport",
    "--destination-port": "--dport",
    "--src": "-s",
    "--dst": "-d",
}


# One shell word: bare characters, "double-quoted" (backslash escapes " and \\ only, as in shlex's
# POSIX mode, which is how iptables-save quotes: iptables/xshared.c xtables_save_string), 'single-quoted',
# or a backslash escape. The unrolled-loop form keeps the regex linear in the word's length; shlex
# itself grows each token one character at a time and is quadratic in a long token.
_WORD = re.compile(r"""(?:[^\s"'\\]+|"[^"\\]*(?:\\.[^"\\]*)*"|'[^']*'|\\.)+""", re.S)
_PIECE = re.compile(r"""[^\s"'\\]+|"([^"\\]*(?:\\.[^"\\]*)*)"|'([^']*)'|\\(.)""", re.S)
_DQ_ESCAPE = re.compile(r"""\\([\\"])""")


def split_words(text: str) -> list[str]:
    """Split a rule into words as ``shlex.split`` does, in linear time; ValueError on an open quote."""
    words: list[str] = []
    pos = 0
    for m in _WORD.finditer(text):
        if text[pos : m.start()].strip():
            raise ValueError(f"no closing quotation at column {pos + 1}")
        pos = m.end()
        parts = []
        for p in _PIECE.finditer(m.group()):
            if p.group(1) is not None:
                parts.append(_DQ_ESCAPE.sub(r"\1", p.group(1)))
            elif p.group(2) is not None:
                parts.append(p.group(2))
            elif p.group(3) is not None:
                parts.append(p.group(3))
            else:
                parts.append(p.group())
        words.append("".join(parts))
    if text[pos:].strip():
        raise ValueError(f"no closing quotation at column {pos + 1}")
    return words


@dataclass(frozen=True)
class Match:
    """One option of a rule: ``! -s 10.0.0.0/8`` is Match("-s", ("10.0.0.0/8",), True, None)."""

    opt: str
    values: tuple[str, ...]
    negated: bool
    module: str | None


@dataclass(frozen=True)
class Rule:
    table: str
    chain: str
    num: int
    line: int
    text: str
    matches: tuple[Match, ...]
    target: str | None
    target_args: tuple[Match, ...]
    goto: bool = False
    counters: tuple[int, int] | None = None  # [packets:bytes] when saved with -c

    def arg(self, opt: str) -> str | None:
        for m in self.target_args:
            if m.opt == opt:
                return m.values[0] if m.values else ""
        return None


@dataclass
class Chain:
    name: str
    policy: str | None  # None for user chains
    rules: list[Rule] = field(default_factory=list)


@dataclass
class Ruleset:
    family: str  # "ipv4", "ipv6" or "bridge"
    source: str  # file name
    tables: dict[str, dict[str, Chain]] = field(default_factory=dict)

    def chain(self, table: str, chain: str) -> Chain | None:
        return self.tables.get(table, {}).get(chain)


def _tokens_to_matches(tokens: list[str]) -> tuple[list[Match], str | None, list[Match], bool]:
    matches: list[Match] = []
    target: str | None = None
    target_args: list[Match] = []
    goto = False
    module: str | None = None
    negate = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok == "!":
            negate = True
            continue
        opt = _ALIASES.get(tok, tok)
        if opt in ("-j", "-g"):
            target = tokens[i] if i < len(tokens) else None
            goto = opt == "-g"
            i += 1
            module = "target"
            continue
        if opt == "-m":
            module = tokens[i] if i < len(tokens) else None
            i += 1
            continue
        if not opt.startswith("-"):
            continue  # a stray value; kept in the rule text
        n = 0 if opt in _FLAG_OPTS else 2 if opt in _TWO_VALUE_OPTS else 1
        # "! --option value" and "--option ! value" (old syntax) both mean negation.
        if i < len(tokens) and tokens[i] == "!" and n:
            negate = True
            i += 1
        vals = tuple(tokens[i : i + n])
        i += n
        m = Match(opt, vals, negate, None if opt in ("-s", "-d", "-i", "-o", "-p") else module)
        (target_args if module == "target" else matches).append(m)
        negate = False
    return matches, target, target_args, goto


def parse_ruleset(text: str, source: str = "", family: str = "ipv4") -> Ruleset:
    """Parse iptables-save/ip6tables-save/ebtables-save text; errors name the file and line."""
    rs = Ruleset(family, source)
    table: str | None = None
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = line[1:].strip()
            rs.tables.setdefault(table, {})
            continue
        if line == "COMMIT":
            table = None
            continue
        if table is None:
            raise InputError(source, n, "rule or chain outside a '*table' section", raw)
        if line.startswith(":"):
            parts = line[1:].split()
            if not parts:
                raise InputError(source, n, "chain declaration without a chain name", raw)
            policy = parts[1] if len(parts) > 1 and parts[1] != "-" else None
            rs.tables[table].setdefault(parts[0], Chain(parts[0], policy))
            continue
        cm = re.match(r"^\[([0-9]+):([0-9]+)\]\s*", line)
        body = line[cm.end() :] if cm else line
        if not body.startswith("-A "):
            raise InputError(source, n, "expected '-A CHAIN ...'", raw)
        try:
            tokens = split_words(body)
            problem = ""
        except ValueError as exc:
            # A cut or damaged rule keeps its place in the chain (later rules keep their numbers) but
            # is never evaluated: the evaluator stops at it and says why.
            tokens, problem = body.split()[:2], f"rule not parsed: {exc}"
        if len(tokens) < 2:
            raise InputError(source, n, "'-A' without a chain name", raw)
        chain_name = tokens[1]
        chain = rs.tables[table].setdefault(chain_name, Chain(chain_name, None))
        matches, target, targs, goto = _tokens_to_matches(tokens[2:] if not problem else [])
        if problem:
            matches = [Match("unparsed", (problem,), False, None)]
        chain.rules.append(
            Rule(
                table,
                chain_name,
                len(chain.rules) + 1,
                n,
                body,
                tuple(matches),
                target,
                tuple(targs),
                goto,
                (int(cm.group(1)), int(cm.group(2))) if cm else None,
            )
        )
    return rs


def ruleset_dict(rs: Ruleset) -> dict[str, object]:
    """Plain structure of a ruleset (the parser's contract, used by the fixtures)."""
    return {
        "family": rs.family,
        "tables": {
            t: {
                c.name: {
                    "policy": c.policy,
                    "rules": [
                        {
                            "num": r.num,
                            "line": r.line,
                            "target": r.target,
                            "goto": r.goto,
                            "counters": r.counters,
                            "matches": [[("!" if m.negated else "") + m.opt, *m.values] for m in r.matches],
                            "target_args": [[m.opt, *m.values] for m in r.target_args],
                        }
                        for r in c.rules
                    ],
                }
                for c in chains.values()
            }
            for t, chains in rs.tables.items()
        },
    }
