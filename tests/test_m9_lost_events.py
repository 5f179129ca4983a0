"""A capture whose trace monitor lost events: the report marks the conversations the loss may have touched.

The case is the lab's container-to-internet ping (one conversation at kernel time 1464 s) with a second
ping ten minutes later (another echo id); the case note says when the monitor ran.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from conftest import SAMPLES

from reportgen.explain.lost import MAY_LACK_WORDS, MonitorLoss, monitor_losses
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

LOST = "the kernel dropped 7 trace events: the monitor's socket was full"


def _case(tmp_path: Path, note: str | None) -> Path:
    case = tmp_path / "case"
    shutil.copytree(SAMPLES / "lab-container-to-internet", case)
    log = case / "dmesg.log"
    lines = log.read_text().splitlines()

    def later(line: str) -> str:
        stamp = float(line[1:13])
        return f"[{stamp + 600:12.6f}]" + line[14:].replace("ID=13055", "ID=13099")

    log.write_text("\n".join([*lines, *map(later, lines)]) + "\n")
    manifest = yaml.safe_load((case / "case.yaml").read_text())
    if note is not None:
        manifest["notes"] = [note]
    (case / "case.yaml").write_text(yaml.safe_dump(manifest))
    return case


def _marked(case: Path) -> dict[str, bool]:
    """Each conversation ("early" at 1464 s, "late" ten minutes after) and whether its answer says the
    trace monitor may have lost its lines."""
    report = build_report(load_spec([case]))
    by_conv = {a.conversation: a for a in report.answers}
    by_packet = {p.id: p for p in report.packets}
    out = {}
    for conv in report.conversations:
        stamp = by_packet[conv.packets[0]].hops[0].event.record.stamp
        assert stamp is not None
        answer = by_conv[conv.id]
        said = any("trace monitor lost events" in a for a in answer.assumptions)
        assert said == answer.sentence.endswith(f"; {MAY_LACK_WORDS}."), answer.sentence
        out["early" if stamp < 2000 else "late"] = said
    return out


def test_only_the_conversation_in_the_monitors_time_is_marked(tmp_path: Path) -> None:
    note = MonitorLoss(LOST, "nft-monitor-trace.txt", 1460.0, 1470.0).note()
    marked = _marked(_case(tmp_path, note))
    assert marked == {"early": True, "late": False}


def test_a_loss_not_placed_in_time_marks_every_conversation(tmp_path: Path) -> None:
    # The note of an earlier capture: no time.
    note = f"The trace monitor lost events ({LOST}); packets after that point are missing from nft-monitor-trace.txt."
    marked = _marked(_case(tmp_path, note))
    assert marked == {"early": True, "late": True}


def test_no_loss_marks_nothing(tmp_path: Path) -> None:
    marked = _marked(_case(tmp_path, None))
    assert marked == {"early": False, "late": False}


def test_the_note_capture_writes_is_read_back() -> None:
    loss = MonitorLoss("xtables-monitor --trace stopped early (exit 1): cannot receive (x)", "t.txt", 12.5, 99.25)
    assert monitor_losses(["other note", loss.note()]) == (loss,)
    unplaced = MonitorLoss(LOST, "t.txt", None, None)
    assert monitor_losses([unplaced.note()]) == (unplaced,)
