"""Every parser entry point, and damaged inputs built from the real samples, for the fuzz tests.

Shared by tests/test_fuzz_parsers.py (hypothesis, in CI) and tests/fuzz/run_fuzz.py (the long run).
An entry point takes one text and either returns or raises InputError (a clear "bad input"); any
other exception is a crash. Damage follows what pasted logs really suffer: cut lines, two lines glued,
characters that matter to the parsers, control and non-ASCII bytes, huge numbers, runs of blanks.
"""

from __future__ import annotations

import functools
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

from reportgen.errors import InputError

SAMPLES = Path(__file__).resolve().parent.parent.parent / "samples"

SALT = [
    "=",
    " ",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    '"',
    "'",
    "\\",
    ":",
    ";",
    "/",
    "!",
    "#",
    "-",
    "IN=",
    "OUT=",
    "MAC=",
    "MAC=zz:",
    "SRC=",
    "DST=1.2.3",
    "ID=x",
    "SEQ=",
    "PROTO=ICMP TYPE=3 CODE=1 [SRC=",
    "OPT (",
    "[SRC=1 ",
    "\x00",
    "\x01",
    "\x1b[31m",
    "\x1b]0;t\x07",
    "\x85",
    "\x9b",
    "\x7f",
    "\t",
    "\r",
    "\u2028",
    "\ufffd",
    "é",
    "²",
    "٣",
    "\U0001f600",
    "\ufeff",
    "master",
    "dev",
    "via",
    "metric",
    "type",
    "hook",
    "priority",
    "policy",
    "trace id ",
    "packet: ",
    "rule ",
    "verdict ",
    "icmp type ",
    "tcp dport ssh",
    "--dport ssh",
    "-j",
    "-A",
    "*filter",
    "COMMIT",
    ":",
    "table ip t {",
    "chain c {",
    "}",
    "# handle ",
    "&&",
    "-1",
    "0x",
    "ffffffff",
]
HUGE = ["9" * 40, "-1", "0", "65536", "4294967296", "1e999", "²", "0x", "NaN", "٣"]


def mutate_line(rng: random.Random, line: str, pool: list[str]) -> str:
    """Damage one line in one to three ways."""
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        pos = rng.randrange(len(line) + 1)
        if r < 0.2:
            line = line[:pos]  # cut
        elif r < 0.3:
            other = rng.choice(pool)
            line = line[:pos] + other[rng.randrange(len(other) + 1) :]  # splice
        elif r < 0.55:
            line = line[:pos] + rng.choice(SALT) + line[pos:]  # salt
        elif r < 0.7:
            digits = [i for i, c in enumerate(line) if c.isdigit()]
            if digits:
                i = rng.choice(digits)
                line = line[:i] + rng.choice(HUGE) + line[i + 1 :]
        elif r < 0.8:
            line = line[:pos] + " " * rng.choice((2, 17, 300)) + line[pos:]  # blank run
        elif r < 0.85:
            line = line[:pos] + "".join(chr(rng.randrange(0, 0x3000)) for _ in range(rng.randint(1, 8))) + line[pos:]
        elif r < 0.9:
            line = line.replace(" ", "", 1)
        elif r < 0.95:
            line = line[:pos] + line[pos:][::-1]
        else:
            line = line[:pos] + line[pos : pos + 40] * rng.randint(2, 20) + line[pos:]  # repeat a piece
    return line


def mutate_text(rng: random.Random, text: str, pool: list[str]) -> str:
    """Damage a multi-line text: some lines damaged, some dropped, doubled or moved, or cut short."""
    lines = text.splitlines()
    if not lines:
        return text
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(lines))
        r = rng.random()
        if r < 0.6:
            lines[i] = mutate_line(rng, lines[i], pool)
        elif r < 0.7:
            del lines[i]
            if not lines:
                return ""
        elif r < 0.8:
            lines.insert(i, lines[i])
        elif r < 0.9:
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(pool))
        else:
            lines = lines[: i + 1]
            lines[-1] = lines[-1][: rng.randrange(len(lines[-1]) + 1)]  # a truncated file
    return "\n".join(lines) + ("\n" if rng.random() < 0.8 else "")


