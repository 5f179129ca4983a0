"""Recognise the hook a log line came from: a prefix map, a TRACE prefix, a well-known convention,
prefix words, and finally the kernel facts that IN= and OUT= carry.

The kernel does not print the hook in a LOG line (net/netfilter/nf_log_syslog.c prints only the
prefix the rule author chose, then ``IN=`` and ``OUT=``). So the recognition is conservative:
where the prefix does not tell, the record is given every hook its IN=/OUT= allow
(``HookRef.candidates``), and where even those do not tell, it stays unresolved with a hint that
can be pasted into a prefix map. It is never placed by a guess.

Usage::

    res = resolve_hook(rec, PrefixMap.empty())   # Resolution(hook=HookRef | None, problem=str | None)
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from reportgen.errors import InputError
from reportgen.model import Action, HookRef, LogRecord, family_tool, nft_tool
from reportgen.netfilter import BRIDGE, FORWARD, HOOKS, INPUT, IPV4, IPV6, OUTPUT, POSTROUTING, PREROUTING, tables_at
from reportgen.parsers.traces import legacy_trace_prefix
from reportgen.sources.bounded import SAFE_LOADER

# How a record's hook was recognised (HookRef.how).
HOW_MAP = "prefix map"
HOW_TRACE = "TRACE prefix"
HOW_CONVENTION = "prefix convention"
HOW_WORDS = "prefix words"
HOW_IN_OUT = "placed by IN/OUT"

_FAMILY_WORDS = {
    "eb": BRIDGE,
    "ebt": BRIDGE,
    "ebtable": BRIDGE,
    "ebtables": BRIDGE,
    "bridge": BRIDGE,
    "br": BRIDGE,
    "ipt": IPV4,
    "iptable": IPV4,
    "iptables": IPV4,
    "ip4": IPV4,
    "ipv4": IPV4,
    "ip": IPV4,
    "v4": IPV4,
    "ip6t": IPV6,
    "ip6table": IPV6,
    "ip6tables": IPV6,
    "ip6": IPV6,
    "ipv6": IPV6,
    "v6": IPV6,
}
# Words naming the tool whose rules the author logs from: the author's own statement, like an action
# word. "xtables" stands for iptables/ip6tables/ebtables, chosen by the record's family.
_TOOL_WORDS = {
    "ebt": "xtables",
    "ebtable": "xtables",
    "ebtables": "xtables",
    "ipt": "xtables",
    "iptable": "xtables",
    "iptables": "xtables",
    "ip6t": "xtables",
    "ip6table": "xtables",
    "ip6tables": "xtables",
    "nft": "nft",
    "nftables": "nft",
}
_TABLE_WORDS = {
    "raw": "raw",
    "mangle": "mangle",
    "nat": "nat",
    "filter": "filter",
    "security": "security",
    "broute": "broute",
    "mgl": "mangle",
    "flt": "filter",
}
# "in" and "out" are not among them: prefixes use them for a direction on an interface (FireHOL's
# "IN-work", OpenWrt's "reject wan in"), which PREROUTING, INPUT and FORWARD all see.
_CHAIN_WORDS = {
    "prerouting": PREROUTING,
    "preroute": PREROUTING,
    "prerout": PREROUTING,
    "pre": PREROUTING,
    "input": INPUT,
    "inp": INPUT,
    "forward": FORWARD,
    "fwd": FORWARD,
    "forw": FORWARD,
    "output": OUTPUT,
    "postrouting": POSTROUTING,
    "postroute": POSTROUTING,
    "postrout": POSTROUTING,
    "post": POSTROUTING,
    "brouting": "BROUTING",
}
# The only table that has a given chain, where there is just one: ebtables(8) "TABLES" (filter has
# INPUT, FORWARD, OUTPUT; nat has PREROUTING, OUTPUT, POSTROUTING; broute has BROUTING) and
# iptables(8) "TABLES" (raw: PREROUTING, OUTPUT; ...). An unnamed table is inferred only when unique.
_UNIQUE_TABLE = {
    (BRIDGE, INPUT): "filter",
    (BRIDGE, FORWARD): "filter",
    (BRIDGE, PREROUTING): "nat",
    (BRIDGE, POSTROUTING): "nat",
    (BRIDGE, "BROUTING"): "broute",
}

# Words a rule author puts in a prefix to say what the rule after the LOG rule does. A LOG rule itself
# never decides (xt_LOG.c returns XT_CONTINUE), so these are the author's statement, cited as such.
_ACTION_WORDS = {
    "drop": Action.DROP,
    "dropped": Action.DROP,
    "block": Action.DROP,
    "blocked": Action.DROP,
    "deny": Action.DROP,
    "denied": Action.DROP,
    "reject": Action.REJECT,
    "rejected": Action.REJECT,
    "accept": Action.ACCEPT,
    "accepted": Action.ACCEPT,
    "allow": Action.ACCEPT,
    "allowed": Action.ACCEPT,
    "audit": Action.AUDIT,
    "limit": Action.LIMIT,
}
_TERMINAL = (Action.DROP, Action.REJECT, Action.ACCEPT)

# Which hooks a record can come from, given which of IN= and OUT= it prints. nf_log_syslog.c prints
# "IN=%s OUT=%s" from the hook state's in/out devices (nf_log_dump_packet_common()); the callers of
# NF_HOOK set them:
# * IPv4/IPv6 (net/ipv4/ip_input.c, ip_forward.c, ip_output.c; net/ipv6 likewise): PREROUTING
#   ip_rcv() (dev, NULL); INPUT ip_local_deliver() (skb->dev, NULL); FORWARD ip_forward()
#   (skb->dev, rt->dst.dev); OUTPUT __ip_local_out() (NULL, dst dev); POSTROUTING ip_output()
#   (indev = skb->dev, dst dev): skb->dev is still the input device of a forwarded packet, so a
#   forwarded packet prints IN= at POSTROUTING too (since "netfilter: Support iif matches in
#   POSTROUTING", 2019; older kernels passed NULL), while a locally sent one has no input device.
#   br_netfilter keeps to this: br_nf_pre_routing() (dev, NULL), br_nf_forward_ip() (in, out),
#   br_nf_post_routing() (NULL, out) (net/bridge/br_netfilter_hooks.c).
# * Bridge (net/bridge/br_input.c, br_forward.c): PREROUTING br_handle_frame() (dev, NULL); INPUT
#   br_pass_frame_up() (indev, NULL); FORWARD __br_forward() (indev, out); OUTPUT __br_forward()
#   with local_orig (NULL, out); POSTROUTING br_forward_finish() (NULL, out).
_IP_IN_OUT: dict[tuple[bool, bool], tuple[str, ...]] = {
    (True, True): (FORWARD, POSTROUTING),
    (True, False): (PREROUTING, INPUT),
    (False, True): (OUTPUT, POSTROUTING),
}
_BRIDGE_IN_OUT: dict[tuple[bool, bool], tuple[str, ...]] = {
    (True, True): (FORWARD,),
    (True, False): (PREROUTING, INPUT),
    (False, True): (OUTPUT, POSTROUTING),
}

CONVENTIONS_FILE = "prefix_conventions.yaml"
_NESTED_QUANTIFIER = re.compile(r"\([^()]*[+*][^()]*\)[+*{]")
_REGEX_SPECIAL = frozenset(".^$*+?{}[]\\|()")


@dataclass(frozen=True)
class Resolution:
    """The hook of a record, or why it could not be told."""

    hook: HookRef | None
    problem: str | None = None


@dataclass(frozen=True)
class Convention:
    """One well-known prefix convention of prefix_conventions.yaml, compiled."""

    name: str
    pattern: re.Pattern[str]
    family: str | None  # None: the record's own layout decides
    family_words: Mapping[str, str]
    table: str | None
    hooks: tuple[str, ...]
    dir_hooks: Mapping[str, tuple[str, ...]]
    chain_hooks: tuple[tuple[re.Pattern[str], tuple[str, ...], str | None], ...]  # pattern, hooks, table
    action: Action | None
    actions: Mapping[str, Action]
    default_action: Action | None
    meaning: str
    source: str
    examples: tuple[str, ...]
    backend_tables: Mapping[str, str] = field(default_factory=dict)
    tool: str | None = None  # TOOLS: whose rules the project writes, when it has one backend
    # What the project's own rules do after the LOG rule, per action word ("" for every word).
    follows: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConventionMatch:
    """What a convention says about one prefix."""

    convention: Convention
    family: str | None
    hooks: tuple[str, ...]
    table: str | None
    chain: str | None
    action: Action | None
    follows: str | None = None  # the entry's `follows` sentence for this prefix's action word


@dataclass(frozen=True)
class PrefixMap:
    """User-given prefix -> hook mapping (exact prefix, trimmed, or ``re:PATTERN``)."""

    exact: dict[str, tuple[str, str | None, str]]
    patterns: tuple[tuple[re.Pattern[str], tuple[str, str | None, str]], ...]
    cache: dict[tuple[object, ...], Resolution] = field(default_factory=dict, compare=False, repr=False)

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
        """Find a prefix's mapping; patterns see the prefix trimmed, as exact keys are."""
        key = prefix.strip()
        hit = self.exact.get(key)
        if hit:
            return hit
        for pat, target in self.patterns:
            if pat.search(key):
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


