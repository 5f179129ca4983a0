"""Benchmark: throughput and peak memory of reading, parsing and explaining a large kernel log.

Run: .venv/bin/python tests/bench/bench_parse.py [LINES]   (default 300000)

It writes a synthetic log made of the real lab TCP capture repeated with fresh IP ids, ports and
stamps, interleaved with unrelated kernel lines, then measures in separate processes:
  baseline  read and decode every line (the floor any parser pays)
  parse     baseline + strip the wrapper + parse the record + place its hook
  report    the whole pipeline: correlate, explain, write the JSON report
Each prints lines/s, the ratio to the baseline measured in the same run, and peak RSS.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "lab-tcp-to-internet" / "dmesg.log"


def make_log(path: Path, lines: int) -> int:
    base = SAMPLE.read_text().splitlines()
    n = 0
    with path.open("w") as fh:
        rep = 0
        while n < lines:
            shift = rep * 0.01
            def new_id(m: re.Match[str], rep: int = rep) -> str:
                return f"ID={(int(m.group(1)) + rep) % 65536} {m.group(2) or ''}PROTO"

            def new_port(m: re.Match[str], rep: int = rep) -> str:
                return f"{m.group(1)}={10000 + (int(m.group(2)) + rep) % 50000}"

            for ln in base:
                ln = re.sub(r"ID=(\d+) (DF )?PROTO", new_id, ln)
                ln = re.sub(r"(SPT|DPT)=(\d{5})", new_port, ln)
                stamp = float(ln[1:13]) + shift
                fh.write(f"[{stamp:12.6f}]{ln[14:]}\n")
                n += 1
                if n % 7 == 0:
                    fh.write(f"[{stamp:12.6f}] usb 1-1: reset high-speed USB device number {n}\n")
                    n += 1
            rep += 1
    return n


STAGES = {
    "baseline": "from reportgen.sources.framing import read_lines\nn=sum(1 for _ in read_lines(P))",
    "parse": ("from reportgen.sources.framing import read_lines, strip_wrapper\n"
              "from reportgen.parsers.nflog import parse_kernel_message\n"
              "from reportgen.parsers.prefix import resolve_hook, PrefixMap\nfrom reportgen.model import LineRef\n"
              "pm=PrefixMap.empty()\n"
              "for n,s in read_lines(P):\n f=strip_wrapper(s)\n"
              " r=parse_kernel_message(f.msg, LineRef('x',n), s, f.stamp)\n"
              " r and resolve_hook(r, pm)"),
    "report": ("from reportgen.pipeline import build_report\nfrom reportgen.sources.case import load_spec\n"
               "from reportgen.render.jsonout import write_json\nimport tempfile, pathlib\n"
               "r=build_report(load_spec([P]))\nwrite_json(r, pathlib.Path(tempfile.mkdtemp()))"),
}


def run_stage(name: str, log: Path) -> tuple[float, int]:
    code = (f"import time,resource\nfrom pathlib import Path\nP=Path({str(log)!r})\nt=time.perf_counter()\n"
            f"{STAGES[name]}\nprint(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr}")
    secs, rss = out.stdout.split()
    return float(secs), int(rss)


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "big.log"
        n = make_log(log, lines)
        size = log.stat().st_size
        print(f"log: {n} lines, {size / 1e6:.1f} MB")
        base_secs = None
        for name in STAGES:
            secs, rss = run_stage(name, log)
            base_secs = base_secs or secs
            print(f"{name:9} {secs:7.2f} s  {n / secs:10.0f} lines/s  x{secs / base_secs:5.1f} of baseline  "
                  f"peak RSS {rss / 1024:7.1f} MB")


if __name__ == "__main__":
    main()
