"""Damaged input never crashes reportgen: every line is used or listed as unused, renderers still work.

Lines from the real samples are cut, glued and salted with characters that matter to the parsers,
with a fixed seed so a failure is reproducible.
"""

from __future__ import annotations

import random
from pathlib import Path

from conftest import SAMPLES

from reportgen.render.dot import packet_dot
from reportgen.render.jsonout import render_json
from reportgen.render.markdown import render_markdown
from reportgen.render.text import render_text
from reportgen.sources.case import build_report, load_spec

SALT = ["=", " ", "[", "]", "(", ")", "IN=", "OUT=", ":", "\x01", "é", '"', "{", "ID=x", "SRC=::", "DST=1.2.3",
        "PROTO=ICMP TYPE=3 CODE=1 [SRC=", "\ufffd", "OPT (", "SEQ="]


def _damage(rng: random.Random, line: str) -> str:
    r = rng.random()
    if r < 0.3:
        return line[: rng.randrange(len(line) + 1)]
    if r < 0.45:
        pos = rng.randrange(len(line) + 1)
        return line[:pos] + rng.choice(SALT) + line[pos:]
    if r < 0.5:
        return line.replace(" ", "", 1)
    return line


def test_damaged_traces_are_accounted_for(tmp_path: Path):
    rng = random.Random(7)
    pool = [ln for f in sorted(SAMPLES.glob("*/*"))
            if f.name in ("dmesg.log", "xtables-monitor.txt", "nft-monitor-trace.txt")
            for ln in f.read_text().splitlines()]
    for i in range(200):
        p = tmp_path / f"damaged-{i}.log"
        p.write_bytes("\n".join(_damage(rng, ln) for ln in rng.sample(pool, 30)).encode("utf-8", "replace") + b"\n")
        report = build_report(load_spec([p]))
        assert report.lines_used + sum(u.count for u in report.unused) == report.lines_total == 30
        render_json(report)
        render_text(report)
        render_markdown(report)
        for packet in report.packets:
            packet_dot(packet)