# --- the convention registry -------------------------------------------------------------------


@functools.cache
def _registry() -> dict[str, Any]:
    text = resources.files("reportgen.data").joinpath(CONVENTIONS_FILE).read_text(encoding="utf-8")
    # libyaml (SAFE_LOADER): PyYAML's own parser took 27 ms of every run for this file.
    data: dict[str, Any] = yaml.load(text, Loader=SAFE_LOADER)
    return data


@functools.cache
def conventions() -> tuple[Convention, ...]:
    """Load the shipped registry of prefix conventions once."""
    return parse_conventions(_registry(), CONVENTIONS_FILE)


def parse_conventions(data: dict[str, Any], name: str) -> tuple[Convention, ...]:
    """Compile a registry; errors name the entry (the shipped file is checked by the tests)."""
    out = []
    for i, entry in enumerate(data.get("conventions", [])):
        where = f"convention {i + 1} ({entry.get('name')!r})"
        pattern = str(entry["pattern"])
        # Anchored, and no quantified group holding a quantifier: each pattern then runs in time
        # linear in the prefix, whatever the input (no catastrophic backtracking).
        if not (pattern.startswith("^") and pattern.endswith("$")) or _NESTED_QUANTIFIER.search(pattern):
            raise InputError(name, None, f"{where}: pattern must be anchored with ^...$ and not nest quantifiers")
        fam = entry.get("family")
        out.append(
            Convention(
                name=str(entry["name"]),
                pattern=re.compile(pattern),
                family=None if fam == "record" else _family(name, where, fam),
                family_words={str(k): _family(name, where, v) for k, v in (entry.get("family_words") or {}).items()},
                table=entry.get("table"),
                hooks=_hooks(name, where, entry.get("hooks") or list(HOOKS)),
                dir_hooks={str(k): _hooks(name, where, v) for k, v in (entry.get("dir_hooks") or {}).items()},
                chain_hooks=tuple(
                    (re.compile(str(rule[0])), _hooks(name, where, rule[1]), rule[2] if len(rule) > 2 else None)
                    for rule in entry.get("chain_hooks") or ()
                ),
                action=_action(name, where, entry.get("action")),
                actions={str(k): _action_required(name, where, v) for k, v in (entry.get("actions") or {}).items()},
                default_action=_action(name, where, entry.get("default_action")),
                meaning=" ".join(str(entry.get("meaning", "")).split()),
                source=" ".join(str(entry.get("source", "")).split()),
                examples=tuple(str(e) for e in entry.get("examples") or ()),
                backend_tables={str(k): str(v) for k, v in (entry.get("backend_tables") or {}).items()},
                tool=_tool(name, where, entry.get("tool")),
                follows=_follows(entry.get("follows")),
            )
        )
    return tuple(out)


