"""Explain correlated packets: path class, per-hop text, NAT, skipped hooks and the verdict.

Pure functions over the model; the hook graph in reportgen.netfilter is the only source of "what
comes next", so the same code explains bridged, routed, local and NAT'd traffic.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Final

from reportgen.explain.attribution import (
    SNAPSHOT_EVIDENCE,
    attribute_nat,
    conntrack_entry,
    drop_rule,
    is_nat_table,
    link_rules,
    prefix_drop_by_snapshot,
    refine_skip,
    shown_mark,
    traced_drop,
    unshown_source_nat,
)
from reportgen.explain.correlate import (
    MAX_GAP_SECONDS,
    STAGE_ORDER,
    Flow,
    Track,
    ct_direction,
    differs,
    flow_ports,
    group_conversations,
    is_reply_by_itself,
    looped_back,
    opens_by_itself,
    views,
)
from reportgen.explain.topology import Topology, brnf_key
from reportgen.explain.verdicts import (
    EXIT_STAGES,
    INPUT_NOT_SHOWN,
    TRACED,
    action_says,
    delivered_by_answer,
    exit_verdict,
    input_not_shown,
    last_seen,
    placement,
    prefix_evidence,
    prefix_rests_on,
    prefix_verdict,
    shows_delivery,
    trace_outcome,
)
from reportgen.model import (
    ICMP_PROTOS,
    ICMP_TYPE_NAMES,
    NO_CONVERSATION,
    Action,
    Conversation,
    Endpoint,
    Event,
    HitKind,
    Hop,
    LineRef,
    Nat,
    NatBy,
    Packet,
    Skipped,
    Verdict,
    VerdictCode,
    family_name,
    id_order,
)
from reportgen.netfilter import (
    BRIDGE,
    BRIDGED,
    BRIDGED_TO_HOST,
    BRNF_STAGES,
    LOCAL_IN,
    LOCAL_IN_FROM_BRIDGE,
    LOCAL_OUT,
    OUT_VIA_BRIDGE,
    ROUTED,
    ROUTED_FROM_BRIDGE,
    STAGES,
    tables_at,
)
from reportgen.parsers.conntrack import CtTuple
from reportgen.parsers.nflog import arp_summary, cut_note, is_multicast, logger_note, shown
from reportgen.parsers.prefix import (
    EBT_LOG_WRITER,
    EBT_LOG_WRITER_NOTE,
    HOW_EBT_LAYOUT,
    HOW_IN_OUT,
    HOW_WORDS,
    forward_only_reason,
)


@dataclass(frozen=True)
class Slot:
    stage: str
    family: str
    table: str


def _family(track: Track) -> str:
    for ev in track.events:
        if ev.hook.family != BRIDGE:
            return ev.hook.family
        if ev.record.l3 in ("ipv4", "ipv6"):
            return ev.record.l3
    return "ipv4"


def _proto(track: Track) -> str | None:
    for ev in track.events:
        if ev.record.proto:
            return ev.record.proto
    return None


def _entered_bridge(track: Track) -> bool:
    return any(st in ("br-pre", "br-in", "br-fwd") for st in track.stages) or any(
        ev.record.physin for ev in track.events
    )


def _out_via_bridge(track: Track, topo: Topology) -> bool:
    if any(st in ("br-out", "br-post-out") for st in track.stages):
        return True
    return bool(track.ip_out()) and topo.is_bridge(track.ip_out())


def path_class(track: Track) -> str:
    """Classify the path: bridged, bridged-to-host, routed, local-in, local-out or undetermined."""
    placed = [st for ev, st in zip(track.events, track.stages, strict=True) if ev.hook.placed]
    if not placed:
        return "undetermined"  # a hook that is one of several candidates says nothing about the path
    st = set(placed)
    if "ip-out" in st or (placed[0] in ("ip-post", "br-out", "br-post-out") and not track.physin()):
        return "local-out"
    if "ip-in" in st:
        return "local-in"
    if st & {"ip-fwd", "ip-post"}:
        return "routed"
    if st & {"br-fwd", "ip-fwd-br", "br-post", "ip-post-br"}:
        return "bridged"
    if "br-in" in st:
        return "bridged-to-host"
    return "undetermined"


def _template(track: Track, cls: str, topo: Topology) -> tuple[str, ...]:
    via_br = _entered_bridge(track)
    out_br = OUT_VIA_BRIDGE if _out_via_bridge(track, topo) else ()
    brnf_off = topo.brnf_on(_family(track)) is False
    t: tuple[str, ...]
    if cls == "local-out":
        # Sent over loopback, it comes back in to INPUT (correlate._looped_back). Its nat bindings were
        # set up at OUTPUT and POSTROUTING (nf_nat_inet_fn() runs the nat chains only for a manip not
        # yet initialised), so nat PREROUTING/INPUT are not traversed: IP PREROUTING is left out.
        t = LOCAL_OUT + ("ip-in",) if looped_back(track) else LOCAL_OUT + out_br
    elif cls == "local-in":
        t = LOCAL_IN_FROM_BRIDGE if via_br else LOCAL_IN
    elif cls == "routed":
        t = (ROUTED_FROM_BRIDGE if via_br else ROUTED) + out_br
    elif cls == "bridged":
        t = BRIDGED
    elif cls == "bridged-to-host":
        t = BRIDGED_TO_HOST
    else:
        return tuple(dict.fromkeys(track.stages))
    if via_br and (brnf_off or "ip-pre-up" in track.stages) and cls in ("local-in", "routed"):
        # Without br_netfilter's PREROUTING call the IP PREROUTING hooks run when the frame goes up
        # from the bridge (ip_rcv on the bridge device), i.e. after bridge INPUT.
        t = tuple(s for s in t if s != "ip-pre")
        i = t.index("br-in") + 1
        t = t[:i] + ("ip-pre-up",) + t[i:]
    return t


# Stages that run the same chains in another context: a LOG rule seen firing in one is there in both.
_SAME_RULES = {"ip-pre-up": "ip-pre", "ip-fwd-br": "ip-fwd", "ip-post-br": "ip-post", "br-post-out": "br-post"}


class CaseFacts:
    """What the whole case shows: which (stage, family, table, proto) had a LOG rule that fired.

    Learnt packet by packet (``add``). A streaming pass asks before it has seen the whole case, so
    every question answered "no" is remembered: ``stale`` turns true when a fact learnt later would
    have answered one of them "yes" (pipeline.py then reads the case again with the facts fixed).
    """

    def __init__(self, tracks: Iterable[Track] = ()) -> None:
        self.seen: set[tuple[str, str, str]] = set()
        self.seen_proto: set[tuple[str, str, str, str | None]] = set()
        self.tables: dict[str, set[str]] = {}
        self.denied: set[tuple[object, ...]] = set()  # facts some answer relied on being absent
        self.stale = False
        # _slots per (template, family): they change only when a table is first seen logging.
        self.slots: dict[tuple[tuple[str, ...], str], list[Slot]] = {}
        for t in tracks:
            self.add(t)

    def add(self, t: Track) -> None:
        proto = _proto(t)
        for ev, st in zip(t.events, t.stages, strict=True):
            table = ev.hook.table or "?"
            fam = "bridge" if ev.hook.family == BRIDGE else "ip"
            if (st, fam, table, proto) in self.seen_proto:
                continue
            for fact in ((st, fam, table), (st, fam, table, proto), (fam, table)):
                if fact in self.denied:
                    self.stale = True
            self.seen.add((st, fam, table))
            self.seen_proto.add((st, fam, table, proto))
            if table not in self.tables.setdefault(fam, set()):
                self.tables[fam].add(table)
                self.slots.clear()

    def instrumented(self, slot: Slot, proto: str | None) -> bool:
        asked = _asked(slot, proto)
        if any(a in self.seen_proto for a in asked):
            return True
        self.denied.update(asked)
        return False

    def any_seen(self, slot: Slot) -> bool:
        fam = "bridge" if slot.family == BRIDGE else "ip"
        # A line that names no table ("?": a kernel LOG line) may be this table's: the hook was
        # logged at (openwrt/packages#10712 "output start" with no table at OUTPUT).
        return self.saw((slot.stage, fam, slot.table)) or self.saw((slot.stage, fam, "?"))

    def saw(self, fact: tuple[str, str, str]) -> bool:
        """Whether some packet was logged at (stage, "ip" or "bridge", table)."""
        if fact in self.seen:
            return True
        self.denied.add(fact)
        return False

    def has_table(self, kind: str, table: str) -> bool:
        if table in self.tables.get(kind, ()):
            return True
        self.denied.add((kind, table))
        return False

    def places(self) -> _Places:
        """The (stage, table) places some packet was logged at, as the simulator compares them."""
        return _Places(self)


@functools.lru_cache(maxsize=1024)
def _asked(slot: Slot, proto: str | None) -> tuple[tuple[str, str, str, str | None], ...]:
    """The facts CaseFacts.instrumented asks about a slot: its stage and the stages running the same
    chains (_SAME_RULES), for the protocol."""
    fam = "bridge" if slot.family == BRIDGE else "ip"
    stages = {slot.stage, _SAME_RULES.get(slot.stage, slot.stage)}
    stages |= {k for k, v in _SAME_RULES.items() if v == slot.stage}
    return tuple((s, fam, slot.table, proto) for s in stages)


class _Places:
    """CaseFacts.seen as (stage, table) pairs; a pair asked about and absent is remembered as denied.
    Not a set subclass: compiled code (mypyc) tests a set's membership directly, skipping an override."""

    def __init__(self, facts: CaseFacts) -> None:
        self.pairs = {(st, table) for st, _, table in facts.seen}
        self.facts = facts

    def __contains__(self, place: object) -> bool:
        if place in self.pairs:
            return True
        if isinstance(place, tuple) and len(place) == 2:
            st, table = place
            self.facts.denied.update({(st, fam, table) for fam in ("ip", "bridge")})
        return False


