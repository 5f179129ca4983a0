"""Network-namespace plumbing for the lab: commands, a Docker-like host, and guaranteed tear-down.

Everything is created inside namespaces named after a per-run tag. The root namespace is only
touched for ``net.netfilter.nf_log_all_netns`` (nf_log_allowed() in net/netfilter/nf_log.c logs
other namespaces only when it is 1), and that value is restored when the last concurrent run ends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR = Path("/run/reportgen-lab")
LOG_ALL_NETNS = Path("/proc/sys/net/netfilter/nf_log_all_netns")
BRIDGE_MAC = "02:42:ff:e7:b5:d2"
REQUIRED_TOOLS = ("ip", "iptables", "ip6tables", "ebtables", "nft", "conntrack", "bridge")


class LabUnavailable(RuntimeError):
    """The lab cannot run here (not root, no namespaces, a tool missing)."""


def check_available() -> None:
    """Raise LabUnavailable with the reason when this machine cannot host the lab."""
    if os.geteuid() != 0:
        raise LabUnavailable("the lab needs root (network namespaces and netfilter rules)")
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        raise LabUnavailable(f"missing tools: {', '.join(missing)} (apt-get install iproute2 iptables ebtables "
                             "nftables conntrack bridge-utils)")
    if not LOG_ALL_NETNS.exists() or not Path("/proc/sys/net/bridge").exists():
        raise LabUnavailable("this kernel lacks nf_log or br_netfilter (/proc/sys/net/bridge)")
    probe = f"rgprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise LabUnavailable(f"cannot create a network namespace: {r.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)


def run(args: list[str], ns: str | None = None, check: bool = True, timeout: float = 30,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, inside a namespace when ns is given; raise with its stderr when it fails."""
    full = ["ip", "netns", "exec", ns, *args] if ns else args
    r = subprocess.run(full, capture_output=True, text=True, check=False, timeout=timeout, input=input_text)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


@dataclass
class Lab:
    """A Docker-like host: namespaces h (host), c1, c2 (containers) and inet (the internet)."""

    tag: str = field(default_factory=lambda: "r" + secrets.token_hex(1))
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
            run(["ip", "netns", "add", n])
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
        for key, val in (("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1"),
                         ("net.bridge.bridge-nf-call-iptables", "1"),
                         ("net.bridge.bridge-nf-call-ip6tables", "1")):
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

    def start(self, role: str, code: str) -> None:
        """Start a bounded Python helper (a server) inside a namespace."""
        import sys

        p = subprocess.Popen(["ip", "netns", "exec", self.ns(role), sys.executable, "-c", code],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)

    # -- tear-down ---------------------------------------------------------------------------------

    def teardown(self) -> None:
        """Kill helpers and delete every namespace this run made (also after errors)."""
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                p.wait(timeout=5)
        self.procs.clear()
        for n in reversed(self.created):
            subprocess.run(["ip", "netns", "del", n], capture_output=True, check=False)
        self.created.clear()


def docker_rules(published_port: bool) -> str:
    """Return Docker's iptables rules for the default bridge (as dockerd 20-27 installs them)."""
    dnat = ("-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\n"
            if published_port else "")
    accept = ("-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT\n"
              if published_port else "")
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


@contextlib.contextmanager
def signals_as_exit() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit, so finally-blocks tear down what a run added.

    Ctrl-C already raises KeyboardInterrupt; SIGKILL cannot be caught, which is what
    ``reportgen capture --cleanup`` is for.
    """
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def log_all_netns(tag: str) -> Iterator[None]:
    """Set nf_log_all_netns=1 for the run; restore the old value when the last concurrent run ends."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    orig = STATE_DIR / "orig"
    me = STATE_DIR / f"{tag}.pid"
    if not orig.exists() or not _live_runs():
        orig.write_text(LOG_ALL_NETNS.read_text().strip())
    me.write_text(str(os.getpid()))
    LOG_ALL_NETNS.write_text("1")
    try:
        yield
    finally:
        me.unlink(missing_ok=True)
        if not _live_runs() and orig.exists():
            LOG_ALL_NETNS.write_text(orig.read_text().strip() or "0")
            orig.unlink(missing_ok=True)


def _live_runs() -> list[Path]:
    out = []
    for p in STATE_DIR.glob("*.pid"):
        try:
            os.kill(int(p.read_text()), 0)
            out.append(p)
        except (ValueError, ProcessLookupError):
            p.unlink(missing_ok=True)
    return out


class KernelLog:
    """Read new records from /dev/kmsg, keeping only those that carry a run's tag."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def read(self, must_contain: str | Callable[[str], bool], settle: float = 0.3) -> list[str]:
        """Return new records as dmesg prints them (``[%5ld.%06ld] MSG``, util-linux dmesg.c)."""
        keep = must_contain if callable(must_contain) else (lambda msg: must_contain in msg)
        time.sleep(settle)
        out: list[str] = []
        while True:
            try:
                raw = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:
                continue  # records were overwritten while we read; the next read resumes
            head, _, msg = raw.decode("utf-8", "replace").partition(";")
            msg = msg.split("\n", 1)[0]  # continuation lines (" KEY=value") follow the first
            if not keep(msg):
                continue
            usec = int(head.split(",")[2])
            out.append(f"[{usec // 1_000_000:5d}.{usec % 1_000_000:06d}] {msg}")
        return out

    def close(self) -> None:
        os.close(self.fd)
