"""The lab's scenarios: which LOG rules to insert, what traffic to send, what the case is about.

Two prefix conventions are used, so the recogniser is tested on both with real kernel output:
* "seed": the blog's log.sh (``TAG/iptable/nat-PREROUTE``, ``TAG/ebtable/filter-forward``), where the
  seed's ``ctc/`` is replaced by the run's tag;
* "colon": ``TAG IPT:nat:POSTROUTING ``, ``TAG IP6T:…``, ``TAG EB:filter:FORWARD``.
iptables and ebtables cap prefixes at 29 bytes (xt_log_info.prefix[30], EBT_LOG_PREFIX_SIZE 30), and
iptables-nft silently cuts longer ones, so every prefix here stays within that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reportgen.lab.netns import Lab, run

# log.sh's iptables hooks (the seed), in its order.
SEED_IPT = (
    ("raw", "PREROUTING"),
    ("mangle", "PREROUTING"),
    ("nat", "PREROUTING"),
    ("mangle", "FORWARD"),
    ("filter", "FORWARD"),
    ("mangle", "INPUT"),
    ("filter", "INPUT"),
    ("raw", "OUTPUT"),
    ("mangle", "OUTPUT"),
    ("nat", "OUTPUT"),
    ("filter", "OUTPUT"),
    ("mangle", "POSTROUTING"),
    ("nat", "POSTROUTING"),
)
# ebtables-nft has no broute table (../shared/reference/stack-notes.md), so BROUTING cannot be logged.
SEED_EBT = (
    ("nat", "PREROUTING"),
    ("nat", "OUTPUT"),
    ("nat", "POSTROUTING"),
    ("filter", "INPUT"),
    ("filter", "OUTPUT"),
    ("filter", "FORWARD"),
)
_SEED_IPT_NAME = {"PREROUTING": "PREROUTE", "POSTROUTING": "POSTROUTE"}
_SEED_EBT_NAME = {
    ("nat", "PREROUTING"): "nat-PREROUTE",
    ("nat", "OUTPUT"): "nat-OUTPUT",
    ("nat", "POSTROUTING"): "nat-POSTROUTE",
    ("filter", "INPUT"): "filter-input",
    ("filter", "OUTPUT"): "filter-output",
    ("filter", "FORWARD"): "filter-forward",
}


def ipt_prefix(tag: str, table: str, chain: str, convention: str, v6: bool = False) -> str:
    if convention == "seed":
        tool = "ip6table" if v6 else "iptable"
        return f"{tag}/{tool}/{table}-{_SEED_IPT_NAME.get(chain, chain)}"
    return f"{tag} {'IP6T' if v6 else 'IPT'}:{table}:{chain} "


def ebt_prefix(tag: str, table: str, chain: str, convention: str) -> str:
    if convention == "seed":
        return f"{tag}/ebtable/{_SEED_EBT_NAME[(table, chain)]}"
    return f"{tag} EB:{table}:{chain}"


def insert_log_rules(
    lab: Lab, proto: str, convention: str, v6: bool = False, ebt: bool = True, ipt: bool = True
) -> None:
    """Insert LOG rules at the top of every hook's chain, like log.sh (``-I``)."""
    tool = "ip6tables" if v6 else "iptables"
    # IPv6: only unicast to the container subnet, so MLD reports and neighbour solicitations to
    # multicast groups (which the kernel sends on its own) do not crowd the case.
    dmatch = ["-d", "fd00:17::/64"] if v6 else []
    for one in proto.split("+"):  # "tcp+icmp": a LOG rule per protocol at every hook
        pmatch = {"icmp": "ipv6-icmp" if v6 else "icmp", "tcp": "tcp", "udp": "udp"}[one]
        for table, chain in SEED_IPT if ipt else ():
            run(
                [
                    tool,
                    "-t",
                    table,
                    "-I",
                    chain,
                    "-p",
                    pmatch,
                    *dmatch,
                    "-j",
                    "LOG",
                    "--log-prefix",
                    ipt_prefix(lab.tag, table, chain, convention, v6),
                    "--log-level",
                    "debug",
                ],
                ns=lab.host,
            )
        if not ebt:
            continue
        # ebtables is filtered to the same protocol as the iptables rules, so ARP and multicast
        # chatter does not crowd the case (log.sh logged every frame).
        ematch = (
            ["-p", "IPv6", "--ip6-proto", "ipv6-icmp" if one == "icmp" else one, "--ip6-destination", "fd00:17::/64"]
            if v6
            else ["-p", "IPv4", "--ip-proto", one]
        )
        for table, chain in SEED_EBT:
            run(
                [
                    "ebtables",
                    "-t",
                    table,
                    "-I",
                    chain,
                    *ematch,
                    "--log",
                    "--log-prefix",
                    ebt_prefix(lab.tag, table, chain, convention),
                    "--log-level",
                    "debug",
                ],
                ns=lab.host,
            )


