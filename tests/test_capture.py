"""`reportgen capture` and `reportgen snapshot` inside the lab's host namespace, with real rules."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import LAB_MARKS

from reportgen.lab.netns import run
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

pytestmark = LAB_MARKS


def rulesets(ns: str) -> dict[str, str]:
    """The host's rules in every backend, without timestamps and counters."""
    out = {}
    # iptables-legacy tables, once used in a namespace, stay until it is deleted (x_tables keeps them
    # per netns), so legacy is compared for rules only, in test_sigkill_then_cleanup_restores_rules.
    for argv in (["iptables-nft-save"], ["ip6tables-nft-save"], ["ebtables-save"], ["ebtables", "-L"],
                 ["nft", "list", "ruleset"]):
        text = run(argv, ns=ns, check=False).stdout
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
        out[argv[0]] = re.sub(r"\[\d+:\d+\]|counter packets \d+ bytes \d+", "", text)
    return out


def reportgen(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reportgen", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_capture_apply_ping_is_explained_and_leaves_rules_as_before(lab, tmp_path: Path):
    before = rulesets(lab.host)
    case = tmp_path / "case"
    r = reportgen("capture", "--apply", "--netns", lab.host, "--proto", "icmp", "--family", "4",
                  "--backend", "iptables-nft,ebtables", "-o", str(case), "--",
                  "ip", "netns", "exec", lab.ns("c1"), "ping", "-c1", "-W2", "172.17.0.3")
    assert r.returncode == 0, r.stderr
    assert rulesets(lab.host) == before
    report = build_report(load_spec([case]))
    assert report.lines_used == report.lines_total > 10
    req, rep = report.packets
    assert (req.path, rep.path, req.role, rep.role) == ("bridged", "bridged", "request", "reply")
    assert req.summary.startswith("ICMP echo request 172.17.0.2 → 172.17.0.3")
    # ebtables --log-ip puts the addresses in the bridge lines too: one hop sequence per packet.
    assert {h.event.hook.family for h in req.hops} == {"bridge", "ipv4"}
    assert {(s.table, s.hook): s.reason for s in rep.skipped}[("nat", "PREROUTING")] == "conntrack"


def test_print_only_changes_nothing(lab):
    before = rulesets(lab.host)
    r = reportgen("capture", "--netns", lab.host, "--backend", "iptables-nft,ebtables,nft-log,nft-trace")
    assert r.returncode == 0 and "iptables-nft -t raw -I PREROUTING" in r.stdout and "nftrace set 1" in r.stdout
    assert rulesets(lab.host) == before


def test_sigkill_then_cleanup_restores_rules(lab, tmp_path: Path):
    before = rulesets(lab.host)
    proc = subprocess.Popen([sys.executable, "-m", "reportgen", "capture", "--apply", "--netns", lab.host,
                             "--backend", "iptables-nft,iptables-legacy,ebtables,nft-log,nft-trace",
                             "-o", str(tmp_path / "c"), "--", "sleep", "30"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline and "reportgen_trace" not in rulesets(lab.host)["nft"]:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert rulesets(lab.host) != before, "the killed capture should have left its rules"
    again = reportgen("capture", "--apply", "--netns", lab.host, "-o", str(tmp_path / "d"), "--", "true")
    assert again.returncode == 4 and "--cleanup" in again.stderr
    clean = reportgen("capture", "--cleanup", "--netns", lab.host)
    assert clean.returncode == 0, clean.stderr
    assert rulesets(lab.host) == before
    legacy = run(["iptables-legacy-save"], ns=lab.host, check=False).stdout
    assert "reportgen-capture" not in legacy and " -A " not in f" {legacy}"


def test_nft_trace_backend_records_monitor_output(lab, tmp_path: Path):
    case = tmp_path / "t"
    r = reportgen("capture", "--apply", "--netns", lab.host, "--proto", "icmp", "--backend", "nft-trace",
                  "-o", str(case), "--", "ip", "netns", "exec", lab.ns("c1"), "ping", "-c1", "-W2", "203.0.113.10")
    assert r.returncode == 0, r.stderr
    text = (case / "nft-monitor-trace.txt").read_text()
    assert "trace id" in text and "packet:" in text
    report = build_report(load_spec([case]))
    req = next(p for p in report.packets if p.summary.startswith("ICMP echo request 172.17.0.2 → 203.0.113.10"))
    assert req.nat and req.nat[0].type == "MASQUERADE" and "masquerade" in req.nat[0].rule
    assert any(h.event.rules for h in req.hops)


def test_snapshot_command(lab, tmp_path: Path):
    r = reportgen("snapshot", "--netns", lab.host, "-o", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    report = build_report(load_spec([tmp_path / "s"]))
    kinds = {s.kind for s in report.snapshots}
    assert {"ip-link", "ip-addr", "bridge-fdb", "route-n", "ip-route", "sysctl", "iptables-save",
            "nft-ruleset", "conntrack"} <= kinds
    sysctl = next(s for s in report.snapshots if s.kind == "sysctl").text
    assert "net.bridge.bridge-nf-call-iptables = 1" in sysctl
