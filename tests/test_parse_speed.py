"""The parse stage's shortcuts state exactly what the slow path states.

* the prefilter (framing.prefilter) lets unrelated lines skip framing and parsing: with and
  without it, every sample and public corpus case (and generated mixes of records, wrappers alone,
  wrapped records, markup and noise) gives the same packets, the same unused lines with the same
  reasons and the same line account;
* nf_log's usual body layout has a one-regex fast path (nflog._parse_usual_body): it gives the record
  the general parser gives, or declines;
* the nft packet-line reader (traces._nft_fields) reads what the token walk it replaced read;
* the records that write their own __init__ (compiled by mypyc, model.py) take every field, in
  order, with the dataclass's defaults, and stay frozen, hashable and replaceable.
"""

from __future__ import annotations

import ast
import dataclasses
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reportgen import pipeline
from reportgen.model import HitKind, LineRef, RuleHit
from reportgen.parsers import nflog, traces
from reportgen.sources.framing import prefilter

ROOT = Path(__file__).resolve().parents[1]
CASES = sorted(p for p in (ROOT / "samples").iterdir() if p.is_dir()) + sorted(
    p for p in (ROOT / "tests" / "corpus" / "public").iterdir() if p.is_dir()
)


# The slow path is taken by patching functions of compiled modules, which compiled callers call
# directly: both readings run on the interpreted modules (conftest's interpreted fixture), and the
# compiled build states what the interpreted one does (tests/test_compiled.py, docs/performance.md).
def _account(paths: list[Path], modules: Callable[[str], Any]) -> tuple[object, ...]:
    r = modules("reportgen.pipeline").build_report(modules("reportgen.sources.case").load_spec(paths))
    return (r.packets, r.unused, r.lines, r.lines_total, r.lines_used, r.files)


def _slow_account(
    paths: list[Path], monkeypatch: pytest.MonkeyPatch, modules: Callable[[str], Any]
) -> tuple[object, ...]:
    with monkeypatch.context() as m:
        m.setattr(modules("reportgen.sources.case"), "prefilter", lambda fmt: None)
        m.setattr(modules("reportgen.parsers.nflog"), "_parse_usual_body", lambda *args: None)
        m.setattr(modules("reportgen.parsers.traces"), "_NFT_USUAL_LINE", NEVER)
        return _account(paths, modules)


NEVER = re.compile(r"(?!)")  # a pattern that matches nothing: it turns a regex's fast path off


@pytest.mark.parametrize("folder", CASES, ids=lambda p: p.name)
def test_shortcuts_state_what_the_slow_path_states(folder: Path, monkeypatch: pytest.MonkeyPatch, interpreted):
    assert _account([folder], interpreted) == _slow_account([folder], monkeypatch, interpreted)


REC = (
    "IN=eth0 OUT= MAC=00:15:5d:e6:a2:01:2a:a3:c6:42:b1:90:08:00 SRC=172.25.230.143 DST=172.25.230.141 LEN=214 "
    "TOS=0x00 PREC=0x00 TTL=128 ID=43131 DF PROTO=TCP SPT=53540 DPT=1514 WINDOW=502 RES=0x00 ACK PSH URGP=0 "
)
# Pieces of pasted kernel logs: records in several wrappers, a record wrapped after IN=/OUT= or
# after its MAC, wrappers without a message (the record follows on the next line), noise with and
# without "=", forum markup, carets, NUL bytes, blank lines, a UTF-8 stamp, an ebtables record.
PIECES = [
    "[ 1000.000013] FW-IN: " + REC,
    "Nov 27 06:33:51 host kernel: [ 12.5] FW-IN: " + REC,
    "<4>[ 3529.289825] [UFW BLOCK] " + REC,
    "[ 1000.1] FW: IN=eth0 OUT= MAC=00:15:5d:e6:a2:01:2a:a3:c6:42:b1:90:08:00",
    "SRC=172.25.230.143 DST=172.25.230.141 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=UDP SPT=1 DPT=2 LEN=40",
    "  SRC=10.0.0.1 DST=10.0.0.2 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=7 DF PROTO=ICMP TYPE=8 CODE=0 ID=9 SEQ=1",
    "[ 1000.2]",
    "[ 1000.2] ",
    "Nov 27 06:33:51 host kernel: ",
    "6,1234,5678901,-;",
    "<6>",
    "[ 1000.3] usb 1-1: reset high-speed USB device number 3 using xhci_hcd",
    '[ 1000.4] audit: type=1400 audit(2.123:77): apparmor="ALLOWED" operation="open"',
    "EXT4-fs (sda1): re-mounted. Quota mode: none.",
    "TYPE=1400 not a field of a record",
    "MARK=0x1",
    "[FONT=arial]FW: I[/FONT]N=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2 LEN=60 PROTO=TCP SPT=1 DPT=2",
    "noise with a caret^ here",
    "FW: I\x00N=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.2 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=2 PROTO=TCP SPT=1 DPT=2",
    "",
    "   ",
    "\u2003[ 1000.5]\u2003",
    "r61 EB:nat:PREROUTING IN=veth1 OUT= MAC source = 02:42:ac:11:00:02 MAC dest = 02:42:ff:e7:b5:d2 proto = 0x0800",
    "[ 1000.6] TRACE: raw:PREROUTING:policy:2 " + REC,
    "some text ending in a colon:",
    "]",
]