def insert_nft_log_rules(lab: Lab, proto: str) -> None:
    """Log with nft ``log`` in an inet table and a bridge table, at the iptables/ebtables priorities."""
    t = lab.tag
    inet_chains = [
        ("raw", "prerouting", "PREROUTING", "filter", -300),
        ("mangle", "prerouting", "PREROUTING", "filter", -150),
        ("nat", "prerouting", "PREROUTING", "nat", -100),
        ("mangle", "forward", "FORWARD", "filter", -150),
        ("filter", "forward", "FORWARD", "filter", 0),
        ("mangle", "postrouting", "POSTROUTING", "filter", -150),
        ("nat", "postrouting", "POSTROUTING", "nat", 100),
    ]
    lines = [f"table inet rglog{t} {{"]
    for i, (table, hook, chain, ctype, prio) in enumerate(inet_chains):
        lines.append(
            f"  chain c{i} {{ type {ctype} hook {hook} priority {prio}; policy accept; "
            f'meta l4proto {proto} log prefix "{t} nft:{table}:{chain} " level debug; }}'
        )
    lines.append("}")
    br_chains = [
        ("nat", "prerouting", "PREROUTING", -300),
        ("filter", "input", "INPUT", -200),
        ("filter", "forward", "FORWARD", -200),
        ("nat", "output", "OUTPUT", 100),
        ("nat", "postrouting", "POSTROUTING", 300),
    ]
    lines.append(f"table bridge rglogbr{t} {{")
    for i, (table, hook, chain, prio) in enumerate(br_chains):
        lines.append(
            f"  chain b{i} {{ type filter hook {hook} priority {prio}; policy accept; "
            f'meta l4proto {proto} log prefix "{t} br:{table}:{chain} " level debug; }}'
        )
    lines.append("}")
    run(["nft", "-f", "-"], ns=lab.host, input_text="\n".join(lines) + "\n")


# --- traffic --------------------------------------------------------------------------------------

