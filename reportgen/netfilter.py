"""The netfilter hook graph as data: families, hooks, table priorities and the stages a packet passes.

Everything here is a kernel fact with its source named beside it. The explainer walks this graph; it
never hard-codes a path of its own.

A *stage* is one hook in one context. The same IP hook appears in two stages when br_netfilter calls
it from inside the bridge (``ip-fwd-br``/``ip-post-br``) and when the IP stack calls it itself
(``ip-fwd``/``ip-post``), because the order relative to the bridge hooks differs between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

BRIDGE, IPV4, IPV6 = "bridge", "ipv4", "ipv6"
FAMILIES = (BRIDGE, IPV4, IPV6)
# nftables families beyond the three above (nft(8), "ADDRESS FAMILIES"): an inet table sees both
# IPv4 and IPv6 at the IP hooks; arp has input/output; netdev hooks ingress/egress on one device.
INET, ARP, NETDEV = "inet", "arp", "netdev"
NFT_FAMILIES = (BRIDGE, IPV4, IPV6, INET, ARP, NETDEV)

PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING = "PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"
HOOKS = (PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING)
# The ingress hook that inet tables may use since Linux 5.10 (nft(8) ADDRESS FAMILIES; called from
# __netif_receive_skb_core, net/core/dev.c, before IP PREROUTING). It has no stage in the hook graph:
# it is only ever a candidate, ordered as PREROUTING (ORDERED_AS).
INGRESS = "INGRESS"
ORDERED_AS = {INGRESS: PREROUTING}

# Table priorities per hook.
# IPv4: include/uapi/linux/netfilter_ipv4.h enum nf_ip_hook_priorities (NF_IP_PRI_RAW -300,
# NF_IP_PRI_MANGLE -150, NF_IP_PRI_NAT_DST -100, NF_IP_PRI_FILTER 0, NF_IP_PRI_SECURITY 50,
# NF_IP_PRI_NAT_SRC 100); the tables' hook masks are in net/ipv4/netfilter/iptable_*.c and
# nf_nat_proto.c (nf_nat_ipv4_ops: DNAT on PRE_ROUTING/LOCAL_OUT, SNAT on POST_ROUTING/LOCAL_IN).
# IPv6 uses the same numbers: include/uapi/linux/netfilter_ipv6.h enum nf_ip6_hook_priorities.
_IP_PRIORITIES: dict[str, dict[str, int]] = {
    PREROUTING: {"raw": -300, "mangle": -150, "nat": -100},
    INPUT: {"mangle": -150, "filter": 0, "security": 50, "nat": 100},
    FORWARD: {"mangle": -150, "filter": 0, "security": 50},
    OUTPUT: {"raw": -300, "mangle": -150, "nat": -100, "filter": 0, "security": 50},
    POSTROUTING: {"mangle": -150, "nat": 100},
}

# Bridge: include/uapi/linux/netfilter_bridge.h enum nf_br_hook_priorities (NF_BR_PRI_FIRST INT_MIN,
# NAT_DST_BRIDGED -300, FILTER_BRIDGED -200, BRNF 0, NAT_DST_OTHER 100, FILTER_OTHER 200,
# NAT_SRC 300). ebtable_nat.c/ebtable_filter.c register those; ebtable_broute.c hooks
# NF_BR_PRE_ROUTING at NF_BR_PRI_FIRST since 5.3 (before that it was the br_should_route_hook,
# called from br_handle_frame before the PREROUTING hook: the same place in the order).
_BRIDGE_PRIORITIES: dict[str, dict[str, int]] = {
    PREROUTING: {"broute": -(2**31), "nat": -300},
    INPUT: {"filter": -200},
    FORWARD: {"filter": -200},
    OUTPUT: {"nat": 100, "filter": 200},
    POSTROUTING: {"nat": 300},
}

# nft chains use the same numbers for the standard names (nft(8), "CHAIN PRIORITIES": raw -300,
# mangle -150, dstnat -100, filter 0, security 50, srcnat 100; bridge dstnat -300, filter -200,
# out 100, srcnat 300), so nft tables named like the iptables ones order the same way.


def table_priority(family: str, hook: str, table: str | None) -> int | None:
    """Return the hook priority of a table, or None when the table is not a standard one."""
    if table is None:
        return None
    prios = _BRIDGE_PRIORITIES if family == BRIDGE else _IP_PRIORITIES
    return prios.get(hook, {}).get(table)


def tables_at(family: str, hook: str) -> tuple[str, ...]:
    """Return the standard tables registered at a hook, in priority order."""
    prios = _BRIDGE_PRIORITIES if family == BRIDGE else _IP_PRIORITIES
    return tuple(sorted(prios.get(hook, {}), key=lambda t: prios[hook][t]))


@dataclass(frozen=True)
class Stage:
    """One hook in one context on a packet's way through the host."""

    key: str
    family_kind: str  # "bridge" or "ip" (ipv4 and ipv6 share the IP stages)
    hook: str
    title: str
    why: str  # where the kernel calls this hook, with its source