@settings(max_examples=150, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=12))
def test_prefilter_on_generated_mixes(tmp_path_factory: pytest.TempPathFactory, interpreted, pieces: list[str]):
    path = tmp_path_factory.mktemp("mix") / "kern.log"
    path.write_bytes("\n".join(pieces).encode("utf-8", "surrogatepass") + b"\n")
    with pytest.MonkeyPatch.context() as mp:
        assert _account([path], interpreted) == _slow_account([path], mp, interpreted)


NFT_PIECES = [
    'trace id 8139d0aa inet t pre packet: iif "eth0" ip saddr 172.17.0.2 ip daddr 203.0.113.10 tcp dport 80',
    "trace id 8139d0aa inet t pre rule tcp dport 80 meta nftrace set 1 (verdict continue)",
    "trace id 8139d0aa inet t pre policy accept ",
    "trace id 8139d0aa inet t pre conntrack: ct state new ct direction original ct id",
    "3141592653",
    "  42  ",
    "> trace id 1a ip nat PREROUTING policy accept",
    "[ 1000.3] usb 1-1: reset high-speed USB device number 3 using xhci_hcd",
    "Nov 27 06:33:51 host systemd[1]: Started Session 3.",
    "",
    "trace\x00 id 2b inet t pre policy drop",
    "\u0661\u0662",  # Arabic-Indic digits: str.isdigit() is True
]


@settings(max_examples=100, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(NFT_PIECES), min_size=1, max_size=12))
def test_prefilter_on_generated_nft_traces(tmp_path_factory: pytest.TempPathFactory, interpreted, pieces: list[str]):
    path = tmp_path_factory.mktemp("nft") / "trace.txt"
    path.write_text("\n".join([NFT_PIECES[0], *pieces]) + "\n")  # a first trace line: read as an nft trace
    with pytest.MonkeyPatch.context() as mp:
        assert _account([path], interpreted) == _slow_account([path], mp, interpreted)


def test_prefilter_rejects_unrelated_lines_and_only_those():
    keep = prefilter(None)
    assert keep is not None
    for line in (
        "[ 1000.3] usb 1-1: reset high-speed USB device",
        'audit: type=1400 apparmor="ALLOWED"',
        "Nov 27 06:33:51 host systemd[1]: Started Session 3.",
    ):
        assert not keep(line)
    for line in (
        "[ 1.0] FW: " + REC,
        "[ 1000.2]",
        "host kernel: ",
        "SRC=10.0.0.1 DST=10.0.0.2",
        "",
        "\u2003[ 1000.5]",
        "I[/B]N=",
    ):
        assert keep(line)
    nft = prefilter("nfttrace")
    assert nft is not None and not nft("[ 1000.3] usb 1-1: reset") and nft("trace id 1 ip t c packet: ")
    assert nft(" 1234 ")  # a conntrack id wrapped onto its own line
    assert prefilter("xtmon") is None  # its parser keeps state across every line


def test_unrelated_lines_are_not_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interpreted):
    """Half a busy kern.log is other kernel messages: they are counted and listed, never parsed."""
    lines = []
    for i in range(50):
        lines += [f"[ {i}.5] FW-IN: " + REC.replace("ID=43131", f"ID={i}"), f"[ {i}.6] usb 1-1: reset device {i}"]
    path = tmp_path / "kern.log"
    path.write_text("\n".join(lines) + "\n")
    parsed = []
    source_case = interpreted("reportgen.sources.case")  # compiled, its calls would bypass the patch
    real = source_case.parse_kernel_message

    def counting(msg, ref, text, stamp):
        parsed.append(ref.line)
        return real(msg, ref, text, stamp)

    monkeypatch.setattr(source_case, "parse_kernel_message", counting)
    r = interpreted("reportgen.pipeline").build_report(source_case.load_spec([path]))
    assert parsed == list(range(1, 101, 2))
    assert r.lines_total == 100
    assert [(u.ref.line, u.reason) for u in r.unused] == [
        (n, "other line: not a netfilter LOG or ebtables record") for n in range(2, 101, 2)
    ]


