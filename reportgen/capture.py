"""``reportgen capture``: add logging rules on a user's host, run traffic, read the lines, remove them.

Safety rules, in order of importance:
* By default nothing is changed: the rules are printed. ``--apply`` changes the ruleset.
* Only rules are added (``-I`` at the top of built-in chains, or dedicated nft tables); no existing rule
  or policy is touched, and every added rule is removed again, also on error or signal.
* Every rule carries a run prefix ``rcXX `` (and, for iptables, the comment ``reportgen-capture``), so
  ``reportgen capture --cleanup`` can find leftovers of a run that was killed with SIGKILL.
* A run refuses to start while leftovers exist.
Prefixes stay within 29 bytes: the limit of iptables/ebtables log prefixes (xt_log_info.prefix[30],
EBT_LOG_PREFIX_SIZE 30); iptables-nft silently cuts longer ones.
"""

from __future__ import annotations

import re
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

MARK_COMMENT = "reportgen-capture"
STATE_DIR = Path("/run/reportgen-capture")
# ebtables has no comment match, so its capture rules are known by the run prefix "rcXX ".
EBT_MARK = re.compile(r'--log-prefix "rc[0-9a-f]{2} ')
# (save command, tool that deletes, how a capture rule is recognised in the save output)
_SAVES = tuple((f"{fam}tables-{be}-save", f"{fam}tables-{be}", lambda ln: MARK_COMMENT in ln)
               for be in ("nft", "legacy") for fam in ("ip", "ip6")) + \
    (("ebtables-save", "ebtables", lambda ln: bool(EBT_MARK.search(ln))),)
NFT_TABLES = (("inet", "reportgen_capture"), ("bridge", "reportgen_capture"), ("inet", "reportgen_trace"))
BACKENDS = ("iptables-nft", "iptables-legacy", "ebtables", "nft-log", "nft-trace")
IPT_HOOKS = (("raw", "PREROUTING"), ("mangle", "PREROUTING"), ("nat", "PREROUTING"), ("mangle", "INPUT"),
             ("filter", "INPUT"), ("nat", "INPUT"), ("mangle", "FORWARD"), ("filter", "FORWARD"),
             ("raw", "OUTPUT"), ("mangle", "OUTPUT"), ("nat", "OUTPUT"), ("filter", "OUTPUT"),
             ("mangle", "POSTROUTING"), ("nat", "POSTROUTING"))
EBT_HOOKS = (("nat", "PREROUTING"), ("filter", "INPUT"), ("filter", "FORWARD"), ("nat", "OUTPUT"),
             ("filter", "OUTPUT"), ("nat", "POSTROUTING"))
# nft base chains standing for the iptables tables: nft(8) "CHAIN PRIORITIES".
NFT_INET = (("raw", "prerouting", "PREROUTING", "filter", -300), ("mangle", "prerouting", "PREROUTING", "filter", -150),
            ("nat", "prerouting", "PREROUTING", "nat", -100), ("mangle", "input", "INPUT", "filter", -150),
            ("filter", "input", "INPUT", "filter", 0), ("mangle", "forward", "FORWARD", "filter", -150),
            ("filter", "forward", "FORWARD", "filter", 0), ("raw", "output", "OUTPUT", "filter", -300),
            ("mangle", "output", "OUTPUT", "filter", -150), ("filter", "output", "OUTPUT", "filter", 0),
            ("mangle", "postrouting", "POSTROUTING", "filter", -150),
            ("nat", "postrouting", "POSTROUTING", "nat", 100))
NFT_BRIDGE = (("nat", "prerouting", "PREROUTING", -300), ("filter", "input", "INPUT", -200),
              ("filter", "forward", "FORWARD", -200), ("nat", "output", "OUTPUT", 100),
              ("nat", "postrouting", "POSTROUTING", 300))


class CaptureRefused(RuntimeError):
    """Capture will not start (leftover rules, bad options)."""


