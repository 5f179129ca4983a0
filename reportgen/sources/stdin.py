"""Read ``-``, pipes and character devices once, by spooling them to a regular file.

A case is read more than once (its head decides the trace format and whether a file is a snapshot,
then every line is read), and a pipe can be read only once: ``journalctl -k | reportgen explain -``
or ``/dev/stdin`` would lose what the first read took. Spooling keeps the rest of the input layer
working on regular files, and line numbers count from the first line of the stream.
"""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path
from typing import BinaryIO

STDIN_NAME = "stdin"


def _is_stream(p: Path) -> bool:
    if str(p) == "-":
        return True
    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def spool_streams(paths: list[Path], into: Path, stdin: BinaryIO | None = None) -> list[Path]:
    """Return paths with every stream (``-``, a pipe, /dev/stdin) replaced by a regular copy in ``into``.

    ``-`` and /dev/stdin are the same stream and are read once, whichever is named first; each copy
    is named after the stream ("stdin", or the pipe's own name), which is how its lines are cited.
    """
    out: list[Path] = []
    done: dict[str, Path] = {}
    for p in paths:
        if not _is_stream(p):
            out.append(p)
            continue
        is_stdin = str(p) in ("-", "/dev/stdin", "/proc/self/fd/0", "/dev/fd/0")
        key = STDIN_NAME if is_stdin else str(p)
        if key not in done:
            into.mkdir(parents=True, exist_ok=True)
            target = into / (STDIN_NAME if is_stdin else p.name)
            with target.open("wb") as dst:
                if is_stdin:
                    shutil.copyfileobj(stdin if stdin is not None else sys.stdin.buffer, dst)
                else:
                    with p.open("rb") as src:
                        shutil.copyfileobj(src, dst)
            done[key] = target
        out.append(done[key])
    return out
