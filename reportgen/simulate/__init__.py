"""What-if: simulate a packet through a host's snapshot (ip addr, routes, FDB, rulesets, sysctl).

``simulate()`` answers "what would happen to a packet from A to B" with the same report model a
trace produces; every hop is a prediction, marked as such, and rests on the assumptions the report
lists. See docs/simulate.md for what is modelled and what is not.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path

from reportgen.explain.answer import answer_case
from reportgen.explain.crossing import crossings
from reportgen.explain.topology import Topology, build_topology
from reportgen.model import Endpoint, InputFile, Packet, Report, Snapshot, VerdictCode
from reportgen.simulate.chains import base_chains, hairpin_modes
from reportgen.simulate.endpoints import Place, SimulateError, Where, family_of, resolve
from reportgen.simulate.report import conversation_of, packet_of
from reportgen.simulate.walk import Pkt, Simulator, Walk

__all__ = ["Query", "SimulateError", "Simulation", "simulate", "simulate_case", "simulate_report"]

DEFAULT_SPORT = 40000  # an ephemeral port (ip_local_port_range starts at 32768); rules rarely look at it
PROTOS = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP"}


@dataclass(frozen=True)
class Query:
    """The question: from where to where, which protocol and ports, in which conntrack state."""

    src: str
    dst: str
    proto: str = "icmp"  # tcp, udp or icmp
    dport: int | None = None
    sport: int | None = None
    in_iface: str | None = None
    assume_ct: str = "new"  # new or established


@dataclass(frozen=True)
class Simulation:
    """The walks of the request (one per branch) and of the replies, and what they assumed."""

    request: tuple[Walk, ...]
    replies: tuple[tuple[int, Walk], ...]  # (index of the request branch, one reply branch)
    assumptions: tuple[str, ...]
    src: Place
    dst: Place
    proto: str
    family: str

    @property
    def verdicts(self) -> tuple[VerdictCode, ...]:
        return tuple(w.outcome.code for w in self.request if w.outcome is not None)


def _family(q: Query) -> str | None:
    for word in (q.src, q.dst):
        try:
            return family_of(str(ipaddress.ip_address(word)))
        except ValueError:
            continue
    return None


def _host_addr(sim: Simulator, other: str | None, family: str) -> tuple[str, str]:
    """The host address a packet to/from ``other`` uses: the first address of the device the route to
    ``other`` takes (inet_select_addr on the out device, net/ipv4/devinet.c)."""
    dev = None
    if other is not None:
        dev, _, _ = sim.route(other)
    if dev == "local" and other is not None:
        # A route of the local table gives the destination itself as source (ip_route_output_key_hash_rcu,
        # net/ipv4/route.c: RTN_LOCAL, saddr = daddr).
        return other, f"{other} itself (a packet to a local address leaves from it, over lo)"
    if dev in (None, "local"):
        addr = next(
            (a for a in sorted(sim.local) if family_of(a) == family and not ipaddress.ip_address(a).is_loopback), None
        )
        if addr is None:
            raise SimulateError(f"the snapshots list no {family} address of the host")
        return addr, f"the host's address {addr}"
    addr = sim.first_addr(dev or "", family)
    if addr is None:
        raise SimulateError(
            f"{dev} has no {family} address in the ip addr snapshot; give the host's address instead of 'host'"
        )
    return addr, f"the host's address on {dev}, {addr} (the route to {other} leaves by {dev})"


def _dst_mac(sim: Simulator, src: Place, dst: str) -> tuple[str | None, str]:
    """The destination MAC a neighbour behind a bridge port puts on its frame."""
    dev, _, _ = sim.route(dst)
    own = sim.topo.iface_mac.get(src.bridge)
    if dev == src.bridge:
        port, mac, why = sim.port_of(src.bridge, dst)
        return mac, f"{dst} is on {src.bridge}'s network, so {src.name} sends to its MAC directly ({why})"
    return own, (
        f"{dst} is not on {src.bridge}'s network, so {src.name} sends to its gateway, assumed to be "
        f"{src.bridge}'s address (Docker's default), whose MAC is {own}"
    )


def simulate(snapshots: tuple[Snapshot, ...], q: Query, topo: Topology | None = None) -> Simulation:
    """Simulate the request and, where it gets through, the reply."""
    topo = topo or build_topology(snapshots)
    sim = Simulator(topo, base_chains(snapshots), hairpin_modes(snapshots))
    if q.proto not in PROTOS:
        raise SimulateError(f"protocol {q.proto!r}: choose tcp, udp or icmp")
    if q.proto != "icmp" and q.dport is None:
        raise SimulateError(f"--dport is needed for {q.proto}")
    fam0 = _family(q)
    src = resolve(q.src, topo, fam0, q.in_iface)
    fam = fam0 or (family_of(src.addr) if src.addr else None)
    dst = resolve(q.dst, topo, fam)
    family = fam or (family_of(dst.addr) if dst.addr else "ipv4")
    notes: list[str] = [f"From {src.name}: {src.how}.", f"To {dst.name}: {dst.how}."]
    saddr, daddr = src.addr, dst.addr
    if saddr is None:
        saddr, why = _host_addr(sim, daddr, family)
        notes.append(f"Source address: {why}.")
    if daddr is None:
        daddr, why = _host_addr(sim, saddr, family)
        notes.append(f"Destination address: {why}.")
    if family_of(saddr) != family_of(daddr):
        raise SimulateError(f"{saddr} and {daddr} are of different IP families")
    proto = "ICMPv6" if q.proto == "icmp" and family == "ipv6" else PROTOS[q.proto]
    ct = "NEW" if q.assume_ct == "new" else "ESTABLISHED"
    sport = q.sport if q.sport is not None else (None if q.proto == "icmp" else DEFAULT_SPORT)
    if q.proto != "icmp" and q.sport is None:
        notes.append(f"Source port assumed {DEFAULT_SPORT} (an ephemeral port; give --sport to change it).")
    notes.append(
        f"Conntrack state assumed {ct}"
        + (
            " (the connection's first packet; --assume-ct established for a later one)."
            if ct == "NEW"
            else " (--assume-ct)."
        )
    )
    notes.append("No packet mark is assumed before the rules set one (mark 0).")
    p = Pkt(
        family,
        proto,
        saddr,
        daddr,
        sport,
        q.dport,
        ct,
        tcp_flags=(("SYN",) if ct == "NEW" else ("ACK",)) if proto == "TCP" else (),
        icmp_type=(128 if family == "ipv6" else 8) if proto.startswith("ICMP") else None,
    )
    if src.where == Where.PORT:
        mac_dst, why = _dst_mac(sim, src, daddr)
        notes.append(why[0].upper() + why[1:] + ".")
        p = replace(p, mac_src=src.mac, mac_dst=mac_dst)
        if not src.iface:
            raise SimulateError(
                f"the bridge port of {src.name} is unknown (its MAC is not in the FDB snapshot); give --in PORT"
            )
    request = tuple(sim.walk(src, p))
    replies: list[tuple[int, Walk]] = []
    for i, w in enumerate(request):
        back = _reply_start(sim, w)
        if back is None:
            continue
        place, rp = back
        replies += [(i, r) for r in sim.walk(place, rp, reverse=w.nats)]
    for fam in (family, "bridge"):
        if not any(f == fam for f, _ in sim.chains):
            notes.append(
                f"No {fam} ruleset in the snapshots: its hooks are taken to have no chains (nothing "
                "filters or translates there). Add iptables-save / ebtables-save / nft list ruleset to "
                "know."
            )
    notes += list(sim.assumed)
    undecided = sorted(sim.undecided.items())
    if undecided:
        notes.append(
            "Matches the snapshot cannot decide (the walk forks on each): "
            + "; ".join(f"{m} ({n}×)" for m, n in undecided)
            + "."
        )
    return Simulation(request, tuple(replies), tuple(notes), src, dst, proto, family)


def _reply_start(sim: Simulator, w: Walk) -> tuple[Place, Pkt] | None:
    """Where the reply starts: the request's end point, with addresses and ports swapped."""
    o, p = w.outcome, w.pkt
    if (
        o is None
        or p is None
        or o.code not in (VerdictCode.DELIVERED_LOCAL, VerdictCode.DELIVERED_TO_PORT, VerdictCode.FORWARDED_OUT)
    ):
        return None
    proto = p.proto
    r = Pkt(
        p.family,
        proto,
        p.dst,
        p.src,
        p.dport,
        p.sport,
        "ESTABLISHED",
        tcp_flags=("SYN", "ACK") if proto == "TCP" else (),
        icmp_type=(129 if p.family == "ipv6" else 0) if proto.startswith("ICMP") else None,
    )
    if o.code == VerdictCode.DELIVERED_LOCAL:
        return Place(Where.HOST, p.dst, "the host"), r
    if o.code == VerdictCode.FORWARDED_OUT:
        return Place(Where.OUTSIDE, p.dst, p.dst, p.route_out, how="the request left by it"), r
    bridge = sim.topo.bridge_of(p.port_out) or p.bridge or p.route_out
    place = Place(Where.PORT, p.dst, p.dst, p.port_out, bridge, p.mac_dst, how="the request left by it")
    mac, _ = _dst_mac(sim, place, r.dst)
    return place, replace(r, mac_src=p.mac_dst, mac_dst=mac)


