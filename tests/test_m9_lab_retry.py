"""A lab run whose trace monitor lost events stops there, and the next run starts clean.

The loss is made on purpose: the first run's xtables-monitor is killed before its traffic, so the kernel's
trace events have no reader (TraceMonitor.lost: "stopped early"). Everything runs in the lab's own
namespaces (per-run tags), torn down by the runner.
"""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import LAB_MARKS

from reportgen.lab import runner
from reportgen.lab.netns import TraceMonitor, list_namespaces
from reportgen.lab.scenarios import SCENARIOS

pytestmark = list(LAB_MARKS)


def test_a_lost_run_writes_nothing_and_the_retry_starts_from_a_fresh_lab(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    scenario = next(s for s in SCENARIOS if s.name == "xtables-trace-tcp-to-internet")
    monitors: list[TraceMonitor] = []
    tags: list[str] = []
    snapshots: list[str] = []
    seen_at_retry: list[set[str]] = []

    class Recorded(TraceMonitor):
        def __init__(self, argv: list[str]) -> None:
            super().__init__(argv)
            monitors.append(self)

    def traffic(lab: runner.Lab) -> None:
        tags.append(lab.tag)
        if len(tags) == 1:
            os.kill(monitors[-1].proc.pid, signal.SIGKILL)  # the first run's trace has no reader
            monitors[-1].proc.wait()
        else:
            seen_at_retry.append(list_namespaces())
        scenario.traffic(lab)

    real_collect = runner.collect

    def collect(case: Path, **kw: object) -> dict[str, object]:
        snapshots.append(tags[-1])
        return real_collect(case, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "TraceMonitor", Recorded)
    monkeypatch.setattr(runner, "collect", collect)
    case = runner.run_scenario(replace(scenario, traffic=traffic), tmp_path)

    assert len(tags) == 2 and tags[0] != tags[1]
    assert "stopped early (exit -9)" in (monitors[0].lost or "") and monitors[1].lost is None
    assert "attempt 1 of 3" in capfd.readouterr().err
    # The lost run took no snapshot and left no namespace for the retry; the case is the retry's.
    assert snapshots == [tags[1]]
    assert not {n for n in seen_at_retry[0] if n.startswith(f"rglab-{tags[0]}-")}
    manifest = yaml.safe_load((case / "case.yaml").read_text())
    assert manifest["lab"]["run_tag"] == tags[1]
    assert "TRACE:" in (case / "xtables-monitor.txt").read_text()
    assert not {n for n in list_namespaces() if n.startswith((f"rglab-{tags[0]}-", f"rglab-{tags[1]}-"))}
