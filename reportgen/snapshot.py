"""Collect a host snapshot read-only: the outputs reportgen reads, run on this host or in a netns.

A missing tool is recorded, not fatal: the manifest lists what could not be collected and why.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reportgen.parsers.snapshots import (
    BRNF_CALL_ARPTABLES,
    BRNF_CALL_IP6TABLES,
    BRNF_CALL_IPTABLES,
    IP_FORWARD,
    IPV6_FORWARDING,
    NF_LOG_ALL_NETNS,
    Kind,
)

# What each means, and the kernel documentation behind it, is beside its name in parsers/snapshots.py.
SYSCTLS = (
    BRNF_CALL_IPTABLES,
    BRNF_CALL_IP6TABLES,
    BRNF_CALL_ARPTABLES,
    IP_FORWARD,
    IPV6_FORWARDING,
    NF_LOG_ALL_NETNS,
)


@dataclass(frozen=True)
class Item:
    file: str
    argv: tuple[str, ...]
    kind: Kind
    # An attachment is kept for the reader (and parsed when reportgen can), not read as the host's view.
    attachment: bool = False


ITEMS: tuple[Item, ...] = (
    Item("ip-d-link.txt", ("ip", "-d", "link", "show"), Kind.IP_LINK),
    Item("ip-addr.txt", ("ip", "addr", "show"), Kind.IP_ADDR),
    Item("bridge-fdb.txt", ("bridge", "fdb", "show"), Kind.BRIDGE_FDB),
    Item("ip-link.json", ("ip", "-j", "-d", "link", "show"), Kind.IP_LINK_JSON, attachment=True),
    Item("ip-addr.json", ("ip", "-j", "addr", "show"), Kind.IP_ADDR_JSON, attachment=True),
    Item("bridge-fdb.json", ("bridge", "-j", "fdb", "show"), Kind.BRIDGE_FDB_JSON, attachment=True),
    Item("brctl-show.txt", ("brctl", "show"), Kind.BRCTL_SHOW),
    Item("route-n.txt", ("route", "-n"), Kind.ROUTE_N),
    Item("ip-route.txt", ("ip", "route", "show"), Kind.IP_ROUTE),
    Item("ip-6-route.txt", ("ip", "-6", "route", "show"), Kind.IP_ROUTE),
    Item("iptables-save.txt", ("iptables-save",), Kind.IPTABLES_SAVE, attachment=True),
    Item("ip6tables-save.txt", ("ip6tables-save",), Kind.IP6TABLES_SAVE, attachment=True),
    # Hosts may still run x_tables rules (iptables-legacy) beside, or instead of, nf_tables ones.
    Item("iptables-legacy-save.txt", ("iptables-legacy-save",), Kind.IPTABLES_SAVE, attachment=True),
    # -a prints rule handles, which nft monitor trace (nft -a monitor trace) names.
    Item("nft-ruleset.txt", ("nft", "-a", "list", "ruleset"), Kind.NFT_RULESET, attachment=True),
    Item("conntrack.txt", ("conntrack", "-L"), Kind.CONNTRACK, attachment=True),
    Item("conntrack6.txt", ("conntrack", "-L", "-f", "ipv6"), Kind.CONNTRACK, attachment=True),
    Item(
        "docker-network-inspect.json",
        ("docker", "network", "inspect", "bridge"),
        Kind.DOCKER_NETWORK,
        attachment=True,
    ),
)

Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _local(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def collect(out: Path, runner: Runner = _local, bridges: tuple[str, ...] = ()) -> dict[str, list[dict[str, str]]]:
    """Write snapshot files into out/ and return the manifest fragment (files, kinds, missing)."""
    out.mkdir(parents=True, exist_ok=True)
    snapshots: list[dict[str, str]] = []
    attachments: list[dict[str, str]] = []
    missing: list[dict[str, str]] = []
    items = list(ITEMS)
    items += [Item(f"brctl-showmacs-{b}.txt", ("brctl", "showmacs", b), Kind.BRCTL_SHOWMACS) for b in bridges]
    for item in items:
        if shutil.which(item.argv[0]) is None:
            missing.append({"file": item.file, "why": f"{item.argv[0]} is not installed"})
            continue
        r = runner(list(item.argv))
        if r.returncode != 0:
            missing.append(
                {"file": item.file, "why": f"{' '.join(item.argv)} exited {r.returncode}: {r.stderr.strip()[:200]}"}
            )
            continue
        (out / item.file).write_text(r.stdout, encoding="utf-8")
        (attachments if item.attachment else snapshots).append({"file": item.file, "kind": item.kind.value})
    lines = []
    for key in SYSCTLS:
        r = runner(["sysctl", key])
        if r.returncode == 0 and r.stdout.strip():
            lines.append(r.stdout.strip())
    (out / "sysctl.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    snapshots.append({"file": "sysctl.txt", "kind": Kind.SYSCTL.value})
    return {"snapshots": snapshots, "attachments": attachments, "missing": missing}
