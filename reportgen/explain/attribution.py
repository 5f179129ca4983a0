"""Attribute NAT, drops and missing LOG lines to rules of the ruleset snapshot, and NAT to conntrack.

The packet is evaluated against the iptables-save snapshot (reportgen.explain.rules) with what the
hook saw: addresses, ports, interfaces, bridge ports, and the conntrack state its place in the
conversation implies (NEW for a connection's first packet, ESTABLISHED after: nf_conntrack_core.c
sets IP_CT_ESTABLISHED once a reply was seen, and replies are ESTABLISHED by definition).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import replace

from reportgen.explain.correlate import flow_ports
from reportgen.explain.rules import Evaluation, PacketView, evaluate, has_log_rule, log_rule_index
from reportgen.explain.topology import Topology
from reportgen.model import (
    ICMP_PROTOS,
    Endpoint,
    Event,
    HitKind,
    LineRef,
    LogRecord,
    Nat,
    NatBy,
    RuleHit,
    Skipped,
    Verdict,
    VerdictCode,
)
from reportgen.netfilter import BRIDGE, INET, IPV4, IPV6, STAGES
from reportgen.parsers.ruleset import Ruleset, split_to


def shown_mark(r: LogRecord) -> int | None:
    """The packet's skb->mark as the line shows it; None when the line does not show it."""
    # nf_log_syslog.c prints MARK= only when skb->mark is non-zero, so a LOG line without it shows 0.
    # So does a trace event: nf_tables_trace.c puts NFTA_TRACE_MARK only when skb->mark is non-zero,
    # and xtables-monitor prints MARK= on the PACKET line whenever the event carries it; a PACKET line
    # (its addresses read) without MARK= shows 0.
    # A line cut before its end (truncated, or fields the paste lost) proves nothing by an absent MARK=.
    if r.mark:
        try:
            return int(r.mark, 16)
        except ValueError:  # a mangled paste ("MARK=0x3f0O"): the mark is not read
            return None
    whole = not r.truncated and not r.missing
    return 0 if whole and (r.fmt == "nflog" or (r.fmt == "xtmon" and r.src is not None)) else None


def packet_view(ev: Event, new: bool, topo: Topology) -> PacketView:
    r = ev.record
    icmp = r.proto in ICMP_PROTOS
    mark = shown_mark(r)
    return PacketView(
        r.src,
        r.dst,
        r.proto,
        None if icmp else r.sport,
        None if icmp else r.dport,
        r.in_dev,
        r.out_dev,
        r.physin,
        r.physout,
        "NEW" if new else "ESTABLISHED",
        topo.local_addrs(),
        mark,
    )


def _ruleset(topo: Topology, family: str) -> Ruleset | None:
    return topo.rulesets.get(family)


def _ref(rs: Ruleset, ev: Evaluation) -> LineRef | None:
    return LineRef(rs.source, ev.rule.line) if ev.rule is not None else None


# The one vocabulary of NAT targets and statements, matched as the rule's target or statement only (a set
# @no_masquerade, a chain or comment naming one, is not one). xtables-monitor and iptables-save print the
# target as "-j TARGET" (iptables-extensions(8): MASQUERADE, SNAT, DNAT, REDIRECT, NETMAP); nft(8) prints
# the statements "masquerade", "redirect", "snat [ip|ip6] to ADDR", "dnat [ip|ip6] to ADDR" (an inet
# table names the family). Group 1 is the iptables target, 2 the nft statement word.
_NFT_TO = " (?:ip6? )?to "
_NAT_STATEMENT = re.compile(
    r"(?:^|\s)-j (MASQUERADE|SNAT|DNAT|REDIRECT|NETMAP)(?![\w-])"
    rf"|(?<![\w@$.:-])(masquerade|redirect|snat(?={_NFT_TO})|dnat(?={_NFT_TO}))(?![\w-])"
)
# A rule's comment may say anything: kube-proxy's KUBE-EXT-* rules read '--comment "masquerade traffic
# for ns/svc:port external destinations" -j KUBE-MARK-MASQ' and only set a mark. iptables-save quotes a
# comment with spaces and leaves a one-word one bare; nft prints comment "...".
_COMMENT = re.compile(r'--comment (?:"(?:[^"\\]|\\.)*"|\S+)|\bcomment "(?:[^"\\]|\\.)*"')
_IPT_OPTION = re.compile(r"(?:^|\s)--?[A-Za-z]")
# A quoted string (an interface name) may hold any word.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