# No bundled case has a docker network inspect snapshot; this is one in the shape dockerd prints.
DOCKER_NETWORK = """[
    {
        "Name": "bridge",
        "Id": "4f1a0c5e2b3d4f1a0c5e2b3d4f1a0c5e2b3d4f1a0c5e2b3d4f1a0c5e2b3d4f1a",
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null,
                 "Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]},
        "Containers": {
            "9c2f5e1a7b3d": {"Name": "container1", "EndpointID": "e1", "MacAddress": "02:42:ac:11:00:02",
                             "IPv4Address": "172.17.0.2/16", "IPv6Address": ""}
        },
        "Options": {"com.docker.network.bridge.name": "docker0"},
        "Labels": {}
    }
]
"""


@functools.cache
def sample_files() -> dict[str, list[str]]:
    """Sample texts by kind: snapshot kinds, and the trace formats."""
    from reportgen.parsers.snapshots import detect_kind

    out: dict[str, list[str]] = {}
    for f in sorted(SAMPLES.glob("*/*")):
        text = f.read_text(encoding="utf-8", errors="replace")
        if f.name == "case.yaml":
            kind: str | None = "case.yaml"
        elif f.name == "dmesg.log":
            kind = "dmesg"
        elif f.name == "xtables-monitor.txt":
            kind = "xtables-monitor"
        elif f.name == "nft-monitor-trace.txt":
            kind = "nft-trace"
        else:
            kind = detect_kind(text)
        if kind:
            out.setdefault(kind, []).append(text)
    out.setdefault("docker-network", [DOCKER_NETWORK])
    return out


@functools.cache
def line_pool(kind: str) -> list[str]:
    """Every distinct line of the samples of one kind (dmesg split into LOG, ebtables and TRACE lines)."""
    files = sample_files()
    if kind in ("nflog", "ebtables", "legacy-trace"):
        lines = [ln for t in files["dmesg"] for ln in t.splitlines()]
        want = {
            "ebtables": lambda ln: "MAC source = " in ln,
            "legacy-trace": lambda ln: "TRACE:" in ln,
            "nflog": lambda ln: "MAC source = " not in ln and "TRACE:" not in ln,
        }[kind]
        return sorted({ln for ln in lines if want(ln)})
    return sorted({ln for t in files[kind] for ln in t.splitlines()})


def _ref() -> object:
    from reportgen.model import LineRef

    return LineRef("fuzz", 1)


def _kernel_lines(text: str) -> None:
    from reportgen.model import LineRef
    from reportgen.parsers.nflog import parse_kernel_message
    from reportgen.sources.framing import strip_wrapper

    for n, line in enumerate(text.splitlines() or [text], start=1):
        f = strip_wrapper(line)
        parse_kernel_message(f.msg, LineRef("fuzz", n), line, f.stamp)


def _framing(text: str) -> None:
    from reportgen.sources.framing import strip_wrapper

    for line in text.splitlines() or [text]:
        strip_wrapper(line)


def _prefix_resolve(text: str) -> None:
    from reportgen.model import LineRef
    from reportgen.parsers.nflog import parse_kernel_message
    from reportgen.parsers.prefix import resolve_hook
    from reportgen.sources.framing import strip_wrapper

    for n, line in enumerate(text.splitlines() or [text], start=1):
        f = strip_wrapper(line)
        rec = parse_kernel_message(f.msg, LineRef("fuzz", n), line, f.stamp)
        if rec is not None:
            resolve_hook(rec, _prefix_map())
            resolve_hook(rec, _empty_map())


