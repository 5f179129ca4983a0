"""A lab run killed with SIGKILL is undone by the next run or by `reportgen lab --cleanup`.

Other lab runs may be going on at the same time on this machine, so most tests point the lab's
marker folder and its nf_log_all_netns file at a temporary folder: the namespaces and processes are
real, the sysctl is a file the test controls. One test uses the real sysctl and checks it whenever no
other run is live.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LAB_MARKS

from reportgen.lab import netns

pytestmark = LAB_MARKS

# Runs the lab in a child with the marker folder and the sysctl file moved, as the fixture moves them here.
CHILD = """
import sys
from pathlib import Path
import reportgen.lab.netns as n
n.STATE_DIR, n.LOG_ALL_NETNS = Path(sys.argv[1]), Path(sys.argv[2])
from reportgen.lab.runner import main
cleanup = sys.argv[3:] == ["--cleanup"]
raise SystemExit(main([] if cleanup else sys.argv[3:], Path(sys.argv[1]) / "out", cleanup=cleanup))
"""


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False, timeout=30).stdout
    return {ln.split()[0] for ln in out.splitlines() if ln.strip()}


@pytest.fixture()
def moved(tmp_path: Path, monkeypatch) -> Iterator[tuple[Path, Path]]:
    """The marker folder and a stand-in sysctl file (holding the original value 0), here and in children."""
    state, sysctl = tmp_path / "state", tmp_path / "nf_log_all_netns"
    sysctl.write_text("0\n")
    monkeypatch.setattr(netns, "STATE_DIR", state)
    monkeypatch.setattr(netns, "LOG_ALL_NETNS", sysctl)
    try:
        yield state, sysctl
    finally:
        # Only what this test's runs marked: other lab runs on the machine (a second test session, a
        # user's lab) create rglab- namespaces meanwhile, and deleting the difference of two
        # listings removed theirs (seen: a concurrent session's lab namespaces vanished mid-test).
        made: set[str] = set()
        for m in state.glob("lab-*.json"):
            made |= set(json.loads(m.read_text())["namespaces"]) & namespaces()
        for ns in made:
            if ns.startswith("rglab-"):
                subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)


def start_and_kill(state: Path, sysctl: Path, scenario: str = "tcp-to-internet") -> dict[str, object]:
    """Start a lab run, SIGKILL it once its namespaces exist, and return its marker."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state), str(sysctl), scenario],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        marker: dict[str, object] = {}
        while time.monotonic() < deadline:
            found = list(state.glob(f"lab-*-{proc.pid}.json"))
            if found:
                marker = json.loads(found[0].read_text())
                names = marker["namespaces"]
                if isinstance(names, list) and len(names) == 4 and set(names) <= namespaces() and marker["procs"]:
                    break
            assert proc.poll() is None, "the lab run ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("the lab run did not create its namespaces in time")
        proc.kill()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    return marker


def test_sigkill_then_lab_cleanup_restores_everything(moved):
    state, sysctl = moved
    marker = start_and_kill(state, sysctl)
    names = set(marker["namespaces"])  # type: ignore[arg-type]
    assert marker["orig"] == "0" and sysctl.read_text().strip() == "1"
    assert names <= namespaces(), "SIGKILL should have left the namespaces"
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(state), str(sysctl), "--cleanup"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert all(f"deleted namespace {n}" in r.stdout for n in names)
    assert not names & namespaces()
    assert sysctl.read_text().strip() == "0", "nf_log_all_netns must go back to the value before the killed run"
    assert not list(state.glob("lab-*.json")) and not (state / "orig").exists()
    for pid, start in marker["procs"]:  # type: ignore[attr-defined]
        assert not netns.owner_alive(pid, start), "a helper process of the killed run is still alive"


def test_next_run_recovers_a_killed_run_and_keeps_the_true_original(moved):
    state, sysctl = moved
    marker = start_and_kill(state, sysctl)
    names = set(marker["namespaces"])  # type: ignore[arg-type]
    with netns.log_all_netns("rs1t"):
        assert not names & namespaces(), "the next run must delete the killed run's namespaces"
        assert sysctl.read_text().strip() == "1"
        mine = json.loads(next(state.glob(f"lab-rs1t-{os.getpid()}.json")).read_text())
        assert mine["orig"] == "0", "the next run must record the killed run's original, not the 1 it left"
    assert sysctl.read_text().strip() == "0"
    assert not list(state.glob("lab-*.json"))


