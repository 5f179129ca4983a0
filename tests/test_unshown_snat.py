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

from reportgen.explain.answer import _nat_words, footer
from reportgen.model import Endpoint, Nat, Packet
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

# What the unknown says would settle it (attribution._SHOWS_NEW_SOURCE).
SETTLE = (
    "a conntrack -L entry of the connection (its reply tuple's destination) or a line of its reply "
    "would show the new source"
)

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
    assert nat.after == Endpoint("", None)  # JSON null: no input shows the address
    assert nat.unknown is not None and "--random-fully" in nat.unknown and "vxlan.calico" in nat.unknown
    assert nat.unknown.startswith("the new source address, the one MASQUERADE takes from vxlan.calico: no ip addr")
    assert nat.unknown.endswith(SETTLE)  # and what would settle it
    final = footer(syn).final
    assert final.startswith("TCP unknown address, port unknown → 10.42.54.194:9898 (source not shown: ")
    assert "192.168.1.88" not in final
    # The ACK after it: conntrack applies the same mapping at nat POSTROUTING (its trace ends at mangle).
    later = _source_nat(ack)
    assert (later.type, later.by, later.after, later.rule_ref) == ("MASQUERADE", "conntrack", nat.after, nat.rule_ref)
    assert "192.168.1.88" not in footer(ack).final


def test_snat_to_source_names_the_address_and_keeps_the_port(tmp_path: Path):
    syn, _ = _calico(tmp_path, "-j SNAT --to-source 203.0.113.7")
    nat = _source_nat(syn)
    assert (nat.type, nat.after) == ("SNAT", Endpoint("203.0.113.7", 49058))
    # get_unique_tuple (nf_nat_core.c) picks another port when another connection holds this one: the
    # kept port is said with that hedge, never as certain.
    assert (
        nat.unknown == f"port 49058 kept unless another connection held it (get_unique_tuple, nf_nat_core.c); {SETTLE}"
    )
    final = footer(syn).final
    assert final.startswith("TCP 203.0.113.7, port 49058 → 10.42.54.194:9898 (source not shown: port 49058 kept unless")
    assert "203.0.113.7:49058" not in final
    (answer,) = [w for w in _nat_words(syn, "TCP") if w.startswith("SNAT")]
    assert answer.startswith("SNAT to 203.0.113.7 (port 49058 kept unless another connection held it")


def test_snat_range_and_random_leave_address_and_port_unknown(tmp_path: Path):
    syn, _ = _calico(tmp_path, "-j SNAT --to-source 203.0.113.7-203.0.113.9 --random")
    nat = _source_nat(syn)
    assert nat.type == "SNAT" and nat.after.port is None
    assert nat.after.addr == ""  # no one address of the range is made up
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
    assert (nat.type, nat.by) == ("MASQUERADE", "rule")
    assert nat.unknown is not None and nat.unknown.endswith(
        f" kept unless another connection held it (get_unique_tuple, nf_nat_core.c); {SETTLE}"
    )
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
    assert nat.after == Endpoint("", 37808)
    assert nat.unknown is not None and "next hop's subnet" in nat.unknown
    assert "which of ens33's addresses 198.51.100.10, 192.0.2.10" in nat.unknown
    assert footer(p).final.startswith("TCP unknown address, port 37808 → ")


# An nft trace of a container's SYN at nat POSTROUTING; RULE is the rule line's text (trace.txt:2). An inet
# table's chain is named in lower case: its ruleset (nft-ruleset.txt) says it is the postrouting hook's.
_NFT_PACKET = (
    'trace id d17a49f2 {fam} nat {hook} packet: iif "docker0" oif "ens33" ether saddr 02:42:ac:11:00:02 '
    "ether daddr 02:42:ff:e7:b5:d2 {l3} tcp sport 37812 tcp dport 80 tcp flags == syn tcp window 64240\n"
    "trace id d17a49f2 {fam} nat {hook} rule {rule} (verdict accept)\n"
)
_V4 = "ip saddr 172.17.0.2 ip daddr 203.0.113.10 ip dscp cs0 ip ecn not-ect ip ttl 63 ip id 37363 ip length 60"
_V6 = (
    "ip6 saddr fd00:17::2 ip6 daddr 2001:db8:2::10 ip6 dscp cs0 ip6 ecn not-ect ip6 hoplimit 63 ip6 flowlabel 1 "
    "ip6 nexthdr tcp ip6 length 40"
)
_ENS33 = (
    "5: ens33@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default qlen 1000\n"
    "    link/ether 5e:d0:24:03:30:0c brd ff:ff:ff:ff:ff:ff link-netns inet\n"
    "    inet 198.51.100.10/24 scope global ens33\n"
    "       valid_lft forever preferred_lft forever\n"
    "{v6}"
)
_INET_NAT = (
    "table inet nat {{\n\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
    "\t\t{rule}\n\t}}\n}}\n"
)
_GLOBAL6 = "    inet6 {a}/64 scope global\n       valid_lft forever preferred_lft forever\n"