# A trace prints the same rules again for every packet: each (text, hook) is read once.
@functools.lru_cache(maxsize=1024)
def _nat_type(text: str, hook: str) -> str | None:
    """The NAT a rule's target or statement makes (SNAT, MASQUERADE or DNAT; REDIRECT is a DNAT to the
    host), or None. NETMAP maps the source at POSTROUTING and INPUT, the destination elsewhere
    (xt_NETMAP.c netmap_tg4: HOOK2MANIP)."""
    bare = _QUOTED.sub('""', _COMMENT.sub("", text))
    # iptables-save text (options start with -, nft's never do): only its -j target counts.
    ipt = _IPT_OPTION.search(bare) is not None
    for m in _NAT_STATEMENT.finditer(bare):
        word = m.group(1) if ipt else m.group(2)
        if word is None:
            continue
        word = word.upper()
        if word == "NETMAP":
            return "SNAT" if hook in ("POSTROUTING", "INPUT") else "DNAT"
        return "DNAT" if word == "REDIRECT" else word
    return None


def _traced_nat_rule(hops: list[tuple[Event, str]], hook: str) -> tuple[str, RuleHit, Event] | None:
    """A NAT rule a trace source saw the packet hit at this hook (xtables-monitor prints the rule as
    iptables-save text, nft monitor trace as nft syntax). A NAT target ends the walk with the verdict of
    nf_nat_setup_info(), NF_ACCEPT (xt_nat.c, nft_nat.c, nf_nat_masquerade.c), so the trace prints
    accept: a jump (to KUBE-MARK-MASQ, say) or a rule that continues is not the NAT rule."""
    for ev, _ in hops:
        if ev.hook.hook != hook or ev.hook.family == BRIDGE:
            continue
        for hit in ev.rules:
            if hit.verdict.split(":")[0] != "accept":
                continue
            typ = _nat_type(hit.text, hook)
            if typ is not None:
                return typ, hit, ev
    return None


def _legacy_nat_rule(hops: list[tuple[Event, str]], hook: str) -> RuleHit | None:
    """The rule that ended a legacy TRACE walk of the nat table at this hook. ip_tables.c
    trace_packet() logs each rule the packet matched, and a walk that ends on a rule (not a return
    or the policy) ended on a terminal target: with the address changed after it, the NAT target.
    The line names the chain and rule number only; legacy TRACE prints no rule text."""
    for ev, _ in hops:
        if ev.hook.hook == hook and ev.hook.table == "nat" and ev.hook.how == "TRACE prefix" and ev.rules:
            last = ev.rules[-1]
            if last.kind is HitKind.RULE and last.handle:
                return last
    return None


