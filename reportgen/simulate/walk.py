"""Walk a hypothetical packet through a host's snapshot: bridge, routing, every base chain at every hook.

The walk follows the hook graph of reportgen.netfilter stage by stage. At each stage every base chain
registered at that hook runs in priority order (nf_hook_slow, net/netfilter/core.c: NF_ACCEPT moves
on to the next hook entry, NF_DROP ends the packet), so an ACCEPT ends only its own base chain while a
DROP anywhere is final (nft(8): "accept ... the packet will still have to pass the other base chains
at the same hook"). Between stages the walk takes the kernel's decisions: the bridge's (FDB; the
bridge's own MAC goes up), br_netfilter's (net.bridge.bridge-nf-call-iptables) and routing's (the
local table first, then the longest prefix, then the default route).

A match the snapshot cannot decide forks the walk: both branches go on, each carrying its condition.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from reportgen.explain.rules import NON_TERMINAL, PacketView, match_one
from reportgen.explain.topology import Topology, brnf_sysctl
from reportgen.model import ICMP_PROTOS, Endpoint, LineRef, Nat, NatBy, VerdictCode
from reportgen.netfilter import BRIDGE, INPUT, OUTPUT, POSTROUTING, PREROUTING, STAGES
from reportgen.parsers.ruleset import Match, Rule, Ruleset, split_to
from reportgen.simulate.chains import BaseChain
from reportgen.simulate.endpoints import Place, Where, mac_of

MAX_BRANCHES = 16  # forks per walk; beyond that the walk stops with "unknown" instead of exploding
_ICMP_TYPES = {"echo-request": 8, "echo-reply": 0, "destination-unreachable": 3, "time-exceeded": 11}
_ICMP6_TYPES = {"echo-request": 128, "echo-reply": 129, "destination-unreachable": 1, "time-exceeded": 3}
# Targets that cannot change a packet's fate or the fields a later rule looks at: an undecidable
# match on such a rule needs no fork.
_HARMLESS = NON_TERMINAL - {"MARK", "CONNMARK", "CT"}


@dataclass(frozen=True)
class Pkt:
    """The packet as the next hook sees it."""

    family: str  # ipv4 / ipv6
    proto: str  # TCP, UDP, ICMP, ICMPv6 (as nf_log prints them)
    src: str
    dst: str
    sport: int | None
    dport: int | None
    ctstate: str  # the conntrack state the rules see: NEW or ESTABLISHED
    tcp_flags: tuple[str, ...] = ()
    icmp_type: int | None = None
    in_dev: str = ""
    out_dev: str = ""
    physin: str = ""
    physout: str = ""
    mac_src: str | None = None
    mac_dst: str | None = None
    mark: int = 0
    # Where it is, beyond what the current hook sees: the bridge and port it came in by, the route's
    # out device and gateway, the bridge port it leaves by.
    l3_in: str = ""  # the device the IP layer received it on: the bridge, an interface, or lo
    bridge: str = ""
    port_in: str = ""
    route_out: str = ""
    gateway: str | None = None
    port_out: str = ""


@dataclass(frozen=True)
class ChainHop:
    """One base chain the packet traversed, and how it ended there."""

    stage: str
    chain: BaseChain
    pkt: Pkt  # as the chain saw it
    verdict: str  # ACCEPT, DROP, REJECT, DNAT, ..., or UNKNOWN
    rule: Rule | None  # the deciding rule; None: the policy
    hits: tuple[Rule, ...]  # every matching rule, in the order met (jumps, LOGs, the decision)
    notes: tuple[str, ...]  # what the walk decided before this hop (routing, bridge), and NAT


@dataclass(frozen=True)
class Outcome:
    code: VerdictCode
    where: str
    explanation: str
    rule: Rule | None = None
    ref: LineRef | None = None


@dataclass(frozen=True)
class Walk:
    """One branch of a simulated packet: its hops, NAT steps, conditions and outcome."""

    hops: tuple[ChainHop, ...] = ()
    nats: tuple[Nat, ...] = ()
    conditions: tuple[str, ...] = ()
    outcome: Outcome | None = None
    stages: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # decisions not yet attached to a hop
    pkt: Pkt | None = None  # the packet as it finally left or arrived


@dataclass(frozen=True)
class _Out:
    verdict: str
    rule: Rule | None
    pkt: Pkt
    hits: tuple[Rule, ...]
    conds: tuple[str, ...]
    why: str = ""


def rule_ref(rule: Rule, rs: Ruleset) -> LineRef:
    return LineRef(rs.source, rule.line)


def describe_match(m: Match) -> str:
    return f"{'! ' if m.negated else ''}{m.opt} {' '.join(m.values)}".strip()


def _mark(spec: str) -> tuple[int, int]:
    val, _, mask = spec.partition("/")
    return int(val, 0), int(mask, 0) if mask else 0xFFFFFFFF


class Walker:
    """Walk packets through one host's snapshot."""

    def __init__(
        self,
        topo: Topology,
        chains: dict[tuple[str, str], list[BaseChain]],
        hairpin: dict[str, tuple[bool, str]] | None = None,
    ) -> None:
        self.topo = topo
        self.chains = chains
        self.hairpin = hairpin or {}  # bridge port -> (hairpin mode on, where ip -d link says so)
        self.local = topo.local_addrs() or frozenset()
        self.undecided: dict[str, int] = {}  # match text -> how often the walk could not decide it
        self.assumed: dict[str, None] = {}  # assumptions the walk made on the way (ordered, once each)

    # --- rules ------------------------------------------------------------------------------------

    def match(self, m: Match, p: Pkt) -> bool | None:
        """One match on the packet; None when the snapshot cannot decide it."""
        v = m.values[0] if m.values else ""
        res: bool | None
        if m.opt in ("--limit", "--limit-burst"):
            self.assumed["A rate limit (-m limit) is assumed not exhausted: the rule matches."] = None
            return True
        if m.opt == "--mark":
            val, mask = _mark(v)
            res = (p.mark & mask) == val
        elif m.opt == "--syn":
            # iptables-extensions(8) tcp --syn: SYN set, ACK/RST/FIN clear.
            res = p.proto == "TCP" and p.tcp_flags == ("SYN",)
        elif m.opt == "--tcp-flags" and len(m.values) == 2:
            examined, comp = (set(x.split(",")) for x in m.values)
            examined = {"SYN", "ACK", "FIN", "RST", "URG", "PSH"} if "ALL" in examined else examined
            res = p.proto == "TCP" and {f for f in p.tcp_flags if f in examined} == (comp - {"NONE"})
        elif m.opt in ("--icmp-type", "--icmpv6-type"):
            table = _ICMP6_TYPES if m.opt == "--icmpv6-type" else _ICMP_TYPES
            want = table.get(v, int(v.split("/")[0]) if v.split("/")[0].isdigit() else None)
            res = None if want is None or p.icmp_type is None else p.icmp_type == want
        elif m.opt == "--match-set" or m.opt.startswith("nft:"):
            res = None  # ipset / nft set members are not in the snapshot; nft expressions not translated
        else:
            icmp = p.proto in ICMP_PROTOS
            view = PacketView(
                p.src,
                p.dst,
                p.proto,
                None if icmp else p.sport,
                None if icmp else p.dport,
                p.in_dev,
                p.out_dev,
                p.physin,
                p.physout,
                p.ctstate,
                frozenset(self.local),
            )
            return match_one(m, view)
        if res is None:
            return None
        return not res if m.negated else res

    def _rule(self, rule: Rule, p: Pkt) -> tuple[bool | None, str]:
        for m in rule.matches:
            r = self.match(m, p)
            if r is None:
                return None, describe_match(m)
            if not r:
                return False, ""
        return True, ""

    def run_chain(
        self,
        rs: Ruleset,
        table: str,
        name: str,
        start: int,
        p: Pkt,
        conds: tuple[str, ...],
        hits: tuple[Rule, ...],
        depth: int = 0,
    ) -> list[_Out]:
        """Walk a chain from rule index ``start``; forks where a match is undecided."""
        chain = rs.chain(table, name)
        if chain is None:
            return [_Out("UNKNOWN", None, p, hits, conds, f"chain {table} {name} is not in the snapshot")]
        for i in range(start, len(chain.rules)):
            rule = chain.rules[i]
            ok, what = self._rule(rule, p)
            if ok is None:
                if rule.target in _HARMLESS:
                    continue  # whether a LOG/counter rule matches changes nothing
                self.undecided[what] = self.undecided.get(what, 0) + 1
                if len(conds) >= 4:
                    return [
                        _Out(
                            "UNKNOWN",
                            rule,
                            p,
                            hits,
                            conds,
                            f"match {what} is not decidable from the "
                            "snapshot, and the walk has forked too often to follow both branches",
                        )
                    ]
                where = f"{rule.table} {rule.chain} rule {rule.num} ({rs.source}:{rule.line})"
                yes = self._apply(rs, chain.name, i, rule, p, (*conds, f"{what} matches in {where}"), hits, depth)
                no = self.run_chain(
                    rs, table, name, i + 1, p, (*conds, f"{what} does not match in {where}"), hits, depth
                )
                return yes + no
            if ok:
                return self._apply(rs, chain.name, i, rule, p, conds, hits, depth)
        if chain.policy is None:
            return [_Out("RETURN", None, p, hits, conds)]
        return [_Out(chain.policy, None, p, hits, conds)]

    def _apply(
        self,
        rs: Ruleset,
        name: str,
        i: int,
        rule: Rule,
        p: Pkt,
        conds: tuple[str, ...],
        hits: tuple[Rule, ...],
        depth: int,
    ) -> list[_Out]:
        hits = (*hits, rule)
        t = rule.target
        if t == "MARK":
            # iptables-extensions(8) MARK: --set-xmark zeroes the mask's bits and XORs the value in
            # (iptables-save writes --set-mark as --set-xmark V/0xffffffff); --set-mark ORs it in.
            xmark, setmark = rule.arg("--set-xmark"), rule.arg("--set-mark")
            if xmark is not None:
                val, mask = _mark(xmark)
                p = replace(p, mark=(p.mark & ~mask) ^ val)
            elif setmark is not None:
                val, mask = _mark(setmark)
                p = replace(p, mark=(p.mark & ~mask) | val)
        if t in NON_TERMINAL or t == "CONTINUE":
            return self.run_chain(rs, rule.table, name, i + 1, p, conds, hits, depth)
        if t in ("ACCEPT", "DROP", "REJECT", "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "RETURN", "QUEUE", "NFQUEUE"):
            return [_Out(t, rule, p, hits, conds)]
        if t is not None and rs.chain(rule.table, t) is not None and depth < 32:
            out: list[_Out] = []
            for sub in self.run_chain(rs, rule.table, t, 0, p, conds, hits, depth + 1):
                if sub.verdict != "RETURN" or rule.goto:  # -g: a RETURN goes back past the caller
                    out.append(sub)
                else:
                    out += self.run_chain(rs, rule.table, name, i + 1, sub.pkt, sub.conds, sub.hits, depth)
            return out
        return [_Out("UNKNOWN", rule, p, hits, conds, f"target {t} is not simulated")]

    # --- NAT ----------------------------------------------------------------------------------------

    def first_addr(self, dev: str, family: str) -> str | None:
        return self.topo.first_addr(dev, family)

    def nat(self, out: _Out, hop: BaseChain, p: Pkt) -> tuple[Pkt, Nat | None, str]:
        """Apply a NAT target: the new packet, the NAT step, and why (or why not)."""
        rule = out.rule
        assert rule is not None
        fam = p.family
        where = f"{fam} {hop.table} {hop.hook}"
        ref = rule_ref(rule, hop.rules)
        to = rule.arg("--to-destination") or rule.arg("--to-source") or rule.arg("--to") or ""
        addr, port = _split_to(to)
        if out.verdict in ("DNAT", "REDIRECT"):
            if out.verdict == "REDIRECT":
                # nf_nat_redirect.c: the first address of the incoming device (loopback when local).
                addr = self.first_addr(p.in_dev, fam) if p.in_dev else ("::1" if fam == "ipv6" else "127.0.0.1")
                ports = rule.arg("--to-ports")
                port = int(ports.split("-")[0]) if ports else None
            if not addr:
                return p, None, f"the DNAT target's address ({to or 'none'}) is not understood"
            new = replace(p, dst=addr, dport=port if port is not None else p.dport)
            nat = Nat(
                out.verdict if out.verdict == "DNAT" else "DNAT",
                "original",
                where,
                "destination",
                Endpoint(p.dst, p.dport),
                Endpoint(new.dst, new.dport),
                f"predicted: {rule.text} rewrites the destination",
                NatBy.RULE,
                rule.text,
                ref,
            )
            return new, nat, ""
        if out.verdict == "MASQUERADE":
            # nf_nat_masquerade_ipv4() picks inet_select_addr() on the out device
            # (net/netfilter/nf_nat_masquerade.c); IPv6 uses ipv6_dev_get_saddr().
            addr = self.first_addr(p.out_dev, fam)
            if addr is None:
                return p, None, f"MASQUERADE: {p.out_dev} has no {fam} address in the ip addr snapshot"
            evidence = f"predicted: MASQUERADE uses {p.out_dev}'s address {addr} (nf_nat_masquerade.c)"
        else:
            if not addr:
                return p, None, f"the SNAT target's address ({to or 'none'}) is not understood"
            evidence = f"predicted: {rule.text} rewrites the source"
        new = replace(p, src=addr, sport=port if port is not None else p.sport)
        nat = Nat(
            out.verdict,
            "original",
            where,
            "source",
            Endpoint(p.src, p.sport),
            Endpoint(new.src, new.sport),
            evidence,
            NatBy.RULE,
            rule.text,
            ref,
        )
        return new, nat, ""

    # --- hooks --------------------------------------------------------------------------------------

    def run_stage(self, w: Walk, stage: str, p: Pkt, reverse: tuple[Nat, ...]) -> list[Walk]:
        """Run every base chain at a stage's hook, in priority order; forks multiply the walks."""
        st = STAGES[stage]
        family = BRIDGE if st.family_kind == "bridge" else p.family
        chains = self.chains.get((family, st.hook), [])
        live = [(replace(w, stages=(*w.stages, stage)), p)]
        done: list[Walk] = []
        # Conntrack's reverse NAT for a reply runs where the nat table sits: destination at PREROUTING /
        # OUTPUT (priority -100), source at POSTROUTING / INPUT (100) (nf_nat_inet_fn, nf_nat_core.c).
        nat_prio = -100 if st.hook in (PREROUTING, OUTPUT) else 100
        undo = (
            [n for n in reverse if (n.field == "source") == (st.hook in (PREROUTING, OUTPUT))]
            if family != BRIDGE and st.hook in (PREROUTING, OUTPUT, POSTROUTING, INPUT)
            else []
        )
        # A mapping is reversed once: only while the reply still carries the translated address.
        undo = [n for n in undo if (p.dst if n.field == "source" else p.src) == n.after.addr]
        for bc in [*chains, None]:
            if undo and (bc is None or bc.priority >= nat_prio):
                live = [
                    (self._undo(wk, pk, undo, f"{family} nat {st.hook}"), self._undone(pk, undo)) for wk, pk in live
                ]
                undo = []
            if bc is None:
                break
            if bc.nat and p.ctstate != "NEW":
                continue  # nat chains see only a connection's first packet (nf_nat_core.c nf_nat_inet_fn)
            nxt: list[tuple[Walk, Pkt]] = []
            for wk, pk in live:
                for out in self.run_chain(bc.rules, bc.table, bc.chain, 0, pk, wk.conditions, ()):
                    nxt += self._after_chain(wk, stage, bc, pk, out, done)
            live = nxt
            if len(live) + len(done) > MAX_BRANCHES:
                break
        return done + [replace(wk, pkt=pk) for wk, pk in live]

    def _undone(self, p: Pkt, undo: list[Nat]) -> Pkt:
        for n in undo:
            if n.field == "source":  # the request's SNAT: the reply's destination goes back
                p = replace(p, dst=n.before.addr, dport=n.before.port)
            else:  # the request's DNAT: the reply's source goes back
                p = replace(p, src=n.before.addr, sport=n.before.port)
        return p

    def _undo(self, w: Walk, p: Pkt, undo: list[Nat], hook: str) -> Walk:
        nats = []
        for n in undo:
            fld = "destination" if n.field == "source" else "source"
            before = Endpoint(p.dst, p.dport) if fld == "destination" else Endpoint(p.src, p.sport)
            nats.append(
                Nat(
                    n.type,
                    "reply",
                    hook,
                    fld,
                    before,
                    n.before,
                    f"predicted: conntrack reverses the request's {n.type} on the reply (the nat table "
                    "is not consulted again: nf_nat_inet_fn, net/netfilter/nf_nat_core.c)",
                    NatBy.CONNTRACK,
                    n.rule,
                    n.rule_ref,
                )
            )
        return replace(w, nats=(*w.nats, *nats))

    def _after_chain(
        self, w: Walk, stage: str, bc: BaseChain, p: Pkt, out: _Out, done: list[Walk]
    ) -> list[tuple[Walk, Pkt]]:
        notes = list(w.notes)
        verdict = out.verdict
        if verdict == "RETURN":  # a RETURN in a base chain, or the end of one: its policy decides
            base = bc.rules.chain(bc.table, bc.chain)
            verdict = (base.policy if base is not None else None) or "ACCEPT"
        new_p = out.pkt
        nats = w.nats
        if verdict in ("DNAT", "SNAT", "MASQUERADE", "REDIRECT"):
            new_p, nat, why = self.nat(out, bc, out.pkt)
            if nat is not None:
                nats = (*nats, nat)
                notes.append(f"{nat.type}: {nat.field} {nat.before} → {nat.after}.")
            else:
                notes.append(f"NAT not applied: {why}.")
        hop = ChainHop(stage, bc, p, verdict, out.rule, out.hits, tuple(notes))
        w = replace(w, hops=(*w.hops, hop), nats=nats, conditions=out.conds, notes=())
        where = f"{bc.label} ({STAGES[stage].title})"
        if verdict == "DROP":
            by_rule = out.rule is not None and out.verdict == "DROP"
            code = VerdictCode.DROPPED_BY_RULE if by_rule else VerdictCode.DROPPED_BY_POLICY
            by = (
                f"rule {out.rule.num} of {out.rule.table} {out.rule.chain}: {out.rule.text}"
                if out.rule is not None and by_rule
                else f"the policy DROP of {bc.label}"
            )
            done.append(
                self._end(
                    w,
                    code,
                    where,
                    f"Dropped at {where} by {by}. A drop at any base chain is "
                    "final (nf_hook_slow, net/netfilter/core.c).",
                    out.rule if by_rule else None,
                    bc,
                    new_p,
                )
            )
            return []
        if verdict == "REJECT":
            assert out.rule is not None
            done.append(
                self._end(
                    w,
                    VerdictCode.REJECTED,
                    where,
                    f"Rejected at {where} by rule {out.rule.num} of {out.rule.chain}: {out.rule.text} "
                    "(an ICMP error or TCP reset goes back to the sender).",
                    out.rule,
                    bc,
                    new_p,
                )
            )
            return []
        if verdict in ("UNKNOWN", "QUEUE", "NFQUEUE"):
            why = out.why or f"{verdict}: a userspace program decides"
            done.append(
                self._end(w, VerdictCode.UNKNOWN, where, f"Undetermined at {where}: {why}.", out.rule, bc, new_p)
            )
            return []
        return [(w, new_p)]

    def _end(
        self, w: Walk, code: VerdictCode, where: str, text: str, rule: Rule | None, bc: BaseChain | None, p: Pkt
    ) -> Walk:
        ref = (
            rule_ref(rule, bc.rules)
            if rule is not None and bc is not None
            else (LineRef(bc.source, bc.line) if bc is not None else None)
        )
        return replace(w, outcome=Outcome(code, where, text, rule, ref), pkt=p)

    # --- decisions between stages ---------------------------------------------------------------------

    def route(self, dst: str) -> tuple[str | None, str | None, str]:
        """(out device or "local", gateway, why) for a destination; (None, None, why) without a route."""
        ip = ipaddress.ip_address(dst)
        if dst in self.local or ip.is_loopback:
            # fib_lookup consults the local table first (the "from all lookup local" rule at priority
            # 0, net/ipv4/fib_rules.c fib_default_rules_init); it holds every address of the host.
            return "local", None, f"{dst} is one of the host's addresses: the local routing table delivers it"
        r = self.topo.route_for(dst)
        if r is None:
            return None, None, f"no route to {dst} in the route snapshot"
        via = f" via {r.gateway}" if r.gateway else " (directly connected)"
        return r.dev, r.gateway, f"routing: {dst} matches route {r.dst}{via} dev {r.dev} (longest prefix)"

    def forwarding_off(self, family: str) -> str | None:
        """Why the host does not route this family, when its sysctl snapshot says so (Topology.forwarding)."""
        key, on = self.topo.forwarding(family)
        return f"{key} = 0 in {self.topo.sources.get('sysctl', 'the sysctl snapshot')}" if on is False else None

    def brnf_on(self, family: str) -> tuple[bool, str]:
        """Whether bridged frames reach the IP hooks (Topology.brnf_on), and the evidence or assumption."""
        on = self.topo.brnf_on(family)
        key = brnf_sysctl(family)
        if on is None:
            # brnf_init_net() sets every bridge-nf-call-* to 1 in a new netns (br_netfilter_hooks.c).
            why = f"{key} is not in the snapshots: assumed 1 (the default when br_netfilter is loaded)"
            self.assumed[why[0].upper() + why[1:] + "."] = None
            return True, why
        return on, f"{key} = {self.topo.brnf(family)} ({self.topo.sources.get('sysctl', 'sysctl')})"

    def port_of(self, bridge: str, addr: str) -> tuple[str, str | None, str]:
        """The bridge port (and MAC) behind a neighbour address, from the names and the FDB."""
        mac, why = mac_of(self.topo, addr)
        if mac and mac in self.topo.fdb:
            port = self.topo.fdb[mac][0]
            return port, mac, f"{why}; the FDB has it on port {port} of {bridge}"
        return "", mac, f"the MAC of {addr} is not in the snapshots, so the bridge port is unknown"


def _split_to(to: str) -> tuple[str | None, int | None]:
    """Split a NAT target's --to value: 1.2.3.4:80, [fd00::1]:80, 1.2.3.4-1.2.3.9:80-90."""
    if not to:
        return None, None
    addr, port = split_to(to)
    addr = addr.split("-")[0]
    p = port.split("-")[0]
    return addr or None, int(p) if p.isdigit() else None


# What each stage's hook sees as IN / OUT / PHYSIN / PHYSOUT (nf_log prints the same fields): the
# bridge hooks see ports; br_netfilter's IP hooks see the bridge with the ports as PHYS*; IN is
# empty at POSTROUTING and OUT before routing (nf_hook_state, net/netfilter/core.c).
def _view(stage: str, p: Pkt) -> Pkt:
    port_in = p.port_in
    views = {
        "br-pre": (port_in, "", port_in, ""),
        "ip-pre": (p.l3_in, "", port_in, ""),
        "br-in": (port_in, "", port_in, ""),
        "ip-pre-up": (p.bridge, "", "", ""),
        "br-fwd": (port_in, p.port_out, port_in, p.port_out),
        "ip-fwd-br": (p.bridge, p.bridge, port_in, p.port_out),
        "br-post": ("", p.port_out, port_in, p.port_out),
        "ip-post-br": ("", p.bridge, port_in, p.port_out),
        "ip-in": (p.l3_in, "", port_in, ""),
        "ip-fwd": (p.l3_in, p.route_out, port_in, ""),
        "ip-out": ("", p.route_out, "", ""),
        "ip-post": ("", p.route_out, port_in if p.bridge else "", ""),
        "br-out": ("", p.port_out, "", p.port_out),
        "br-post-out": ("", p.port_out, "", p.port_out),
    }
    i, o, pi, po = views[stage]
    return replace(p, in_dev=i, out_dev=o, physin=pi, physout=po)


class Simulator(Walker):
    """Follow a packet from where it starts to where it ends, across every stage."""

    def walk(self, start: Place, p: Pkt, reverse: tuple[Nat, ...] = (), notes: tuple[str, ...] = ()) -> list[Walk]:
        """Every branch of the packet's way from ``start``."""
        w = Walk(notes=notes)
        first: str | None
        if start.where == Where.HOST:
            dev, gw, why = self.route(p.dst)
            if dev is None:
                return [replace(w, outcome=Outcome(VerdictCode.UNKNOWN, "routing", f"Not sent: {why}."), pkt=p)]
            dev = "lo" if dev == "local" else dev
            p = replace(p, route_out=dev, gateway=gw)
            w = replace(
                w,
                notes=(
                    *w.notes,
                    f"Sent by the host itself; {why}, so OUT is {dev} "
                    "(ip_route_output before LOCAL_OUT, net/ipv4/ip_output.c).",
                ),
            )
            first = "ip-out"
        elif start.where == Where.PORT:
            p = replace(p, bridge=start.bridge, port_in=start.iface, l3_in=start.bridge)
            first = "br-pre"
            w = replace(
                w,
                notes=(
                    *w.notes,
                    f"The frame enters bridge {start.bridge} on port {start.iface} "
                    f"({start.how}); destination MAC {p.mac_dst or 'unknown'}.",
                ),
            )
        else:
            p = replace(p, l3_in=start.iface)
            first = "ip-pre"
            w = replace(w, notes=(*w.notes, f"Arrives from outside on {start.iface} ({start.how})."))
        work: list[tuple[Walk, Pkt, str]] = [(w, p, first)]
        finished: list[Walk] = []
        while work:
            w, p, stage = work.pop(0)
            for w2 in self.run_stage(w, stage, _view(stage, p), reverse):
                if w2.outcome is not None or w2.pkt is None:
                    finished.append(w2)
                    continue
                for w3, p3, nxt in self._next(w2, stage, w2.pkt):
                    if nxt is None or len(finished) + len(work) >= MAX_BRANCHES:
                        finished.append(
                            w3
                            if nxt is None
                            else replace(
                                w3, outcome=Outcome(VerdictCode.UNKNOWN, stage, "Too many branches to follow.")
                            )
                        )
                    else:
                        work.append((w3, p3, nxt))
        return finished

    def _end_at(self, w: Walk, p: Pkt, code: VerdictCode, where: str, text: str) -> tuple[Walk, Pkt, None]:
        extra = " ".join(w.notes)
        return replace(w, outcome=Outcome(code, where, f"{text} {extra}".strip()), pkt=p, notes=()), p, None

    def _note(self, w: Walk, text: str) -> Walk:
        return replace(w, notes=(*w.notes, text))

    def _next(self, w: Walk, stage: str, p: Pkt) -> list[tuple[Walk, Pkt, str | None]]:
        if stage == "br-pre":
            on, why = self.brnf_on(p.family)
            if on:
                return [
                    (
                        self._note(
                            w,
                            f"br_netfilter calls the IP PREROUTING hooks for the bridged frame: {why} "
                            "(br_nf_pre_routing, net/bridge/br_netfilter_hooks.c).",
                        ),
                        p,
                        "ip-pre",
                    )
                ]
            return [
                self._bridge_decision(
                    self._note(w, f"The IP hooks are not called for the bridged frame: {why}."), p, p.dst
                )
            ]
        if stage == "ip-pre" and p.bridge and p.port_in:
            return [self._bridge_decision(w, p, p.dst)]
        if stage in ("ip-pre", "ip-pre-up", "br-in"):
            if stage == "br-in" and not self.brnf_on(p.family)[0]:
                return [
                    (
                        self._note(
                            w,
                            "The IP PREROUTING hooks run now, as the frame goes up from the bridge "
                            "(ip_rcv on the bridge device).",
                        ),
                        p,
                        "ip-pre-up",
                    )
                ]
            return [self._routed(w, p)]
        if stage == "ip-in":
            return [
                self._end_at(
                    w,
                    p,
                    VerdictCode.DELIVERED_LOCAL,
                    "local process",
                    f"Delivered to the host's own stack ({p.dst} is local).",
                )
            ]
        if stage in ("ip-fwd", "ip-out"):
            if stage == "ip-out":
                # A nat OUTPUT DNAT makes the kernel route again (ip_route_me_harder from
                # nf_nat_ipv4_local_fn, net/netfilter/nf_nat_proto.c).
                dev, gw, why = self.route(p.dst)
                dev = "lo" if dev == "local" else dev
                if dev is not None and dev != p.route_out:
                    p = replace(p, route_out=dev, gateway=gw)
                    w = self._note(w, f"Re-routed after the destination changed: {why}.")
            return [(w, p, "ip-post")]
        if stage == "ip-post":
            if p.route_out == "lo":
                return [
                    (
                        self._note(w, "Looped back: the packet comes in again on lo."),
                        replace(p, l3_in="lo", bridge="", port_in="", route_out=""),
                        "ip-pre",
                    )
                ]
            if self.topo.is_bridge(p.route_out):
                hop = p.gateway or p.dst
                port, mac, why = self.port_of(p.route_out, hop)
                if not port:
                    return [
                        self._end_at(
                            w, p, VerdictCode.UNKNOWN, p.route_out, f"Sent into bridge {p.route_out}, but {why}."
                        )
                    ]
                return [
                    (
                        self._note(w, f"Out through bridge {p.route_out}: {why}."),
                        replace(p, port_out=port, mac_dst=mac),
                        "br-out",
                    )
                ]
            return [
                self._end_at(
                    w,
                    p,
                    VerdictCode.FORWARDED_OUT,
                    p.route_out,
                    f"Leaves the host via {p.route_out}" + (f" towards gateway {p.gateway}." if p.gateway else "."),
                )
            ]
        if stage == "br-out":
            return [(w, p, "br-post-out")]
        if stage == "br-fwd":
            on, _ = self.brnf_on(p.family)
            return [(w, p, "ip-fwd-br" if on else "br-post")]
        if stage == "ip-fwd-br":
            return [(w, p, "br-post")]
        if stage == "br-post":
            on, _ = self.brnf_on(p.family)
            if on:
                return [(w, p, "ip-post-br")]
        if stage in ("br-post", "ip-post-br", "br-post-out"):
            peer = self.topo.veth_peer.get(p.port_out)
            return [
                self._end_at(
                    w,
                    p,
                    VerdictCode.DELIVERED_TO_PORT,
                    p.port_out,
                    f"Leaves bridge port {p.port_out}" + (f" ({peer})." if peer else "."),
                )
            ]
        return [self._end_at(w, p, VerdictCode.UNKNOWN, stage, f"The walk does not know what follows {stage}.")]

    def _bridge_decision(self, w: Walk, p: Pkt, orig_dst: str) -> tuple[Walk, Pkt, str | None]:
        own = self.topo.iface_mac.get(p.bridge)
        dev, _, _ = self.route(p.dst)
        if p.mac_dst and own and p.mac_dst == own and dev != p.bridge:
            return (
                self._note(
                    w,
                    f"The destination MAC {p.mac_dst} is {p.bridge}'s own, so the bridge passes the "
                    "frame up to the host (br_handle_frame_finish → br_pass_frame_up, "
                    "net/bridge/br_input.c).",
                ),
                p,
                "br-in",
            )
        if p.mac_dst and own and p.mac_dst == own:
            # br_nf_pre_routing_finish(): a DNAT'd destination routed back out of the same bridge is
            # bridged to the new neighbour ("bridged_dnat", net/bridge/br_netfilter_hooks.c).
            port, mac, why = self.port_of(p.bridge, p.dst)
            if port == p.port_in:
                blocked = self._no_hairpin(w, p, port)
                if blocked is not None:
                    return blocked
            if port:
                return (
                    self._note(
                        w,
                        f"Destination NAT moved it to {p.dst} on the same bridge; "
                        f"br_netfilter bridges it there ({why}).",
                    ),
                    replace(p, port_out=port, mac_dst=mac),
                    "br-fwd",
                )
            return (self._note(w, f"The destination MAC is {p.bridge}'s own: up to the host."), p, "br-in")
        if p.mac_dst and p.mac_dst in self.topo.fdb:
            port = self.topo.fdb[p.mac_dst][0]
            if port == p.port_in:
                blocked = self._no_hairpin(w, p, port)
                if blocked is not None:
                    return blocked
            src = self.topo.sources.get(f"fdb:{p.mac_dst}", "bridge fdb")
            return (
                self._note(
                    w,
                    f"Bridged: {p.mac_dst} is learned on port {port} ({src}), so the bridge "
                    "forwards the frame (br_handle_frame_finish → br_forward); no routing.",
                ),
                replace(p, port_out=port),
                "br-fwd",
            )
        return self._end_at(
            w,
            p,
            VerdictCode.UNKNOWN,
            p.bridge,
            f"The destination MAC {p.mac_dst or '(unknown)'} is neither {p.bridge}'s own nor in "
            "the FDB snapshot: the bridge would flood it (br_flood) and where it lands is unknown.",
        )

    def _no_hairpin(self, w: Walk, p: Pkt, port: str) -> tuple[Walk, Pkt, None] | None:
        """A bridge sends a frame back out of the port it came in on only in hairpin mode
        (should_deliver, net/bridge/br_forward.c); None when the port's hairpin mode is on."""
        mode = self.hairpin.get(port)
        if mode is not None and mode[0]:
            return None
        why = (
            f"hairpin mode is off on {port} ({mode[1]})"
            if mode is not None
            else f"the hairpin mode of {port} is not in the snapshots (ip -d link shows it)"
        )
        return self._end_at(
            w,
            p,
            VerdictCode.UNKNOWN,
            port,
            f"The frame would have to leave by {port}, the port it came in on; the bridge does that "
            f"only in hairpin mode (should_deliver, net/bridge/br_forward.c), and {why}.",
        )

    def _routed(self, w: Walk, p: Pkt) -> tuple[Walk, Pkt, str | None]:
        dev, gw, why = self.route(p.dst)
        if dev == "local":
            return self._note(w, f"Routing: {why}."), p, "ip-in"
        if dev is None:
            return self._end_at(
                w,
                p,
                VerdictCode.UNKNOWN,
                "routing",
                f"Routing finds no way: {why}; the kernel would drop it with an ICMP unreachable.",
            )
        off = self.forwarding_off(p.family)
        if off:
            return self._end_at(
                w,
                p,
                VerdictCode.UNKNOWN,
                "routing",
                f"Not forwarded: {off}, so the kernel does not route it (ip_route_input_slow, "
                "net/ipv4/route.c; ip6_forward, net/ipv6/ip6_output.c).",
            )
        return (
            self._note(w, f"{why[0].upper()}{why[1:]}; forwarded (ip_forward, net/ipv4/ip_forward.c)."),
            replace(p, route_out=dev, gateway=gw),
            "ip-fwd",
        )