@dataclass(frozen=True)
class Filter:
    host: str | None = None
    proto: str | None = None
    port: int | None = None
    rate: str = "20/second"

    def ipt(self, v6: bool) -> list[list[str]]:
        """Match sets for iptables: one per direction when a host is given."""
        base: list[str] = []
        if self.proto:
            base += ["-p", "ipv6-icmp" if (v6 and self.proto == "icmp") else self.proto]
            if self.port and self.proto in ("tcp", "udp"):
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
            if self.host and (":" in self.host) != (fam == "6"):
                continue
            base = ["-p", "IPv4" if fam == "4" else "IPv6"]
            if self.proto:
                key = "--ip-proto" if fam == "4" else "--ip6-proto"
                base += [key, "ipv6-icmp" if (fam == "6" and self.proto == "icmp") else self.proto]
            variants = [base]
            if self.port and self.proto in ("tcp", "udp"):
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
        """Match expressions for nft, one rule each (nft has no "or" inside one rule)."""
        hosts = [""]
        if self.host:
            fam = "ip6" if ":" in self.host else "ip"
            hosts = [f"{fam} saddr {self.host}", f"{fam} daddr {self.host}"]
        proto = ""
        if self.proto:
            proto = "meta l4proto " + ("{ icmp, ipv6-icmp }" if self.proto == "icmp" else self.proto)
        ports = [""]
        if self.port and self.proto in ("tcp", "udp"):
            ports = [f"th dport {self.port}", f"th sport {self.port}"]
        limit = f"limit rate {self.rate} burst 50 packets"
        return [" ".join(x for x in (h, proto, pt, limit) if x) for h in hosts for pt in ports]


@dataclass
class Plan:
    """The commands a capture runs to add its rules, and those that remove them."""

    tag: str
    add: list[list[str]]
    remove: list[list[str]]
    monitor: list[str] | None = None

    def show(self) -> str:
        lines = [f"# reportgen capture {self.tag}: rules to add (--apply runs them, then removes them)"]
        for c in self.add:
            lines.append(f"nft -f - <<'EOF'\n{c[3]}\nEOF" if c[:3] == ["nft", "-f", "-"] else shlex.join(c))
        if self.monitor:
            lines.append("# trace events are read with: " + shlex.join(self.monitor))
        lines.append("# removal:")
        lines += [shlex.join(c) for c in self.remove]
        return "\n".join(lines) + "\n"


def plan(backends: list[str], flt: Filter, tag: str | None = None, families: tuple[str, ...] = ("4", "6")) -> Plan:
    """Build the add/remove commands for the chosen backends."""
    tag = tag or "rc" + secrets.token_hex(1)
    add: list[list[str]] = []
    remove: list[list[str]] = []
    monitor = None
    for be in backends:
        if be in ("iptables-nft", "iptables-legacy"):
            suffix = "-legacy" if be == "iptables-legacy" else "-nft"
            for fam in families:
                tool = ("iptables" if fam == "4" else "ip6tables") + suffix
                word = "IPT" if fam == "4" else "IP6T"
                for table, chain in IPT_HOOKS:
                    for m in flt.ipt(fam == "6"):
                        spec = [*m, "-m", "comment", "--comment", MARK_COMMENT, "-j", "LOG",
                                "--log-prefix", f"{tag} {word}:{table}:{chain} "]
                        add.append([tool, "-t", table, "-I", chain, *spec])
                        remove.append([tool, "-t", table, "-D", chain, *spec])
        elif be == "ebtables":
            for table, chain in EBT_HOOKS:
                for m in flt.ebt(families):
                    spec = [*m, "--log", "--log-ip", "--log-ip6", "--log-prefix", f"{tag} EB:{table}:{chain}",
                            "--limit", flt.rate]
                    add.append(["ebtables", "-t", table, "-I", chain, *spec])
                    remove.append(["ebtables", "-t", table, "-D", chain, *spec])
        elif be == "nft-log":
            body = ["table inet reportgen_capture {"]
            for i, (table, hook, chain, ctype, prio) in enumerate(NFT_INET):
                rules = "; ".join(f"{m} log prefix \"{tag} nft:{table}:{chain} \"" for m in flt.nft())
                body.append(f"  chain c{i} {{ type {ctype} hook {hook} priority {prio}; policy accept; {rules}; }}")
            body.append("}")
            body.append("table bridge reportgen_capture {")
            for i, (table, hook, chain, prio) in enumerate(NFT_BRIDGE):
                rules = "; ".join(f"{m} log prefix \"{tag} br:{table}:{chain} \"" for m in flt.nft())
                body.append(f"  chain b{i} {{ type filter hook {hook} priority {prio}; policy accept; {rules}; }}")
            body.append("}")
            add.append(["nft", "-f", "-", "\n".join(body)])
            remove += [["nft", "delete", "table", "inet", "reportgen_capture"],
                       ["nft", "delete", "table", "bridge", "reportgen_capture"]]
        elif be == "nft-trace":
            # A dedicated table at priority -350, before raw (-300), marks packets for tracing
            # (nft(8): "meta nftrace set 1"); events are read with nft monitor trace.
            pre = "; ".join(f"{m} meta nftrace set 1" for m in flt.nft())
            trace_body = ("table inet reportgen_trace {\n"
                    f"  chain pre {{ type filter hook prerouting priority -350; policy accept; {pre}; }}\n"
                    f"  chain out {{ type filter hook output priority -350; policy accept; {pre}; }}\n}}")
            add.append(["nft", "-f", "-", trace_body])
            remove.append(["nft", "delete", "table", "inet", "reportgen_trace"])
            monitor = ["nft", "monitor", "trace"]
        else:
            raise CaptureRefused(f"unknown backend {be!r}; choose from {', '.join(BACKENDS)}")
    return Plan(tag, add, list(reversed(remove)), monitor)


