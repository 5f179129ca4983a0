"""Kernel LOG lines and an xtables-monitor trace of the same packets make one packet each.

tests/fixtures/kube-proxy-logged is `reportgen lab public-kube-proxy-nodeport-logged` as captured on
this kernel: an internet host connects to NodePort 3003 (DNAT to container2 172.17.0.3:80, masqueraded
to 172.17.0.1) and the host connects to the ClusterIP, logged by LOG and ebtables rules (dmesg.log) and
traced by xtables-monitor (xtables-monitor.txt), whose bridge-family PACKET lines print the network
header alone (NH=: no ports, no TCP flags). Before the fix those bridge lines became packets (and
conversations) of their own: 32 packets, a forwarded SYN told as "the host sends through the bridge"
and its replies as delivered locally.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import yaml

from reportgen.model import Packet, VerdictCode
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

CASE = Path(__file__).parent / "fixtures" / "kube-proxy-logged"
TRACE = "xtables-monitor.txt"


def _kernel_packets() -> dict[tuple[int, int], str]:
    """Every IPv4 packet the LOG rules logged, by IP ID and client port (both SYN-ACKs have ID 0; NAT
    here changes the server's port, not the client's), and where its LOG lines last
    show it: "local" when it reached INPUT, else its OUT= device."""
    out: dict[tuple[int, int], str] = {}
    for line in (CASE / "dmesg.log").read_text().splitlines():
        if " IPT:" not in line:
            continue
        f = dict(x.split("=", 1) for x in line.split() if "=" in x)
        out[(int(f["ID"]), max(int(f["SPT"]), int(f["DPT"])))] = "local" if ":INPUT " in line else f["OUT"]
    return out


def _key(p: Packet) -> tuple[int, int]:
    r = next(h.event.record for h in p.hops if h.event.record.ipid is not None and h.event.record.sport is not None)
    assert r.ipid is not None and r.sport is not None and r.dport is not None
    return r.ipid, max(r.sport, r.dport)


def test_log_lines_and_trace_of_one_packet_are_one_packet() -> None:
    kernel = _kernel_packets()
    assert len(kernel) == 16 and Counter(kernel.values()) == {"ens33": 4, "docker0": 8, "local": 4}
    report = build_report(load_spec([CASE]))
    assert len(report.packets) == 16
    assert sorted(_key(p) for p in report.packets) == sorted(kernel)
    for p in report.packets:
        files = {h.event.record.ref.file for h in p.hops}
        assert files == {"dmesg.log", TRACE}, (p.id, files)
        # The trace's bridge-family walk of the packet (OUTPUT to the container, INPUT from it) is on it.
        assert any(h.event.record.ref.file == TRACE and h.event.hook.family == "bridge" for h in p.hops), p.id
        assert p.verdict is not None
        got = (p.verdict.code, p.verdict.where)
        want = {
            "local": (VerdictCode.DELIVERED_LOCAL, got[1]),
            "ens33": (VerdictCode.FORWARDED_OUT, "ens33"),
            # Routed to docker0, then bridged out of container2's port (EB:...:POSTROUTING OUT=vethr53c2).
            "docker0": (VerdictCode.DELIVERED_TO_PORT, "vethr53c2"),
        }[kernel[_key(p)]]
        assert got == want, (p.id, _key(p), got)


def test_trace_alone_joins_its_bridge_walks(tmp_path: Path) -> None:
    """The trace alone (one file: the windowed reading) joins them too, to the same 16 packets."""
    case = tmp_path / "case"
    shutil.copytree(CASE, case)
    spec = yaml.safe_load((case / "case.yaml").read_text())
    spec["trace"] = [TRACE]
    (case / "case.yaml").write_text(yaml.safe_dump(spec))
    (case / "dmesg.log").unlink()
    report = build_report(load_spec([case]))
    kernel = _kernel_packets()
    assert sorted(_key(p) for p in report.packets) == sorted(kernel)
    assert len(report.conversations) == 2
    for p in report.packets:
        assert {h.event.hook.family for h in p.hops} == {"ipv4", "bridge"}, p.id
        want = {"local": "delivered-local", "ens33": "forwarded-out", "docker0": "delivered-to-port"}
        assert p.verdict is not None and p.verdict.code.value == want[kernel[_key(p)]], p.id


def test_portless_bridge_lines_do_not_join_two_connections() -> None:
    """The NodePort's and the ClusterIP's packets are both masqueraded to 172.17.0.1 on their way to
    172.17.0.3: the bridge lines' view (no ports) is the same for both, yet they are two connections."""
    report = build_report(load_spec([CASE]))
    assert len(report.conversations) == 2
    for conv in report.conversations:
        assert len(conv.packets) == 8
        # Both sources' lines of one hook and table sit together, in the order the kernel ran them,
        # so the walk still agrees with the rulesets' prediction.
        assert conv.prediction is not None and conv.prediction.status == "agrees", conv.prediction