def _slots(template: tuple[str, ...], family: str, facts: CaseFacts) -> list[Slot]:
    """The (stage, family, table) places a path template passes that a LOG rule could show."""
    key = (template, family)
    if key not in facts.slots:
        facts.slots[key] = _template_slots(template, family, facts)
    return list(facts.slots[key])


def _template_slots(template: tuple[str, ...], family: str, facts: CaseFacts) -> list[Slot]:
    out = []
    for key in template:
        stage = STAGES[key]
        fam = BRIDGE if stage.family_kind == "bridge" else family
        kind = "bridge" if fam == BRIDGE else "ip"
        for table in tables_at(fam, stage.hook):
            # filter and nat hold the rules every host has (Docker's among them); other tables the
            # trace never mentions (no LOG rule anywhere) would only add noise.
            if (kind == "ip" and table in ("filter", "nat")) or facts.has_table(kind, table):
                out.append(Slot(key, fam, table))
    return out


# --- text helpers --------------------------------------------------------------------------------


class _Names:
    """The last topology's names by address or MAC: the same few MACs are named on every packet."""

    def __init__(self) -> None:
        self.topo: Topology | None = None
        self.known: dict[str, str] = {}


_NAMES = _Names()  # an instance, not class attributes: a compiled (mypyc) class's attributes are fixed


def _named(topo: Topology, value: str | None) -> str:
    if not value:
        return "-"
    names = _NAMES
    if names.topo is not topo:
        names.topo, names.known = topo, {}
    if value not in names.known:
        name = topo.name(value)
        names.known[value] = f"{value} ({name})" if name else value
    return names.known[value]


def _port(topo: Topology, port: str) -> str:
    br = topo.bridge_of(port)
    peer = topo.veth_peer.get(port)
    facts = [f"port of {br}"] if br else []
    facts += [f"veth peer of {peer}"] if peer else []
    return f"{port} ({', '.join(facts)})" if facts else port


def describe_packet(track: Track) -> str:
    """Summarise a packet in one line: protocol, addresses, ids."""
    l3 = track.l3()
    if l3 is None:
        r = track.events[0].record
        arp = arp_summary(r)
        if arp is not None and r.mac_src is None and r.mac_dst is None:
            return arp  # an nf_log ARP line shows the ARP header, not the frame's addresses
        if r.l3 == "arp" or (r.l3 is None and r.proto is None and r.dst is None):
            proto = {0x0800: "IPv4", 0x86DD: "IPv6", 0x0806: "ARP"}.get(r.ethertype or -1, "")
            if r.l3 != "arp" and r.mac_src is None and r.mac_dst is None and not r.redacted:
                # A trace walk whose packet line the paste cut off: nothing about the packet is printed.
                return f"{proto} packet whose headers the trace does not show".lstrip()
            return f"{proto} frame {shown(r, 'mac_src')} → {shown(r, 'mac_dst')}".lstrip()
        first = r  # an IP header whose source the paste redacted: still a packet, shown as such
    else:
        # The richest record: an nf_log line has ICMP ids and TCP flags; ebtables --log-ip lines do not.
        first = next((ev.record for ev in track.events if ev.record.src and ev.record.fmt == "nflog"), l3.record)
    src, dst = shown(first, "src"), shown(first, "dst")
    p = first.proto or ("IPv6 packet" if first.l3 == "ipv6" else "IPv4 packet")
    if p in ICMP_PROTOS:
        # xtables-monitor 1.8.9 prints no ICMP type: unknown, never "type None".
        kind = (
            "message (type not printed)"
            if first.icmp_type is None
            else ICMP_TYPE_NAMES.get((p, first.icmp_type), f"type {first.icmp_type}")
        )
        ids = f" (id {first.icmp_id} seq {first.icmp_seq})" if first.icmp_id is not None else ""
        about = ""
        if first.embedded and first.embedded[0]:
            e_src, e_dst, e_proto, e_sport, e_dport = first.embedded
            quoted = f"{e_src}:{e_sport} → {e_dst}:{e_dport}" if e_sport is not None else f"{e_src} → {e_dst}"
            about = f", code {first.icmp_code}, about {e_proto} {quoted}"
        return f"{p} {kind} {src} → {dst}{ids}{about}"
    if first.sport is not None or first.dport is not None:
        flags = f" [{' '.join(first.tcp_flags)}]" if first.tcp_flags else ""
        return f"{p} {src}:{shown(first, 'sport')} → {dst}:{shown(first, 'dport')}{flags}"
    return f"{p} {src} → {dst}"


# 255.255.255.255, the limited broadcast: the input route lookup makes it RTN_BROADCAST before any
# table is consulted (ip_route_input_slow(), net/ipv4/route.c: ipv4_is_lbcast(daddr)).
LIMITED_BROADCAST = "255.255.255.255"


def _is_ipv6(addr: str | None) -> bool:
    try:
        return addr is not None and ipaddress.ip_address(addr).version == 6
    except ValueError:
        return False


def _taken_in_as(topo: Topology, dst: str | None) -> str:
    """What a packet delivered at IP INPUT was addressed to, as far as the evidence goes."""
    if is_multicast(dst):
        # A group address is not a local address: the host takes it in as a member of the group
        # (ip_route_input_mc(), net/ipv4/route.c; ip6_mc_input(), net/ipv6/ip6_input.c).
        return "a multicast group the host receives"
    if dst == LIMITED_BROADCAST:
        return "the limited broadcast address, which every host on the link receives"
    broadcast = topo.broadcast_on(dst or "")
    if broadcast is not None:
        return broadcast
    local = topo.local_addrs()
    if local is not None and dst in local:
        return "a local address"
    if _is_ipv6(dst):
        # IPv6 has no broadcast (RFC 4291 2.0): a unicast destination delivered at INPUT had a local
        # route (ip6_route_input() -> ip6_input(), the host's address or anycast address).
        return "an address of the host (IPv6 has no broadcast addresses)" + (
            "" if local is None else ", though its address snapshot does not list it (one added after the snapshot)"
        )
    # Delivery at INPUT proves the route lookup said "local" (RTN_LOCAL) or "broadcast" (RTN_BROADCAST):
    # the subnet broadcast routes are those of the host's addresses (fib_add_ifaddr()), so an address
    # of a connected network that is not its broadcast address was local.
    route = topo.route_for(dst or "")
    if local is None and route is not None and route.gateway is None:
        try:
            net = ipaddress.ip_network(route.dst, strict=False)
        except ValueError:
            net = None
        if net is not None and net.version == 4 and net.prefixlen < 31 and str(net.broadcast_address) != dst:
            return f"a local address (not the broadcast address of {route.dev}'s connected network {net})"
    if local is None:
        return "a local or a broadcast address of the host (an ip addr snapshot would say which)"
    return (
        "an address the host took in that its address snapshot does not list (one added after the "
        "snapshot, or a broadcast address)"
    )


# Why skb->mark differs between two lines of one packet: the kernel keeps it with the skb from hook
# to hook; a rule between the two set it (xt_MARK.c mark_tg, xt_connmark.c --restore-mark, nft
# meta mark set: nft_meta.c nft_meta_set_eval, or TPROXY --tproxy-mark), or an IPsec policy's output
# mark (xfrm_output.c). The lines do not say which.
MARK_CHANGED = (
    "Mark {before:#x} → {after:#x} since the previous hop: something between the two set skb->mark, "
    "usually a rule (iptables MARK, CONNMARK --restore-mark or TPROXY; nft meta mark set); "
    "which one is in the rules the packet met between the two lines (a rule trace, or the ruleset snapshot)."
)


