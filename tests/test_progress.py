"""The progress display: on a terminal it shows lines read, lines/s and what is left; elsewhere nothing."""

from __future__ import annotations

import io
import os
import pty
import sys
from pathlib import Path

import pytest

from reportgen import cli, progress
from reportgen.sources.bounded import raw_lines

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "bench"))
from bench_scale import make_kernlog  # noqa: E402


@pytest.fixture(scope="module")
def kernlog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "kern.log"
    make_kernlog(path, 20000)
    return path


def _drain(fd: int) -> str:
    out = b""
    os.set_blocking(fd, False)
    while True:
        try:
            data = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            break
        if not data:
            break
        out += data
    return out.decode(errors="replace")


def test_on_a_terminal_it_shows_lines_rate_and_what_is_left(kernlog, tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress, "INTERVAL", 0.01)
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        assert cli.main(["report", str(kernlog), "-o", str(tmp_path / "out"), "--format", "json"]) == 0
        shown = _drain(master)
    os.close(master)
    assert "lines read" in shown and "lines/s" in shown
    assert "% of 3.0 MB" in shown and "left to read" in shown  # the input's size is known
    assert shown.endswith("\r\x1b[K")  # erased when the run ends


def test_without_a_terminal_it_prints_nothing(kernlog, tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress, "INTERVAL", 0.01)
    err = io.StringIO()  # a file or a pipe: not a terminal
    monkeypatch.setattr(sys, "stderr", err)
    assert cli.main(["report", str(kernlog), "-o", str(tmp_path / "out"), "--format", "json"]) == 0
    assert err.getvalue() == ""
    assert progress._active is None


def test_reading_without_a_display_costs_no_counter(kernlog):
    assert progress.watch(kernlog.open("rb")) is None
    assert sum(1 for _ in raw_lines(kernlog)) == 20000


def test_counts_follow_the_reader_once_per_file(kernlog, monkeypatch):
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as tty, progress.shown(1, tty) as display:
        head = raw_lines(kernlog)
        next(head)  # a format sniff reads the first chunk, then the reader reads it all
        head.close()
        assert sum(1 for _ in raw_lines(kernlog)) == 20000
        (read,) = display.files.values()
        assert (read.lines, read.offset, read.size) == (20000, kernlog.stat().st_size, kernlog.stat().st_size)
        assert "20,000 lines read" in display.status(display.start + 2)
        assert "10,000 lines/s" in display.status(display.start + 2)
    os.close(master)