def _follows(value: object) -> dict[str, str]:
    """A convention's `follows`: one sentence for every action word (key ""), or one per word."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): " ".join(str(v).split()) for k, v in value.items()}
    return {"": " ".join(str(value).split())}


# A convention's `tool`: "iptables" (iptables, ip6tables or ebtables by the record's family), "nft" (nft
# in the ip, ip6 or bridge table family of the record), "nft inet" (an inet table).
TOOLS = ("iptables", "nft", "nft inet")


def _tool(name: str, where: str, value: object) -> str | None:
    if value is not None and value not in TOOLS:
        raise InputError(name, None, f"{where}: tool must be one of {', '.join(TOOLS)}, not {value!r}")
    return None if value is None else str(value)


def writer_of(tool: str | None, family: str) -> str | None:
    """The command a TOOLS word names for a record of this family ("iptables" + ipv6: ip6tables)."""
    if tool is None:
        return None
    if tool == "iptables":
        return family_tool(family)
    return "nft inet" if tool == "nft inet" else nft_tool(family)


def _family(name: str, where: str, value: object) -> str:
    if value not in (IPV4, IPV6, BRIDGE):
        raise InputError(name, None, f"{where}: family must be ipv4, ipv6, bridge or record, not {value!r}")
    return str(value)


def _hooks(name: str, where: str, value: Any) -> tuple[str, ...]:
    hooks = tuple(str(h) for h in value)
    bad = [h for h in hooks if h not in HOOKS]
    if bad:
        raise InputError(name, None, f"{where}: not hook names: {bad}")
    return tuple(h for h in HOOKS if h in hooks)  # hook order, so candidates[0] is the earliest


def _action(name: str, where: str, value: object) -> Action | None:
    return None if value is None else _action_required(name, where, value)


def _action_required(name: str, where: str, value: object) -> Action:
    try:
        return Action(str(value))
    except ValueError:
        raise InputError(name, None, f"{where}: unknown action {value!r}") from None


def _clean(prefix: str) -> str:
    """Trim a prefix for matching; firewalld's nft backend once quoted its prefixes (firewalld#876)."""
    s = prefix.strip()
    if len(s) >= 2 and s[0] == s[-1] == '"':
        s = s[1:-1].strip()
    return s


