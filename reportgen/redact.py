"""Pseudonymise addresses, MACs and host names in input text, consistently, before anything is parsed.

Redacting the input rather than each output means every output (HTML, SVG, JSON, text, Markdown,
PDF, the snapshots and the appendix) shows the same pseudonym for the same original, and no
renderer can forget a field. The mapping is keyed: the same key gives the same pseudonyms.

* IPv4 and IPv6 addresses are mapped prefix-preservingly (the Crypto-PAn construction of Xu et al.,
  "Prefix-preserving IP address anonymization", ICNP 2002: each bit is flipped by a keyed function
  of the bits before it), so two addresses that share an n-bit prefix still share one and subnets
  stay subnets. Documentation and special-purpose ranges (RFC 5737, RFC 3849, RFC 6890: loopback,
  unspecified, broadcast, multicast) are kept as they are; private, shared and link-local ranges
  (RFC 1918, RFC 6598, RFC 3927, RFC 4193, RFC 4291) keep their range prefix and pseudonymise the
  rest, so a private address stays visibly private. A network address written as ``addr/len``
  keeps zero host bits, so ``-s 172.17.0.0/16`` still names the mapped subnet.
* MACs keep their I/G and U/L bits (IEEE 802-2014 clause 8.2: the two low bits of the first octet),
  so a locally administered MAC (Docker's 02:42:..) stays locally administered. The MAC embedded in
  an IPv6 EUI-64 interface identifier (RFC 4291 appendix A: ff:fe in the middle, U/L bit inverted)
  is mapped through the same MAC mapping, so the address and the MAC still agree.
* Host and container names given to the redactor are replaced as whole words.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable

# (network, bits kept): ranges kept whole (bits == prefix length of a readable range) or whose
# range prefix is kept while the host part is pseudonymised.
_KEEP_WHOLE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",  # RFC 5737 documentation
        "2001:db8::/32",  # RFC 3849 documentation
        "127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128", "255.255.255.255/32",  # RFC 6890 special
        "224.0.0.0/4", "ff00::/8",  # multicast (RFC 5771, RFC 4291)
    )
)  # fmt: skip
_KEEP_PREFIX = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
        "100.64.0.0/10",  # RFC 6598 shared address space
        "169.254.0.0/16", "fe80::/64",  # link-local (RFC 3927; RFC 4291 2.5.6: fe80::/10, 54 zero bits)
        "fc00::/7",  # RFC 4193 unique local
    )
)  # fmt: skip

# One pattern, so an address already replaced is never looked at again (::ffff:a.b.c.d). First
# hex-and-colon tokens: MACs, runs of MAC octets (nf_log's MAC= field is dst:src:ethertype), IPv6;
# then dotted IPv4. Each may carry a /prefix-length.
_ADDRESS = re.compile(
    r"(?<![0-9A-Za-z:])(?P<hc>(?:[0-9A-Fa-f]{0,4}:){2,}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4}))"
    r"(?![0-9A-Za-z:]|\.\d)(?P<hclen>/\d{1,3}(?!\d))?"
    r"|(?<![\d.])(?P<v4>(?:\d{1,3}\.){3}\d{1,3})(?!\.?\d)(?P<v4len>/\d{1,2}(?!\d))?"
)
_OCTETS = re.compile(r"^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+$")
# xtables-monitor prints a MAC without leading zeros (MACSRC=2:42:ac:11:0:2); six groups without
# "::" cannot be IPv6 (RFC 4291 2.2 needs eight), so the form is unambiguous.
_SHORT_MAC = re.compile(r"^[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}$")


class Redactor:
    """Map addresses, MACs and names to keyed pseudonyms, remembering every mapping it made."""

    def __init__(self, key: bytes | None = None, names: Iterable[str] = ()) -> None:
        self.key = key if key is not None else secrets.token_bytes(32)
        self.mapping: dict[str, dict[str, str]] = {"ip": {}, "mac": {}, "name": {}}
        self._names: dict[str, str] = {}
        self._name_re: re.Pattern[str] | None = None
        self.add_names(names)

    # -- names -------------------------------------------------------------------------------
    def add_names(self, names: Iterable[str]) -> None:
        """Add host or container names to replace; names of two characters or fewer are ignored."""
        for name in names:
            if len(name) > 2 and name not in self._names:
                digest = hmac.new(self.key, b"name:" + name.encode(), hashlib.sha256).hexdigest()[:6]
                self._names[name] = f"host-{digest}"
                self.mapping["name"][name] = self._names[name]
        if self._names:
            alts = "|".join(re.escape(n) for n in sorted(self._names, key=len, reverse=True))
            self._name_re = re.compile(rf"(?<![\w.-])(?:{alts})(?![\w-])")

    # -- addresses ---------------------------------------------------------------------------
    def _flip_bits(self, value: int, bits: int, keep: int, tag: bytes) -> int:
        """Crypto-PAn: bit i is flipped by a keyed pseudo-random function of bits 0..i-1."""
        out = value >> (bits - keep) << (bits - keep) if keep else 0
        for i in range(keep, bits):
            prefix = value >> (bits - i) if i else 0
            mac = hmac.new(self.key, tag + i.to_bytes(1, "big") + prefix.to_bytes(16, "big"), hashlib.sha256)
            bit = (value >> (bits - 1 - i)) & 1
            out |= (bit ^ (mac.digest()[0] & 1)) << (bits - 1 - i)
        return out

    def ip(self, text: str, plen: int | None = None) -> str:
        """Return the pseudonym of one address (text as found); unchanged when it is kept readable."""
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return text
        cache_key = text if plen is None else f"{text}/{plen}"
        hit = self.mapping["ip"].get(cache_key)
        if hit is not None:
            return hit
        new = self._map_ip(addr, plen)
        if isinstance(new, ipaddress.IPv6Address) and new.ipv4_mapped is not None and "." in text:
            out = f"::ffff:{new.ipv4_mapped}"  # as written; Python < 3.13 would print it in hex
        elif isinstance(addr, ipaddress.IPv6Address) and len(text) == 39 and "::" not in text:
            out = new.exploded  # nf_log prints IPv6 uncompressed; keep the layout the parsers read
        else:
            out = str(new)
        if text.isupper():
            out = out.upper()
        self.mapping["ip"][cache_key] = out
        return out

    def _map_ip(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address, plen: int | None) -> ipaddress._BaseAddress:
        if any(addr in net for net in _KEEP_WHOLE if net.version == addr.version):
            return addr
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            # ::ffff:a.b.c.d (RFC 4291 2.5.5.2) is the IPv4 address; map it as that address.
            return ipaddress.IPv6Address(f"::ffff:{self._map_ip(addr.ipv4_mapped, None)}")
        bits = addr.max_prefixlen
        keep = max((net.prefixlen for net in _KEEP_PREFIX if net.version == addr.version and addr in net), default=0)
        value = int(addr)
        if isinstance(addr, ipaddress.IPv6Address) and (value >> 24) & 0xFFFF == 0xFFFE:
            # EUI-64 interface identifier: map the network half, and the MAC inside through the MAC map.
            iid = value & ((1 << 64) - 1)
            mac_int = ((iid >> 40) << 24 | (iid & 0xFFFFFF)) ^ (0x02 << 40)
            mac = ":".join(f"{(mac_int >> s) & 0xFF:02x}" for s in range(40, -8, -8))
            new_mac = int(self.mac(mac).replace(":", ""), 16) ^ (0x02 << 40)
            new_iid = (new_mac >> 24) << 40 | 0xFFFE << 24 | (new_mac & 0xFFFFFF)
            net = self._flip_bits(value >> 64, 64, min(keep, 64), b"6")
            return ipaddress.IPv6Address(net << 64 | new_iid)
        new = self._flip_bits(value, bits, keep, b"4" if bits == 32 else b"6")
        if plen is not None and 0 < plen < bits and value & ((1 << (bits - plen)) - 1) == 0:
            new &= ~((1 << (bits - plen)) - 1)  # a network address keeps its zero host bits
        return ipaddress.ip_address(new)

    def mac(self, text: str) -> str:
        """Return the pseudonym of one MAC (aa:bb:cc:dd:ee:ff), keeping its I/G and U/L bits."""
        low = text.lower()
        hit = self.mapping["mac"].get(low)
        if hit is None:
            orig = bytes.fromhex(low.replace(":", ""))
            if orig in (b"\x00" * 6, b"\xff" * 6):
                hit = low  # the all-zero and broadcast MACs identify nobody
            else:
                digest = hmac.new(self.key, b"mac:" + orig, hashlib.sha256).digest()[:6]
                first = (digest[0] & 0xFC) | (orig[0] & 0x03)
                hit = ":".join(f"{b:02x}" for b in (first, *digest[1:]))
            self.mapping["mac"][low] = hit
        return hit.upper() if text.isupper() else hit

    # -- text --------------------------------------------------------------------------------
    def text(self, line: str) -> str:
        """Return the line with every address, MAC and known name replaced by its pseudonym."""
        line = _ADDRESS.sub(self._address, line)
        if self._name_re is not None:
            line = self._name_re.sub(lambda m: self._names[m.group(0)], line)
        return line

    def _address(self, m: re.Match[str]) -> str:
        if m.group("v4"):
            v4, plen = m.group("v4"), _plen(m.group("v4len"))
            if _is_netmask(v4):
                return m.group(0)  # a netmask (route -n's Genmask) names no host: a prefix length in disguise
            if plen is None and _zero_octets(v4):
                # route -n prints a network without its length: its zero octets are the host part,
                # kept zero so that the mapped network still reads as (and parses as) a network.
                plen = 32 - 8 * _zero_octets(v4)
            return self.ip(v4, plen) + (m.group("v4len") or "")
        tok, suffix = m.group("hc"), m.group("hclen") or ""
        if not _OCTETS.match(tok) and _SHORT_MAC.match(tok):
            full = ":".join(o.zfill(2) for o in tok.split(":"))
            return ":".join(o.lstrip("0") or "0" for o in self.mac(full).split(":")) + suffix
        if _OCTETS.match(tok):
            octets = tok.split(":")
            if len(octets) < 6:
                return m.group(0)
            # Whole MACs first (nf_log's MAC= is dst, src, then the ethertype bytes), the rest kept.
            out = []
            while len(octets) >= 6:
                out.append(self.mac(":".join(octets[:6])))
                octets = octets[6:]
            return ":".join(out + octets) + suffix
        return self.ip(tok, _plen(suffix)) + suffix


def _is_netmask(v4: str) -> bool:
    """A contiguous IPv4 netmask from 255.0.0.0 to 255.255.255.255 (ones, then zeros)."""
    try:
        value = int(ipaddress.IPv4Address(v4))
    except ValueError:
        return False
    inverted = ~value & 0xFFFFFFFF
    return value >> 24 == 0xFF and inverted & (inverted + 1) == 0


def _zero_octets(v4: str) -> int:
    """How many trailing octets of a dotted IPv4 address are 0 (at most 3)."""
    octets = v4.split(".")
    n = 0
    while n < 3 and octets[-1 - n] == "0":
        n += 1
    return n


def _plen(suffix: str | None) -> int | None:
    return int(suffix[1:]) if suffix else None


_SYSLOG_HOST = re.compile(
    r"^\s*(?:<\d+>)?(?:[A-Z][a-z]{2} +\d{1,2} +\d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+|\d\d:\d\d:\d\d)\s+(\S+)\s+kernel:"
)


def syslog_hosts(lines: Iterable[str]) -> set[str]:
    """Return the host names in syslog/journal line headers ("Nov 27 10:11:12 web1 kernel: ...")."""
    hosts = set()
    for line in lines:
        m = _SYSLOG_HOST.match(line)
        if m:
            hosts.add(m.group(1))
    return hosts