def attribute_nat(nats: list[Nat], hops: list[tuple[Event, str]], new: bool, topo: Topology) -> list[Nat]:
    """Name the rule behind each rule-made NAT of a connection's first packet."""
    out = []
    for n in nats:
        fam, _, hook = n.hook.split()
        traced = _traced_nat_rule(hops, hook) if n.by is NatBy.RULE and n.direction == "original" else None
        if traced is not None:
            typ, hit, _ = traced
            out.append(
                replace(
                    n,
                    type=typ,
                    rule=hit.text,
                    rule_ref=hit.ref,
                    evidence=f"{n.evidence.split(';')[0]}; the trace shows the packet hitting this {typ} rule",
                )
            )
            continue
        legacy = _legacy_nat_rule(hops, hook) if n.by is NatBy.RULE and n.direction == "original" else None
        if legacy is not None:
            # Legacy TRACE names the rule by chain and number; a snapshot's rule text is preferred below.
            n = replace(
                n,
                rule=f"nat {legacy.chain} rule {legacy.handle}",
                rule_ref=legacy.ref,
                evidence=f"{n.evidence.split(';')[0]}; the trace's nat {hook} walk ends on rule "
                f"{legacy.handle} of {legacy.chain}, after which the address is changed",
            )
        rs = _ruleset(topo, fam)
        if rs is None or n.by is not NatBy.RULE or n.direction != "original":
            out.append(n)
            continue
        l3 = [(e, st) for e, st in hops if e.record.src and e.hook.family == fam]
        if not l3:  # no hop of this family with addresses (damaged lines): nothing to evaluate rules for
            out.append(n)
            continue
        at = [e for e, st in l3 if e.hook.hook == hook]
        # Without a line from that hook: the last view before POSTROUTING, the first after PREROUTING.
        fallback = l3[-1][0] if hook in ("POSTROUTING", "INPUT") else l3[0][0]
        ev = at[0] if at else fallback
        view = packet_view(ev, new, topo)
        if n.field == "destination" and hook in ("PREROUTING", "OUTPUT"):
            view = replace(view, dst=n.before.addr, dport=n.before.port if ev.record.sport is not None else None)
        res = evaluate(rs, "nat", hook, view)
        if res.verdict in ("MASQUERADE", "SNAT", "DNAT", "REDIRECT") and res.rule is not None:
            out.append(
                replace(
                    n,
                    type=res.verdict if res.verdict != "REDIRECT" else "DNAT",
                    rule=res.rule.text,
                    rule_ref=_ref(rs, res),
                    evidence=f"{n.evidence.split(';')[0]}; the ruleset snapshot's nat {hook} rule matches it",
                )
            )
        else:
            out.append(n)
    return out


# Options that have the kernel pick the new port at random (NF_NAT_RANGE_PROTO_RANDOM and
# NF_NAT_RANGE_PROTO_RANDOM_FULLY, include/uapi/linux/netfilter/nf_nat.h): iptables-extensions(8)
# SNAT/MASQUERADE --random and --random-fully, nft(8) random and fully-random.
_RANDOM_PORT = re.compile(r"(?<![\w-])(?:--random-fully|--random|fully-random|random)(?![\w-])")
# Where a rule names the new source: SNAT --to-source ADDR[-ADDR][:PORT[-PORT]] and nft "snat [ip|ip6]
# to ADDR[:PORT]"; MASQUERADE --to-ports PORT[-PORT] and nft "masquerade to :PORT[-PORT]".
_SNAT_TO = re.compile(rf"--to-source (\S+)|(?<![\w@$.:-])snat{_NFT_TO}(\S+)")
_MASQ_PORTS = re.compile(r"--to-ports (\S+)|\bmasquerade to :(\S+)")


def _source_nat_hit(hops: list[tuple[Event, str]], hook: str, topo: Topology) -> tuple[str, RuleHit, Event] | None:
    """The SNAT or MASQUERADE rule that ended the nat walk at this hook: one a trace prints ending it
    with accept, or the rule a legacy TRACE walk ended on when the ruleset snapshot says what it is
    (link_rules puts the snapshot's text in: legacy TRACE prints the rule's number only)."""
    traced = _traced_nat_rule(hops, hook)
    legacy = _legacy_nat_rule(hops, hook) if traced is None else None
    ev = next((e for e, _ in hops if legacy in e.rules), None) if legacy is not None else None
    if ev is not None:
        ev = link_rules(ev, topo)
        hit = ev.rules[-1]  # _legacy_nat_rule's: the last of its event's rules
        traced = (_nat_type(hit.text, hook) or "", hit, ev)
    return traced if traced is not None and traced[0] in ("SNAT", "MASQUERADE") else None