# A number a book or a post put before the prefix as a callout marker ("1 [UFW LIMIT BLOCK] ").
_CALLOUT = re.compile(r"^\d{1,2} +(?=\S)")


@functools.lru_cache(maxsize=4096)
def match_convention(prefix: str) -> ConventionMatch | None:
    """Return what the first matching well-known convention says about a prefix.

    A prefix that matches none is tried once more without a leading callout number: no convention's
    prefix starts with one, so only a whole convention prefix after it is taken.
    """
    s = _clean(prefix)
    found = _match_convention(s)
    if found is None and _CALLOUT.match(s):
        found = _match_convention(_CALLOUT.sub("", s, count=1))
    return found


def _match_convention(s: str) -> ConventionMatch | None:
    for conv in conventions():
        m = conv.pattern.match(s)
        if m is None:
            continue
        groups = m.groupdict()
        hooks, table = conv.hooks, conv.table
        chain = groups.get("chain")
        if groups.get("dir") is not None and groups["dir"] in conv.dir_hooks:
            hooks = conv.dir_hooks[groups["dir"]]
        elif chain in HOOKS:
            hooks = (chain,)
        elif chain is not None:
            rule = next((r for r in conv.chain_hooks if r[0].search(chain)), None)
            if rule is not None:
                hooks, table = rule[1], rule[2] or table
        action = conv.action
        if groups.get("action") is not None:
            action = conv.actions.get(groups["action"], conv.default_action)
        elif action is None:
            action = conv.default_action
        if table is None and action is Action.REJECT and conv.tool == "iptables":
            # The REJECT the convention names follows its LOG rule in the same chain, and x_tables
            # registers REJECT for the filter table only (net/ipv4/netfilter/ipt_REJECT.c and
            # net/ipv6/netfilter/ip6t_REJECT.c: .table = "filter"): "Shorewall:OUTPUT:REJECT:" is
            # filter OUTPUT, never nat or mangle OUTPUT (Ysurac/openmptcprouter#1671).
            table = "filter"
        family = conv.family_words.get(groups.get("family") or "", conv.family)
        follows = conv.follows.get(groups.get("action") or "", conv.follows.get(""))
        return ConventionMatch(conv, family, hooks, table, chain, action, follows)
    return None


