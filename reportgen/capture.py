"""``reportgen capture``: add logging rules on a user's host, run traffic, read the lines, remove them.

Safety rules, in order of importance:
* By default nothing is changed: the rules are printed. ``--apply`` changes the ruleset, and only as root.
* Every user value is validated before it reaches a command: addresses and prefixes through
  ``ipaddress``, ports and rates by strict pattern. Values travel as argv elements, or as nft tokens
  rebuilt from the validated value, so none can leave its position (``--host '1.2.3.4; flush ruleset'``
  is refused before anything is created).
* A capture owns only what it created. Before each object is made it is recorded in a state file
  (written atomically), and afterwards its nf_tables handle is added. Removal deletes exactly the recorded
  objects after checking that each still is what was recorded: iptables/ebtables rules by their full
  spec (which carries a per-run comment or prefix), nft tables by name and handle, and the chains and
  tables iptables-nft/ebtables-nft made on demand only while they are empty, unchanged and
  ``policy accept``. Nothing is ever matched by substring, so an admin's look-alike rules and chains,
  and chains created later, survive ``--cleanup``.
* SIGINT, SIGTERM and SIGHUP are held back while an object is being added or removed; the helper
  commands run in their own session so a terminal's Ctrl-C does not kill them half-way, and
  ``nft monitor`` dies with its parent (PR_SET_PDEATHSIG).
* The iptables-legacy backend only uses x_tables tables that already exist: the first use of a table
  creates it in the namespace, and nothing but unloading the module removes it again.
Prefixes stay within 29 bytes: the limit of iptables/ebtables log prefixes (xt_log_info.prefix[30],
EBT_LOG_PREFIX_SIZE 30); iptables-nft silently cuts longer ones.
"""

from __future__ import annotations

import dataclasses
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reportgen.explain.lost import MonitorLoss
from reportgen.lab.netns import (
    KernelLog,
    MonitorFailed,
    TraceMonitor,
    deferred_signals,
    list_namespaces,
    owner_alive,
    process_start,
    run_shielded,
    signals_as_exit,
    unfinished_writes,
    write_atomic,
)

STATE_DIR = Path("/run/reportgen-capture")
NOT_INSTALLED, TIMED_OUT = 127, 124  # the shell's codes, for a command that is missing or took too long
# iptables -C: 1 when no such rule exists (iptables(8) "--check"); other codes are errors. ebtables-nft
# 1.8.9 has no working -C, and its -D returns 0 also when no rule matched.
XT_NO_SUCH_RULE = 1
MARK_COMMENT = "reportgen-capture"
BACKENDS = ("iptables-nft", "iptables-legacy", "ebtables", "nft-log", "nft-trace")
PROTOS = ("icmp", "tcp", "udp")
FAMILIES = ("4", "6")
# A rate as iptables' limit match (xt_limit, iptables-extensions(8)) and nft's "limit rate" both read it.
_RATE = re.compile(r"[1-9][0-9]{0,5}/(?:second|minute|hour|day)")
# Names `ip netns add` accepts, kept to characters that cannot form a path or an option.
_NETNS = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_ADDR_CHARS = re.compile(r"[0-9a-f.:/]+")
IPT_HOOKS = (
    ("raw", "PREROUTING"),
    ("mangle", "PREROUTING"),
    ("nat", "PREROUTING"),
    ("mangle", "INPUT"),
    ("filter", "INPUT"),
    ("nat", "INPUT"),
    ("mangle", "FORWARD"),
    ("filter", "FORWARD"),
    ("raw", "OUTPUT"),
    ("mangle", "OUTPUT"),
    ("nat", "OUTPUT"),
    ("filter", "OUTPUT"),
    ("mangle", "POSTROUTING"),
    ("nat", "POSTROUTING"),
)
EBT_HOOKS = (
    ("nat", "PREROUTING"),
    ("filter", "INPUT"),
    ("filter", "FORWARD"),
    ("nat", "OUTPUT"),
    ("filter", "OUTPUT"),
    ("nat", "POSTROUTING"),
)
# nft base chains standing for the iptables tables: nft(8) "CHAIN PRIORITIES".
NFT_INET = (
    ("raw", "prerouting", "PREROUTING", "filter", -300),
    ("mangle", "prerouting", "PREROUTING", "filter", -150),
    ("nat", "prerouting", "PREROUTING", "nat", -100),
    ("mangle", "input", "INPUT", "filter", -150),
    ("filter", "input", "INPUT", "filter", 0),
    ("mangle", "forward", "FORWARD", "filter", -150),
    ("filter", "forward", "FORWARD", "filter", 0),
    ("raw", "output", "OUTPUT", "filter", -300),
    ("mangle", "output", "OUTPUT", "filter", -150),
    ("filter", "output", "OUTPUT", "filter", 0),
    ("mangle", "postrouting", "POSTROUTING", "filter", -150),
    ("nat", "postrouting", "POSTROUTING", "nat", 100),
)
NFT_BRIDGE = (
    ("nat", "prerouting", "PREROUTING", -300),
    ("filter", "input", "INPUT", -200),
    ("filter", "forward", "FORWARD", -200),
    ("nat", "output", "OUTPUT", 100),
    ("nat", "postrouting", "POSTROUTING", 300),
)
# The nf_tables family and hook of the built-in chains iptables-nft and ebtables-nft create on first use.
_AUTO_FAMILY = {"iptables-nft": "ip", "ip6tables-nft": "ip6", "ebtables": "bridge"}
_XT_HOOK = {
    "PREROUTING": "prerouting",
    "INPUT": "input",
    "FORWARD": "forward",
    "OUTPUT": "output",
    "POSTROUTING": "postrouting",
}


