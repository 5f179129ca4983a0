"""Verdicts that name their evidence: what became of a packet, and which line or rule says so.

A verdict is only as strong as what decided it (issue 8, "Verdicts name their evidence"):

* a rule or a chain policy the trace reports, or the ruleset snapshot reaches (attribution.py);
* the action word of a log prefix: a LOG rule does not decide anything (xt_LOG.c returns
  XT_CONTINUE), but a convention's own rules say what follows its LOG rule (prefix_conventions.yaml
  `follows`: ufw's "[UFW BLOCK]" is followed by a chain's default policy DROP, ufw-reject-*'s REJECT
  or one of its deny rules), so "[UFW BLOCK]" on a packet's last line is the rule author's statement
  that it was dropped there; a prefix outside any convention is only its author's word;
* the exit the trace shows: an OUT at a POSTROUTING hook, or an INPUT hop;
* nothing: then the packet was last seen, and the next hook is not traced.
"""

from __future__ import annotations

import functools

from reportgen.explain.correlate import ICMP_ERRORS
from reportgen.explain.topology import Topology
from reportgen.model import Action, Event, HitKind, Verdict, VerdictCode
from reportgen.netfilter import BRIDGE, POSTROUTING, STAGES
from reportgen.parsers.prefix import match_convention

# Hooks at which a packet is seen leaving: the OUT of a POSTROUTING hook is the device it is handed
# to (ip_output -> ip_finish_output, net/ipv4/ip_output.c; br_forward_finish, net/bridge/br_forward.c).
EXIT_STAGES = frozenset({"ip-post", "ip-post-br", "br-post", "br-post-out"})
# Hooks that show local delivery: IP INPUT (ip_local_deliver) and bridge INPUT (br_pass_frame_up).
DELIVERY_STAGES = frozenset({"ip-in", "br-in"})
# A prefix that says the packet was dropped/rejected ends it there; ACCEPT says so only at INPUT,
# where accepting is delivering. AUDIT, LIMIT and a bare LOG say nothing about the outcome.
_ENDING = {Action.DROP: VerdictCode.DROPPED_BY_RULE, Action.REJECT: VerdictCode.REJECTED}
LAST_SEEN_EVIDENCE = "last seen; the next hook is not traced"
# How a rule-tracing source recognises hooks (sources/traces.py): such a source prints every rule
# the packet meets, so its last line tells whether the hook's chain was finished.
TRACED = ("TRACE prefix", "xtables-monitor", "nft trace")
# The hits whose verdict decides a hook (a return hands the packet back to its caller).
_DECIDING = frozenset({HitKind.RULE, HitKind.POLICY})


def unfinished(ev: Event) -> str | None:
    """Where a traced packet's chain traversal stops without an accepting verdict, if it does.

    A trace that ends inside a chain (a rule that continues, a jump, a return, a policy whose verdict
    the tool did not print, as legacy TRACE's "policy:N") does not show that the hook let it pass.
    """
    if ev.hook.how not in TRACED or not ev.rules:
        return None
    last = ev.rules[-1]
    if last.verdict.split(":")[0] == "accept" and last.kind in _DECIDING:
        return None
    return f"{last.table} {last.chain} ({last.ref})"


def trace_outcome(ev: Event, goes_on: bool) -> Action | None:
    """What a traced hook did to the packet: the accept/drop/reject its last traced rule or policy
    printed, else ACCEPT when the packet's own lines go on after this hook. nf_hook_slow() passes a
    packet on to the next table or hook only on NF_ACCEPT (net/netfilter/core.c), and a NAT target
    returns NF_ACCEPT (nf_nat_setup_info's callers, net/netfilter/xt_nat.c), so legacy TRACE, which
    prints no verdicts (ip_tables.c trace_packet), shows "accepted" by the packet's next line."""
    if ev.hook.how not in TRACED or not ev.rules:
        return None
    last = ev.rules[-1]
    word = last.verdict.split(":")[0].split(" ")[0]
    if last.kind is HitKind.RULE and last.rejects:
        return Action.REJECT
    decided = _DECIDED.get(word) if last.kind in _DECIDING else None
    if decided is not None:
        return decided
    return Action.ACCEPT if goes_on else None


# The verdict words a traced rule or policy decides by, as Actions: a dict lookup, not Action(word)
# (the enum's call is interpreted Python, once per traced hop).
_DECIDED = {a.value: a for a in (Action.ACCEPT, Action.DROP, Action.REJECT)}