TCP_SERVER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(({addr!r}, {port}))
s.listen(1)
s.settimeout(15)
c, _ = s.accept()
c.sendall(b"hello\\n")
c.close()
"""
UDP_SERVER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(({addr!r}, {port}))
s.settimeout(15)
data, peer = s.recvfrom(512)
s.sendto(b"pong:" + data, peer)
"""
TCP_CLIENT = """
import socket, sys
try:
    c = socket.create_connection(({addr!r}, {port}), timeout={timeout})
    sys.stdout.write(c.recv(16).decode())
    c.close()
except OSError as e:
    sys.stdout.write("failed: %s" % e)
"""
UDP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"ping", ({addr!r}, {port}))
sys.stdout.write(s.recvfrom(512)[0].decode())
"""


def python(lab: Lab, role: str, code: str, timeout: float = 20) -> str:
    import sys

    return run([sys.executable, "-c", code], ns=lab.ns(role), timeout=timeout).stdout


def wait_listening(lab: Lab, role: str, port: int, udp: bool = False) -> None:
    import time

    for _ in range(100):  # bounded: at most 5 s
        out = run(["ss", "-Hlnu" if udp else "-Hlnt"], ns=lab.ns(role)).stdout
        if f":{port} " in out:
            return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} in {role} did not start")


def ping(lab: Lab, role: str, addr: str, v6: bool = False, expect_ok: bool = True, ident: int | None = None) -> None:
    extra = ["-e", str(ident)] if ident is not None else []
    r = run(["ping", "-6" if v6 else "-4", "-c1", "-W2", *extra, addr], ns=lab.ns(role), check=False)
    if expect_ok and r.returncode != 0:
        raise RuntimeError(f"ping {addr} from {role} failed: {r.stdout} {r.stderr}")


def warm_up(lab: Lab, v6: bool = False) -> None:
    """Resolve neighbours first, then forget the connections, as the seed did before its pings."""
    ping(lab, "c1", "172.17.0.3")
    ping(lab, "c1", "203.0.113.10")
    run(["ping", "-c1", "-W2", "172.17.0.2"], ns=lab.host)
    if v6:
        ping(lab, "c1", "fd00:17::3", v6=True)
    # conntrack -F flushes IPv4 only unless told the family (conntrack(8) -f).
    run(["conntrack", "-F", "-f", "ipv4"], ns=lab.host, check=False)
    run(["conntrack", "-F", "-f", "ipv6"], ns=lab.host, check=False)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    description: str
    proto: str
    convention: str
    traffic: Callable[[Lab], None]
    v6: bool = False
    nft: bool = False
    brnf_off: bool = False
    setup: Callable[[Lab], None] | None = None
    log: str = "iptables"  # "iptables" (LOG + ebtables), "nft", "ebtables" (ebtables only), "none"
    trace: str | None = None  # "xtables-monitor", "nft-monitor", or "legacy" (TRACE lines in the kernel log)
    backend: str = "nft"  # where Docker's rules live: iptables-nft or iptables-legacy
    # Kernel log prefixes of a reproduced tool's own LOG rules (ufw's "[UFW "), kept beside the
    # lab's tagged lines. They carry no run tag, so a concurrent run of the same scenario would mix in.
    also_log: tuple[str, ...] = ()


def ping_id(lab: Lab) -> int:
    """A per-run ICMP echo id: legacy TRACE lines carry no prefix of ours, so the id tells our lines."""
    return 40000 + int(lab.tag[1:], 16)


def insert_legacy_trace(lab: Lab) -> None:
    """iptables-legacy -j TRACE logs through the logger bound to the family in this namespace
    (net.netfilter.nf_log.2; ip_tables.c trace_packet -> nf_log_trace)."""
    run(["sysctl", "-qw", "net.netfilter.nf_log.2=nf_log_ipv4"], ns=lab.host)
    run(["iptables-legacy", "-t", "raw", "-I", "PREROUTING", "-p", "icmp", "-j", "TRACE"], ns=lab.host)


def insert_trace_rules(lab: Lab, kind: str, proto: str, port: int | None) -> list[str]:
    """Mark packets for tracing and return the monitor command (run in the host namespace)."""
    if kind == "xtables-monitor":
        # iptables-nft turns -j TRACE into "meta nftrace set 1" (iptables-extensions(8) TRACE).
        for direction in ("--dport", "--sport"):
            spec = ["-p", proto] + ([direction, str(port)] if port else [])
            run(["iptables", "-t", "raw", "-I", "PREROUTING", *spec, "-j", "TRACE"], ns=lab.host)
            if not port:
                break
        return ["xtables-monitor", "--trace"]
    match = f"meta l4proto {proto}"
    rules = (
        [f"{match} th dport {port} meta nftrace set 1", f"{match} th sport {port} meta nftrace set 1"]
        if port
        else [f"{match} meta nftrace set 1"]
    )
    body = "; ".join(rules)
    run(
        ["nft", "-f", "-"],
        ns=lab.host,
        input_text=(
            f"table inet rgtrace{lab.tag} {{\n  chain pre {{ type filter hook prerouting priority -350; {body}; }}\n"
            f"  chain out {{ type filter hook output priority -350; {body}; }}\n}}\n"
        ),
    )
    return ["nft", "monitor", "trace"]


def _tcp_to_internet(lab: Lab, port: int = 80, expect: bool = True) -> None:
    if expect:
        lab.start("inet", TCP_SERVER.format(addr="203.0.113.10", port=port))
        wait_listening(lab, "inet", port)
    out = python(lab, "c1", TCP_CLIENT.format(addr="203.0.113.10", port=port, timeout=3.5 if not expect else 5))
    if expect and "hello" not in out:
        raise RuntimeError(f"TCP to the internet failed: {out}")
    if not expect and "failed" not in out:
        raise RuntimeError(f"the dropped connection went through: {out}")


def _udp_to_internet(lab: Lab) -> None:
    lab.start("inet", UDP_SERVER.format(addr="203.0.113.10", port=53))
    wait_listening(lab, "inet", 53, udp=True)
    out = python(lab, "c1", UDP_CLIENT.format(addr="203.0.113.10", port=53))
    if "pong" not in out:
        raise RuntimeError(f"UDP to the internet failed: {out}")


def fetch_published(lab: Lab, client: str, timeout: float) -> str:
    """Serve on container1's port 80 and fetch it from ``client`` through the published port 8080."""
    lab.start("c1", TCP_SERVER.format(addr="0.0.0.0", port=80))
    wait_listening(lab, "c1", 80)
    return python(lab, client, TCP_CLIENT.format(addr="198.51.100.10", port=8080, timeout=timeout))