class CaptureRefused(RuntimeError):
    """Capture will not start or could not finish cleanly (not root, another run's objects): exit 4."""


class CaptureUsage(ValueError):
    """A capture option is invalid: exit 2, before anything is created."""


def require_root() -> None:
    """Refuse before anything is created when the ruleset cannot be changed."""
    if os.geteuid() != 0:
        raise CaptureRefused("--apply and --cleanup change the firewall and need root (run with sudo)")


def check_netns(name: str | None) -> str | None:
    """Return a namespace name that is safe as an argument and in a file name, or refuse it."""
    if name is not None and not _NETNS.fullmatch(name):
        raise CaptureUsage(f"--netns {name!r} is not a namespace name (letters, digits, '_', '.', '-')")
    return name


def check_host(text: str) -> str:
    """Return the canonical text of an address or prefix, or refuse it."""
    try:
        value: ipaddress.IPv4Network | ipaddress.IPv6Network | ipaddress.IPv4Address | ipaddress.IPv6Address
        value = ipaddress.ip_network(text, strict=True) if "/" in text else ipaddress.ip_address(text)
    except ValueError as exc:
        raise CaptureUsage(f"--host {text!r} is not an IP address or prefix ({exc})") from None
    canon = str(value).lower()
    # A scoped IPv6 address (fe80::1%eth0) names an interface, not a host; the rules cannot use it.
    if not _ADDR_CHARS.fullmatch(canon):
        raise CaptureUsage(f"--host {text!r}: scoped addresses are not supported; give the address alone")
    return canon


@dataclass(frozen=True)
class Filter:
    """What the added rules match; every value is checked when the filter is made."""

    host: str | None = None
    proto: str | None = None
    port: int | None = None
    rate: str = "20/second"

    def __post_init__(self) -> None:
        if self.host is not None:
            object.__setattr__(self, "host", check_host(self.host))
        if self.proto is not None and self.proto not in PROTOS:
            raise CaptureUsage(f"--proto {self.proto!r}: choose from {', '.join(PROTOS)}")
        if self.port is not None:
            if not (isinstance(self.port, int) and 1 <= self.port <= 65535):
                raise CaptureUsage(f"--port {self.port!r}: give a port number from 1 to 65535")
            if self.proto not in ("tcp", "udp"):
                raise CaptureUsage("--port needs --proto tcp or --proto udp")
        if not _RATE.fullmatch(self.rate):
            raise CaptureUsage(f"--rate {self.rate!r}: give N/second, N/minute, N/hour or N/day (N from 1)")

    @property
    def family(self) -> str | None:
        """The IP family ("4" or "6") the host implies, None without a host."""
        if self.host is None:
            return None
        return "6" if ":" in self.host else "4"

    def ipt(self, v6: bool) -> list[list[str]]:
        """Match sets for iptables: one per direction when a host is given."""
        base: list[str] = []
        if self.proto:
            base += ["-p", "ipv6-icmp" if (v6 and self.proto == "icmp") else self.proto]
            if self.port:
                base += ["-m", "multiport", "--ports", str(self.port)]
        base += ["-m", "limit", "--limit", self.rate, "--limit-burst", "50"]
        if not self.host:
            return [base]
        return [["-s", self.host, *base], ["-d", self.host, *base]]

    def ebt(self, families: tuple[str, ...]) -> list[list[str]]:
        """Match sets for ebtables (ebtables(8) ip and ip6 extensions), per family and direction."""
        if not (self.host or self.proto):
            return [[]]
        out = []
        for fam in families:
            if self.family not in (None, fam):
                continue
            base = ["-p", "IPv4" if fam == "4" else "IPv6"]
            if self.proto:
                key = "--ip-proto" if fam == "4" else "--ip6-proto"
                base += [key, "ipv6-icmp" if (fam == "6" and self.proto == "icmp") else self.proto]
            variants = [base]
            if self.port:
                p4 = "--ip-" if fam == "4" else "--ip6-"
                variants = [[*base, p4 + "dport", str(self.port)], [*base, p4 + "sport", str(self.port)]]
            for v in variants:
                if self.host:
                    src, dst = ("--ip-src", "--ip-dst") if fam == "4" else ("--ip6-src", "--ip6-dst")
                    out += [[*v, src, self.host], [*v, dst, self.host]]
                else:
                    out.append(v)
        return out

    def nft(self) -> list[str]:
        """Match expressions for nft, one rule each (nft has no "or" inside one rule).

        Only validated values are used: a canonical address, a protocol from PROTOS, an int port, a
        rate matching _RATE; none can end a statement or a block.
        """
        hosts = [""]
        if self.host:
            fam = "ip6" if self.family == "6" else "ip"
            hosts = [f"{fam} saddr {self.host}", f"{fam} daddr {self.host}"]
        proto = ""
        if self.proto:
            proto = "meta l4proto " + ("{ icmp, ipv6-icmp }" if self.proto == "icmp" else self.proto)
        ports = [""]
        if self.port:
            ports = [f"th dport {self.port}", f"th sport {self.port}"]
        limit = f"limit rate {self.rate} burst 50 packets"
        return [" ".join(x for x in (h, proto, pt, limit) if x) for h in hosts for pt in ports]