def _hop_text(
    ev: Event,
    stage: str,
    prev: Event | None,
    cls: str,
    topo: Topology,
    forward: bool,
    prev_hop: tuple[Event, str] | None,
    verdict_rests: bool = False,
) -> list[str]:
    r = ev.record
    out: list[str] = []
    if not ev.hook.placed:
        out.append(f"Logged {placement(ev)}.")
    elif (
        prev_hop is not None
        and prev_hop[1] == stage
        and prev_hop[0].hook.family == ev.hook.family
        and prev_hop[0].hook.table == ev.hook.table
        and prev_hop[0].hook.chain == ev.hook.chain
    ):
        out.append(
            "Same hook and table, another LOG rule: a LOG rule lets the packet go on to the next rule "
            "(xt_LOG.c returns XT_CONTINUE), so a later LOG rule can log it again."
            if ev.hook.table is not None
            # Neither line names its table (a kernel LOG line does not print it): one chain's two
            # LOG rules, or two tables' at this hook, which run in priority order.
            else "Same hook, another LOG rule (the lines name no table: the same chain or a later "
            "table at this hook): a LOG rule lets the packet go on (xt_LOG.c returns XT_CONTINUE), "
            "so a later LOG rule can log it again."
        )
    elif prev_hop is not None and prev_hop[1] == stage and prev_hop[0].hook.family == ev.hook.family:
        p_ev = prev_hop[0]
        if p_ev.hook.table == ev.hook.table:
            # nft: several base chains of one table at one hook, run in priority order by one
            # nf_hook_slow() call (net/netfilter/core.c)
            out.append(
                f"Same hook, next base chain of {ev.hook.table}: {ev.hook.chain} runs after "
                f"{p_ev.hook.chain} (base chains at one hook run in priority order)."
            )
        else:
            out.append(
                f"Same hook, next table: {ev.hook.table or '?'} runs after {p_ev.hook.table or '?'} "
                "(tables at one hook run in priority order)."
            )
    elif stage == "br-pre":
        if ev.hook.table == "broute":
            out.append(
                f"The frame arrives on bridge port {_port(topo, r.in_dev)}, {_named(topo, r.mac_src)} → "
                f"{_named(topo, r.mac_dst)}; the broute table decides first whether it is bridged or "
                "handed to routing (ebtables(8) BROUTING)."
            )
        else:
            out.append(
                f"Bridge PREROUTING: frame in on port {_port(topo, r.in_dev)}, "
                f"{_named(topo, r.mac_src)} → {_named(topo, r.mac_dst)}."
            )
    elif stage == "ip-pre" and r.physin:
        key = brnf_key(ev.hook.family)
        val = topo.brnf(ev.hook.family)
        seen = f" (net.bridge.{key} = {val} in {topo.sources.get('sysctl', 'the sysctl snapshot')})" if val else ""
        out.append(
            f"{key}{seen} hands the bridged frame to the IP hooks: IN is the bridge "
            f"{r.in_dev}, PHYSIN the port {r.physin}. Routing has not happened yet, so OUT is empty."
        )
    elif stage in ("ip-pre", "ip-pre-up"):
        out.append(f"Received on {r.in_dev}; routing has not happened yet, so OUT is empty.")
    elif stage == "br-in":
        owner = topo.mac_owner(r.mac_dst or "")
        why = f"is {owner}'s own MAC" if owner else "is the bridge's own address"
        out.append(
            f"The destination MAC {r.mac_dst} {why}, so the bridge passes the frame up to the host "
            "(br_handle_frame_finish: local destination → br_pass_frame_up) instead of forwarding it."
        )
    elif stage == "br-fwd":
        if (
            prev_hop is not None
            and prev_hop[1] == "ip-pre"
            and r.mac_dst
            and prev_hop[0].record.mac_dst
            and r.mac_dst != prev_hop[0].record.mac_dst
        ):
            out.append(
                f"Bridged again after the destination rewrite at IP PREROUTING: the new destination is "
                f"reached through the same bridge, so br_netfilter does not route the frame but writes the "
                f"new destination MAC ({prev_hop[0].record.mac_dst} → {r.mac_dst}) and bridges it "
                "(br_nf_pre_routing_finish → bridged_dnat, net/bridge/br_netfilter_hooks.c)."
            )
        where = topo.fdb.get(r.mac_dst or "")
        group = bool(r.mac_dst) and int((r.mac_dst or "0")[:2], 16) & 1  # I/G bit: multicast/broadcast
        if r.mac_dst is None:  # not logged (an nf_log ARP line prints only the ARP payload's MACs)
            fact = "it is at the bridge FORWARD hook (the line logs no destination MAC: learned or flooded is unknown)"
        elif where:
            fact = f"{r.mac_dst} is learned on port {where[0]} (bridge fdb)"
        elif group:
            fact = f"{r.mac_dst} is a group address, so the bridge floods it to every port (br_flood)"
        elif topo.fdb:
            fact = (
                f"{shown(r, 'mac_dst')} is not in the FDB snapshot, so the bridge floods the frame to all ports "
                "(br_handle_frame_finish: unknown unicast → br_flood)"
            )
        else:
            fact = f"{shown(r, 'mac_dst')} is not the bridge's own MAC"
        out.append(
            f"Bridged: {fact}, so the bridge forwards the frame from {r.in_dev} to {r.out_dev}; "
            "no routing, no TTL change."
        )
    elif stage == "ip-fwd-br":
        out.append(
            f"The IP FORWARD hooks for a bridged frame: IN and OUT are both the bridge {r.in_dev}; "
            f"PHYSIN {r.physin} and PHYSOUT {r.physout} are the ports."
        )
    elif stage == "ip-fwd":
        route = topo.route_for(r.dst or "")
        via = ""
        if route:
            via = f" via gateway {route.gateway}" if route.gateway else " (directly connected)"
            via = f" by route {route.dst}{via} on {route.dev}"
        out.append(f"Routed: the routing decision sends it from {r.in_dev} to {r.out_dev}{via}.")
    elif stage in ("ip-post", "ip-post-br"):
        if stage == "ip-post-br":
            out.append(
                f"Bridge POSTROUTING calls the IP POSTROUTING hooks; OUT is the bridge {r.out_dev}, "
                f"PHYSOUT the port {r.physout}. IN is empty at POSTROUTING."
            )
        elif r.in_dev:
            # ip_output() passes the input device to POSTROUTING since Linux 5.5 (prefix.forward_only_reason).
            out.append(
                f"Leaving through {r.out_dev}; IN={r.in_dev} is the device it came in on, which ip_output() "
                "passes to POSTROUTING since Linux 5.5 (net/ipv4/ip_output.c)."
            )
        else:
            out.append(
                f"Leaving through {r.out_dev}; the kernel passes no input device at POSTROUTING, so IN is empty."
            )
    elif stage == "ip-out":
        route = topo.route_for(r.dst or "")
        via = f" (route {route.dst} on {route.dev})" if route else ""
        out.append(f"Generated by the host itself: no IN and no MAC yet; the route lookup chose OUT={r.out_dev}{via}.")
    elif (
        stage in ("ip-pre", "ip-in")
        and r.in_dev == "lo"
        and prev_hop is not None
        and prev_hop[0].record.out_dev == "lo"
    ):
        out.append(
            "Looped back: loopback_xmit() hands the packet it sent on lo to the stack again "
            "(__netif_rx, drivers/net/loopback.c), so it comes in with IN=lo."
        )
    elif stage == "ip-in":
        dst = f"{r.dst} is" if r.dst else "the destination (not readable in the line) is"
        what = _taken_in_as(topo, r.dst)
        out.append(f"Delivered up the host's stack: {dst} {what}, so the IP layer does not forward it.")
    elif stage == "br-out":
        who = "The routed packet leaves" if cls == "routed" else "The host sends"
        out.append(
            f"{who} through the bridge: bridge OUTPUT sees the frame the host built "
            f"({_named(topo, r.mac_src)} → {_named(topo, r.mac_dst)}) leaving by port "
            f"{_port(topo, r.out_dev)}."
        )
    elif stage in ("br-post", "br-post-out"):
        out.append(
            f"Bridge POSTROUTING: the frame leaves by port {_port(topo, r.out_dev)}; the bridge clears IN at this hook."
        )
    if stage in ("ip-fwd", "ip-fwd-br") and ev.hook.how.startswith(HOW_IN_OUT):
        out[:0] = [x for x in (forward_only_reason(r),) if x]  # why FORWARD and not POSTROUTING
    if prev is not None and prev.record.src and r.src:
        p = prev.record
        if p.src != r.src:
            what = "source NAT" if forward else "conntrack reversed the request's destination NAT"
            out.append(f"Source changed {p.src} → {r.src} since the previous hop: {what}.")
        # Both sides must be known: a redacted or unprinted field is unknown, not changed.
        if p.dst is not None and r.dst is not None and p.dst != r.dst and forward:
            out.append(
                f"Destination changed {p.dst} → {r.dst} since the previous hop: "
                "destination NAT, before the routing decision."
            )
        elif p.dst is not None and r.dst is not None and p.dst != r.dst:
            out.append(
                f"Destination changed {p.dst} → {r.dst} since the previous hop: conntrack reversed "
                "the request's source NAT, before the routing decision, so the route to the "
                "original sender is used."
            )
        if p.ttl is not None and r.ttl is not None and r.ttl == p.ttl - 1:
            out.append(
                f"TTL {p.ttl} → {r.ttl}: the packet was routed (ip_forward() decrements the TTL, "
                "net/ipv4/ip_forward.c)."
            )
        if p.mark != r.mark:  # the shown marks differ only where the fields do (or one is unread)
            before, after = shown_mark(p), shown_mark(r)
            if before is not None and after is not None and before != after:
                out.append(MARK_CHANGED.format(before=before, after=after))
    if ev.hook.action is not None and ev.hook.action is not Action.LOG:
        out.append(f"The {prefix_evidence(ev)}: {action_says(ev, ev.hook.action, verdict_rests)}")
    if ev.hook.how.endswith(HOW_EBT_LAYOUT) and (prev_hop is None or not prev_hop[0].hook.how.endswith(HOW_EBT_LAYOUT)):
        out.append(EBT_LOG_WRITER_NOTE)  # why the hop names ebtables, once per run of such hops
    elif r.fmt == "nflog" and ev.hook.tool is None and (prev is None or prev.hook.tool not in (None, EBT_LOG_WRITER)):
        # Once per run of hops without a tool; an ebt_log hop between them (ebtables) does not end the run.
        out.append(_UNKNOWN_TOOL.format(family=family_name(ev.hook.family)))
    if r.logger:
        out.extend(filter(None, [logger_note(r)]))
    if r.truncated:
        out.append(
            cut_note(r) if r.missing else "The record is cut off (truncated); only the fields before the cut are used."
        )
    for i, hit in enumerate(ev.rules):
        chain_at = f"{hit.table} {hit.chain}"
        if hit.kind is HitKind.POLICY:
            policy = f" {hit.verdict.upper()}" if hit.verdict else ""
            out.append(f"Rule trace: {chain_at} ended in its policy{policy}.")
        elif hit.kind is HitKind.RETURN:
            # nf_tables_core.c nft_do_chain traces the end of every chain's rules as a return
            # (NFT_TRACETYPE_RETURN, "verdict continue"); with the jump stack empty, i.e. in the base
            # chain, its policy is traced next. So a return followed by its own chain's policy is the
            # base chain running out of rules: there is no caller to return to.
            later = ev.rules[i + 1 :]
            if any(h.kind is HitKind.POLICY and h.chain == hit.chain and h.table == hit.table for h in later):
                out.append(f"Rule trace: {chain_at} reached the end of its rules with no verdict; its policy applies.")
            else:
                out.append(f"Rule trace: {chain_at} returned to its caller.")
        else:
            num = f" {hit.handle}" if hit.handle else ""
            in_snapshot = f" ({hit.snapshot_ref})" if hit.snapshot_ref else ""
            what = f" → {hit.verdict}: {hit.text}" if hit.text else " matched (no snapshot says which rule)"
            out.append(f"Rule trace: {chain_at} rule{num}{what}{in_snapshot}")
    return out


