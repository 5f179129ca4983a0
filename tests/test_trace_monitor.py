"""The trace monitor a lab run or a capture starts: it must see the first packet and lose none.

A fixed sleep after starting xtables-monitor once lost the first packets of the kube-proxy lab capture
on a loaded CI machine (the NodePort SYN's KUBE-SEP rule was missing from the trace). Each test works in
a namespace of its own, deleted in ``finally``; every traffic loop is bounded by a packet count.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
from collections.abc import Iterator

import pytest
from conftest import LAB_MARKS

from reportgen.lab.netns import MONITOR_RCVBUF, MonitorFailed, TraceMonitor

pytestmark = list(LAB_MARKS)


def sh(ns: str, *argv: str) -> str:
    r = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, (argv, r.stderr)
    return r.stdout


@pytest.fixture()
def ns() -> Iterator[str]:
    """A namespace whose raw OUTPUT traces every ICMP packet (iptables-nft TRACE, read by xtables-monitor)."""
    name = f"rgmon-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        sh(name, "ip", "link", "set", "lo", "up")
        sh(name, "iptables-nft", "-t", "raw", "-A", "OUTPUT", "-p", "icmp", "-j", "TRACE")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def _traced_packets(text: str) -> int:
    """How many packets the monitor printed: xtables-monitor starts each with one "PACKET: <family> <id>"
    line (its trace id is not unique: the kernel derives it from the skb's address, which is reused)."""
    return len(re.findall(r"^PACKET: \d+ [0-9a-f]+ ", text, re.M))


def test_a_monitor_slow_to_start_still_sees_the_first_packet(ns: str) -> None:
    """The monitor takes a second to subscribe (as on a loaded machine); traffic sent right after the
    start must still be traced, because the start waits for the subscription, not for a fixed time."""
    mon = TraceMonitor(["ip", "netns", "exec", ns, "sh", "-c", "sleep 1; exec xtables-monitor --trace"])
    sh(ns, "ping", "-c", "1", "-W", "1", "127.0.0.1")
    text = mon.stop()
    assert _traced_packets(text) == 2, text  # the echo request and its reply, both leave by OUTPUT


def test_no_event_is_lost_past_a_pipe_buffer(ns: str) -> None:
    """Well over 64 KiB of trace output, and nobody reads it until the end: every packet is there.
    (nft monitor here: it keeps up with a burst, its socket buffer is 16 MiB; xtables-monitor's is not.)"""
    mon = TraceMonitor(["ip", "netns", "exec", ns, "nft", "monitor", "trace"])
    sh(ns, "ping", "-q", "-c", "300", "-i", "0.002", "-W", "1", "127.0.0.1")
    text = mon.stop()
    assert len(text.encode()) > 2 * 65536 and mon.lost is None
    # nft prints one "packet:" line per traced packet in one base chain (src/trace.c trace_print_packet)
    assert text.count(" packet: ") == 600


def test_a_monitor_that_cannot_start_is_a_clear_error(ns: str) -> None:
    with pytest.raises(MonitorFailed, match="before it subscribed"):
        TraceMonitor(["ip", "netns", "exec", ns, "sh", "-c", "exit 3"])


@pytest.mark.parametrize(
    ("monitor", "pings", "said"),
    [
        # xtables-monitor exits on ENOBUFS (its socket gets 16 MiB, as nft monitor's: 6000 pings overflow it);
        (["xtables-monitor", "--trace"], "6000", "stopped early"),
        # nft monitor asks for a 16 MiB buffer (src/mnl.c NFTABLES_NLEVENT_BUFSIZ) and goes on after a
        # loss, so only the socket's drop counter tells.
        (["nft", "monitor", "trace"], "6000", "the kernel dropped"),
    ],
)
def test_lost_events_are_reported(ns: str, monitor: list[str], pings: str, said: str) -> None:
    """A monitor that cannot keep up (here: stopped while the traced packets pass) loses the events that
    no longer fit its socket. That must be said, never passed off as a whole trace."""
    mon = TraceMonitor(["ip", "netns", "exec", ns, *monitor])
    os.kill(mon.proc.pid, signal.SIGSTOP)
    try:
        sh(ns, "ping", "-q", "-f", "-c", pings, "-W", "1", "127.0.0.1")
    finally:
        os.kill(mon.proc.pid, signal.SIGCONT)
    text = mon.stop()
    assert mon.lost is not None and said in mon.lost, mon.lost
    assert text.count("PACKET:" if monitor[0] == "xtables-monitor" else "packet: ") < 2 * int(pings)


def test_xtables_monitor_keeps_a_burst_its_own_socket_buffer_could_not(ns: str) -> None:
    """600 trace events queued at once (the monitor stopped while they come): about 1.1 MiB, five times
    the default receive buffer xtables-monitor keeps (it exited on ENOBUFS). With the buffer TraceMonitor
    gives its socket, all of them are printed and nothing is reported lost."""
    mon = TraceMonitor(["ip", "netns", "exec", ns, "xtables-monitor", "--trace"])
    assert mon.rcvbuf is not None and mon.rcvbuf >= MONITOR_RCVBUF
    os.kill(mon.proc.pid, signal.SIGSTOP)
    try:
        sh(ns, "ping", "-q", "-f", "-c", "300", "-W", "1", "127.0.0.1")
    finally:
        os.kill(mon.proc.pid, signal.SIGCONT)
    text = mon.stop()
    assert mon.lost is None and _traced_packets(text) == 600, mon.lost


def test_a_whole_trace_reports_nothing_lost(ns: str) -> None:
    mon = TraceMonitor(["ip", "netns", "exec", ns, "xtables-monitor", "--trace"])
    sh(ns, "ping", "-c", "3", "-i", "0.2", "-W", "1", "127.0.0.1")
    assert _traced_packets(mon.stop()) == 6 and mon.lost is None


def test_a_lab_run_whose_monitor_lost_events_runs_again(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The lab never writes a case from a partial trace: it runs the scenario again in a fresh lab, and
    gives up with a clear error after MONITOR_ATTEMPTS runs."""
    from reportgen.lab import runner
    from reportgen.lab.scenarios_public import PUBLIC

    results = iter(["xtables-monitor stopped early (exit 1)", None])
    calls: list[str] = []

    def once(sc, case, keep):  # type: ignore[no-untyped-def]
        calls.append(sc.name)
        return next(results)

    monkeypatch.setattr(runner, "_run_once", once)
    assert runner.run_scenario(PUBLIC[0], tmp_path) == tmp_path / PUBLIC[0].name and len(calls) == 2
    monkeypatch.setattr(runner, "_run_once", lambda sc, case, keep: "the kernel dropped 3 trace events")
    with pytest.raises(MonitorFailed, match=f"in {runner.MONITOR_ATTEMPTS} runs: the kernel dropped 3"):
        runner.run_scenario(PUBLIC[0], tmp_path)
