"""Integration tests on real kernel output: the namespace lab runs every scenario, reportgen explains it.

They need root and network namespaces and skip with the reason otherwise. CI runs them as root.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LAB_MARKS

from reportgen.lab.netns import LOG_ALL_NETNS, STATE_DIR
from reportgen.lab.scenarios import SCENARIOS
from reportgen.model import VerdictCode
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

pytestmark = LAB_MARKS


def _lab_namespaces() -> set[str]:
    """Lab namespaces, except those of other live runs (other test sessions may run labs meanwhile):
    every run keeps a "<tag>.pid" file with its pid in the lab's marker folder while it lives."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    names = {ln.split()[0] for ln in out.splitlines() if ln.startswith("rglab-")}
    others = {p.stem for p in STATE_DIR.glob("*.pid") if _other_live(p)}
    return {n for n in names if n.split("-")[1] not in others}


def _other_live(pidfile: Path) -> bool:
    """True when a pid file names a live process that is neither this session nor its child."""
    try:
        pid = int(pidfile.read_text())
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, ValueError):
        return False
    return pid != os.getpid() and f"PPid:\t{os.getpid()}\n" not in status


def _log_all_netns() -> str | None:
    """nf_log_all_netns, or None while another run (not this session's) may have set it."""
    if any(_other_live(p) for p in STATE_DIR.glob("*.pid")):
        return None
    return LOG_ALL_NETNS.read_text()


def _log_all_netns_unchanged(before: str | None) -> bool:
    """nf_log_all_netns is back at its value before the test, when no other run blurs the comparison."""
    after = _log_all_netns()
    return before is None or after is None or after == before


@pytest.fixture(scope="module")
def lab_cases(tmp_path_factory):
    from reportgen.lab.runner import run_scenario

    out = tmp_path_factory.mktemp("lab")
    before_ns, before_log = _lab_namespaces(), _log_all_netns()
    cases = {sc.name: run_scenario(sc, out) for sc in SCENARIOS}
    assert not _lab_namespaces() - before_ns, "the lab left namespaces behind"
    assert _log_all_netns_unchanged(before_log), "nf_log_all_netns was not restored"
    return {name: build_report(load_spec([path])) for name, path in cases.items()}


def _stages(p):
    return [(h.stage, h.event.hook.table) for h in p.hops]


def _skips(p):
    return {(s.table, s.hook): s.reason for s in p.skipped}


def test_every_line_is_used(lab_cases):
    for name, r in lab_cases.items():
        assert r.lines_total > 0, name
        assert r.lines_used == r.lines_total, (name, [u.reason for u in r.unused])


def test_container_to_container(lab_cases):
    req, rep = lab_cases["container-to-container"].packets
    assert _stages(req) == [("br-pre", "nat"), ("ip-pre", "raw"), ("ip-pre", "mangle"), ("ip-pre", "nat"),
                            ("br-fwd", "filter"), ("ip-fwd-br", "mangle"), ("ip-fwd-br", "filter"),
                            ("br-post", "nat"), ("ip-post-br", "mangle"), ("ip-post-br", "nat")]
    assert (req.path, rep.path, rep.role) == ("bridged", "bridged", "reply")
    assert _skips(rep)[("nat", "PREROUTING")] == _skips(rep)[("nat", "POSTROUTING")] == "conntrack"
    assert req.verdict.code == VerdictCode.DELIVERED_TO_PORT and req.verdict.where.endswith("c2")


def test_host_to_container_real_ebtables_nft_order(lab_cases):
    req, rep = lab_cases["host-to-container"].packets
    assert (req.path, rep.path) == ("local-out", "local-in")
    # ebtables-nft registers filter OUTPUT at NF_BR_PRI_FILTER_BRIDGED (-200), so it runs before
    # nat OUTPUT (100): the reverse of the seed's legacy ebtables. The kernel's order is kept.
    assert [t for st, t in _stages(req) if st == "br-out"] == ["filter", "nat"]
    assert rep.verdict.code == VerdictCode.DELIVERED_LOCAL


def test_container_to_internet_masquerade(lab_cases):
    req, rep = lab_cases["container-to-internet"].packets
    [m] = req.nat
    assert (m.type, m.by, m.before.addr, m.after.addr) == ("MASQUERADE", "rule", "172.17.0.2", "198.51.100.10")
    [back] = rep.nat
    assert (back.direction, back.before.addr, back.after.addr) == ("reply", "198.51.100.10", "172.17.0.2")
    assert any("TTL 64 → 63" in t for h in req.hops for t in h.explanation)
    assert req.verdict.where == "ens33"
    assert m.rule == "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE" and m.conntrack


def test_tcp_to_internet_one_conversation(lab_cases):
    r = lab_cases["tcp-to-internet"]
    assert len(r.conversations) == 1 and len(r.packets) >= 7
    first, synack = r.packets[0], r.packets[1]
    assert first.summary.endswith("[SYN]") and first.nat[0].by == "rule"
    assert synack.role == "reply" and "SYN" in synack.summary and "ACK" in synack.summary
    later = [p for p in r.packets[2:] if p.role == "request"]
    assert later and all(p.nat and p.nat[0].by == "conntrack" for p in later)
    assert all(_skips(p)[("nat", "PREROUTING")] == "conntrack" for p in r.packets[1:])