# Said once per run of hops whose tool is unknown (HookRef.tool): nft_log.c's nft_log_eval() and
# xt_LOG.c's log_tg() both call nf_log_packet(), and nf_log_syslog.c prints the same text for either.
_UNKNOWN_TOOL = (
    "The line does not tell iptables from nftables: an iptables LOG rule (xt_LOG.c) and an nft log "
    "statement (nft_log.c) print the same text (nf_log_syslog.c), so the hop names the {family} hook, "
    "not a tool; a ruleset snapshot (iptables-save, nft list ruleset) holding this prefix's LOG rule at one "
    "place would tell."
)


# --- NAT ------------------------------------------------------------------------------------------


def _nat_type(after: Endpoint, out_dev: str, topo: Topology) -> tuple[str, str]:
    how = topo.addr_on(after.addr, out_dev) if out_dev else None
    if how:
        return "MASQUERADE", f"{how}: the address MASQUERADE takes from the outgoing interface"
    return "SNAT", "no snapshot ties the new address to the outgoing interface, so SNAT or MASQUERADE"


def _direct_nats(
    track: Track, forward: bool, flow_type: dict[str, str], topo: Topology, first: bool = True
) -> list[Nat]:
    out: list[Nat] = []
    by = NatBy.RULE if forward and first else NatBy.CONNTRACK
    prev: Event | None = None
    # prev's endpoints as (address, port) values: an Endpoint is made only for a rewrite's Nat (a
    # dataclass's constructor is interpreted, and every hop of every packet is compared).
    ps_addr = pd_addr = ""
    ps_port: int | None = None
    pd_port: int | None = None
    for ev, st in zip(track.events, track.stages, strict=True):
        r = ev.record
        if r.src is None:
            continue
        rs_addr, rd_addr = r.src, r.dst or ""
        rs_port, rd_port = flow_ports(ev)
        if prev is not None:
            fam = ev.hook.family if ev.hook.family != BRIDGE else (r.l3 or "ipv4")
            # differs() of the two views of each endpoint, on their values
            if pd_addr != rd_addr or (pd_port is not None and rd_port is not None and pd_port != rd_port):
                pd, rd = Endpoint(pd_addr, pd_port), Endpoint(rd_addr, rd_port)
                hook = "OUTPUT" if st in ("ip-out",) or track.stages[0] == "ip-out" else "PREROUTING"
                if forward:
                    out.append(
                        Nat(
                            "DNAT",
                            "original",
                            f"{fam} nat {hook}",
                            "destination",
                            pd,
                            rd,
                            f"the destination differs between {prev.hook.label} and {ev.hook.label}"
                            + ("" if first else "; conntrack applies the mapping the first packet got"),
                            by,
                        )
                    )
                else:
                    out.append(
                        Nat(
                            flow_type.get("source", "SNAT"),
                            "reply",
                            f"{fam} nat {hook}",
                            "destination",
                            pd,
                            rd,
                            "conntrack reverses the original direction's source NAT on the reply, "
                            "before the routing decision (nf_nat_inet_fn, net/netfilter/nf_nat_core.c)",
                            NatBy.CONNTRACK,
                        )
                    )
            if ps_addr != rs_addr or (ps_port is not None and rs_port is not None and ps_port != rs_port):
                ps, rs = Endpoint(ps_addr, ps_port), Endpoint(rs_addr, rs_port)
                hook = "INPUT" if st == "ip-in" else "POSTROUTING"
                if forward:
                    typ, why = _nat_type(rs, r.out_dev, topo)
                    out.append(Nat(typ, "original", f"{fam} nat {hook}", "source", ps, rs, why, by))
                else:
                    out.append(
                        Nat(
                            "DNAT",
                            "reply",
                            f"{fam} nat {hook}",
                            "source",
                            ps,
                            rs,
                            "conntrack reverses the original direction's destination NAT on the reply",
                            NatBy.CONNTRACK,
                        )
                    )
        prev, ps_addr, ps_port, pd_addr, pd_port = ev, rs_addr, rs_port, rd_addr, rd_port
    return out


def _inferred_nats(track: Track, flow: Flow, topo: Topology, first: bool = True) -> list[Nat]:
    """Find a request's NAT from its reply: the rewrite at nat POSTROUTING is after the last LOG."""
    vs = views(track)
    if not vs:
        return []
    last = vs[-1]
    out: list[Nat] = []
    by = NatBy.RULE if first else NatBy.CONNTRACK
    for other, fwd in flow.members:
        if fwd:
            continue
        ovs = views(other)
        if not ovs:
            continue
        proto, r_src, r_dst = ovs[0]  # the reply as it arrived, before conntrack reversed anything
        fam = _family(track)
        # An ICMP echo id keys the mapping like a port but is not one: name the address only.
        shown_ep = (lambda e: e.addr) if proto.startswith("ICMP") else str
        if differs(r_dst, last[1]) and r_dst.addr and last[1].addr:
            typ, why = _nat_type(r_dst, track.ip_out(), topo)
            out.append(
                Nat(
                    typ,
                    "original",
                    f"{fam} nat POSTROUTING",
                    "source",
                    last[1],
                    r_dst,
                    f"its reply came back to {shown_ep(r_dst)}; {why}",
                    by,
                )
            )
        if differs(r_src, last[2]) and r_src.addr and last[2].addr:
            out.append(
                Nat(
                    "DNAT",
                    "original",
                    f"{fam} nat PREROUTING",
                    "destination",
                    last[2],
                    r_src,
                    f"its reply came back from {shown_ep(r_src)}",
                    by,
                )
            )
        break
    return out


