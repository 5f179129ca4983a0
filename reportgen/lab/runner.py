"""Run lab scenarios: build, log, send traffic, read the kernel's lines, snapshot, tear down."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reportgen.lab.netns import (
    STATE_DIR,
    KernelLog,
    Lab,
    LabUnavailable,
    MonitorFailed,
    TraceMonitor,
    check_available,
    log_all_netns,
    recover_dead_runs,
    run,
    signals_as_exit,
)
from reportgen.lab.scenarios import (
    SCENARIOS,
    Scenario,
    insert_legacy_trace,
    insert_log_rules,
    insert_nft_log_rules,
    insert_trace_rules,
    ping_id,
    warm_up,
)
from reportgen.snapshot import collect


def tool_versions() -> dict[str, str]:
    """Versions of the kernel and the userspace tools that produced a capture."""
    out = {"kernel": platform.release()}
    for name, argv in (
        ("iptables", ["iptables", "--version"]),
        ("ebtables", ["ebtables", "--version"]),
        ("nftables", ["nft", "--version"]),
        ("iproute2", ["ip", "-V"]),
        ("conntrack", ["conntrack", "--version"]),
    ):
        r = subprocess.run(argv, capture_output=True, text=True, check=False)
        out[name] = (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else "unknown"
    return out


class RunKeeps:
    """Which kernel records are this run's: those carrying its tag (every LOG prefix the lab adds and
    its veth port names), and the lines of a tool's own rules (``also``, e.g. "[UFW ") that name an
    interface or a MAC address of this run. The kernel ring is shared by every namespace
    (net.netfilter.nf_log_all_netns), and a tool's prefix carries no run tag, so a line of another
    run's copy of the same rules is told apart only by its devices: IN=/OUT=/PHYSIN= name this run's
    veth ports, or MAC= (destination:source:type, nf_log_syslog.c dump_mac_header) holds a MAC of
    this run's uplink pair.

    A tool's line with neither, a packet the host sends itself (logged at OUTPUT or POSTROUTING: no
    MAC=, which nf_log_syslog.c prints only for a packet with an input device, and OUT=ens33, a name
    every run's host namespace has), cannot be attributed: it is not kept, and ``unattributed`` counts
    it so the case notes say what was left out."""

    def __init__(self, tag: str, also: tuple[str, ...], macs: tuple[str, ...]) -> None:
        self.tag = tag
        self.also = also
        self.macs = macs
        self.unattributed = 0

    def __call__(self, msg: str) -> bool:
        if self.tag in msg:
            return True
        if not msg.startswith(self.also):
            return False
        mac = msg.partition(" MAC=")[2].split(" ", 1)[0].lower()
        if not mac:
            self.unattributed += 1
            return False
        return mac[:17] in self.macs or mac[18:35] in self.macs  # destination, source


def unattributed_note(count: int, also: tuple[str, ...]) -> str:
    """The case note for a tool's lines no device or MAC tied to this run (RunKeeps.unattributed)."""
    which = " or ".join(f"'{a.strip()}'" for a in also)
    return (
        f"{count} kernel line{'s' if count != 1 else ''} of the tool's own rules ({which}) named neither a "
        "device nor a MAC of this run (packets a host sends itself: no MAC=, OUT=ens33 as in every lab "
        "run). The kernel log is shared by every network namespace, so such a line may be another "
        "run's; they were left out of the trace."
    )


def _unique_lab() -> Lab:
    existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for _ in range(50):
        lab = Lab()
        if f"rglab-{lab.tag}-" not in existing and not list(STATE_DIR.glob(f"lab-{lab.tag}-*.json")):
            return lab
    raise LabUnavailable("could not find a free run tag (too many lab namespaces exist)")


# A run whose trace monitor lost events, or whose kernel log lines were overwritten before they were
# read, is run again in a fresh lab, at most this many times in all: a partial trace would make the case
# tell a different story than the traffic did.
MONITOR_ATTEMPTS = 3