@dataclass(frozen=True)
class Step:
    """One object a capture adds: an iptables/ebtables rule, or a whole nft table."""

    add: tuple[str, ...]
    remove: tuple[str, ...]
    nft_body: str = ""  # the `nft -f -` input of an nft table step
    table: tuple[str, str] | None = None  # (family, name) of an nft table step
    # (nf_tables family, table, chain) that an nft-based iptables/ebtables creates when it is missing
    auto: tuple[str, str, str] | None = None

    def show(self) -> str:
        if self.nft_body:
            return f"nft -f - <<'EOF'\n{self.nft_body}\nEOF"
        return shlex.join(self.add)


@dataclass
class Plan:
    """The objects a capture adds, in order, and how it reads trace events."""

    tag: str
    run_id: str
    steps: list[Step]
    monitor: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def show(self) -> str:
        lines = [f"# reportgen capture {self.tag}: rules to add (--apply runs them, then removes them)"]
        lines += [f"# note: {n}" for n in self.notes]
        lines += [s.show() for s in self.steps]
        if self.monitor:
            lines.append("# trace events are read with: " + shlex.join(self.monitor))
        lines.append("# removal (each object is checked first; nft tables are deleted by handle):")
        lines += [shlex.join(s.remove) for s in reversed(self.steps)]
        return "\n".join(lines) + "\n"


