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
"""

from __future__ import annotations

from importlib import resources

from reportgen.lab.netns import Lab, run
from reportgen.lab.scenarios import TCP_CLIENT, Scenario, fetch_published, python

BLOCKED_PORT = 8081  # nothing listens on it and ufw allows only 22/tcp: ufw's policy drops the SYN


def ufw_rules() -> str:
    return resources.files("reportgen.lab").joinpath("data/ufw-0.36.2-filter.rules").read_text(encoding="utf-8")


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
)