Runner = Callable[[list[str], str | None], "subprocess.CompletedProcess[str]"]


def local_runner(netns: str | None) -> Runner:
    def run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        full = ["ip", "netns", "exec", netns, *argv] if netns else argv
        return subprocess.run(full, capture_output=True, text=True, check=False, input=stdin, timeout=60)

    return run


def _exec(run: Runner, cmd: list[str]) -> subprocess.CompletedProcess[str]:
    if cmd[:3] == ["nft", "-f", "-"]:
        return run(cmd[:3], cmd[3])
    return run(cmd, None)


def _marked_rules(run: Runner) -> Iterator[tuple[str, str, str]]:
    """Yield (tool, table, "-A ..." line) for every capture rule present, from the save outputs."""
    for save, tool, marked in _SAVES:
        r = run([save], None)
        if r.returncode != 0:
            continue
        table = None
        for ln in r.stdout.splitlines():
            if ln.startswith("*"):
                table = ln[1:]
            elif ln.startswith("-A ") and table and marked(ln):
                yield tool, table, ln


def _capture_tables(run: Runner) -> list[tuple[str, str]]:
    r = run(["nft", "list", "tables"], None)
    return [(fam, name) for fam, name in NFT_TABLES if r.returncode == 0 and f"table {fam} {name}" in r.stdout]


def leftovers(run: Runner) -> list[str]:
    """Describe capture rules still present (from a run that did not clean up)."""
    found = [f"{tool}: {ln}" for tool, _, ln in _marked_rules(run)]
    return found + [f"nft: table {fam} {name}" for fam, name in _capture_tables(run)]


def cleanup(run: Runner, netns: str | None = None) -> list[str]:
    """Remove every rule and table any capture run added; return what was removed."""
    removed: list[str] = []
    for tool, table, ln in list(_marked_rules(run)):
        args = shlex.split(ln)
        args[0] = "-D"
        if run([tool, "-t", table, *args], None).returncode == 0:
            removed.append(f"{tool} -t {table} {ln}")
    for fam, name in _capture_tables(run):
        run(["nft", "delete", "table", fam, name], None)
        removed.append(f"nft table {fam} {name}")
    removed += _restore_state(run, netns)
    return removed


_NFT_TABLE = re.compile(r"^table (\S+) (\S+) \{")
_NFT_CHAIN = re.compile(r"^\s*chain (\S+) \{")