def cite_hop(ev: Event) -> str:
    """Name a hop for a verdict's evidence: its line, where it was seen (chain, hook) and, for a
    traced hop, the last rule or policy the trace shows there."""
    h = ev.hook
    where = placement(ev)[3:] if not h.placed else h.label + ("" if h.label.endswith(h.hook) else f" ({h.hook})")
    last = ev.rules[-1] if h.how in TRACED and ev.rules else None
    if last is None:
        return f"{ev.record.ref}, {where}"
    if last.kind is HitKind.POLICY:
        said = f"{last.chain} policy {last.verdict or '(verdict not printed)'}".rstrip()
    elif last.kind is HitKind.RETURN:
        said = f"{last.chain} return"
    else:
        rule = f" '{last.text}'" if last.text else f" {last.handle}" if last.handle else ""
        said = f"{last.chain} rule{rule}" + (f" verdict {last.verdict}" if last.verdict else "")
    return f"{ev.record.ref}, {where}: {said} ({last.ref})"


def prefix_evidence(ev: Event) -> str:
    """Cite a prefix's action: "prefix '[UFW BLOCK]' (action DROP, ufw convention) at kern.log:3"."""
    return f"{prefix_words(ev)} at {ev.record.ref}"


def prefix_words(ev: Event) -> str:
    """A prefix's action without its line: "prefix '[UFW BLOCK]' (action DROP, ufw convention)"."""
    h = ev.hook
    action = h.action.name if h.action is not None else "none"
    conv = f", {h.convention} convention" if h.convention else ""
    return f"prefix '{ev.record.prefix.strip()}' (action {action}{conv})"


# What a prefix's action word tells about the hook when no convention's own rules say more (a LOG
# rule itself never decides: xt_LOG.c).
_ACTION_SAYS = {
    Action.DROP: "the rule author logs right before a DROP rule for the same match.",
    Action.REJECT: "the rule author logs right before a REJECT rule for the same match.",
    Action.ACCEPT: "the rule author logs right before an ACCEPT rule for the same match.",
    Action.AUDIT: "logged for auditing only; it says nothing about what became of the packet.",
    Action.LIMIT: "a rate limit was hit; the prefix alone does not say whether the packet was dropped.",
}


@functools.lru_cache(maxsize=4096)
def _follows(prefix: str) -> str | None:
    """What the convention's own rules do after the LOG rule of this prefix (its `follows`)."""
    m = match_convention(prefix)
    return m.follows if m is not None else None


def convention_follows(ev: Event) -> str | None:
    """The `follows` sentence of the convention that placed this hop, if its entry has one."""
    return _follows(ev.record.prefix) if ev.hook.convention else None


def action_says(ev: Event, action: Action, verdict_rests: bool = False) -> str:
    """What a hop's prefix action tells: its convention's own rules, else the word's general sense.

    When the packet's verdict rests on this hop's prefix (prefix_rests_on), the verdict states what the
    convention's own rules do after the LOG rule, or names the rule the snapshot or trace shows doing
    it; the hop then points there instead of printing the same paragraph twice."""
    follows = convention_follows(ev)
    if follows and verdict_rests:
        return "the packet's lines end here, and its verdict says what follows this LOG rule."
    return follows or _ACTION_SAYS[action]


def prefix_rests_on(events: list[Event]) -> int | None:
    """The index of the hop whose prefix prefix_verdict draws an ending verdict from: the first hop
    whose action ends a packet (DROP, REJECT), when no line of the packet comes after it."""
    for i, ev in enumerate(events):
        if ev.hook.action in _ENDING:
            return i if i == len(events) - 1 else None
    return None


# What would settle an unplaced hop's hook, by how it was recognised (placement): a LOG line's prefix
# mapped to its hook; a traced chain's hook in an "nft list ruleset" snapshot; a legacy TRACE walk's
# line of the built-in chain it started in.
_SETTLES = {
    "TRACE prefix": "the walk's line from its built-in chain would settle it",
    "nft trace": "an nft list ruleset snapshot would settle it",
    "xtables-monitor": "an nft list ruleset snapshot would settle it",
}


def placement(ev: Event) -> str:
    """Name where a hop was logged; an unplaced one names every hook it could be and why."""
    h = ev.hook
    if h.placed:
        return f"at {h.label}"
    r = ev.record
    has = ("IN= and OUT=" if r.out_dev else "IN=") if r.in_dev else "OUT=" if r.out_dev else "neither IN= nor OUT="
    settle = _SETTLES.get(h.how, "a prefix map would settle it")
    return (
        f"at {' or '.join(h.candidates)} (the line has {has} only; {settle})"
        if r.in_dev or r.out_dev
        else f"at one of {', '.join(h.candidates)} ({settle})"
    )


