"""Network-namespace plumbing for the lab: commands, a Docker-like host, and guaranteed tear-down.

Everything is created inside namespaces named after a per-run tag. The root namespace is only
touched for ``net.netfilter.nf_log_all_netns`` (nf_log_allowed() in net/netfilter/nf_log.c logs
other namespaces only when it is 1), and that value is restored when the last concurrent run ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR = Path("/run/reportgen-lab")
LOG_ALL_NETNS = Path("/proc/sys/net/netfilter/nf_log_all_netns")
BRIDGE_MAC = "02:42:ff:e7:b5:d2"
PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h
REQUIRED_TOOLS = ("ip", "iptables", "ip6tables", "ebtables", "nft", "conntrack", "bridge")


class LabUnavailable(RuntimeError):
    """The lab cannot run here (not root, no namespaces, a tool missing)."""


def check_available() -> None:
    """Raise LabUnavailable with the reason when this machine cannot host the lab."""
    if os.geteuid() != 0:
        raise LabUnavailable("the lab needs root (network namespaces and netfilter rules)")
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        raise LabUnavailable(
            f"missing tools: {', '.join(missing)} (apt-get install iproute2 iptables ebtables "
            "nftables conntrack bridge-utils)"
        )
    if not LOG_ALL_NETNS.exists() or not Path("/proc/sys/net/bridge").exists():
        raise LabUnavailable("this kernel lacks nf_log or br_netfilter (/proc/sys/net/bridge)")
    probe = f"rgprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise LabUnavailable(f"cannot create a network namespace: {r.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)


def run_shielded(
    argv: list[str], timeout: float = 30, input_text: str | None = None, new_session: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a helper command (ip, nft, iptables ...) that a Ctrl-C must not kill half-way.

    SIGINT/SIGTERM/SIGHUP are blocked in this thread while it runs: the child starts with them
    blocked and keeps them so (the mask survives fork and execve(2), sigprocmask(2)), and our own
    handler gets the signal as soon as the command has ended. A new session alone was not enough:
    CPython's child resets its handlers to SIG_DFL and restores its mask before exec
    (Modules/_posixsubprocess.c, child_exec), so a Ctrl-C that reached it while it was still in our
    process group killed it; seen under load as "nft delete chain ...: exit status -2", which left
    the chain in place."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, DEFERRED)
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            input=input_text,
            start_new_session=new_session,
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def run(
    args: list[str], ns: str | None = None, check: bool = True, timeout: float = 30, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, inside a namespace when ns is given; raise with its stderr when it fails."""
    full = ["ip", "netns", "exec", ns, *args] if ns else args
    r = run_shielded(full, timeout=timeout, input_text=input_text)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


