"""Snapshots in the explanation: rules, conntrack entries, endpoint names, FDB and routes.

Runs on the checked-in lab captures (real kernel output and real iptables-save/conntrack from this
machine), so it needs no root.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from conftest import SAMPLES

from reportgen.model import VerdictCode
from reportgen.pipeline import build_report
from reportgen.render.html import render_html
from reportgen.sources.case import load_spec

FIXTURES = Path(__file__).parent / "fixtures" / "parsers"


def report(name: str):
    return build_report(load_spec([SAMPLES / name]))


def test_masquerade_rule_and_conntrack_entry_are_named():
    req, rep = report("lab-container-to-internet").packets
    [m] = req.nat
    assert m.type == "MASQUERADE"
    assert m.rule == "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"
    assert m.rule_ref.file == "iptables-save.txt"
    assert m.conntrack and "src=172.17.0.2 dst=203.0.113.10" in m.conntrack and "dst=198.51.100.10" in m.conntrack
    assert rep.nat[0].rule == m.rule  # the reply's reversal points at the same rule


def test_dnat_rule_is_named_for_the_published_port():
    syn = report("lab-published-port").packets[0]
    [d] = syn.nat
    assert d.rule == "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80"


def test_drop_rule_is_named_for_the_dropped_connection():
    r = report("lab-tcp-dropped")
    for p in r.packets:
        assert p.verdict.code == VerdictCode.DROPPED_BY_RULE
        assert p.verdict.rule == "-A DOCKER-USER -p tcp -m tcp --dport 81 -j DROP"
        assert "DOCKER-USER" in p.verdict.where


def test_html_highlights_the_matched_rule_in_the_snapshot():
    html = render_html(report("lab-container-to-internet"))
    hit = [ln for ln in html.splitlines() if 'class="hit"' in ln]
    assert len(hit) == 1 and "MASQUERADE" in hit[0]


def test_seed_names_ports_fdb_and_routes():
    r = report("seed-container-to-container")
    fwd = next(h for h in r.packets[0].hops if h.stage == "br-fwd")
    assert "02:42:ac:11:00:03 is learned on port veth8f77b15 (bridge fdb)" in fwd.explanation[0]
    pre = r.packets[0].hops[0]
    assert "02:42:ac:11:00:02 (container1)" in pre.explanation[0]
    # container1's "eth0@if5" pairs it with the host's interface 5, veth694b3b7 (seed's ip link).
    assert "veth694b3b7 (port of docker0, veth peer of container1's eth0)" in pre.explanation[0]
    h2c = report("seed-host-to-container").packets[0]
    assert "route 172.17.0.0/16 on docker0" in h2c.hops[0].explanation[0]


def test_container_names_from_docker_network_inspect(tmp_path: Path):
    case = tmp_path / "case"
    shutil.copytree(SAMPLES / "lab-container-to-container", case)
    shutil.copy(FIXTURES / "docker-network--default-bridge.out", case / "docker-network-inspect.json")
    manifest = yaml.safe_load((case / "case.yaml").read_text())
    manifest["snapshots"] = [s for s in manifest["snapshots"] if "container" not in s["file"]]
    manifest["snapshots"].append({"file": "docker-network-inspect.json", "kind": "docker-network"})
    (case / "case.yaml").write_text(yaml.safe_dump(manifest))
    r = build_report(load_spec([case]))
    text = " ".join(t for h in r.packets[0].hops for t in h.explanation)
    assert "02:42:ac:11:00:02 (web)" in text and "02:42:ac:11:00:03 (db)" in text


def test_docker_mac_rule_names_unknown_containers(tmp_path: Path):
    case = tmp_path / "case"
    shutil.copytree(SAMPLES / "seed-container-to-internet", case)
    r = build_report(load_spec([case]))
    text = " ".join(t for h in r.packets[0].hops for t in h.explanation)
    assert "02:42:ac:11:00:02 (container 172.17.0.2 (Docker MAC))" in text


def test_unsupported_match_is_not_evaluated_not_guessed(tmp_path: Path):
    case = tmp_path / "case"
    shutil.copytree(SAMPLES / "lab-tcp-dropped", case)
    rules = (case / "iptables-save.txt").read_text()
    rules = rules.replace("-A DOCKER-USER -p tcp -m tcp --dport 81 -j DROP",
                          '-A DOCKER-USER -m string --string "x" --algo bm -j ACCEPT\n'
                          "-A DOCKER-USER -p tcp -m tcp --dport 81 -j DROP")
    (case / "iptables-save.txt").write_text(rules)
    p = build_report(load_spec([case])).packets[0]
    assert p.verdict.code == VerdictCode.LAST_SEEN
    assert "not evaluated" in p.verdict.explanation and "--string" in p.verdict.explanation


def test_unknown_destination_mac_is_flooded(tmp_path: Path):
    case = tmp_path / "case"
    shutil.copytree(SAMPLES / "seed-container-to-container", case)
    fdb = (case / "bridge-fdb.txt").read_text().replace("02:42:ac:11:00:03 dev veth8f77b15 master docker0\n", "")
    (case / "bridge-fdb.txt").write_text(fdb)
    fwd = next(h for h in build_report(load_spec([case])).packets[0].hops if h.stage == "br-fwd")
    assert "not in the FDB snapshot, so the bridge floods" in fwd.explanation[0]


def test_rejected_connection_and_its_related_icmp_error():
    r = report("lab-tcp-rejected")
    syn, err = r.packets
    assert syn.verdict.code == VerdictCode.REJECTED and syn.verdict.explanation.startswith("Rejected")
    assert syn.verdict.rule.startswith("-A DOCKER-USER -p tcp -m tcp --dport 82 -j REJECT")
    assert err.role == "related" and err.conversation == syn.conversation
    assert "about TCP 172.17.0.2:" in err.summary and "203.0.113.10:82" in err.summary
    assert {(s.table, s.hook): s.reason for s in err.skipped}[("nat", "OUTPUT")] == "conntrack"


def _nft_only(tmp_path: Path, name: str) -> Path:
    case = tmp_path / name
    shutil.copytree(SAMPLES / name, case)
    manifest = yaml.safe_load((case / "case.yaml").read_text())
    manifest["attachments"] = [a for a in manifest["attachments"] if "iptables" not in a["file"]]
    (case / "case.yaml").write_text(yaml.safe_dump(manifest))
    return case


def test_nft_ruleset_alone_names_the_rules(tmp_path: Path):
    drop = build_report(load_spec([_nft_only(tmp_path, "lab-tcp-dropped")])).packets[0]
    assert drop.verdict.code == VerdictCode.DROPPED_BY_RULE
    assert drop.verdict.rule == "tcp dport 81 counter packets 4 bytes 240 drop"
    assert drop.verdict.rule_ref.file == "nft-ruleset.txt"
    masq = build_report(load_spec([_nft_only(tmp_path, "lab-container-to-internet")])).packets[0].nat[0]
    assert masq.type == "MASQUERADE" and masq.rule.startswith('oifname != "docker0" ip saddr 172.17.0.0/16')
    dnat = build_report(load_spec([_nft_only(tmp_path, "lab-published-port")])).packets[0].nat[0]
    assert dnat.type == "DNAT" and dnat.rule.endswith("dnat to 172.17.0.2:80")


def test_nft_expressions_without_an_equivalent_are_not_evaluated():
    from reportgen.explain.rules import PacketView, evaluate
    from reportgen.parsers.nft_rules import rule_from_nft
    from reportgen.parsers.ruleset import Chain, Ruleset

    r = rule_from_nft("filter", "FORWARD", 1, 3, 'iifname "veth*" ip daddr @blocked drop')
    assert [m.opt for m in r.matches] == ["-i", "nft:ip daddr set"] and r.matches[0].values == ("veth+",)
    ok = rule_from_nft("filter", "FORWARD", 2, 4, 'ct state established,related counter packets 1 bytes 2 accept')
    assert (ok.matches[0].opt, ok.matches[0].values, ok.target) == ("--ctstate", ("ESTABLISHED,RELATED",), "ACCEPT")
    rs = Ruleset("ipv4", "nft.txt", {"filter": {"FORWARD": Chain("FORWARD", "ACCEPT", [r, ok])}})
    res = evaluate(rs, "filter", "FORWARD", PacketView("192.0.2.1", "10.0.0.1", "TCP", 1, 2, "vethx", "eth0"))
    assert res.verdict is None and "not evaluated" in res.describe()


def test_nft_rule_is_highlighted_in_the_nft_snapshot(tmp_path: Path):
    html = render_html(build_report(load_spec([_nft_only(tmp_path, "lab-tcp-dropped")])))
    hit = [ln for ln in html.splitlines() if 'class="hit"' in ln]
    assert len(hit) == 1 and "tcp dport 81" in hit[0] and "drop" in hit[0]