# ---------------------------------------------------------------------------------------------------
# nf_log's usual layout.


def _values(rnd: random.Random) -> str:
    pick = rnd.choice
    octet = lambda: str(pick([0, 1, 10, 172, 254, 255, 256, 999]))  # noqa: E731 - a table of choices
    src = ".".join(octet() for _ in range(4))
    dst = ".".join(octet() for _ in range(4)) if rnd.random() < 0.8 else "XXX.1.2.3"
    mac = ":".join(f"{rnd.randrange(256):02x}" for _ in range(14))
    head = pick(["", "PHYSIN=veth1 ", "PHYSIN=veth1 PHYSOUT=eth0 ", "PHYSIN= "])
    head += pick(["", f"MAC={mac} ", f"MAC={mac.upper()} ", "MAC= ", f"MAC={mac[:-3]} "])
    if rnd.random() < 0.8:
        ip = (
            f"SRC={src} DST={dst} LEN={rnd.randrange(70000)} TOS=0x{rnd.randrange(256):02X} PREC=0x00 "
            f"TTL={rnd.randrange(300)} ID={rnd.randrange(70000)} "
            + pick(["", "DF ", "CE DF ", "MF ", "DF  ", "MF FRAG:185 "])
        )
    else:
        ip = (
            f"SRC=fe80:0000:0000:0000:0000:0000:0000:000{rnd.randrange(10)} "
            "DST=ff02:0000:0000:0000:0000:0000:0000:0001 "
            f"LEN={rnd.randrange(2000)} TC=0 HOPLIMIT={rnd.randrange(256)} FLOWLBL={rnd.randrange(1 << 20)} "
        )
    flags = " ".join(rnd.sample(["CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN", "AE"], rnd.randrange(4)))
    l4 = pick(
        [
            f"PROTO=TCP SPT={rnd.randrange(70000)} DPT={rnd.randrange(70000)} WINDOW=502 RES=0x00 {flags} URGP=0",
            f"PROTO=TCP SPT=1 DPT=2 SEQ={rnd.randrange(1 << 32)} ACK=7 WINDOW=502 RES=0x00 {flags} URGP=0",
            "PROTO=TCP SPT=1 DPT=2 WINDOW=502 RES=0x00 SYN URGP=0 OPT (020405B4)",
            f"PROTO=UDP SPT={rnd.randrange(70000)} DPT=53 LEN=40",
            f"PROTO=ICMP TYPE={rnd.randrange(20)} CODE=0 ID={rnd.randrange(70000)} SEQ={rnd.randrange(9)}",
            "PROTO=ICMPv6 TYPE=128 CODE=0 ID=1 SEQ=2",
            "PROTO=ICMP TYPE=3 CODE=3 [SRC=10.0.0.2 DST=10.0.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=UDP "
            "SPT=1 DPT=2 LEN=40 ]",
            "PROTO=47",
        ]
    )
    tail = pick(["", " MARK=0x1", " UID=0 GID=0", " MARK=0x1 MARK=0x2"])
    return (head + ip + l4 + tail).replace("  ", pick([" ", "  "]))


@settings(max_examples=3000, derandomize=True, deadline=None, database=None)
@given(st.integers(0, 2**32))
def test_usual_layout_reads_as_the_general_parser(seed: int):
    body = _values(random.Random(seed)).strip(" ")
    args = ("FW: ", "eth0", "", body, LineRef("t", 1), "FW: IN=eth0 OUT= " + body, 1.5)
    fast = nflog._parse_usual_body(*args)
    assert fast is None or fast == nflog._parse_nflog_body(*args)


def test_usual_layout_takes_the_fast_path():
    body = REC.split("OUT= ", 1)[1].strip()
    rec = nflog._parse_usual_body("FW: ", "eth0", "", body, LineRef("t", 1), REC, None)
    assert rec is not None and rec.tcp_flags == ("ACK", "PSH") and rec.mac_src == "2a:a3:c6:42:b1:90"


