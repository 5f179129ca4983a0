"""Parse ``docker network inspect`` JSON: bridge name, subnets, and containers with IPs and MACs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reportgen.errors import InputError
from reportgen.parsers.snapshots import load_json


@dataclass(frozen=True, slots=True)
class DockerContainer:
    """One endpoint of a network: the container's short id, name and addresses on it."""

    id: str
    name: str | None
    mac: str | None
    ipv4: str | None
    ipv6: str | None


@dataclass(frozen=True, slots=True)
class DockerNetwork:
    name: str | None
    driver: str | None
    bridge: str  # the Linux bridge the network's containers are ports of
    subnets: tuple[str, ...]
    gateways: tuple[str, ...]
    containers: tuple[DockerContainer, ...]


@dataclass(frozen=True, slots=True)
class DockerNetworks:
    networks: tuple[DockerNetwork, ...]


def parse_docker_network(text: str, source: str = "") -> DockerNetworks:
    """Parse one network object or a list of them (``docker network inspect A B`` prints a list)."""
    try:
        data = load_json(text, "docker network inspect")
    except InputError as exc:
        raise InputError(source, exc.line, exc.message) from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(net, dict) for net in data):
        # Named at the line where the outermost value (or the array of networks) starts.
        start = len(text) - len(text.lstrip()) + (1 if isinstance(data, list) else 0)
        raise InputError(
            source,
            text.count("\n", 0, start) + 1,
            "docker network inspect JSON is an array of network objects; this is not",
        )
    nets = []
    for net in data:
        opts = _obj(net.get("Options"))
        ipam = [c for c in _list(_obj(net.get("IPAM")).get("Config")) if isinstance(c, dict)]
        containers = tuple(
            DockerContainer(
                id=cid[:12],
                name=_str(c.get("Name")) or None,
                mac=_str(c.get("MacAddress")).lower() or None,
                ipv4=_str(c.get("IPv4Address")).split("/")[0] or None,
                ipv6=_str(c.get("IPv6Address")).split("/")[0] or None,
            )
            for cid, c in sorted(_obj(net.get("Containers")).items())
            if isinstance(c, dict)
        )
        name = _str(net.get("Name"))
        nets.append(
            DockerNetwork(
                name=name or None,
                driver=_str(net.get("Driver")) or None,
                # dockerd names the default bridge docker0 and others br-<id12> unless this option says.
                bridge=_str(opts.get("com.docker.network.bridge.name"))
                or ("docker0" if name == "bridge" else f"br-{_str(net.get('Id'))[:12]}"),
                subnets=tuple(c["Subnet"] for c in ipam if _str(c.get("Subnet"))),
                gateways=tuple(c["Gateway"] for c in ipam if _str(c.get("Gateway"))),
                containers=containers,
            )
        )
    return DockerNetworks(tuple(nets))


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str:
    """A string field, or "" when the JSON holds something else there."""
    return value if isinstance(value, str) else ""
