"""`reportgen capture` as root: it owns only what it created, refuses hostile values, survives signals.

Every test works in a network namespace of its own (``ip netns exec``), so the root namespace's
firewall is never touched. Each capture is bounded by timeouts and the namespace is deleted in
``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LAB_MARKS

from reportgen import capture
from reportgen.cli import main as cli_main
from reportgen.lab.netns import deferred_signals, owner_alive, process_start, write_atomic


def root(test):  # type: ignore[no-untyped-def]
    """Mark a test that needs root and the lab's tools; it works in a namespace of its own."""
    for mark in LAB_MARKS:
        test = mark(test)
    return test


ALL_BACKENDS = ("iptables-nft", "iptables-legacy", "ebtables", "nft-log", "nft-trace")


def sh(ns: str, *argv: str, stdin: str | None = None, check: bool = True) -> str:
    r = subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, input=stdin, timeout=30, check=False
    )
    assert not check or r.returncode == 0, (argv, r.stderr)
    return r.stdout


def ruleset(ns: str) -> dict[str, str]:
    """Everything a capture could change in a namespace, without counters and timestamps: the nf_tables
    ruleset (iptables-nft, ebtables-nft, nft), the x_tables rules and which x_tables tables exist."""
    out = {"nft": sh(ns, "nft", "list", "ruleset")}
    for save in ("iptables-legacy-save", "ip6tables-legacy-save"):
        out[save] = "\n".join(ln for ln in sh(ns, save).splitlines() if not ln.startswith("#"))
    for names in ("ip_tables_names", "ip6_tables_names"):
        out[names] = " ".join(sorted(sh(ns, "cat", f"/proc/net/{names}").split()))
    return {k: re.sub(r"\[\d+:\d+\]|counter packets \d+ bytes \d+", "", v) for k, v in out.items()}


def tables(text: str) -> dict[str, str]:
    """An `nft list ruleset` cut into its tables (their order is creation order, which may differ)."""
    return {m.group(1): m.group(0) for m in re.finditer(r"^(table \S+ \S+) \{\n.*?^\}$", text, re.S | re.M)}


def run_states(ns: str) -> list[Path]:
    return [p for p in capture.STATE_DIR.glob("*.json") if json.loads(p.read_text()).get("netns") == ns]


def ns_procs(ns: str) -> list[str]:
    """Command lines of the processes inside a namespace."""
    out = []
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False, timeout=30)
    for pid in pids.stdout.split():
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
        except OSError:
            continue
    return out


