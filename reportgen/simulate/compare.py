"""Predicted versus observed: simulate each traced conversation's first packet and compare the two.

The comparison is made on what the trace can show: the (stage, table) places the packet was seen at,
restricted on the predicted side to the places the trace records anywhere (a hook with no LOG rule
or trace cannot show a packet), and the outcome (through, or stopped). Where they part, the report
names the first place and what each side says. A prediction that rests on an undecidable match, or
that cannot be made, is "undetermined", never a disagreement.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import replace

from reportgen.explain.topology import Topology
from reportgen.model import ICMP_PROTOS, Conversation, Packet, Prediction, Snapshot, VerdictCode
from reportgen.netfilter import STAGES
from reportgen.simulate import Query, SimulateError, simulate
from reportgen.simulate.walk import ChainHop, Walk

MAX_CONVERSATIONS = 200  # a prediction per conversation; a huge case gets them for its first ones only
_THROUGH = frozenset({VerdictCode.DELIVERED_LOCAL, VerdictCode.DELIVERED_TO_PORT, VerdictCode.FORWARDED_OUT})
_STOPPED = frozenset({VerdictCode.DROPPED_BY_RULE, VerdictCode.DROPPED_BY_POLICY, VerdictCode.REJECTED})
_LEFT = frozenset({VerdictCode.DELIVERED_TO_PORT, VerdictCode.FORWARDED_OUT})
_PROTO = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "ICMPv6": "icmp"}


def _dedup(seq: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [x for i, x in enumerate(seq) if i == 0 or seq[i - 1] != x]


def observed_places(p: Packet) -> list[tuple[str, str]]:
    return _dedup([(h.stage, h.event.hook.table or "?") for h in p.hops])


def _place(h: ChainHop, seen: Container[tuple[str, str]]) -> tuple[str, str]:
    """Where a trace shows a walked chain: by its own table when the trace names that table (an nft
    trace, or a LOG line the ruleset snapshot placed in a table such as ``inet fw``), else by the
    iptables table its place stands for."""
    own = (h.stage, h.chain.table)
    return own if h.chain.table != h.chain.std_table and own in seen else (h.stage, h.chain.std_table)


def predicted_places(w: Walk, seen: Container[tuple[str, str]]) -> list[tuple[str, str]]:
    """The places of a walk a trace can show: those the trace shows for some packet, and those where the
    walk meets a LOG rule that matches (the kernel would log the packet there)."""
    places = [(_place(h, seen), h) for h in w.hops]
    return _dedup([p for p, h in places if p in seen or any(r.target == "LOG" for r in h.hits)])


def query_for(p: Packet) -> Query | None:
    """The question that reproduces an observed packet: its addresses, ports and where it came in."""
    # A masked or cut address leaves nothing to simulate: the question needs both ends.
    first = next(
        (h for h in p.hops if h.event.record.src and h.event.record.dst and h.event.record.proto in _PROTO), None
    )
    if first is None:
        return None
    r = first.event.record
    if r.proto in ICMP_PROTOS and r.icmp_type not in (None, 8, 128):
        return None  # only echo requests are simulated as first packets
    # Where it came in: the bridge port (PHYSIN, or IN at a bridge hook) or the routed interface.
    r0 = p.hops[0].event.record
    in_iface = r0.physin or r0.in_dev or None
    icmp = r.proto in ICMP_PROTOS
    if r.src is None or r.dst is None:
        return None
    return Query(r.src, r.dst, _PROTO[r.proto or ""], None if icmp else r.dport, None if icmp else r.sport, in_iface)


def _observed_class(p: Packet) -> str:
    """through (delivered, left), stopped (dropped), or open (last seen: the trace cannot tell)."""
    code = p.verdict.code if p.verdict else VerdictCode.LAST_SEEN
    return "through" if code in _THROUGH else "stopped" if code in _STOPPED else "open"


def _label(places: list[tuple[str, str]], i: int) -> str:
    return f"{places[i][1]} at {places[i][0]}" if i < len(places) else "nowhere further"


def _hop_decision(w: Walk, place: tuple[str, str], seen: Container[tuple[str, str]]) -> str:
    for h in w.hops:
        if _place(h, seen) == place:
            rule = (
                f"{h.rule.chain} rule {h.rule.num} ({h.chain.source}:{h.rule.line})"
                if h.rule
                else f"the policy of {h.chain.label}"
            )
            return f"{h.verdict} by {rule}"
    return "no decision there"


def compare(walks: tuple[Walk, ...], observed: Packet, seen: Container[tuple[str, str]]) -> Prediction:
    """Compare the predicted branches with the observed packet; the first agreeing branch wins."""
    obs = observed_places(observed)
    ocls = _observed_class(observed)
    owhere = observed.verdict.where if observed.verdict else "?"
    best: Prediction | None = None
    for w in walks:
        assert w.outcome is not None
        pred = predicted_places(w, seen)
        code = w.outcome.code
        ptext = f"{code.value} at {w.outcome.where}" + (f" ({w.outcome.ref})" if w.outcome.ref else "")
        otext = f"{observed.verdict.code.value if observed.verdict else 'last-seen'} at {owhere}"
        if code not in _THROUGH and code not in _STOPPED:
            cand = Prediction(
                "undetermined", f"The snapshot cannot decide: {w.outcome.explanation}", ptext, otext, None, w.conditions
            )
        else:
            pcls = "through" if code in _THROUGH else "stopped"
            i = next((k for k in range(min(len(pred), len(obs))) if pred[k] != obs[k]), min(len(pred), len(obs)))
            same_places = pred == obs
            oleft = observed.verdict is not None and observed.verdict.code in _LEFT
            # A trace of the IP hooks only names the bridge a routed packet left by, not the port.
            exits = {w.outcome.where, w.pkt.route_out if w.pkt else ""}
            if same_places and pcls == ocls and oleft and owhere not in exits:
                cand = Prediction(
                    "diverges",
                    f"Same hooks, but the prediction leaves by {w.outcome.where} and the trace by {owhere}.",
                    ptext,
                    otext,
                    obs[-1][0] if obs else None,
                    w.conditions,
                )
            elif same_places and (pcls == ocls or ocls == "open"):
                rest = (
                    "; the trace does not show what came next, the prediction is"
                    if ocls == "open" and pcls == "through"
                    else ","
                )
                cand = Prediction(
                    "agrees",
                    f"Prediction and trace agree: {len(obs)} hooks in the same order{rest} "
                    f"{code.value} ({w.outcome.where}).",
                    ptext,
                    otext,
                    None,
                    w.conditions,
                )
            elif pcls == "through" and ocls != "through" and i == len(obs) and obs:
                last = obs[-1]
                at = f"{last[1]} {STAGES[last[0]].hook}" if last[0] in STAGES else f"{last[1]} {last[0]}"
                cand = Prediction(
                    "diverges",
                    f"The ruleset predicts {_hop_decision(w, last, seen)}; the trace shows the "
                    f"packet last seen at {at}: another table at this hook, or a rule "
                    "change after the snapshot, dropped it.",
                    ptext,
                    otext,
                    last[0],
                    w.conditions,
                )
            else:
                part = pred[i][0] if i < len(pred) else obs[i][0] if i < len(obs) else None
                where = (
                    f"They part at hop {i + 1}: predicted {_label(pred, i)}, observed {_label(obs, i)}"
                    if part
                    else "Same hooks, different outcome"
                )
                cand = Prediction(
                    "diverges",
                    f"{where}; predicted {ptext}, observed {otext}.",
                    ptext,
                    otext,
                    part,
                    w.conditions,
                )
        if cand.status == "agrees":
            return cand
        if best is None or (best.status == "undetermined" and cand.status == "diverges" and not w.conditions):
            best = cand
    assert best is not None
    return best


def predict_conversations(
    convs: list[Conversation], packets: list[Packet], snaps: tuple[Snapshot, ...], topo: Topology
) -> list[Conversation]:
    """Attach a prediction to each conversation whose first packet can be simulated from the snapshots."""
    if not topo.routes or not (topo.rulesets or topo.nft):
        return convs  # nothing to simulate with
    seen = {(h.stage, h.event.hook.table or "?") for p in packets for h in p.hops}
    by_id = {p.id: p for p in packets}
    out = []
    for n, c in enumerate(convs):
        first = by_id.get(c.packets[0]) if c.packets else None
        q = query_for(first) if first is not None and first.role == "request" and n < MAX_CONVERSATIONS else None
        if q is None or first is None:
            out.append(c)
            continue
        try:
            sim = simulate(snaps, q, topo)
        except (SimulateError, ValueError) as exc:  # ValueError: an address the snapshots cannot place
            out.append(replace(c, prediction=Prediction("undetermined", f"Not simulated: {exc}.", "", "")))
            continue
        out.append(replace(c, prediction=compare(sim.request, first, seen)))
    return out
