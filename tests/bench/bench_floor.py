"""The floor of what the issue asks of a kern.log run, part by part, against the naive script.

Run: .venv/bin/python tests/bench/bench_floor.py FILE   (a kern.log, e.g. one bench_scale.py makes)

Each part reads the whole file again, in this process, and is timed in CPU seconds
(time.process_time): reading it in 1 MiB chunks, decoding and splitting it into lines; the same
with the prefilter (" IN=" in the line); the same with each netfilter line tokenised into a dict,
with str.split and str.partition, then with the naive script's regex. The naive script of
bench_scale.py runs last in its own process, and its CPU time halved is the issue's bar (2x faster).
docs/performance.md ("Session 9") has the figures and what they mean for the bar.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import NAIVE  # noqa: E402

PAT = re.compile(r"(\w+)=(\S*)")


def _lines(path: str) -> Iterator[str]:
    with open(path, "rb") as fh:
        rest = b""
        while chunk := fh.read(1 << 20):
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            yield from data[:cut].decode("utf-8", "replace").splitlines()
        if rest:
            yield rest.decode("utf-8", "replace")


def read(path: str) -> int:
    return sum(1 for _ in _lines(path))


def prefilter(path: str) -> int:
    return sum(1 for line in _lines(path) if " IN=" in line)


def split_tokens(path: str) -> int:
    n = 0
    for line in _lines(path):
        if " IN=" in line:
            d = {}
            for tok in line[line.index(" IN=") + 1 :].split():
                k, _, v = tok.partition("=")
                d[k] = v
            n += len(d)
    return n


def regex_tokens(path: str) -> int:
    return sum(len(dict(PAT.findall(line))) for line in _lines(path) if " IN=" in line)


PARTS: list[tuple[str, Callable[[str], int]]] = [
    ("read + decode + split into lines", read),
    ("... + prefilter", prefilter),
    ("... + tokenise netfilter lines into a dict (split, partition)", split_tokens),
    ("... + tokenise netfilter lines into a dict (naive's regex)", regex_tokens),
]


def main() -> None:
    path = sys.argv[1]
    for label, part in PARTS:
        t = time.process_time()
        part(path)
        print(f"{label:<62} {time.process_time() - t:6.2f} s CPU")
    proc = subprocess.Popen([sys.executable, "-c", NAIVE, path], stdout=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    naive = usage.ru_utime + usage.ru_stime
    print(f"{'naive script (its own process)':<62} {naive:6.2f} s CPU")
    print(f"{'the bar: 2x faster than naive':<62} {naive / 2:6.2f} s CPU")


if __name__ == "__main__":
    main()