def _reply_reversals(track: Track, flow: Flow, seen: list[Nat], flow_types: dict[str, str]) -> list[Nat]:
    """Infer conntrack's reversal on a reply when it happened outside the logged hooks.

    A DNAT'd connection's reply gets its source rewritten back where source NAT is applied: nat
    POSTROUTING, or nat INPUT for a reply delivered to a local socket, which never reaches POSTROUTING
    (HOOK2MANIP in include/net/netfilter/nf_nat.h: LOCAL_IN and POST_ROUTING manipulate the source);
    a masqueraded one's reply gets its destination rewritten at nat PREROUTING (nf_nat_ipv4_ops,
    net/netfilter/nf_nat_proto.c).
    """
    vs = views(track)
    req = next((t for t, fwd in flow.members if fwd), None)
    if not vs or req is None:
        return []
    rvs = views(req)
    if not rvs:
        return []
    _, o_src, o_dst = rvs[0]  # the request as the client sent it
    _, last_src, last_dst = vs[-1]
    fam = _family(track)
    out: list[Nat] = []
    if differs(last_src, o_dst) and not any(n.field == "source" for n in seen):
        out.append(
            Nat(
                flow_types.get("destination", "DNAT"),
                "reply",
                f"{fam} nat {'INPUT' if 'ip-in' in track.stages else 'POSTROUTING'}",
                "source",
                last_src,
                o_dst,
                f"the client sent its request to {o_dst}, so conntrack rewrites the "
                "reply's source back to it after the last logged hook",
                NatBy.CONNTRACK,
            )
        )
    if differs(last_dst, o_src) and not any(n.field == "destination" for n in seen):
        out.append(
            Nat(
                flow_types.get("source", "SNAT"),
                "reply",
                f"{fam} nat PREROUTING",
                "destination",
                last_dst,
                o_src,
                f"the request came from {o_src}, so conntrack rewrites the reply's destination back to it",
                NatBy.CONNTRACK,
            )
        )
    return out


# --- skipped hooks and verdict --------------------------------------------------------------------


def _skip_reason(
    slot: Slot,
    traced: bool,
    first_in_flow: bool,
    facts: CaseFacts,
    topo: Topology,
    via_bridge: bool,
    related: bool = False,
) -> tuple[str, str]:
    """Why a hook on the path did not log the packet; ``traced``: a rule-tracing source saw it."""
    if slot.family != BRIDGE and topo.brnf_on(slot.family) is False and via_bridge and slot.stage in BRNF_STAGES:
        return "bridge-nf-off", (
            f"net.bridge.{brnf_key(slot.family)} = 0: the bridge does not call the IP "
            "hooks for bridged frames (br_nf_pre_routing returns early, "
            "net/bridge/br_netfilter_hooks.c)"
        )
    if slot.table == "nat" and slot.family != BRIDGE and related:
        return "conntrack", (
            "an ICMP error is RELATED to an existing connection: nf_nat_inet_fn translates it "
            "with nf_nat_icmp_reply_translation and does not consult the nat table "
            "(net/netfilter/nf_nat_core.c)"
        )
    if slot.table == "nat" and slot.family != BRIDGE and not first_in_flow:
        return "conntrack", (
            "only the first packet of a connection traverses the nat table; conntrack "
            "applies the stored mapping to every later packet and to replies "
            "(nf_nat_inet_fn, net/netfilter/nf_nat_core.c)"
        )
    if not facts.any_seen(slot) and traced and slot.table == "nat" and slot.family != BRIDGE:
        # The packet may be its connection's first in the trace without being its connection's first
        # (a ping's later echo requests): then nf_nat_inet_fn does not run the nat chains for it.
        return "no-rule", (
            "no trace line from this hook anywhere in the trace: the nat table has no chain at this "
            "hook, or the packet is not its connection's first (only the first traverses the nat "
            "table, nf_nat_inet_fn, net/netfilter/nf_nat_core.c); a conntrack -L snapshot would tell"
        )
    if not facts.any_seen(slot) and traced:
        return "no-rule", (
            "no trace line from this hook anywhere in the trace: the table has no chain at "
            "this hook, so rule tracing has nothing to report there"
        )
    if not facts.any_seen(slot):
        return "no-rule", (
            "no line from this hook anywhere in the trace: there is no LOG rule there, or an "
            "earlier rule in the chain (an ACCEPT, Docker's MASQUERADE) ended the traversal first"
        )
    # A pasted trace is often filtered (grep -v, cut) or cut short: a line missing from the input is
    # not proof that the kernel did not write it.
    return "not-logged", (
        "other packets were logged here but not this one: an earlier rule in the chain "
        "ended its traversal before the LOG rule, the LOG rule's match excluded it, or its line is "
        "not in the input (a paste cut or filtered)"
    )


def _next_hooks(slots: list[Slot]) -> str:
    return ", ".join(
        f"{'ebtables' if s.family == BRIDGE else 'iptables'} {s.table} {STAGES[s.stage].hook}" for s in slots[:3]
    )


def _verdict(
    track: Track,
    hops: list[tuple[Event, str]],
    topo: Topology,
    missing: list[Slot],
    final: bool = True,
    rest: list[Slot] | None = None,
) -> Verdict:
    """The structural verdict: the exit or delivery the trace shows, else where it was last seen.
    ``hops``: the track's (event, stage) pairs, which its caller has made."""
    last = track.last
    where = f"{last.hook.label} ({STAGES[track.stages[-1]].title})" if last.hook.placed else last.hook.label
    if not missing and not final and rest:
        return last_seen(
            where,
            last,
            f"Last seen at {where}. No packet in this trace was logged after that point "
            f"on its path ({_next_hooks(rest)}), so the lines cannot tell whether it went on or was "
            "dropped there.",
        )
    if missing:
        return last_seen(
            where,
            last,
            f"Last seen at {where}. The next hooks with LOG rules on its path "
            f"({_next_hooks(missing)}) never logged it: it was probably dropped at {last.hook.label} "
            "or just after.",
        )
    return exit_verdict(hops, topo, where)


# --- the whole case -------------------------------------------------------------------------------


class _Place:
    """Where a packet stands in its conversation. A plain class, not a dataclass: compiled, its
    constructor is native, where a dataclass's generated __init__ is interpreted (one per packet)."""

    __slots__ = ("flow", "forward", "first", "related")

    def __init__(self, flow: Flow | None, forward: bool, first: bool, related: bool) -> None:
        self.flow = flow
        self.forward = forward  # original direction of the conntrack entry
        self.first = first  # the connection's first packet: the one the nat table sees
        self.related = related  # an ICMP error about the connection

    @property
    def role(self) -> str:
        return "related" if self.related else "request" if self.forward else "reply"


def _role(t: Track, place: _Place, topo: Topology) -> str:
    """A packet's role: its conversation's direction, else what its own header proves (a SYN or an
    echo request opens, a SYN-ACK or an echo reply answers, a trace's conntrack direction), else
    unknown. A packet outside any conversation (its addresses redacted) is not called a request
    for want of a reply: an ACK or a UDP datagram alone does not say which side opened. Nor is a
    conversation's first packet seen, when nothing proves its direction (_opener_unseen): a trace can
    start in the middle of a flow."""
    if ct_direction(t) is None and place.flow is not None and not place.related and _opener_unseen(place.flow, topo):
        return "unknown"
    if place.flow is not None or ct_direction(t) is not None:
        return place.role
    if opens_by_itself(t):
        return "request"
    return "reply" if is_reply_by_itself(t) else "unknown"


