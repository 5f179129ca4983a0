"""A host topology from the snapshots: bridges and ports, MACs, routes, addresses, endpoint names."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field

from reportgen.model import Snapshot
from reportgen.parsers.conntrack import Conntrack, CtEntry
from reportgen.parsers.docker import DockerNetworks
from reportgen.parsers.nft_ruleset import NftRuleset
from reportgen.parsers.ruleset import Ruleset
from reportgen.parsers.snapshots import (
    BRNF_CALL_IP6TABLES,
    BRNF_CALL_IPTABLES,
    IP_FORWARD,
    IPV6_FORWARDING,
    BrctlShow,
    Fdb,
    Kind,
    Links,
    Route,
    Routes,
    Sysctl,
)

__all__ = ["Route", "Topology", "brnf_key", "brnf_sysctl", "build_topology", "docker_mac_ip"]


@functools.lru_cache(maxsize=4096)
def _route_for(routes: tuple[Route, ...], addr: str) -> Route | None:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    best: tuple[int, int, Route] | None = None
    for r in routes:
        net = ipaddress.ip_network(r.dst, strict=False)
        if net.version == ip.version and ip in net:
            key = (-net.prefixlen, r.metric)
            if best is None or key < best[:2]:
                best = (key[0], key[1], r)
    return best[2] if best else None


@dataclass(frozen=True)
class Topology:
    """What the snapshots say about the host; every field may be empty."""

    bridges: dict[str, tuple[str, ...]] = field(default_factory=dict)
    iface_mac: dict[str, str] = field(default_factory=dict)
    fdb: dict[str, tuple[str, str]] = field(default_factory=dict)  # learned MAC -> (port, bridge)
    routes: tuple[Route, ...] = ()
    host_addrs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # iface -> CIDRs
    names: dict[str, str] = field(default_factory=dict)  # IP or MAC -> endpoint name
    sysctl: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # fact -> snapshot file it came from
    rulesets: dict[str, Ruleset] = field(default_factory=dict)  # family -> its rules
    conntrack: tuple[tuple[str, CtEntry], ...] = ()  # (snapshot name, entry)
    nft: tuple[tuple[str, NftRuleset], ...] = ()  # (snapshot name, parsed nft ruleset)
    veth_peer: dict[str, str] = field(default_factory=dict)  # host-side port -> "container1's eth0"

    def local_addrs(self) -> frozenset[str] | None:
        """The host's own addresses (for -m addrtype LOCAL), or None when no snapshot lists them."""
        return self._local_addrs

    # Asked for every packet delivered at INPUT: computed once from the snapshots (cached_property
    # writes the instance's __dict__, which a frozen dataclass without slots allows).
    @functools.cached_property
    def _local_addrs(self) -> frozenset[str] | None:
        if not self.host_addrs:
            return None
        return frozenset(c.split("/")[0] for cidrs in self.host_addrs.values() for c in cidrs)

    def bridge_of(self, port: str) -> str | None:
        return self._port_bridge.get(port)

    # bridge_of and mac_owner are asked per hop: each a lookup in a map built once (the first bridge
    # or interface listing a port or MAC answers, as a scan in order would).
    @functools.cached_property
    def _port_bridge(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for br, ports in self.bridges.items():
            for port in ports:
                out.setdefault(port, br)
        return out

    @functools.cached_property
    def _mac_dev(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for dev, mac in self.iface_mac.items():
            out.setdefault(mac, dev)
        return out

    def port_owner(self, port: str) -> str | None:
        """The container behind a bridge port, from its veth peer ("container2's eth0" -> container2)."""
        peer = self.veth_peer.get(port)
        return peer.split("'s ")[0] if peer else None

    def is_bridge(self, dev: str) -> bool:
        return dev in self.bridges

    def mac_owner(self, mac: str) -> str | None:
        return self._mac_dev.get(mac)

    def route_for(self, addr: str) -> Route | None:
        """Longest-prefix match, then lowest metric (fib lookup order, net/ipv4/fib_trie.c)."""
        return _route_for(self.routes, addr)

    def addr_on(self, addr: str, dev: str) -> str | None:
        """Say how an address belongs to an interface: a configured address or its connected net."""
        for cidr in self.host_addrs.get(dev, ()):
            if cidr.split("/")[0] == addr:
                return f"{addr} is configured on {dev}"
        r = self.route_for(addr)
        if r and r.dev == dev and r.gateway is None:
            return f"{addr} is on {dev}'s connected network {r.dst}"
        return None

    def addrs_of(self, dev: str, family: str) -> list[str]:
        """A device's addresses of one family ("ipv6", else IPv4), in the address snapshot's order."""
        return [c.split("/")[0] for c in self.host_addrs.get(dev, ()) if (":" in c) == (family == "ipv6")]

    def first_addr(self, dev: str, family: str) -> str | None:
        """The address the kernel picks on a device: its first (primary) one of the family, global first
        (inet_select_addr, net/ipv4/devinet.c; ipv6_dev_get_saddr prefers global scope)."""
        fam = self.addrs_of(dev, family)
        fam.sort(key=lambda a: ipaddress.ip_address(a).is_link_local)
        return fam[0] if fam else None

    def broadcast_on(self, addr: str) -> str | None:
        """The host interface and network whose IPv4 broadcast address ``addr`` is ("172.17.255.255 is
        the broadcast address of 172.17.0.0/16 on docker0"), from the address snapshots; None when no
        snapshot says so. The kernel adds a broadcast route for each such address and delivers to it
        locally (fib_add_ifaddr() adds RTN_BROADCAST for the prefix's broadcast, net/ipv4/fib_frontend.c;
        a /31 or /32 has none)."""
        return self._broadcasts.get(addr)

    @functools.cached_property
    def _broadcasts(self) -> dict[str, str]:
        """broadcast_on's answers, one per host IPv4 network of a /30 or wider (the first interface
        listing it names it)."""
        found: dict[str, str] = {}
        for dev, cidrs in self.host_addrs.items():
            for cidr in cidrs:
                try:
                    net = ipaddress.ip_interface(cidr).network
                except ValueError:
                    continue
                if net.version == 4 and net.prefixlen < 31:
                    found.setdefault(str(net.broadcast_address), f"the broadcast address of {net} on {dev}")
        return found

    def brnf(self, family: str) -> str | None:
        """The value of the sysctl that gates br_netfilter's IP hooks for this family, if snapshotted."""
        return self.sysctl.get(brnf_sysctl(family))

    def brnf_on(self, family: str) -> bool | None:
        """Whether br_netfilter hands bridged frames of this family to the IP hooks; None when no
        snapshot has the sysctl. br_nf_pre_routing() passes the frame on untouched while the value is 0
        (net/bridge/br_netfilter_hooks.c: ``if (!brnet->call_iptables && !br_opt_get(br,
        BROPT_NF_CALL_IPTABLES)) return NF_ACCEPT``); writing any other number stores 1
        (brnf_sysctl_call_tables()), so every value but "0" means on."""
        val = self.brnf(family)
        return None if val is None else val != "0"

    def forwarding(self, family: str) -> tuple[str, bool | None]:
        """The sysctl that lets the host route between interfaces for this family, and whether it is on
        (None: not snapshotted). Documentation/networking/ip-sysctl.rst: ip_forward "0 - disabled
        (default), not 0 - enabled"; conf/all/forwarding (IPv6) likewise, and ip6_forward() drops
        what it may not forward (net/ipv6/ip6_output.c: ``if (net->ipv6.devconf_all->forwarding == 0)
        goto error``)."""
        key = IPV6_FORWARDING if family == "ipv6" else IP_FORWARD
        val = self.sysctl.get(key)
        return key, None if val is None else val != "0"

    def name(self, addr_or_mac: str | None) -> str | None:
        if not addr_or_mac:
            return None
        if addr_or_mac in self.names:
            return self.names[addr_or_mac]
        dev = self.mac_owner(addr_or_mac)
        if dev:
            return f"{dev}'s own MAC"
        docker_ip = docker_mac_ip(addr_or_mac)
        if docker_ip:
            # Docker derives a container's MAC from its IPv4 address (02:42 + the four bytes,
            # libnetwork netutils.GenerateMACFromIP), so the MAC names the container's address.
            return (
                f"{self.names[docker_ip]}, {docker_ip}"
                if docker_ip in self.names
                else f"container {docker_ip} (Docker MAC)"
            )
        dev = self.mac_owner(addr_or_mac)
        if dev:
            return f"{dev}'s own MAC"
        for dev, cidrs in self.host_addrs.items():
            if any(c.split("/")[0] == addr_or_mac for c in cidrs):
                return f"host address on {dev}"
        return None


def brnf_key(family: str) -> str:
    """The br_netfilter sysctl for a family under net.bridge ("bridge-nf-call-iptables"), as the
    explanations name it (net/bridge/br_netfilter_hooks.c brnf_table)."""
    return brnf_sysctl(family)[len("net.bridge.") :]


def brnf_sysctl(family: str) -> str:
    """The br_netfilter sysctl's full name for a family."""
    return BRNF_CALL_IP6TABLES if family == "ipv6" else BRNF_CALL_IPTABLES


@functools.lru_cache(maxsize=4096)  # a pure function of the text; a trace names the same few MACs
def docker_mac_ip(mac: str) -> str | None:
    """Return the IPv4 address a Docker-generated MAC encodes (02:42:a:b:c:d), or None."""
    parts = mac.split(":")
    if len(parts) != 6 or parts[:2] != ["02", "42"]:
        return None
    try:
        octets = [int(x, 16) for x in parts[2:]]
    except ValueError:
        return None
    if not all(0 <= o <= 255 for o in octets):  # a damaged MAC ("ac:6640481"): no address in it
        return None
    # The bridge's own MAC is random 02:42:xx too; Docker's pools are RFC 1918 ranges, so only those
    # are taken as an encoded address.
    ip = ".".join(map(str, octets))
    rfc1918 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    return ip if any(ipaddress.ip_address(ip) in ipaddress.ip_network(n) for n in rfc1918) else None


def build_topology(snapshots: tuple[Snapshot, ...]) -> Topology:
    """Merge every snapshot into one Topology."""
    bridges: dict[str, dict[str, None]] = {}  # bridge -> its ports, in the order first seen
    iface_mac: dict[str, str] = {}
    fdb: dict[str, tuple[str, str]] = {}
    routes: list[Route] = []
    host_addrs: dict[str, tuple[str, ...]] = {}
    names: dict[str, str] = {}
    sysctl: dict[str, str] = {}
    sources: dict[str, str] = {}
    rulesets: dict[str, Ruleset] = {}
    conntrack: list[tuple[str, CtEntry]] = []
    nft: list[tuple[str, NftRuleset]] = []
    host_index: dict[int, str] = {}
    peers: list[tuple[str, str, int]] = []  # (container, its interface, the peer's ifindex on the host)
    # ``ip -j`` and ``bridge -j`` say what the text outputs say; they are read only where no text
    # snapshot of that host's links (or of the FDB) is given, so the facts cite the text when both are.
    parsed = [s for s in snapshots if s.data is not None]
    text_links = {s.host for s in parsed if s.kind in (Kind.IP_LINK, Kind.IP_ADDR)}
    fdb_kinds = (Kind.BRIDGE_FDB,) if any(s.kind == Kind.BRIDGE_FDB for s in parsed) else (Kind.BRIDGE_FDB_JSON,)
    for snap in parsed:
        data = snap.data
        host = snap.host
        if isinstance(data, Links) and (
            snap.kind in (Kind.IP_LINK, Kind.IP_ADDR)
            or (snap.kind in (Kind.IP_LINK_JSON, Kind.IP_ADDR_JSON) and host not in text_links)
        ):
            for itf in data.interfaces:
                if host != "host":
                    # A container's own view: name its addresses and MAC after it. Its "eth0@ifN"
                    # names the host-side veth by index (ip-link(8): the peer's ifindex).
                    if itf.peer_ifindex:
                        peers.append((host, itf.name, itf.peer_ifindex))
                    if itf.name != "lo":
                        for cidr in itf.addresses:
                            names[cidr.split("/")[0]] = host
                        if itf.mac:
                            names[itf.mac] = host
                    continue
                if itf.mac:
                    iface_mac[itf.name] = itf.mac
                if itf.index:
                    host_index[itf.index] = itf.name
                if itf.master:
                    bridges.setdefault(itf.master, {})[itf.name] = None
                    sources[f"port:{itf.name}"] = snap.name
                if itf.addresses:
                    host_addrs[itf.name] = itf.addresses
        elif snap.kind == Kind.BRCTL_SHOW and isinstance(data, BrctlShow):
            for br in data.bridges:
                bridges.setdefault(br.name, {}).update(dict.fromkeys(br.ports))
        elif snap.kind in fdb_kinds and isinstance(data, Fdb):
            for e in data.entries:
                if e.master and e.dev is not None and not e.permanent and e.dev != e.master:
                    fdb[e.mac] = (e.dev, e.master)
                    sources[f"fdb:{e.mac}"] = f"{snap.name}:{e.line}"
                if e.master and e.dev == e.master:
                    bridges.setdefault(e.master, {})
        elif snap.kind in (Kind.ROUTE_N, Kind.IP_ROUTE) and isinstance(data, Routes):
            routes += data.routes
            if data.routes:
                sources.setdefault("routes", snap.name)
        elif snap.kind == Kind.SYSCTL and isinstance(data, Sysctl):
            sysctl.update(data.values)
            sources.setdefault("sysctl", snap.name)
        elif snap.kind in (Kind.IPTABLES_SAVE, Kind.IP6TABLES_SAVE, Kind.EBTABLES_SAVE) and isinstance(data, Ruleset):
            data.source = snap.name
            # With both iptables-nft and iptables-legacy saved, the one holding rules is the live one.
            count = sum(len(c.rules) for chains in data.tables.values() for c in chains.values())
            old = rulesets.get(data.family)
            if old is None or count > sum(len(c.rules) for ch in old.tables.values() for c in ch.values()):
                rulesets[data.family] = data
        elif snap.kind == Kind.NFT_RULESET and isinstance(data, NftRuleset):
            nft.append((snap.name, data))
        elif snap.kind == Kind.CONNTRACK and isinstance(data, Conntrack):
            conntrack += [(snap.name, e) for e in data.entries]
        elif snap.kind == Kind.DOCKER_NETWORK and isinstance(data, DockerNetworks):
            for net in data.networks:
                bridges.setdefault(net.bridge, {})
                for c in net.containers:
                    for key in (c.ipv4, c.ipv6, c.mac):
                        if key and c.name:
                            names[key] = c.name
    veth_peer = {host_index[idx]: f"{who}'s {ifname}" for who, ifname, idx in peers if idx in host_index}
    # Without an iptables-save snapshot, the nft ruleset is evaluated instead (the same rules, for
    # iptables-nft hosts; a native nft ruleset otherwise).
    from reportgen.parsers.nft_rules import rulesets_from_nft

    for name, tables in nft:
        for fam, rs in rulesets_from_nft(tables, name).items():
            if fam not in rulesets or not any(c.rules for ch in rulesets[fam].tables.values() for c in ch.values()):
                rulesets[fam] = rs
    return Topology(
        veth_peer=veth_peer,
        bridges={k: tuple(v) for k, v in sorted(bridges.items())},
        iface_mac=iface_mac,
        fdb=fdb,
        routes=tuple(routes),
        host_addrs=host_addrs,
        names=names,
        sysctl=sysctl,
        sources=sources,
        rulesets=rulesets,
        conntrack=tuple(conntrack),
        nft=tuple(nft),
    )