def _address_port(to: str) -> tuple[str | None, str | None]:
    """The literal address of an SNAT "to" (1.2.3.4, 1.2.3.4:80, [fd00::1]:80, fd00::1) and its port
    text; (None, port text or None) when it is no single address (a range, an nft expression)."""
    host, ports = split_to(to)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None, ports or None
    return host, ports


# A NAT's new address that no input shows (Nat.unknown says why): ``after.addr`` is empty, JSON null,
# and the outputs write these words in its place.
UNKNOWN_ADDRESS = ""
UNKNOWN_ADDRESS_WORDS = "unknown address"
# What shows a connection's new source when no line prints the packet after nat POSTROUTING: conntrack
# stores the mapping in the entry's reply tuple (nf_nat_setup_info, nf_nat_core.c), and the reply is
# sent to that address.
_SHOWS_NEW_SOURCE = "a conntrack -L entry of the connection (its reply tuple's destination) or a line of its reply"


def unshown_source_nat(hops: list[tuple[Event, str]], topo: Topology) -> Nat | None:
    """The source NAT of a connection's first packet when the trace shows the SNAT or MASQUERADE rule
    ending its nat POSTROUTING (or INPUT) walk but no line prints the packet after it (nat POSTROUTING
    is the last hook a leaving packet passes). A NAT target's accept is nf_nat_setup_info()'s NF_ACCEPT
    (xt_nat.c, nf_nat_masquerade.c, nft_nat.c): the rewrite happened. The new source is what the rule
    and the snapshots say, the rest is named unknown (Nat.unknown): MASQUERADE takes the out device's
    primary address (inet_select_addr in nf_nat_masquerade.c); a port not randomised or given by the
    rule is kept unless another connection holds it (get_unique_tuple, nf_nat_core.c)."""
    if not any(ev.rules for ev, _ in hops):  # no trace source's rule lines: nothing to find
        return None
    found = _source_nat_hit(hops, "POSTROUTING", topo) or _source_nat_hit(hops, "INPUT", topo)
    if found is None:
        return None
    typ, hit, ev = found
    r = ev.record
    text = _COMMENT.sub("", hit.text)
    unknown = []
    computed = False  # the port too may come from an nft expression
    # An inet (or bridge) table's hook family is not the packet's: its addresses say which it is.
    fam = ev.hook.family if ev.hook.family in (IPV4, IPV6) or not r.src else IPV6 if ":" in r.src else IPV4
    if typ == "MASQUERADE":
        dev = r.out_dev or "the out device"
        addr = topo.first_addr(dev, fam) if fam in (IPV4, IPV6) else None  # no address: family unknown
        got = f"{dev}'s primary address {addr} (ip addr snapshot)" if addr else f"the address of {dev}"
        mine = topo.addrs_of(dev, fam)
        if fam == IPV6:  # a link-local address is no source for a global destination (RFC 6724 rule 2)
            mine = [a for a in mine if not ipaddress.ip_address(a).is_link_local] or mine
        if addr is None:
            addr = UNKNOWN_ADDRESS
            unknown.append(
                f"the new source address, the one MASQUERADE takes from {dev}: no ip addr snapshot of {dev} "
                "gives it (an ip addr snapshot of the host would)"
            )
        elif len(mine) > 1:
            addr, got = UNKNOWN_ADDRESS, f"one of {dev}'s addresses {', '.join(mine)}"
            unknown.append(
                f"the new source address, which of {dev}'s addresses {', '.join(mine)}: "
                + (
                    "inet_select_addr takes the one on the next hop's subnet (net/ipv4/devinet.c)"
                    if fam == IPV4
                    else "ipv6_dev_get_saddr picks by the destination (RFC 6724, net/ipv6/addrconf.c)"
                )
            )
        elif fam == IPV6:  # the one candidate: the kernel's choice, but not a "primary" address
            got = f"{dev}'s address {addr} (ip addr snapshot)"
        m = _MASQ_PORTS.search(text)
        ports = (m.group(1) or m.group(2)) if m else ""
    else:
        m = _SNAT_TO.search(text)
        to = (m.group(1) or m.group(2)) if m else ""
        host, ports = _address_port(to)
        addr = got = host if host is not None else "an address the trace does not show"
        if host is None:
            addr = UNKNOWN_ADDRESS
        if host is None and "-" in to and _address_port(to.split("-")[0])[0] is not None:
            unknown.append(
                f"the new source address: the rule's address {to.split(':')[0] if to.count(':') == 1 else to} "
                "is a range, of which find_best_ips_proto (nf_nat_core.c) picks one per connection"
            )
        elif host is None:
            # nft may compute the address, and the port with it ("snat to ip saddr map {...}", numgen).
            expr = text[m.start(2) :].strip() if m and m.group(2) else ""
            unknown.append(
                f"the new source address: the rule computes the address, and maybe the port ({expr})"
                if expr
                else "the new source address: the rule names no literal address"
            )
            computed = bool(expr)
        ports = ports or ""
    sport = flow_ports(ev)[0]
    rand = _RANDOM_PORT.search(text)
    port = int(ports) if ports.isdigit() else None if ports or rand or computed else sport
    if port is None and ports:
        unknown.append(f"the rule picks the port from {ports}")
    elif port is None and rand:
        unknown.append(f"{rand.group(0)} picks the port at random")
    elif port is not None and port == sport and not ports:
        # nf_nat_core.c get_unique_tuple: a tuple another connection holds has
        # nf_nat_l4proto_unique_tuple pick another port (an echo id for ICMP, which conntrack keys by it).
        what = "echo id" if r.proto in ICMP_PROTOS else "port"
        unknown.append(f"{what} {port} kept unless another connection held it (get_unique_tuple, nf_nat_core.c)")
    by_rule = f"the trace shows the packet hitting this {typ} rule ({hit.ref}), and no line shows it after"
    return Nat(
        typ,
        "original",
        f"{ev.hook.family} nat {ev.hook.hook}",
        "source",
        Endpoint(r.src or "", sport),
        Endpoint(addr, port),
        f"{by_rule}: the new source is {got}" + (f"; unknown: {'; '.join(unknown)}" if unknown else ""),
        NatBy.RULE,
        hit.text,
        hit.ref,
        None,
        f"{'; '.join(unknown)}; {_SHOWS_NEW_SOURCE} would show the new source" if unknown else None,
    )


