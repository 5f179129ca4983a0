"""A progress display on stderr for long runs: lines read, lines per second and, when the input's
size is known, how much of it is read and about how long the rest will take.

It is drawn only on a terminal: when stderr is a file or a pipe nothing is written and the reader
pays nothing (``watch`` returns None). The reader (sources.bounded.raw_lines) tells it the offset and
line count once per chunk it reads, never per line; a ticker thread redraws one line at most four
times a second, after the run has lasted a second, and erases it when the run ends.

Usage::

    with progress.shown(cases=1) as display:   # display(done, total, name) counts finished cases
        run_cases(jobs, 1, display)
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, TextIO


class FileRead:
    """How far one input file has been read. A file read twice (its head to detect the format, then
    whole) counts once: it is known by its name."""

    __slots__ = ("lines", "offset", "size")

    def __init__(self, size: int | None) -> None:
        self.size = size
        self.offset = 0
        self.lines = 0

    def read(self, offset: int, lines: int) -> None:
        self.offset, self.lines = offset, lines


DELAY = 1.0  # seconds before the line first shows: a quick run prints nothing
INTERVAL = 0.25  # seconds between redraws


class Display:
    """The one-line display; ``__call__(done, total, name)`` is run_cases' progress callback."""

    def __init__(self, cases: int, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.monotonic()
        self.delay, self.interval = DELAY, INTERVAL
        self.cases = (0, cases)
        self.files: dict[str, FileRead] = {}
        self.shown = False
        self.active = self.stream.isatty()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.active:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def __call__(self, done: int, total: int, name: str) -> None:
        self.cases = (done, total)

    def watch(self, fh: BinaryIO) -> FileRead:
        name = getattr(fh, "name", None)
        key = name if isinstance(name, str) else f"<stream {id(fh)}>"
        if key not in self.files:
            size = None
            try:
                st = os.fstat(fh.fileno())
                size = st.st_size if stat.S_ISREG(st.st_mode) else None
            except (OSError, ValueError, AttributeError):  # a stream without a file behind it
                pass
            self.files[key] = FileRead(size)
        return self.files[key]

    def status(self, now: float) -> str:
        """The line to draw: cases, lines read and their rate, and what is left when sizes are known."""
        elapsed = max(now - self.start, 1e-9)
        files = list(self.files.values())
        lines = sum(f.lines for f in files)
        parts = [f"{self.cases[0]}/{self.cases[1]} cases"] if self.cases[1] > 1 else []
        parts.append(f"{lines:,} lines read, {lines / elapsed:,.0f} lines/s")
        sizes = [f.size for f in files]
        if files and all(s is not None for s in sizes):
            total = sum(s for s in sizes if s is not None)
            done = sum(f.offset for f in files)
            if total and done < total:
                left = (total - done) / (done / elapsed) if done else None
                parts.append(f"{100 * done / total:.0f} % of {total / 1e6:,.1f} MB")
                if left is not None:
                    parts.append(f"about {_duration(left)} left to read")
            elif total:
                parts.append(f"all {total / 1e6:,.1f} MB read")
        parts.append(_duration(elapsed))
        return "reportgen: " + ", ".join(parts)

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            if now - self.start < self.delay:
                continue
            self.shown = True
            self.stream.write("\r\x1b[K" + self.status(now))
            self.stream.flush()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


_active: Display | None = None


def watch(fh: BinaryIO) -> FileRead | None:
    """The counter a reader updates for this file, or None when no display is drawn."""
    return _active.watch(fh) if _active is not None else None


@contextmanager
def shown(cases: int, stream: TextIO | None = None) -> Iterator[Display]:
    """Show the display while the block runs (only on a terminal); erase it afterwards."""
    global _active
    display = Display(cases, stream)
    previous = _active
    if display.active:
        _active = display
    try:
        yield display
    finally:
        _active = previous
        display.close()
