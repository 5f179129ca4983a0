"""``reportgen capture`` whose trace monitor lost events: the report's answers say which conversations the
loss may have touched. The loss is real: the monitor (nft monitor trace) is killed once it listens, so the
ping's trace events have no reader. Runs in the lab's namespaces (as test_capture's), torn down after.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import yaml
from conftest import LAB_MARKS

from reportgen import capture as cp
from reportgen.explain.lost import monitor_losses
from reportgen.lab.netns import Lab, TraceMonitor
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

pytestmark = LAB_MARKS


def test_a_capture_that_lost_events_marks_its_conversations(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    class Killed(TraceMonitor):
        def __init__(self, argv: list[str]) -> None:
            super().__init__(argv)
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    monkeypatch.setattr(cp, "TraceMonitor", Killed)
    p = cp.plan(["iptables-nft", "nft-trace"], cp.Filter(proto="icmp"), families=("4",))
    ping = ["ip", "netns", "exec", lab.ns("c1"), "ping", "-c1", "-W2", "203.0.113.10"]
    out = cp.apply(p, cp.local_runner(lab.host), tmp_path / "case", ping, lab.host)

    notes = yaml.safe_load((out / "case.yaml").read_text())["notes"]
    (loss,) = monitor_losses(notes)
    assert "stopped early (exit -9)" in loss.what and loss.start is not None and loss.end is not None
    assert "lost events" in capfd.readouterr().err
    report = build_report(load_spec([out]))
    conv = next(c for c in report.conversations if "203.0.113.10" in c.summary)
    answer = next(a for a in report.answers if a.conversation == conv.id)
    assert any("trace monitor lost events" in a and "while these packets passed" in a for a in answer.assumptions)