def _opener_unseen(flow: Flow, topo: Topology) -> bool:
    """Whether a conversation shows nothing that proves which way its conntrack entry was opened (a
    SYN, a SYN-ACK, an echo request or reply, a trace's conntrack direction). A conversation whose
    first packet was filed as a reply had it proved (correlate.Conversations.is_reply: by itself or by
    a conntrack snapshot's entry), and one reopened for a closed connection's late packets has that
    connection's.

    Conntrack makes the first packet it sees of a flow the original direction: any UDP datagram
    (nf_conntrack_proto_udp.c has no "new" check), any packet of a protocol it tracks generically, and
    for TCP a mid-stream segment too (nf_conntrack_proto_tcp.c tcp_new(), nf_conntrack_tcp_loose). A
    trace may start after that packet, so the first one it shows is the original only with evidence:
    a TCP SYN (only a SYN opens, RFC 9293 3.5) and, for other protocols, also the nat table or a
    matched "ct state new" rule seeing it (_new_entry), a conntrack snapshot's original tuple, a
    client's port to a well-known one (_to_server_port), or a group destination (_to_group)."""
    if flow.reopened or not flow.members or not flow.members[0][1]:
        return False
    members = [t for t, _ in flow.members]
    if any(opens_by_itself(t) or is_reply_by_itself(t) or ct_direction(t) is not None for t in members):
        return False
    if flow.original[0] == "TCP":
        return True
    first = members[0]
    shown = _new_entry(first, topo) or original_by_conntrack(first, topo)
    return not (shown or _to_server_port(first) or _to_group(first))


# A matched rule that accepts only packets of a new conntrack entry: nft "ct state new", iptables
# "-m conntrack --ctstate NEW" or "-m state --state NEW" (not negated, not a set with other states).
_CT_NEW = re.compile(r"(?<!!\s)(?:\bct state new|--ctstate NEW|--state NEW)(?![,\w])")


def _new_entry(t: Track, topo: Topology) -> bool:
    """Whether the packet is its conntrack entry's first: the nat table's chains see only that packet
    (nf_nat_inet_fn() runs them only while the entry has no NAT set up, net/netfilter/nf_nat_core.c),
    or a rule that matches only state NEW matched it (nf_conntrack_core.c: IP_CT_NEW until a reply).

    Only an IP hook's NAT table the input proves counts (attribution.is_nat_table: iptables' table
    named nat, an nft chain the snapshot types nat, never an nft table by its name): a table read off a
    log prefix's words ("nat", prefix.HOW_WORDS) is the rule author's word, not a fact, and ebtables'
    nat table is no conntrack NAT (it sees every frame, net/bridge/netfilter/ebtable_nat.c)."""
    for ev in t.events:
        hook = ev.hook
        if hook.family != BRIDGE and _in_nat_table(ev, topo):
            return True
        if any(h.kind is HitKind.RULE and _CT_NEW.search(h.text) for h in ev.rules):
            return True
    return False


def _in_nat_table(ev: Event, topo: Topology) -> bool:
    """Whether an IP hook's line, or a rule it traced, shows a table attribution.is_nat_table proves."""
    hook = ev.hook
    tool, fam, base = hook.tool, hook.family, hook.base_chain
    if not hook.how.startswith(HOW_WORDS) and is_nat_table(tool, fam, hook.table, (base,), topo):
        return True
    return any(is_nat_table(tool, fam, h.table, (h.chain, base), topo) for h in ev.rules)


EPHEMERAL_FROM: Final = 32768  # the start of net.ipv4.ip_local_port_range's default (ip-sysctl.rst)


def _to_server_port(t: Track) -> bool:
    """A datagram from an ephemeral port to a well-known one (< 1024) is a client's to a service:
    servers listen on the well-known port, clients send from an ephemeral one. Only Linux's ephemeral
    range counts (net.ipv4.ip_local_port_range, 32768-60999 by default; ip-sysctl.rst): a server port
    above 1023 answering a client that binds a reserved one (NFS over UDP from port 800 to 2049) is
    not a request."""
    r = t.events[0].record
    return r.sport is not None and r.dport is not None and r.dport < 1024 and r.sport >= EPHEMERAL_FROM


# ICMP types conntrack opens an entry for are the queries (nf_conntrack_proto_icmp.c icmp_new(),
# nf_conntrack_proto_icmpv6.c icmpv6_new()), and the echo request among them is known by itself.
_QUERY_ONLY = ICMP_PROTOS


def _to_group(t: Track) -> bool:
    """A packet to a multicast group or the limited broadcast is its conntrack entry's original
    direction: the entry's reply tuple would have that group as its source, and no host sends from a
    group address (RFC 1112 4, RFC 4291 2.7), so a trace that starts mid-flow cannot have missed the
    opener. Not for ICMP, whose other types open no entry at all."""
    r = t.events[0].record
    return r.proto not in _QUERY_ONLY and r.proto is not None and (r.dst == "255.255.255.255" or is_multicast(r.dst))


def original_by_conntrack(t: Track, topo: Topology) -> bool:
    """Whether the conntrack snapshot knows this packet as the original direction of an entry."""
    return _conntrack_side(t, topo, original=True)


def _ended(t: Track) -> bool:
    """Whether a packet's own lines say it was dropped: a drop prefix or a decisive traced rule."""
    return any(ev.hook.action in (Action.DROP, Action.REJECT) or any(h.decisive for h in ev.rules) for ev in t.events)


def _confirmed_before(t: Track, flow: Flow, topo: Topology) -> bool:
    """Whether the connection was confirmed before this packet, so conntrack (not the nat table) maps it.

    nf_conntrack_confirm() confirms an entry when its first packet leaves POSTROUTING or INPUT
    (net/netfilter/nf_conntrack_core.c); an unconfirmed entry dies with a dropped packet, so a SYN
    retransmitted after a dropped SYN is NEW again and traverses the nat table. Evidence of
    confirmation: a reply seen before it, an earlier request seen leaving, or a conntrack entry while
    no earlier request's own lines say it was dropped. An earlier request seen at INPUT is not: the
    confirmation runs after every LOCAL_IN hook (ipv4_confirm at NF_IP_PRI_CONNTRACK_CONFIRM), and a
    LOG line there does not show the packet got that far (ufw drops it by INPUT's policy after).
    """
    earlier = [m for m, fwd in flow.members if m.index < t.index and fwd]
    if any(m.index < t.index and not fwd for m, fwd in flow.members):
        return True
    if any(m.stages[-1] in EXIT_STAGES and m.last.hook.placed for m in earlier):
        return True
    ct = conntrack_entry(flow.original[1], flow.original[2], topo)
    return ct is not None and not any(_ended(m) for m in earlier)


def reply_by_conntrack(t: Track, topo: Topology) -> bool:
    """Whether the conntrack snapshot knows this packet as the reply direction of a connection.

    A packet that arrives on the uplink for the masquerading address matches the reply tuple of the
    connection its request opened (conntrack -L prints the reply tuple second), not an original one.
    """
    return _conntrack_side(t, topo, original=False)


def _conntrack_side(t: Track, topo: Topology, original: bool) -> bool:
    vs = views(t)
    if not vs:
        return False
    _, src, dst = vs[0]

    def matches(tup: CtTuple, a: Endpoint, b: Endpoint) -> bool:
        if tup.src != a.addr or tup.dst != b.addr:
            return False
        ports = ((tup.sport or tup.id, a.port), (tup.dport or tup.id, b.port))
        return all(x is None or y is None or x == str(y) for x, y in ports)

    if original:
        return any(matches(e.original, src, dst) and not matches(e.reply, src, dst) for _, e in topo.conntrack)
    return any(matches(e.reply, src, dst) and not matches(e.original, src, dst) for _, e in topo.conntrack)


def _place(t: Track, of_track: dict[int, Flow], topo: Topology) -> _Place:
    flow = of_track.get(t.index)
    if flow is None:
        return _Place(None, not is_reply_by_itself(t), True, False)
    role = flow.role[t.index]
    if role == "related":
        return _Place(flow, False, False, True)
    forward = role == "original"
    first = forward and (flow.members[0][0] is t or not _confirmed_before(t, flow, topo))
    return _Place(flow, forward, first, False)