# --- the backend a project runs, from the snapshots ----------------------------------------------


@functools.cache
def _backend_evidence() -> tuple[tuple[str, str, re.Pattern[str]], ...]:
    return tuple(
        (str(b["convention"]), str(b["backend"]), re.compile(str(b["evidence"])))
        for b in _registry().get("backends", [])
    )


def known_backends(texts: Iterable[str]) -> dict[str, str]:
    """Return {convention: backend} for each project whose backend the snapshot texts show, and only one."""
    found: dict[str, set[str]] = {}
    for text in texts:
        for conv, backend, pattern in _backend_evidence():
            if pattern.search(text):
                found.setdefault(conv, set()).add(backend)
    return {conv: next(iter(b)) for conv, b in found.items() if len(b) == 1}


@functools.cache
def _backend_tools() -> dict[tuple[str, str], str]:
    return {(str(b["convention"]), str(b["backend"])): str(b["tool"]) for b in _registry().get("backends", [])}


def with_backend_table(hook: HookRef, prefix: str, backends: Mapping[str, str]) -> HookRef:
    """Name the tool, and the table, of a convention whose project has several backends, when the
    snapshots show which one runs.

    firewalld logs FINAL_REJECT and STATE_INVALID_DROP in filter INPUT/FORWARD with iptables and in
    table inet firewalld with nftables; the line is the same, the host's snapshot tells them apart.
    """
    if hook.writer is not None or hook.convention is None or not backends:
        return hook
    m = match_convention(prefix)
    backend = backends.get(m.convention.name) if m is not None else None
    if m is None or backend is None:
        return hook
    writer = writer_of(_backend_tools()[(m.convention.name, backend)], hook.family)
    table = hook.table or m.convention.backend_tables.get(backend)
    what = "tool and table" if table != hook.table else "tool"
    return replace(
        hook, table=table, writer=writer, how=f"{hook.how}, {what} by the {backend} backend a snapshot shows"
    )


# --- user chains of well-known projects -----------------------------------------------------------


@functools.cache
def _user_chains() -> tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...]:
    out = []
    for group in _registry().get("user_chains", []):
        for c in group["chains"]:
            hooks = _hooks(CONVENTIONS_FILE, group["name"], c["hooks"])
            out.append((re.compile(str(c["chain"])), str(c["table"]), hooks))
    return tuple(out)


def user_chain_hooks(table: str, chain: str) -> tuple[str, ...]:
    """Return the built-in chains a well-known project's user chain is reached from (empty: unknown)."""
    for pat, tbl, hooks in _user_chains():
        if tbl == table and pat.search(chain):
            return hooks
    return ()


# --- resolution ----------------------------------------------------------------------------------


def record_family(rec: LogRecord) -> str | None:
    """Tell a record's family from its layout: ebt_log, the IP header fields, the addresses, the MAC."""
    if rec.fmt == "ebtlog":
        return BRIDGE
    if rec.l3 in (IPV4, IPV6):
        return rec.l3
    if rec.l3 is not None:
        return None  # ARP: an arp-family or a bridge-family log, which its layout does not tell
    for addr in (rec.src, rec.dst):
        if addr:
            try:
                return IPV6 if ipaddress.ip_address(addr).version == 6 else IPV4
            except ValueError:
                continue
    # dump_mac_header() prints the Ethernet header, whose last two bytes are the ethertype.
    return {0x0800: IPV4, 0x86DD: IPV6}.get(rec.ethertype or 0)


def in_out_hooks(family: str, rec: LogRecord) -> tuple[str, ...]:
    """Return the hooks a record can have been logged at, by which of IN= and OUT= it prints."""
    if family != BRIDGE and rec.in_dev and rec.out_dev and not forwarded_post_routing_possible(rec):
        return (FORWARD,)
    table = _BRIDGE_IN_OUT if family == BRIDGE else _IP_IN_OUT
    return table.get((bool(rec.in_dev), bool(rec.out_dev)), ())


def forwarded_post_routing_possible(rec: LogRecord) -> bool:
    """Whether an IP record with IN= and OUT= may come from POSTROUTING rather than FORWARD."""
    return forward_only_reason(rec) is None