def simulate_report(
    snapshots: tuple[Snapshot, ...], q: Query, name: str = "simulation", files: tuple[InputFile, ...] = ()
) -> Report:
    """Simulate and return the result as a Report: the request's and the reply's predicted packets."""
    topo = build_topology(snapshots)
    s = simulate(snapshots, q, topo)
    packets: list[Packet] = []
    multi = len(s.request) > 1
    for i, w in enumerate(s.request):
        packets.append(packet_of(f"p1.{i + 1}" if multi else "p1", "c1", "request", w))
    for n, (_, w) in enumerate(s.replies, start=1):
        packets.append(packet_of(f"p2.{n}" if len(s.replies) > 1 else "p2", "c1", "reply", w))
    first = s.request[0].hops[0].pkt if s.request and s.request[0].hops else None
    a = Endpoint(first.src, first.sport) if first else Endpoint(s.src.addr or "host", None)
    b = Endpoint(first.dst, first.dport) if first else Endpoint(s.dst.addr or "host", None)
    conv = conversation_of("c1", s.proto, a, b, packets)
    title = f"Simulation: {s.proto} from {s.src.name} to {s.dst.name}"
    groups, answers, footers, summary = answer_case((conv,), packets, topo)
    report = Report(
        name=name,
        title=title,
        description="Predicted from the snapshots alone: no packet was sent and no kernel line exists. "
        "Every hop below is a prediction; the assumptions are listed in the notes.",
        files=files,
        snapshots=snapshots,
        conversations=(conv,),
        packets=tuple(packets),
        lines_total=0,
        lines_used=0,
        unused=(),
        lines=(),
        notes=s.assumptions,
        topology=topo,
        groups=groups,
        answers=answers,
        footers=footers,
        summary=summary,
    )
    return replace(report, crossings=crossings(report, topo))


def simulate_case(inputs: list[Path], q: Query) -> Report:
    """Read a case's snapshots (its traces are not read) and simulate the query on them."""
    from reportgen.pipeline import build_report
    from reportgen.sources.case import load_spec

    spec = load_spec(inputs)
    spec.traces = []  # the prediction uses the snapshots alone
    base = build_report(spec)
    if not base.snapshots:
        raise SimulateError("no snapshot among the inputs: the simulator needs ip addr, routes and rulesets")
    return simulate_report(base.snapshots, q, spec.name, base.files)
