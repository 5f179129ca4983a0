"""A case reads only files inside its own folder, unless --allow-outside says otherwise.

Once, `trace: [/etc/shadow]` in a stranger's case.yaml (or a symlink in the folder) put that file
into report.html and report.json.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES

SECRET = "s3cr3t-do-not-leak"
DMESG = (SAMPLES / "seed-host-to-container" / "dmesg.log").read_text()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reportgen", *args], capture_output=True, text=True, check=False, timeout=120
    )


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """A case folder, and a secret file beside it (outside it)."""
    case = tmp_path / "case"
    case.mkdir()
    (case / "dmesg.log").write_text(DMESG)
    secret = tmp_path / "secret.log"
    secret.write_text(SECRET + "\n")
    return case, secret


def _leaked(out: Path) -> bool:
    return any(SECRET in p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())


@pytest.mark.parametrize("entry", ["ABSOLUTE", "../secret.log", "sub/../../secret.log"])
@pytest.mark.parametrize("key", ["trace", "snapshots", "attachments"])
def test_manifest_paths_outside_the_folder_are_refused(world: tuple[Path, Path], tmp_path: Path, entry: str, key: str):
    case, secret = world
    entry = str(secret) if entry == "ABSOLUTE" else entry
    (case / "sub").mkdir()
    (case / "case.yaml").write_text(
        f"title: t\ntrace: [dmesg.log]\n{key}: [{entry!r}]\n" if key != "trace" else f"title: t\ntrace: [{entry!r}]\n"
    )
    r = cli("report", str(case), "-o", str(tmp_path / "out"), "--format", "json,text")
    assert r.returncode == 2, r.stderr
    assert "case.yaml" in r.stderr and entry in r.stderr and "--allow-outside" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() or not _leaked(tmp_path / "out")
    ok = cli("report", str(case), "-o", str(tmp_path / "out2"), "--format", "json,html", "--allow-outside")
    assert ok.returncode == 0, ok.stderr
    assert _leaked(tmp_path / "out2")  # the user said so: the file is read


def test_symlinks_that_leave_the_folder_are_refused(world: tuple[Path, Path], tmp_path: Path):
    case, secret = world
    (case / "kern.log").symlink_to(secret)
    r = cli("report", str(case), "-o", str(tmp_path / "out"), "--format", "json")  # no manifest: folder scan
    assert r.returncode == 2 and "kern.log" in r.stderr and "outside the case folder" in r.stderr
    (case / "case.yaml").write_text("trace: [dmesg.log, kern.log]\n")
    r = cli("report", str(case), "-o", str(tmp_path / "out"), "--format", "json")
    assert r.returncode == 2 and "case.yaml" in r.stderr and "kern.log" in r.stderr
    assert not (tmp_path / "out").exists() or not _leaked(tmp_path / "out")


def test_a_symlinked_manifest_or_prefix_map_is_refused(world: tuple[Path, Path], tmp_path: Path):
    case, secret = world
    (case / "prefixes.yaml").symlink_to(secret)
    r = cli("report", str(case), "-o", str(tmp_path / "out"), "--format", "json")
    assert r.returncode == 2 and "prefixes.yaml" in r.stderr and "outside" in r.stderr


def test_symlinks_inside_the_folder_are_fine(world: tuple[Path, Path], tmp_path: Path):
    case, _ = world
    (case / "data").mkdir()
    shutil.move(case / "dmesg.log", case / "data" / "dmesg.log")
    (case / "dmesg.log").symlink_to(case / "data" / "dmesg.log")
    (case / "case.yaml").write_text("trace: [dmesg.log]\n")
    assert cli("report", str(case), "-o", str(tmp_path / "out"), "--format", "json").returncode == 0


def test_loose_files_named_on_the_command_line_are_read(world: tuple[Path, Path], tmp_path: Path):
    case, secret = world
    r = cli("report", str(case / "dmesg.log"), str(secret), "-o", str(tmp_path / "out"), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert _leaked(tmp_path / "out")


def test_devices_and_fifos_are_not_read(world: tuple[Path, Path], tmp_path: Path):
    case, _ = world
    (case / "case.yaml").write_text("trace: [dmesg.log, zero]\n")
    (case / "zero").symlink_to("/dev/zero")
    r = cli("report", str(case), "-o", str(tmp_path / "out"), "--format", "json", "--allow-outside")
    assert r.returncode == 2 and "not a regular file" in r.stderr


def test_billion_laughs_manifest_is_refused_quickly(world: tuple[Path, Path], tmp_path: Path):
    case, _ = world
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    doc = "\n".join(levels) + "\ntitle: *i\ntrace: [dmesg.log]\n"
    (case / "case.yaml").write_text(doc)
    assert len(doc.encode()) < 1400
    r = cli("report", str(case), "-o", str(tmp_path / "out"), "--format", "json")
    assert r.returncode == 2 and "case.yaml" in r.stderr and "YAML refused" in r.stderr


def test_doubling_aliases_under_the_alias_limit_are_refused_too(world: tuple[Path, Path], tmp_path: Path):
    case, _ = world
    doc = "a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]\n" for i in range(1, 31))
    (case / "prefixes.yaml").write_text(doc + "prefixes: {x: *a30}\n")
    r = cli("report", str(case), "-o", str(tmp_path / "out"), "--format", "json")
    assert r.returncode == 2 and "prefixes.yaml" in r.stderr and "expands to more than" in r.stderr


def test_oversized_manifest_is_refused(world: tuple[Path, Path], tmp_path: Path):
    case, _ = world
    (case / "case.yaml").write_text("trace: [dmesg.log]\nnotes:\n" + "  - x\n" * 400_000)
    r = cli("report", str(case), "-o", str(tmp_path / "out"), "--format", "json")
    assert r.returncode == 2 and "case.yaml" in r.stderr and "limit" in r.stderr
