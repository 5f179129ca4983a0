"""Benchmark at scale: reportgen against a naive script and the read+decode floor, in one run.

Run: .venv/bin/python tests/bench/bench_scale.py [--sizes 100k,1M,2M] [--nft 945k] [--nftrace-story CMD]
                                                  [--repetitive 2M]

Inputs are generated deterministically from the real lab captures:

* kern.log cases: ``samples/lab-tcp-to-internet/dmesg.log`` (one TCP connection, 62 LOG lines over
  every hook, MASQUERADE out of the uplink) replayed as distinct flows (a fresh client port, server
  address and IP ids per flow), eight flows open at once with their lines interleaved in kernel
  time, and one unrelated kernel line after every netfilter line (half the input);
* an ``nft monitor trace`` case: ``samples/lab-nft-trace-tcp-to-internet/nft-monitor-trace.txt``
  replayed the same way with fresh trace ids;
* with ``--repetitive SIZE``, a repetitive kern.log: the same connection replayed one after the other
  (a fresh client port and IP ids each time, nothing else changes), run with ``--format json,html``
  to check that the reports grow with distinct behaviour, not with the packet count.

Measured, each in its own process, with peak RSS from wait4():

* ``floor``: read and decode every line (what any tool pays);
* ``naive``: per line ``re.findall(r'(\\w+)=(\\S*)')`` into a dict for netfilter lines, counted per
  flow (the issue's baseline);
* ``reportgen``: ``reportgen report FILE -o DIR --format json``.

It prints seconds, lines/s, each tool's time as a ratio to naive (>1 means slower than naive) and
peak RSS. ``--nftrace-story CMD`` also runs that peer on the nft input (CMD gets the file appended).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KERN_SAMPLE = ROOT / "samples" / "lab-tcp-to-internet" / "dmesg.log"
NFT_SAMPLE = ROOT / "samples" / "lab-nft-trace-tcp-to-internet" / "nft-monitor-trace.txt"
NOISE = (
    "usb 1-1: reset high-speed USB device number {n} using xhci_hcd",
    "EXT4-fs (sda1): re-mounted {n:x}. Quota mode: none.",
    'audit: type=1400 audit({n}.123:77): apparmor="ALLOWED" operation="open" profile="p{n}"',
    "e1000e 0000:00:1f.6 eno1: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx",
)
OPEN_FLOWS = 8


def _count(text: str) -> int:
    """A size as the options write it ("945k", "2M", "100000"); "" is none, as --sizes "" is."""
    if not text:
        return 0
    n = float(text[:-1]) * {"k": 1e3, "M": 1e6}[text[-1]] if text[-1] in "kM" else float(text)
    return int(n)


def _kern_flow(template: list[str], i: int) -> list[str]:
    """One distinct flow: the sample's connection with its own client port, server and IP ids."""
    port = str(1024 + i % 60000)
    server = f"203.0.113.{11 + (i // 60000) % 200}"
    out = []
    for ln in template:
        body = ln[ln.index("]") + 1 :]
        body = body.replace("39668", port).replace("203.0.113.10", server)
        body = re.sub(r"ID=(\d+)", lambda m: f"ID={(int(m.group(1)) + i * 7) % 65536}", body)
        out.append(body)
    return out


def _nft_flow(template: list[str], i: int) -> list[str]:
    port = str(1024 + i % 60000)
    server = f"203.0.113.{11 + (i // 60000) % 200}"
    ids: dict[str, str] = {}

    def new_id(m: re.Match[str]) -> str:
        return "trace id " + ids.setdefault(m.group(1), f"{zlib.crc32(f'{m.group(1)}/{i}'.encode()):08x}")

    out = []
    for ln in template:
        ln = re.sub(r"trace id ([0-9a-f]+)", new_id, ln)
        ln = ln.replace("37812", port).replace("203.0.113.10", server)
        out.append(re.sub(r"ip id (\d+)", lambda m: f"ip id {(int(m.group(1)) + i * 7) % 65536}", ln))
    return out


def _interleave(flows: Iterator[list[str]]) -> Iterator[str]:
    """Yield the lines of OPEN_FLOWS flows at a time, round robin, as concurrent traffic looks."""
    open_: list[list[str]] = []
    for fl in flows:
        open_.append(list(reversed(fl)))
        while len(open_) >= OPEN_FLOWS:
            for f in list(open_):
                yield f.pop()
                if not f:
                    open_.remove(f)
    while open_:
        for f in list(open_):
            yield f.pop()
            if not f:
                open_.remove(f)


def make_kernlog(path: Path, lines: int, step: float = 0.000013) -> int:
    """Write ``lines`` lines: netfilter and unrelated lines alternating, ``step`` kernel seconds per pair."""
    template = KERN_SAMPLE.read_text().splitlines()
    n = 0
    stamp = 1000.0
    with path.open("w") as fh:
        flows = (_kern_flow(template, i) for i in range(10**9))
        for body in _interleave(flows):
            if n >= lines:
                break
            stamp += step
            fh.write(f"[{stamp:12.6f}]{body}\n")
            fh.write(f"[{stamp:12.6f}] {NOISE[n % len(NOISE)].format(n=n)}\n")
            n += 2
    return n