# ---------------------------------------------------------------------------------------------------
# nft packet lines: the token walk _nft_fields replaced, verbatim, as the reference.


def _reference_nft_fields(rest: str) -> dict[str, object]:
    f: dict[str, object] = {}
    toks = rest.split()
    i = 0

    def take(n: int = 1) -> str:
        nonlocal i
        val = " ".join(toks[i : i + n])
        i += n
        return val

    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        i += 1
        if t in ("iif", "oif"):
            f["in_dev" if t == "iif" else "out_dev"] = take().strip('"')
        elif t == "ether" and nxt in ("saddr", "daddr"):
            i += 1
            f["mac_src" if nxt == "saddr" else "mac_dst"] = traces._mac(take())
        elif t in ("ip", "ip6") and nxt in ("saddr", "daddr"):
            i += 1
            f["src" if nxt == "saddr" else "dst"] = take()
            f["l3"] = "ipv4" if t == "ip" else "ipv6"
        elif t == "ip" and nxt in ("ttl", "id", "length"):
            i += 1
            f[{"ttl": "ttl", "id": "ipid", "length": "length"}[nxt]] = traces._num(take())
        elif t == "ip" and nxt == "protocol":
            i += 1
            f["proto"] = traces._PROTO_NAMES.get(take())
        elif t == "ip6" and nxt in ("hoplimit", "flowlabel", "length", "nexthdr"):
            i += 1
            v = take()
            n = traces._num(v)
            if nxt == "hoplimit":
                f["ttl"] = n
            elif nxt == "flowlabel":
                f["flowlabel"] = n
            elif nxt == "length":
                f["length"] = None if n is None else n + 40
            else:
                f["proto"] = traces._PROTO_NAMES.get(v)
        elif t == "arp" and nxt == "operation":
            i += 1
            take()
            f["l3"] = "arp"
            f["ethertype"] = 0x0806
        elif t in ("tcp", "udp") and nxt in ("sport", "dport"):
            i += 1
            f["sport" if nxt == "sport" else "dport"] = traces._num(take())
            f["proto"] = t.upper()
        elif t == "tcp" and nxt == "flags":
            i += 2
            f["tcp_flags"] = traces._tcp_flags(take())
            f["proto"] = "TCP"
        elif t in ("icmp", "icmpv6") and nxt in ("type", "code", "id", "sequence"):
            i += 1
            v = take()
            f["proto"] = "ICMP" if t == "icmp" else "ICMPv6"
            if nxt == "type":
                f["icmp_type"] = traces._ICMP_TYPES[v] if v in traces._ICMP_TYPES else traces._num(v)
            elif nxt == "code":
                f["icmp_code"] = traces._num(v) if v.isdigit() else traces._ICMP_CODES[t].get(v)
            elif nxt == "id":
                f["icmp_id"] = traces._num(v)
            else:
                f["icmp_seq"] = traces._num(v)
    return f


NFT_WORDS = [
    "iif",
    "oif",
    '"eth0"',
    "ether",
    "saddr",
    "daddr",
    "ip",
    "ip6",
    "ttl",
    "id",
    "length",
    "protocol",
    "tcp",
    "udp",
    "hoplimit",
    "flowlabel",
    "nexthdr",
    "arp",
    "operation",
    "request",
    "sport",
    "dport",
    "flags",
    "==",
    "syn|ack",
    "0x12",
    "icmp",
    "icmpv6",
    "type",
    "code",
    "sequence",
    "echo-request",
    "net-unreachable",
    "2:42:ac:11:0:2",
    "10.0.0.1",
    "fe80::1",
    "64",
    "x",
    "²",
    "dscp",
    "cs0",
    "[..]",
]


@settings(max_examples=3000, derandomize=True, deadline=None, database=None)
@given(st.lists(st.sampled_from(NFT_WORDS), max_size=30))
def test_nft_fields_read_as_the_token_walk(words: list[str]):
    rest = " ".join(words)
    assert traces._nft_fields(rest) == _reference_nft_fields(rest)


def test_nft_fields_on_every_packet_line_of_the_samples():
    seen = 0
    for path in sorted((ROOT / "samples").rglob("*")) + sorted((ROOT / "tests").rglob("*.txt")):
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if " packet: " in line and "trace id" in line:
                rest = line.split(" packet: ", 1)[1]
                assert traces._nft_fields(rest) == _reference_nft_fields(rest), line
                seen += 1
    assert seen > 20


