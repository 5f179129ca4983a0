"""Damaged input never crashes reportgen: every line is used or listed as unused, renderers still work.

Lines from the real samples are cut, glued and salted with characters that matter to the parsers,
with a fixed seed so a failure is reproducible. The account is checked against the files themselves:
"used" must be the lines some hop refers to, and used + unused the number of lines in the file.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES
from fuzz.entry_points import SALT

from reportgen.model import Report
from reportgen.pipeline import build_report
from reportgen.render.dot import packet_dot
from reportgen.render.jsonout import render_json
from reportgen.render.markdown import render_markdown
from reportgen.render.text import render_text
from reportgen.sources.case import load_spec


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


def lines_in(path: Path) -> int:
    """Lines in a file as a reader counts them: newlines, plus a last line without one."""
    data = path.read_bytes()
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def assert_accounted(report: Report, files: dict[str, Path]) -> None:
    """Every line of every trace file is used by a hop or listed unused, exactly once."""
    used = {(ref.file, ref.line) for p in report.packets for h in p.hops for ref in h.event.refs}
    unused = [(u.ref.file, n) for u in report.unused for n in range(u.ref.line, max(u.last, u.ref.line) + 1)]
    assert len(unused) == len(set(unused)), "a line is listed unused twice"
    assert not used & set(unused), "a line is both used and unused"
    assert report.lines_used == len(used)
    for name, path in files.items():
        n = lines_in(path)
        mine = {line for f, line in used | set(unused) if f == name}
        assert mine == set(range(1, n + 1)), f"{name}: lines neither used nor unused"
    assert report.lines_used + len(unused) == sum(lines_in(p) for p in files.values()) == report.lines_total


def test_damaged_traces_are_accounted_for(tmp_path: Path):
    rng = random.Random(7)
    pool = [
        ln
        for f in sorted(SAMPLES.glob("*/*"))
        if f.name in ("dmesg.log", "xtables-monitor.txt", "nft-monitor-trace.txt")
        for ln in f.read_text().splitlines()
    ]
    for i in range(200):
        p = tmp_path / f"damaged-{i}.log"
        p.write_bytes("\n".join(_damage(rng, ln) for ln in rng.sample(pool, 30)).encode("utf-8", "replace") + b"\n")
        report = build_report(load_spec([p]))
        assert_accounted(report, {p.name: p})
        render_json(report)
        render_text(report)
        render_markdown(report)
        for packet in report.packets:
            packet_dot(packet)


@pytest.mark.parametrize("case", sorted(p.name for p in SAMPLES.iterdir() if p.is_dir()))
def test_every_sample_is_accounted_for(case: str):
    spec = load_spec([SAMPLES / case])
    assert_accounted(build_report(spec), {p.relative_to(spec.base).as_posix(): p for p in spec.traces})


def test_loose_files_sharing_a_name_keep_all_their_lines(tmp_path: Path):
    a, b = tmp_path / "a" / "dmesg.log", tmp_path / "b" / "dmesg.log"
    for src, dest in (("seed-host-to-container", a), ("seed-container-to-internet", b)):
        dest.parent.mkdir()
        shutil.copy(SAMPLES / src / "dmesg.log", dest)
    report = build_report(load_spec([a, b]))
    assert [f.name for f in report.files] == ["a/dmesg.log", "b/dmesg.log"]
    assert_accounted(report, {"a/dmesg.log": a, "b/dmesg.log": b})
    alone = build_report(load_spec([a])), build_report(load_spec([b]))
    assert len(report.packets) == sum(len(r.packets) for r in alone)


def test_the_same_file_given_twice_is_read_once():
    f = SAMPLES / "seed-host-to-container" / "dmesg.log"
    twice = build_report(load_spec([f, f, f.parent / "." / f.name]))
    once = build_report(load_spec([f]))
    assert len(twice.packets) == len(once.packets) and twice.lines_total == once.lines_total


def test_nft_conntrack_lines_are_in_a_hop_or_unused(tmp_path: Path):
    src = (SAMPLES / "lab-nft-trace-tcp-to-internet" / "nft-monitor-trace.txt").read_text().splitlines()
    tid = src[0].split()[2]
    lines = [f"trace id {tid} inet rgtracer7c pre conntrack: ct state new ct direction original ct id 7", *src]
    p = tmp_path / "nft-monitor-trace.txt"
    p.write_text("\n".join(lines) + "\n")
    report = build_report(load_spec([p]))
    assert_accounted(report, {p.name: p})


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reportgen", *args], capture_output=True, text=True, check=False, timeout=120
    )


# Inputs that once crashed the default run (issue 9, items 4 and 5), each with what must still work.
CRASHERS = {
    "bridged packet logged only at POSTROUTING": (
        "dmesg.log",
        "[  100.000001] nat POSTROUTING IN= OUT=docker0 "
        "PHYSOUT=veth1 SRC=172.17.0.3 DST=172.17.0.2 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=ICMP TYPE=8 "
        "CODE=0 ID=5 SEQ=1 \n",
    ),
    "non-hex MAC=": (
        "dmesg.log",
        "[  100.000001] FORWARD IN=docker0 OUT=ens33 MAC=02:42:ff:e7:b5:d2:02:42:ac:11:"
        "00:02:0x:zz SRC=172.17.0.2 DST=192.0.2.1 LEN=84 TTL=64 ID=1 PROTO=ICMP TYPE=8 CODE=0 ID=5 SEQ=1\n",
    ),
    "icmp type ² in an nft trace": (
        "nft-monitor-trace.txt",
        "trace id 0b1e2c1d ip filter FORWARD packet: iif "
        '"eth0" ip saddr 192.0.2.1 ip daddr 192.0.2.2 icmp type ² icmp code ³\n',
    ),
    "nested ICMP quotes": (
        "dmesg.log",
        "[  100.000001] FORWARD IN=eth0 OUT=eth1 SRC=192.0.2.1 DST=192.0.2.2 LEN=1 "
        "PROTO=ICMP TYPE=3 CODE=1 "
        + "[SRC=192.0.2.2 DST=192.0.2.1 PROTO=ICMP TYPE=3 CODE=1 " * 1100
        + "]" * 1100
        + "\n",
    ),
}


@pytest.mark.parametrize("name", sorted(CRASHERS))
def test_inputs_that_once_crashed_now_report(name: str, tmp_path: Path):
    fname, text = CRASHERS[name]
    (tmp_path / "case").mkdir()
    p = tmp_path / "case" / fname
    p.write_text(text)
    r = _cli("report", str(tmp_path / "case"), "-o", str(tmp_path / "out"), "--format", "json,svg,text")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "out" / "case" / "report.json").read_text())
    assert data["input"]["lines_total"] == 1


SNAPSHOT_DAMAGE = {
    "bridge-fdb.txt": "02:42:ac:11:00:02 dev veth1 master\n",  # cut after "master"
    "iptables-save.txt": "# Generated by iptables-save v1.8.9\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment "
    '--comment "cut he\n',  # truncated mid-rule
    "ip-link.json": '{"ifname": "eth0"}\n',  # -j JSON of an unexpected shape
    "bridge-fdb.json": '[{"mac": 5, "ifname": ["x"], "flags": "self"}]\n',
    "route-n.txt": "Kernel IP routing table\nDestination Gateway Genmask Flags Metric Ref Use Iface\n"
    "0.0.0.0 192.0.2.1 0.0.0.0 UG ² 0 0 eth0\n",
    "ip-route.txt": "default via 192.0.2.1 dev eth0 metric 99999999999999999999999999x\n",
}


def test_broken_snapshots_are_unused_with_a_reason_and_the_report_goes_on(tmp_path: Path):
    case = tmp_path / "case"
    shutil.copytree(SAMPLES / "seed-host-to-container", case)
    (case / "iptables-save.txt").write_text(SNAPSHOT_DAMAGE["iptables-save.txt"])
    (case / "ip-link.json").write_text(SNAPSHOT_DAMAGE["ip-link.json"])
    (case / "bridge-fdb.json").write_text(SNAPSHOT_DAMAGE["bridge-fdb.json"])
    (case / "route-n.txt").write_text(SNAPSHOT_DAMAGE["route-n.txt"])
    (case / "ip-route.txt").write_text(SNAPSHOT_DAMAGE["ip-route.txt"])
    (case / "bridge-fdb.txt").write_text(SNAPSHOT_DAMAGE["bridge-fdb.txt"])
    (case / "case.yaml").write_text(
        "trace: [dmesg.log]\nsnapshots:\n- iptables-save.txt\n- file: ip-link.json\n  kind: ip-link-json\n"
        "- bridge-fdb.json\n- route-n.txt\n- ip-route.txt\n- bridge-fdb.txt\n- file: sysctl.txt\n  kind: conntrack\n"
    )
    r = _cli("report", str(case), "-o", str(tmp_path / "out"), "--format", "json,text,html")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "out" / "case" / "report.json").read_text())
    notes = " ".join(data["case"]["notes"])
    assert "Snapshot ip-link.json was not used: cannot be read as ip-link-json" in notes
    assert data["summary"]["packets"], "the trace was still explained"


@pytest.mark.parametrize("extra", [[], ["--redact"]])  # --redact copies the input: under the same cap
def test_a_200_mb_line_is_unused_and_never_held_in_memory(tmp_path: Path, extra: list[str]):
    p = tmp_path / "dmesg.log"
    sample = (SAMPLES / "seed-host-to-container" / "dmesg.log").read_bytes()
    with p.open("wb") as fh:
        fh.write(sample)
        for _ in range(200):
            fh.write(b"IN= OUT= " * (1_000_000 // 9))
        fh.write(b"\n" + sample)
    # VmHWM is this process image's own peak: ru_maxrss would also count the forked pytest parent's
    # memory (Linux exec_mmap() carries the old mm's high-water mark into signal->maxrss).
    script = (
        "import sys\n"
        "from reportgen.cli import main\n"
        "rc = main(['report', sys.argv[1], '-o', sys.argv[2], '--format', 'json', *sys.argv[3:]])\n"
        "print(next(ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM:')))\n"
        "sys.exit(rc)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", script, str(p), str(tmp_path / "out"), *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    peak_kib = int(r.stdout.split()[-1])
    assert peak_kib < 200 * 1024, f"peak memory {peak_kib} KiB"
    data = json.loads((tmp_path / "out" / "dmesg" / "report.json").read_text())
    reasons = [u["reason"] for u in data["input"]["unused"]]
    assert any(reason.startswith("line longer than 65536 bytes") for reason in reasons)
    n = lines_in(p)
    assert data["input"]["lines_total"] == n
    assert data["input"]["lines_used"] + sum(u["count"] for u in data["input"]["unused"]) == n


@pytest.mark.parametrize("chunk", [1, 3, 4, 1 << 20])
def test_bounded_reader_splits_lines_like_a_reader_would_at_any_chunk_size(chunk: int, monkeypatch):
    import io

    from reportgen.sources import bounded

    monkeypatch.setattr(bounded, "CHUNK", chunk)
    data = b"ab\ncd\n\nxyzxyzxyzxyz\n0123456\n01234567\n012345678\nq"
    got = [(r.number, r.data, r.size) for r in bounded.raw_lines(io.BytesIO(data), max_line=8)]
    assert got == [(1, b"ab", 2), (2, b"cd", 2), (3, b"", 0), (4, b"", 12), (5, b"0123456", 7), (6, b"01234567", 8),
                   (7, b"", 9), (8, b"q", 1)]
