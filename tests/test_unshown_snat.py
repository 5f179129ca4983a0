"""A source NAT the trace shows the rule of but no line the rewritten packet of.

nat POSTROUTING is the last hook a leaving packet passes, so a trace prints the packet before its
SNAT or MASQUERADE rule rewrites it; the rule ending the walk with accept is nf_nat_setup_info()'s
NF_ACCEPT (net/netfilter/xt_nat.c, nf_nat_masquerade.c, nft_nat.c): the rewrite happened. The report
must then name the rule and what is known of the new source, and never state the unchanged source
as the packet's final one. Inputs: the public corpus case trace-xtm-kube-proxy-calico-clusterip-
output-k3s (Calico's MASQUERADE --random-fully, no ip addr snapshot) and the lab samples' first
packets, cut before their replies (which would show the new source), with their ip addr snapshots.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reportgen.explain.answer import footer
from reportgen.model import Endpoint, Nat, Packet
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

ROOT = Path(__file__).parent.parent
CALICO = ROOT / "tests" / "corpus" / "public" / "trace-xtm-kube-proxy-calico-clusterip-output-k3s"
CALICO_MASQ = "-j MASQUERADE --random-fully"


def _packets(case: Path) -> list[Packet]:
    return list(build_report(load_spec([case])).packets)


def _source_nat(p: Packet) -> Nat:
    (nat,) = [n for n in p.nat if n.field == "source"]
    return nat


def _calico(tmp_path: Path, masq: str) -> list[Packet]:
    """The corpus case with Calico's MASQUERADE target (trace.txt:46) replaced by ``masq``."""
    case = tmp_path / "calico"
    shutil.copytree(CALICO, case)
    trace = case / "trace.txt"
    text = trace.read_text(encoding="utf-8")
    assert text.count(CALICO_MASQ) == 1
    trace.write_text(text.replace(CALICO_MASQ, masq), encoding="utf-8")
    return _packets(case)


def test_masquerade_random_fully_without_snapshot_states_no_old_source():
    syn, ack = _packets(CALICO)
    nat = _source_nat(syn)
    assert (nat.type, nat.by, nat.hook) == ("MASQUERADE", "rule", "ipv4 nat POSTROUTING")
    assert str(nat.rule_ref) == "trace.txt:46" and nat.rule is not None and "MASQUERADE" in nat.rule
    assert nat.before == Endpoint("192.168.1.88", 49058)
    # No ip addr snapshot of vxlan.calico and --random-fully: neither address nor port is known.
    assert nat.after == Endpoint("the address of vxlan.calico", None)
    assert nat.unknown is not None and "--random-fully" in nat.unknown and "vxlan.calico" in nat.unknown
    final = footer(syn).final
    assert final.startswith("TCP the address of vxlan.calico, port unknown → 10.42.54.194:9898 (source not shown: ")
    assert "192.168.1.88" not in final
    # The ACK after it: conntrack applies the same mapping at nat POSTROUTING (its trace ends at mangle).
    later = _source_nat(ack)
    assert (later.type, later.by, later.after, later.rule_ref) == ("MASQUERADE", "conntrack", nat.after, nat.rule_ref)
    assert "192.168.1.88" not in footer(ack).final


def test_snat_to_source_names_the_address_and_keeps_the_port(tmp_path: Path):
    syn, _ = _calico(tmp_path, "-j SNAT --to-source 203.0.113.7")
    nat = _source_nat(syn)
    assert (nat.type, nat.after, nat.unknown) == ("SNAT", Endpoint("203.0.113.7", 49058), None)
    assert "kept unless another connection holds it" in nat.evidence
    assert footer(syn).final == "TCP 203.0.113.7:49058 → 10.42.54.194:9898"