def _covered_spans(draw_spans: list[tuple[int, int]], total: int) -> tuple[list[int], list[tuple[int, int]]]:
    """What the line account must say for spans covered in this order: how many lines each newly
    covers, and the runs left uncovered in 1..total (the specification _Covered is held to)."""
    seen: set[int] = set()
    news = []
    for a, b in draw_spans:
        lines = set(range(a, b + 1))
        news.append(len(lines - seen))
        seen |= lines
    gaps: list[tuple[int, int]] = []
    for n in range(1, total + 1):
        if n in seen:
            continue
        if gaps and gaps[-1][1] == n - 1:
            gaps[-1] = (gaps[-1][0], n)
        else:
            gaps.append((n, n))
    return news, gaps


@settings(max_examples=1500, derandomize=True, deadline=None, database=None)
@given(
    st.lists(st.tuples(st.integers(1, 60), st.integers(0, 12)), max_size=40),
    st.integers(0, 70),
    st.integers(1, 6),
)
def test_covered_lines_count_each_line_once(spans: list[tuple[int, int]], total: int, window: int):
    """pipeline._Covered (a bitmap of recent lines, holes below it; a tiny window here makes every
    spill, hole and long-run path run) counts what a set of lines counts."""
    cov = pipeline._Covered(window)
    pairs = [(a, a + w) for a, w in spans]
    news = [cov.add(a, b) for a, b in pairs]
    assert (news, list(cov.gaps(total))) == _covered_spans(pairs, total)


# ---------------------------------------------------------------------------------------------------
# nft trace lines: _nft_line reads each line's text after its id once (an LRU keyed by that text).
# The reference is the per-line reading it replaced, verbatim, on the whole line.


def _reference_nft_line(line: str) -> tuple[str, tuple[object, ...]] | None:
    m = traces._NFT.match(line)
    if not m:
        return None
    tid, kind, rest, table, chain, family = m.group("id", "kind", "rest", "table", "chain", "family")
    kind = kind.strip()
    fam = traces.NFT_FAMILY.get(family or "unknown", "unknown")
    verdict, rule_text, handle, hit_kind = "", "", None, HitKind.RULE
    if kind == "policy":
        verdict, rule_text, handle, hit_kind = rest.split()[0] if rest.split() else "", "", None, HitKind.POLICY
    elif kind not in ("packet:", "conntrack:"):
        vm = traces._NFT_VERDICT.search(rest)
        verdict = vm.group("v") if vm else ""
        body = (rest[: vm.start()] if vm else rest).strip()
        handle_m = traces._NFT_HANDLE.search(body)
        handle = handle_m.group(1) if handle_m else None
        rule_text = body[: handle_m.start()].rstrip() if handle_m else body
        if kind == "unknown rule handle":
            handle, rule_text = rest.split()[0], ""
        hit_kind = HitKind.RETURN if kind == "verdict" else HitKind.RULE
    hit = RuleHit(table, chain, hit_kind, verdict, rule_text, handle, LineRef("f", 1))
    proven = traces.nft_rule_ports([hit]) if "port " in rule_text else {}
    ends = traces._ends_visit(hit_kind, verdict)
    return tid, (kind, table, chain, fam, rest, verdict, rule_text, handle, hit_kind, proven, ends)


NFT_LINE_WORDS = [
    "trace",
    "id",
    "0a1b",
    "ZZ",
    "",
    "inet",
    "ip6",
    "bridge",
    "t",
    "filter",
    "input",
    "packet:",
    "conntrack:",
    "rule",
    "unknown",
    "handle",
    "policy",
    "verdict",
    "accept",
    "drop",
    "jump",
    "continue",
    "(verdict",
    "accept)",
    "return)",
    "#",
    "7",
    "tcp",
    "dport",
    "80",
    "iif",
]


@settings(max_examples=4000, derandomize=True, deadline=None, database=None)
@given(
    st.sampled_from(["trace id 0a1b ", "trace id ", "trace id 12 ", "trace id 12  ", "trace id 77 inet t c rule "]),
    st.lists(st.sampled_from(NFT_LINE_WORDS), max_size=14),
    st.sampled_from(["", " (verdict accept)", " # handle 4", " # handle 5 (verdict drop)"]),
)
def test_nft_line_reads_as_the_whole_line(head: str, words: list[str], tail: str):
    line = (head + " ".join(words) + tail).rstrip()
    assert _fields(traces._nft_line(line)) == _reference_nft_line(line)
    # Twice: the second reading comes from the cache.
    assert _fields(traces._nft_line(line)) == _reference_nft_line(line)