def test_a_live_runs_namespaces_are_never_touched(moved):
    """Markers of live runs are left alone; once their process is gone, their namespaces go."""
    state, sysctl = moved
    sleeper = subprocess.Popen(["sleep", "60"])
    ns = f"rglab-rs1live{os.getpid()}-h"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
        state.mkdir(parents=True)
        netns.Marker(
            state / f"lab-rs1live-{sleeper.pid}.json", sleeper.pid, netns.process_start(sleeper.pid), "0", [ns]
        ).save()
        sysctl.write_text("1")
        assert netns.recover_dead_runs() == []
        assert ns in namespaces() and sysctl.read_text().strip() == "1"
        with netns.log_all_netns("rs1other"):
            assert ns in namespaces()
        assert sysctl.read_text().strip() == "1", "a live run still needs nf_log_all_netns=1"
        sleeper.kill()
        sleeper.wait(timeout=10)
        done = netns.recover_dead_runs()
        assert f"deleted namespace {ns}" in done and ns not in namespaces()
        assert sysctl.read_text().strip() == "0"
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=30)


def test_a_killed_runs_marker_does_not_delete_a_name_a_live_run_reused(moved):
    """A killed run's marker outlives its namespaces (deleted by hand); a later run that creates a
    namespace of the same name owns it, and recovering the killed run must not delete it. Seen when
    concurrent test runs drew the same short tag: a lab's namespace vanished under its tests."""
    state, _sysctl = moved
    sleeper = subprocess.Popen(["sleep", "60"])
    ns = f"rglab-rs2re{os.getpid()}-h"
    try:
        state.mkdir(parents=True)
        dead = subprocess.Popen(["true"])
        dead.wait(timeout=10)
        netns.Marker(state / f"lab-rs2re-{dead.pid}.json", dead.pid, 1, None, [ns]).save()
        subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
        netns.Marker(
            state / f"lab-rs2re-{sleeper.pid}.json", sleeper.pid, netns.process_start(sleeper.pid), None, [ns]
        ).save()
        done = netns.recover_dead_runs()
        assert ns in namespaces(), f"recovery deleted a live run's namespace: {done}"
        assert not any("deleted namespace" in d for d in done)
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=30)


def test_a_tag_a_killed_runs_marker_names_is_not_drawn(moved, monkeypatch):
    state, _sysctl = moved
    state.mkdir(parents=True)
    netns.Marker(state / "lab-rab-1.json", 1 << 22, 1, None, ["rglab-rab-h"]).save()
    drawn = iter(["ab", "cd"])
    monkeypatch.setattr(netns.secrets, "token_hex", lambda _n: next(drawn))
    assert netns.free_tag() == "rcd"


def test_real_sysctl_after_sigkill_and_cleanup(tmp_path: Path):
    """The same with the real nf_log_all_netns and marker folder, as a user would meet it."""
    others_live = any(m.alive() for m in netns._markers()) or netns._old_style_live()
    before = netns.LOG_ALL_NETNS.read_text().strip()
    proc = subprocess.Popen(
        [sys.executable, "-m", "reportgen", "lab", "tcp-dropped", "-o", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(netns.STATE_DIR.glob(f"lab-*-{proc.pid}.json"))
            if found:
                marker = json.loads(found[0].read_text())
                names = marker["namespaces"]
                if isinstance(names, list) and len(names) == 4 and set(names) <= namespaces():
                    break
            time.sleep(0.05)
        proc.kill()
        proc.wait(timeout=10)
        assert marker, "the lab run did not start"
        if not others_live:
            assert marker["orig"] == before
        assert set(marker["namespaces"]) <= namespaces()  # type: ignore[arg-type]
        r = subprocess.run(
            [sys.executable, "-m", "reportgen", "lab", "--cleanup"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert not set(marker["namespaces"]) & namespaces()  # type: ignore[arg-type]
        if not (any(m.alive() for m in netns._markers()) or netns._old_style_live()):
            assert netns.LOG_ALL_NETNS.read_text().strip() == marker["orig"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for ns in set(marker.get("namespaces") or []) & namespaces():  # type: ignore[call-overload]
            with contextlib.suppress(subprocess.SubprocessError):
                subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)


def test_recovery_removes_unfinished_writes_of_dead_writers_only(moved):
    """A run SIGKILLed inside write_atomic leaves ".NAME.PID.tmp" beside the markers; recovery removes
    it once the writer is gone, and leaves a live writer's alone."""
    state, _sysctl = moved
    state.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=10)
    gone = state / f".lab-rs3tmp-{dead.pid}.json.{dead.pid}.tmp"
    live = state / f".lab-rs3tmp-{os.getpid()}.json.{os.getpid()}.tmp"
    for p in (gone, live):
        p.write_text("{")
    done = netns.recover_dead_runs()
    assert f"removed {gone.name}, an unfinished write of a killed run" in done
    assert not gone.exists() and live.exists()