def prefix_verdict(hops: list[tuple[Event, str]]) -> tuple[Verdict | None, str | None]:
    """A verdict from a prefix's action word, or a note when the packet's own lines contradict it."""
    for i, (ev, _) in enumerate(hops):
        action = ev.hook.action
        if action in _ENDING:
            later = hops[i + 1 :]
            if later:
                nxt = later[0][0]
                return None, (
                    f"The {prefix_evidence(ev)} says {action.name}, but the packet is seen after it "
                    f"({nxt.hook.label}, {nxt.record.ref}), so it was not dropped there; the LOG rule and "
                    "the rule it announces can match different packets."
                )
            where = ev.hook.label
            verb = "Rejected" if action is Action.REJECT else "Dropped"
            # What the convention's own rules do after its LOG rule is what this verdict rests on, so the
            # verdict states it, and the hop only points here (action_says, prefix_rests_on).
            follows = convention_follows(ev)
            return Verdict(
                _ENDING[action],
                where,
                f"{verb} {placement(ev)}: its last line carries the {prefix_evidence(ev)}"
                + (f"; {follows}" if follows else ", which logs right before the rule it names."),
                prefix_evidence(ev),
            ), None
    ev, st = hops[-1]
    at_input = ev.hook.placed and ev.hook.hook == "INPUT" and ev.hook.family != BRIDGE
    if ev.hook.action is Action.ACCEPT and at_input:
        return Verdict(
            VerdictCode.DELIVERED_LOCAL,
            "local process",
            f"Accepted at {ev.hook.label} and so delivered to the host's own stack: the {prefix_evidence(ev)}.",
            prefix_evidence(ev),
        ), None
    if ev.hook.action in (Action.AUDIT, Action.LIMIT) and at_input:
        # Logged on the way into INPUT's rules; a later rule of the chain may still drop it unlogged.
        return Verdict(
            VerdictCode.UNKNOWN,
            ev.hook.label,
            f"Last seen at {ev.hook.label}, logged with an action word that says nothing about the outcome; "
            "a later rule of the chain may still have dropped it.",
            prefix_evidence(ev),
        ), None
    return None, None


# Evidence of a packet logged at INPUT by a LOG rule whose later rules nothing shows (input_not_shown).
INPUT_NOT_SHOWN = "reached INPUT; the rules after its LOG rule are not shown"


def input_not_shown(where: str, ev: Event, why: str | None, request: bool) -> Verdict:
    """A LOG line at INPUT proves the packet reached that LOG rule, nothing more: xt_LOG.c returns
    XT_CONTINUE, and the rules after it, the chain's policy and the tables after it at LOCAL_IN
    (nf_hook_slow, net/netfilter/core.c) still decide before ip_local_deliver_finish hands it to a
    socket (net/ipv4/ip_input.c). ``why``: what the ruleset snapshot said, if there is one. Only a
    request can be shown delivered by a later packet (the host's answer, explain._answered)."""
    table = ev.hook.table or "?"
    snapshot = why or (
        f"No ruleset snapshot shows the rules after the logging rule in {table} INPUT; an iptables-save "
        "or nft list ruleset would tell whether a later rule or the chain's policy dropped it."
    )
    return Verdict(
        VerdictCode.LAST_SEEN,
        where,
        f"Last seen at {where}: the line shows the packet reached the LOG rule, not what the rest of the "
        f"chain did (a LOG rule lets the packet go on, xt_LOG.c; the later rules and the policy decide). "
        f"{snapshot}" + (" No packet of its conversation shows the host answering it." if request else ""),
        f"{INPUT_NOT_SHOWN} (last line {cite_hop(ev)})",
    )


def shows_delivery(answer: Event) -> bool:
    """Whether a packet the host sent back shows that the one it answers passed INPUT: a SYN-ACK, data
    or an echo reply come from the socket or stack after ip_local_deliver; a TCP RST or an ICMP error
    may instead come from a REJECT rule in INPUT (ipt_REJECT.c), which answers before delivery."""
    r = answer.record
    if "RST" in r.tcp_flags:
        return False
    # An ICMP error is what a REJECT rule sends back (ipt_REJECT.c, nf_reject_ipv4.c).
    errors = ICMP_ERRORS.get(r.proto or "")
    return not (errors is not None and r.icmp_type in errors)


def delivered_by_answer(where: str, answer_id: str, answer: Event) -> Verdict:
    return Verdict(
        VerdictCode.DELIVERED_LOCAL,
        "local process",
        f"Delivered to the host's stack: last logged at {where}, and the host answered it with "
        f"{answer_id} ({answer.record.ref}), which it can only send once the packet got past INPUT "
        "(ip_local_deliver, net/ipv4/ip_input.c).",
        f"answered by {answer_id} from the host ({answer.record.ref})",
    )