STAGES: dict[str, Stage] = {
    s.key: s
    for s in (
        Stage(
            "br-pre",
            "bridge",
            PREROUTING,
            "bridge PREROUTING",
            "br_handle_frame() -> NF_BR_PRE_ROUTING (net/bridge/br_input.c)",
        ),
        Stage(
            "ip-pre",
            "ip",
            PREROUTING,
            "IP PREROUTING",
            "ip_rcv()/ipv6_rcv(), or br_nf_pre_routing() for frames on a bridge port (net/bridge/br_netfilter_hooks.c)",
        ),
        Stage("br-in", "bridge", INPUT, "bridge INPUT", "br_pass_frame_up() -> NF_BR_LOCAL_IN (net/bridge/br_input.c)"),
        Stage(
            "ip-pre-up",
            "ip",
            PREROUTING,
            "IP PREROUTING (after the bridge)",
            "ip_rcv() on the bridge device when br_netfilter did not already run PREROUTING",
        ),
        Stage(
            "br-fwd", "bridge", FORWARD, "bridge FORWARD", "__br_forward() -> NF_BR_FORWARD (net/bridge/br_forward.c)"
        ),
        Stage(
            "ip-fwd-br",
            "ip",
            FORWARD,
            "IP FORWARD (bridged)",
            "br_nf_forward_ip() at NF_BR_FORWARD, priority NF_BR_PRI_BRNF - 1 (net/bridge/br_netfilter_hooks.c)",
        ),
        Stage(
            "br-post",
            "bridge",
            POSTROUTING,
            "bridge POSTROUTING",
            "br_forward_finish() -> NF_BR_POST_ROUTING (net/bridge/br_forward.c)",
        ),
        Stage(
            "ip-post-br",
            "ip",
            POSTROUTING,
            "IP POSTROUTING (bridged)",
            "br_nf_post_routing() at NF_BR_POST_ROUTING, priority NF_BR_PRI_LAST",
        ),
        Stage("ip-in", "ip", INPUT, "IP INPUT", "ip_local_deliver() -> NF_INET_LOCAL_IN (net/ipv4/ip_input.c)"),
        Stage(
            "ip-fwd",
            "ip",
            FORWARD,
            "IP FORWARD",
            "ip_forward() -> NF_INET_FORWARD after the TTL decrement (net/ipv4/ip_forward.c)",
        ),
        Stage("ip-out", "ip", OUTPUT, "IP OUTPUT", "__ip_local_out() -> NF_INET_LOCAL_OUT (net/ipv4/ip_output.c)"),
        Stage(
            "ip-post", "ip", POSTROUTING, "IP POSTROUTING", "ip_output() -> NF_INET_POST_ROUTING (net/ipv4/ip_output.c)"
        ),
        Stage(
            "br-out",
            "bridge",
            OUTPUT,
            "bridge OUTPUT",
            "br_dev_xmit() -> __br_forward(local_orig) -> NF_BR_LOCAL_OUT (net/bridge/br_forward.c)",
        ),
        Stage(
            "br-post-out",
            "bridge",
            POSTROUTING,
            "bridge POSTROUTING (host-sent)",
            "br_forward_finish() -> NF_BR_POST_ROUTING for frames the host sends through the bridge",
        ),
    )
}

