"""Text output: levels, folded repeats, ICMP by type/id/seq, timestamps, terminal width and colour."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, SAMPLES

from reportgen.pipeline import build_report
from reportgen.render.options import Level, RenderOptions
from reportgen.render.text import render_text
from reportgen.sources.case import load_spec


def _report(case: str):  # type: ignore[no-untyped-def]
    return build_report(load_spec([SAMPLES / case]))


def test_minimal_is_one_line_per_conversation_and_group() -> None:
    text = render_text(_report("lab-tcp-dropped"), RenderOptions(level=Level.MINIMAL))
    assert "1 flow, 4 packets; 4 dropped-by-rule" in text
    # Four retransmitted SYNs are one behaviour: told once, with count, ids and time span.
    assert "├─ ×4 (p1–p4, 3.1 s) request [routed]: 172.17.0.2:51068 → 203.0.113.10:81 TCP [SYN]" in text
    assert "dropped-by-rule — iptables filter DOCKER-USER" in text
    assert "dmesg.log:1" not in text  # no hops at this level


def test_levels_add_hops_then_explanations() -> None:
    report = _report("lab-tcp-dropped")
    summary = render_text(report, RenderOptions(level=Level.SUMMARY))
    detailed = render_text(report, RenderOptions(level=Level.DETAILED))
    hop = "1467.923584  iptables raw PREROUTING  IN=docker0 OUT=- PHYSIN=vethrd1c1"
    assert hop in summary and hop in detailed  # each hop with its kernel timestamp
    assert "Routed: the routing decision" not in summary and "Routed: the routing decision" in detailed
    assert summary.count("iptables raw PREROUTING") == 1  # the group's hops, once


def test_icmp_is_type_id_seq_not_ports() -> None:
    text = render_text(_report("lab-container-to-internet"), RenderOptions(level=Level.MINIMAL))
    assert "172.17.0.2 → 203.0.113.10 ICMP echo-request id 13055 seq 1" in text
    assert "c1  ICMP 172.17.0.2 ↔ 203.0.113.10 id 13055" in text
    assert ":13055" not in text


def test_fits_the_width_without_colour_by_default() -> None:
    text = render_text(_report("lab-tcp-dropped"), RenderOptions(width=60))
    assert max(len(line) for line in text.splitlines()) <= 60
    assert "\x1b[" not in text
    wide = render_text(_report("lab-tcp-dropped"), RenderOptions(width=160))
    assert max(len(line) for line in wide.splitlines()) > 100  # a wide terminal is used, not wasted


def test_explain_colours_a_terminal_only() -> None:
    env = {**os.environ, "COLUMNS": "90"}
    env.pop("NO_COLOR", None)
    argv = [sys.executable, "-m", "reportgen", "explain", str(SAMPLES / "lab-tcp-dropped")]
    piped = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert "\x1b[" not in piped.stdout

    def on_tty(extra: dict[str, str]) -> str:
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(sys.executable, argv, {**env, **extra})
        chunks = []
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        os.waitpid(pid, 0)
        return b"".join(chunks).decode()

    coloured = on_tty({})
    assert "\x1b[31mdropped" in coloured  # red for a dropped packet
    assert "\x1b[" not in on_tty({"NO_COLOR": "1"})


def test_explain_reads_a_pipe_once(tmp_path: Path) -> None:
    log = (SAMPLES / "seed-container-to-internet" / "dmesg.log").read_bytes()
    for arg in ("-", "/dev/stdin"):
        r = subprocess.run(
            [sys.executable, "-m", "reportgen", "explain", arg, "--level", "minimal"],
            input=log,
            capture_output=True,
            cwd=ROOT,
            check=False,
        )
        out = r.stdout.decode()
        assert r.returncode == 0, r.stderr
        assert "input: 15 lines, 15 used" in out, out
        assert "echo-request id 2048 seq 0" in out
