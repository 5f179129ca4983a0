"""Turn simulated walks into the report model a trace produces: packets of predicted hops.

A predicted hop's event carries a synthetic record: no kernel line exists, so its line reference
names the snapshot rule that decided at that chain (the iptables-save or nft file and line), or the
chain's declaration when its policy decided. Every hop is marked ``predicted``.
"""

from __future__ import annotations

from reportgen.model import (
    Conversation,
    Endpoint,
    Event,
    HitKind,
    HookRef,
    Hop,
    LineRef,
    LogRecord,
    Packet,
    RuleHit,
    Skipped,
    Verdict,
)
from reportgen.netfilter import BRIDGE, STAGES
from reportgen.parsers.ruleset import Rule
from reportgen.simulate.walk import ChainHop, Outcome, Walk, rule_ref


def model_verdict(o: Outcome) -> Verdict:
    """The report's Verdict for a predicted outcome (the code's word, where, why, the deciding rule)."""
    evidence = (
        f"predicted from the snapshot: rule '{o.rule.text}' ({o.ref})"
        if o.rule is not None
        else (f"predicted from the snapshot ({o.ref})" if o.ref else "predicted from the snapshot")
    )
    return Verdict(
        code=o.code,
        where=o.where,
        explanation=f"Predicted: {o.explanation}",
        evidence=evidence,
        rule=o.rule.text if o.rule is not None else None,
        rule_ref=o.ref,
    )


def _hit(rule: Rule, hop: ChainHop, verdict: str) -> RuleHit:
    ref = rule_ref(rule, hop.chain.rules)
    return RuleHit(rule.table, rule.chain, HitKind.RULE, verdict, rule.text, str(rule.num), ref, ref)


def _hits(hop: ChainHop) -> tuple[RuleHit, ...]:
    out = []
    for r in hop.hits:
        decides = r is hop.rule
        out.append(
            _hit(
                r,
                hop,
                hop.verdict.lower() if decides else ("continue" if r.target in (None, "LOG") else f"jump {r.target}"),
            )
        )
    if hop.rule is None:
        ref = LineRef(hop.chain.source, hop.chain.line)
        out.append(RuleHit(hop.chain.table, hop.chain.chain, HitKind.POLICY, hop.verdict.lower(), "", None, ref, ref))
    return tuple(out)


def _decision(hop: ChainHop, next_same_hook: bool) -> str:
    bc = hop.chain
    if hop.rule is not None:
        what = (
            f"{bc.label}: rule {hop.rule.num} of {hop.rule.chain} ({bc.source}:{hop.rule.line}) "
            f"→ {hop.verdict}: {hop.rule.text}"
        )
    else:
        what = f"{bc.label}: no rule decided; the chain's policy {hop.verdict} ({bc.source}:{bc.line})"
    if hop.verdict in ("ACCEPT", "DNAT", "SNAT", "MASQUERADE", "REDIRECT") and next_same_hook:
        # A NAT target returns NF_ACCEPT after the rewrite (nf_nat_setup_info), so it too ends only
        # this base chain.
        how = "An accept" if hop.verdict == "ACCEPT" else f"{hop.verdict}, an accept after its rewrite,"
        what += (
            f". {how} ends only this base chain; the next base chain at this hook still runs "
            "(nf_hook_slow, net/netfilter/core.c)"
        )
    return what + "."


def _logs(hop: ChainHop) -> list[str]:
    return [
        f"LOG rule {r.num} of {r.chain} matches: the kernel would log prefix {r.arg('--log-prefix')!r}."
        for r in hop.hits
        if r.target == "LOG" and r.arg("--log-prefix") is not None
    ]


