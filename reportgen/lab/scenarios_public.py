"""Lab scenarios that reproduce public cases on the real kernel, with the tools' own rules.

* "Docker bypasses UFW" (docker/for-linux#690 and the many reports like it; chaifeng/ufw-docker): with
  ufw's default "deny incoming", a port Docker publishes is still reachable from outside, while a
  port of the host itself is blocked and logged as ``[UFW BLOCK]``. Docker's DNAT runs in nat
  PREROUTING, so the packet is forwarded, not delivered: it crosses filter FORWARD, where Docker's
  jumps come before ufw's (Docker inserts them at the top) and its DOCKER chain accepts it; ufw's
  INPUT chains never see it (ip_forward -> NF_INET_FORWARD, net/ipv4/ip_forward.c; a local packet
  goes through NF_INET_LOCAL_IN instead, net/ipv4/ip_input.c ip_local_deliver).

The ufw rules are not written by hand: ``data/ufw-0.36.2-filter.rules`` is what ufw 0.36.2 itself
loaded (its header says how), replayed here with ``iptables-restore --noflush`` after Docker's rules,
the order of a host where ufw is enabled and Docker then starts (or restarts) and inserts its jumps.

* kube-proxy (iptables mode) on a node that also runs Docker, as in kubernetes/kubernetes#39658 ("Add
  iptables FORWARD rule for external requests to service with nodePort"): Docker sets filter FORWARD's
  policy to DROP, so a NodePort connection DNAT'd to a pod is forwarded into that policy unless something
  accepts it. kube-proxy's KUBE-FORWARD does: KUBE-MARK-MASQ set mark 0x4000 in nat PREROUTING, and
  "-m mark --mark 0x4000/0x4000 -j ACCEPT" lets the marked packet through; KUBE-POSTROUTING then clears
  the bit and masquerades it. The rules are kube-proxy's own (``data/kube-proxy-iptables.rules``, whose
  header says where they come from); the internet host connects to the NodePort, and the host itself
  connects to the same Service's ClusterIP (nat OUTPUT), both to container2 as the Service's endpoint.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from importlib import resources

from reportgen.lab.netns import Lab, run
from reportgen.lab.scenarios import TCP_CLIENT, TCP_SERVER, Scenario, fetch_published, python, wait_listening

BLOCKED_PORT = 8081  # nothing listens on it and ufw allows only 22/tcp: ufw's policy drops the SYN


def _data(name: str) -> str:
    return resources.files("reportgen.lab").joinpath(f"data/{name}").read_text(encoding="utf-8")


def ufw_rules() -> str:
    return _data("ufw-0.36.2-filter.rules")


def kube_proxy_rules() -> str:
    return _data("kube-proxy-iptables.rules")


def _ufw_docker(lab: Lab) -> None:
    # Added when the traffic starts, not in setup: the lab's warm-up pings run before (ufw lets ICMP
    # echo through anyway, ufw-before-input, but the warm-up should not depend on it).
    run(["iptables-restore", "--noflush"], ns=lab.host, input_text=ufw_rules())
    out = fetch_published(lab, "inet", 5)
    if "hello" not in out:
        raise RuntimeError(f"the published port was not reachable through ufw: {out}")
    out = python(lab, "inet", TCP_CLIENT.format(addr="198.51.100.10", port=BLOCKED_PORT, timeout=2.5))
    if "failed" not in out:
        raise RuntimeError(f"ufw let port {BLOCKED_PORT} through: {out}")


# The Service the traffic uses: ns3/svc3 of the rules file, type NodePort, externalTrafficPolicy Cluster,
# one endpoint (container2 after the file's address substitution).
NODE_PORT = 3003
CLUSTER_IP = "172.30.0.43"
SVC_CHAIN = "KUBE-SVC-X27LE4BHSL4DOUIK"
EXT_CHAIN = "KUBE-EXT-X27LE4BHSL4DOUIK"
SEP_CHAIN = "KUBE-SEP-OYPFS5VJICHGATKP"

# kube-proxy's jumps from the built-in chains: (table, chain, arguments), in the order of
# iptablesJumpChains followed by iptablesKubeletJumpChains in pkg/proxy/iptables/proxier.go (the commit
# the rules file names). syncProxyRules adds each with EnsureRule(Prepend, ...), i.e. "iptables -I", so
# the last one listed ends up first in its chain.
_NEW = ("-m", "conntrack", "--ctstate", "NEW")
KUBE_JUMPS: tuple[tuple[str, str, tuple[str, ...]], ...] = tuple(
    (table, src, (*extra, *(("-m", "comment", "--comment", comment) if comment else ()), "-j", dst))
    for table, dst, src, comment, extra in (
        ("filter", "KUBE-EXTERNAL-SERVICES", "INPUT", "kubernetes externally-visible service portals", _NEW),
        ("filter", "KUBE-EXTERNAL-SERVICES", "FORWARD", "kubernetes externally-visible service portals", _NEW),
        ("filter", "KUBE-NODEPORTS", "INPUT", "kubernetes health check service ports", ()),
        ("filter", "KUBE-SERVICES", "FORWARD", "kubernetes service portals", _NEW),
        ("filter", "KUBE-SERVICES", "OUTPUT", "kubernetes service portals", _NEW),
        ("filter", "KUBE-FORWARD", "FORWARD", "kubernetes forwarding rules", ()),
        ("filter", "KUBE-PROXY-FIREWALL", "INPUT", "kubernetes load balancer firewall", _NEW),
        ("filter", "KUBE-PROXY-FIREWALL", "OUTPUT", "kubernetes load balancer firewall", _NEW),
        ("filter", "KUBE-PROXY-FIREWALL", "FORWARD", "kubernetes load balancer firewall", _NEW),
        ("nat", "KUBE-SERVICES", "OUTPUT", "kubernetes service portals", ()),
        ("nat", "KUBE-SERVICES", "PREROUTING", "kubernetes service portals", ()),
        ("nat", "KUBE-POSTROUTING", "POSTROUTING", "kubernetes postrouting rules", ()),
        ("filter", "KUBE-FIREWALL", "INPUT", "", ()),
        ("filter", "KUBE-FIREWALL", "OUTPUT", "", ()),
    )
)
# The nfacct counters the rules' "-m nfacct" matches name (metrics.IPTablesCTStateInvalidDroppedNFAcctCounter
# and LocalhostNodePortAcceptedNFAcctCounter); xt_nfacct refuses a rule naming a counter that does not exist.
NFACCT_COUNTERS = ("ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts")
# What kube-proxy's nfacct.Ensure sends (pkg/proxy/util/nfacct/nfacct_linux.go): NFNL_MSG_ACCT_NEW of
# subsystem NFNL_SUBSYS_ACCT with the name in NFACCT_NAME (include/uapi/linux/netfilter/nfnetlink_acct.h,
# nfnetlink.h); EEXIST/EBUSY mean the counter is already there (net/netfilter/nfnetlink_acct.c nfnl_acct_new).
_NFACCT_ADD = """
import errno, socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
for seq, name in enumerate(sys.argv[1:], 1):
    raw = name.encode() + b"\\0"
    attr = struct.pack("=HH", 4 + len(raw), 1) + raw + b"\\0" * (-len(raw) % 4)  # NFACCT_NAME
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0) + attr  # struct nfgenmsg, NFNETLINK_V0
    # NFNL_SUBSYS_ACCT << 8 | NFNL_MSG_ACCT_NEW; NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
    s.send(struct.pack("=LHHLL", 16 + len(body), 7 << 8, 0x1 | 0x4 | 0x400, seq, 0) + body)
    reply = s.recv(4096)
    err = -struct.unpack_from("=i", reply, 16)[0]  # struct nlmsgerr after the nlmsghdr
    if err not in (0, errno.EEXIST, errno.EBUSY):
        sys.exit(f"nfacct {name}: {errno.errorcode.get(err, err)}")
