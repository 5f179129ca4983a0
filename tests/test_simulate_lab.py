"""Every lab scenario, simulated from its checked-in snapshots alone, must match what the kernel logged.

The samples under samples/lab-* are real captures (reportgen lab); the kernel's lines are the ground
truth. The request (and the reply, where the trace has one) is simulated from the snapshots and its
hook places and outcome are compared with the explained trace of the same sample.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reportgen.model import Packet, Report, VerdictCode
from reportgen.pipeline import build_report
from reportgen.simulate import Query, simulate
from reportgen.simulate.compare import compare, observed_places, predicted_places
from reportgen.sources.case import load_spec

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
C1, INET = "container1", "203.0.113.10"

# What each scenario sent (reportgen/lab/scenarios.py), and the outcome the kernel showed.
LAB = {
    "lab-bridge-nf-off": (Query(C1, "container2"), VerdictCode.DELIVERED_TO_PORT),
    "lab-container-to-container": (Query(C1, "172.17.0.3"), VerdictCode.DELIVERED_TO_PORT),
    "lab-container-to-internet": (Query(C1, INET), VerdictCode.FORWARDED_OUT),
    "lab-host-to-container": (Query("host", "172.17.0.2"), VerdictCode.DELIVERED_TO_PORT),
    "lab-ipv6-container-to-container": (Query(C1, "fd00:17::3"), VerdictCode.DELIVERED_TO_PORT),
    "lab-legacy-trace-container-to-internet": (Query(C1, INET), VerdictCode.FORWARDED_OUT),
    "lab-mixed-ebtables-nft-trace": (Query(C1, "172.17.0.3"), VerdictCode.DELIVERED_TO_PORT),
    "lab-nft-log-container-to-internet": (Query(C1, INET), VerdictCode.FORWARDED_OUT),
    "lab-nft-trace-tcp-to-internet": (Query(C1, INET, "tcp", 80), VerdictCode.FORWARDED_OUT),
    "lab-published-port": (Query(INET, "198.51.100.10", "tcp", 8080), VerdictCode.DELIVERED_TO_PORT),
    "lab-tcp-dropped": (Query(C1, INET, "tcp", 81), VerdictCode.DROPPED_BY_RULE),
    "lab-tcp-rejected": (Query(C1, INET, "tcp", 82), VerdictCode.REJECTED),
    "lab-tcp-to-internet": (Query(C1, INET, "tcp", 80), VerdictCode.FORWARDED_OUT),
    "lab-udp-to-internet": (Query(C1, INET, "udp", 53), VerdictCode.FORWARDED_OUT),
    "lab-xtables-trace-tcp-to-internet": (Query(C1, INET, "tcp", 80), VerdictCode.FORWARDED_OUT),
    # The traps (reportgen/lab/scenarios_traps.py).
    "lab-trap-nft-forward-drop": (Query(C1, INET), VerdictCode.DROPPED_BY_POLICY),
    "lab-trap-docker-user-allowlist": (
        Query("198.51.100.1", "198.51.100.10", "tcp", 8080),
        VerdictCode.DROPPED_BY_RULE,
    ),
    "lab-trap-published-port-from-host": (Query("host", "198.51.100.10", "tcp", 8080), VerdictCode.DELIVERED_TO_PORT),
    "lab-trap-ipv6-container-to-outside": (Query(C1, "2001:db8:2::10"), VerdictCode.FORWARDED_OUT),
    # The public case (reportgen/lab/scenarios_public.py): ufw denies incoming, yet the snapshot walk
    # takes the published port's SYN through Docker's DNAT and FORWARD rules to container1, as the kernel did.
    "lab-public-ufw-docker-published-port": (
        Query("198.51.100.1", "198.51.100.10", "tcp", 8080),
        VerdictCode.DELIVERED_TO_PORT,
    ),
    # kube-proxy's own rules: the NodePort SYN is DNAT'd by KUBE-SEP-OYPFS5VJICHGATKP to container2 and
    # accepted in FORWARD by KUBE-FORWARD's mark rule, past Docker's FORWARD policy DROP.
    "lab-public-kube-proxy-nodeport": (
        Query("198.51.100.1", "198.51.100.10", "tcp", 3003),
        VerdictCode.DELIVERED_TO_PORT,
    ),
}
# Scenarios another branch adds (kube-proxy ClusterIP, hairpin NAT): checked once their samples exist.
LAB.update(
    {
        "lab-clusterip": (Query(C1, "10.96.0.10", "tcp", 80), VerdictCode.DELIVERED_TO_PORT),
        "lab-hairpin": (Query(C1, "198.51.100.10", "tcp", 8080), VerdictCode.DELIVERED_TO_PORT),
    }
)
# Built to diverge: the drop rule that stopped the ping was deleted before the snapshot was taken.
DIVERGES = {"lab-trap-rule-removed-after-trace": (Query(C1, INET), VerdictCode.FORWARDED_OUT)}
PRESENT = sorted(d.name for d in SAMPLES.glob("lab-*") if d.is_dir())


def _observed(report: Report, role: str) -> Packet | None:
    """The first request (or reply) the trace shows; frames without IP fields count by position."""
    for p in report.packets:
        if p.role == role:
            return p
    loose = [p for p in report.packets if p.role == "unknown"]
    index = 0 if role == "request" else 1
    return loose[index] if len(loose) > index else None


def test_every_lab_sample_is_covered() -> None:
    assert set(PRESENT) <= set(LAB) | set(DIVERGES)


@pytest.mark.parametrize("case", sorted(set(LAB) & set(PRESENT)))
def test_lab_prediction_matches_kernel(case: str) -> None:
    query, code = LAB[case]
    report = build_report(load_spec([SAMPLES / case]))
    sim = simulate(report.snapshots, query, report.topology)
    seen = {(h.stage, h.event.hook.table or "?") for p in report.packets for h in p.hops}
    assert len(sim.request) == 1, [w.conditions for w in sim.request]  # nothing undecidable on these rulesets
    assert sim.verdicts == (code,)
    request = _observed(report, "request")
    assert request is not None
    got = compare(sim.request, request, seen)
    assert got.status == "agrees", (got.summary, predicted_places(sim.request[0], seen), observed_places(request))
    reply = _observed(report, "reply")
    if code in (VerdictCode.DROPPED_BY_RULE, VerdictCode.DROPPED_BY_POLICY, VerdictCode.REJECTED):
        assert not sim.replies
        return
    assert reply is not None and sim.replies
    got = compare(tuple(w for _, w in sim.replies), reply, seen)
    assert got.status == "agrees", (got.summary, predicted_places(sim.replies[0][1], seen), observed_places(reply))


def test_the_diverging_scenario_shows_where_prediction_and_trace_part() -> None:
    ((case, (query, code)),) = DIVERGES.items()
    report = build_report(load_spec([SAMPLES / case]))
    sim = simulate(report.snapshots, query, report.topology)
    assert sim.verdicts == (code,)  # the snapshot no longer has the drop rule
    pred = report.conversations[0].prediction
    assert pred is not None and pred.status == "diverges"
    assert pred.stage == "ip-fwd"
    assert pred.summary.startswith("The ruleset predicts ACCEPT by FORWARD rule 6 (iptables-save.txt:")
    assert (
        "last seen at filter FORWARD: another table at this hook, or a rule change after the snapshot" in pred.summary
    )


@pytest.mark.parametrize("case", sorted(set(PRESENT) - set(DIVERGES)))
def test_report_on_every_lab_case_agrees(case: str) -> None:
    """`report` compares each conversation's first packet with the prediction; the lab agrees everywhere."""
    report = build_report(load_spec([SAMPLES / case]))
    statuses = {c.id: c.prediction.status for c in report.conversations if c.prediction is not None}
    assert set(statuses.values()) <= {"agrees"}, statuses
    assert len(statuses) == len(report.conversations)
