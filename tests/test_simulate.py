"""The simulator on the lab's snapshots, changed where a test needs another ruleset: forks on matches
the snapshot cannot decide, conntrack state, NAT addresses, and the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reportgen.cli import main
from reportgen.model import VerdictCode
from reportgen.render.jsonfold import read_conversations, read_packets
from reportgen.simulate import Query, simulate_case

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
INET = "203.0.113.10"


def _case(tmp_path: Path, sample: str, rule_after: str | None = None, rule: str = "") -> Path:
    """A copy of a lab sample, with ``rule`` inserted into iptables-save.txt after the line ``rule_after``."""
    dest = tmp_path / sample
    shutil.copytree(SAMPLES / sample, dest)
    if rule_after is not None:
        save = dest / "iptables-save.txt"
        lines = save.read_text().splitlines()
        at = lines.index(rule_after)
        save.write_text("\n".join([*lines[: at + 1], rule, *lines[at + 1 :]]) + "\n")
    return dest


def test_an_undecidable_match_forks_the_walk(tmp_path: Path) -> None:
    case = _case(tmp_path, "lab-container-to-internet", ":DOCKER-USER - [0:0]", "")
    save = case / "iptables-save.txt"
    save.write_text(
        save.read_text().replace(
            "-A DOCKER-USER -j RETURN",
            "-A DOCKER-USER -m set --match-set blocked dst -j DROP\n-A DOCKER-USER -j RETURN",
        )
    )
    report = simulate_case([case], Query("container1", INET))
    requests = [p for p in report.packets if p.role == "request"]
    assert [p.verdict.code.value for p in requests if p.verdict] == ["dropped-by-rule", "forwarded-out"]
    assert "--match-set blocked dst matches in filter DOCKER-USER rule 1" in requests[0].summary
    assert "--match-set blocked dst does not match" in requests[1].summary
    assert any("cannot decide" in n and "--match-set blocked dst" in n for n in report.notes)
    # Only the branch that got out has a reply; the reply meets the same set match and forks too.
    replies = [p for p in report.packets if p.role == "reply"]
    assert len(replies) == 2 and all("--match-set blocked dst" in p.summary for p in replies)


def test_masquerade_takes_the_out_device_address_and_the_reply_is_reversed() -> None:
    report = simulate_case([SAMPLES / "lab-udp-to-internet"], Query("container1", INET, "udp", 53))
    req, rep = report.packets
    (nat,) = req.nat
    assert (nat.type, nat.field, nat.after.addr) == ("MASQUERADE", "source", "198.51.100.10")
    assert nat.rule_ref is not None and nat.rule_ref.file == "iptables-save.txt"
    (undo,) = rep.nat
    assert (undo.direction, undo.by, undo.field, undo.after.addr) == ("reply", "conntrack", "destination", "172.17.0.2")
    # The IP nat table sees only the first packet (ebtables' nat table is another thing).
    assert all(h.event.hook.table != "nat" for h in rep.hops if h.event.hook.family != "bridge")
    assert rep.verdict is not None and rep.verdict.where == rep.hops[-1].event.record.physout


def test_assume_established_skips_the_nat_table() -> None:
    new = simulate_case([SAMPLES / "lab-published-port"], Query(INET, "198.51.100.10", "tcp", 8080))
    est = simulate_case(
        [SAMPLES / "lab-published-port"], Query(INET, "198.51.100.10", "tcp", 8080, assume_ct="established")
    )
    assert new.packets[0].path == "routed" and new.packets[0].nat[0].type == "DNAT"
    # Without the nat table's DNAT the packet is for the host itself.
    assert est.packets[0].path == "local-in" and not est.packets[0].nat
    assert est.packets[0].verdict is not None and est.packets[0].verdict.code == VerdictCode.DELIVERED_LOCAL


def test_every_hop_is_marked_predicted_and_points_at_a_snapshot_line() -> None:
    report = simulate_case([SAMPLES / "lab-tcp-dropped"], Query("container1", INET, "tcp", 81))
    (p,) = report.packets
    assert p.hops and all(h.predicted for h in p.hops)
    assert {h.event.record.ref.file for h in p.hops} <= {"iptables-save.txt", "nft-ruleset.txt"}
    assert p.verdict is not None and p.verdict.rule == "-A DOCKER-USER -p tcp -m tcp --dport 81 -j DROP"
    assert report.lines_total == 0  # no kernel line was read or invented


def test_cli_text_json_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "simulate",
        str(SAMPLES / "lab-published-port"),
        "--from",
        INET,
        "--to",
        "198.51.100.10",
        "--proto",
        "tcp",
        "--dport",
        "8080",
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "(predicted, iptables-save.txt:63)" in text
    assert "verdict: delivered-to-port — Predicted: Leaves bridge port" in text
    assert main([*args, "--format", "json,html", "-o", str(tmp_path / "a")]) == 0
    assert main([*args, "--format", "json,html", "-o", str(tmp_path / "b")]) == 0
    a = tmp_path / "a" / "lab-published-port"
    for name in ("report.json", "report.jsonl"):
        assert (a / name).read_bytes() == (tmp_path / "b" / "lab-published-port" / name).read_bytes()
    doc = json.loads((a / "report.json").read_text())
    packets = list(read_packets(doc, (a / "report.jsonl").read_text().splitlines()))
    assert packets and all(h["predicted"] for p in packets for h in p["hops"])
    html = (a / "report.html").read_text()
    assert 'class="predicted">predicted</span>' in html and "predicted from the snapshots" in html


def test_cli_errors_name_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(SAMPLES / "lab-published-port"), "--from", "nobody", "--to", "host"]) == 2
    err = capsys.readouterr().err
    assert "'nobody' is not an address, 'host', an interface or a known name" in err and "container1" in err
    assert (
        main(["simulate", str(SAMPLES / "lab-published-port"), "--from", "host", "--to", INET, "--proto", "tcp"]) == 2
    )
    assert "--dport is needed for tcp" in capsys.readouterr().err
    assert main(["simulate", str(SAMPLES / "lab-published-port" / "dmesg.log"), "--from", "host", "--to", INET]) == 2
    assert "no snapshot among the inputs" in capsys.readouterr().err


def test_report_json_carries_the_prediction(tmp_path: Path) -> None:
    assert main(["report", str(SAMPLES / "lab-trap-nft-forward-drop"), "--format", "json", "-o", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "lab-trap-nft-forward-drop" / "report.json").read_text())
    (conv,) = read_conversations(data)
    assert conv["prediction"]["status"] == "agrees"
    assert "dropped-by-policy" in conv["prediction"]["predicted"]
    assert VerdictCode.DROPPED_BY_POLICY.value in conv["prediction"]["summary"]


@pytest.mark.parametrize("mode", ["off", "on"])
def test_dnat_back_to_the_sending_port_needs_hairpin_mode(tmp_path: Path, mode: str) -> None:
    # Docker with userland-proxy off: no "-i docker0 -j RETURN" and a DNAT for every interface, so
    # container1's own published port is DNATed back to container1, through the port it came in by.
    case = _case(tmp_path, "lab-published-port")
    save = case / "iptables-save.txt"
    text = save.read_text().replace("-A DOCKER -i docker0 -j RETURN\n", "")
    save.write_text(text.replace("-A DOCKER ! -i docker0 -p tcp", "-A DOCKER -p tcp"))
    link = case / "ip-d-link.txt"
    link.write_text(link.read_text().replace("hairpin off", f"hairpin {mode}"))
    report = simulate_case([case], Query("container1", "198.51.100.10", "tcp", 8080))
    req = report.packets[0]
    assert req.nat and req.nat[0].after.addr == "172.17.0.2"
    assert req.verdict is not None
    if mode == "off":
        assert req.verdict.code == VerdictCode.UNKNOWN
        assert "only in hairpin mode (should_deliver, net/bridge/br_forward.c)" in req.verdict.explanation
        assert "hairpin mode is off on vethr98c1 (ip-d-link.txt:" in req.verdict.explanation
    else:
        assert (req.path, req.verdict.where) == ("bridged", "vethr98c1")


def test_from_outside_on_a_given_interface_to_a_container_port() -> None:
    report = simulate_case(
        [SAMPLES / "lab-published-port"], Query("192.0.2.7", "container1", "tcp", 80, in_iface="ens33")
    )
    req = report.packets[0]
    assert req.hops[0].event.record.in_dev == "ens33" and req.path == "routed"
    assert req.verdict is not None and req.verdict.where == "vethr98c1"
    fwd = next(h for h in req.hops if h.event.hook.table == "filter" and h.event.hook.hook == "FORWARD")
    assert (
        fwd.event.rules[-1].text
        == "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
    )
    assert any("--in ens33" in n for n in report.notes)


def test_marks_set_and_matched_like_kube_proxy(tmp_path: Path) -> None:
    # kube-proxy marks service traffic (--set-xmark 0x4000/0x4000), masquerades what carries the mark,
    # and clears it with an XOR (--set-xmark 0x4000/0x0) before the MASQUERADE; the RETURN after the
    # XOR proves the mark is clear again (an OR would have kept it).
    case = _case(tmp_path, "lab-container-to-container")
    save = case / "iptables-save.txt"
    text = save.read_text().replace(
        "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
        "-A PREROUTING -d 172.17.0.3/32 -j MARK --set-xmark 0x4000/0x4000\n"
        "-A POSTROUTING -j KUBE-POSTROUTING\n"
        "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n"
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n"
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n"
        "-A KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j RETURN\n"
        "-A KUBE-POSTROUTING -j MASQUERADE",
    )
    save.write_text(text)
    to_c2 = simulate_case([case], Query("container1", "container2")).packets[0]
    assert [n.type for n in to_c2.nat] == ["MASQUERADE"] and to_c2.nat[0].after.addr == "172.17.0.1"
    assert to_c2.hops[-1].event.record.mark == "0x4000"  # as nat POSTROUTING saw it on entry
    back = simulate_case([case], Query("container2", "container1")).packets[0]
    assert not back.nat  # no mark, no MASQUERADE


@pytest.mark.parametrize(
    ("extra", "verdicts"),
    [
        # An anonymous set's members are in the rule: decided.
        ("ip daddr { 198.51.100.7, 203.0.113.0/24 } accept", ["forwarded-out"]),
        ("ip daddr { 198.51.100.7, 192.0.2.0/24 } accept", ["dropped-by-policy"]),
        # A named set's members are not read: both branches, each with its condition.
        ("ip daddr @allowed accept", ["forwarded-out", "dropped-by-policy"]),
    ],
)
def test_native_nft_sets(tmp_path: Path, extra: str, verdicts: list[str]) -> None:
    case = _case(tmp_path, "lab-trap-nft-forward-drop")
    nft = case / "nft-ruleset.txt"
    nft.write_text(
        nft.read_text().replace(
            "ct state established,related accept # handle 2",
            f"ct state {{ established, related }} accept # handle 2\n\t\t{extra}",
        )
    )
    report = simulate_case([case], Query("container1", INET))
    requests = [p for p in report.packets if p.role == "request"]
    assert sorted(p.verdict.code.value for p in requests if p.verdict) == sorted(verdicts)
    if len(verdicts) == 2:
        through = next(p for p in requests if p.verdict and p.verdict.code == VerdictCode.FORWARDED_OUT)
        assert "nft:ip daddr set matches in usertrap userforward rule 2" in through.summary


def test_hooks_without_any_chain_are_shown_as_passed() -> None:
    # This capture has no ebtables rules: the bridge hooks are passed with nothing to run there.
    report = simulate_case([SAMPLES / "lab-trap-nft-forward-drop"], Query("container1", INET))
    (req,) = report.packets
    assert [(s.stage, s.reason) for s in req.skipped] == [("br-pre", "no-chain"), ("br-in", "no-chain")]
    assert {h.stage for h in req.hops} == {"ip-pre", "ip-fwd"}