def nft_chain_type(family: str, table: str, chains: Iterable[str | None], topo: Topology) -> str | None:
    """The type ("filter", "nat", "route") the nft ruleset snapshot gives the first of ``chains`` it
    lists as a base chain of the ``table`` that sees ``family``'s packets (an inet table sees IPv4 and
    IPv6, nft(8) ADDRESS FAMILIES); None when no snapshot shows one."""
    for chain in chains:
        for _, rs in topo.nft:
            for t in rs.tables:
                if t.name != table or (t.family != family and t.family != INET):
                    continue
                for c in t.chains:
                    if c.name == chain and c.type is not None:
                        return c.type
    return None


def is_nat_table(
    tool: str | None, family: str, table: str | None, chains: Iterable[str | None], topo: Topology
) -> bool:
    """Whether the input proves that a table a packet was seen in is a NAT table, whose chains only a
    connection's first packet traverses (nf_nat_inet_fn, net/netfilter/nf_nat_core.c).

    iptables' and ip6tables' table named "nat" is one (iptable_nat.c, ip6table_nat.c register it at the
    NAT hooks). An nft table's name is its author's choice: a chain is a NAT chain by its type ("type nat
    hook ...", nft(8) CHAINS; nft_chain_nat.c), which only the ruleset snapshot shows, so without one an
    nft table proves nothing (nat_type_unknown names it). A table of unknown tool (a LOG line) is read in
    iptables' words unless an nft snapshot lists a table of that name."""
    if table is None:
        return False
    if tool is not None and not tool.startswith("nft"):
        return table == "nat"
    typ = nft_chain_type(family, table, chains, topo)
    return typ == "nat" if typ is not None else tool is None and table == "nat"


