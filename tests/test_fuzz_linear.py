"""Per-line work is linear: a 1 MB line of the shapes that once took minutes is parsed in under 1 s.

Time is the process's CPU time, not the wall clock: on a loaded machine (a CI runner shared with other
jobs) a linear parse waited for a core longer than 1 s, and the quadratic shapes this guards against
take minutes of CPU either way.

The shapes: runs of blanks (nft trace lines, nft rulesets, sysctl values were quadratic in them),
one long token (shlex grew tokens a character at a time), an open quote, brackets and nested ICMP
quotes (they recursed), and long runs of the characters each parser looks for.
"""

from __future__ import annotations

import time

import pytest
from fuzz.entry_points import MULTILINE, call, entry_points, line_pool, sample_files

MB = 1_000_000
ENTRY_POINTS = entry_points()


def shapes(line: str) -> dict[str, str]:
    mid = len(line) // 2
    head, tail = line[:mid], line[mid:]
    return {
        "blank run": head + " " * MB + tail,
        "blank run at the end": line + " " * MB,
        "tabs and blanks": head + "\t " * (MB // 2) + "x",
        "one long token": head + "a" * MB + tail,
        "open quote": head + '"' + "a b" * (MB // 3),
        "escaped quotes": head + '"\\' * (MB // 2),
        "brackets": head + "[SRC=1 " * (MB // 7),
        "nested ICMP quotes": head + "[SRC=1 " * (MB // 14) + "]" * (MB // 14),
        "anchors": head + "IN= OUT= " * (MB // 9),
        "colons": head + ":" * MB,
        "handles": head + "# handle 1 " * (MB // 11),
        "digits": head + "9" * MB,
        "braces": head + "{" * MB,
        "verdicts": head + "(verdict " * (MB // 9),
    }


def _sample(name: str, pool: str) -> str:
    if name.startswith("snapshot:") or name in MULTILINE - {"legacy-trace"}:
        return sample_files()[pool][0]
    return line_pool(pool)[0]


def _worst_case_texts(name: str, pool: str) -> dict[str, str]:
    sample = _sample(name, pool)
    lines = sample.splitlines()
    if len(lines) <= 1:
        return shapes(sample)
    # Multi-line inputs: the 1 MB line replaces a line in the middle (a rule, a trace line, a value).
    i = len(lines) // 2
    return {k: "\n".join([*lines[:i], v, *lines[i + 1 :]]) + "\n" for k, v in shapes(lines[i]).items()}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_a_megabyte_line_takes_under_a_second(name: str):
    fn, pool = ENTRY_POINTS[name]
    for shape, text in _worst_case_texts(name, pool).items():
        start = time.process_time()
        exc = call(fn, text)
        took = time.process_time() - start
        assert exc is None, f"{name}, {shape}: {exc!r}"
        assert took < 1.0, f"{name}: a 1 MB line ({shape}) took {took:.2f} s"


@pytest.mark.parametrize(
    "text",
    [
        "net.ipv4.ip_forward = 1" + " " * MB + "2",  # a sysctl value with a blank run
        "trace id 0b1e2c1d ip filter FORWARD rule" + " " * MB + "# handle 4 (verdict accept)",
        "-A FORWARD -m comment --comment " + "x" * MB + " -j ACCEPT",  # one long shell word
    ],
)
def test_the_reported_shapes(text: str):
    names = {"net.": "snapshot:sysctl", "trace": "nft-trace", "-A": "snapshot:iptables-save"}
    name = next(v for k, v in names.items() if text.startswith(k))
    fn, _ = ENTRY_POINTS[name]
    if name == "snapshot:iptables-save":
        text = "*filter\n:FORWARD ACCEPT [0:0]\n" + text + "\nCOMMIT\n"
    if name == "nft-trace":
        text = 'trace id 0b1e2c1d ip filter FORWARD packet: iif "eth0" ip saddr 192.0.2.1\n' + text
    start = time.process_time()
    assert call(fn, text) is None
    assert time.process_time() - start < 1.0