def _skips_and_verdict(
    t: Track, place: _Place, cls: str, topo: Topology, facts: CaseFacts
) -> tuple[list[Skipped], Verdict]:
    """Compare the observed hooks with the path's template: what was skipped, and what became of it."""
    hops = list(zip(t.events, t.stages, strict=True))
    placed = all(ev.hook.placed for ev in t.events)
    # Without a known hook for every line the path's template is a guess: no hook is called skipped.
    slots = _slots(_template(t, cls, topo), _family(t), facts) if placed else []
    if t.l3() is None and any(ev.record.l3 == "arp" for ev in t.events):
        slots = [s for s in slots if s.family == BRIDGE]  # ARP never meets the IP hooks
    proto = _proto(t)
    observed = {(st, ev.hook.table) for ev, st in hops}
    last_idx = max((i for i, s in enumerate(slots) if (s.stage, s.table) in observed), default=-1)
    via_br = _entered_bridge(t)
    traced = any(e.hook.how in TRACED for e in t.events)
    skipped: list[Skipped] = []
    missing: list[Slot] = []
    # A line whose table is unknown (a kernel LOG line names none) may be any table's at its hook:
    # no table there is said to have been passed without a line (photon#1321 "JC (FORWARD):").
    untabled = {st for ev, st in hops if ev.hook.table is None}
    for i, s in enumerate(slots):
        if (s.stage, s.table) in observed or s.stage in untabled:
            continue
        reason, text = _skip_reason(s, traced, place.first, facts, topo, via_br, place.related)
        if i > last_idx and reason not in ("conntrack", "bridge-nf-off") and facts.instrumented(s, proto):
            missing.append(s)
        skipped.append(Skipped(s.stage, s.family, s.table, STAGES[s.stage].hook, reason, text))
    final = (
        not slots
        or t.stages[-1] == slots[-1].stage
        or all(
            k.reason in ("conntrack", "bridge-nf-off")
            for k in skipped
            if any(k.stage == s.stage and k.table == s.table for s in slots[last_idx + 1 :])
        )
    )
    new = place.first and place.forward
    by_prefix, note = prefix_verdict(hops)
    if by_prefix is not None and by_prefix.code in (VerdictCode.DROPPED_BY_RULE, VerdictCode.REJECTED):
        # The snapshot may name the drop the prefix announces (a rule, or the chain's policy).
        by_prefix = prefix_drop_by_snapshot(t.last, new, topo) or by_prefix
    verdict = traced_drop(hops) or by_prefix
    if verdict is None:
        verdict = _verdict(t, hops, topo, missing, final, slots[last_idx + 1 :] if last_idx >= 0 else [])
        at_input = verdict.code is VerdictCode.DELIVERED_LOCAL and t.stages[-1] == "ip-in"
        if (verdict.code is VerdictCode.LAST_SEEN or at_input) and t.last.hook.family != BRIDGE and placed:
            later = [(s.family, s.table, STAGES[s.stage].hook) for s in slots[last_idx + 1 :]]
            dropped, why = drop_rule(t.last, later, new, topo)
            verdict = dropped or verdict
            note = " ".join(x for x in (note, why) if x) or None
            if (
                at_input
                and dropped is None
                and (why is not None or topo.rulesets.get(t.last.hook.family) is None)
                and not any(e.hook.how in TRACED for e in t.events)
            ):
                # A LOG line at INPUT shows the packet reached the chain, not what its later rules
                # did; a reply from the host may still show it (explain_conversation).
                where = f"{t.last.hook.label} ({STAGES[t.stages[-1]].title})"
                verdict, note = input_not_shown(where, t.last, why, _role(t, place, topo) == "request"), None
            elif at_input and dropped is None and not any(e.hook.how in TRACED for e in t.events):
                # No line shows the rules after the LOG rule (it decides nothing, xt_LOG.c): the delivery
                # rests on the snapshot's evaluation of them, and says so (answer.inferred_from).
                verdict = replace(verdict, evidence=f"{verdict.evidence}; no later rule drops it, {SNAPSHOT_EVIDENCE}")
                passed = (
                    f"No line shows the rules after the LOG rule in {t.last.hook.label}: evaluating the packet "
                    "against the ruleset snapshot from there reaches no DROP or REJECT."
                )
                note = f"{note} {passed}" if note else passed
    if note:
        verdict = replace(verdict, explanation=f"{verdict.explanation} {note}")
    first_ip = next((e for e in t.events if e.record.src and e.hook.family != BRIDGE), None)
    if not traced:  # LOG-rule reasoning applies to LOG lines
        skipped = [refine_skip(k, first_ip, new, topo) for k in skipped]
    if verdict.code not in _PASSED:
        # After a drop only the hooks before the last hop are "skipped"; later ones were never reached.
        reached = {(s.stage, s.table) for s in slots[: last_idx + 1]}
        skipped = [k for k in skipped if (k.stage, k.table) in reached]
    return skipped, verdict


# Verdicts after which every hook of the path was passed.
_PASSED = frozenset({VerdictCode.DELIVERED_LOCAL, VerdictCode.DELIVERED_TO_PORT, VerdictCode.FORWARDED_OUT})


def _hops(t: Track, cls: str, forward: bool, topo: Topology) -> list[Hop]:
    hops = []
    prev: Event | None = None
    prev_hop: tuple[Event, str] | None = None
    rests = prefix_rests_on(t.events)  # the hop whose convention's words the verdict states
    for n, (ev, st) in enumerate(zip(t.events, t.stages, strict=True), start=1):
        ev = link_rules(ev, topo)
        outcome = trace_outcome(ev, n < len(t.events))
        text = _hop_text(ev, st, prev, cls, topo, forward, prev_hop, n - 1 == rests)
        hops.append(Hop(n, ev, st, tuple(text), outcome=outcome))
        prev_hop = (ev, st)
        if ev.record.src:
            prev = ev
    return hops


class FlowNat:
    """What a conversation's first packet taught about its NAT: types and the rules that made them."""

    def __init__(self) -> None:
        self.types: dict[tuple[int, str], str] = {}
        self.by_flow: dict[int, dict[str, str]] = {}  # the same types per flow: one lookup per packet
        self.rules: dict[tuple[int, str], tuple[str, LineRef | None]] = {}
        self.conntrack: dict[int, str | None] = {}  # one conntrack -L lookup per flow, not per packet
        self.unshown: dict[int, Nat] = {}  # a first packet's source NAT no line shows (unshown_source_nat)

    def set_type(self, flow: Flow, field: str, typ: str) -> None:
        self.types[(flow.index, field)] = typ
        self.by_flow.setdefault(flow.index, {})[field] = typ

    def types_of(self, flow: Flow | None) -> dict[str, str]:
        # Scanning self.types here made explaining O(packets x conversations).
        return {} if flow is None else dict(self.by_flow.get(flow.index, {}))

    def forget(self, flow: Flow) -> None:
        """Drop what a finished conversation taught: nothing later asks about it."""
        for field in ("source", "destination"):
            self.types.pop((flow.index, field), None)
            self.rules.pop((flow.index, field), None)
        self.by_flow.pop(flow.index, None)
        self.conntrack.pop(flow.index, None)
        self.unshown.pop(flow.index, None)

    def learn_first(self, flow: Flow, topo: Topology) -> None:
        """Learn the NAT types from the first request, so replies can name what they reverse."""
        first = next((t for t, fwd in flow.members if fwd), None)
        if first is not None:
            for nat in _direct_nats(first, True, {}, topo) + _inferred_nats(first, flow, topo):
                self.set_type(flow, nat.field, nat.type)


def _packet_nats(t: Track, place: _Place, topo: Topology, memo: FlowNat) -> list[Nat]:
    flow = place.flow
    ftypes = memo.types_of(flow)
    nats = _direct_nats(t, place.forward, ftypes, topo, place.first)
    if place.forward and flow is not None and not any(n.field == "source" for n in nats):
        nats += [n for n in _inferred_nats(t, flow, topo, place.first) if n.field == "source"]
    if not place.forward and flow is not None and not place.related:
        nats += _reply_reversals(t, flow, nats, ftypes)
    if place.forward:
        nats = attribute_nat(nats, list(zip(t.events, t.stages, strict=True)), place.first, topo)
        if flow is not None and not any(n.field == "source" for n in nats):
            nats += _unshown_source_nat(t, place.first, flow, topo, memo)
        if place.first and flow is not None:
            for nat in nats:  # the rule's own type (MASQUERADE vs SNAT) now that it is known
                memo.set_type(flow, nat.field, nat.type)
    if flow is None:
        return nats
    if flow.index not in memo.conntrack:
        memo.conntrack[flow.index] = conntrack_entry(flow.original[1], flow.original[2], topo)
    ct = memo.conntrack[flow.index]
    # The rule that made a mapping also explains its later uses and its reversal on replies.
    filled = []
    for nat in nats:
        key = (flow.index, nat.field if nat.direction == "original" else _REPLY_FIELD[nat.field])
        if nat.rule is not None and nat.by is NatBy.RULE:
            memo.rules[(flow.index, nat.field)] = (nat.rule, nat.rule_ref)
        rule, ref = memo.rules[key] if nat.rule is None and key in memo.rules else (nat.rule, nat.rule_ref)
        known = memo.types.get(key)
        typ = known if nat.by is NatBy.CONNTRACK and known and known != nat.type else nat.type
        conntrack = ct if ct else nat.conntrack
        if rule is nat.rule and ref is nat.rule_ref and typ is nat.type and conntrack is nat.conntrack:
            filled.append(nat)
        else:
            filled.append(_nat_with(nat, typ, rule, ref, conntrack))
    return filled


