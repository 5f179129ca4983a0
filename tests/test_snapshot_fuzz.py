"""Property: a damaged snapshot never breaks ``reportgen report``, and what it says names file and line.

Each snapshot kind's real sample text is damaged the way pasted and collected snapshots are: lines
cut short, columns dropped, doubled or swapped, binary junk (NUL, invalid UTF-8, escape sequences),
huge lines (some past the reader's line limit), and for ``-j`` JSON a value of the wrong shape. The
case beside it is a real trace, so the snapshot goes through the whole report: parse, topology,
explanation, JSON. Asserted: exit code 0, no traceback, no "reportgen bug" note, and every note about
the snapshot names the file and, where a line is at fault, the line. A second test checks that the
snapshot path stays linear in the number of lines.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import SAMPLES
from fuzz.entry_points import sample_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reportgen.cli import main
from reportgen.parsers.snapshots import PARSERS, Kind

# The sample pool a kind is damaged from, when no sample is of that kind itself.
POOL = {Kind.IP_LINK: Kind.IP_ADDR, Kind.EBTABLES_SAVE: Kind.IPTABLES_SAVE, Kind.IP_LINK_JSON: Kind.IP_ADDR_JSON}
JSON_KINDS = {Kind.IP_LINK_JSON, Kind.IP_ADDR_JSON, Kind.BRIDGE_FDB_JSON, Kind.DOCKER_NETWORK}
KINDS = sorted(PARSERS)
TRACE_CASE = "seed-host-to-container"
JUNK = [b"\x00", b"\xff\xfe", b"\x1b[31m", b"\xc3", b"\x85", b"\r", b"\t", "\u2028".encode(), b"\xef\xbb\xbf"]


def sample(kind: str) -> str:
    return sample_files()[POOL.get(Kind(kind), kind)][0]


def _wrong_shape(rng: random.Random, value: object, depth: int = 0) -> object:
    """The JSON value with one part replaced by a value of another type (or the whole of it)."""
    others: list[object] = [None, 7, -1, 2**70, "x", "", True, [], {}, [1, "a"], {"ifname": 5}, [[[]]]]
    if depth > 3 or rng.random() < 0.15:
        return rng.choice(others)
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        return [*value[:i], _wrong_shape(rng, value[i], depth + 1), *value[i + 1 :]]
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value))
        return {**value, key: _wrong_shape(rng, value[key], depth + 1)}
    return rng.choice(others)


def damage(rng: random.Random, kind: str, text: str) -> bytes:
    """One damaged snapshot file of this kind, as bytes (junk need not be UTF-8)."""
    if kind in JSON_KINDS and rng.random() < 0.5:
        shaped = _wrong_shape(rng, json.loads(text))
        return json.dumps(shaped, indent=rng.choice((None, 2))).encode()
    lines = [ln.encode() for ln in text.splitlines()]
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(lines))
        line = lines[i]
        r = rng.random()
        if r < 0.2:  # a truncated line
            lines[i] = line[: rng.randrange(len(line) + 1)]
        elif r < 0.45:  # wrong columns: one dropped, doubled, swapped or the line's words reversed
            words = line.split()
            if len(words) > 1:
                j = rng.randrange(len(words) - 1)
                op = rng.randrange(4)
                if op == 0:
                    del words[j]
                elif op == 1:
                    words.insert(j, words[j])
                elif op == 2:
                    words[j], words[j + 1] = words[j + 1], words[j]
                else:
                    words.reverse()
                lines[i] = b" ".join(words)
        elif r < 0.65:  # binary junk
            pos = rng.randrange(len(line) + 1)
            junk = b"".join(rng.choice(JUNK) for _ in range(rng.randint(1, 6)))
            lines[i] = line[:pos] + junk + bytes(rng.randrange(256) for _ in range(rng.randint(0, 8))) + line[pos:]
        elif r < 0.75:  # a huge line: some past the reader's 64 KiB limit
            lines[i] = (line[:100] + b" ") * rng.choice((100, 700, 5000))  # up to 0.5 MB
        elif r < 0.85:  # a huge number
            lines[i] = re.sub(rb"[0-9]+", b"9" * rng.choice((25, 5000)), line, count=1)
        elif r < 0.93:  # a line dropped or a file cut short
            lines = lines[:i] + lines[i + 1 :] if rng.random() < 0.5 else lines[: i + 1]
            if not lines:
                return b""
        else:  # the whole file cut mid-line
            cut = b"\n".join(lines)
            return cut[: rng.randrange(len(cut) + 1)]
    return b"\n".join(lines) + b"\n"


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("snapfuzz") / "case"
    d.mkdir()
    shutil.copy(SAMPLES / TRACE_CASE / "dmesg.log", d / "dmesg.log")
    return d


def report(case: Path, name: str, kind: str, data: bytes) -> tuple[int, str, list[str]]:
    """Run ``reportgen report`` in-process on the case with this one snapshot: exit code, stderr, notes."""
    (case / name).write_bytes(data)
    (case / "case.yaml").write_text(f"trace: [dmesg.log]\nsnapshots:\n- file: {name}\n  kind: {kind}\n")
    out = case.parent / "out"
    shutil.rmtree(out, ignore_errors=True)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["report", str(case), "-o", str(out), "--format", "json"])
    notes = json.loads((out / "case" / "report.json").read_text())["case"]["notes"] if rc == 0 else []
    return rc, err.getvalue(), notes


def check_notes(name: str, notes: list[str]) -> None:
    for note in notes:
        assert "reportgen bug" not in note and "failed to parse" not in note, note
    mine = [n for n in notes if name in n]
    for note in mine:
        assert note.startswith(f"Snapshot {name}"), note
        if "was not used" in note and "the file is empty" not in note:
            assert re.search(r"\bline \d+", note), f"the note names no line: {note}"


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_snapshot_never_breaks_the_report(kind: str, case_dir: Path):
    text = sample(kind)
    name = f"snap-{kind}.txt"

    @settings(
        max_examples=40,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.integers(0, 2**32))
    def check(seed: int) -> None:
        rc, err, notes = report(case_dir, name, kind, damage(random.Random(seed), kind, text))
        assert rc == 0 and "Traceback" not in err, err
        check_notes(name, notes)

    check()


def test_the_damage_is_varied():
    """The generator really produces each kind of damage, not the clean sample."""
    rng = random.Random(3)
    text = sample(Kind.ROUTE_N)
    got = [damage(rng, Kind.ROUTE_N, text) for _ in range(300)]
    assert len(set(got)) > 200
    assert any(b"\x00" in g for g in got) and any(len(g) > 64 * 1024 for g in got)
    assert any(b"9" * 5000 in g for g in got)
    shapes = {damage(random.Random(s), Kind.IP_ADDR_JSON, sample(Kind.IP_ADDR_JSON))[:1] for s in range(100)}
    assert shapes - {b"["}, "some -j damage changes the outermost shape"


# -- bugs the property found; each failed before its fix -------------------------------------------------

HUGE = "9" * 5000
FOUND = {
    # int() refuses a string of over 4300 digits with ValueError: the snapshot was dropped as
    # "reportgen failed to parse it (ValueError ...); this is a reportgen bug".
    "route-n metric": (
        Kind.ROUTE_N,
        f"Kernel IP routing table\nDestination Gateway Genmask Flags Metric Ref Use Iface\n"
        f"0.0.0.0 192.0.2.1 0.0.0.0 UG {HUGE} 0 0 eth0\n10.0.0.0 0.0.0.0 255.0.0.0 U 0 0 0 eth1\n",
        "line 3 not read (a number reportgen cannot read)",
    ),
    "ip route metric": (
        Kind.IP_ROUTE,
        f"default via 192.0.2.1 dev eth0 metric {HUGE}\n10.0.0.0/8 dev eth1 scope link\n",
        "line 1 not read (a number reportgen cannot read)",
    ),
    "ip link index": (
        Kind.IP_LINK,
        f"{HUGE}: eth0: <UP> mtu 1500\n2: eth1: <UP> mtu 1500\n"
        "    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff\n",
        "line 1 not read (a number reportgen cannot read)",
    ),
    "brctl showmacs port": (
        Kind.BRCTL_SHOWMACS,
        f"port no\tmac addr\t\tis local?\tageing timer\n  {HUGE}\t02:42:ac:11:00:02\tno\t\t   0.37\n",
        "line 2 not read (a number reportgen cannot read)",
    ),
    "conntrack timeout": (
        Kind.CONNTRACK,
        f"tcp      6 {HUGE} ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 "
        "src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 [ASSURED] mark=0 use=1\n",
        "line 1 not read (a number reportgen cannot read)",
    ),
    # A metric ip route cannot have was read as metric 0, a route that outranks real ones.
    "ip route metric not a number": (
        Kind.IP_ROUTE,
        "default via 192.0.2.1 dev eth0 metric x1\n",
        "line 1 not read (a number reportgen cannot read)",
    ),
    # Lines the parsers skipped were said nowhere: a damaged route or sysctl line simply vanished.
    "sysctl line": (Kind.SYSCTL, "net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.rp_filter 1\n", "line 2 not read"),
    # -j JSON of the wrong shape named no line ("... is a list of objects; this is not").
    "ip -j not an array": (Kind.IP_LINK_JSON, '\n{"ifname": "eth0"}\n', "line 2: ip -j JSON is an array of objects"),
    "ip -j entry not an object": (
        Kind.IP_LINK_JSON,
        '[{"ifname": "eth0", "ifindex": 2},\n "eth1"]\n',
        "line 2 not read (a string, not an object)",
    ),
    "docker not an array": (Kind.DOCKER_NETWORK, '\n\n"bridge"\n', "line 3: docker network inspect JSON is an array"),
    "docker huge number": (Kind.DOCKER_NETWORK, f'[{{"Name": "bridge",\n"x": {HUGE}}}]\n', "line 2: not valid"),
}


@pytest.mark.parametrize("name", sorted(FOUND))
def test_what_the_fuzzer_found(name: str, case_dir: Path):
    kind, text, expected = FOUND[name]
    fname = f"found-{kind}.txt"
    rc, err, notes = report(case_dir, fname, kind, text.encode())
    assert rc == 0, err
    check_notes(fname, notes)
    mine = " ".join(n for n in notes if fname in n)
    assert expected in mine, notes


def test_a_damaged_sysctl_value_is_not_taken_for_a_setting(case_dir: Path):
    """ "bridge-nf-call-iptables = on" is no value the kernel prints: it was read as on (anything but "0"),
    with the damaged line as its evidence; now the line is named unread and the setting is unknown."""
    from reportgen.explain.topology import build_topology
    from reportgen.model import Snapshot
    from reportgen.parsers.snapshots import parse_sysctl

    text = "net.bridge.bridge-nf-call-iptables = on\nnet.ipv4.ip_forward = 0\n"
    topo = build_topology((Snapshot("sysctl.txt", Kind.SYSCTL, text, parse_sysctl(text)),))
    assert topo.brnf_on("ipv4") is None
    assert topo.forwarding("ipv4") == ("net.ipv4.ip_forward", False)
    rc, err, notes = report(case_dir, "sysctl.txt", Kind.SYSCTL, text.encode())
    assert "Snapshot sysctl.txt: line 1 not read (a value reportgen cannot read)." in notes, notes


def test_the_rest_of_a_damaged_snapshot_is_used(tmp_path: Path):
    """One unreadable route line costs that line only: the other routes still reach the explanation."""
    from reportgen.explain.topology import build_topology
    from reportgen.sources.case import load_snapshots, load_spec

    case = tmp_path / "case"
    shutil.copytree(SAMPLES / TRACE_CASE, case)
    route = case / "route-n.txt"
    route.write_text(route.read_text().replace("UG    100", f"UG    {HUGE}"))
    snaps, notes = load_snapshots(load_spec([case]))
    topo = build_topology(snaps)
    assert [r.dst for r in topo.routes] == ["172.17.0.0/16", "192.168.0.0/24"]
    assert any(n.startswith("Snapshot route-n.txt: line 3 not read") for n in notes), notes


# -- linear time ---------------------------------------------------------------------------------------


def _grown(kind: str, lines: int) -> bytes:
    """The kind's sample grown to about ``lines`` lines of distinct names and addresses (each copy's
    last number replaced by the copy's index), every 50th line cut in half and ended with junk; a
    JSON kind grown to ``lines // 20`` entries (one pretty-printed entry is tens of lines)."""
    text = sample(kind)
    if kind in JSON_KINDS:
        data = json.loads(text)
        first = json.dumps((data if isinstance(data, list) else [data])[0])
        entries = [json.loads(re.sub(r"\d+(?=\D*$)", str(k), first)) for k in range(lines // 20)]
        return json.dumps(entries, indent=1).encode()
    base = text.splitlines()
    # Keep the headers once: route -n has two, brctl one.
    skip = {Kind.ROUTE_N: 2, Kind.BRCTL_SHOW: 1, Kind.BRCTL_SHOWMACS: 1}.get(Kind(kind), 0)
    head, body = base[:skip], base[skip:]
    grown = [re.sub(r"\d+(?=\D*$)", str(k), ln) for k in range(lines // len(body) + 1) for ln in body][:lines]
    junk = [ln[: len(ln) // 2] + "\x00\ufffd\x1b[0m" if k % 50 == 49 else ln for k, ln in enumerate(grown)]
    return "\n".join(head + junk).encode(errors="surrogateescape") + b"\n"


def _cpu(case: Path, name: str, kind: str, data: bytes) -> float:
    start = time.process_time()
    rc, err, _ = report(case, name, kind, data)
    took = time.process_time() - start
    assert rc == 0, err
    return took


@pytest.mark.parametrize("kind", KINDS)
def test_a_snapshot_four_times_longer_takes_about_four_times_longer(kind: str, case_dir: Path):
    name = f"big-{kind}.txt"
    _cpu(case_dir, name, kind, b"")  # the first run imports what the report needs
    base = _cpu(case_dir, name, kind, b"")  # the rest of the report: the trace, the JSON
    small = _cpu(case_dir, name, kind, _grown(kind, 5000)) - base
    large = _cpu(case_dir, name, kind, _grown(kind, 20000)) - base
    # Linear work grows 4x, quadratic 16x (brctl show's ports were: 20k lines took 40x 5k's). The
    # slack and the floor are for a loaded machine's noise.
    assert large < 8 * max(small, 0.05), f"{kind}: 5k lines {small:.2f} s, 20k lines {large:.2f} s"