@pytest.fixture()
def ns() -> Iterator[str]:
    """A namespace with an admin's own rules in every backend, deleted afterwards."""
    name = f"rgcap-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        sh(name, "ip", "link", "set", "lo", "up")
        sh(name, "iptables-nft", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
        sh(name, "ip6tables-nft", "-P", "FORWARD", "DROP")
        sh(name, "iptables-legacy", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
        sh(name, "iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "RETURN")
        sh(name, "ebtables", "-A", "FORWARD", "-p", "ARP", "-j", "ACCEPT")
        sh(
            name,
            "nft",
            "-f",
            "-",
            stdin="table inet admin {\n  chain input { type filter hook input priority 10; "
            "policy accept; tcp dport 443 accept; }\n}\n",
        )
        yield name
    finally:
        for pid in subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, check=False, timeout=30
        ).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        for p in run_states(name):
            p.unlink()
        for p in capture.STATE_DIR.glob(f".ns-{name}.*.tmp"):  # writes a SIGKILLed test run left
            p.unlink()
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def reportgen(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reportgen", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_capture(ns: str, backend: str, out: Path) -> subprocess.Popen[str]:
    """Start a capture running `sleep 30` and return once its rules are all in place."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reportgen",
            "capture",
            "--apply",
            "--netns",
            ns,
            "--backend",
            backend,
            "-o",
            str(out),
            "--",
            "sleep",
            "30",
        ],
        # Files, not pipes: after SIGKILL the command (sleep) would hold a pipe open for 30 s.
        stdout=subprocess.DEVNULL,
        stderr=(out.parent / "capture.err").open("w"),
        text=True,
        start_new_session=True,
        # As at a terminal, where Ctrl-C reaches a foreground job: a runner that ignores SIGINT (a
        # shell's background job, nohup) would pass that on, and the capture could not be interrupted.
        preexec_fn=_sigint_default,
    )
    deadline = time.monotonic() + 60
    while not any(c.startswith("sleep 30") for c in ns_procs(ns)):
        assert proc.poll() is None, (out.parent / "capture.err").read_text()
        assert time.monotonic() < deadline, "the capture did not start its command"
        time.sleep(0.05)
    return proc


SIGNALS = ("SIGKILL", "SIGINT", "SIGINT-twice", "SIGTERM")


@root
@pytest.mark.parametrize("how", SIGNALS)
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_killed_capture_leaves_ruleset_as_before(ns: str, tmp_path: Path, backend: str, how: str):
    before = ruleset(ns)
    proc = start_capture(ns, backend, tmp_path / "case")
    try:
        assert ruleset(ns) != before, "the capture added nothing"
        if how == "SIGKILL":
            proc.kill()
        elif how == "SIGTERM":
            proc.terminate()
        else:
            # Ctrl-C at a terminal: SIGINT to the whole foreground process group.
            os.killpg(proc.pid, signal.SIGINT)
            if how == "SIGINT-twice":
                time.sleep(0.15)  # removal of the ~60 rules and chains takes about a second
                os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
        assert ruleset(ns) != before
        deadline = time.monotonic() + 5
        while any(c.startswith("nft monitor") for c in ns_procs(ns)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(c.startswith("nft monitor") for c in ns_procs(ns)), "nft monitor outlived its parent"
        again = reportgen(
            "capture", "--apply", "--netns", ns, "--backend", backend, "-o", str(tmp_path / "d"), "--", "true"
        )
        assert again.returncode == 4 and "--cleanup" in again.stderr, again.stderr
        clean = reportgen("capture", "--cleanup", "--netns", ns)
        assert clean.returncode == 0, clean.stdout + clean.stderr
    # What the host is left with first: a failure of the exit code alone (seen under load: -2 after
    # SIGINT twice) must still say whether the rules were removed.
    assert ruleset(ns) == before
    assert run_states(ns) == []
    if how != "SIGKILL":
        assert proc.returncode == (143 if how == "SIGTERM" else 130)


# Runs a capture that SIGKILLs itself right before or right after its k-th add command.
KILL_AT = """
import os, signal, sys
from pathlib import Path
from reportgen import capture as cp
ns, k, when, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
inner = cp.local_runner(ns)
count = 0
def run(argv, stdin=None):
    global count
    adding = "-I" in argv or argv[:2] == ["nft", "-f"]
    count += adding
    if adding and count == k and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = inner(argv, stdin)
    if adding and count == k and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return result
plan = cp.plan(list(cp.BACKENDS), cp.Filter(), legacy_tables=cp.legacy_tables(inner))
cp.apply(plan, run, out, ["true"], ns)
"""


@root
@pytest.mark.parametrize("when", ("before", "after"))
def test_sigkill_while_adding_then_cleanup(ns: str, tmp_path: Path, when: str):
    """Killed just before or just after any object is made, a capture's state file still names it."""
    before = ruleset(ns)
    for k in (1, 2, 29, 36, 42, 44):  # iptables-nft (28 rules), legacy (7), ebtables (6), the nft tables (3)
        r = subprocess.run(
            [sys.executable, "-c", KILL_AT, ns, str(k), when, str(tmp_path / "c")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == -signal.SIGKILL, r.stderr
        assert (ruleset(ns) != before) == (when == "after" or k > 1), k
        clean = reportgen("capture", "--cleanup", "--netns", ns)
        assert clean.returncode == 0, (k, clean.stdout, clean.stderr)
        assert ruleset(ns) == before, k


# Runs a capture whose command sends it SIGINT (Ctrl-C) and whose removal commands all fail, as the
# cli does: the exception that reaches the cli decides what it tells the user.
INTERRUPTED_KEEPING = """
import sys
from pathlib import Path
from reportgen import capture as cp
ns, out = sys.argv[1], Path(sys.argv[2])
inner = cp.local_runner(ns)
def run(argv, stdin=None):
    if "-D" in argv or argv[:2] == ["nft", "delete"]:
        return cp.subprocess.CompletedProcess(argv, 1, "", "refused by the test")
    return inner(argv, stdin)
plan = cp.plan(["iptables-nft", "nft-log"], cp.Filter(), legacy_tables=None)
try:
    cp.apply(plan, run, out, ["sh", "-c", "kill -INT $PPID; sleep 5"], ns)
except cp.CaptureRefused as exc:
    print("REFUSED", exc)
except KeyboardInterrupt:
    print("INTERRUPTED")
"""


@root
def test_interrupted_capture_that_keeps_objects_says_so(ns: str, tmp_path: Path):
    """Ctrl-C, then removal fails: the user hears what was left and how to remove it, not "removed"."""
    before = ruleset(ns)
    r = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_KEEPING, ns, str(tmp_path / "c")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.stdout.startswith("REFUSED"), r.stdout + r.stderr
    assert "left in place" in r.stdout and "could not remove" in r.stdout
    assert f"reportgen capture --cleanup --netns {ns}" in r.stdout
    assert ruleset(ns) != before and run_states(ns) != []
    clean = reportgen("capture", "--cleanup", "--netns", ns)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert ruleset(ns) == before and run_states(ns) == []


@root
def test_a_late_ctrl_c_does_not_replace_the_exit_status(ns: str):
    """Once the program's status is decided, later Ctrl-Cs are ignored: at shutdown CPython resets
    Python-handled signals to SIG_DFL, and one arriving then turned "4: objects were left" into a death
    by SIGINT (seen as -2 under load). main() called in-process leaves the caller's handlers alone
    (it once set SIG_IGN in pytest itself, and later children ignored their PR_SET_PDEATHSIG SIGTERM)."""
    script = (
        "import signal, sys\n"
        "from reportgen.cli import main, run\n"
        "SIGS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)\n"
        "before = [signal.getsignal(s) for s in SIGS]\n"
        f"assert main(['capture', '--cleanup', '--netns', {ns!r}]) == 0\n"
        "print(before == [signal.getsignal(s) for s in SIGS])\n"
        f"sys.argv = ['reportgen', 'capture', '--cleanup', '--netns', {ns!r}]\n"
        "try:\n"
        "    run()\n"
        "except SystemExit as exc:\n"
        "    print(exc.code, [signal.getsignal(s) == signal.SIG_IGN for s in SIGS])\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    lines = r.stdout.splitlines()  # main's own line, then the script's, twice
    assert lines[1::2] == ["True", "0 [True, True, True]"], r.stdout + r.stderr


SHIELDED = """
import signal, sys
from reportgen.lab.netns import run
got = []
signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
print("running", flush=True)
r = run(["sleep", "1"], ns=sys.argv[1], check=False)
print(r.returncode, got)
"""


@root
def test_ctrl_c_does_not_kill_a_helper_command_half_way(ns: str):
    """A Ctrl-C (SIGINT to the whole process group) while an ip/nft/iptables command runs reaches
    reportgen once the command has ended, and never the command: one killed half-way left a chain
    behind ("exit status -2", seen under load)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SHIELDED, ns], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "running\n"
    time.sleep(0.4)  # the command is running now (sleep 1)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert out.split() == ["0", f"[{int(signal.SIGINT)}]"], out


@root
def test_cleanup_removes_unfinished_writes_of_dead_runs_only(ns: str):
    """A run SIGKILLed inside write_atomic leaves ".NAME.PID.tmp"; --cleanup removes it once its writer
    is gone (three were found left in /run/reportgen-capture by killed test runs), not a live one's."""
    proc = subprocess.Popen(["true"])  # a pid that has ended
    proc.wait()
    dead = capture.STATE_DIR / f".ns-{ns}.0123456789ab.json.{proc.pid}.tmp"
    live = capture.STATE_DIR / f".ns-{ns}.0123456789ab.json.{os.getpid()}.tmp"
    other = capture.STATE_DIR / f".ns-{ns}x.0123456789ab.json.{proc.pid}.tmp"  # another namespace's
    capture.STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        for p in (dead, live, other):
            p.write_text("{")
        clean = reportgen("capture", "--cleanup", "--netns", ns)
        assert clean.returncode == 0 and dead.name in clean.stdout, clean.stdout + clean.stderr
        assert not dead.exists() and live.exists() and other.exists()
    finally:
        for p in (dead, live, other):
            p.unlink(missing_ok=True)


@root
def test_cleanup_spares_lookalikes_and_later_admin_objects(ns: str, tmp_path: Path):
    """Rules that look like capture's, and chains an admin makes after a capture was killed, survive."""
    lookalikes = [
        (
            "iptables-nft",
            "-A",
            "INPUT",
            "-m",
            "comment",
            "--comment",
            "reportgen-capture",
            "-j",
            "LOG",
            "--log-prefix",
            "rc00 IPT:filter:INPUT ",
        ),
        ("iptables-legacy", "-A", "INPUT", "-m", "comment", "--comment", "reportgen-capture x", "-j", "ACCEPT"),
        ("ebtables", "-A", "FORWARD", "--log", "--log-prefix", "rc11 EB:filter:FORWARD"),
    ]
    for argv in lookalikes:
        sh(ns, *argv)
    sh(
        ns,
        "nft",
        "-f",
        "-",
        stdin="table inet reportgen_capture {\n  chain c0 { type filter hook input priority 0; "
        "policy accept; }\n}\ntable inet reportgen_trace {\n}\n",
    )
    proc = start_capture(ns, ",".join(ALL_BACKENDS), tmp_path / "c")
    proc.kill()
    proc.wait(timeout=10)
    # Later, the admin adds a drop-policy base chain in a new table, one in the raw table capture made, and a
    # rule in a chain capture made: none of these may go.
    later = (
        "table inet adminfw {\n  chain input { type filter hook input priority 0; policy drop; }\n}\n"
        "table ip raw {\n  chain admin_out { type filter hook output priority -300; policy drop; }\n}\n"
    )
    sh(ns, "nft", "-f", "-", stdin=later)
    sh(ns, "iptables-nft", "-t", "mangle", "-A", "FORWARD", "-j", "ACCEPT")
    clean = reportgen("capture", "--cleanup", "--netns", ns)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "left nft chain ip mangle FORWARD" in clean.stdout and "left nft table ip raw" in clean.stdout

    # The same admin actions in a namespace that never saw a capture give the same ruleset.
    twin = f"rgcap-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", twin], check=True, timeout=30)
    try:
        for argv in [
            ("iptables-nft", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"),
            ("ip6tables-nft", "-P", "FORWARD", "DROP"),
            ("iptables-legacy", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"),
            ("iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "RETURN"),
            ("ebtables", "-A", "FORWARD", "-p", "ARP", "-j", "ACCEPT"),
        ] + lookalikes:
            sh(twin, *argv)
        sh(
            twin,
            "nft",
            "-f",
            "-",
            stdin="table inet admin {\n  chain input { type filter hook input priority 10; "
            "policy accept; tcp dport 443 accept; }\n}\n",
        )
        sh(
            twin,
            "nft",
            "-f",
            "-",
            stdin="table inet reportgen_capture {\n  chain c0 { type filter hook input "
            "priority 0; policy accept; }\n}\ntable inet reportgen_trace {\n}\n",
        )
        sh(twin, "nft", "-f", "-", stdin=later)
        sh(twin, "iptables-nft", "-t", "mangle", "-A", "FORWARD", "-j", "ACCEPT")
        got, want = ruleset(ns), ruleset(twin)
    finally:
        subprocess.run(["ip", "netns", "del", twin], check=False, timeout=30)
    assert tables(got.pop("nft")) == tables(want.pop("nft"))
    assert got == want
    assert run_states(ns) == []


INJECTIONS = [
    ("--host", "1.2.3.4; flush ruleset"),
    ("--host", "1.2.3.4 } ; flush ruleset ; table inet x {"),
    ("--host", "10.0.0.0/8 -j ACCEPT"),
    ("--host", "-j"),
    ("--host", "1.2.3.4\nflush ruleset"),
    ("--host", "fe80::1%eth0; flush ruleset"),
    ("--host", "10.0.0.1/8"),
    ("--rate", "1/second; flush ruleset"),
    ("--rate", '20/second burst 5 packets log prefix "x"'),
    ("--rate", "0/second"),
    ("--port", "0"),
    ("--port", "70000"),
    ("--netns", "../../etc"),
]


@root
@pytest.mark.parametrize(("option", "value"), INJECTIONS)
def test_hostile_values_are_refused_before_anything_is_created(ns: str, tmp_path: Path, option: str, value: str):
    before = ruleset(ns)
    extra = ["--proto", "tcp"] if option == "--port" else []
    target = [] if option == "--netns" else ["--netns", ns]
    r = reportgen(
        "capture",
        "--apply",
        *target,
        *extra,
        "--backend",
        ",".join(ALL_BACKENDS),
        f"{option}={value}",
        "-o",
        str(tmp_path / "c"),
        "--",
        "true",
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("reportgen capture: error: ") and "Traceback" not in r.stderr
    assert ruleset(ns) == before and run_states(ns) == [] and not (tmp_path / "c").exists()


@root
def test_host_implies_its_family(ns: str):
    r = reportgen("capture", "--netns", ns, "--host", "172.17.0.2", "--backend", "iptables-nft,ebtables,nft-log")
    assert r.returncode == 0, r.stderr
    assert "iptables-nft -t raw -I PREROUTING -s 172.17.0.2" in r.stdout
    assert not re.search(r"ip6tables|-p IPv6|ip6 [sd]addr", r.stdout)
    assert "ip saddr 172.17.0.2" in r.stdout and "-p IPv4 --ip-src 172.17.0.2" in r.stdout
    six = reportgen("capture", "--netns", ns, "--host", "fd00:17::2", "--backend", "iptables-nft")
    assert "iptables-nft" not in six.stdout.replace("ip6tables-nft", "")
    wrong = reportgen("capture", "--host", "172.17.0.2", "--family", "6")
    assert wrong.returncode == 2 and "IPv4" in wrong.stderr


@root
def test_legacy_backend_creates_no_x_tables_table(ns: str, tmp_path: Path):
    """Only the tables the admin uses (filter, nat) get rules; raw and mangle are never created."""
    before = ruleset(ns)
    r = reportgen(
        "capture",
        "--apply",
        "--netns",
        ns,
        "--backend",
        "iptables-legacy",
        "-o",
        str(tmp_path / "c"),
        "--",
        "ping",
        "-c1",
        "-W1",
        "127.0.0.1",
    )
    assert r.returncode == 0, r.stderr
    assert "tables mangle, raw do not exist and are not used" in r.stderr
    assert ruleset(ns) == before


@root
def test_non_root_is_refused_before_anything_is_created(ns: str, tmp_path: Path, monkeypatch, capsys):
    before = ruleset(ns)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for args in (["--apply", "-o", str(tmp_path / "c"), "--", "true"], ["--cleanup"]):
        assert cli_main(["capture", "--netns", ns, *args]) == 4
        assert "need root" in capsys.readouterr().err
    assert ruleset(ns) == before and run_states(ns) == []


# -- without root: the checks themselves ---------------------------------------------------------------


@pytest.mark.parametrize(("option", "value"), INJECTIONS)
def test_filter_refuses_hostile_values(option: str, value: str):
    with pytest.raises(capture.CaptureUsage):
        if option == "--netns":
            capture.check_netns(value)
        elif option == "--port":
            capture.Filter(proto="tcp", port=int(value))
        else:
            capture.Filter(**{option.lstrip("-"): value})


def test_nft_rules_hold_only_canonical_values():
    flt = capture.Filter(host="2001:DB8:0:0::1", proto="udp", port=53, rate="5/minute")
    assert flt.host == "2001:db8::1" and flt.family == "6"
    p = capture.plan(["nft-log"], flt, tag="rc01", run_id="0123456789ab")
    body = p.steps[0].nft_body
    assert "ip6 saddr 2001:db8::1 meta l4proto udp th dport 53 limit rate 5/minute burst 50 packets" in body
    assert p.steps[0].table == ("inet", "reportgen_capture_0123456789ab")


def test_legacy_plan_uses_only_existing_tables():
    p = capture.plan(
        ["iptables-legacy"], capture.Filter(), legacy_tables={"4": frozenset({"filter"}), "6": frozenset()}
    )
    assert {s.add[2] for s in p.steps} == {"filter"} and all(s.add[0] == "iptables-legacy" for s in p.steps)
    assert any("mangle, nat, raw do not exist" in n for n in p.notes)


def test_deferred_signals_act_once_after_the_block():
    done = []
    with pytest.raises(KeyboardInterrupt), deferred_signals():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        done.append("removal finished")
    assert done == ["removal finished"]
    with pytest.raises(SystemExit) as exc, deferred_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    assert exc.value.code == 128 + signal.SIGTERM


def test_child_dies_with_its_parent(tmp_path: Path):
    """A monitor started with die_with_parent() ends when the process that started it is SIGKILLed."""
    pidfile = tmp_path / "pid"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import os, subprocess, sys, time\n"
                "from reportgen.lab.netns import die_with_parent\n"
                "p = subprocess.Popen(['sleep', '60'], preexec_fn=die_with_parent(os.getpid()))\n"
                f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
                "time.sleep(60)\n"
            ),
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        child = int(pidfile.read_text())
        start = process_start(child)
        assert owner_alive(child, start)
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while owner_alive(child, start) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not owner_alive(child, start), "the child outlived its parent"
    finally:
        parent.kill()
        parent.wait(timeout=10)


def test_write_atomic_leaves_no_temporary_file(tmp_path: Path):
    target = tmp_path / "state.json"
    write_atomic(target, "old")
    write_atomic(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_second_ctrl_c_while_unwinding_does_not_skip_the_removal():
    """The window SIGINT-twice hit under load: the first Ctrl-C ends the run, the second comes after the
    exception left signals_as_exit() but before the caller's finally entered deferred_signals()."""
    script = (
        "import os, signal, time\n"
        "from reportgen.lab.netns import deferred_signals, signals_as_exit\n"
        "try:\n"
        "    with signals_as_exit():\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(5)\n"
        "finally:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    with deferred_signals():\n"
        "        print('removed', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=_sigint_default,  # as at a terminal, also when pytest runs as a background job
    )
    assert done.stdout == "removed\n", done.stderr
    assert "KeyboardInterrupt" in done.stderr  # the run still ends as the first Ctrl-C asked