def _nft_case(
    tmp_path: Path, rule: str, fam: str = "ip", l3: str = _V4, v6: tuple[str, ...] = ("2001:db8:1::10",)
) -> Packet:
    case = tmp_path / "nft"
    case.mkdir()
    (case / "case.yaml").write_text(
        "title: t\ntrace:\n- trace.txt\nsnapshots:\n- file: ip-addr.txt\n  kind: ip-addr\n", encoding="utf-8"
    )
    if fam == "inet":
        (case / "nft-ruleset.txt").write_text(_INET_NAT.format(rule=rule), encoding="utf-8")
        (case / "case.yaml").write_text(
            (case / "case.yaml").read_text(encoding="utf-8")
            + "attachments:\n- file: nft-ruleset.txt\n  kind: nft-ruleset\n",
            encoding="utf-8",
        )
    (case / "trace.txt").write_text(
        _NFT_PACKET.format(fam=fam, hook="postrouting" if fam == "inet" else "POSTROUTING", l3=l3, rule=rule),
        encoding="utf-8",
    )
    addrs = "".join(_GLOBAL6.format(a=a) for a in v6)
    (case / "ip-addr.txt").write_text(_ENS33.format(v6=addrs), encoding="utf-8")
    (p,) = _packets(case)
    return p


@pytest.mark.parametrize(
    "rule",
    [
        # A set, a map or a quoted name holding a NAT word is no NAT statement.
        "ip daddr @no_masquerade counter packets 1 bytes 84 accept",
        "ip daddr @masquerade accept",
        "tcp dport @redirect_ports accept",
        'oifname "masquerade" accept',
        'ip daddr 203.0.113.10 accept comment "no masquerade: snat to 1.2.3.4 elsewhere"',
    ],
)
def test_an_nft_accept_naming_a_nat_word_is_no_nat(tmp_path: Path, rule: str):
    p = _nft_case(tmp_path, rule)
    assert [n for n in p.nat if n.field == "source"] == []
    assert footer(p).final == "TCP 172.17.0.2:37812 → 203.0.113.10:80"
    assert "MASQUERADE" not in " ".join(_nat_words(p, "TCP"))


@pytest.mark.parametrize(
    "target",
    [
        "-m set --match-set no-masquerade dst -j ACCEPT",
        "-m set --match-set redirect dst -j ACCEPT",
        "-m set --match-set masquerade dst",
        '-m comment --comment "snat to 1.2.3.4" -j ACCEPT',
    ],
)
def test_an_iptables_accept_naming_a_nat_word_is_no_nat(tmp_path: Path, target: str):
    syn, _ = _calico(tmp_path, target)
    assert [n for n in syn.nat if n.field == "source"] == []
    assert "192.168.1.88:49058 → " in footer(syn).final


@pytest.mark.parametrize(
    ("rule", "address"),
    [
        ('oifname "ens33" snat to 198.51.100.10', "198.51.100.10"),
        ('oifname "ens33" snat ip to 198.51.100.10', "198.51.100.10"),
    ],
)
def test_nft_snat_to_a_literal_address(tmp_path: Path, rule: str, address: str):
    nat = _source_nat(_nft_case(tmp_path, rule))
    assert (nat.type, nat.after) == ("SNAT", Endpoint(address, 37812))


@pytest.mark.parametrize(
    "rule",
    [
        'oifname "ens33" snat to ip saddr map { 172.17.0.2 : 198.51.100.10 }',
        'oifname "ens33" snat ip to numgen inc mod 2 map { 0 : 198.51.100.10, 1 : 198.51.100.11 }',
    ],
)
def test_nft_snat_to_an_expression_names_no_address(tmp_path: Path, rule: str):
    """nft computes the address (and maybe the port) from a map or numgen: "ip" or "numgen" is no address."""
    p = _nft_case(tmp_path, rule)
    nat = _source_nat(p)
    assert nat.type == "SNAT" and nat.after == Endpoint("", None)
    assert nat.unknown is not None and "computes the address" in nat.unknown
    final = footer(p).final
    assert final.startswith("TCP unknown address, port unknown → 203.0.113.10:80")
    assert "ip:" not in final and "numgen:" not in final


def test_inet_masquerade_of_an_ipv6_packet_takes_an_ipv6_address(tmp_path: Path):
    p = _nft_case(tmp_path, 'oifname "ens33" masquerade', fam="inet", l3=_V6)
    nat = _source_nat(p)
    assert nat.after == Endpoint("2001:db8:1::10", 37812)
    assert "198.51.100.10" not in footer(p).final and "2001:db8:1::10" in footer(p).final
    assert "primary" not in nat.evidence


def test_inet_masquerade_with_two_global_ipv6_addresses_names_both(tmp_path: Path):
    """ipv6_dev_get_saddr (net/ipv6/addrconf.c) picks by the destination (RFC 6724): no one is "primary"."""
    p = _nft_case(tmp_path, 'oifname "ens33" masquerade', fam="inet", l3=_V6, v6=("2001:db8:1::10", "2001:db8:3::10"))
    nat = _source_nat(p)
    assert nat.after.addr == "" and "which of ens33's addresses 2001:db8:1::10, 2001:db8:3::10" in (nat.unknown or "")
    assert nat.unknown is not None and "ipv6_dev_get_saddr" in nat.unknown
    assert "primary" not in nat.evidence