def _fields(got: tuple[str, traces._NftLine] | None) -> tuple[str, tuple[object, ...]] | None:
    """_nft_line's answer in _reference_nft_line's shape: the id and the reading's fields in order."""
    if got is None:
        return None
    b = got[1]
    return got[0], (
        b.kind,
        b.table,
        b.chain,
        b.family,
        b.rest,
        b.verdict,
        b.rule_text,
        b.handle,
        b.hit_kind,
        b.proven,
        b.ends,
    )


def test_nft_line_cache_key_holds_everything_but_the_id():
    """Two lines of two packets that differ only in their ids read the same but for the id; lines
    that differ after the id do not share a reading."""
    a = traces._nft_line("trace id 0a inet t c rule tcp dport 80 accept # handle 4 (verdict accept)")
    b = traces._nft_line("trace id 0b inet t c rule tcp dport 80 accept # handle 4 (verdict accept)")
    c = traces._nft_line("trace id 0b inet t c rule tcp dport 81 accept # handle 4 (verdict accept)")
    assert a is not None and b is not None and c is not None
    assert (a[0], b[0]) == ("0a", "0b") and a[1] is b[1]
    assert c[1].proven == {"proto": "TCP", "dport": 81} and c[1].rule_text.endswith("81 accept")


EBT_MESSAGES = [
    "r61 EB:nat:PREROUTING IN=vethr61c1 OUT= MAC source = 02:42:ac:11:00:02 MAC dest = 02:42:ff:e7:b5:d2 "
    "proto = 0x0800",
    "EB IN=br0 OUT=eth1 MAC source = 02:42:AC:11:00:02 MAC dest = xx:xx proto = 0x0806 ARP HTYPE=1, PTYPE=0x0800",
    "EB IN=br0 OUT= MAC source = 02:42:ac:11:00:02 MAC dest = 02:42:ff:e7:b5:d2 proto = 0x0800 IP SRC=10.0.0.1 "
    "IP DST=10.0.0.2, IP tos=0x00, IP proto=6 SPT=1 DPT=2",
    "x IN=a OUT=b MAC source = nonsense",  # no ebt_log record: read as nf_log (anchors), or not at all
    "x MAC source = 1 MAC dest = 2 proto = 0x0800",  # no record at all
]


@pytest.mark.parametrize("msg", EBT_MESSAGES)
def test_ebt_message_kept_reading_carries_each_lines_own_ref_text_and_stamp(msg: str):
    """An ebt_log message read before is not parsed again (nflog._ebt_messages): the record is the
    one a fresh reading gives, with this line's ref, text and stamp."""
    nflog._ebt_messages.clear()
    first = nflog.parse_kernel_message(msg, LineRef("a", 1), "[1.0] " + msg, 1.0)
    second = nflog.parse_kernel_message(msg, LineRef("b", 7), "[2.5] " + msg, 2.5)
    fresh = nflog._parse_message(msg, LineRef("b", 7), "[2.5] " + msg, 2.5)
    assert msg in nflog._ebt_messages
    assert second == fresh
    assert first is None or (first.ref, first.stamp, second.ref, second.stamp) == (
        LineRef("a", 1),
        1.0,
        LineRef("b", 7),
        2.5,
    )


NFT_USUAL_VALUES = ["0", "64", "00:11:22:33:44:55", "2:42:AC:11:0:2", "ip", "tcp", "iif", "cs0", "not-ect", "ect0", "x"]


@settings(max_examples=3000, derandomize=True, deadline=None, database=None)
@given(
    st.sampled_from(['iif "docker0" ', 'iif "" ', 'oif "eth0" ', 'iif "a" oif "b" ', ""]),
    st.booleans(),
    st.lists(st.sampled_from(NFT_USUAL_VALUES), min_size=6, max_size=6),
    st.sampled_from(["ip protocol tcp ", "", "ip protocol udp "]),
    st.sampled_from(["syn", "syn|ack", "0x12", "ack", "=="]),
    st.integers(0, 70000),
)
def test_nft_usual_packet_line_reads_as_the_token_walk(
    devs: str, ether: bool, vals: list[str], proto: str, flags: str, num: int
):
    """traces._NFT_USUAL (one fullmatch for the usual TCP/IPv4 packet line) gives the fields, in the
    same key order, that the token walk gives; the values include words the walk would read."""
    mac1, mac2, dscp, ecn, src, dst = vals
    rest = (
        devs
        + (f"ether saddr {mac1} ether daddr {mac2} " if ether else "")
        + f"ip saddr 10.0.0.{num % 256} ip daddr {dst if dst[0].isdigit() else '1.2.3.4'} ip dscp {dscp} ip ecn {ecn} "
        + f"ip ttl {num} ip id {num} {proto}ip length {num} tcp sport {num} tcp dport 80 tcp flags == {flags} "
        + f"tcp window {num}"
    )
    got, want = traces._nft_fields(rest), _reference_nft_fields(rest)
    assert list(got.items()) == list(want.items())


