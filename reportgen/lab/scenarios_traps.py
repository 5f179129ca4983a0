"""Lab scenarios for the traps the simulator must get right, captured on the real kernel.

* a native nft table whose forward chain has ``policy drop``, beside Docker's iptables-nft rules: the
  packet is accepted by Docker's FORWARD chain and dropped by the other table (an accept ends only its
  own base chain; nf_hook_slow, net/netfilter/core.c);
* an allow-list in DOCKER-USER in front of a published port;
* a published port reached from the host itself (nat OUTPUT DNAT, then a new route);
* IPv6 from a container to an outside host, masqueraded;
* a drop rule removed after the trace and before the snapshot, so prediction and trace disagree.

The drop rules are added when the traffic starts, not in ``setup``: the lab's warm-up pings must
still get through.
"""

from __future__ import annotations

from reportgen.lab.netns import Lab, run
from reportgen.lab.scenarios import Scenario, fetch_published, ping

# A user's own table, as firewalld or a hand-written /etc/nftables.conf would add it: its forward chain
# runs after Docker's (priority filter + 10) and drops what it does not accept.
NFT_FORWARD_DROP = """table inet usertrap {
  chain userforward {
    type filter hook forward priority 10; policy drop;
    ct state established,related accept
  }
}
"""
V6_INET_HOST = "2001:db8:2::10"  # documentation prefix (RFC 3849) for the outside IPv6 host


def _nft_forward_drop(lab: Lab) -> None:
    run(["nft", "-f", "-"], ns=lab.host, input_text=NFT_FORWARD_DROP)
    ping(lab, "c1", "203.0.113.10", expect_ok=False)


def _docker_user_allowlist(lab: Lab) -> None:
    # The allow-list Docker's documentation suggests: only 192.0.2.0/24 may reach published ports.
    for pos, rule in (
        (1, ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"]),
        (2, ["-i", "ens33", "!", "-s", "192.0.2.0/24", "-j", "DROP"]),
    ):
        run(["iptables", "-I", "DOCKER-USER", str(pos), *rule], ns=lab.host)
    out = fetch_published(lab, "inet", 2.5)
    if "failed" not in out:
        raise RuntimeError(f"the allow-list let 203.0.113.10 through: {out}")


def _published_from_host(lab: Lab) -> None:
    out = fetch_published(lab, "h", 5)
    if "hello" not in out:
        raise RuntimeError(f"the published port from the host failed: {out}")


def _ipv6_setup(lab: Lab) -> None:
    h, inet = lab.host, lab.ns("inet")
    run(["ip", "-n", h, "-6", "addr", "add", "2001:db8:1::10/64", "dev", "ens33", "nodad"])
    run(["ip", "-n", h, "-6", "route", "add", "default", "via", "2001:db8:1::1"])
    run(["ip", "-n", inet, "-6", "addr", "add", "2001:db8:1::1/64", "dev", "eth0", "nodad"])
    run(["ip", "-n", inet, "-6", "addr", "add", f"{V6_INET_HOST}/128", "dev", "lo"])
    for c in ("c1", "c2"):
        run(["ip", "-n", lab.ns(c), "-6", "route", "add", "default", "via", "fd00:17::1"])
    # The lab's own IPv6 LOG rules match the container subnet only; this scenario's packets are
    # to or from the outside host (before and after MASQUERADE), so it logs those.
    from reportgen.lab.scenarios import SEED_IPT, ipt_prefix

    for table, chain in SEED_IPT:
        for match in (["-d", V6_INET_HOST], ["-s", V6_INET_HOST]):
            run(
                [
                    "ip6tables",
                    "-t",
                    table,
                    "-I",
                    chain,
                    "-p",
                    "ipv6-icmp",
                    *match,
                    "-j",
                    "LOG",
                    "--log-prefix",
                    ipt_prefix(lab.tag, table, chain, "colon", v6=True),
                    "--log-level",
                    "debug",
                ],
                ns=h,
            )


def _ipv6_to_outside(lab: Lab) -> None:
    ping(lab, "c1", V6_INET_HOST, v6=True)


def _rule_removed_after_trace(lab: Lab) -> None:
    rule = ["DOCKER-USER", "-p", "icmp", "-d", "203.0.113.10", "-j", "DROP"]
    run(["iptables", "-I", *rule], ns=lab.host)
    ping(lab, "c1", "203.0.113.10", expect_ok=False)
    run(["iptables", "-D", *rule], ns=lab.host)  # the snapshot, taken next, no longer has it


TRAPS: tuple[Scenario, ...] = (
    Scenario(
        "trap-nft-forward-drop",
        "Accepted by Docker's FORWARD chain, dropped by a native nft table",
        "container1 pings 203.0.113.10. Docker's iptables-nft FORWARD chain accepts it, but a user's own "
        "table inet usertrap has a forward chain with policy drop at priority 10: an accept ends only its "
        "own base chain, so the other table's drop is final. nft monitor trace shows both tables.",
        "icmp",
        "colon",
        _nft_forward_drop,
        log="none",
        trace="nft-monitor",
    ),
    Scenario(
        "trap-docker-user-allowlist",
        "Published port behind a DOCKER-USER allow-list",
        "DOCKER-USER lets only 192.0.2.0/24 reach published ports from ens33; the outside host "
        "198.51.100.1 connects to the published port 198.51.100.10:8080 and its SYN is dropped after the DNAT.",
        "tcp",
        "colon",
        _docker_user_allowlist,
    ),
    Scenario(
        "trap-published-port-from-host",
        "Published port reached from the host itself",
        "A process on the host connects to its own 198.51.100.10:8080: Docker's nat OUTPUT rule DNATs it "
        "to container1's port 80 and the packet is routed again, out through docker0.",
        "tcp",
        "colon",
        _published_from_host,
    ),
    Scenario(
        "trap-ipv6-container-to-outside",
        "IPv6 from a container to an outside host (MASQUERADE)",
        f"container1 (fd00:17::2) pings {V6_INET_HOST} behind ens33 (2001:db8:1::10/64); Docker's "
        "ip6tables MASQUERADE rule rewrites the source.",
        "icmp",
        "colon",
        _ipv6_to_outside,
        v6=True,
        setup=_ipv6_setup,
        log="ebtables",
    ),
    Scenario(
        "trap-rule-removed-after-trace",
        "Built to diverge: a drop rule deleted before the snapshot",
        "A DOCKER-USER rule drops ICMP to 203.0.113.10 while container1 pings it; the rule is deleted "
        "after the ping and before the snapshot is taken, so the snapshot predicts the ping gets through "
        "while the trace shows it stop in filter FORWARD. The report shows the divergence.",
        "icmp",
        "colon",
        _rule_removed_after_trace,
    ),
)