def make_repetitive(path: Path, lines: int) -> int:
    """One connection's pattern, replayed flow after flow: every conversation behaves alike."""
    template = KERN_SAMPLE.read_text().splitlines()
    n = 0
    stamp = 1000.0
    with path.open("w") as fh:
        for i in range(10**9):
            for body in _kern_flow(template, i % 60000):  # one server; the client port cycles
                if n >= lines:
                    return n
                stamp += 0.000013
                fh.write(f"[{stamp:12.6f}]{body}\n")
                n += 1
    return n


def make_nft(path: Path, lines: int) -> int:
    template = NFT_SAMPLE.read_text().splitlines()
    n = 0
    with path.open("w") as fh:
        for ln in _interleave(_nft_flow(template, i) for i in range(10**9)):
            if n >= lines:
                break
            fh.write(ln + "\n")
            n += 1
    return n


FLOOR = """
import sys
n = 0
with open(sys.argv[1], 'rb') as fh:
    for raw in fh:
        raw.decode('utf-8', 'replace')
        n += 1
print(n)
"""

NAIVE = """
import re, sys
pat = re.compile(r'(\\w+)=(\\S*)')
flows = {}
with open(sys.argv[1], encoding='utf-8', errors='replace') as fh:
    for line in fh:
        if ' IN=' not in line and 'trace id' not in line:
            continue
        d = dict(pat.findall(line))
        key = (d.get('SRC'), d.get('DST'), d.get('SPT'), d.get('DPT'))
        flows[key] = flows.get(key, 0) + 1
print(len(flows))
"""


def measure(argv: list[str]) -> tuple[float, float, float]:
    """Run argv to completion; return wall seconds, CPU seconds (user + system) and peak RSS in MB
    (from wait4). CPU time is the steadier figure on a shared machine: waiting for a core is not in it."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{shlex.join(argv)} exited {code}:\n{err[-2000:]}")
    return secs, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def bench(label: str, path: Path, lines: int, out: Path, peer: list[str] | None, formats: str = "json") -> None:
    exe = Path(sys.executable)
    rg = exe.parent / "reportgen"
    runs = {
        "floor": [str(exe), "-c", FLOOR, str(path)],
        "naive": [str(exe), "-c", NAIVE, str(path)],
        "reportgen": [str(rg), "report", str(path), "-o", str(out), "--format", formats],
    }
    if peer:
        runs["peer"] = [*peer, str(path)]
    res = {name: measure(argv) for name, argv in runs.items()}
    naive, naive_cpu = res["naive"][0], res["naive"][1]
    size = path.stat().st_size / 1e6
    print(f"\n{label}: {lines:,} lines, {size:.0f} MB")
    print(
        f"  {'tool':<10} {'seconds':>8} {'lines/s':>11} {'x naive time':>13} {'CPU s':>8} {'x naive CPU':>12}"
        f" {'peak RSS MB':>12}"
    )
    for name, (secs, cpu, rss) in res.items():
        print(
            f"  {name:<10} {secs:8.2f} {lines / secs:11,.0f} {secs / naive:13.2f} {cpu:8.2f}"
            f" {cpu / naive_cpu:12.2f} {rss:12.0f}"
        )
    if "peer" in res:
        (rs, rc, rr), (ps, pc, pr) = res["reportgen"], res["peer"]
        print(
            f"  reportgen vs peer: {ps / rs:.2f}x its speed ({pc / rc:.2f}x by CPU time), {rr / pr:.2f}x its peak RSS"
        )
    for name in ("report.json", "report.jsonl", "report.html"):
        for f in sorted(out.rglob(name)):
            print(f"  {f.name} {f.stat().st_size / 1e6:.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100k,1M,2M", help="kern.log sizes in lines (default 100k,1M,2M)")
    ap.add_argument("--nft", default="945k", help="nft trace size in lines, or 0 to skip (default 945k)")
    ap.add_argument("--nftrace-story", default="", help="command of the nftrace-story peer, run on the nft input")
    ap.add_argument(
        "--repetitive",
        default="0",
        help="repetitive kern.log size in lines, run with json,html (default 0: skipped; the issue's case is 2M)",
    )
    args = ap.parse_args()
    peer = shlex.split(args.nftrace_story) if args.nftrace_story else None
    with tempfile.TemporaryDirectory(prefix="rg-bench-") as d:
        for size in [s for s in args.sizes.split(",") if s]:
            log = Path(d) / f"kern-{size}.log"
            n = make_kernlog(log, _count(size))
            bench(f"kern.log {size}", log, n, Path(d) / f"out-{size}", None)
            log.unlink()
        if _count(args.nft):
            nft = Path(d) / "nft-trace.txt"
            n = make_nft(nft, _count(args.nft))
            bench(f"nft monitor trace {args.nft}", nft, n, Path(d) / "out-nft", peer)
            nft.unlink()
        if _count(args.repetitive):
            rep = Path(d) / "kern-repetitive.log"
            n = make_repetitive(rep, _count(args.repetitive))
            bench(f"repetitive kern.log {args.repetitive}", rep, n, Path(d) / "out-rep", None, "json,html")


if __name__ == "__main__":
    main()