def _published(lab: Lab) -> None:
    out = fetch_published(lab, "inet", 5)
    if "hello" not in out:
        raise RuntimeError(f"published port failed: {out}")


def _drop_setup(lab: Lab) -> None:
    run(["iptables", "-I", "DOCKER-USER", "-p", "tcp", "--dport", "81", "-j", "DROP"], ns=lab.host)


def _reject_setup(lab: Lab) -> None:
    # REJECT answers with ICMP port unreachable by default (iptables-extensions(8) REJECT).
    run(["iptables", "-I", "DOCKER-USER", "-p", "tcp", "--dport", "82", "-j", "REJECT"], ns=lab.host)


# kube-proxy's iptables mode (pkg/proxy/iptables/proxier.go) for one ClusterIP service with one
# endpoint, with masqueradeAll so the service traffic is marked for SNAT: KUBE-MARK-MASQ sets mark
# 0x4000 and KUBE-POSTROUTING masquerades what carries it. The pod (container2) sits on the same
# bridge as the client, as with a bridge CNI.
CLUSTER_IP = "10.96.0.10"
KUBE_NAT = f"""*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-WEB4EXAMPLE0000 - [0:0]
:KUBE-SEP-WEB4POD0000000 - [0:0]
-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SERVICES -d {CLUSTER_IP}/32 -p tcp -m comment --comment "default/web" -m tcp --dport 80 \
-j KUBE-SVC-WEB4EXAMPLE0000
-A KUBE-SVC-WEB4EXAMPLE0000 -d {CLUSTER_IP}/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-WEB4EXAMPLE0000 -m comment --comment "default/web -> 172.17.0.3:80" -j KUBE-SEP-WEB4POD0000000
-A KUBE-SEP-WEB4POD0000000 -s 172.17.0.3/32 -m comment --comment "default/web" -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB4POD0000000 -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination 172.17.0.3:80
COMMIT
"""


def _clusterip_setup(lab: Lab) -> None:
    run(["iptables-restore", "--noflush"], ns=lab.host, input_text=KUBE_NAT)


def _clusterip(lab: Lab) -> None:
    lab.start("c2", TCP_SERVER.format(addr="0.0.0.0", port=80))
    wait_listening(lab, "c2", 80)
    out = python(lab, "c1", TCP_CLIENT.format(addr=CLUSTER_IP, port=80, timeout=5))
    if "hello" not in out:
        raise RuntimeError(f"ClusterIP service failed: {out}")