def forward_only_reason(rec: LogRecord) -> str | None:
    """Why an IP record with IN= and OUT= is FORWARD and not POSTROUTING; None when it may be either.

    Only ip_output() passes an input device to POSTROUTING, and only since Linux 5.5 ("netfilter:
    Support iif matches in POSTROUTING"). Two lines rule it out:
    * PHYSOUT= set: the frame is bridged, and br_netfilter runs the IP POSTROUTING hook with no input
      device (net/bridge/br_netfilter_hooks.c br_nf_post_routing(): NF_HOOK(.., NULL, realoutdev, ..)).
    * no MAC field at all on an nf_log line: such a kernel logs the MAC header only "for input path
      only" (ipt_LOG.c/ip6t_LOG.c before xt_LOG in 3.4: ``if (in && !out)``); since then it is logged
      whenever there is an input device (nf_log_syslog.c: ``if (in) dump_mac_header()``, which prints
      "MAC=" even for a device without a link-layer header). A kernel that old predates 5.5.
    """
    if rec.fmt != "nflog" or not (rec.in_dev and rec.out_dev):
        return None
    if rec.physout:
        return (
            "PHYSOUT= is set, so the frame is bridged, and br_netfilter runs the IP POSTROUTING hook "
            "with no input device (br_nf_post_routing): a line with IN= is FORWARD."
        )
    if not rec.mac_logged and rec.logger is None:  # pvefw-logger prints MAC= by its own rule
        return (
            "The line has no MAC field: only kernels before 3.4 left it out when OUT= is set "
            "(ipt_LOG logged the MAC header for the input path only), and those passed no input device "
            "to POSTROUTING (that came with 5.5), so a line with IN= and OUT= is FORWARD."
        )
    return None


def prefix_action(prefix: str) -> Action | None:
    """Return the action a prefix's words state, or None when they state none or contradict each other."""
    found = {_ACTION_WORDS[w] for w in re.split(r"[^a-z]+", prefix.lower()) if w in _ACTION_WORDS}
    terminal = [a for a in _TERMINAL if a in found]
    if len(terminal) > 1:
        return None
    if terminal:
        return terminal[0]
    return Action.AUDIT if Action.AUDIT in found else Action.LIMIT if Action.LIMIT in found else None


# ebt_log.c's ebt_log_packet() alone prints "MAC source = ... proto = 0x....", and only ebt_log's own
# target calls it (ebt_log_tg(), the "log" watcher of an ebtables rule, whether ebtables-legacy or
# ebtables-nft, which runs the same xt target through nft_compat; with --log-nflog's EBT_LOG_NFLOG bit
# it calls nf_log_packet() instead). ebt_log registers no nf_logger since Linux 3.17, when
# nf_log_bridge.c (nf_log_syslog.c since 5.12) became the bridge family's logger: an nft bridge table's
# log statement (nft_log.c nft_log_eval()) calls nf_log_packet() with its nf_loginfo, which takes the
# logger registered for the family and log type (loggers[NFPROTO_BRIDGE][NF_LOG_TYPE_LOG],
# net/netfilter/nf_log.c), and prints nf_log_syslog's "IN= OUT= ... MAC= SRC=" layout
# (tests/test_truth8.py captures both on this machine's kernel). So the layout names ebtables.
EBT_LOG_WRITER = "ebtables"
HOW_EBT_LAYOUT = ", tool by the ebt_log layout"  # appended to HookRef.how (EBT_LOG_WRITER_NOTE says why)
EBT_LOG_WRITER_NOTE = (
    "The 'MAC source =' layout is ebt_log.c's own, and only ebt_log's target prints it: the line comes from "
    "an ebtables rule's --log watcher (ebtables-legacy, or ebtables-nft through nft_compat). An nft bridge "
    "table's log statement prints nf_log_syslog's layout instead: nf_log_packet() (net/netfilter/nf_log.c) "
    "takes the bridge family's registered logger, which ebt_log has not been since Linux 3.17."
)


