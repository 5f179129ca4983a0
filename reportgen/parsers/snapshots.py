"""Parse host snapshot outputs as people paste them: ip link/addr, bridge fdb, brctl, routes, sysctl.

Each parser takes the whole text and returns plain data (lists of dicts, jc style). ``detect_kind``
recognises a snapshot by its content, so files given without a manifest need no naming convention.
Lines a parser does not understand are returned under ``"unparsed"`` with their numbers.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

_IPLINK_HEAD = re.compile(r"^(?P<idx>\d+): (?P<name>[^:@\s]+)(?:@(?P<peer>[^:\s]+))?: <(?P<flags>[^>]*)>(?P<rest>.*)$")
_FDB = re.compile(r"^(?P<mac>[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}) dev (?P<dev>\S+)(?P<rest>.*)$")
_SYSCTL = re.compile(r"^(?P<key>[a-z][\w.\-/]+)\s*=\s*(?P<value>.*?)\s*$")
_SHOWMACS = re.compile(r"^\s*(?P<port>\d+)\s+(?P<mac>[0-9a-fA-F:]{17})\s+(?P<local>yes|no)\s+(?P<age>[\d.]+)")


def detect_kind(text: str) -> str | None:
    """Return the snapshot kind of a text, or None when it is not a known snapshot."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    first = lines[0].strip()
    if first.startswith("bridge name"):
        return "brctl-show"
    if first.startswith("port no"):
        return "brctl-showmacs"
    if first.startswith("Kernel IP routing table") or first.startswith("Kernel IPv6 routing table"):
        return "route-n"
    if _IPLINK_HEAD.match(first):
        return "ip-addr" if any(re.match(r"^\s+inet6? ", ln) for ln in lines) else "ip-link"
    if all(_FDB.match(ln) for ln in lines[:5]):
        return "bridge-fdb"
    if all(_SYSCTL.match(ln) and ln.startswith("net.") for ln in lines[:5]):
        return "sysctl"
    if re.match(r"^(default|unreachable|blackhole|local|broadcast|[\d.]+(/\d+)?|[0-9a-f:]+/\d+) ", first) and \
            " dev " in text:
        return "ip-route"
    return None


def parse_ip_link(text: str) -> dict[str, Any]:
    """Parse ``ip link show`` / ``ip addr``: interfaces, veth peers, masters, MACs and addresses."""
    ifaces: list[dict[str, Any]] = []
    unparsed: list[tuple[int, str]] = []
    cur: dict[str, Any] | None = None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _IPLINK_HEAD.match(line)
        if m:
            rest = m.group("rest")
            master = re.search(r"\bmaster (\S+)", rest)
            cur = {
                "index": int(m.group("idx")), "name": m.group("name"), "peer_ifindex": None,
                "flags": m.group("flags").split(","), "master": master.group(1) if master else None,
                "mac": None, "link_type": None, "link_netnsid": None, "addresses": [],
            }
            peer = m.group("peer")
            if peer and peer.startswith("if") and peer[2:].isdigit():
                cur["peer_ifindex"] = int(peer[2:])  # "@ifN": the veth peer's index in its netns
            ifaces.append(cur)
            continue
        s = line.strip()
        if cur is not None and s.startswith("link/"):
            parts = s.split()
            cur["link_type"] = parts[0][5:]
            if len(parts) > 1 and re.fullmatch(r"[0-9a-f:]{17}", parts[1]):
                cur["mac"] = parts[1]
            ns = re.search(r"link-netnsid (\d+)", s)
            if ns:
                cur["link_netnsid"] = int(ns.group(1))
        elif cur is not None and re.match(r"inet6? ", s):
            parts = s.split()
            cur["addresses"].append(parts[1])
        elif cur is not None and (s.startswith("valid_lft") or s.startswith("altname") or
                                  s.startswith("bridge") or s.startswith("veth") or s.startswith("vlan")):
            continue
        else:
            unparsed.append((n, line))
    return {"interfaces": ifaces, "unparsed": unparsed}


