"""Parse ``nft list ruleset`` text (also with ``-a`` handles, ``-s``, and ruleset files): tables, chains, rules.

nft(8) prints ``table FAMILY NAME {``, then ``chain NAME {`` blocks whose first statement for a base
chain is ``type T hook H [device D] priority P; policy V;``, then one rule per line, ``# handle N``
at the end with ``-a`` (on table, chain and set lines too). Sets, maps, flowtables and stateful
objects are nested blocks: they are not read, and each is listed as unread with the reason, so a
rule that uses one is known to be unevaluated. Rules are kept as text; reportgen.parsers.nft_rules
translates them for the evaluator.

nft(8) "LEXICAL CONVENTIONS": a statement ends at ";" or at a newline, "#" starts a comment (outside
a quoted string), and a block may continue a statement over several lines (an anonymous set or
verdict map written across lines). "VARIABLES": ``define NAME = VALUE`` and ``$NAME``, expanded here
so a ruleset file's rules can be evaluated; ``include`` brings in another file, which this snapshot
does not hold. Every line is read or listed in ``unparsed`` with the reason; a damaged file never
raises anything but InputError (``nft -j`` JSON, which this parser does not read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reportgen.errors import InputError
from reportgen.model import Action
from reportgen.netfilter import ARP, BRIDGE, INET, IPV4, IPV6, NETDEV
from reportgen.parsers.snapshots import Unparsed
from reportgen.parsers.traces import NFT_FAMILY, nft_hook

# Why a line was not read.
NOT_A_RULESET_LINE = "not a line of an nft ruleset"
STRAY_BRACE = "a closing brace with no block open"
OBJECT = "a set, map, flowtable or stateful object: its contents are not read, so rules using it are not evaluated"
INCLUDE = "an include: the included file is not part of this snapshot"
COMMAND = "an nft command (add, flush, delete ...), not a block of the ruleset: nothing reportgen reads"
NOT_CLOSED = "its block is not closed: the snapshot ends inside it"
UNKNOWN_FAMILY = "a table family nft does not have (nft(8) ADDRESS FAMILIES: ip, ip6, inet, arp, bridge, netdev)"
UNKNOWN_POLICY = "a chain policy other than accept or drop (nft(8) CHAINS)"
UNDEFINED = "a variable that no define before it sets"

# nft(8) "ADDRESS FAMILIES", in netfilter.py's words.
FAMILIES = (IPV4, IPV6, INET, ARP, BRIDGE, NETDEV)
# The family word nft prints for each (NFT_FAMILY read backwards).
NFT_WORD = {fam: word for word, fam in NFT_FAMILY.items()}

_NAME = r'(?:"[^"]*"|[^\s{}"]+)'  # nft quotes a name only when it must; both forms are accepted
_TABLE = re.compile(rf"^table\s+(?P<family>\S+)\s+(?P<name>{_NAME})\s*\{{$")
_CHAIN = re.compile(rf"^chain\s+(?P<name>{_NAME})\s*\{{$")
# nft(8): sets, maps, flowtables and named stateful objects of a table.
_OBJECT = re.compile(
    rf"^(?:set|map|flowtable|counter|quota|limit|secmark|synproxy|tunnel|ct\s+(?:helper|timeout|expectation))"
    rf"\s+{_NAME}\s*\{{"
)
_BASE = re.compile(
    r"^type\s+(?P<type>\S+)\s+hook\s+(?P<hook>\S+)(?:\s+device\s+(?P<device>\S+))?\s+priority\s+(?P<prio>[^;]+?)\s*(?:;|$)"
    r"(?:\s*policy\s+(?P<policy>\w+)\s*;?)?$"
)
_POLICY = re.compile(r"^policy\s+(?P<policy>\w+)\s*;?$")
_DEVICES = re.compile(r"^devices\s*=")  # netdev chains on several devices (nft(8) CHAINS)
_HANDLE = re.compile(r"^#\s*handle\s+([0-9]+)\s*$")
# nftables src/rule.c table_print(): printed (on stderr, so only a capture with 2>&1 holds it) for a
# table holding xt match/target expressions, which only iptables-nft writes.
_XT_WARNING = re.compile(r"^#\s*Warning: table (?P<family>\S+) (?P<name>\S+) is managed by iptables-nft")
_DEFINE = re.compile(r"^(?:define|redefine)\s+(?P<name>[A-Za-z_][\w.-]*)\s*=\s*(?P<value>.+?)\s*;?$")
# nft(8) COMMANDS a ruleset file may hold between its blocks ("table inet t; flush table inet t").
_COMMAND = re.compile(r"^(?:add|create|insert|replace|delete|destroy|flush|reset|rename|list|table\s[^{]*;)")
_VARIABLE = re.compile(r"\$([A-Za-z_][\w.-]*)")
_LOG_PREFIX = re.compile(r'\blog\b[^"]*?\bprefix "((?:[^"\\]|\\.)*)"')
# Quoted strings, comments and braces: what the structure scan must tell apart on one line.
_LEXEME = re.compile(r'"[^"]*"?|[#{}]')


@dataclass(frozen=True, slots=True)
class NftRule:
    """One rule of a chain, as written, with its line and (``nft -a``) handle."""

    text: str  # as the snapshot has it (several lines of a ruleset file joined by a space)
    line: int  # its first line
    handle: int | None
    expr: str  # the text with ``$variables`` expanded: what the evaluator reads
    log_prefix: str | None  # the prefix of its ``log`` statement, as the kernel prints it

    @property
    def logs(self) -> bool:
        return self.log_prefix is not None


@dataclass(frozen=True, slots=True)
class NftChain:
    """A chain: a base chain when it has a hook (nft(8) CHAINS), else a regular chain reached by jumps."""

    name: str
    line: int
    type: str | None  # filter, nat, route
    hook_word: str | None  # the hook as nft prints it: prerouting ... postrouting, ingress, egress
    priority: str | None  # as printed: "0", "filter", "dstnat - 10"
    policy: Action | None  # Action.ACCEPT or Action.DROP; None for a regular chain or none stated
    rules: tuple[NftRule, ...] = ()
    device: str | None = None

    @property
    def base(self) -> bool:
        return self.hook_word is not None

    @property
    def hook(self) -> str | None:
        """The hook in netfilter.py's words (PREROUTING ...); None for a regular chain and for the
        netdev hooks (ingress, egress) the hook graph has no stage for."""
        return nft_hook(self.hook_word) if self.hook_word else None


@dataclass(frozen=True, slots=True)
class NftTable:
    """A table: its family in netfilter.py's words (IPV4 for nft's ``ip``, INET ...) and its chains."""

    family: str
    name: str
    line: int
    chains: tuple[NftChain, ...] = ()
    flags: tuple[str, ...] = ()  # "dormant": the table's base chains are not registered (nft(8) TABLES)
    # nft warned that iptables-nft manages it (its xt expressions; see _XT_WARNING).
    iptables_nft: bool = False

    @property
    def nft_family(self) -> str:
        """The family word nft prints: ip, ip6, inet, arp, bridge, netdev."""
        return NFT_WORD[self.family]

    @property
    def dormant(self) -> bool:
        return "dormant" in self.flags


@dataclass(frozen=True, slots=True)
class NftRuleset:
    """``nft list ruleset``."""

    tables: tuple[NftTable, ...]
    unparsed: tuple[Unparsed, ...] = ()


@dataclass
class _Block:
    """A table, chain or skipped object while its lines are read."""

    kind: str  # "table", "chain" or "object"
    line: int
    text: str
    depth: int = 1  # open braces (objects only: their contents may nest)
    table: NftTable | None = None
    chain: NftChain | None = None
    chains: list[NftChain] = field(default_factory=list)
    rules: list[NftRule] = field(default_factory=list)
    flags: tuple[str, ...] = ()


def _scan(line: str) -> tuple[str, str, int, int]:
    """Split a stripped line into its code and its ``#`` comment, and count the braces of the code;
    quoted strings ("a } b", a comment naming "#1") are neither."""
    if '"' not in line:
        cut = line.find("#")
        code = line if cut < 0 else line[:cut]
        return code.rstrip(), "" if cut < 0 else line[cut:], code.count("{"), code.count("}")
    opens = closes = 0
    for m in _LEXEME.finditer(line):
        t = m.group()
        if t == "#":
            return line[: m.start()].rstrip(), line[m.start() :], opens, closes
        if t == "{":
            opens += 1
        elif t == "}":
            closes += 1
    return line, "", opens, closes


def _unquote(name: str) -> str:
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] == '"' else name


def parse_nft_ruleset(text: str) -> NftRuleset:
    """Read an nft ruleset's text into tables, chains and rules; unread lines are listed with why."""
    head = text.lstrip()[:1]
    if head in ("{", "["):
        at = text.count("\n", 0, len(text) - len(text.lstrip())) + 1
        raise InputError(
            "", at, "this is nft -j (JSON) output; reportgen reads the text of 'nft list ruleset' (without -j)"
        )
    tables: list[NftTable] = []
    unparsed: list[Unparsed] = []
    defines: dict[str, str] = {}
    stack: list[_Block] = []
    xt_warned: set[tuple[str, str]] = set()
    pending: tuple[int, list[str], int, int | None] | None = None  # a rule continued: first line, parts, depth, handle

    def expand(s: str, n: int, raw: str) -> str:
        if "$" not in s:
            return s
        missing = [v for v in _VARIABLE.findall(s) if v not in defines]
        if missing:
            unparsed.append(Unparsed(n, raw.strip(), f"{UNDEFINED}: ${missing[0]}"))
        return _VARIABLE.sub(lambda m: defines.get(m.group(1), m.group()), s)

    def add_rule(block: _Block, n: int, body: str, handle: int | None, raw: str) -> None:
        m = _LOG_PREFIX.search(body)
        block.rules.append(NftRule(body, n, handle, expand(body, n, raw), m.group(1) if m else None))

    def close(block: _Block) -> None:
        if block.kind == "chain" and block.chain is not None:
            stack[-1].chains.append(_replace_rules(block.chain, block.rules))
        elif block.kind == "table" and block.table is not None:
            t = block.table
            tables.append(
                NftTable(
                    t.family,
                    t.name,
                    t.line,
                    tuple(block.chains),
                    block.flags,
                    (NFT_WORD[t.family], t.name) in xt_warned,
                )
            )

    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        code, comment, opens, closes = _scan(line)
        top = stack[-1] if stack else None
        if pending is not None and top is not None:
            first, parts, depth, handle = pending
            parts.append(code)
            depth += opens - closes
            h = _HANDLE.match(comment)
            handle = int(h.group(1)) if h else handle
            if depth > 0:
                pending = (first, parts, depth, handle)
            else:
                pending = None
                add_rule(top, first, " ".join(p for p in parts if p), handle, raw)
            continue
        if top is not None and top.kind == "object":
            top.depth += opens - closes
            if top.depth <= 0:
                stack.pop()
            continue
        if not code:
            w = _XT_WARNING.match(comment)
            if w and top is None:
                xt_warned.add((w.group("family"), w.group("name")))
            continue  # a comment line (nft(8): "#" starts a comment)
        if top is None:
            m = _TABLE.match(code)
            if m:
                fam = NFT_FAMILY.get(m.group("family"))
                if fam is None:
                    unparsed.append(Unparsed(n, line, UNKNOWN_FAMILY))
                    stack.append(_Block("object", n, raw, opens - closes))
                else:
                    stack.append(_Block("table", n, raw, table=NftTable(fam, _unquote(m.group("name")), n)))
                continue
            d = _DEFINE.match(code)
            if d:
                defines[d.group("name")] = expand(d.group("value"), n, raw)
                continue
            if code == "flush ruleset":
                continue  # a ruleset file starts by emptying the old one: nothing to read
            unparsed.append(
                Unparsed(
                    n,
                    line,
                    INCLUDE
                    if code.startswith("include ")
                    else STRAY_BRACE
                    if code == "}"
                    else COMMAND
                    if _COMMAND.match(code)
                    else NOT_A_RULESET_LINE,
                )
            )
            if opens > closes:
                stack.append(_Block("object", n, raw, opens - closes))
            continue
        if top.kind == "table":
            if code == "}":
                close(stack.pop())
                continue
            m = _CHAIN.match(code)
            if m:
                stack.append(
                    _Block("chain", n, raw, chain=NftChain(_unquote(m.group("name")), n, None, None, None, None))
                )
                continue
            if code.startswith("flags "):
                top.flags = tuple(f.strip() for f in code[6:].rstrip(";").split(","))
                continue
            if code.startswith("comment "):
                continue
            unparsed.append(Unparsed(n, line, OBJECT if _OBJECT.match(code) else NOT_A_RULESET_LINE))
            if opens > closes:
                stack.append(_Block("object", n, raw, opens - closes))
            continue
        # In a chain.
        assert top.chain is not None
        if code == "}":
            close(stack.pop())
            continue
        chain = top.chain
        if not top.rules and (code.startswith("comment ") or _DEVICES.match(code)):
            if opens > closes:
                stack.append(_Block("object", n, raw, opens - closes))
            continue  # nft prints a chain's comment (and a netdev chain's devices) before its rules
        base = _BASE.match(code) if not top.rules and chain.hook_word is None else None
        if base:
            top.chain = chain = NftChain(
                chain.name,
                chain.line,
                base.group("type"),
                base.group("hook"),
                base.group("prio").strip(),
                None,
                device=base.group("device"),
            )
            code = f"policy {base.group('policy')}" if base.group("policy") else ""
            if not code:
                continue
        pol = _POLICY.match(code) if not top.rules and chain.hook_word is not None else None
        if pol:
            word = pol.group("policy").lower()
            if word in (Action.ACCEPT, Action.DROP):
                top.chain = NftChain(
                    chain.name, chain.line, chain.type, chain.hook_word, chain.priority, Action(word), (), chain.device
                )
            else:
                unparsed.append(Unparsed(n, line, UNKNOWN_POLICY))
            continue
        h = _HANDLE.match(comment)
        handle = int(h.group(1)) if h else None
        if opens > closes:
            pending = (n, [code], opens - closes, handle)
            continue
        add_rule(top, n, code, handle, raw)
    if pending is not None and stack:
        first, parts, _, handle = pending
        add_rule(stack[-1], first, " ".join(p for p in parts if p), handle, text.splitlines()[first - 1])
        unparsed.append(Unparsed(first, text.splitlines()[first - 1].strip(), f"the rule's {NOT_CLOSED}"))
    while stack:
        block = stack.pop()
        if block.kind != "object":
            unparsed.append(Unparsed(block.line, block.text.strip(), f"this {block.kind}: {NOT_CLOSED}"))
        close(block)
    unparsed.sort(key=lambda u: u.line)
    return NftRuleset(tuple(tables), tuple(unparsed))


def _replace_rules(chain: NftChain, rules: list[NftRule]) -> NftChain:
    return NftChain(
        chain.name, chain.line, chain.type, chain.hook_word, chain.priority, chain.policy, tuple(rules), chain.device
    )