@dataclass
class Lab:
    """A Docker-like host: namespaces h (host), c1, c2 (containers) and inet (the internet)."""

    tag: str = field(default_factory=lambda: free_tag())
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"rglab-{self.tag}-{role}"

    @property
    def host(self) -> str:
        return self.ns("h")

    # -- building ----------------------------------------------------------------------------------

    def build(self, published_port: bool = True, ipv6: bool = True, backend: str = "nft") -> None:
        """Create the namespaces, links, addresses, routes and Docker's rules."""
        h, c1, c2, inet = self.host, self.ns("c1"), self.ns("c2"), self.ns("inet")
        for n in (h, c1, c2, inet):
            mark_namespace(self.tag, n)
            if run(["ip", "netns", "add", n], check=False).returncode != 0:
                unmark_namespaces(self.tag, [n])  # it is not ours: another run may own that name
                raise RuntimeError(f"ip netns add {n} failed")
            self.created.append(n)
            run(["ip", "-n", n, "link", "set", "lo", "up"])
        ip = ["ip", "-n", h]
        run([*ip, "link", "add", "docker0", "type", "bridge"])
        run([*ip, "link", "set", "docker0", "address", BRIDGE_MAC])
        run([*ip, "addr", "add", "172.17.0.1/16", "dev", "docker0"])
        if ipv6:
            run([*ip, "addr", "add", "fd00:17::1/64", "dev", "docker0", "nodad"])
        run([*ip, "link", "set", "docker0", "up"])
        for idx, c in ((2, c1), (3, c2)):
            port = f"veth{self.tag}c{idx - 1}"
            run([*ip, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", c])
            run([*ip, "link", "set", port, "master", "docker0", "up"])
            # Docker derives the container MAC from its IPv4 address: 02:42 + the four bytes.
            run(["ip", "-n", c, "link", "set", "eth0", "address", f"02:42:ac:11:00:0{idx}", "up"])
            run(["ip", "-n", c, "addr", "add", f"172.17.0.{idx}/16", "dev", "eth0"])
            run(["ip", "-n", c, "route", "add", "default", "via", "172.17.0.1"])
            if ipv6:
                run(["ip", "-n", c, "addr", "add", f"fd00:17::{idx}/64", "dev", "eth0", "nodad"])
        run([*ip, "link", "add", "ens33", "type", "veth", "peer", "name", "eth0", "netns", inet])
        run([*ip, "addr", "add", "198.51.100.10/24", "dev", "ens33"])
        run([*ip, "link", "set", "ens33", "up"])
        run([*ip, "route", "add", "default", "via", "198.51.100.1"])
        run(["ip", "-n", inet, "addr", "add", "198.51.100.1/24", "dev", "eth0"])
        run(["ip", "-n", inet, "link", "set", "eth0", "up"])
        run(["ip", "-n", inet, "addr", "add", "203.0.113.10/32", "dev", "lo"])
        for key, val in (
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.bridge.bridge-nf-call-iptables", "1"),
            ("net.bridge.bridge-nf-call-ip6tables", "1"),
        ):
            run(["sysctl", "-qw", f"{key}={val}"], ns=h)
        # Docker's rules go into iptables-nft (Debian's default) or, for legacy hosts, x_tables.
        restore = "iptables-legacy-restore" if backend == "legacy" else "iptables-restore"
        run([restore], ns=h, input_text=docker_rules(published_port))
        if ipv6:
            # dockerd with "ip6tables": true installs the same chains for IPv6. Its conntrack match is
            # also what turns on IPv6 connection tracking in the namespace: an ip6tables-nft nat
            # chain alone does not, and then the nat chains never see a packet (seen in this lab).
            v6 = docker_rules(False).replace("172.17.0.0/16", "fd00:17::/64").replace("127.0.0.0/8", "::1/128")
            run(["ip6tables-restore"], ns=h, input_text=v6)

    def ports(self) -> tuple[str, str]:
        return f"veth{self.tag}c1", f"veth{self.tag}c2"

    def uplink_macs(self) -> tuple[str, ...]:
        """The MAC addresses of the uplink pair (host ens33, internet eth0): random for every run,
        since the veth pair is made without an address (drivers/net/veth.c veth_newlink:
        eth_hw_addr_random), unlike docker0 and the containers, whose addresses are fixed."""
        macs = []
        for ns, dev in ((self.host, "ens33"), (self.ns("inet"), "eth0")):
            words = run(["ip", "-n", ns, "-o", "link", "show", "dev", dev]).stdout.split()
            macs.append(words[words.index("link/ether") + 1].lower())
        return tuple(macs)

    def start(self, role: str, code: str) -> None:
        """Start a bounded Python helper (a server) inside a namespace."""
        import sys

        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(role), sys.executable, "-c", code],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),
        )
        mark_process(self.tag, p.pid)
        self.procs.append(p)

    # -- tear-down ---------------------------------------------------------------------------------

    def teardown(self) -> None:
        """Kill helpers and delete every namespace this run made (also after errors); signals wait."""
        with deferred_signals():
            self._teardown()

    def _teardown(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                p.wait(timeout=5)
        self.procs.clear()
        for n in reversed(self.created):
            run_shielded(["ip", "netns", "del", n])
        present = list_namespaces()
        unmark_namespaces(self.tag, [n for n in self.created if n not in present])
        self.created.clear()


def docker_rules(published_port: bool) -> str:
    """Return Docker's iptables rules for the default bridge (as dockerd 20-27 installs them)."""
    dnat = (
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\n"
        if published_port
        else ""
    )
    accept = (
        "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT\n"
        if published_port
        else ""
    )
    return f"""*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
{dnat}COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
{accept}-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"""


DEFERRED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_pending: list[list[int]] = []  # one list per active deferred_signals() block, innermost last
_exiting: list[bool] = []  # one flag per active signals_as_exit() block: a signal is ending the run


def _drop_signal(_signum: int, _frame: object) -> None:
    """A handler that takes a signal and does nothing. Not SIG_IGN: an ignored signal stays ignored in
    the commands started afterwards (execve(2) keeps it), a handled one is reset to the default."""


def _stop_taking_signals() -> None:
    """Inside signals_as_exit(), once a signal ends the run: take later ones and do nothing."""
    if _exiting:
        _exiting[-1] = True
        for s in DEFERRED:
            signal.signal(s, _drop_signal)


@contextlib.contextmanager
def signals_as_exit() -> Iterator[None]:
    """Turn SIGINT into KeyboardInterrupt and SIGTERM/SIGHUP into SystemExit, so finally-blocks tear
    down what a run added.

    Once a signal ends the run, later ones are dropped until the block is left: a second Ctrl-C that
    came while the exception unwound towards the caller's ``finally`` (before its deferred_signals()
    block began) skipped the removal and left rules behind (seen under load in the capture tests). A
    block that ends normally (a Ctrl-C that stopped a capture and was caught) gets its handlers back.
    SIGKILL cannot be caught, which is what the state files (``reportgen capture --cleanup``) and lab
    markers (``reportgen lab --cleanup``) are for.
    """

    def handler(signum: int, _frame: object) -> None:
        _stop_taking_signals()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    _exiting.append(False)
    old = {s: signal.signal(s, handler) for s in DEFERRED}
    try:
        yield
    except BaseException:
        if not _exiting[-1]:
            for s, h in old.items():
                signal.signal(s, h)
        raise
    else:
        for s, h in old.items():
            signal.signal(s, h)
    finally:
        _exiting.pop()


def ignore_late_signals() -> None:
    """Once a root command's outcome is decided (its objects removed or reported), ignore further
    SIGINT/SIGTERM/SIGHUP so the exit status stays the one chosen. CPython's finalisation resets
    every signal that has a Python handler to SIG_DFL (Modules/signalmodule.c, _PySignal_Fini) but
    leaves SIG_IGN alone; a second Ctrl-C arriving then would kill the process (status -2) and hide
    "4: objects were left in place" from a calling script. Nothing is started after this, so the
    inherited SIG_IGN (execve(2)) reaches no command."""
    for s in DEFERRED:
        signal.signal(s, signal.SIG_IGN)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP back until the block ends, then act on the first one.

    Removal must not stop half-way: a second Ctrl-C or a SIGTERM during it would leave rules or
    namespaces behind. Nested blocks hand their signals to the outer one.
    """
    got: list[int] = []
    _pending.append(got)

    def note(signum: int, _frame: object) -> None:
        got.append(signum)

    old = {s: signal.signal(s, note) for s in DEFERRED}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _pending.pop()
        if got and _pending:
            _pending[-1].extend(got)
        elif got:
            _stop_taking_signals()  # the run ends because of it (signals_as_exit)
            if got[0] == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + got[0])


def die_with_parent(parent: int) -> Callable[[], None]:
    """Return a preexec_fn that makes the child get SIGTERM when its parent dies (prctl(2)
    PR_SET_PDEATHSIG), so a SIGKILLed run leaves no monitor behind; exec keeps the setting."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


# include/uapi/linux/netlink.h NETLINK_NETFILTER; include/uapi/linux/netfilter/nfnetlink.h
# NFNLGRP_NFTRACE = 9, the group nft_trace_notify() sends to (net/netfilter/nf_tables_trace.c).
NETLINK_NETFILTER = 12
NFNLGRP_NFTRACE = 9
# setpriority(2): below 0 only for root; enough to be scheduled ahead of ordinary busy processes.
MONITOR_NICE = -10


# The receive buffer the monitor's trace socket gets: nft monitor's own size (nftables src/mnl.c,
# NFTABLES_NLEVENT_BUFSIZ, set with SO_RCVBUFFORCE in mnl_nft_event_listener). xtables-monitor keeps
# the default (net.core.rmem_default, 208 KiB, not settable inside a namespace); a trace event is
# charged about 1.9 KiB there (measured: 3840 bytes of rmem per ICMP packet traced with one rule event
# and one policy event), so about a hundred events fill it: one packet through kube-proxy's chains is
# forty.
MONITOR_RCVBUF = 1 << 24
SO_RCVBUFFORCE = 33  # include/uapi/asm-generic/socket.h; socket.SO_RCVBUFFORCE is missing before 3.12
SYS_PIDFD_GETFD = 438  # include/uapi/asm-generic/unistd.h, the same number on every architecture


class MonitorFailed(RuntimeError):
    """The trace monitor never subscribed to the trace group, or lost events."""


def enlarge_receive_buffer(pid: int, fd: int, size: int = MONITOR_RCVBUF) -> int:
    """Give another process's socket a larger receive buffer; return the size the kernel set.

    pidfd_getfd(2) duplicates the process's descriptor into ours (root passes its ptrace check): both
    name the same socket, so SO_RCVBUFFORCE (socket(7): CAP_NET_ADMIN may exceed rmem_max) on our copy
    sets the monitor's sk_rcvbuf, which netlink_broadcast_deliver compares with what is queued
    (net/netlink/af_netlink.c). The monitor itself and what it prints are unchanged. The kernel doubles
    the value (net/core/sock.c __sock_set_rcvbuf)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        dup = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if dup < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"pidfd_getfd: {os.strerror(err)}")
    finally:
        os.close(pidfd)
    sock = socket.socket(fileno=dup)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    finally:
        sock.close()


@dataclass(frozen=True)
class TraceSocket:
    """One of a monitor's netlink sockets that listen to the trace group."""

    fd: int  # the descriptor number in the monitor's process
    queued: int  # bytes in its receive queue
    drops: int  # messages the kernel could not queue


def _trace_sockets(pid: int) -> list[TraceSocket]:
    """The process's netfilter netlink sockets that listen to the trace group; empty while it has not
    subscribed.

    /proc/PID/net/netlink lists the sockets of the process's network namespace, one per line:
    sk, protocol, portid, groups (the first 32 groups as a bitmask, group N is bit N-1), rmem, wmem,
    dump, refcnt, drops, inode (net/netlink/af_netlink.c, netlink_seq_show). The process's own
    sockets are the inodes its /proc/PID/fd links name as socket:[INODE] (proc(5))."""
    try:
        own = {}
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                own[target[8:-1]] = int(fd.name)
        table = Path(f"/proc/{pid}/net/netlink").read_text().splitlines()[1:]
    except OSError:
        return []
    found = []
    bit = 1 << (NFNLGRP_NFTRACE - 1)
    for row in table:
        f = row.split()
        if len(f) >= 10 and f[1] == str(NETLINK_NETFILTER) and int(f[3], 16) & bit and f[9] in own:
            found.append(TraceSocket(own[f[9]], int(f[4]), int(f[8])))
    return found


def _state(pid: int) -> str:
    """A process's state letter (proc(5), /proc/PID/stat field 3: R running or runnable, S sleeping ...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


class TraceMonitor:
    """A trace monitor (xtables-monitor --trace, nft monitor trace) run as a child: started, waited for
    until it listens, and stopped once it has read every event; ``lost`` says when it missed some.

    Its output goes to an unlinked temporary file, not a pipe: a pipe nobody reads fills at 64 KiB, the
    monitor then blocks in write(2) and the kernel drops the events that no longer fit its socket.
    xtables-monitor asks the kernel for the rule of every trace event (a netlink request on a new socket
    per event, iptables/xtables-monitor.c trace_print_rule), so on a busy machine it falls behind, its
    socket fills, the kernel drops events (netlink_broadcast: ENOBUFS) and xtables-monitor exits with
    "cannot receive from nfnetlink socket: No buffer space available". Hence its trace socket gets nft
    monitor's 16 MiB buffer once it subscribed (enlarge_receive_buffer), and it runs at a raised CPU
    priority."""

    def __init__(self, argv: list[str], subscribe_timeout: float = 15.0) -> None:
        self.lost: str | None = None
        self._name = shlex.join(argv)
        # Both outlive __init__; stop() closes them.
        self._out = tempfile.TemporaryFile()  # noqa: SIM115
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self._drops = 0
        orphan_guard = die_with_parent(os.getpid())

        def preexec() -> None:
            orphan_guard()
            os.setpriority(os.PRIO_PROCESS, 0, MONITOR_NICE)

        self.proc = subprocess.Popen(
            argv, stdout=self._out, stderr=self._err, start_new_session=True, preexec_fn=preexec
        )
        try:
            self._wait_subscribed(subscribe_timeout)
        except BaseException:
            self.stop(stall_timeout=0)
            raise
        # The smallest receive buffer of its trace sockets after enlarging them; None when that failed
        # (a kernel before 5.6 has no pidfd_getfd): the monitor then keeps its own, and loses sooner.
        self.rcvbuf: int | None = None
        with contextlib.suppress(OSError):
            sizes = [enlarge_receive_buffer(self.proc.pid, s.fd) for s in _trace_sockets(self.proc.pid)]
            self.rcvbuf = min(sizes, default=None)

    def _wait_subscribed(self, timeout: float) -> None:
        """Traffic sent before the monitor subscribes is never traced: the kernel sends a trace event only
        to the sockets listening at that moment (nfnetlink_has_listeners in nft_trace_notify). A fixed
        sleep lost the first packets of a capture on a loaded machine."""
        end = time.monotonic() + timeout
        while not _trace_sockets(self.proc.pid):
            if self.proc.poll() is not None:
                raise MonitorFailed(
                    f"{self._name} ended (exit {self.proc.returncode}) before it subscribed{self._why()}"
                )
            if time.monotonic() > end:
                raise MonitorFailed(f"{self._name} did not subscribe to the trace group in {timeout:.0f} s")
            time.sleep(0.02)

    def _why(self) -> str:
        """The monitor's last line on stderr, as ": LINE" (empty when it printed none)."""
        self._err.seek(0)
        last = self._err.read().decode("utf-8", "replace").strip().splitlines()[-1:]
        return f": {last[0]}" if last else ""

    def stop(self, stall_timeout: float = 10.0, drain_limit: float = 120.0) -> str:
        """Wait until the monitor has printed every event queued on its socket, stop it, and return what it
        printed. Sets ``lost`` when the monitor ended on its own, the kernel dropped events it could not
        queue, or it stopped before reading them all (no progress for ``stall_timeout``, or still busy
        after ``drain_limit``).

        An empty receive queue is not enough: the monitor reads several events at once (one recvmsg fills
        its buffer) and then prints them, asking the kernel for each event's rule. It is done when, three
        samples in a row, its queue is empty, it sleeps (proc(5) stat state S, which it is not while it
        has work and the machine keeps it waiting for a CPU) and its output has not grown. Under load a
        queue seen empty twice ended the wait while the last events were still being printed."""
        start = time.monotonic()
        stall_end = start + stall_timeout
        idle = 0
        queued, size = -1, -1
        while idle < 3 and self.proc.poll() is None:
            socks = _trace_sockets(self.proc.pid)
            self._drops = max([self._drops, *(s.drops for s in socks)])
            now_queued, now_size = sum(s.queued for s in socks), os.fstat(self._out.fileno()).st_size
            quiet = bool(socks) and now_queued == 0 and now_size == size and _state(self.proc.pid) == "S"
            idle = idle + 1 if quiet else 0
            now = time.monotonic()
            if now_size != size or (now_queued < queued):
                stall_end = now + stall_timeout  # it is making progress
            queued, size = now_queued, now_size
            if now > stall_end or now > start + drain_limit:
                break
            time.sleep(0.05)
        if self.proc.poll() is not None:
            self.lost = f"{self._name} stopped early (exit {self.proc.returncode}){self._why()}"
        elif self._drops:
            self.lost = f"the kernel dropped {self._drops} trace events: the monitor's socket was full"
        elif idle < 3:
            self.lost = (
                f"{self._name} was stopped before it had printed every event ({queued} bytes still queued; "
                f"no progress for {stall_timeout:.0f} s, or still busy after {drain_limit:.0f} s)"
            )
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._out.seek(0)
        raw = self._out.read()
        self._out.close()
        self._err.close()
        # A rule comment may hold any bytes; the readers get text, with an undecodable byte shown as U+FFFD.
        return raw.decode("utf-8", "replace")


def process_start(pid: int) -> int:
    """The start time of a process in clock ticks since boot (proc(5), /proc/pid/stat field 22); 0 if ended.

    A pid together with its start time names one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    # A zombie (state Z) or dead (X) process has ended; only its parent has not reaped it yet.
    return 0 if fields[0] in ("Z", "X") else int(fields[19])


def owner_alive(pid: int, start: int) -> bool:
    """True when the process that wrote a marker or state file is still running."""
    return pid > 0 and process_start(pid) == start != 0


def unfinished_writes(folder: Path, pattern: str) -> list[Path]:
    """The temporary files (``pattern``, write_atomic's ".NAME.PID.tmp") of writers that are gone: a
    process killed inside write_atomic never renamed its file over the old one."""
    out = []
    for path in sorted(folder.glob(pattern)) if folder.is_dir() else []:
        pid = path.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            out.append(path)
    return out


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a torn one (also after SIGKILL):
    a temporary file in the same folder, fsync, rename(2) over the old name, fsync the folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# -- run markers --------------------------------------------------------------------------------------
# Each run keeps a marker STATE_DIR/lab-<tag>-<pid>.json, rewritten atomically under STATE_DIR/lock:
#   {"pid", "start": its start time, "orig": nf_log_all_netns before any lab run (None: not touched),
#    "namespaces": names it is about to create or created, "procs": [[pid, start], ...] it started}.
# A marker whose process is gone belongs to a run that was killed: the next run, or
# `reportgen lab --cleanup`, kills its processes, deletes its namespaces and, once no live run is
# left, puts nf_log_all_netns back to the marker's "orig" (the true original, not the 1 the killed run
# left). A live run's marker is never acted on. "<tag>.pid" and "orig" are kept for older reportgen
# versions running labs at the same time, which only know those two files.


@dataclass
class Marker:
    """A lab run's marker file."""

    path: Path
    pid: int
    start: int
    orig: str | None = None
    namespaces: list[str] = field(default_factory=list)
    procs: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Marker:
        d = json.loads(path.read_text(encoding="utf-8"))
        orig = d.get("orig")
        return cls(
            path,
            int(d["pid"]),
            int(d["start"]),
            None if orig is None else str(orig),
            [str(n) for n in d.get("namespaces", [])],
            [(int(p), int(s)) for p, s in d.get("procs", [])],
        )

    def save(self) -> None:
        data = {
            "pid": self.pid,
            "start": self.start,
            "orig": self.orig,
            "namespaces": self.namespaces,
            "procs": [list(p) for p in self.procs],
        }
        write_atomic(self.path, json.dumps(data, indent=1) + "\n")
        if not self.pidfile.exists():
            write_atomic(self.pidfile, str(self.pid))

    def alive(self) -> bool:
        return owner_alive(self.pid, self.start)

    @property
    def pidfile(self) -> Path:
        return STATE_DIR / f"{self.path.name.split('-')[1]}.pid"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _markers() -> list[Marker]:
    out = []
    for path in sorted(STATE_DIR.glob("lab-*-*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            out.append(Marker.load(path))  # written atomically: only a foreign file fails to load
    return out


def _own_marker(tag: str) -> Marker:
    """This process's marker for a run (lock held); a new one when there is none yet."""
    path = STATE_DIR / f"lab-{tag}-{os.getpid()}.json"
    if path.exists():
        return Marker.load(path)
    return Marker(path, os.getpid(), process_start(os.getpid()))


def mark_namespace(tag: str, name: str) -> None:
    """Record a namespace before it is created, so a killed run's namespaces can be found."""
    with _locked():
        m = _own_marker(tag)
        m.namespaces.append(name)
        m.save()


def mark_process(tag: str, pid: int) -> None:
    """Record a helper process a run started."""
    with _locked():
        m = _own_marker(tag)
        m.procs.append((pid, process_start(pid)))
        m.save()


def own_leftovers() -> list[str]:
    """What this process's lab runs recorded and did not undo (namespaces, or the sysctl to restore)."""
    with _locked():
        mine = [m for m in _markers() if m.pid == os.getpid()]
    return [f"namespace {n}" for m in mine for n in m.namespaces] + [
        f"net.netfilter.nf_log_all_netns (to be set back to {m.orig})" for m in mine if m.orig is not None
    ]


def unmark_namespaces(tag: str, names: list[str]) -> None:
    """Forget namespaces that are gone; a marker left with nothing to undo is removed."""
    with _locked():
        m = _own_marker(tag)
        m.namespaces = [n for n in m.namespaces if n not in names]
        if m.namespaces or m.orig is not None:
            m.save()
        else:
            _drop(m)


def _drop(m: Marker) -> None:
    m.path.unlink(missing_ok=True)
    if m.pidfile.exists() and m.pidfile.read_text().strip() == str(m.pid):
        m.pidfile.unlink(missing_ok=True)


def _old_style_live() -> bool:
    """True while an older reportgen's lab run (a "<tag>.pid" file without a marker) is alive."""
    ours = {m.pidfile.name for m in _markers()}
    for p in STATE_DIR.glob("*.pid"):
        if p.name in ours:
            continue
        try:
            os.kill(int(p.read_text()), 0)
            return True
        except (ValueError, OSError):
            continue
    return False


def free_tag() -> str:
    """A run tag no namespace uses yet. The tag is short (it rides in every LOG prefix, which
    iptables-nft cuts at 29 bytes), so two concurrent runs could draw the same one and tear down each
    other's namespaces; a tag in use is never drawn."""
    names = list_namespaces()
    with _locked():
        # A killed run's marker still names its namespaces after they are gone; a new run drawing that
        # tag would own those names, and the killed run's recovery would then delete them.
        names |= {n for m in _markers() for n in m.namespaces}
    used = {n.split("-")[1] for n in names if n.startswith("rglab-") and n.count("-") >= 2}
    for _ in range(256):
        tag = "r" + secrets.token_hex(1)
        if tag not in used:
            return tag
    raise RuntimeError("no free lab run tag: 256 lab runs' namespaces exist (reportgen lab --cleanup)")


def list_namespaces() -> set[str]:
    """The names of the network namespaces `ip netns` knows."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False, timeout=30).stdout
    return {ln.split()[0] for ln in out.splitlines() if ln.strip()}


def _recover_locked() -> tuple[list[str], str | None]:
    """Undo killed runs (lock held). Return what was done and the original sysctl value they recorded."""
    done: list[str] = []
    orig: str | None = None
    present = list_namespaces()
    live: list[Marker] = []
    dead: list[Marker] = []
    for m in _markers():
        (live if m.alive() else dead).append(m)
    for path in unfinished_writes(STATE_DIR, ".*.tmp"):  # the folder is the lab's alone
        path.unlink(missing_ok=True)
        done.append(f"removed {path.name}, an unfinished write of a killed run")
    # A name a live run has marked is that run's now, whatever a killed run's marker says of it.
    present -= {n for m in live for n in m.namespaces}
    for m in dead:
        for pid, start in m.procs:
            if owner_alive(pid, start):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                done.append(f"killed process {pid}")
        for ns in m.namespaces:
            if ns not in present:
                continue
            # Processes keep a deleted namespace alive; everything inside this run's namespace is the run's.
            pids = run_shielded(["ip", "netns", "pids", ns]).stdout.split()
            for pid_text in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_text), signal.SIGKILL)
            run_shielded(["ip", "netns", "del", ns])
            done.append(f"deleted namespace {ns}")
        orig = m.orig if m.orig is not None else orig
        _drop(m)
        done.append(f"removed marker {m.path.name} of killed run (pid {m.pid})")
    return done, orig


def _restore_if_last(orig: str | None) -> list[str]:
    """Put nf_log_all_netns back when no live run needs it (lock held)."""
    if orig is None or any(m.alive() for m in _markers()) or _old_style_live():
        return []
    LOG_ALL_NETNS.write_text(orig)
    (STATE_DIR / "orig").unlink(missing_ok=True)
    return [f"net.netfilter.nf_log_all_netns = {orig} (restored)"]


def recover_dead_runs() -> list[str]:
    """Clean up after lab runs that were killed (``reportgen lab --cleanup``); live runs are not touched."""
    with deferred_signals(), _locked():
        done, orig = _recover_locked()
        return done + _restore_if_last(orig)


@contextlib.contextmanager
def log_all_netns(tag: str) -> Iterator[None]:
    """Set nf_log_all_netns=1 for the run; restore the original value when the last concurrent run ends.

    The original value is the one recorded by any earlier marker (a live run's, or a killed run's):
    the current value may be the 1 that a killed run left behind.
    """
    with deferred_signals(), _locked():
        _done, dead_orig = _recover_locked()
        live = [m.orig for m in _markers() if m.alive() and m.orig is not None]
        compat = STATE_DIR / "orig"
        if live:
            orig = live[0]
        elif dead_orig is not None:
            orig = dead_orig
        elif compat.exists() and _old_style_live():
            orig = compat.read_text().strip() or "0"
        else:
            orig = LOG_ALL_NETNS.read_text().strip()
        me = _own_marker(tag)
        me.orig = orig
        me.save()
        if not compat.exists():
            write_atomic(compat, orig)
        LOG_ALL_NETNS.write_text("1")
    try:
        yield
    finally:
        with deferred_signals(), _locked():
            me = _own_marker(tag)
            left = set(me.namespaces) & list_namespaces()
            if left:
                # Tear-down failed: the marker stays, and the next run treats it as a killed run's.
                me.namespaces = sorted(left)
                me.save()
            else:
                _drop(me)
            _restore_if_last(orig)


class KernelLog:
    """Read new records from /dev/kmsg, keeping only those that carry a run's tag.

    A reader thread takes each record as the kernel stores it. The kernel's ring is small
    (CONFIG_LOG_BUF_SHIFT=17, 128 KiB, on the machine the lab tests run on) and every namespace and
    every concurrent lab run writes to it, so records read only after the traffic may have been
    overwritten by then; read(2) then fails with EPIPE and the next read returns the oldest record left
    (Documentation/ABI/testing/dev-kmsg). ``overwritten`` counts those gaps: a run's lines may be among
    the missing."""

    MAX_RECORDS = 200_000  # records of every namespace kept while a run lasts; more count as a gap

    def __init__(self, containing: str | None = None) -> None:
        """``containing``: keep only the records holding this text (a long capture's memory stays bounded
        by its own lines, not every namespace's)."""
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)
        self._containing = containing.encode("utf-8") if containing is not None else None
        self.overwritten = 0
        self._records: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="kmsg", daemon=True)
        # The thread starts with these signals blocked (a new thread inherits its creator's mask,
        # pthread_sigmask(3)) and keeps them so: a process-directed signal goes to any thread that does
        # not block it (signal(7)), and one taken here while run_shielded() holds them back in the main
        # thread would run its Python handler in the middle of a shielded command.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, DEFERRED)
        try:
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _drain(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while True:
            last = self._stop.is_set()  # one more read after stop(): records stored before it was asked
            self._take()
            if last:
                return
            poller.poll(50)

    def _take(self) -> None:
        while True:
            try:
                raw = os.read(self.fd, 8192)
            except BlockingIOError:
                return
            except BrokenPipeError:
                self.overwritten += 1  # records were overwritten before we read them; the next read resumes
                continue
            if self._containing is not None and self._containing not in raw:
                continue
            if len(self._records) < self.MAX_RECORDS:
                self._records.append(raw)
            else:
                self.overwritten += 1

    def _halt(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()

    def read(self, must_contain: str | Callable[[str], bool], settle: float = 0.3) -> list[str]:
        """Return new records as dmesg prints them (``[%5ld.%06ld] MSG``, util-linux dmesg.c)."""
        keep = must_contain if callable(must_contain) else (lambda msg: must_contain in msg)
        time.sleep(settle)
        self._halt()
        out: list[str] = []
        for raw in self._records:
            head, _, msg = raw.decode("utf-8", "replace").partition(";")
            msg = msg.split("\n", 1)[0]  # continuation lines (" KEY=value") follow the first
            if not keep(msg):
                continue
            usec = int(head.split(",")[2])
            out.append(f"[{usec // 1_000_000:5d}.{usec % 1_000_000:06d}] {msg}")
        return out

    def close(self) -> None:
        self._halt()
        os.close(self.fd)
