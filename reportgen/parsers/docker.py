"""Parse ``docker network inspect`` JSON: bridge name, subnets, and containers with IPs and MACs."""

from __future__ import annotations

import json
from typing import Any

from reportgen.errors import InputError


def parse_docker_network(text: str, source: str = "") -> dict[str, Any]:
    """Return {"networks": [{name, bridge, subnets, gateways, containers: [{name, ipv4, ipv6, mac}]}]}."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(source, exc.lineno, f"not valid JSON: {exc.msg}") from exc
    if isinstance(data, dict):
        data = [data]
    nets = []
    for net in data:
        opts = net.get("Options") or {}
        ipam = (net.get("IPAM") or {}).get("Config") or []
        containers = []
        for cid, c in sorted((net.get("Containers") or {}).items()):
            containers.append({
                "id": cid[:12], "name": c.get("Name"), "mac": (c.get("MacAddress") or "").lower() or None,
                "ipv4": (c.get("IPv4Address") or "").split("/")[0] or None,
                "ipv6": (c.get("IPv6Address") or "").split("/")[0] or None,
            })
        nets.append({
            "name": net.get("Name"), "driver": net.get("Driver"),
            # dockerd names the default bridge docker0 and others br-<id12> unless this option says.
            "bridge": opts.get("com.docker.network.bridge.name") or
            ("docker0" if net.get("Name") == "bridge" else f"br-{str(net.get('Id', ''))[:12]}"),
            "subnets": [c.get("Subnet") for c in ipam if c.get("Subnet")],
            "gateways": [c.get("Gateway") for c in ipam if c.get("Gateway")],
            "containers": containers,
        })
    return {"networks": nets}