def test_udp_masquerade_keeps_ports(lab_cases):
    req, rep = lab_cases["udp-to-internet"].packets
    assert req.nat[0].type == "MASQUERADE" and req.nat[0].before.port == req.nat[0].after.port
    assert rep.nat[0].after.addr == "172.17.0.2"


def test_published_port_dnat(lab_cases):
    r = lab_cases["published-port"]
    syn = r.packets[0]
    [d] = syn.nat
    assert (d.type, d.by, str(d.before), str(d.after)) == ("DNAT", "rule", "198.51.100.10:8080", "172.17.0.2:80")
    assert d.rule and d.rule.endswith("--dport 8080 -j DNAT --to-destination 172.17.0.2:80")
    assert syn.verdict.where.endswith("c1")
    synack = r.packets[1]
    assert any(n.field == "source" and str(n.after) == "198.51.100.10:8080" for n in synack.nat)


def test_dropped_connection(lab_cases):
    r = lab_cases["tcp-dropped"]
    syns = r.packets
    assert len(syns) >= 3 and len(r.conversations) == 1
    for p in syns:
        assert p.hops[-1].event.hook.label == "iptables filter FORWARD"
        assert p.verdict.code == VerdictCode.DROPPED_BY_RULE
        assert p.verdict.rule == "-A DOCKER-USER -p tcp -m tcp --dport 81 -j DROP"


def test_ipv6_between_containers(lab_cases):
    req, rep = lab_cases["ipv6-container-to-container"].packets
    assert {h.event.hook.family for h in req.hops} == {"bridge", "ipv6"}
    assert req.path == "bridged" and req.summary.startswith("ICMPv6 echo request fd00:17::2")
    assert _skips(rep)[("nat", "PREROUTING")] == "conntrack"


def test_bridge_nf_call_iptables_off(lab_cases):
    r = lab_cases["bridge-nf-off"]
    assert all(h.event.hook.family == "bridge" for p in r.packets for h in p.hops)
    p = r.packets[0]
    assert p.path == "bridged"
    assert set(_skips(p).values()) == {"bridge-nf-off"}


def test_nft_log_rules(lab_cases):
    req, rep = lab_cases["nft-log-container-to-internet"].packets
    assert any(h.event.hook.family == "bridge" and h.event.record.fmt == "nflog" for h in req.hops)
    assert req.nat[0].type == "MASQUERADE"
    assert rep.nat[0].direction == "reply"


def test_failure_and_interrupt_tear_down(tmp_path: Path):
    """A scenario that fails, and a run stopped with Ctrl-C, leave nothing behind."""
    from reportgen.lab.runner import run_scenario
    from reportgen.lab.scenarios import Scenario

    before_ns, before_log = _lab_namespaces(), _log_all_netns()

    def boom(lab):
        raise RuntimeError("traffic failed")

    with pytest.raises(RuntimeError, match="traffic failed"):
        run_scenario(Scenario("boom", "boom", "", "icmp", "seed", boom), tmp_path)
    assert not _lab_namespaces() - before_ns and _log_all_netns_unchanged(before_log)

    proc = subprocess.Popen([sys.executable, "-m", "reportgen", "lab", "tcp-dropped", "-o", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    deadline = time.time() + 10
    while time.time() < deadline and not (_lab_namespaces() - before_ns):
        time.sleep(0.05)
    assert _lab_namespaces() - before_ns, "the lab did not start"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert not _lab_namespaces() - before_ns
    assert _log_all_netns_unchanged(before_log)
    # What the user is told: a sentence, not a traceback, and the usual status of a Ctrl-C'ed command.
    assert b"Traceback" not in err and b"interrupted; the namespaces it made were removed" in err, err
    assert proc.returncode == 130


def test_trace_sources(lab_cases):
    for name, word in (("xtables-trace-tcp-to-internet", "-j MASQUERADE"), ("nft-trace-tcp-to-internet", "masquerade")):
        r = lab_cases[name]
        assert len(r.conversations) == 1, name
        syn, synack = r.packets[0], r.packets[1]
        assert syn.nat[0].type == "MASQUERADE" and word in syn.nat[0].rule
        assert {(s.table, s.hook): s.reason for s in synack.skipped}[("nat", "PREROUTING")] == "conntrack"
    mixed = lab_cases["mixed-ebtables-nft-trace"]
    assert [p.role for p in mixed.packets] == ["request", "reply"]
    assert all({h.event.record.fmt for h in p.hops} == {"ebtlog", "nfttrace"} for p in mixed.packets)


def test_legacy_trace(lab_cases):
    r = lab_cases["legacy-trace-container-to-internet"]
    assert [p.role for p in r.packets] == ["request", "reply"]
    assert r.packets[0].nat[0].rule.endswith("-j MASQUERADE")


def test_rejected_connection(lab_cases):
    syn, err = lab_cases["tcp-rejected"].packets[:2]
    assert syn.verdict.rule.endswith("-j REJECT --reject-with icmp-port-unreachable")
    assert err.role == "related" and err.path == "local-out"