def nft_chains(run: Runner) -> set[tuple[str, str, str]]:
    """Every (family, table, chain) in the nf_tables ruleset, and (family, table, "") per table."""
    r = run(["nft", "list", "chains"], None)
    out: set[tuple[str, str, str]] = set()
    table: tuple[str, str] | None = None
    for ln in r.stdout.splitlines() if r.returncode == 0 else []:
        m = _NFT_TABLE.match(ln)
        if m:
            table = (m.group(1), m.group(2))
            out.add((*table, ""))
            continue
        c = _NFT_CHAIN.match(ln)
        if c and table:
            out.add((*table, c.group(1)))
    return out


def _state_file(netns: str | None) -> Path:
    return STATE_DIR / f"{netns or 'root'}.chains"


def _save_state(run: Runner, netns: str | None) -> None:
    """Remember which nf_tables chains existed, so chains that iptables-nft/ebtables-nft create on
    demand for our rules (an empty raw table, a nat INPUT chain) can be removed again."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    f = _state_file(netns)
    if not f.exists():
        f.write_text("\n".join(sorted("\t".join(c) for c in nft_chains(run))) + "\n")


def _restore_state(run: Runner, netns: str | None) -> list[str]:
    f = _state_file(netns)
    if not f.exists():
        return []
    before = {tuple(ln.split("\t")) for ln in f.read_text().splitlines() if ln}
    removed = []
    now = nft_chains(run)
    for fam, table, chain in sorted(now - before, key=lambda c: c[2] == ""):
        if chain:
            listing = run(["nft", "list", "chain", fam, table, chain], None).stdout
            body = [ln for ln in listing.splitlines()[2:] if ln.strip() not in ("}", "") and
                    not ln.strip().startswith("type ")]
            if not body and run(["nft", "delete", "chain", fam, table, chain], None).returncode == 0:
                removed.append(f"nft chain {fam} {table} {chain}")
    for fam, table, chain in sorted(nft_chains(run) - before):
        empty = not chain and not any(c[0] == fam and c[1] == table and c[2] for c in nft_chains(run))
        if empty and run(["nft", "delete", "table", fam, table], None).returncode == 0:
            removed.append(f"nft table {fam} {table}")
    f.unlink(missing_ok=True)
    return removed


def apply(p: Plan, run: Runner, out: Path, command: list[str], netns: str | None) -> Path:
    """Add the rules, run the command (or wait for Ctrl-C), read the lines, remove the rules, write a case."""
    from reportgen.lab.netns import KernelLog, signals_as_exit
    from reportgen.snapshot import collect

    left = leftovers(run)
    if left:
        raise CaptureRefused("capture rules from an earlier run are still present:\n  " + "\n  ".join(left[:10]) +
                             "\nremove them with: reportgen capture --cleanup" +
                             (f" --netns {netns}" if netns else ""))
    out.mkdir(parents=True, exist_ok=True)
    _save_state(run, netns)
    klog = KernelLog()
    mon: subprocess.Popen[str] | None = None
    trace_lines: list[str] = []
    added: list[list[str]] = []
    status = 0
    with signals_as_exit():
        try:
            for cmd in p.add:
                r = _exec(run, cmd)
                if r.returncode != 0:
                    raise CaptureRefused(f"{shlex.join(cmd[:6])} ... failed: {r.stderr.strip()}")
                added.append(cmd)
            if p.monitor:
                full = ["ip", "netns", "exec", netns, *p.monitor] if netns else p.monitor
                mon = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                time.sleep(0.3)
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
            for cmd in p.remove:
                _exec(run, cmd)
            _restore_state(run, netns)
            klog.close()
            if mon is not None:
                mon.terminate()
                try:
                    trace_lines = (mon.communicate(timeout=5)[0] or "").splitlines()
                except subprocess.TimeoutExpired:
                    mon.kill()
    (out / "dmesg.log").write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
    traces = ["dmesg.log"]
    if p.monitor:
        (out / "nft-monitor-trace.txt").write_text("".join(ln + "\n" for ln in trace_lines), encoding="utf-8")
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
    (out / "case.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return out