def run_scenario(sc: Scenario, out_dir: Path, keep: bool = False) -> Path:
    """Run one scenario in a fresh lab and write its case folder; returns the folder."""
    case = out_dir / sc.name
    case.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, MONITOR_ATTEMPTS + 1):
        lost = _run_once(sc, case, keep)
        if lost is None:
            return case
        print(f"reportgen lab: {sc.name}: {lost} (attempt {attempt} of {MONITOR_ATTEMPTS})", file=sys.stderr)
    raise MonitorFailed(f"trace events were lost in {MONITOR_ATTEMPTS} runs: {lost}")


def _run_once(sc: Scenario, case: Path, keep: bool) -> str | None:
    """One run of a scenario in a fresh lab, writing its case folder; returns what the run lost (trace
    monitor events, or kernel log records overwritten before they were read), None when nothing.

    A run that lost something stops as soon as the monitor has stopped: it writes nothing and
    takes no snapshot (the next run writes the case), and its lab is torn down also with ``keep``, so
    the next run starts from nothing of this one's but the case folder it did not touch."""
    lab = _unique_lab()
    lost: str | None = None
    with signals_as_exit(), log_all_netns(lab.tag):
        try:
            traced = _trace(sc, lab)
            lost = traced.lost
            if lost is None:
                _write_case(sc, case, lab, traced)
        finally:
            if not keep or lost is not None:
                lab.teardown()
    return lost


@dataclass
class _Traced:
    """What one run's traffic left: the kernel log lines, the monitor's output and what it lost."""

    lines: list[str]
    trace_out: str
    lost: str | None
    unattributed: int


def _trace(sc: Scenario, lab: Lab) -> _Traced:
    """Build the lab, add the logging and tracing rules, send the traffic, and read what was logged."""
    lab.build(backend=sc.backend)
    if sc.brnf_off:
        run(["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"], ns=lab.host)
    if sc.setup:
        sc.setup(lab)
    warm_up(lab, v6=sc.v6)
    klog = KernelLog()
    monitor: TraceMonitor | None = None
    traced = _Traced([], "", None, 0)
    try:
        if sc.nft:
            insert_nft_log_rules(lab, sc.proto)
        elif sc.log in ("iptables", "ebtables"):
            insert_log_rules(lab, sc.proto, sc.convention, v6=sc.v6, ipt=sc.log == "iptables")
        if sc.trace == "legacy":
            insert_legacy_trace(lab)
        elif sc.trace:
            port = 80 if sc.proto == "tcp" else None
            cmd = insert_trace_rules(lab, sc.trace, sc.proto, port)
            monitor = TraceMonitor(["ip", "netns", "exec", lab.host, *cmd])
        sc.traffic(lab)
        if sc.trace == "legacy":
            marker = f"ID={ping_id(lab)} SEQ="
            traced.lines = klog.read(lambda msg: msg.startswith("TRACE: ") and marker in msg)
        else:
            keeps = RunKeeps(lab.tag, sc.also_log, lab.uplink_macs() if sc.also_log else ())
            traced.lines = klog.read(keeps)
            traced.unattributed = keeps.unattributed
    finally:
        klog.close()
        if monitor is not None:
            traced.trace_out = monitor.stop()
            traced.lost = monitor.lost
    if klog.overwritten and traced.lost is None and (sc.log != "none" or sc.trace == "legacy"):
        traced.lost = f"the kernel log overwrote records before they were read ({klog.overwritten} gaps)"
    return traced