def test_snat_range_and_random_leave_address_and_port_unknown(tmp_path: Path):
    syn, _ = _calico(tmp_path, "-j SNAT --to-source 203.0.113.7-203.0.113.9 --random")
    nat = _source_nat(syn)
    assert nat.type == "SNAT" and nat.after.port is None
    assert "203.0.113" not in nat.after.addr  # no one address of the range is made up
    assert nat.unknown is not None and "range" in nat.unknown and "--random" in nat.unknown
    assert "192.168.1.88" not in footer(syn).final


def _first_packet(tmp_path: Path, sample: str, trace: str, upto: int) -> Packet:
    """A lab sample cut after its first packet's nat POSTROUTING line ``upto`` (no reply shows the
    new source then), with the sample's snapshots (ip-addr.txt has ens33's 198.51.100.10/24)."""
    case = tmp_path / sample
    shutil.copytree(ROOT / "samples" / sample, case)
    path = case / trace
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:upto]), encoding="utf-8")
    return _packets(case)[0]


@pytest.mark.parametrize(
    ("sample", "trace", "upto", "sport"),
    [
        # xtables-monitor: "nat:POSTROUTING:rule:0x8:ACCEPT ... -j MASQUERADE" (line 15).
        ("lab-xtables-trace-tcp-to-internet", "xtables-monitor.txt", 15, 37808),
        # nft monitor trace: "ip nat POSTROUTING rule ... masquerade (verdict accept)" (line 15).
        ("lab-nft-trace-tcp-to-internet", "nft-monitor-trace.txt", 15, None),
        # legacy TRACE "nat:POSTROUTING:rule:1" (line 10); iptables-legacy-save says rule 1 is MASQUERADE.
        ("lab-legacy-trace-container-to-internet", "dmesg.log", 10, 40134),
    ],
)
def test_masquerade_address_from_the_ip_addr_snapshot(
    tmp_path: Path, sample: str, trace: str, upto: int, sport: int | None
):
    p = _first_packet(tmp_path, sample, trace, upto)
    nat = _source_nat(p)
    assert (nat.type, nat.by, nat.unknown) == ("MASQUERADE", "rule", None)
    assert nat.after.addr == "198.51.100.10" and "ens33's primary address 198.51.100.10" in nat.evidence
    assert nat.after.port == nat.before.port and (sport is None or nat.before.port == sport)
    assert "198.51.100.10" in footer(p).final and "172.17.0.2" not in footer(p).final


def test_masquerade_on_a_device_with_two_addresses_names_neither_alone(tmp_path: Path):
    """inet_select_addr (net/ipv4/devinet.c) takes the primary address on the next hop's subnet: with
    two on ens33 and no route evaluated here, the report names both and says which is not known."""
    sample = "lab-xtables-trace-tcp-to-internet"
    case = tmp_path / "two"
    shutil.copytree(ROOT / "samples" / sample, case)
    text = (case / "ip-addr.txt").read_text(encoding="utf-8")
    one = "    inet 198.51.100.10/24 scope global ens33\n"
    assert text.count(one) == 1
    (case / "ip-addr.txt").write_text(
        text.replace(one, one + "    inet 192.0.2.10/24 scope global ens33\n"), encoding="utf-8"
    )
    doc = json.loads((case / "ip-addr.json").read_text(encoding="utf-8"))
    (ens33,) = [d for d in doc if d["ifname"] == "ens33"]
    ens33["addr_info"].insert(1, {**ens33["addr_info"][0], "local": "192.0.2.10"})
    (case / "ip-addr.json").write_text(json.dumps(doc), encoding="utf-8")
    trace = case / "xtables-monitor.txt"
    trace.write_text("".join(trace.read_text(encoding="utf-8").splitlines(keepends=True)[:15]), encoding="utf-8")
    p = _packets(case)[0]
    nat = _source_nat(p)
    assert nat.after == Endpoint("one of ens33's addresses 198.51.100.10, 192.0.2.10", 37808)
    assert nat.unknown is not None and "next hop's subnet" in nat.unknown
    assert footer(p).final.startswith("TCP one of ens33's addresses 198.51.100.10, 192.0.2.10, port 37808 → ")