# The field a reply's NAT rewrites, by the field the original direction's rewrote.
_REPLY_FIELD: Final = {"source": "destination", "destination": "source"}


def _unshown_source_nat(t: Track, first: bool, flow: Flow, topo: Topology, memo: FlowNat) -> list[Nat]:
    """The source NAT a trace shows the rule of but no line the rewritten packet (unshown_source_nat),
    on the first packet; conntrack applies the same mapping to the connection's later packets in the
    original direction where source NAT is done (nf_nat_packet, net/netfilter/nf_nat_core.c), after the
    last hook their lines show."""
    if first:
        nat = unshown_source_nat(list(zip(t.events, t.stages, strict=True)), topo)
        if nat is None:
            return []
        memo.unshown[flow.index] = nat
        return [nat]
    made = memo.unshown.get(flow.index)
    hook = made.hook.split()[-1] if made is not None else ""
    at = [ev for ev in t.events if ev.hook.hook == hook and ev.record.src]
    if made is None or not at:
        return []
    return [
        Nat(
            made.type,
            "original",
            made.hook,
            "source",
            Endpoint(at[-1].record.src or "", flow_ports(at[-1])[0]),
            made.after,
            f"conntrack applies the mapping the first packet got from this {made.type} rule ({made.rule_ref}): "
            + made.evidence.partition(": ")[2],
            NatBy.CONNTRACK,
            made.rule,
            made.rule_ref,
            None,
            made.unknown,
        )
    ]


def _nat_with(nat: Nat, typ: str, rule: str | None, rule_ref: LineRef | None, conntrack: str | None) -> Nat:
    """``replace(nat, type=, rule=, rule_ref=, conntrack=)`` by Nat's constructor: dataclasses.replace
    is interpreted Python, called for most NAT'd packets (tests/test_scale.py holds the two equal and
    fails when Nat gains a field this leaves out)."""
    return Nat(
        typ,
        nat.direction,
        nat.hook,
        nat.field,
        nat.before,
        nat.after,
        nat.evidence,
        nat.by,
        rule,
        rule_ref,
        conntrack,
        nat.unknown,
    )


class _SeenAfter:
    """Find the lines of the same IP datagram further along its path that correlation kept apart.

    A verdict that ends the packet ("dropped", "probably dropped") must not stand when the same
    datagram (same IPv4 ID, source, protocol and length) is logged later at a later hook.
    """

    def __init__(self, tracks: list[Track]) -> None:
        self.by_ident: dict[tuple[object, ...], list[Track]] = {}
        self.keys: dict[int, set[tuple[object, ...]]] = {}  # each track's keys, found once (find asks again)
        for t in tracks:
            keys = self.keys[t.index] = self._keys(t)
            for key in keys:
                self.by_ident.setdefault(key, []).append(t)

    @staticmethod
    def _keys(t: Track) -> set[tuple[object, ...]]:
        """The datagram identities a track's records show (a loop, not a generator: compiled, one is an
        object per call)."""
        keys: set[tuple[object, ...]] = set()
        for ev in t.events:
            r = ev.record
            if r.ipid is None or r.src is None or r.ipid == 0:  # ID 0: DF packets of some stacks, not unique
                continue
            keys.add((r.l3, r.proto, r.src, r.ipid, r.length))
        return keys

    def find(self, t: Track) -> Track | None:
        last_stage = STAGE_ORDER[t.stages[-1]]
        last = t.last.record
        keys = self.keys.get(t.index)
        for key in self._keys(t) if keys is None else keys:
            for other in self.by_ident.get(key, ()):
                first = other.events[0].record
                if other is t or first.ref.file != last.ref.file or first.ref.line <= last.ref.line:
                    continue
                if last.stamp is not None and first.stamp is not None and first.stamp - last.stamp > MAX_GAP_SECONDS:
                    continue
                if any(STAGE_ORDER[st] > last_stage for st in other.stages):
                    return other
        return None


def _contradicted(verdict: Verdict, t: Track, later: Track) -> Verdict:
    last_stage = STAGE_ORDER[t.stages[-1]]
    ev = next(e for e, st in zip(later.events, later.stages, strict=True) if STAGE_ORDER[st] > last_stage)
    return Verdict(
        VerdictCode.LAST_SEEN,
        verdict.where,
        f"The lines grouped as this packet end at {t.last.hook.label}, but the same datagram (same IP ID, "
        f"source, protocol and length) is logged later at {ev.hook.label} ({ev.record.ref}, packet "
        f"p{later.index + 1}), so it was not dropped there; how the two pieces connect is not shown.",
        f"seen after: {ev.record.ref}",
    )


def explain_conversation(
    flow: Flow | None, tracks: list[Track], topo: Topology, facts: CaseFacts, memo: FlowNat | None = None
) -> list[Packet]:
    """Explain one conversation's packets (its members and related errors, in packet order), or, with
    ``flow`` None, packets that belong to no conversation. A verdict that ends a packet is checked
    against later lines of the same datagram among these packets (_SeenAfter)."""
    memo = memo if memo is not None else FlowNat()
    of_track = {t.index: flow for t in tracks} if flow is not None else {}
    conv = conversation_id(flow) if flow is not None else NO_CONVERSATION
    if flow is not None:
        memo.learn_first(flow, topo)
    seen_after = _SeenAfter(tracks)
    packets = []
    for t in tracks:
        place = _place(t, of_track, topo)
        cls = path_class(t)
        skipped, verdict = _skips_and_verdict(t, place, cls, topo, facts)
        later = seen_after.find(t) if not verdict.code.passed else None
        if later is not None:
            verdict = _contradicted(verdict, t, later)
        packets.append(
            Packet(
                id=f"p{t.index + 1}",
                conversation=conv,
                role=_role(t, place, topo),
                path=cls,
                summary=describe_packet(t),
                hops=tuple(_hops(t, cls, place.forward, topo)),
                nat=tuple(_packet_nats(t, place, topo, memo)),
                skipped=tuple(skipped),
                verdict=verdict,
            )
        )
    if flow is not None:
        memo.forget(flow)
        _answered(packets, tracks)
    return packets


def _answered(packets: list[Packet], tracks: list[Track]) -> None:
    """Requests last seen at INPUT that the host answered later in their conversation were delivered.
    Only a request: the host's next request after a reply (a ping's next echo, a retransmission) is
    sent whether or not the reply arrived, so it shows nothing."""
    for i, p in enumerate(packets):
        v = p.verdict
        if v is None or v.code is not VerdictCode.LAST_SEEN or not v.evidence.startswith(INPUT_NOT_SHOWN):
            continue
        if p.role != "request":
            continue
        for q, t in zip(packets[i + 1 :], tracks[i + 1 :], strict=True):
            if q.role == "reply" and q.path == "local-out" and shows_delivery(t.events[0]):
                packets[i] = replace(p, verdict=delivered_by_answer(v.where, q.id, t.events[0]))
                break


def conversation_id(flow: Flow) -> str:
    """A flow's conversation id: "c" and its number, from 1 in first-seen order."""
    return f"c{flow.index + 1}"


def conversation_of(flow: Flow) -> Conversation:
    """The conversation a flow is: its conntrack original tuple and its packets."""
    proto, a, b = flow.original
    # An ICMP echo's id keys the flow like a port (nf_conntrack_proto_icmp.c) but is not one.
    summary = (
        f"{proto} {a.addr} ↔ {b.addr} id {a.port}"
        if proto.startswith("ICMP") and a.port is not None
        else f"{proto} {a} ↔ {b}"
    )
    return Conversation(
        id=conversation_id(flow),
        proto=proto,
        summary=summary,
        original=(a, b),
        packets=tuple(f"p{i + 1}" for i in sorted(flow.role)),
    )


def is_reply_for(topo: Topology) -> Callable[[Track], bool]:
    """How a packet that opens a conversation is told to be a reply: by itself or by conntrack -L."""
    return lambda t: is_reply_by_itself(t) or reply_by_conntrack(t, topo)


def explain(tracks: list[Track], topo: Topology) -> tuple[list[Conversation], list[Packet]]:
    """Explain a whole case's packets at once, grouped in conversations, in input order."""
    facts = CaseFacts(tracks)
    flows, of_track = group_conversations(tracks, is_reply_for(topo))
    memo = FlowNat()
    packets = [p for f in flows for p in explain_conversation(f, f.tracks(), topo, facts, memo)]
    packets += explain_conversation(None, [t for t in tracks if t.index not in of_track], topo, facts, memo)
    packets.sort(key=lambda p: id_order(p.id))
    return [conversation_of(f) for f in flows], packets
