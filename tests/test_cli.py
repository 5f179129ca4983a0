"""The command line as a user meets it: outputs, exit codes and error messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import SAMPLES


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reportgen", *args], capture_output=True, text=True, check=False, timeout=120
    )


def test_report_writes_every_format(tmp_path: Path):
    r = cli(
        "report", str(SAMPLES / "seed-host-to-container"), "-o", str(tmp_path), "--format", "html,svg,json,text,md,pdf"
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "seed-host-to-container"
    assert "-> " + str(out / "report.html") in r.stdout
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == [
        ".reportgen-output",
        "report.html",
        "report.json",
        "report.jsonl",
        "report.md",
        "report.pdf",
        "report.txt",
        "svg/p1.svg",
        "svg/p2.svg",
        "svg/topology.svg",
    ]


def test_explain_prints_the_tree():
    r = cli("explain", str(SAMPLES / "seed-container-to-internet"))
    assert r.returncode == 0
    assert "├─ ×1 (p1) request [routed]: 172.17.0.2 → 114.114.114.114 ICMP echo-request id 2048 seq 0" in r.stdout
    assert "NAT MASQUERADE (original, by rule) at ipv4 nat POSTROUTING" in r.stdout


def test_bad_manifest_names_file_and_line(tmp_path: Path):
    case = tmp_path / "case"
    case.mkdir()
    (case / "case.yaml").write_text("title: x\ntrace: [a\n")
    r = cli("report", str(case), "-o", str(tmp_path / "out"))
    assert r.returncode == 2
    assert "case.yaml:" in r.stderr and "not valid YAML" in r.stderr


def test_missing_input_and_unknown_format(tmp_path: Path):
    r = cli("report", str(tmp_path / "nope.log"), "-o", str(tmp_path))
    assert r.returncode == 2 and "nope.log: no such file" in r.stderr
    r = cli("report", str(SAMPLES / "seed-host-to-container"), "-o", str(tmp_path), "--format", "html,docx")
    assert r.returncode == 2 and "unknown format docx" in r.stderr


def test_strict_fails_on_unrecognised_hooks(tmp_path: Path):
    # Neither a known prefix nor IN=/OUT= tell this line's hook (an ARP-less IP line with both empty).
    log = tmp_path / "odd.log"
    log.write_text("Jul  3 08:02:51 desk kernel: [171281.739717] odd: IN= OUT= SRC=192.0.2.1 "
                   "DST=192.0.2.2 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=TCP SPT=1 DPT=22 WINDOW=1 RES=0x00 "
                   "SYN URGP=0\n")
    assert cli("explain", str(log)).returncode == 0
    strict = cli("explain", "--strict", str(log))
    assert strict.returncode == 1 and "--strict" in strict.stderr
    pm = tmp_path / "map.yaml"
    pm.write_text("prefixes:\n  'odd:': ipv4 filter INPUT\n")
    mapped = cli("explain", "--strict", "--prefix-map", str(pm), str(log))
    # A prefix map names the family, table and chain, not the tool: the label names the family.
    assert mapped.returncode == 0 and "IPv4 filter INPUT" in mapped.stdout


def test_an_unexpected_error_is_one_line_naming_the_input_and_never_exit_1(tmp_path: Path, monkeypatch, capsys):
    from reportgen import cli as cli_module
    from reportgen import pipeline as case_module

    def broken(spec, *args, **kwargs):  # a parser bug, as the fuzzer once found 28 of them
        raise IndexError("list index out of range")

    monkeypatch.setattr(case_module, "stream_case", broken)  # report
    monkeypatch.setattr(case_module, "build_report", broken)  # explain
    case = str(SAMPLES / "seed-host-to-container")
    assert cli_module.main(["report", case, "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and case in err and "IndexError" in err and "Traceback" not in err
    assert cli_module.main(["explain", "--debug", case]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "raise IndexError" in err and case in err.splitlines()[-1]


def test_unreadable_input_is_exit_2_naming_the_file(tmp_path: Path):
    d = tmp_path / "case"
    d.mkdir()
    (d / "dmesg.log").write_text("x\n")
    (d / "dmesg.log").chmod(0)
    r = cli("report", str(d / "dmesg.log"), str(d / "dmesg.log"), "-o", str(tmp_path / "out"))
    if r.returncode == 0:  # root reads anything: make it a folder where a file is expected instead
        (d / "dmesg.log").unlink()
        (d / "dmesg.log").mkdir()
        (d / "case.yaml").write_text("trace: [dmesg.log]\n")
        r = cli("report", str(d), "-o", str(tmp_path / "out"))
    assert r.returncode == 2 and "dmesg.log" in r.stderr and "Traceback" not in r.stderr
