"""DNAT followed by bridging, on real kernel output: a kube-proxy ClusterIP and Docker hairpin NAT.

The checked-in samples (samples/lab-clusterip, samples/lab-hairpin) were captured by `reportgen lab`
on this kernel; the lab tests capture both scenarios again and assert the same facts.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml
from conftest import LAB_MARKS, SAMPLES

from reportgen.lab.scenarios import SCENARIOS
from reportgen.model import Report, VerdictCode
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

KUBE_DNAT = "-A KUBE-SEP-WEB4POD0000000 -p tcp -m comment --comment \"default/web\" -m tcp -j DNAT --to-destination " \
    "172.17.0.3:80"
HAIRPIN_DNAT = "-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80"
HAIRPIN_MASQ = "-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE"


def _stages(p):
    return [h.stage for h in p.hops]


def assert_clusterip(r: Report) -> None:
    assert r.lines_used == r.lines_total
    # One conversation: the pre-DNAT (10.96.0.10) and post-DNAT (172.17.0.3) lines are one packet each.
    assert len(r.conversations) == 1
    syn, synack = r.packets[:2]
    assert syn.role == "request" and synack.role == "reply"
    stages = _stages(syn)
    assert stages[:2] == ["br-pre", "ip-pre"] and "br-fwd" in stages and stages[-1] in ("ip-post-br", "br-post")
    assert {h.event.record.dst for h in syn.hops if h.event.record.dst} == {"10.96.0.10", "172.17.0.3"}
    [dnat] = [n for n in syn.nat if n.type == "DNAT"]
    assert (dnat.direction, dnat.by, str(dnat.before), str(dnat.after)) == ("original", "rule", "10.96.0.10:80",
                                                                          "172.17.0.3:80")
    assert dnat.rule == KUBE_DNAT and dnat.rule_ref is not None
    # KUBE-MARK-MASQ marked it 0x4000 (MARK= in the LOG line), so KUBE-POSTROUTING masquerades it.
    [masq] = [n for n in syn.nat if n.type == "MASQUERADE"]
    assert masq.rule is not None and masq.rule.startswith("-A KUBE-POSTROUTING") and masq.rule.endswith("MASQUERADE")
    assert masq.after.addr == "172.17.0.1"
    bridged_again = next(h for h in syn.hops if h.stage == "br-fwd")
    assert "bridged_dnat" in " ".join(bridged_again.explanation)
    assert syn.verdict.code == VerdictCode.DELIVERED_TO_PORT and "container2" in syn.verdict.explanation
    # The reply: conntrack undoes the masquerade (destination 172.17.0.1 -> the client), never "DNAT by rule".
    back = {n.field: n for n in synack.nat}
    assert back["destination"].direction == "reply" and back["destination"].by == "conntrack"
    assert (str(back["destination"].before.addr), back["destination"].after.addr) == ("172.17.0.1", "172.17.0.2")
    assert back["source"].direction == "reply" and str(back["source"].after) == "10.96.0.10:80"
    assert not any(n.by == "rule" for p in r.packets if p.role == "reply" for n in p.nat)
    assert synack.verdict.code == VerdictCode.DELIVERED_TO_PORT and "container1" in synack.verdict.explanation


def assert_hairpin(r: Report) -> None:
    assert r.lines_used == r.lines_total
    assert len(r.conversations) == 1
    syn, synack = r.packets[:2]
    assert (syn.role, synack.role) == ("request", "reply")
    # In and out by the same bridge port: the frame comes back to the container that sent it.
    port = syn.hops[0].event.record.in_dev
    assert syn.verdict.code == VerdictCode.DELIVERED_TO_PORT and syn.verdict.where == port
    assert "br-fwd" in _stages(syn)
    nats = {n.type: n for n in syn.nat}
    assert nats["DNAT"].rule == HAIRPIN_DNAT and str(nats["DNAT"].before) == "198.51.100.10:8080"
    assert nats["MASQUERADE"].rule == HAIRPIN_MASQ and nats["MASQUERADE"].after.addr == "172.17.0.1"
    back = {n.field: n for n in synack.nat}
    assert back["destination"].by == "conntrack" and back["destination"].after.addr == "172.17.0.2"
    assert str(back["source"].after) == "198.51.100.10:8080" and back["source"].direction == "reply"


def test_clusterip_sample():
    assert_clusterip(build_report(load_spec([SAMPLES / "lab-clusterip"])))


def test_hairpin_sample():
    assert_hairpin(build_report(load_spec([SAMPLES / "lab-hairpin"])))


def _lab_namespaces(tag: str) -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith(f"rglab-{tag}-")}


@LAB_MARKS[0]
@LAB_MARKS[1]
@pytest.mark.parametrize(("name", "check"), [("clusterip", assert_clusterip), ("hairpin", assert_hairpin)])
def test_lab_captures_again(name, check, tmp_path):
    from reportgen.lab.runner import run_scenario

    case = run_scenario(next(s for s in SCENARIOS if s.name == name), tmp_path)
    tag = yaml.safe_load((case / "case.yaml").read_text())["lab"]["run_tag"]
    assert not _lab_namespaces(tag), "the lab left its namespaces behind"
    check(build_report(load_spec([case])))
