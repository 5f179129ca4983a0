"""Strip the wrapper that dmesg, journalctl or syslog put around a kernel message.

Formats (../shared/reference/trace-formats.md section 5): util-linux dmesg.c prints
``"[%5ld.%06ld] "``, ``-T`` a ctime stamp, ``-r`` a ``<prio>`` before it; systemd logs-show.c prints
``%b %d %H:%M:%S host kernel: `` (short), ``.%06u`` (short-precise) or ISO 8601 (short-iso);
rsyslog's traditional format uses a space-padded day and may keep the kernel's own ``[123.456]``.
Each line is detected on its own, because pasted files mix wrappers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_PRI = re.compile(r"^<\d{1,3}>")
_RFC5424 = re.compile(r"^<\d{1,3}>1 \S+ \S+ \S+ \S+ \S+ (?:-|\[.*?\]) ?\ufeff?")
_SYSLOG_TS = re.compile(
    r"^(?:[A-Za-z\u00C0-\u024F]{3,4}\.? {1,2}\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?"  # Nov 27 06:33:51[.370286]
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"  # ISO 8601
    r"|\d{9,10}\.\d{6}"  # short-unix
    r"|[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+"  # short-full
    r"|[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} kern\.\w+"  # busybox logread
    r") "
)
_HOST_TAG = re.compile(r"^(?:(?P<host>\S+) )?kernel(?: ?\[\s*(?P<mono>\d+\.\d+)\])?: ")
_DMESG = re.compile(
    r"^\[(?:\s*(?P<mono>\d+\.\d{1,9})(?: <\s*[\d.]+>)?"
    r"|(?P<ctime>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}))\] ?"
)
_DMESG_X = re.compile(r"^\w+\s*:\s*\w+\s*: ")
_CALLER = re.compile(r"^\[\s*[TC]\d+\] ?")
_KMSG = re.compile(r"^\d+,\d+,(?P<usec>\d+),[^;,]*(?:,[^;]*)?;")


@dataclass(frozen=True)
class Framed:
    """A message with its wrapper removed."""

    stamp: float | None  # kernel monotonic seconds, when known
    msg: str


def strip_wrapper(line: str) -> Framed:
    """Remove any known log wrapper from one line and return the kernel message."""
    s = line
    stamp: float | None = None
    m = _KMSG.match(s)
    if m:
        return Framed(int(m.group("usec")) / 1e6, s[m.end():])
    m = _RFC5424.match(s)
    s = s[m.end():] if m else _PRI.sub("", s, count=1)
    m = _DMESG_X.match(s)
    if m and "[" in s[m.end(): m.end() + 2]:
        s = s[m.end():]
    m = _SYSLOG_TS.match(s)
    if m:
        rest = s[m.end():]
        t = _HOST_TAG.match(rest)
        if t:
            s = rest[t.end():]
            if t.group("mono"):
                stamp = float(t.group("mono"))
    m = _DMESG.match(s)
    if m:
        if m.group("mono"):
            stamp = float(m.group("mono"))
        s = s[m.end():]
        s = _CALLER.sub("", s, count=1)
    return Framed(stamp, s)


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) from a file, streaming, tolerant of CRLF, NUL and bad UTF-8.

    Bytes that are not UTF-8 become U+FFFD instead of stopping the read: prefixes may hold any
    byte but a newline (libxt_LOG.c), so a log can never be assumed to be clean text.
    """
    with path.open("rb") as fh:
        yield from decode_lines(fh)


def decode_lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    """Decode raw lines as read_lines() does."""
    for n, raw in enumerate(chunks, start=1):
        text = raw.decode("utf-8", errors="replace").replace("\x00", "")
        if n == 1:
            text = text.lstrip("\ufeff")
        yield n, text.rstrip("\r\n").rstrip("\r")