def test_nft_usual_packet_line_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch, interpreted):
    line = (
        'iif "docker0" ether saddr 02:42:ac:11:00:02 ether daddr 02:42:ff:e7:b5:d2 ip saddr 172.17.0.2 ip daddr '
        "203.0.113.11 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 37363 ip protocol tcp ip length 60 tcp sport 1024 "
        "tcp dport 80 tcp flags == syn tcp window 64240"
    )
    taken = []
    source_traces = interpreted("reportgen.parsers.traces")  # compiled, _nft_fields would bypass the patch
    monkeypatch.setattr(source_traces, "_nft_usual_fields", lambda m: taken.append(m) or {})
    source_traces._nft_fields(line)
    assert taken


def _nft_visits(traces_module: Any, lines: list[str]) -> list[object]:
    """What NftTraceParser makes of the lines: per line whether it was used, and every visit's state."""
    parser = traces_module.NftTraceParser()
    out: list[object] = []

    def state(v: Any) -> object:
        return (
            v.ref,
            v.text,
            v.family,
            v.table,
            v.chain,
            v.trace_id,
            list(v.fields.items()),
            v.rules,
            v.extra,
            v.place,
        )

    for n, text in enumerate(lines, 1):
        visits, used = parser.feed(LineRef("t", n), text)
        out += [used, *map(state, visits)]
    return out + [state(v) for v in parser.flush()]


@settings(max_examples=1500, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["trace id 0a1b ", "trace id 12 ", "> trace id 12 ", "trace id 1x ", "trace id 12  "]),
            st.sampled_from(["inet ", "ip ", "ip6 ", "bridge ", "arp ", "unknown ", "", "ipx ", "packet: "]),
            st.sampled_from(["t ", "packet: ", "nat "]),
            st.sampled_from(["c ", "packet: ", "pre "]),
            st.sampled_from(["packet: ", "rule ", "policy ", "packet:  "]),
            st.sampled_from(
                [
                    'iif "docker0" ether saddr 2:42:AC:11:0:2 ether daddr 02:42:ff:e7:b5:d2 ',
                    'oif "eth0" ',
                    'iif "a" oif "b" ',
                    "",
                    "ether saddr 00:11:22:33:44:55 ether daddr 2:42:ac:11:0:2 ",
                ]
            ),
            st.sampled_from(["cs0", "ip", "iif", "af41"]),
            st.sampled_from(["ip protocol tcp ", "", "ip protocol udp "]),
            st.sampled_from(["syn", "syn|ack", "0x12", "=="]),
            st.sampled_from(["", " ", " \t ", "\u2003", " (verdict accept)", " x"]),
        ),
        max_size=6,
    ),
)
def test_nft_usual_packet_line_whole_reads_as_its_parts(interpreted, lines: list[tuple[str, ...]]):
    """NftTraceParser.feed reads the usual packet line with one match of the whole line
    (traces._NFT_USUAL_LINE): what it makes of any line, usual or not, is what the line's head
    (_nft_line) and then its fields (_nft_fields) make of it."""
    texts = []
    for head, family, table, chain, kind, devs, dscp, proto, flags, tail in lines:
        texts.append(
            f"{head}{family}{table}{chain}{kind}{devs}ip saddr 10.0.0.1 ip daddr 10.0.0.2 ip dscp {dscp} "
            f"ip ecn not-ect ip ttl 64 ip id 7 {proto}ip length 60 tcp sport 1024 tcp dport 80 tcp flags == {flags} "
            f"tcp window 64240{tail}"
        )
        texts.append(f"{head}{family}{table}{chain}rule tcp dport 80 accept (verdict accept)")
    traces_module = interpreted("reportgen.parsers.traces")
    fast = _nft_visits(traces_module, texts)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(traces_module, "_NFT_USUAL_LINE", NEVER)
        assert _nft_visits(traces_module, texts) == fast