"""


def _kube_proxy_setup(lab: Lab) -> None:
    """Load kube-proxy's rules into the host the way kube-proxy does: counters, jumps, then the restore.

    After Docker's rules (the lab's build): the order of a node where kube-proxy starts after dockerd,
    so kube-proxy's jumps come first in FORWARD (they are inserted at the top)."""
    run([sys.executable, "-c", _NFACCT_ADD, *NFACCT_COUNTERS], ns=lab.host)
    for table, chain in sorted({(t, a[-1]) for t, _, a in KUBE_JUMPS}):
        run(["iptables", "-t", table, "-N", chain], ns=lab.host)  # EnsureChain
    for table, chain, args in KUBE_JUMPS:
        run(["iptables", "-t", table, "-I", chain, *args], ns=lab.host)
    # kube-proxy restores with --noflush (utiliptables.NoFlushTables): the built-in chains keep their rules.
    run(["iptables-restore", "--noflush"], ns=lab.host, input_text=kube_proxy_rules())


def _kube_proxy_nodeport(lab: Lab) -> None:
    """The internet host connects to the NodePort, then the host to the ClusterIP; container2 answers."""
    # TRACE the request directions too (the runner's rules follow port 80 only, i.e. the pod's side):
    # the NodePort SYN before its DNAT, and the host's own packets to the ClusterIP (raw OUTPUT).
    run(
        ["iptables", "-t", "raw", "-I", "PREROUTING", "-p", "tcp", "--dport", str(NODE_PORT), "-j", "TRACE"],
        ns=lab.host,
    )
    run(["iptables", "-t", "raw", "-I", "OUTPUT", "-p", "tcp", "-d", CLUSTER_IP, "-j", "TRACE"], ns=lab.host)
    for role, addr, port in (("inet", "198.51.100.10", NODE_PORT), ("h", CLUSTER_IP, 80)):
        lab.start("c2", TCP_SERVER.format(addr="0.0.0.0", port=80))  # answers one connection, then exits
        wait_listening(lab, "c2", 80)
        out = python(lab, role, TCP_CLIENT.format(addr=addr, port=port, timeout=5))
        if "hello" not in out:
            raise RuntimeError(f"the Service did not answer {role} at {addr}:{port}: {out}")