def resolve_hook(rec: LogRecord, prefix_map: PrefixMap) -> Resolution:
    """Place a record at its hook (or its candidate hooks), or explain why that cannot be done.

    The answer depends only on the prefix, the record's family and which of IN=/OUT= it has, and a
    log repeats a few prefixes many times, so it is cached per map.
    """
    family = record_family(rec)
    key = (
        rec.prefix,
        rec.fmt,
        family,
        rec.l3,
        bool(rec.in_dev),
        bool(rec.out_dev),
        bool(rec.physout),
        rec.mac_logged,
        rec.logger,
    )
    hit = prefix_map.cache.get(key)
    if hit is None:
        hit = _resolve(rec, family, prefix_map)
        if rec.fmt == "ebtlog" and hit.hook is not None and hit.hook.writer is None:
            hook = hit.hook
            hit = Resolution(replace(hook, writer=EBT_LOG_WRITER, how=f"{hook.how}{HOW_EBT_LAYOUT}"))
        if len(prefix_map.cache) < 65536:
            prefix_map.cache[key] = hit
    return hit


def _resolve(rec: LogRecord, family: str | None, prefix_map: PrefixMap) -> Resolution:
    # A LOG line whose prefix states no action is still evidence: the packet was seen there (Action.LOG).
    action = prefix_action(rec.prefix) or Action.LOG
    mapped = prefix_map.lookup(rec.prefix)
    if mapped:
        fam, table, chain = mapped
        if fam != BRIDGE and rec.l3 in (IPV4, IPV6):
            fam = rec.l3  # an inet table logs both; the record's own layout decides
        hook = PREROUTING if chain == "BROUTING" else chain
        return Resolution(HookRef(fam, hook, table, chain, HOW_MAP, action=action))
    t = legacy_trace_prefix(rec.prefix)
    if t:
        chain = t.group("chain")
        fam = family or IPV4
        if chain not in HOOKS:
            return Resolution(None, f"TRACE line in user chain {chain!r}: its hook is not printed")
        return Resolution(HookRef(fam, chain, t.group("table"), chain, HOW_TRACE))  # tool: HookRef.tool
    how = HOW_IN_OUT
    conv = match_convention(rec.prefix)
    if conv is not None:
        conv_family = conv.family or family
        if conv_family is not None:
            res = _from_convention(rec, conv_family, conv)
            if res is not None:
                return res
            how = f"{HOW_IN_OUT}: the {conv.convention.name} convention's hooks do not fit IN=/OUT="
            family = conv_family
        action = conv.action or Action.LOG
    words = _from_words(rec, family, action)
    if words is not None:
        return words
    return _from_in_out(rec, family, action, how)


def _from_convention(rec: LogRecord, family: str, conv: ConventionMatch) -> Resolution | None:
    facts = in_out_hooks(family, rec)
    hooks = tuple(h for h in conv.hooks if not facts or h in facts)
    if not hooks:
        return None  # the convention's hooks and IN=/OUT= disagree: only the kernel facts stand
    table = conv.table
    chain = conv.chain if conv.chain and conv.chain not in HOOKS else hooks[0]
    how = HOW_CONVENTION if hooks == conv.hooks or len(hooks) > 1 else f"{HOW_CONVENTION}, {HOW_IN_OUT}"
    return Resolution(
        HookRef(
            family,
            hooks[0],
            table,
            chain,
            how,
            candidates=hooks if len(hooks) > 1 else (),
            action=conv.action or Action.LOG,
            convention=conv.convention.name,
            writer=writer_of(conv.convention.tool, family),
        )
    )


