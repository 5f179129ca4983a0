"""Collect a host snapshot read-only: the outputs reportgen reads, run on this host or in a netns.

A missing tool is recorded, not fatal: the manifest lists what could not be collected and why.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SYSCTLS = (
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.bridge.bridge-nf-call-arptables",
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "net.netfilter.nf_log_all_netns",
)


@dataclass(frozen=True)
class Item:
    file: str
    argv: tuple[str, ...]
    kind: str  # snapshot kind, or "attachment:<what>" for outputs reportgen keeps but does not parse yet


ITEMS: tuple[Item, ...] = (
    Item("ip-d-link.txt", ("ip", "-d", "link", "show"), "ip-link"),
    Item("ip-addr.txt", ("ip", "addr", "show"), "ip-addr"),
    Item("bridge-fdb.txt", ("bridge", "fdb", "show"), "bridge-fdb"),
    Item("ip-link.json", ("ip", "-j", "-d", "link", "show"), "attachment:ip-link-json"),
    Item("ip-addr.json", ("ip", "-j", "addr", "show"), "attachment:ip-addr-json"),
    Item("bridge-fdb.json", ("bridge", "-j", "fdb", "show"), "attachment:bridge-fdb-json"),
    Item("brctl-show.txt", ("brctl", "show"), "brctl-show"),
    Item("route-n.txt", ("route", "-n"), "route-n"),
    Item("ip-route.txt", ("ip", "route", "show"), "ip-route"),
    Item("ip-6-route.txt", ("ip", "-6", "route", "show"), "ip-route"),
    Item("iptables-save.txt", ("iptables-save",), "attachment:iptables-save"),
    Item("ip6tables-save.txt", ("ip6tables-save",), "attachment:ip6tables-save"),
    # Hosts may still run x_tables rules (iptables-legacy) beside, or instead of, nf_tables ones.
    Item("iptables-legacy-save.txt", ("iptables-legacy-save",), "attachment:iptables-save"),
    # -a prints rule handles, which nft monitor trace (nft -a monitor trace) names.
    Item("nft-ruleset.txt", ("nft", "-a", "list", "ruleset"), "attachment:nft-ruleset"),
    Item("conntrack.txt", ("conntrack", "-L"), "attachment:conntrack"),
    Item("conntrack6.txt", ("conntrack", "-L", "-f", "ipv6"), "attachment:conntrack"),
    Item("docker-network-inspect.json", ("docker", "network", "inspect", "bridge"), "attachment:docker-network"),
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
    items += [Item(f"brctl-showmacs-{b}.txt", ("brctl", "showmacs", b), "brctl-showmacs") for b in bridges]
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
        if item.kind.startswith("attachment:"):
            attachments.append({"file": item.file, "kind": item.kind.split(":", 1)[1]})
        else:
            snapshots.append({"file": item.file, "kind": item.kind})
    lines = []
    for key in SYSCTLS:
        r = runner(["sysctl", key])
        if r.returncode == 0 and r.stdout.strip():
            lines.append(r.stdout.strip())
    (out / "sysctl.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    snapshots.append({"file": "sysctl.txt", "kind": "sysctl"})
    return {"snapshots": snapshots, "attachments": attachments, "missing": missing}