def plan(
    backends: list[str],
    flt: Filter,
    tag: str | None = None,
    families: tuple[str, ...] = FAMILIES,
    legacy_tables: dict[str, frozenset[str]] | None = None,
    run_id: str | None = None,
) -> Plan:
    """Build the steps for the chosen backends.

    legacy_tables: the x_tables tables that exist per family ("4"/"6"); the legacy backend uses only
    these. None when they could not be read (then every table is planned, with a note).
    """
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise CaptureUsage(
            f"unknown backend {', '.join(map(repr, unknown)) or '(none)'}; choose from {', '.join(BACKENDS)}"
        )
    bad = [f for f in families if f not in FAMILIES]
    if bad or not families:
        raise CaptureUsage(f"--family {','.join(families)!r}: give 4, 6 or 4,6")
    if flt.family is not None:
        if flt.family not in families:
            raise CaptureUsage(f"--host {flt.host} is IPv{flt.family} but --family asks for {','.join(families)}")
        families = (flt.family,)
    tag = tag or "rc" + secrets.token_hex(1)
    run_id = run_id or secrets.token_hex(6)
    comment = f"{MARK_COMMENT} {run_id}"
    steps: list[Step] = []
    notes: list[str] = []
    monitor = None
    for be in backends:
        if be in ("iptables-nft", "iptables-legacy"):
            suffix = "-legacy" if be == "iptables-legacy" else "-nft"
            for fam in families:
                tool = ("iptables" if fam == "4" else "ip6tables") + suffix
                word = "IPT" if fam == "4" else "IP6T"
                have = legacy_tables.get(fam, frozenset()) if legacy_tables is not None else None
                if be == "iptables-legacy":
                    if have is None:
                        notes.append(
                            f"{tool}: could not read which x_tables tables exist; a table used "
                            "for the first time is created and stays until its module is unloaded"
                        )
                    else:
                        absent = sorted({t for t, _ in IPT_HOOKS} - have)
                        if absent:
                            notes.append(
                                f"{tool}: tables {', '.join(absent)} do not exist and are not used "
                                "(creating an x_tables table cannot be undone)"
                            )
                for table, chain in IPT_HOOKS:
                    if have is not None and be == "iptables-legacy" and table not in have:
                        continue
                    for m in flt.ipt(fam == "6"):
                        spec = [
                            *m,
                            "-m",
                            "comment",
                            "--comment",
                            comment,
                            "-j",
                            "LOG",
                            "--log-prefix",
                            f"{tag} {word}:{table}:{chain} ",
                        ]
                        auto = (_AUTO_FAMILY[tool], table, chain) if tool in _AUTO_FAMILY else None
                        steps.append(
                            Step(
                                (tool, "-t", table, "-I", chain, *spec),
                                (tool, "-t", table, "-D", chain, *spec),
                                auto=auto,
                            )
                        )
        elif be == "ebtables":
            for table, chain in EBT_HOOKS:
                for m in flt.ebt(families):
                    spec = [
                        *m,
                        "--log",
                        "--log-ip",
                        "--log-ip6",
                        "--log-prefix",
                        f"{tag} EB:{table}:{chain}",
                        "--limit",
                        flt.rate,
                    ]
                    steps.append(
                        Step(
                            ("ebtables", "-t", table, "-I", chain, *spec),
                            ("ebtables", "-t", table, "-D", chain, *spec),
                            auto=("bridge", table, chain),
                        )
                    )
        elif be == "nft-log":
            name = f"reportgen_capture_{run_id}"
            body = [f"table inet {name} {{"]
            for i, (table, hook, chain, ctype, prio) in enumerate(NFT_INET):
                rules = "; ".join(f'{m} log prefix "{tag} nft:{table}:{chain} "' for m in flt.nft())
                body.append(f"  chain c{i} {{ type {ctype} hook {hook} priority {prio}; policy accept; {rules}; }}")
            body.append("}")
            steps.append(
                Step(("nft", "-f", "-"), ("nft", "delete", "table", "inet", name), "\n".join(body), ("inet", name))
            )
            body = [f"table bridge {name} {{"]
            for i, (table, hook, chain, prio) in enumerate(NFT_BRIDGE):
                rules = "; ".join(f'{m} log prefix "{tag} br:{table}:{chain} "' for m in flt.nft())
                body.append(f"  chain b{i} {{ type filter hook {hook} priority {prio}; policy accept; {rules}; }}")
            body.append("}")
            steps.append(
                Step(("nft", "-f", "-"), ("nft", "delete", "table", "bridge", name), "\n".join(body), ("bridge", name))
            )
        else:  # nft-trace
            # A dedicated table at priority -350, before raw (-300), marks packets for tracing
            # (nft(8): "meta nftrace set 1"); events are read with nft monitor trace.
            name = f"reportgen_trace_{run_id}"
            pre = "; ".join(f"{m} meta nftrace set 1" for m in flt.nft())
            body_text = (
                f"table inet {name} {{\n"
                f"  chain pre {{ type filter hook prerouting priority -350; policy accept; {pre}; }}\n"
                f"  chain out {{ type filter hook output priority -350; policy accept; {pre}; }}\n}}"
            )
            steps.append(Step(("nft", "-f", "-"), ("nft", "delete", "table", "inet", name), body_text, ("inet", name)))
            monitor = ["nft", "monitor", "trace"]
    return Plan(tag, run_id, steps, monitor, notes)


Runner = Callable[[list[str], str | None], "subprocess.CompletedProcess[str]"]


def local_runner(netns: str | None) -> Runner:
    """Run commands here or in a namespace; each in its own session and with Ctrl-C blocked
    (lab.netns.run_shielded), so a terminal's Ctrl-C (sent to the whole foreground process group)
    cannot kill an iptables or nft call half-way."""
    netns = check_netns(netns)

    def run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        full = ["ip", "netns", "exec", netns, *argv] if netns else argv
        try:
            return run_shielded(full, timeout=60, input_text=stdin, new_session=True)
        except FileNotFoundError:
            return subprocess.CompletedProcess(full, NOT_INSTALLED, "", f"{full[0]} is not installed")
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(full, TIMED_OUT, "", f"{shlex.join(full)} timed out after 60 s")

    return run