def _from_words(rec: LogRecord, family: str | None, action: Action | None) -> Resolution | None:
    words = [w.lower() for w in re.split(r"[^A-Za-z0-9]+", rec.prefix) if w]
    fams = {_FAMILY_WORDS[w] for w in words if w in _FAMILY_WORDS}
    tables = {_TABLE_WORDS[w] for w in words if w in _TABLE_WORDS}
    chains = {_CHAIN_WORDS[w] for w in words if w in _CHAIN_WORDS}
    # Short words ("inp", "fwd", "pre", "post") only count when no full chain name is present.
    full = {_CHAIN_WORDS[w] for w in words if w in _CHAIN_WORDS and len(w) > 4}
    if full:
        chains = full
    if len(chains) != 1 or len(tables) > 1:
        return None  # no chain named, or several: the prefix words do not tell
    chain = next(iter(chains))
    if BRIDGE in fams or chain == "BROUTING" or "broute" in tables:
        family = BRIDGE
    if family is None:
        return None
    hook = PREROUTING if chain == "BROUTING" else chain
    facts = in_out_hooks(family, rec)
    if facts and hook not in facts:
        return None  # the words name a hook whose IN=/OUT= the record does not have
    table = next(iter(tables)) if tables else _UNIQUE_TABLE.get((family, chain))
    tools = {_TOOL_WORDS[w] for w in words if w in _TOOL_WORDS}
    writer = writer_of("iptables" if tools == {"xtables"} else "nft" if tools == {"nft"} else None, family)
    if tools == {"nft"} and family != BRIDGE:
        # The word says nft wrote the rule, not the table's family: an inet table's chains see IPv4
        # and IPv6 packets alike (net/netfilter/nft_chain_filter.c nft_do_chain_inet()), so an
        # IPv4 record may come from an ip or an inet table. Only a bridge hook is a bridge table's.
        writer = "nft"
    return Resolution(HookRef(family, hook, table, chain, HOW_WORDS, action=action, writer=writer))


def _from_in_out(rec: LogRecord, family: str | None, action: Action | None, how: str) -> Resolution:
    example = rec.prefix.strip()
    if family is None:
        what = "an ARP record (arp or bridge family)" if rec.l3 else "no IP, ARP or bridge layout"
        return Resolution(
            None,
            f"prefix {example!r} is not a known convention and the record has {what}, "
            "so its family and hook cannot be told",
        )
    facts = in_out_hooks(family, rec)
    if not facts:
        return Resolution(
            None,
            f"prefix {example!r} is not a known convention and IN=/OUT= are both empty; "
            + mapping_hint(rec.prefix, family, ()),
        )
    return Resolution(
        HookRef(family, facts[0], None, facts[0], how, candidates=facts if len(facts) > 1 else (), action=action)
    )


# --- the prefix-map hint -------------------------------------------------------------------------


def mapping_yaml(prefix: str, family: str, hook: str) -> str:
    """Return a one-line prefix map (valid YAML) that maps this prefix to a hook.

    The key is the trimmed prefix as a double-quoted YAML string (JSON strings are valid YAML), so
    an empty prefix becomes ``""``; a prefix with numbers in it (fwbuilder's ``RULE 12 -- DROP``)
    becomes a ``re:`` pattern with ``\\d+`` for each number, so it covers the other rule numbers.
    """
    key = prefix.strip()
    if re.search(r"\d", key):
        parts = re.split(r"(\d+)", key)
        key = "re:^" + "".join(r"\d+" if p.isdigit() else _escape(p) for p in parts if p)
    tables = tables_at(family, hook)
    table = "filter" if "filter" in tables else (tables[0] if tables else "filter")
    return f"prefixes: {{{_yaml_quote(key)}: {family} {table} {hook}}}"


def _yaml_quote(text: str) -> str:
    """Quote a string as a YAML double-quoted scalar that reads back exactly.

    JSON quoting is almost that, but leaves U+2028/U+2029/U+0085 raw, which YAML takes as line breaks.
    """
    out = []
    for c in text:
        o = ord(c)
        if c in '"\\':
            out.append("\\" + c)
        elif o < 0x20 or 0x7F <= o <= 0x9F or c in "\u2028\u2029\ufeff\ufffe\uffff" or 0xD800 <= o <= 0xDFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


def mapping_hint(prefix: str, family: str, candidates: tuple[str, ...]) -> str:
    """Say how to place a prefix with a prefix map, proposing only hooks consistent with IN=/OUT=."""
    hook = candidates[0] if candidates else INPUT
    alt = (
        f" (or {', '.join(candidates[1:])} instead of {hook}, whichever chain the LOG rule is in)"
        if len(candidates) > 1
        else " (with the chain the LOG rule is in)"
        if not candidates
        else ""
    )
    yaml_line = mapping_yaml(prefix, family, hook)
    return f"to place it, add a prefix map (prefixes.yaml in the case folder, or --prefix-map FILE){alt}: {yaml_line}"
