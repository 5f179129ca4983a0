"""The trap scenarios, run live on this kernel: the simulator's prediction from the fresh snapshots
must agree with the fresh trace (and disagree only for the scenario built to diverge)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import LAB_MARKS

from reportgen.lab.scenarios_traps import TRAPS
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

pytestmark = LAB_MARKS


@pytest.mark.parametrize("trap", TRAPS, ids=lambda t: t.name)
def test_trap_live(trap, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from reportgen.lab.runner import run_scenario

    case = run_scenario(trap, tmp_path)
    tag = yaml.safe_load((case / "case.yaml").read_text())["lab"]["run_tag"]
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert f"rglab-{tag}-" not in left, "the run left its namespaces behind"
    report = build_report(load_spec([case]))
    statuses = [c.prediction.status for c in report.conversations if c.prediction is not None]
    assert statuses, "no conversation was compared with a prediction"
    want = "diverges" if trap.name == "trap-rule-removed-after-trace" else "agrees"
    assert statuses[0] == want, [c.prediction.summary for c in report.conversations if c.prediction]