# Which stage may follow which. This is a DAG, so "reachable" is well defined and a packet can
# never pass the same stage twice. Sources:
# * br_nf_pre_routing() runs the IP PREROUTING hooks from inside bridge PREROUTING; ip_sabotage_in()
#   (NF_IP_PRI_FIRST on NF_INET_PRE_ROUTING) then stops them from running a second time when the frame
#   goes up the stack (net/bridge/br_netfilter_hooks.c). Without br_netfilter (or with
#   bridge-nf-call-iptables=0) the IP PREROUTING hooks run after bridge INPUT instead: "ip-pre-up".
# * br_handle_frame_finish(): a frame for the bridge's own MAC goes up (bridge INPUT), others are
#   forwarded (bridge FORWARD) (net/bridge/br_input.c).
# * After bridge INPUT, ip_rcv_finish() routes: local delivery (INPUT) or ip_forward() (FORWARD).
# * A packet routed or sent out of a bridge device enters br_dev_xmit(): bridge OUTPUT, then bridge
#   POSTROUTING. br_nf_post_routing() does nothing for it because it has no nf_bridge info.
EDGES: dict[str, tuple[str, ...]] = {
    "br-pre": ("ip-pre", "br-in", "br-fwd"),
    "ip-pre": ("br-in", "br-fwd", "ip-in", "ip-fwd"),
    "br-in": ("ip-pre-up", "ip-in", "ip-fwd"),
    "ip-pre-up": ("ip-in", "ip-fwd"),
    "br-fwd": ("ip-fwd-br", "br-post"),
    "ip-fwd-br": ("br-post",),
    "br-post": ("ip-post-br",),
    "ip-post-br": (),
    "ip-in": (),
    "ip-fwd": ("ip-post",),
    "ip-out": ("ip-post",),
    "ip-post": ("br-out", "br-post-out"),
    "br-out": ("br-post-out",),
    "br-post-out": (),
}


def _closure() -> dict[str, frozenset[str]]:
    reach: dict[str, frozenset[str]] = {}

    def visit(key: str) -> frozenset[str]:
        if key not in reach:
            out: set[str] = set()
            for nxt in EDGES[key]:
                out.add(nxt)
                out |= visit(nxt)
            reach[key] = frozenset(out)
        return reach[key]

    for key in EDGES:
        visit(key)
    return reach


REACHABLE = _closure()


def stages_for(family: str, hook: str) -> tuple[str, ...]:
    """Return the stages an event at this family/hook can belong to."""
    kind = "bridge" if family == BRIDGE else "ip"
    return tuple(k for k, s in STAGES.items() if s.family_kind == kind and s.hook == hook)


# Path templates: the stages each path class passes, in order. The explainer compares a packet's
# observed stages with its template to find the hooks it skipped.
BRIDGED = ("br-pre", "ip-pre", "br-fwd", "ip-fwd-br", "br-post", "ip-post-br")
BRIDGED_TO_HOST = ("br-pre", "ip-pre", "br-in")
ROUTED_FROM_BRIDGE = ("br-pre", "ip-pre", "br-in", "ip-fwd", "ip-post")
ROUTED = ("ip-pre", "ip-fwd", "ip-post")
LOCAL_IN_FROM_BRIDGE = ("br-pre", "ip-pre", "br-in", "ip-in")
LOCAL_IN = ("ip-pre", "ip-in")
LOCAL_OUT = ("ip-out", "ip-post")
OUT_VIA_BRIDGE = ("br-out", "br-post-out")

# Stages that, for a frame entering on a bridge port, run only because br_netfilter calls the IP
# hooks from the bridge; they are skipped when net.bridge.bridge-nf-call-iptables (or -ip6tables) is
# 0: br_nf_pre_routing() returns NF_ACCEPT early when brnf_call_iptables is off
# (net/bridge/br_netfilter_hooks.c). "ip-pre" is one of them only for frames from a bridge port.
BRNF_STAGES = frozenset({"ip-pre", "ip-fwd-br", "ip-post-br"})
