"""Outputs are atomic and contained, and safe where they land (terminal, text files, XML).

Once: SIGKILL left a truncated report.json in 8 of 30 trials, two concurrent runs wrote invalid JSON,
two cases named alike overwrote each other, ``..`` inputs wrote outside ``-o``, reruns read their own
reports back in, ANSI escapes from input reached the terminal, and control bytes made SVGs invalid XML.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import SAMPLES

from reportgen.pipeline import build_report
from reportgen.render.write import write_report
from reportgen.sources.case import load_spec


def cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "reportgen", *args]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd(*args), capture_output=True, text=True, check=False, timeout=120, cwd=cwd)


def _copy_case(src: str, dest: Path) -> Path:
    shutil.copytree(SAMPLES / src, dest)
    return dest


def _big_case(dest: Path, pings: int) -> Path:
    """A case with many packets (one ping per sequence number), so writing its report takes a while."""
    lines = (SAMPLES / "seed-container-to-internet" / "dmesg.log").read_text().splitlines()
    dest.mkdir(parents=True)
    with (dest / "dmesg.log").open("w") as fh:
        for seq in range(pings):
            fh.writelines(ln.replace("SEQ=0 ", f"SEQ={seq} ") + "\n" for ln in lines)
    return dest


FORMATS = "json,text,md"


def test_sigkill_while_writing_leaves_the_old_report_or_the_new_one(tmp_path: Path):
    old = _copy_case("seed-host-to-container", tmp_path / "old" / "case")
    new = _big_case(tmp_path / "new" / "case", 400)
    out = tmp_path / "out"
    assert cli("report", str(old), "-o", str(out), "--format", FORMATS).returncode == 0
    old_json = (out / "case" / "report.json").read_text()
    start = time.monotonic()
    assert cli("report", str(new), "-o", str(tmp_path / "ref"), "--format", FORMATS).returncode == 0
    duration = time.monotonic() - start
    new_json = (tmp_path / "ref" / "case" / "report.json").read_text()
    rng = random.Random(30)
    seen = {"old": 0, "new": 0}
    for _ in range(30):
        proc = subprocess.Popen(
            cmd("report", str(new), "-o", str(out), "--format", FORMATS),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.2, 1.5) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        text = (out / "case" / "report.json").read_text()
        json.loads(text)  # never torn
        assert text in (old_json, new_json)
        seen["old" if text == old_json else "new"] += 1
        if text == old_json:
            continue
        # The new report replaced the old one: back to the old one for the next trial.
        assert cli("report", str(old), "-o", str(out), "--format", FORMATS).returncode == 0
    assert seen["old"] and seen["new"], seen  # the kills really landed before and after the swap


def test_concurrent_runs_to_one_output_folder_write_valid_files(tmp_path: Path):
    a = _big_case(tmp_path / "a" / "case", 200)
    b = _big_case(tmp_path / "b" / "case", 190)
    out = tmp_path / "out"
    for _ in range(8):
        procs = [
            subprocess.Popen(
                cmd("report", str(c), "-o", str(out), "--format", FORMATS),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for c in (a, b, b, a)
        ]
        assert all(p.wait(timeout=120) == 0 for p in procs)
        data = json.loads((out / "case" / "report.json").read_text())
        # The folder is one run's output as a whole: its text report counts the JSON's packets.
        text = (out / "case" / "report.txt").read_text()
        assert f"{data['input']['lines_total']} lines" in text
    assert [p.name for p in out.iterdir()] == ["case"]  # no temporary folders left behind


def test_a_rewritten_case_folder_keeps_no_stale_files(tmp_path: Path):
    case = _copy_case("seed-host-to-container", tmp_path / "1" / "case")
    out = tmp_path / "out"
    write_report(build_report(load_spec([case])), out, ["svg", "json", "text"])
    (out / "case" / "svg" / "p99.svg").write_text("<svg/>")  # a packet an earlier run had
    write_report(build_report(load_spec([case])), out, ["svg"])
    names = sorted(p.relative_to(out / "case").as_posix() for p in (out / "case").rglob("*"))
    assert names == [".reportgen-output", "svg", "svg/p1.svg", "svg/p2.svg", "svg/topology.svg"]


def test_cases_with_the_same_folder_name_do_not_overwrite_each_other(tmp_path: Path):
    a = _copy_case("seed-host-to-container", tmp_path / "a" / "case")
    b = _copy_case("seed-container-to-internet", tmp_path / "b" / "case")
    r = cli("report", str(a), str(b), "-o", str(tmp_path / "out"), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert "'case' is taken; writing it as 'case-2'" in r.stderr
    titles = {
        json.loads((tmp_path / "out" / n / "report.json").read_text())["case"]["title"] for n in ("case", "case-2")
    }
    assert len(titles) == 2


def test_dot_dot_inputs_write_under_the_output_folder(tmp_path: Path):
    case = _copy_case("seed-host-to-container", tmp_path / "work" / "case")
    (case / "sub").mkdir()
    out = tmp_path / "work" / "case" / "sub" / "out"
    r = cli("report", "..", "-o", "out", cwd=case / "sub")
    assert r.returncode == 0, r.stderr
    assert (out / "case" / "report.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["case"]


def test_reruns_never_read_their_own_reports_back(tmp_path: Path):
    case = _copy_case("seed-host-to-container", tmp_path / "case")
    (case / "case.yaml").unlink()  # a folder scan: every file in it is read
    counts = []
    for _ in range(4):
        r = cli("report", str(case), "-o", str(case), "--format", "json,text,md,html,svg")
        assert r.returncode == 0, r.stderr
        counts.append(json.loads((case / "case" / "report.json").read_text())["summary"]["packets"])
    assert len(set(counts)) == 1, counts
    # Asking for an output folder as input is refused, naming it; its reports are not read as files either.
    r = cli("report", str(case / "case"), "-o", str(tmp_path / "o2"))
    assert r.returncode == 2 and "reportgen output folder" in r.stderr
    r = cli("report", str(case / "case" / "report.txt"), "-o", str(tmp_path / "o2"))
    assert r.returncode == 2 and "not read back" in r.stderr
    r = cli("report", str(tmp_path / "case"), str(case / "case"), "-o", str(tmp_path / "o3"), "--format", "json")
    assert r.returncode == 0 and "skipped, it is a reportgen output folder" in r.stderr


HOSTILE = (
    "[  100.000001] FORWARD \x1b]0;owned\x07\x1b[31m\x01\x9b\u202e IN=docker0 OUT=ens\x01\u202e3 PHYSIN=veth\x1b[1m "
    "SRC=172.17.0.2 DST=192.0.2.1 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=ICMP TYPE=8 CODE=0 ID=5 SEQ=1 \x0c\n"
    "[  100.000002] \x1b[2J\x1b[Hnot a netfilter line \x08\x7f\x85\n"
    "[  100.000003] \x1b[31mmystery\x1b[0m IN=ens33 OUT= SRC=192.0.2.1 DST=172.17.0.2 LEN=84 TOS=0x00 PREC=0x00 "
    "TTL=64 ID=2 PROTO=ICMP TYPE=0 CODE=0 ID=5 SEQ=1 \x1b]8;;http://x\x07\n"
)
CONTROLS = [chr(c) for c in (*range(0, 9), *range(11, 32), *range(0x7F, 0xA0))]


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    d = tmp_path / "hostile"
    d.mkdir()
    (d / "dmesg.log").write_bytes(HOSTILE.encode())
    return d


def test_control_characters_never_reach_the_terminal_or_text_files(hostile: Path, tmp_path: Path):
    r = cli("explain", str(hostile))
    assert r.returncode == 0, r.stderr
    assert not any(c in r.stdout + r.stderr for c in CONTROLS)
    assert "\\x1b[1m" in r.stdout  # shown, escaped: the reader sees what the line held
    assert "\\u202e" in r.stdout
    out = tmp_path / "out"
    assert cli("report", str(hostile), "-o", str(out), "--format", "text,md,json").returncode == 0
    for name in ("report.txt", "report.md"):
        text = (out / "hostile" / name).read_text()
        assert not any(c in text for c in CONTROLS), name
    for name in ("report.json", "report.jsonl"):  # JSON escapes C0 itself, and keeps the value
        raw = (out / "hostile" / name).read_text()
        assert not any(chr(c) in raw for c in range(32) if chr(c) != "\n"), name
        assert '"out":"ens\\u0001\u202e3"' in raw, name


def test_every_svg_is_valid_xml(hostile: Path, tmp_path: Path):
    cases = [hostile, *sorted(p for p in SAMPLES.iterdir() if p.is_dir())]
    checked = 0
    for case in cases:
        for svg in write_report(build_report(load_spec([case])), tmp_path / "out", ["svg", "html"]):
            if svg.suffix == ".svg":
                root = ET.parse(svg).getroot()
                assert root.tag.endswith("svg")
                checked += 1
    assert checked > 2 * len(cases)
    text = "".join(p.read_text() for p in (tmp_path / "out" / "hostile" / "svg").iterdir())
    assert "\ufffd" in text  # the control characters were replaced, visibly
    assert os.path.exists(tmp_path / "out" / "hostile" / ".reportgen-output")