def _hairpin_setup(lab: Lab) -> None:
    """Docker with userland-proxy off (bridge driver, hairpin mode): the DNAT applies on docker0 too,
    the "-i docker0 -j RETURN" shortcut is gone, the port's own traffic to itself is masqueraded, and
    the bridge port has hairpin_mode on so a frame may leave by the port it came in on."""
    h = lab.host
    run(["iptables", "-t", "nat", "-D", "DOCKER", "-i", "docker0", "-j", "RETURN"], ns=h)
    run(
        [
            "iptables",
            "-t",
            "nat",
            "-D",
            "DOCKER",
            "!",
            "-i",
            "docker0",
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            "8080",
            "-j",
            "DNAT",
            "--to-destination",
            "172.17.0.2:80",
        ],
        ns=h,
    )
    run(
        [
            "iptables",
            "-t",
            "nat",
            "-A",
            "DOCKER",
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            "8080",
            "-j",
            "DNAT",
            "--to-destination",
            "172.17.0.2:80",
        ],
        ns=h,
    )
    run(
        [
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "172.17.0.2/32",
            "-d",
            "172.17.0.2/32",
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            "80",
            "-j",
            "MASQUERADE",
        ],
        ns=h,
    )
    run(["bridge", "link", "set", "dev", lab.ports()[0], "hairpin", "on"], ns=h)