def legacy_tables(run: Runner) -> dict[str, frozenset[str]] | None:
    """The x_tables tables that exist, per family: /proc/net/ip_tables_names (net/ipv4/netfilter/ip_tables.c
    creates a table in a namespace on first use; reading this file does not)."""
    out = {}
    for fam, name in (("4", "ip_tables_names"), ("6", "ip6_tables_names")):
        r = run(["cat", f"/proc/net/{name}"], None)
        if r.returncode != 0:
            return None
        out[fam] = frozenset(r.stdout.split())
    return out


# -- what a run owns ---------------------------------------------------------------------------------


@dataclass
class Owned:
    """One object a run created, as recorded in its state file.

    kind "rule": an iptables/ebtables rule; ``argv`` deletes it by its full spec; for nft-based tools
    ``family``/``table``/``name`` give its nf_tables chain.
    kind "table": an nft table made by the run; ``name`` carries the run id.
    kind "auto-chain"/"auto-table": what an nft-based iptables/ebtables created for a rule.
    ``handle`` is the nf_tables handle, None until read back after creation; ``table_handle`` the
    handle of the chain's table; ``floor`` the highest table handle before the run (handles only grow).
    """

    kind: str
    argv: list[str] = field(default_factory=list)
    family: str = ""
    table: str = ""
    name: str = ""
    handle: int | None = None
    table_handle: int | None = None
    floor: int = 0
    listing: str = ""

    def describe(self) -> str:
        if self.kind == "rule":
            return shlex.join(self.argv).replace(" -D ", " -A ", 1)
        if self.kind == "auto-chain":
            return f"nft chain {self.family} {self.table} {self.name}"
        return f"nft table {self.family} {self.name}"


@dataclass
class State:
    """A run's state file: who owns it and what it created, rewritten atomically on every change."""

    path: Path
    pid: int
    start: int
    netns: str | None
    tag: str
    run_id: str
    owned: list[Owned] = field(default_factory=list)

    def save(self) -> None:
        data = {
            "pid": self.pid,
            "start": self.start,
            "netns": self.netns,
            "tag": self.tag,
            "run_id": self.run_id,
            "owned": [dataclasses.asdict(o) for o in self.owned],
        }
        write_atomic(self.path, json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> State:
        d = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            path,
            int(d["pid"]),
            int(d["start"]),
            d["netns"],
            str(d["tag"]),
            str(d["run_id"]),
            [Owned(**o) for o in d["owned"]],
        )

    def alive(self) -> bool:
        return owner_alive(self.pid, self.start)


