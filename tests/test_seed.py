"""Acceptance on the seed blog post's three scenarios: what a reader of the report must see."""

from __future__ import annotations

import pytest

from reportgen.model import VerdictCode

EXPECTED_LINES = {
    "seed-container-to-container": [list(range(1, 12)), list(range(12, 21))],
    "seed-host-to-container": [list(range(1, 10)), list(range(10, 17))],
    "seed-container-to-internet": [list(range(1, 9)), list(range(9, 16))],
}


@pytest.mark.parametrize("case", sorted(EXPECTED_LINES))
def test_every_packet_follows_the_seed_lines_in_order(seed_reports, case):
    report = seed_reports[case]
    assert [[h.event.record.ref.line for h in p.hops] for p in report.packets] == EXPECTED_LINES[case]
    assert report.lines_used == report.lines_total and not report.unused
    assert [p.role for p in report.packets] == ["request", "reply"]
    assert len(report.conversations) == 1


def _skips(packet):
    return {(s.family, s.table, s.hook): s.reason for s in packet.skipped}


def test_container_to_container_reply_skips_nat_because_of_conntrack(seed_reports):
    req, rep = seed_reports["seed-container-to-container"].packets
    assert req.path == rep.path == "bridged"
    assert _skips(rep)[("ipv4", "nat", "PREROUTING")] == "conntrack"
    assert _skips(rep)[("ipv4", "nat", "POSTROUTING")] == "conntrack"
    assert ("ipv4", "nat", "PREROUTING") not in _skips(req)
    assert rep.verdict.code == VerdictCode.DELIVERED_TO_PORT and rep.verdict.where == "veth694b3b7"
    assert "Delivered to container1 via veth694b3b7 (port of docker0)" in rep.verdict.explanation
    bridged = [h for h in req.hops if h.stage == "br-fwd"][0]
    assert "02:42:ac:11:00:03 is learned on port veth8f77b15" in bridged.explanation[0]


def test_host_to_container_paths(seed_reports):
    req, rep = seed_reports["seed-host-to-container"].packets
    assert (req.path, rep.path) == ("local-out", "local-in")
    assert req.verdict.code == VerdictCode.DELIVERED_TO_PORT and req.verdict.where == "vethe9baedc"
    assert rep.verdict.code == VerdictCode.DELIVERED_LOCAL and rep.verdict.where == "local process"
    assert _skips(rep)[("ipv4", "nat", "PREROUTING")] == "conntrack"


def test_container_to_internet_masquerade_and_routing(seed_reports):
    req, rep = seed_reports["seed-container-to-internet"].packets
    assert (req.path, rep.path) == ("routed", "routed")
    [masq] = req.nat
    assert (masq.type, masq.direction, masq.hook) == ("MASQUERADE", "original", "ipv4 nat POSTROUTING")
    assert (masq.before.addr, masq.after.addr) == ("172.17.0.2", "192.168.0.10")
    assert "ens33" in masq.evidence
    assert req.verdict.where == "ens33"
    [back] = rep.nat
    assert (back.direction, back.field, back.before.addr, back.after.addr) == (
        "reply", "destination", "192.168.0.10", "172.17.0.2")
    assert back.hook == "ipv4 nat PREROUTING"  # before routing, so the route to docker0 is used
    fwd = [h for h in rep.hops if h.stage == "ip-fwd"][0]
    assert any("192.168.0.10 → 172.17.0.2" in t for t in fwd.explanation)
    ttl = [h for h in req.hops if h.stage == "ip-fwd"][0]
    assert any("TTL 64 → 63" in t and "routed" in t for t in ttl.explanation)
    assert _skips(rep)[("ipv4", "nat", "PREROUTING")] == "conntrack"
    # The reply came in on ens33, not a bridge port: no bridge ingress hooks expected.
    assert rep.hops[0].stage == "ip-pre" and rep.hops[-1].event.record.out_dev == "veth67de56d"
    # The seed never logged filter FORWARD (Docker's accepts sit above the LOG rule): said, not hidden.
    assert _skips(req)[("ipv4", "filter", "FORWARD")] == "no-rule"
