"""Public cases reproduced in the lab and captured on this kernel (reportgen/lab/scenarios_public.py).

"Docker bypasses UFW" with ufw 0.36.2's own rules, and kube-proxy's own iptables rules on a Docker node
(a NodePort and a ClusterIP to one pod): the facts the capture proves, and what the report must (and must
not) say about them. The checked-in captures are samples/lab-public-ufw-docker-published-port and
samples/lab-public-kube-proxy-nodeport; these tests capture them again.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import LAB_MARKS

from reportgen.lab.scenarios_public import BLOCKED_PORT, CLUSTER_IP, NODE_PORT, PUBLIC, SEP_CHAIN
from reportgen.model import Nat, Packet, Report, VerdictCode
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

pytestmark = LAB_MARKS
UFW = next(s for s in PUBLIC if s.name == "public-ufw-docker-published-port")
KUBE = next(s for s in PUBLIC if s.name == "public-kube-proxy-nodeport")
KUBE_LOGGED = next(s for s in PUBLIC if s.name == "public-kube-proxy-nodeport-logged")
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture(scope="module")
def ufw_case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from reportgen.lab.runner import run_scenario

    yield run_scenario(UFW, tmp_path_factory.mktemp("ufw"))


def _to_port(report: Report, port: int) -> list[Packet]:
    out = []
    for p in report.packets:
        first = p.hops[0].event.record
        if first.dst == "198.51.100.10" and first.dport == port:
            out.append(p)
    return out


def test_published_port_bypasses_ufw(ufw_case: Path) -> None:
    report = build_report(load_spec([ufw_case]))
    syn = _to_port(report, 8080)[0]
    # Docker's DNAT in nat PREROUTING, then FORWARD: ufw's INPUT chains never log it.
    assert syn.nat[0].type == "DNAT" and "--to-destination 172.17.0.2:80" in (syn.nat[0].rule or "")
    assert syn.verdict is not None and syn.verdict.code is VerdictCode.DELIVERED_TO_PORT
    assert not any(h.event.record.prefix.startswith("[UFW") for p in _to_port(report, 8080) for h in p.hops)
    assert {h.event.hook.hook for h in syn.hops} >= {"PREROUTING", "FORWARD", "POSTROUTING"}


def test_blocked_port_is_logged_by_ufw_and_dropped(ufw_case: Path) -> None:
    report = build_report(load_spec([ufw_case]))
    syns = _to_port(report, BLOCKED_PORT)
    assert len(syns) >= 2, "the client did not retransmit its SYN"  # nothing answered it
    for p in syns:
        ufw = [h for h in p.hops if h.event.record.prefix.startswith("[UFW BLOCK]")]
        assert ufw and ufw[-1].event.hook.table == "filter" and ufw[-1].event.hook.hook == "INPUT"
        # Not "the rule it names": the snapshot shows the LOG rule in ufw-after-logging-input, the
        # return to INPUT and INPUT's policy DROP (ufw's DEFAULT_INPUT_POLICY).
        assert p.verdict is not None and p.verdict.code is VerdictCode.DROPPED_BY_POLICY, p.verdict
        assert p.verdict.evidence.startswith("policy DROP of filter INPUT")
        assert "printed '[UFW BLOCK]' (ufw-after-logging-input rule 1" in p.verdict.explanation


def _without_ufw_lines(case: Path, dest: Path, rulesets: bool) -> Path:
    shutil.copytree(case, dest)
    log = dest / "dmesg.log"
    log.write_text("".join(ln for ln in log.read_text().splitlines(True) if "[UFW " not in ln))
    if not rulesets:
        spec = yaml.safe_load((dest / "case.yaml").read_text())
        rules = [a for a in spec["attachments"] if a["kind"] in ("iptables-save", "nft-ruleset")]
        assert rules, "the capture has no ruleset to take away"
        for a in rules:
            (dest / a["file"]).unlink()
        spec["attachments"] = [a for a in spec["attachments"] if a not in rules]
        (dest / "case.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def test_without_ufw_lines_the_snapshot_finds_the_policy(ufw_case: Path, tmp_path: Path) -> None:
    """The lab's LOG rules sit at the top of filter INPUT, before ufw's. Evaluating ufw's rules from
    there (its -m addrtype matches decided from the ip addr snapshot) reaches INPUT's policy DROP; it
    used to say "3 SYNs delivered to the local process"."""
    report = build_report(load_spec([_without_ufw_lines(ufw_case, tmp_path / "case", rulesets=True)]))
    syns = _to_port(report, BLOCKED_PORT)
    assert syns
    for p in syns:
        assert p.verdict is not None and p.verdict.code is VerdictCode.DROPPED_BY_POLICY, p.verdict
        assert p.verdict.evidence.startswith("policy DROP of filter INPUT")


def test_without_ufw_lines_or_rulesets_input_is_not_called_delivery(ufw_case: Path, tmp_path: Path) -> None:
    """A line at the top of filter INPUT shows the SYN reached INPUT, not that it was delivered (it was
    not: no SYN-ACK or RST came back): without a ruleset the report must say it does not know."""
    report = build_report(load_spec([_without_ufw_lines(ufw_case, tmp_path / "case", rulesets=False)]))
    syns = _to_port(report, BLOCKED_PORT)
    assert syns
    for p in syns:
        assert p.verdict is not None and p.verdict.code is VerdictCode.LAST_SEEN, p.verdict
        assert "not what the rest of the chain did" in p.verdict.explanation
    # The published port's SYN is not delivered locally, and its container answered: it keeps its verdict.
    assert _to_port(report, 8080)[0].verdict.code is VerdictCode.DELIVERED_TO_PORT  # type: ignore[union-attr]


# -- kube-proxy: a NodePort and a ClusterIP on a Docker node ---------------------------------------------
# The kernel's own evidence is the xtables-monitor trace: every rule the packet hit, with its verdict.


@pytest.fixture(scope="module")
def kube_case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from reportgen.lab.runner import run_scenario

    yield run_scenario(KUBE, tmp_path_factory.mktemp("kube"))


@pytest.fixture(scope="module")
def kube_logged_case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from reportgen.lab.runner import run_scenario

    yield run_scenario(KUBE_LOGGED, tmp_path_factory.mktemp("kubelog"))


def _first(report: Report, dst: str, dport: int) -> Packet:
    """The SYN the client sent to dst:dport (its first line, before any NAT)."""
    for p in report.packets:
        first = p.hops[0].event.record
        if first.dst == dst and first.dport == dport and first.tcp_flags == ("SYN",):
            return p
    raise AssertionError(f"no SYN to {dst}:{dport}")


def _line(case: Path, nat: Nat) -> str:
    assert nat.rule_ref is not None
    return (case / nat.rule_ref.file).read_text().splitlines()[nat.rule_ref.line - 1]


def _check_service_dnat(case: Path, nat: Nat, hook: str) -> None:
    """The destination NAT is KUBE-SEP's DNAT rule, as the trace shows it ending the nat walk with accept;
    not the KUBE-EXT rule before it whose comment says "masquerade" and which only jumps to KUBE-MARK-MASQ."""
    assert (nat.type, nat.direction, nat.by, nat.hook, nat.field) == ("DNAT", "original", "rule", hook, "destination")
    assert (nat.after.addr, nat.after.port) == ("172.17.0.3", 80)
    assert (
        nat.rule is not None and f"-A {SEP_CHAIN} " in nat.rule and "-j DNAT --to-destination 172.17.0.3:80" in nat.rule
    )
    line = _line(case, nat)
    assert f"nat:{SEP_CHAIN}:rule:" in line and ":ACCEPT " in line, line


def _check_masquerade(case: Path, nat: Nat) -> None:
    """KUBE-POSTROUTING's MASQUERADE, reached because KUBE-MARK-MASQ set mark 0x4000, rewrote the source
    to docker0's address."""
    assert (nat.type, nat.direction, nat.hook, nat.field) == (
        "MASQUERADE",
        "original",
        "ipv4 nat POSTROUTING",
        "source",
    )
    assert nat.after.addr == "172.17.0.1"
    assert nat.rule is not None and "-A KUBE-POSTROUTING " in nat.rule and nat.rule.endswith("-j MASQUERADE")
    assert "nat:KUBE-POSTROUTING:rule:" in _line(case, nat)


