"""report over many cases: index, keep-going with exit 5, empty-case warning, --jobs, selection, CLI help."""

from __future__ import annotations

import gc
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLES

ALL = sorted(p for p in SAMPLES.iterdir() if p.is_dir())


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reportgen", *args], capture_output=True, text=True, cwd=ROOT, check=False, timeout=600
    )


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_batch_over_all_samples_and_a_broken_case(tmp_path: Path) -> None:
    broken = tmp_path / "in" / "broken-case"
    broken.mkdir(parents=True)
    (broken / "case.yaml").write_text("title: x\ntrace: [a\n")
    empty = tmp_path / "in" / "empty-case"
    empty.mkdir()
    (empty / "dmesg.log").write_text("")
    out = tmp_path / "out"
    r = cli("report", *map(str, ALL), str(broken), str(empty), "-o", str(out), "--format", "html,json,md", "-j", "4")
    assert r.returncode == 5, r.stderr
    # The bad case is named with its file and line; every other case was still written.
    assert re.search(r"error: case broken-case: .*broken-case/case.yaml:\d+: not valid YAML", r.stderr), r.stderr
    assert "warning: case empty-case: no trace lines: the case is empty" in r.stderr
    assert f"reportgen: {len(ALL) + 2} cases: {len(ALL) + 1} written, 1 failed, 1 with warnings" in r.stderr
    assert "\r" not in r.stderr  # no progress display when stderr is not a terminal
    for case in ALL:
        assert (out / case.name / "report.html").exists(), case
    index = (out / "index.html").read_text()
    rows = re.findall(r"<tr(?: class=\"failed\")?>\s*<td>(.*?)</td>", index, flags=re.S)
    assert len(rows) == len(ALL) + 2
    assert "failed: " in index and "not valid YAML" in index
    drop = re.search(r'<a href="lab-tcp-dropped/report.html">lab-tcp-dropped</a>.*?</tr>', index, flags=re.S)
    assert drop and "4 dropped-by-rule" in drop.group(0)
    assert '<td class="verdict-dropped-by-rule">dropped-by-rule</td>' in drop.group(0)
    assert '<a href="lab-tcp-dropped/report.md">Markdown</a>' in drop.group(0)


def test_jobs_output_is_byte_identical_to_serial(tmp_path: Path) -> None:
    cases = [str(SAMPLES / c) for c in ("seed-container-to-internet", "lab-tcp-dropped", "lab-published-port")]
    assert cli("report", *cases, "-o", str(tmp_path / "serial"), "--format", "html,svg,json,text,md").returncode == 0
    assert (
        cli(
            "report", *cases, "-o", str(tmp_path / "par"), "--format", "html,svg,json,text,md", "--jobs", "3"
        ).returncode
        == 0
    )
    serial, par = _files(tmp_path / "serial"), _files(tmp_path / "par")
    assert serial == par and len(serial) > 15


def test_one_bad_case_alone_is_a_usage_error(tmp_path: Path) -> None:
    case = tmp_path / "case"
    case.mkdir()
    (case / "case.yaml").write_text("title: x\ntrace: [a\n")
    r = cli("report", str(case), "-o", str(tmp_path / "out"))
    assert r.returncode == 2 and "case.yaml:3: not valid YAML" in r.stderr
    assert not (tmp_path / "out" / "index.html").exists()  # one case, no index


def test_format_did_you_mean_and_help_examples() -> None:
    r = cli("report", str(SAMPLES / "seed-host-to-container"), "-o", "/nonexistent", "--format", "html,txt")
    assert r.returncode == 2 and "unknown format txt; did you mean text?" in r.stderr
    for cmd in ("report", "explain"):
        h = cli(cmd, "--help").stdout
        assert "examples:" in h and f"reportgen {cmd} " in h
    assert "journalctl -k" in cli("explain", "--help").stdout


def test_selection_keeps_the_asked_conversations(tmp_path: Path) -> None:
    # Two captures as one case: a routed ping (MASQUERADE) and a TCP connection last seen in FORWARD
    # (without the ruleset, the DROP rule that ended it is not known: last-seen, not dropped).
    ping = tmp_path / "ping.log"
    shutil.copy(SAMPLES / "seed-container-to-internet" / "dmesg.log", ping)
    drop = tmp_path / "drop.log"
    shutil.copy(SAMPLES / "lab-tcp-dropped" / "dmesg.log", drop)
    full = cli("explain", str(ping), str(drop), "--level", "minimal").stdout
    assert re.findall(r"^(c\d+)  (\w+)", full, flags=re.M) == [("c1", "ICMP"), ("c2", "TCP")], full

    def convs(*sel: str) -> list[str]:
        out = cli("explain", str(ping), str(drop), "--level", "minimal", *sel).stdout
        return re.findall(r"^(c\d+)  ", out, flags=re.M)

    assert convs("--flow", "c2") == ["c2"]
    assert convs("--verdict", "last-seen") == ["c2"]
    assert convs("--port", "81") == ["c2"]
    assert convs("--host", "114.114.114.114") == ["c1"]
    assert convs("--host", "192.168.0.10") == ["c1"]  # the address after MASQUERADE selects it too
    assert convs("--verdict", "last-seen", "--host", "114.114.114.114") == []
    detailed = cli("explain", str(ping), str(drop), "--flow", "c2").stdout
    assert "Selected 1 of 2 conversations (flow c2)." in detailed
    # The bottom line and the case summary speak of the selection only, not of the whole case.
    assert detailed.count("answer: ") == 1 and "114.114.114.114" not in detailed
    md = cli("explain", str(ping), str(drop), "--flow", "c2", "--format", "md").stdout
    assert "1 flow, 4 packets" in md and "114.114.114.114" not in md


def test_empty_folder_is_a_warning_not_a_silent_success(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    r = cli("report", str(tmp_path / "nothing"), "-o", str(tmp_path / "out"), "--format", "json")
    assert r.returncode == 0 and "warning: case nothing: no trace lines" in r.stderr
    shutil.rmtree(tmp_path / "out")


def test_cyclic_gc_is_back_after_a_case_also_a_failed_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A case pauses the cyclic GC for speed; the next case, or the caller, must get it back."""
    from reportgen.batch import CaseJob, run_case
    from reportgen.render import write

    broken = tmp_path / "broken-case"
    broken.mkdir()
    (broken / "case.yaml").write_text("title: x\ntrace: [a\n")
    assert gc.isenabled()
    ok = run_case(CaseJob((SAMPLES / "lab-clusterip",), tmp_path / "out", ("json",)))
    assert ok.error is None and ok.packets > 0
    assert run_case(CaseJob((broken,), tmp_path / "out", ("json",))).error
    assert gc.isenabled() and gc.get_freeze_count() == 0

    def bug(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(write, "output_folder", bug)  # both the streamed and the whole-case writer
    with pytest.raises(RuntimeError):  # --debug lets the exception through: the GC still comes back
        run_case(CaseJob((SAMPLES / "lab-clusterip",), tmp_path / "out", ("json",), debug=True))
    assert gc.isenabled() and gc.get_freeze_count() == 0
    monkeypatch.undo()
    gc.disable()
    try:  # a caller that runs without the collector keeps it off
        run_case(CaseJob((SAMPLES / "lab-clusterip",), tmp_path / "out2", ("json",)))
        assert not gc.isenabled()
    finally:
        gc.enable()