def nat_type_unknown(events: Iterable[Event], topo: Topology) -> list[str]:
    """The nft chains of a table named "nat" a packet was seen in whose type no snapshot shows: the name
    reads like iptables' nat table, so the reader is told that it proves nothing (is_nat_table)."""
    out = []
    for ev in events:
        tool = ev.hook.tool
        if tool is None or not tool.startswith("nft") or ev.hook.family == BRIDGE or ev.hook.table != "nat":
            continue
        chain = ev.hook.base_chain
        if nft_chain_type(ev.hook.family, ev.hook.table, (chain,), topo) is None:
            out.append(f"{tool} {ev.hook.table} {chain or '?'}")
    return list(dict.fromkeys(out))


def conntrack_entry(a: Endpoint, b: Endpoint, topo: Topology) -> str | None:
    """The conntrack -L line whose original tuple is this conversation's (a -> b)."""
    for source, e in topo.conntrack:
        o = e.original
        if o.src != a.addr or o.dst != b.addr:
            continue
        port_a = o.sport or o.id
        if a.port is not None and port_a is not None and str(a.port) != port_a:
            continue
        return f"{source}:{e.line}: {e.text}"
    return None


def drop_rule(
    last: Event, later: list[tuple[str, str, str]], new: bool, topo: Topology
) -> tuple[Verdict | None, str | None]:
    """Evaluate the rest of the last hook's chain and the later hooks for a drop.

    ``later`` lists (family, table, hook) slots after the last-seen one, in path order. Returns a
    "dropped" verdict, or a note saying why the snapshot could not decide.
    """
    fam = last.hook.family
    rs = _ruleset(topo, fam)
    if rs is None or fam == BRIDGE or last.hook.table is None:
        return None, None
    view = packet_view(last, new, topo)
    start = log_rule_index(rs, last.hook.table, last.hook.chain, last.record.prefix) or 0
    steps = [(last.hook.table, last.hook.chain, start)]
    steps += [(t, h, 0) for f, t, h in later if f == fam]
    for table, chain, after in steps:
        res = evaluate(rs, table, chain, view, after)
        if res.verdict in ("DROP", "REJECT"):
            how = f"Last logged at {last.hook.label}; evaluating the packet against the ruleset snapshot from there"
            return _snapshot_drop(rs, res, table, chain, how), None
        if res.verdict is None:
            rule, why = res.unevaluated[-1]
            return None, (
                f"The ruleset snapshot cannot decide it: at {table} {rule.chain} rule {rule.num} "
                f"({rule.text}) the {why}, so the evaluation stops there rather than guess."
            )
        if res.verdict not in ("ACCEPT", "RETURN", "MASQUERADE", "SNAT", "DNAT"):
            return None, None
    return None, None


# The evidence of a verdict the ruleset snapshot's evaluation reached, not a logged one (answer.inferred_from).
SNAPSHOT_EVIDENCE = "reached by evaluating the ruleset snapshot"


def _snapshot_drop(rs: Ruleset, res: Evaluation, table: str, chain: str, how: str) -> Verdict:
    """The verdict of a DROP or REJECT the snapshot's evaluation reached; ``how`` says from where."""
    where = f"iptables {table} {chain}" if res.rule is None else f"iptables {table} {res.rule.chain}"
    what = (
        f"rule {res.rule.num} of {res.rule.chain}: {res.rule.text}"
        if res.rule
        else f"the policy {res.verdict} of {res.policy_of}"
    )
    verb = "Rejected (an ICMP error or TCP reset goes back)" if res.verdict == "REJECT" else "Dropped"
    ref = _ref(rs, res)
    code = (
        VerdictCode.REJECTED
        if res.verdict == "REJECT"
        else VerdictCode.DROPPED_BY_RULE
        if res.rule
        else VerdictCode.DROPPED_BY_POLICY
    )
    # A rule or a policy alike: no line shows it decide, the snapshot's evaluation reaches it.
    evidence = (
        f"rule '{res.rule.text}' ({ref}), {SNAPSHOT_EVIDENCE}"
        if res.rule
        else f"policy {res.verdict} of {res.policy_of} ({rs.source}), {SNAPSHOT_EVIDENCE}"
    )
    return Verdict(
        code,
        where,
        f"{verb} by {what} ({rs.source}). {how} reaches this {res.verdict}.",
        evidence,
        res.rule.text if res.rule else f"policy {res.verdict}",
        ref,
    )