def parse_bridge_fdb(text: str) -> dict[str, Any]:
    """Parse ``bridge fdb``: MAC, port, master bridge, vlan, and whether it is local (permanent)."""
    entries, unparsed = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        m = _FDB.match(line.strip())
        if not m:
            if line.strip():
                unparsed.append((n, line))
            continue
        rest = m.group("rest").split()
        master = rest[rest.index("master") + 1] if "master" in rest else None
        vlan = int(rest[rest.index("vlan") + 1]) if "vlan" in rest else None
        entries.append({
            "mac": m.group("mac").lower(), "dev": m.group("dev"), "master": master, "vlan": vlan,
            "self": "self" in rest, "permanent": "permanent" in rest, "line": n,
        })
    return {"entries": entries, "unparsed": unparsed}


def parse_brctl_show(text: str) -> dict[str, Any]:
    """Parse ``brctl show``: bridges with their id, STP state and ports (continuation lines)."""
    bridges: list[dict[str, Any]] = []
    for line in text.splitlines()[1:]:
        if not line.strip():
            continue
        parts = line.split()
        if not line[0].isspace():
            bridges.append({"name": parts[0], "id": parts[1] if len(parts) > 1 else None,
                            "stp": parts[2] if len(parts) > 2 else None, "ports": parts[3:4]})
        elif bridges:
            bridges[-1]["ports"].extend(parts)
    return {"bridges": bridges}


def parse_brctl_showmacs(text: str) -> dict[str, Any]:
    """Parse ``brctl showmacs BRIDGE``: port number, MAC, local flag, ageing timer."""
    rows = []
    for line in text.splitlines()[1:]:
        m = _SHOWMACS.match(line)
        if m:
            rows.append({"port_no": int(m.group("port")), "mac": m.group("mac").lower(),
                         "local": m.group("local") == "yes", "ageing": float(m.group("age"))})
    return {"macs": rows}


def parse_route_n(text: str) -> dict[str, Any]:
    """Parse ``route -n`` (net-tools): destination, gateway, genmask, flags, metric, interface."""
    routes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 8 and re.fullmatch(r"[\d.]+", parts[0]) and re.fullmatch(r"[\d.]+", parts[2]):
            net = ipaddress.ip_network(f"{parts[0]}/{parts[2]}", strict=False)
            routes.append({"dst": str(net), "gateway": None if parts[1] == "0.0.0.0" else parts[1],
                           "flags": parts[3], "metric": int(parts[4]), "dev": parts[7]})
    return {"routes": routes}


def parse_ip_route(text: str) -> dict[str, Any]:
    """Parse ``ip route`` / ``ip -6 route``: prefix, via, dev, metric, src, scope."""
    routes = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or " dev " not in f" {line} ":
            continue
        dst = parts[0]
        if dst in ("unreachable", "blackhole", "local", "broadcast") and len(parts) > 1:
            dst = parts[1]
        if dst == "default":
            dst = "::/0" if ":" in line.split(" via ")[-1].split()[0] else "0.0.0.0/0"

        def opt(key: str, parts: list[str] = parts) -> str | None:
            return parts[parts.index(key) + 1] if key in parts[:-1] else None

        try:
            net = str(ipaddress.ip_network(dst, strict=False))
        except ValueError:
            continue
        metric = opt("metric")
        routes.append({"dst": net, "gateway": opt("via"), "dev": opt("dev"), "src": opt("src"),
                       "metric": int(metric) if metric else 0, "scope": opt("scope")})
    return {"routes": routes}


def parse_sysctl(text: str) -> dict[str, Any]:
    """Parse ``sysctl`` output lines ``key = value``."""
    values = {}
    for line in text.splitlines():
        m = _SYSCTL.match(line.strip())
        if m:
            values[m.group("key").replace("/", ".")] = m.group("value")
    return {"values": values}


PARSERS = {
    "ip-link": parse_ip_link,
    "ip-addr": parse_ip_link,
    "bridge-fdb": parse_bridge_fdb,
    "brctl-show": parse_brctl_show,
    "brctl-showmacs": parse_brctl_showmacs,
    "route-n": parse_route_n,
    "ip-route": parse_ip_route,
    "sysctl": parse_sysctl,
}