def _rules(p: Packet, hook: str) -> list[str]:
    return [f"{r.verdict} {r.text}" for h in p.hops if h.event.hook.hook == hook for r in h.event.rules]


def _check_nodeport(case: Path) -> None:
    report = build_report(load_spec([case]))
    syn = _first(report, "198.51.100.10", NODE_PORT)
    assert syn.role == "request" and syn.path == "routed"
    dnat, masq = syn.nat
    _check_service_dnat(case, dnat, "ipv4 nat PREROUTING")
    _check_masquerade(case, masq)
    # The chain walk the trace shows: KUBE-NODEPORTS -> KUBE-EXT (mark) -> KUBE-SVC -> KUBE-SEP.
    pre = _rules(syn, "PREROUTING")
    assert any(r.startswith("jump:KUBE-EXT-X27LE4BHSL4DOUIK ") and f"--dport {NODE_PORT}" in r for r in pre), pre
    assert any("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000" in r for r in pre), pre
    # Docker's FORWARD policy is DROP; KUBE-FORWARD accepted the SYN by the mark KUBE-MARK-MASQ set.
    fwd = _rules(syn, "FORWARD")
    assert any(r.startswith("accept ") and "--mark 0x4000/0x4000 -j ACCEPT" in r for r in fwd), fwd
    assert syn.verdict is not None and syn.verdict.code is VerdictCode.FORWARDED_OUT
    assert syn.verdict.where == "docker0"
    conv = next(c for c in report.conversations if syn.id in c.packets)
    assert conv.prediction is not None and conv.prediction.status == "agrees"
    # The reply: conntrack undoes both translations; the DNAT it undoes is still KUBE-SEP's.
    reply = next(q for q in report.packets if q.id in conv.packets and q.role == "reply")
    undone = {n.type: n for n in reply.nat}
    assert {n.by for n in reply.nat} == {"conntrack"} and set(undone) == {"DNAT", "MASQUERADE"}
    assert (undone["DNAT"].after.addr, undone["DNAT"].after.port) == ("198.51.100.10", NODE_PORT)
    assert undone["DNAT"].rule is not None and f"-A {SEP_CHAIN} " in undone["DNAT"].rule
    assert undone["MASQUERADE"].after.addr == "198.51.100.1"
    assert any("RELATED,ESTABLISHED -j ACCEPT" in r for r in _rules(reply, "FORWARD"))