def _record(hop: ChainHop, ref: LineRef, text: str) -> LogRecord:
    p = hop.pkt
    return LogRecord(
        ref=ref,
        text=text,
        stamp=None,
        fmt="predicted",
        prefix="",
        in_dev=p.in_dev,
        out_dev=p.out_dev,
        physin=p.physin,
        physout=p.physout,
        mac_src=p.mac_src,
        mac_dst=p.mac_dst,
        l3=p.family,
        src=p.src,
        dst=p.dst,
        proto=p.proto,
        sport=None if p.proto.startswith("ICMP") else p.sport,
        dport=None if p.proto.startswith("ICMP") else p.dport,
        icmp_type=p.icmp_type,
        tcp_flags=p.tcp_flags,
        mark=hex(p.mark) if p.mark else None,
    )


def hops_of(w: Walk) -> tuple[Hop, ...]:
    """The model hops of one walk, each marked predicted."""
    out = []
    for n, hop in enumerate(w.hops, start=1):
        bc = hop.chain
        ref = rule_ref(hop.rule, bc.rules) if hop.rule is not None else LineRef(bc.source, bc.line)
        nxt = w.hops[n] if n < len(w.hops) else None
        same = nxt is not None and nxt.stage == hop.stage
        fam = BRIDGE if bc.family == BRIDGE else hop.pkt.family
        hook = HookRef(fam, bc.hook, bc.table, bc.chain, "simulated")
        decision = _decision(hop, same)
        ev = Event(_record(hop, ref, f"predicted: {decision}"), hook, _hits(hop))
        text = (*hop.notes, *_logs(hop), decision)
        out.append(Hop(n, ev, hop.stage, text, predicted=True))
    return tuple(out)


def path_of(stages: tuple[str, ...]) -> str:
    """The path class of a stage sequence, in the explainer's words."""
    st = set(stages)
    if "ip-out" in st:
        return "local-out"
    if "ip-in" in st:
        return "local-in"
    if st & {"ip-fwd", "ip-post"}:
        return "routed"
    if st & {"br-fwd", "br-post"}:
        return "bridged"
    if "br-in" in st:
        return "bridged-to-host"
    return "undetermined"


def summary_of(w: Walk, first: Walk) -> str:
    p = first.hops[0].pkt if first.hops else w.pkt
    assert p is not None
    if p.proto.startswith("ICMP"):
        kind = {8: "echo request", 0: "echo reply", 128: "echo request", 129: "echo reply"}.get(p.icmp_type or -1, "")
        what = f"{p.proto} {kind} {p.src} → {p.dst}"
    else:
        flags = f" [{' '.join(p.tcp_flags)}]" if p.tcp_flags else ""
        what = f"{p.proto} {p.src}:{p.sport} → {p.dst}:{p.dport}{flags}"
    return f"{what} (predicted)"


def _bare_stages(w: Walk) -> tuple[Skipped, ...]:
    """Stages the walk passed where no table has a base chain: shown so the whole path is drawn."""
    with_chain = {h.stage for h in w.hops}
    family = w.pkt.family if w.pkt is not None else "ipv4"
    return tuple(
        Skipped(
            stage,
            BRIDGE if STAGES[stage].family_kind == "bridge" else family,
            "-",
            STAGES[stage].hook,
            "no-chain",
            "passed: the snapshots have no base chain of any table at this hook, so nothing "
            "filters or translates the packet here",
        )
        for stage in dict.fromkeys(w.stages)
        if stage not in with_chain
    )


def packet_of(pid: str, conv: str, role: str, w: Walk) -> Packet:
    assert w.outcome is not None
    summary = summary_of(w, w)
    if w.conditions:
        summary += " if " + "; and ".join(w.conditions)
    return Packet(
        id=pid,
        conversation=conv,
        role=role,
        path=path_of(w.stages),
        summary=summary,
        hops=hops_of(w),
        nat=w.nats,
        skipped=_bare_stages(w),
        verdict=model_verdict(w.outcome),
    )


def conversation_of(cid: str, proto: str, src: Endpoint, dst: Endpoint, packets: list[Packet]) -> Conversation:
    return Conversation(cid, proto, f"{proto} {src} ↔ {dst} (predicted)", (src, dst), tuple(p.id for p in packets))
