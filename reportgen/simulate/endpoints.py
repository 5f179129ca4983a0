"""Resolve the simulator's --from/--to words into places on the host: addresses, names, interfaces.

An endpoint is the host itself (``host``, one of its addresses, or one of its interfaces), a
container or other neighbour behind a bridge port (an address on a bridge's connected network, or
a name from ``docker network inspect`` / a container's own ``ip addr``), or a host outside (any
other address: it arrives on the interface the routes imply, or the one given with --in).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from reportgen.explain.topology import Topology, docker_mac_ip


class SimulateError(ValueError):
    """A simulation question the snapshots cannot answer as asked (bad endpoint, unknown interface)."""


class Where(StrEnum):
    """Where an endpoint sits relative to the host."""

    HOST = "host"  # the host's own stack
    PORT = "port"  # behind a bridge port (a container, a VM)
    OUTSIDE = "outside"  # reached through a routed interface


@dataclass(frozen=True)
class Place:
    """One end of the simulated packet."""

    where: Where
    addr: str | None  # None: the host, its address chosen by the route (source address selection)
    name: str  # how the report names it
    iface: str = ""  # OUTSIDE: the interface it is reached by; PORT: the bridge port
    bridge: str = ""  # PORT: the bridge the port belongs to
    mac: str | None = None  # PORT: its MAC, when a snapshot or Docker's MAC scheme gives it
    how: str = ""  # the evidence for the resolution, printed among the assumptions


def _is_addr(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def family_of(addr: str) -> str:
    return "ipv6" if ipaddress.ip_address(addr).version == 6 else "ipv4"


def mac_of(topo: Topology, addr: str) -> tuple[str | None, str]:
    """The MAC behind an address: the same name's MAC in a snapshot, else Docker's MAC scheme."""
    name = topo.names.get(addr)
    if name:
        for key, who in sorted(topo.names.items()):
            if who == name and key.count(":") == 5 and not _is_addr(key):
                return key, f"{name}'s MAC {key} (its ip addr / docker network inspect)"
    for mac in sorted(topo.fdb):
        if docker_mac_ip(mac) == addr:
            # libnetwork netutils.GenerateMACFromIP: 02:42 followed by the IPv4 address.
            return mac, f"Docker's MAC for {addr} is {mac} (02:42 + the address), learned in the bridge FDB"
    return None, ""


def _local_iface(topo: Topology, addr: str) -> str | None:
    for dev, cidrs in sorted(topo.host_addrs.items()):
        if any(c.split("/")[0] == addr for c in cidrs):
            return dev
    return None


def _by_name(topo: Topology, name: str, family: str | None) -> str | None:
    addrs = sorted(k for k, v in topo.names.items() if v == name and _is_addr(k))
    for want in (family, "ipv4", "ipv6"):
        for a in addrs:
            if want is None or family_of(a) == want:
                return a
    return None


def resolve(text: str, topo: Topology, family: str | None = None, in_iface: str | None = None) -> Place:
    """Turn an endpoint word into a Place; ``family`` picks a name's address when it has both."""
    word = text.strip()
    if word == "host":
        return Place(Where.HOST, None, "the host", how="'host': the host's own stack")
    if word in topo.host_addrs or word in topo.iface_mac:
        addrs = [c.split("/")[0] for c in topo.host_addrs.get(word, ())]
        pick = next((a for a in addrs if family is None or family_of(a) == family), None)
        if pick is None:
            raise SimulateError(f"interface {word} has no {family or 'IP'} address in the ip addr snapshot")
        return Place(Where.HOST, pick, f"{word} ({pick})", how=f"{pick} is configured on {word} (ip addr)")
    addr = word if _is_addr(word) else _by_name(topo, word, family)
    if addr is None:
        known = sorted({v for k, v in topo.names.items() if _is_addr(k)})
        raise SimulateError(
            f"{word!r} is not an address, 'host', an interface or a known name"
            + (f" (known names: {', '.join(known)})" if known else "")
        )
    addr = str(ipaddress.ip_address(addr))
    label = f"{word} ({addr})" if word != addr else (f"{addr} ({topo.names[addr]})" if addr in topo.names else addr)
    dev = _local_iface(topo, addr)
    if dev is not None:
        return Place(Where.HOST, addr, label, how=f"{addr} is configured on the host's {dev} (ip addr)")
    route = topo.route_for(addr)
    if in_iface:
        ifaces = set(topo.iface_mac) | set(topo.host_addrs) | {p for ports in topo.bridges.values() for p in ports}
        if in_iface not in ifaces:
            raise SimulateError(f"--in {in_iface}: no such interface in the ip link / ip addr snapshots")
        br = topo.bridge_of(in_iface)
        if br:
            mac, why = mac_of(topo, addr)
            return Place(Where.PORT, addr, label, in_iface, br, mac, f"--in {in_iface}, a port of {br}")
        return Place(Where.OUTSIDE, addr, label, in_iface, how=f"--in {in_iface}")
    if route is None:
        raise SimulateError(
            f"no route to {addr} in the snapshots, so the interface it is reached by is unknown; "
            "give --in IFACE or add an ip route snapshot"
        )
    if topo.is_bridge(route.dev) and route.gateway is None:
        mac, why = mac_of(topo, addr)
        port = topo.fdb[mac][0] if mac and mac in topo.fdb else ""
        how = f"route {route.dst} dev {route.dev} (a bridge)"
        how += f"; {why}; the FDB has it on port {port}" if port else "; its MAC is not in the FDB snapshot"
        return Place(Where.PORT, addr, label, port, route.dev, mac, how)
    via = f" via {route.gateway}" if route.gateway else ""
    return Place(
        Where.OUTSIDE,
        addr,
        label,
        route.dev,
        how=f"{addr} is not the host's; route {route.dst}{via} dev {route.dev} reaches it",
    )