@functools.cache
def _prefix_map() -> object:
    from reportgen.parsers.prefix import PrefixMap

    d = Path(tempfile.mkdtemp(prefix="reportgen-fuzz-"))
    (d / "p.yaml").write_text(
        "prefixes:\n  '[UFW BLOCK]': ipv4 filter INPUT\n  're:^fw-': {family: ipv4, "
        "table: filter, chain: FORWARD}\n  'x': bridge filter FORWARD\n"
    )
    return PrefixMap.load(d / "p.yaml")


@functools.cache
def _empty_map() -> object:
    from reportgen.parsers.prefix import PrefixMap

    return PrefixMap.empty()


def _monitor(kind: str) -> Callable[[str], None]:
    def run(text: str) -> None:
        from reportgen.model import LineRef
        from reportgen.parsers.traces import NftTraceParser, XtablesMonitorParser, place_chain

        parser = XtablesMonitorParser() if kind == "xtmon" else NftTraceParser()
        visits = []
        for n, line in enumerate(text.splitlines(), start=1):
            got, _ = parser.feed(LineRef("fuzz", n), line)
            visits += got
        visits += list(parser.flush())
        for v in visits:
            place_chain(v.family, v.table, v.chain, {})
            if v.text:
                v.record()

    return run


def _legacy_trace(text: str) -> None:
    from reportgen.model import LineRef
    from reportgen.parsers.nflog import parse_kernel_message
    from reportgen.parsers.traces import legacy_trace_prefix
    from reportgen.sources.case import _LegacyTraceGrouper
    from reportgen.sources.framing import strip_wrapper

    grouper = _LegacyTraceGrouper()
    for n, line in enumerate(text.splitlines(), start=1):
        f = strip_wrapper(line)
        rec = parse_kernel_message(f.msg, LineRef("fuzz", n), line, f.stamp)
        if rec is None:
            grouper.flush()
            continue
        m = legacy_trace_prefix(rec.prefix)
        if m:
            grouper.feed(rec, m)
        else:
            grouper.flush()
    grouper.flush()


def _snapshot(kind: str) -> Callable[[str], None]:
    def run(text: str) -> None:
        from reportgen.parsers.snapshots import PARSERS, detect_kind

        detect_kind(text)
        data = PARSERS[kind](text)
        if kind in ("iptables-save", "ip6tables-save", "nft-ruleset"):
            _evaluate(kind, data)

    return run


def _evaluate(kind: str, data: object) -> None:
    """Walk every chain of a parsed ruleset for a few packets (the rule evaluator is an entry point too)."""
    from reportgen.explain.rules import PacketView, evaluate
    from reportgen.parsers.nft_rules import rulesets_from_nft
    from reportgen.parsers.nft_ruleset import NftRuleset
    from reportgen.parsers.ruleset import Ruleset

    if isinstance(data, NftRuleset):
        rulesets = list(rulesets_from_nft(data, "fuzz").values())
    else:
        assert isinstance(data, Ruleset)
        rulesets = [data]
    views = [
        PacketView(
            "172.17.0.2",
            "192.0.2.1",
            "TCP",
            40000,
            22,
            "docker0",
            "ens33",
            "veth1",
            "",
            "NEW",
            frozenset({"172.17.0.1"}),
        ),
        PacketView("2001:db8::1", "2001:db8::2", "ICMPv6", None, None, "eth0", "", ctstate=None),
        PacketView(None, None, None, None, None, "", ""),
    ]
    for rs in rulesets:
        assert isinstance(rs, Ruleset)
        for table, chains in rs.tables.items():
            for chain in chains:
                for view in views:
                    evaluate(rs, table, chain, view)


_CASE_DIR: list[Path] = []