def _check_clusterip(case: Path) -> None:
    report = build_report(load_spec([case]))
    syn = _first(report, CLUSTER_IP, 80)
    assert syn.role == "request" and syn.path == "local-out"
    dnat, masq = syn.nat
    _check_service_dnat(case, dnat, "ipv4 nat OUTPUT")  # nat OUTPUT, not PREROUTING: the host's own packet
    _check_masquerade(case, masq)
    out = _rules(syn, "OUTPUT")
    assert any(r.startswith("jump:KUBE-MARK-MASQ ") and "! -s 172.17.0.0/16" in r for r in out), out
    conv = next(c for c in report.conversations if syn.id in c.packets)
    reply = next(p for p in report.packets if p.id in conv.packets and p.role == "reply")
    assert reply.verdict is not None and reply.verdict.code is VerdictCode.DELIVERED_LOCAL
    assert {n.type for n in reply.nat} == {"DNAT", "MASQUERADE"}


def test_nodeport_is_dnat_by_kube_sep_and_accepted_by_kube_forward(kube_case: Path) -> None:
    _check_nodeport(kube_case)


def test_clusterip_from_the_host_is_dnat_in_nat_output(kube_case: Path) -> None:
    _check_clusterip(kube_case)


def test_checked_in_kube_proxy_sample() -> None:
    """The same facts in samples/lab-public-kube-proxy-nodeport. Before the fix, the report said
    "MASQUERADE to 172.17.0.3:80" by the KUBE-EXT rule (its comment reads "masquerade traffic for ...")."""
    case = SAMPLES / "lab-public-kube-proxy-nodeport"
    _check_nodeport(case)
    _check_clusterip(case)


def test_logged_and_traced_nodeport_keeps_the_dnat_rule(kube_logged_case: Path) -> None:
    """With LOG lines beside the trace, the NAT is still the one the trace shows (LOG lines name no rule)."""
    report = build_report(load_spec([kube_logged_case]))
    for dst, port, hook in (("198.51.100.10", NODE_PORT, "PREROUTING"), (CLUSTER_IP, 80, "OUTPUT")):
        syn = _first(report, dst, port)
        _check_service_dnat(kube_logged_case, syn.nat[0], f"ipv4 nat {hook}")
        _check_masquerade(kube_logged_case, syn.nat[1])


def test_a_service_named_masquerade_is_still_dnat(tmp_path: Path) -> None:
    """kube-proxy puts the Service's name in every rule's comment, the DNAT rule's too: a Service called
    "masquerade" must not turn KUBE-SEP's DNAT into a MASQUERADE (only the target says what a rule does)."""
    case = tmp_path / "case"
    shutil.copytree(SAMPLES / "lab-public-kube-proxy-nodeport", case)
    for name in ("xtables-monitor.txt", "iptables-save.txt"):
        f = case / name
        f.write_text(f.read_text().replace("ns3/svc3:p80", "ns3/masquerade:p80"))
    report = build_report(load_spec([case]))
    nat = _first(report, "198.51.100.10", NODE_PORT).nat[0]
    assert nat.rule is not None and '--comment "ns3/masquerade:p80"' in nat.rule
    _check_service_dnat(case, nat, "ipv4 nat PREROUTING")


def test_the_local_reply_is_un_dnat_at_nat_input(kube_case: Path) -> None:
    """The ClusterIP's reply is delivered to the host's socket: conntrack restores its source (the
    ClusterIP) at nat INPUT, the source-NAT hook of local delivery; the packet never reaches POSTROUTING.
    The NodePort's reply is forwarded, and restored at nat POSTROUTING."""
    for case in (kube_case, SAMPLES / "lab-public-kube-proxy-nodeport"):
        report = build_report(load_spec([case]))
        for dst, port, hook, path in (
            (CLUSTER_IP, 80, "ipv4 nat INPUT", "local-in"),
            ("198.51.100.10", NODE_PORT, "ipv4 nat POSTROUTING", "routed"),
        ):
            syn = _first(report, dst, port)
            conv = next(c for c in report.conversations if syn.id in c.packets)
            reply = next(p for p in report.packets if p.id in conv.packets and p.role == "reply")
            undnat = next(n for n in reply.nat if n.type == "DNAT")
            assert reply.path == path
            assert (undnat.hook, undnat.field, undnat.after.addr, undnat.after.port) == (hook, "source", dst, port)
            assert not any(h.event.hook.hook == "POSTROUTING" for h in reply.hops) or path == "routed"