# The records whose __init__ is written out so that mypyc compiles it (model.py): the dataclass still
# names the fields (dataclasses.replace, fields(), repr, eq, hash), the written __init__ sets them.
WRITTEN_INIT = ["model.py", "explain/correlate.py", "parsers/traces.py", "pipeline.py"]


def _dataclass_inits(path: Path) -> list[tuple[str, list[tuple[str, str]], list[tuple[str, str]], set[str]]]:
    """(class, fields with their defaults, __init__'s parameters with theirs, the fields it sets) of
    every dataclass in a module that writes its own __init__."""
    out = []
    for cls in ast.parse(path.read_text()).body:
        if not isinstance(cls, ast.ClassDef) or not any("dataclass" in ast.unparse(d) for d in cls.decorator_list):
            continue
        init = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
        if init is None:
            continue
        fields = []
        for f in cls.body:
            if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name):
                default = "" if f.value is None else ast.unparse(f.value)
                if "default_factory" in default:
                    default = "None"  # the parameter's default: the __init__ makes the new container
                elif isinstance(f.value, ast.Call) and default.startswith("field(default="):
                    default = ast.unparse(f.value.keywords[0].value)
                fields.append((f.target.id, default))
        args = init.args.args[1:]
        defaults = [""] * (len(args) - len(init.args.defaults)) + [ast.unparse(d) for d in init.args.defaults]
        params = [(a.arg, d) for a, d in zip(args, defaults, strict=True)]
        stores = [s for s in ast.walk(init) if isinstance(s, ast.Assign)]
        sets = {t.attr for s in stores for t in s.targets if isinstance(t, ast.Attribute)}
        out.append((cls.name, fields, params, sets))
    return out


@pytest.mark.parametrize("module", WRITTEN_INIT)
def test_written_constructors_take_every_field_in_order_with_its_default(module: str):
    found = _dataclass_inits(ROOT / "reportgen" / module)
    assert found, f"{module}: no dataclass with a written __init__"
    for name, fields, params, sets in found:
        assert params == fields, f"{module} {name}: __init__'s parameters differ from the fields"
        assert sets == {f for f, _ in fields}, f"{module} {name}: __init__ does not set every field"


def test_compiled_records_are_frozen_hashable_and_replaceable():
    from reportgen import compiled, model

    rec = model.LogRecord(LineRef("f", 1), "t", None, "nflog", "p", "eth0", "", src="192.0.2.1")
    same = model.LogRecord(LineRef("f", 1), "t", None, "nflog", "p", "eth0", "", src="192.0.2.1")
    assert rec == same and hash(rec) == hash(same)
    assert dataclasses.replace(rec, dport=443) == model.LogRecord(
        LineRef("f", 1), "t", None, "nflog", "p", "eth0", "", src="192.0.2.1", dport=443
    )
    assert repr(LineRef("f", 1)) == "LineRef(file='f', line=1)"
    assert sorted([LineRef("b", 1), LineRef("a", 2), LineRef("a", 1)]) == [
        LineRef("a", 1),
        LineRef("a", 2),
        LineRef("b", 1),
    ]
    assert hash(LineRef("f", 1)) == hash(("f", 1))  # what frozen=True's generated __hash__ gives
    a, b = LineRef("a", 2), LineRef("b", 1)
    assert (a < b, a <= b, a > b, a >= b, a != b, a == LineRef("a", 2)) == (True, True, False, False, True, True)
    assert a != ("a", 2) and (a == ("a", 2)) is False  # another class is never equal (NotImplemented)
    with pytest.raises(TypeError):
        _ = a < ("a", 3)  # type: ignore[operator]
    ends = model.Endpoint("192.0.2.1", 80), model.Endpoint("192.0.2.1", None)
    assert ends[0] == model.Endpoint("192.0.2.1", 80) and ends[0] != ends[1]
    assert [hash(e) for e in ends] == [hash(("192.0.2.1", 80)), hash(("192.0.2.1", None))]
    hook = model.HookRef("ipv4", "INPUT", "filter", "INPUT", "prefix words", action=model.Action.DROP)
    fields = ("ipv4", "INPUT", "filter", "INPUT", "prefix words", (), model.Action.DROP, None, None)
    assert hash(hook) == hash(fields) and hook == model.HookRef(*fields)
    assert hook != dataclasses.replace(hook, writer="iptables")
    if "reportgen.model" in compiled.loaded():
        with pytest.raises(dataclasses.FrozenInstanceError):
            rec.src = "198.51.100.1"  # type: ignore[misc]