def _case_yaml(text: str) -> None:
    from reportgen.sources.case import load_spec

    if not _CASE_DIR:
        d = Path(tempfile.mkdtemp(prefix="reportgen-fuzz-case-"))
        for name in ("dmesg.log", "ip-link.txt", "route-n.txt", "bridge-fdb.txt"):
            (d / name).write_text("x\n")
        _CASE_DIR.append(d)
    d = _CASE_DIR[0]
    (d / "case.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    load_spec([d])


_PIPELINE_DIR: list[Path] = []
PIPELINE_CASE = "lab-container-to-internet"


def _pipeline(text: str) -> None:
    """The whole report for a damaged trace beside real snapshots: correlate, explain, render (DOT source)."""
    from reportgen.model import Report
    from reportgen.pipeline import build_report
    from reportgen.render.dot import packet_dot
    from reportgen.render.jsonout import render_json
    from reportgen.render.markdown import render_markdown
    from reportgen.render.text import render_text
    from reportgen.render.topology_dot import topology_dot
    from reportgen.sources.case import load_spec

    if not _PIPELINE_DIR:
        d = Path(tempfile.mkdtemp(prefix="reportgen-fuzz-pipeline-")) / "case"
        import shutil

        shutil.copytree(SAMPLES / PIPELINE_CASE, d)
        _PIPELINE_DIR.append(d)
    d = _PIPELINE_DIR[0]
    (d / "dmesg.log").write_text(text, encoding="utf-8", errors="surrogatepass")
    report: Report = build_report(load_spec([d]))
    render_json(report)
    render_text(report)
    render_markdown(report)
    topology_dot(report, report.topology)
    for packet in report.packets:
        packet_dot(packet)


def entry_points() -> dict[str, tuple[Callable[[str], None], str]]:
    """name -> (function taking one text, the sample pool it is fuzzed from)."""
    from reportgen.parsers.snapshots import PARSERS

    eps: dict[str, tuple[Callable[[str], None], str]] = {
        "nflog": (_kernel_lines, "nflog"),
        "ebtables": (_kernel_lines, "ebtables"),
        "framing": (_framing, "nflog"),
        "prefix-resolve": (_prefix_resolve, "nflog"),
        "xtables-monitor": (_monitor("xtmon"), "xtables-monitor"),
        "nft-trace": (_monitor("nfttrace"), "nft-trace"),
        "legacy-trace": (_legacy_trace, "legacy-trace"),
        "case.yaml": (_case_yaml, "case.yaml"),
        "pipeline": (_pipeline, "dmesg"),
    }
    files = sample_files()
    for kind in sorted(PARSERS):
        pool = (
            kind
            if kind in files
            else {"ip-link": "ip-addr", "ebtables-save": "iptables-save", "ip-link-json": "ip-addr-json"}.get(
                kind, kind
            )
        )
        eps["snapshot:" + kind] = (_snapshot(kind), pool)
    return eps


MULTILINE = {"xtables-monitor", "nft-trace", "legacy-trace", "case.yaml", "pipeline"}


def make_input(rng: random.Random, name: str, pool_kind: str) -> str:
    """One damaged input for an entry point: from a real sample most of the time, free text sometimes."""
    r = rng.random()
    if r < 0.08:
        return "".join(chr(rng.randrange(0, 0x2FFF)) for _ in range(rng.randint(0, 200)))
    files = sample_files()
    if name.startswith("snapshot:") or name in MULTILINE:
        texts = files.get(pool_kind) or files["dmesg"]
        pool = line_pool(pool_kind) if pool_kind in files and pool_kind != "dmesg" else line_pool("nflog")
        if name == "legacy-trace":
            pool = line_pool("legacy-trace")
            text = "\n".join(rng.sample(pool, min(len(pool), rng.randint(1, 12))))
        else:
            text = rng.choice(texts)
        return mutate_text(rng, text, pool)
    pool = line_pool(pool_kind)
    return mutate_line(rng, rng.choice(pool), pool)


def call(fn: Callable[[str], None], text: str) -> BaseException | None:
    """Run one input; return the crash (None when it returned or raised InputError)."""
    try:
        fn(text)
    except InputError:
        return None
    except Exception as exc:  # noqa: BLE001 - any other exception is exactly what the fuzzer looks for
        return exc
    return None