def _hairpin(lab: Lab) -> None:
    lab.start("c1", TCP_SERVER.format(addr="0.0.0.0", port=80))
    wait_listening(lab, "c1", 80)
    out = python(lab, "c1", TCP_CLIENT.format(addr="198.51.100.10", port=8080, timeout=5))
    if "hello" not in out:
        raise RuntimeError(f"hairpin NAT to the published port failed: {out}")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "container-to-container",
        "Container to container on docker0 (ICMP)",
        "container1 (172.17.0.2) pings container2 (172.17.0.3) once, as in the seed's first scenario.",
        "icmp",
        "seed",
        lambda lab: ping(lab, "c1", "172.17.0.3"),
    ),
    Scenario(
        "host-to-container",
        "Host to container (ICMP)",
        "The host pings container1 once, as in the seed's second scenario.",
        "icmp",
        "seed",
        lambda lab: ping(lab, "h", "172.17.0.2"),
    ),
    Scenario(
        "container-to-internet",
        "Container to the internet (ICMP, MASQUERADE)",
        "container1 pings 203.0.113.10, a host behind the uplink ens33, as in the seed's third scenario.",
        "icmp",
        "seed",
        lambda lab: ping(lab, "c1", "203.0.113.10"),
    ),
    Scenario(
        "tcp-to-internet",
        "Container to the internet over TCP (MASQUERADE)",
        "container1 opens a TCP connection to 203.0.113.10:80 and reads a greeting; Docker's "
        "MASQUERADE rule rewrites the source on ens33.",
        "tcp",
        "colon",
        _tcp_to_internet,
    ),
    Scenario(
        "udp-to-internet",
        "Container to the internet over UDP (MASQUERADE)",
        "container1 sends one UDP datagram to 203.0.113.10:53 and gets one back.",
        "udp",
        "colon",
        _udp_to_internet,
    ),
    Scenario(
        "published-port",
        "Published port reached from the internet (DNAT)",
        "A host on the internet side connects to the host's 198.51.100.10:8080, which Docker's DNAT "
        "rule sends to container1's port 80.",
        "tcp",
        "colon",
        _published,
    ),
    Scenario(
        "tcp-dropped",
        "TCP connection dropped by a FORWARD rule (SYN retransmits)",
        "A rule in DOCKER-USER drops TCP to port 81; container1 tries 203.0.113.10:81 for 3.5 s and "
        "its SYN is retransmitted.",
        "tcp",
        "colon",
        lambda lab: _tcp_to_internet(lab, 81, expect=False),
        setup=_drop_setup,
    ),
    Scenario(
        "tcp-rejected",
        "TCP connection rejected by a FORWARD rule (ICMP port unreachable)",
        "A rule in DOCKER-USER rejects TCP to port 82; container1's SYN to 203.0.113.10:82 is answered by "
        "the host with an ICMP port-unreachable error that conntrack relates to the connection.",
        "tcp+icmp",
        "colon",
        lambda lab: _tcp_to_internet(lab, 82, expect=False),
        setup=_reject_setup,
    ),
    Scenario(
        "ipv6-container-to-container",
        "IPv6 between containers (ICMPv6)",
        "container1 (fd00:17::2) pings container2 (fd00:17::3) once over IPv6 on docker0.",
        "icmp",
        "colon",
        lambda lab: ping(lab, "c1", "fd00:17::3", v6=True),
        v6=True,
    ),
    Scenario(
        "bridge-nf-off",
        "Container to container with bridge-nf-call-iptables=0",
        "As the first scenario, but net.bridge.bridge-nf-call-iptables is 0 in the host, so the bridge "
        "does not call the iptables hooks.",
        "icmp",
        "seed",
        lambda lab: ping(lab, "c1", "172.17.0.3"),
        brnf_off=True,
    ),
    Scenario(
        "xtables-trace-tcp-to-internet",
        "Container to the internet over TCP, traced with iptables -j TRACE",
        "container1 opens a TCP connection to 203.0.113.10:80; iptables-nft TRACE rules in raw PREROUTING "
        "mark it, and xtables-monitor --trace prints every rule it hits.",
        "tcp",
        "colon",
        _tcp_to_internet,
        log="none",
        trace="xtables-monitor",
    ),
    Scenario(
        "nft-trace-tcp-to-internet",
        "Container to the internet over TCP, traced with nft monitor trace",
        "container1 opens a TCP connection to 203.0.113.10:80; a chain at priority -350 sets meta nftrace, "
        "and nft monitor trace prints every rule it hits in Docker's (iptables-nft) tables.",
        "tcp",
        "colon",
        _tcp_to_internet,
        log="none",
        trace="nft-monitor",
    ),
    Scenario(
        "mixed-ebtables-nft-trace",
        "Container to container: ebtables LOG lines and an nft trace of one ping",
        "container1 pings container2; ebtables LOG rules (the seed's convention) log the bridge hooks in the "
        "kernel log while nft monitor trace follows the same packets through the IP hooks.",
        "icmp",
        "seed",
        lambda lab: ping(lab, "c1", "172.17.0.3"),
        log="ebtables",
        trace="nft-monitor",
    ),
    Scenario(
        "legacy-trace-container-to-internet",
        "Container to the internet on an iptables-legacy host, traced with -j TRACE",
        "Docker's rules are loaded with iptables-legacy; a TRACE rule in the legacy raw table makes "
        "ip_tables log every rule, return and policy the ping meets as TRACE: lines in the kernel log.",
        "icmp",
        "seed",
        lambda lab: ping(lab, "c1", "203.0.113.10", ident=ping_id(lab)),
        log="none",
        trace="legacy",
        backend="legacy",
    ),
    Scenario(
        "nft-log-container-to-internet",
        "Container to the internet, logged with nft log rules",
        "As the third scenario, but the logging is done by nft 'log' statements in an inet table and a "
        "bridge table, at the priorities of the iptables/ebtables tables they stand for.",
        "icmp",
        "colon",
        lambda lab: ping(lab, "c1", "203.0.113.10"),
        nft=True,
    ),
    Scenario(
        "clusterip",
        "Pod to a ClusterIP service on the same bridge (kube-proxy DNAT, br_netfilter)",
        f"container1 connects to the ClusterIP {CLUSTER_IP}:80; kube-proxy-style chains (KUBE-SERVICES -> "
        "KUBE-SVC -> KUBE-SEP) DNAT it to container2 (172.17.0.3:80) on the same bridge, so br_netfilter "
        "bridges the DNAT'd frame again instead of routing it; KUBE-MARK-MASQ marks it 0x4000 and "
        "KUBE-POSTROUTING masquerades it.",
        "tcp",
        "colon",
        _clusterip,
        setup=_clusterip_setup,
    ),
    Scenario(
        "hairpin",
        "Container to its own published port through the host address (hairpin NAT)",
        "container1 connects to the host's 198.51.100.10:8080, which Docker (userland-proxy off) DNATs back "
        "to container1's own port 80; the bridge sends the frame back out the port it came from "
        "(hairpin_mode on) and a MASQUERADE rule for the container's traffic to itself rewrites the source.",
        "tcp",
        "colon",
        _hairpin,
        setup=_hairpin_setup,
    ),
)