def prefix_drop_by_snapshot(last: Event, new: bool, topo: Topology) -> Verdict | None:
    """The rule or policy behind a drop prefix ("[UFW BLOCK]"), when the ruleset snapshot shows it.

    A LOG rule decides nothing (xt_LOG.c returns XT_CONTINUE), and a convention's "logs before the
    drop" does not say which drop: ufw's "[UFW BLOCK]" in ufw-after-logging-input is followed by the
    return to INPUT and INPUT's policy DROP, the one in ufw-logging-deny by a DROP rule of its caller.
    Evaluating the hook's built-in chain from its top, the walk must pass the LOG rule that printed
    this prefix (else the snapshot and the line disagree and nothing is claimed) and reach a DROP or
    REJECT."""
    fam, table, prefix = last.hook.family, last.hook.table, last.record.prefix.strip()
    rs = _ruleset(topo, fam)
    if rs is None or fam == BRIDGE or table is None or not last.hook.placed or not prefix:
        return None
    res = evaluate(rs, table, last.hook.hook, packet_view(last, new, topo))
    logged = [r for r in res.path if r.target == "LOG" and (r.arg("--log-prefix") or "").strip() == prefix]
    if res.verdict not in ("DROP", "REJECT") or not logged:
        return None
    log = logged[-1]
    how = (
        f"Evaluating the packet against the ruleset snapshot from the top of {table} {last.hook.hook} passes "
        f"the LOG rule that printed '{prefix}' ({log.chain} rule {log.num}, {rs.source}:{log.line}) and"
    )
    return _snapshot_drop(rs, res, table, last.hook.hook, how)


def refine_skip(s: Skipped, ev: Event | None, new: bool, topo: Topology) -> Skipped:
    """Explain a hook that did not log the packet from the ruleset: no LOG rule, or what ended the chain."""
    rs = _ruleset(topo, s.family)
    if rs is None or s.reason in ("conntrack", "bridge-nf-off") or ev is None:
        return s
    chain = STAGES[s.stage].hook
    c = rs.chain(s.table, chain)
    if c is None or not has_log_rule(rs, s.table, chain):
        return replace(s, reason="no-rule", explanation=f"{rs.source} has no LOG rule in {s.table} {chain}")
    view = packet_view(ev, new, topo)
    res = evaluate(rs, s.table, chain, view)
    if res.rule is None or res.rule.target == "LOG" or any(r.target == "LOG" for r in res.path):
        return s
    logs = [r for r in c.rules if r.target == "LOG"]
    if res.rule.chain == chain and any(r.num < res.rule.num for r in logs):
        first = next(r for r in logs if r.num < res.rule.num)
        return replace(
            s,
            reason="not-logged",
            rule_ref=LineRef(rs.source, first.line),
            explanation=f"the LOG rule (rule {first.num}: {first.text}) does not match this packet",
        )
    return replace(
        s,
        reason="not-logged",
        rule_ref=_ref(rs, res),
        explanation=f"rule {res.rule.num} of {res.rule.chain} ({res.rule.text}) decides "
        f"{res.verdict} before the chain's LOG rule is reached",
    )


