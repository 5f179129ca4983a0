"""Evaluate a packet against an iptables ruleset snapshot, the way ip_tables.c ipt_do_table() walks it.

A chain's rules are tried in order; the first matching rule with a terminating target decides
(ACCEPT, DROP, REJECT, the NAT targets); a jump enters a user chain and comes back on RETURN or at
its end; LOG and other non-terminating targets continue; a built-in chain ends in its policy
(iptables(8) "TARGETS"; iptables-extensions(8) for the matches). A match reportgen cannot evaluate is
reported as "not evaluated", and the walk stops there instead of guessing.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from reportgen.parsers.ruleset import Match, Rule, Ruleset

TERMINAL = frozenset(
    {"ACCEPT", "DROP", "REJECT", "MASQUERADE", "SNAT", "DNAT", "REDIRECT", "RETURN", "QUEUE", "NFQUEUE", "CONTINUE"}
)
NON_TERMINAL = frozenset(
    {
        "LOG",
        "NFLOG",
        "TRACE",
        "MARK",
        "CONNMARK",
        "CT",
        "TOS",
        "DSCP",
        "TTL",
        "CLASSIFY",
        "ULOG",
        "AUDIT",
        "TCPMSS",
        "CHECKSUM",
        "NOTRACK",
        None,
    }
)
_PROTO_NUM = {"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "icmpv6": 58, "udplite": 136, "sctp": 132}
# Service names a ruleset may hold instead of numbers (``--dport ssh``, ``tcp dport ssh``): iptables
# resolves them with getservbyname() (libxtables xtables_parse_port), nft with getservbyname() too
# (nftables src/datatype.c inet_service_type_parse), both reading /etc/services. These are the IANA
# well-known ports as Debian's netbase /etc/services lists them; a name not here is "not evaluated",
# never guessed.
SERVICES = {
    "ftp-data": 20,
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "smtp": 25,
    "domain": 53,
    "bootps": 67,
    "bootpc": 68,
    "tftp": 69,
    "http": 80,
    "www": 80,
    "kerberos": 88,
    "pop3": 110,
    "sunrpc": 111,
    "auth": 113,
    "ntp": 123,
    "epmap": 135,
    "netbios-ns": 137,
    "netbios-dgm": 138,
    "netbios-ssn": 139,
    "imap2": 143,
    "imap": 143,
    "snmp": 161,
    "snmp-trap": 162,
    "bgp": 179,
    "ldap": 389,
    "https": 443,
    "microsoft-ds": 445,
    "isakmp": 500,
    "syslog": 514,
    "submission": 587,
    "ldaps": 636,
    "rsync": 873,
    "imaps": 993,
    "pop3s": 995,
    "openvpn": 1194,
    "ms-sql-s": 1433,
    "l2tp": 1701,
    "pptp": 1723,
    "radius": 1812,
    "nfs": 2049,
    "mysql": 3306,
    "ms-wbt-server": 3389,
    "ipsec-nat-t": 4500,
    "postgresql": 5432,
    "http-alt": 8080,
    "webcache": 8080,
}


@dataclass(frozen=True)
class PacketView:
    """What the rules can see of a packet at one hook."""

    src: str | None
    dst: str | None
    proto: str | None
    sport: int | None
    dport: int | None
    in_dev: str
    out_dev: str
    physin: str = ""
    physout: str = ""
    ctstate: str | None = None  # NEW / ESTABLISHED (None: unknown)
    local_addrs: frozenset[str] | None = None  # None: unknown
    mark: int | None = None  # skb->mark (None: unknown)


@dataclass
class Evaluation:
    verdict: str | None  # ACCEPT, DROP, ... or None when undetermined
    rule: Rule | None  # the deciding rule (None: the chain policy)
    path: list[Rule] = field(default_factory=list)  # matching rules in order (jumps, LOGs, the decision)
    unevaluated: list[tuple[Rule, str]] = field(default_factory=list)
    policy_of: str | None = None  # chain whose policy decided

    def describe(self) -> str:
        if self.verdict is None:
            r, why = self.unevaluated[-1]
            return f"undetermined: {why} in {r.table} {r.chain} rule {r.num}"
        if self.rule is None:
            return f"policy {self.verdict} of {self.policy_of}"
        return f"{self.rule.table} {self.rule.chain} rule {self.rule.num}: {self.rule.text}"


def _in_net(addr: str, spec: str) -> bool:
    # A comma list is an nft anonymous set ({ a, b }) translated by parsers.nft_rules: any member.
    try:
        ip = ipaddress.ip_address(addr)
        return any(ip in ipaddress.ip_network(part, strict=False) for part in spec.split(","))
    except ValueError:
        return False


def _ifname(name: str, pattern: str) -> bool:
    # iptables(8): "If the interface name ends in a '+', then any interface which begins with this
    # name will match."
    return name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern


def _port_number(text: str) -> int | None:
    """A port from a rule: a number 0-65535 or a well-known service name; None when neither."""
    if text.isascii() and text.isdigit():
        n = int(text)
        return n if n <= 65535 else None
    return SERVICES.get(text)


def _port_in(port: int | None, spec: str) -> bool | None:
    """Whether a port is in ``22``, ``1024:65535``, ``:1023`` or a comma list of those; None when the
    spec holds something reportgen cannot read (an unknown service name, damage)."""
    if port is None:
        return None
    found = False
    for part in spec.split(","):
        lo_text, colon, hi_text = part.partition(":")
        lo = _port_number(lo_text) if lo_text else 0
        hi = (_port_number(hi_text) if hi_text else 65535) if colon else lo
        if lo is None or hi is None:
            return None
        found = found or lo <= port <= hi
    return found


def _proto_number(name: str) -> int | None:
    if name.isascii() and name.isdigit():
        return int(name)
    return _PROTO_NUM.get(name.lower())


def _addr_type_is(addr: str | None, want: str, local: frozenset[str] | None) -> bool | None:
    """-m addrtype for one type, where the snapshot decides it. xt_addrtype.c asks the routing code
    for the address's one type (inet_addr_type, net/ipv4/fib_frontend.c __inet_dev_addr_type):
    255.255.255.255 and 0.0.0.0 are BROADCAST, 224.0.0.0/4 is MULTICAST, else the local routing
    table's entry: LOCAL for the host's own addresses, BROADCAST for the broadcast addresses it lists
    (which the ip addr snapshot may not show), UNICAST otherwise. So an own address is LOCAL and no
    other type; whether another address is a directed broadcast is left undecided."""
    if addr is None:
        return None
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if want == "MULTICAST":
        return ip.is_multicast
    limited = ip.version == 4 and addr in ("255.255.255.255", "0.0.0.0")
    own = None if local is None else (addr in local or ip.is_loopback)
    if want == "LOCAL":
        return own
    if want == "BROADCAST":
        if limited:
            return True
        if ip.is_multicast or own:
            return False
        return None
    return None


def match_one(m: Match, p: PacketView) -> bool | None:
    """True/False, or None when this match cannot be evaluated for this packet."""
    v = m.values[0] if m.values else ""
    res: bool | None
    if m.opt in ("-s", "-d"):
        addr = p.src if m.opt == "-s" else p.dst
        res = None if addr is None else _in_net(addr, v)
    elif m.opt in ("-i", "-o"):
        res = _ifname(p.in_dev if m.opt == "-i" else p.out_dev, v)
    elif m.opt == "-p":
        if v == "all" or v == "0":
            res = True
        elif p.proto is None:
            res = None
        else:
            want = _proto_number(v)
            have = _proto_number(p.proto)
            res = None if want is None or have is None else want == have
    elif m.opt in ("--sport", "--dport"):
        res = _port_in(p.sport if m.opt == "--sport" else p.dport, v)
    elif m.opt in ("--sports", "--dports", "--ports"):
        if m.opt == "--ports":
            a, b = _port_in(p.sport, v), _port_in(p.dport, v)
            res = None if a is None or b is None else (a or b)
        else:
            res = _port_in(p.sport if m.opt == "--sports" else p.dport, v)
    elif m.opt in ("--ctstate", "--state"):
        res = None if p.ctstate is None else p.ctstate in v.split(",")
    elif m.opt in ("--dst-type", "--src-type"):
        res = _addr_type_is(p.dst if m.opt == "--dst-type" else p.src, v, p.local_addrs)
    elif m.opt in ("--physdev-in", "--physdev-out"):
        res = _ifname(p.physin if m.opt == "--physdev-in" else p.physout, v)
    elif m.opt == "--physdev-is-bridged":
        res = bool(p.physout)
    elif m.opt == "--mark":
        # xt_mark.c mark_mt: (skb->mark & mask) == mark, the mask defaulting to all ones.
        value, _, mask = v.partition("/")
        res = None if p.mark is None else (p.mark & int(mask or "0xffffffff", 0)) == int(value, 0)
    elif m.opt in ("--comment", "--limit", "--limit-burst", "--log-prefix", "--log-level"):
        return True  # comments always match; a limit is assumed not exhausted (noted by callers)
    else:
        return None
    if res is None:
        return None
    return not res if m.negated else res


def _rule_matches(rule: Rule, p: PacketView) -> tuple[bool | None, str]:
    for m in rule.matches:
        r = match_one(m, p)
        if r is None:
            return None, f"match {'! ' if m.negated else ''}{m.opt} {' '.join(m.values)} not evaluated"
        if not r:
            return False, ""
    return True, ""


def evaluate(rs: Ruleset, table: str, chain: str, p: PacketView, start_after: int = 0, _depth: int = 0) -> Evaluation:
    """Walk a chain for a packet; start_after skips rules 1..N (those already passed)."""
    ev = Evaluation(None, None)
    c = rs.chain(table, chain)
    if c is None:
        ev.verdict, ev.policy_of = "ACCEPT", f"{table} {chain} (absent)"
        return ev
    for rule in c.rules[start_after:]:
        ok, why = _rule_matches(rule, p)
        if ok is None:
            ev.unevaluated.append((rule, why))
            return ev
        if not ok:
            continue
        ev.path.append(rule)
        t = rule.target
        if t in ("MARK", "CONNMARK"):
            p = replace(p, mark=None)  # the walk does not model the new mark: later --mark matches are unknown
        if t in NON_TERMINAL:
            continue
        if t == "RETURN":
            ev.verdict = "RETURN"
            ev.rule = rule
            return ev
        if t in TERMINAL:
            ev.verdict, ev.rule = t, rule
            return ev
        if t is not None and rs.chain(table, t) is not None and _depth < 32:
            sub = evaluate(rs, table, t, p, 0, _depth + 1)
            ev.path += sub.path
            ev.unevaluated += sub.unevaluated
            if sub.verdict is None:
                return ev
            if sub.verdict != "RETURN":
                ev.verdict, ev.rule, ev.policy_of = sub.verdict, sub.rule, sub.policy_of
                return ev
            if rule.goto:  # -g: a RETURN goes back past the calling chain
                ev.verdict = "RETURN"
                return ev
            continue
        ev.unevaluated.append((rule, f"target {t} not evaluated"))
        return ev
    if c.policy is None:
        ev.verdict = "RETURN"
        return ev
    ev.verdict, ev.policy_of = c.policy, f"{table} {chain}"
    return ev


def log_rule_index(rs: Ruleset, table: str, chain: str, prefix: str) -> int | None:
    """Position of the LOG rule that printed a prefix (the kernel prints it verbatim)."""
    c = rs.chain(table, chain)
    if c is None:
        return None
    for r in c.rules:
        lp = r.arg("--log-prefix")
        if r.target == "LOG" and lp is not None and lp == prefix:
            return r.num
    for r in c.rules:  # iptables-nft may have cut the prefix to 29 bytes
        lp = r.arg("--log-prefix")
        if r.target == "LOG" and lp and (lp.startswith(prefix) or prefix.startswith(lp)):
            return r.num
    return None


def has_log_rule(rs: Ruleset, table: str, chain: str) -> bool:
    c = rs.chain(table, chain)
    return bool(c) and any(r.target == "LOG" for r in c.rules)  # type: ignore[union-attr]
