"""The trace monitor a lab run or a capture starts: it must see the first packet and lose none.

A fixed sleep after starting xtables-monitor once lost the first packets of the kube-proxy lab capture
on a loaded CI machine (the NodePort SYN's KUBE-SEP rule was missing from the trace). Each test works in
a namespace of its own, deleted in ``finally``; every traffic loop is bounded by a packet count.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator

import pytest
from conftest import LAB_MARKS

from reportgen.lab.netns import MonitorNotReady, TraceMonitor

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
    """Well over 64 KiB of trace output, and nobody reads it until the end: every packet is there."""
    mon = TraceMonitor(["ip", "netns", "exec", ns, "xtables-monitor", "--trace"])
    sh(ns, "ping", "-q", "-c", "300", "-i", "0.002", "-W", "1", "127.0.0.1")
    text = mon.stop()
    assert len(text.encode()) > 2 * 65536
    assert _traced_packets(text) == 600


def test_a_monitor_that_cannot_start_is_a_clear_error(ns: str) -> None:
    with pytest.raises(MonitorNotReady, match="before it subscribed"):
        TraceMonitor(["ip", "netns", "exec", ns, "sh", "-c", "exit 3"])