def traced_drop(hops: list[tuple[Event, str]]) -> Verdict | None:
    """A definite verdict from a trace source: the rule or policy that dropped the packet."""
    for ev, _ in hops:
        for hit in ev.rules:
            # Both a decisive verdict and a dropping policy start so: most hits are passed by this test.
            if not (hit.verdict.startswith("drop") or hit.verdict.startswith("reject")):
                continue
            policy = hit.kind is HitKind.POLICY and hit.verdict in ("drop", "reject")
            if not (hit.decisive or policy):
                continue
            snap = f"; {hit.snapshot_ref} in the snapshot" if hit.snapshot_ref else ""
            if policy:
                what = f"the policy {hit.verdict.upper()} of {hit.table} {hit.chain}"
                code, evidence = (
                    VerdictCode.DROPPED_BY_POLICY,
                    f"policy {hit.verdict.upper()} of {hit.table} {hit.chain} ({hit.ref})",
                )
            else:
                num = f" {hit.handle}" if hit.handle else ""
                what = f"rule{num} in {hit.table} {hit.chain}: {hit.text}"
                code = VerdictCode.REJECTED if hit.rejects else VerdictCode.DROPPED_BY_RULE
                evidence = f"rule '{hit.text}' in {hit.table} {hit.chain} ({hit.ref}{snap})"
            verb = "Rejected" if code is VerdictCode.REJECTED else "Dropped"
            return Verdict(
                code,
                f"{ev.hook.label}",
                f"{verb} by {what} (the trace reports this verdict).",
                evidence,
                hit.text or f"policy {hit.verdict}",
                hit.ref,
            )
    return None


_TOOL_PREFIX = re.compile(r"^(?:-[046] |(?:ip6?tables|ebtables|arptables)(?:-nft|-legacy)? )?(?:-t \S+ )?")


def link_rules(ev: Event, topo: Topology) -> Event:
    """Point each traced rule at the same rule in the ruleset snapshot.

    xtables-monitor prints the rule as iptables-save text with a "-4 -t TABLE" (≤ 1.8.10) or
    "iptables -t TABLE" (≥ 1.8.11) head; legacy TRACE prints the rule number; nft monitor trace the
    handle (with nft -a), which the nft ruleset snapshot has when it was listed with -a.
    """
    if not ev.rules:
        return ev
    fam = ev.hook.family
    rs = _ruleset(topo, fam)
    if rs is None and not topo.nft and all(hit.kind is not HitKind.RETURN or hit.verdict for hit in ev.rules):
        return ev  # no snapshot to point at and no verdict to fill in: what the loop below returns
    linked = []
    for hit in ev.rules:
        ref = None
        c = rs.chain(hit.table, hit.chain) if rs is not None else None
        if c is not None and hit.kind is HitKind.RULE:
            body = _TOOL_PREFIX.sub("", hit.text)
            by_text = next((r for r in c.rules if r.text == body), None)
            by_num = next((r for r in c.rules if hit.handle and str(r.num) == hit.handle), None)
            rule = by_text or (by_num if ev.hook.how == "TRACE prefix" else None)
            ref = LineRef(rs.source, rule.line) if rule is not None and rs is not None else None
            if rule is not None and not hit.text:
                # Legacy TRACE names only the rule's position; the snapshot says what it is.
                hit = replace(hit, text=rule.text, verdict=(rule.target or "continue").lower())
        elif c is not None and hit.kind is HitKind.POLICY and not hit.verdict and c.policy:
            hit = replace(hit, verdict=c.policy.lower())
        elif hit.kind is HitKind.RETURN and not hit.verdict:
            hit = replace(hit, verdict="return")
        if ref is None and hit.handle and ev.hook.how == "nft trace":
            for name, data in topo.nft:
                for t in data.tables:
                    if t.name != hit.table:
                        continue
                    for ch in t.chains:
                        for r in ch.rules if ch.name == hit.chain else ():
                            if str(r.handle) == hit.handle:
                                ref = LineRef(name, r.line)
        linked.append(replace(hit, snapshot_ref=ref) if ref else hit)
    if all(new is old for new, old in zip(linked, ev.rules, strict=True)):
        return ev  # nothing to point at (no snapshot): the event as it is, not an equal copy
    return replace(ev, rules=tuple(linked))