def _write_case(sc: Scenario, case: Path, lab: Lab, traced: _Traced) -> None:
    """Write the case folder of a run whose trace is whole: the traces, the snapshot and the manifest."""
    traces = []
    if sc.log != "none" or sc.trace == "legacy":
        (case / "dmesg.log").write_text("".join(line + "\n" for line in traced.lines), encoding="utf-8")
        traces.append("dmesg.log")
    if sc.trace in ("xtables-monitor", "nft-monitor"):
        name = "xtables-monitor.txt" if sc.trace == "xtables-monitor" else "nft-monitor-trace.txt"
        (case / name).write_text(traced.trace_out, encoding="utf-8")
        traces.append(name)
    snap = collect(case, runner=lambda argv: run(argv, ns=lab.host, check=False), bridges=("docker0",))
    containers = []
    for i, role in ((1, "c1"), (2, "c2")):
        f = f"container{i}-ip-addr.txt"
        (case / f).write_text(run(["ip", "addr", "show"], ns=lab.ns(role)).stdout, encoding="utf-8")
        containers.append({"file": f, "kind": "ip-addr", "host": f"container{i}"})
    _write_manifest(case, sc, lab, snap, containers, traces, traced.unattributed)


def _write_manifest(
    case: Path,
    sc: Scenario,
    lab: Lab,
    snap: dict[str, Any],
    containers: list[dict[str, str]],
    traces: list[str],
    unattributed: int = 0,
) -> None:
    c1, c2 = lab.ports()
    manifest = {
        "title": f"Lab: {sc.title}",
        "description": (
            f"{sc.description}\nCaptured by `reportgen lab {sc.name}` in network namespaces: "
            f"bridge docker0 (172.17.0.1/16, fd00:17::1/64) with container1 on port {c1} and "
            f"container2 on port {c2}, uplink ens33 (198.51.100.10/24) to an 'internet' namespace "
            f"(198.51.100.1, host 203.0.113.10), and Docker's iptables rules. Log prefixes carry "
            f"the run tag {lab.tag!r}."
        ),
        "trace": traces,
        "snapshots": snap["snapshots"] + containers,
        "attachments": snap["attachments"],
        "lab": {
            "scenario": sc.name,
            "run_tag": lab.tag,
            "versions": tool_versions(),
            "log_convention": "nft log" if sc.nft else sc.convention,
            "rule_trace": sc.trace,
            "missing": snap["missing"],
        },
        "notes": [
            "ebtables-nft has no broute table, so the BROUTING hook cannot be logged here.",
            *([unattributed_note(unattributed, sc.also_log)] if unattributed else []),
        ],
    }
    (case / "case.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True), encoding="utf-8")


def main(names: list[str], out_dir: Path, keep: bool = False, cleanup: bool = False) -> int:
    """CLI entry: run the named scenarios (all by default), or undo killed runs with cleanup."""
    from reportgen.lab.scenarios_public import PUBLIC
    from reportgen.lab.scenarios_traps import TRAPS

    by_name = {s.name: s for s in (*SCENARIOS, *TRAPS, *PUBLIC)}
    if names == ["list"]:
        for s in by_name.values():
            print(f"{s.name:32} {s.title}")
        return 0
    unknown = [n for n in names if n not in by_name]
    if unknown:
        print(f"reportgen lab: unknown scenario {', '.join(unknown)}; try 'reportgen lab list'", file=sys.stderr)
        return 2
    try:
        check_available()
    except LabUnavailable as exc:
        print(f"reportgen lab: {exc}", file=sys.stderr)
        return 4
    if cleanup:
        done = recover_dead_runs()
        print(f"reportgen lab --cleanup: {len(done)} actions" + "".join(f"\n  {d}" for d in done))
        return 0
    for name in names or list(by_name):
        try:
            case = run_scenario(by_name[name], out_dir, keep=keep)
        except MonitorFailed as exc:
            print(f"reportgen lab: {name}: {exc}", file=sys.stderr)
            return 4
        lines = sum(
            p.read_text().count("\n")
            for p in case.iterdir()
            if p.name in ("dmesg.log", "xtables-monitor.txt", "nft-monitor-trace.txt")
        )
        print(f"{name}: {lines} trace lines -> {case}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:], Path(os.environ.get("OUT", "lab-out"))))