PUBLIC: tuple[Scenario, ...] = (
    Scenario(
        "public-ufw-docker-published-port",
        "Docker bypasses UFW: a published port is reachable, a host port is blocked",
        "ufw 0.36.2's own rules (default deny incoming, allow 22/tcp, logging low) on a Docker host. The "
        "internet host 198.51.100.1 connects to the published port 198.51.100.10:8080 and reaches "
        "container1 (Docker's DNAT and FORWARD rules come first; ufw's INPUT chains never see the "
        "packet), then to the host's own port 8081, which ufw logs as [UFW BLOCK] and drops with the "
        "INPUT policy. Reproduces docker/for-linux#690.",
        "tcp",
        "colon",
        _ufw_docker,
        also_log=("[UFW ",),
    ),
    Scenario(
        "public-kube-proxy-nodeport",
        "kube-proxy on a Docker node: a NodePort and a ClusterIP reach the pod through Docker's FORWARD DROP",
        "kube-proxy's own iptables rules (from Kubernetes' TestOverallIPTablesRules; Service ns3/svc3, "
        f"NodePort {NODE_PORT}, ClusterIP {CLUSTER_IP}, endpoint container2 172.17.0.3:80) on a host with "
        "Docker's rules (filter FORWARD policy DROP). The internet host 198.51.100.1 connects to "
        f"198.51.100.10:{NODE_PORT}: KUBE-NODEPORTS -> {EXT_CHAIN} marks it 0x4000 (KUBE-MARK-MASQ), "
        f"{SEP_CHAIN} DNATs it to 172.17.0.3:80, KUBE-FORWARD accepts it by the mark, and KUBE-POSTROUTING "
        f"masquerades it to 172.17.0.1. Then the host connects to {CLUSTER_IP}:80 (nat OUTPUT, same chains "
        "from KUBE-SERVICES). Traced rule by rule with xtables-monitor. Reproduces kubernetes/kubernetes#39658 "
        "as fixed (KUBE-FORWARD).",
        "tcp",
        "colon",
        _kube_proxy_nodeport,
        setup=_kube_proxy_setup,
        log="none",
        trace="xtables-monitor",
    ),
)
# The same traffic, also logged by the lab's LOG and ebtables rules at every hook: two sources for one
# packet, and bridge-family (NFPROTO_BRIDGE) trace lines, since the ebtables rules give the bridge hooks
# chains that the traced packet walks.
PUBLIC += (
    replace(
        PUBLIC[-1],
        name="public-kube-proxy-nodeport-logged",
        title=PUBLIC[-1].title + " (traced and logged)",
        description=PUBLIC[-1].description.replace(
            "Traced rule by rule with xtables-monitor.",
            "Traced rule by rule with xtables-monitor and logged by LOG and ebtables rules at every hook.",
        ),
        log="iptables",
    ),
)