def last_seen(where: str, ev: Event, why: str) -> Verdict:
    return Verdict(VerdictCode.LAST_SEEN, where, why, f"{LAST_SEEN_EVIDENCE} (last line {cite_hop(ev)})")


def _exits(hops: list[tuple[Event, str]]) -> tuple[dict[str, Event], dict[str, Event]]:
    """The bridge ports and the other devices the packet is seen leaving by (several ports: a flood)."""
    ports: dict[str, Event] = {}
    devs: dict[str, Event] = {}
    for ev, st in hops:
        r = ev.record
        if st not in EXIT_STAGES or not ev.hook.placed:
            continue
        # A bridge port: PHYSOUT at the IP hooks br_netfilter calls, OUT at the bridge's own hooks.
        if r.physout:
            ports[r.physout] = ev  # the last line that shows the exit is cited
        elif st in ("br-post", "br-post-out") and r.out_dev:
            ports[r.out_dev] = ev
        elif r.out_dev:
            devs[r.out_dev] = ev
    return ports, devs


def exit_verdict(hops: list[tuple[Event, str]], topo: Topology, where: str) -> Verdict:
    """Delivered or left, from the exit hop the trace shows; last seen when it shows none."""
    ev, st = hops[-1]
    stop = unfinished(ev)
    if stop is not None:
        return Verdict(
            VerdictCode.LAST_SEEN,
            where,
            f"Last seen at {where}: the trace stops inside {stop} without a verdict that lets it pass, "
            "so the lines do not show it leave that hook.",
            f"{LAST_SEEN_EVIDENCE} (trace stops in {stop}; last line {cite_hop(ev)})",
        )
    if st in DELIVERY_STAGES and ev.hook.placed:
        local = st == "ip-in"
        what = "a local process on the host" if local else "the host's stack (passed up from the bridge)"
        return Verdict(
            VerdictCode.DELIVERED_LOCAL,
            "local process" if local else "host stack",
            f"Delivered to {what}: the trace shows it at {ev.hook.label} ({STAGES[st].title}), IN={ev.record.in_dev}.",
            f"{STAGES[st].title} hop at {cite_hop(ev)}",
        )
    ports, devs = _exits(hops)
    if ports:
        names = []
        for dev in ports:
            owner = topo.port_owner(dev)
            # With PHYSOUT set, OUT is the bridge itself (br_netfilter's IP hooks).
            br = topo.bridge_of(dev) or (ports[dev].record.out_dev if ports[dev].record.physout else None)
            via = f"{dev} (port of {br})" if br else dev
            names.append(f"{owner} via {via}" if owner else f"the device behind {via}")
        cites = "; ".join(f"OUT={d} at {e.hook.label} ({e.record.ref})" for d, e in ports.items())
        flood = " (copies of one flooded frame)" if len(ports) > 1 else ""
        return Verdict(
            VerdictCode.DELIVERED_TO_PORT, ", ".join(ports), f"Delivered to {' and to '.join(names)}{flood}.", cites
        )
    if devs:
        dev, e = list(devs.items())[-1]
        text = (
            f"Handed by the IP layer to the bridge {dev}; no bridge line shows the port it left by."
            if topo.is_bridge(dev)
            else f"Left the host via {dev}."
        )
        return Verdict(VerdictCode.FORWARDED_OUT, dev, text, f"OUT={dev} at {e.hook.label} ({e.record.ref})")
    out = ev.record.out_dev
    # A bridge chooses the port (br_forward.c), not routing; and a line that may itself be from
    # POSTROUTING cannot be called one that no POSTROUTING line follows.
    who = "The bridge" if ev.hook.family == BRIDGE else "Routing"
    post = "bridge POSTROUTING" if ev.hook.family == BRIDGE else "POSTROUTING"
    if POSTROUTING in ev.hook.candidates:
        others = " or ".join(h for h in ev.hook.candidates if h != POSTROUTING)
        text = (
            f"Last seen at {where}. If the line is from POSTROUTING the packet was leaving by "
            f"OUT={out}; if from {others}, no later line shows it leave, so the lines cannot tell "
            "whether it left or was dropped after that point."
        )
    else:
        chose = f" {who} chose OUT={out}, but no" if out else " No"
        text = (
            f"Last seen at {where}.{chose} {post} line shows it leave, so the "
            "lines cannot tell whether it left or was dropped after that point."
        )
    return last_seen(where, ev, text)