def states(netns: str | None) -> list[State]:
    """State files of runs in this namespace (or on the host when netns is None)."""
    out = []
    for path in sorted(STATE_DIR.glob("*.json")) if STATE_DIR.is_dir() else []:
        try:
            st = State.load(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CaptureRefused(
                f"{path}: unreadable capture state ({exc}); inspect it and remove it by hand"
            ) from None
        if st.netns == netns:
            out.append(st)
    return out


def _stale_writes(netns: str | None) -> list[Path]:
    """Temporary files of state writes that a killed run left (write_atomic's ".NAME.PID.tmp", whose
    rename never came). Their extra content names an object not yet made: a run saves before it adds
    (_add), so the state file itself holds every object that may exist."""
    key = f"ns-{netns}." if netns else "host."
    return unfinished_writes(STATE_DIR, f".{key}*.json.*.tmp")


@dataclass
class _NftIndex:
    """The nf_tables objects present, from `nft -j list ruleset` (libnftables-json(5))."""

    tables: dict[tuple[str, str], int] = field(default_factory=dict)
    chains: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    rules: dict[tuple[str, str, str], int] = field(default_factory=dict)
    others: dict[tuple[str, str], int] = field(default_factory=dict)  # sets, maps, flowtables, objects

    @property
    def floor(self) -> int:
        return max(self.tables.values(), default=0)


def _nft_index(run: Runner) -> _NftIndex:
    idx = _NftIndex()
    r = run(["nft", "-j", "list", "ruleset"], None)
    if r.returncode == NOT_INSTALLED:
        return idx  # no nft: nothing of nf_tables can be listed or removed here
    if r.returncode != 0:
        # Without the listing nothing can be checked, and nothing is removed.
        raise CaptureRefused(f"nft -j list ruleset failed: {r.stderr.strip()}")
    try:
        items = json.loads(r.stdout or "{}").get("nftables", [])
    except (ValueError, AttributeError) as exc:
        raise CaptureRefused(f"nft -j list ruleset printed something unexpected ({exc})") from None
    for item in items:
        for key, obj in item.items():
            if key == "table":
                idx.tables[(obj["family"], obj["name"])] = int(obj["handle"])
            elif key == "chain":
                idx.chains[(obj["family"], obj["table"], obj["name"])] = obj
            elif key == "rule":
                c = (obj["family"], obj["table"], obj["chain"])
                idx.rules[c] = idx.rules.get(c, 0) + 1
            elif isinstance(obj, dict) and "table" in obj and "family" in obj:
                t = (obj["family"], obj["table"])
                idx.others[t] = idx.others.get(t, 0) + 1
    return idx


def _table_listing(run: Runner, family: str, name: str) -> str:
    r = run(["nft", "list", "table", family, name], None)
    return r.stdout if r.returncode == 0 else ""


def _begin(p: Plan, netns: str | None) -> State:
    """Refuse while another run's objects may exist here; otherwise create this run's state file."""
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The lock makes "no other run here" and "this run's file exists" one step for concurrent starts.
    with open(STATE_DIR / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _begin_locked(p, netns)


def _begin_locked(p: Plan, netns: str | None) -> State:
    for st in states(netns):
        if st.alive():
            raise CaptureRefused(f"another capture (pid {st.pid}, {st.tag}) is running here; wait for it to end")
        raise CaptureRefused(
            f"capture {st.tag} (pid {st.pid}) ended without removing its rules "
            f"({len(st.owned)} objects, recorded in {st.path});\nremove them with: "
            "reportgen capture --cleanup" + (f" --netns {netns}" if netns else "")
        )
    key = f"ns-{netns}" if netns else "host"
    st = State(STATE_DIR / f"{key}.{p.run_id}.json", os.getpid(), process_start(os.getpid()), netns, p.tag, p.run_id)
    st.save()
    return st


def _add(run: Runner, step: Step, st: State, idx: _NftIndex) -> _NftIndex:
    """Record, then create, then record the handles of one step; return the index after it."""
    if step.table:
        fam, name = step.table
        st.owned.append(Owned("table", family=fam, name=name, floor=idx.floor))
        st.save()
        r = run(list(step.add), step.nft_body)
        if r.returncode != 0:
            raise CaptureRefused(f"nft -f - (table {fam} {name}) failed: {r.stderr.strip()}")
        idx = _nft_index(run)
        st.owned[-1].handle = idx.tables.get(step.table)
        st.owned[-1].listing = _table_listing(run, fam, name)
        st.save()
        return idx
    new: list[Owned] = []
    if step.auto:
        fam, table, chain = step.auto
        if (fam, table) not in idx.tables:
            new.append(Owned("auto-table", family=fam, name=table, floor=idx.floor))
        if (fam, table, chain) not in idx.chains:
            new.append(
                Owned(
                    "auto-chain",
                    family=fam,
                    table=table,
                    name=chain,
                    floor=idx.floor,
                    table_handle=idx.tables.get((fam, table)),
                )
            )
    # The rule is recorded before it exists: deleting by its full spec is safe whether or not it got made.
    fam, table, chain = step.auto or ("", "", "")
    st.owned += [*new, Owned("rule", argv=list(step.remove), family=fam, table=table, name=chain)]
    st.save()
    r = run(list(step.add), None)
    if r.returncode != 0:
        raise CaptureRefused(f"{shlex.join(step.add[:5])} ... failed: {r.stderr.strip()}")
    if new:
        idx = _nft_index(run)
        for o in new:
            o.table_handle = idx.tables.get((fam, table))
            chain_handle = idx.chains.get((fam, table, chain), {}).get("handle")
            o.handle = o.table_handle if o.kind == "auto-table" else chain_handle
        st.save()
    return idx


def _deleted(r: subprocess.CompletedProcess[str], o: Owned) -> tuple[bool, str]:
    """(done, what happened) of a delete command, with the tool's own words when it failed."""
    if r.returncode == 0:
        return True, f"removed {o.describe()}"
    why = " ".join(r.stderr.split())[:300] or f"exit status {r.returncode}"
    return False, f"could not remove {o.describe()}: {why}"


def _remove_one(run: Runner, o: Owned, idx: _NftIndex, ours: set[tuple[str, str, str]]) -> tuple[bool, str]:
    """Remove one recorded object if it still is what was recorded. Return (done, what happened).

    ``ours``: the nf_tables chains (family, table, chain) that still hold a rule of this run which could
    not be removed; such a chain, and its table, is not empty because of someone else, so it is kept
    for a later ``--cleanup`` instead of being given up as "in use"."""
    if o.kind == "rule":
        r = run(o.argv, None)
        if r.returncode == 0:
            return True, f"removed {o.describe()}"
        if o.family and (o.family, o.table, o.name) not in idx.chains:
            return True, ""  # its nf_tables chain does not exist, so neither does the rule
        check = [("-C" if a == "-D" else a) for a in o.argv]
        if run(check, None).returncode == XT_NO_SUCH_RULE:
            return True, ""  # never created, or already gone
        return _deleted(r, o)
    if o.kind == "table":
        handle = idx.tables.get((o.family, o.name))
        if handle is None:
            return True, ""
        if o.handle is not None and handle != o.handle:
            return True, f"left {o.describe()}: it was replaced by another table of that name"
        if o.listing and _table_listing(run, o.family, o.name) != o.listing:
            return False, f"kept {o.describe()}: it changed since capture created it; check it and delete it by hand"
        return _deleted(run(["nft", "delete", "table", o.family, "handle", str(handle)], None), o)
    if o.kind == "auto-chain":
        chain = idx.chains.get((o.family, o.table, o.name))
        if chain is None:
            return True, ""
        thandle = idx.tables[(o.family, o.table)]
        same_table = thandle == o.table_handle if o.table_handle is not None else thandle > o.floor
        if not same_table or (o.handle is not None and chain.get("handle") != o.handle):
            return True, f"left {o.describe()}: it is not the chain capture created"
        if (o.family, o.table, o.name) in ours:
            return False, f"kept {o.describe()}: capture's own rule in it could not be removed"
        hook = _XT_HOOK.get(o.name)
        if idx.rules.get((o.family, o.table, o.name)) or chain.get("policy") != "accept" or chain.get("hook") != hook:
            # Someone uses the chain now (a rule, a policy): it is theirs; the record is dropped.
            return True, f"left {o.describe()}: it now has rules or a policy capture did not give it"
        return _deleted(run(["nft", "delete", "chain", o.family, o.table, "handle", str(chain["handle"])], None), o)
    # auto-table
    handle = idx.tables.get((o.family, o.name))
    if handle is None:
        return True, ""
    if handle != o.handle if o.handle is not None else handle <= o.floor:
        return True, f"left {o.describe()}: it is not the table capture created"
    t = (o.family, o.name)
    if any(c[:2] == t for c in ours):
        return False, f"kept {o.describe()}: a chain or rule of capture's in it could not be removed"
    if any(c[:2] == t for c in idx.chains) or idx.others.get(t):
        return True, f"left {o.describe()}: it now holds chains or sets capture did not make"
    return _deleted(run(["nft", "delete", "table", o.family, "handle", str(handle)], None), o)


def remove_owned(run: Runner, st: State) -> tuple[list[str], list[str]]:
    """Remove a run's objects, newest first; signals wait until removal ends. Return (removed, kept)."""
    removed: list[str] = []
    kept: list[str] = []
    with deferred_signals():
        idx = _nft_index(run)
        stale = False  # the index no longer shows the ruleset (something was removed since it was read)
        remaining: list[Owned] = []
        ours: set[tuple[str, str, str]] = set()
        # Newest first: a rule goes before the chain and table made for it.
        for o in reversed(st.owned):
            if stale and o.kind != "rule":
                idx, stale = _nft_index(run), False
            done, what = _remove_one(run, o, idx, ours)
            if not done:
                remaining.insert(0, o)
                kept.append(what)
                if o.kind in ("rule", "auto-chain") and o.family:
                    ours.add((o.family, o.table, o.name))
            elif what:
                removed.append(what)
                stale = True
        st.owned = remaining
        if remaining:
            st.save()
        else:
            st.path.unlink(missing_ok=True)
    return removed, kept


@dataclass
class CleanupResult:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)


def cleanup(run: Runner, netns: str | None = None) -> CleanupResult:
    """Remove what earlier runs recorded and did not remove; runs still alive are left alone."""
    require_root()
    res = CleanupResult()
    gone = netns is not None and netns not in list_namespaces()
    for st in states(netns):
        if st.alive():
            res.running.append(f"capture {st.tag} (pid {st.pid}) is still running; not touched")
            continue
        if gone:
            # A namespace takes its ruleset with it when it is deleted.
            st.path.unlink(missing_ok=True)
            res.removed.append(f"namespace {netns} no longer exists; the {len(st.owned)} objects went with it")
            continue
        removed, kept = remove_owned(run, st)
        res.removed += removed
        res.kept += kept
    for path in _stale_writes(netns):
        path.unlink(missing_ok=True)
        res.removed.append(f"removed {path.name}: an unfinished state write of a killed run")
    return res


def _left_behind(st: State, netns: str | None) -> str:
    """What to do about objects a run could not remove; its state file still records them."""
    return f"they are recorded in {st.path}; after checking them, remove them with: reportgen capture --cleanup" + (
        f" --netns {netns}" if netns else ""
    )


def apply(p: Plan, run: Runner, out: Path, command: list[str], netns: str | None) -> Path:
    """Add the rules, run the command (or wait for Ctrl-C), read the lines, remove the rules, write a case."""
    from reportgen.snapshot import collect

    require_root()
    if not p.steps:
        raise CaptureRefused("there is nothing to add here; the notes above say why")
    klog = KernelLog(p.tag)  # before the state file: if /dev/kmsg cannot be read, nothing is left behind
    st = _begin(p, netns)
    mon: TraceMonitor | None = None
    lines: list[str] = []
    trace_lines: list[str] = []
    lost: str | None = None
    ran: list[float] = []  # the monitor's start and end, CLOCK_MONOTONIC (the kernel log's clock, lost.slack)
    kept: list[str] = []
    status = 0
    try:
        with signals_as_exit():
            idx = _nft_index(run)
            for step in p.steps:
                with deferred_signals():
                    idx = _add(run, step, st, idx)
            if p.monitor:
                full = ["ip", "netns", "exec", netns, *p.monitor] if netns else p.monitor
                try:
                    mon = TraceMonitor(full)
                except MonitorFailed as exc:
                    raise CaptureRefused(f"the trace monitor did not start: {exc}") from None
                ran.append(time.monotonic())
            if command:
                full = ["ip", "netns", "exec", netns, *command] if netns else command
                status = subprocess.run(full, check=False).returncode
            else:
                print("capturing; press Ctrl-C to stop", file=sys.stderr)
                try:
                    while True:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
            lines = klog.read(p.tag)
    finally:
        # A refusal raised here replaces a KeyboardInterrupt or SystemExit in flight (the first signal,
        # or one deferred during removal): "interrupted; the rules it added were removed" would be false.
        try:
            with deferred_signals():
                if mon is not None:
                    trace_lines = mon.stop().splitlines()
                    ran.append(time.monotonic())
                    lost = mon.lost
                klog.close()
                kept = remove_owned(run, st)[1]
        except CaptureRefused as exc:
            raise CaptureRefused(f"{exc}\n{_left_behind(st, netns)}") from None
        finally:
            # Also when a signal deferred during removal is raised as the block ends.
            if kept:
                raise CaptureRefused(
                    "capture ended, but some objects were left in place:\n  "
                    + "\n  ".join(kept)
                    + "\n"
                    + _left_behind(st, netns)
                )
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "dmesg.log", "".join(ln + "\n" for ln in lines))
    traces = ["dmesg.log"]
    if p.monitor:
        write_atomic(out / "nft-monitor-trace.txt", "".join(ln + "\n" for ln in trace_lines))
        traces.append("nft-monitor-trace.txt")
    snap = collect(out, runner=lambda argv: run(argv, None))
    manifest = {
        "title": f"Capture {p.tag}",
        "description": f"Captured with reportgen capture; command: {shlex.join(command) if command else '(Ctrl-C)'}"
        f" (exit status {status}).",
        "trace": traces,
        "snapshots": snap["snapshots"],
        "attachments": snap["attachments"],
        "capture": {"tag": p.tag, "missing": snap["missing"]},
    }
    notes = []
    if lost:
        # The report must not read a partial trace as the whole story: the case says what is missing, and
        # when (explain/lost.py marks each conversation of that time). A drop counter does not say which
        # events went, so the whole time the monitor ran is named.
        start, end = (ran[0], ran[1]) if len(ran) == 2 else (None, None)
        notes.append(MonitorLoss(lost, traces[-1], start, end).note())
    if klog.overwritten:
        notes.append(
            f"The kernel log overwrote records before capture read them ({klog.overwritten} gaps): lines of "
            "dmesg.log may be missing."
        )
    if notes:
        manifest["notes"] = notes
        for note in notes:
            print(f"reportgen capture: {note}", file=sys.stderr)
    write_atomic(out / "case.yaml", yaml.safe_dump(manifest, sort_keys=False))
    return out
