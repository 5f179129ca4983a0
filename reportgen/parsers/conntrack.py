"""Parse ``conntrack -L`` output (conntrack-tools): one connection per line, original and reply tuples.

Format (conntrack(8), and conntrack-tools src/conntrack.c output): ``PROTO PROTONUM TIMEOUT [STATE]
src= dst= [sport= dport= | type= code= id=] [UNREPLIED] src= dst= ... [ASSURED] mark= use=``.
The first ``src=/dst=`` group is the original direction, the second the reply direction; a reply
tuple that is not the mirror of the original shows the NAT mapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reportgen.parsers.snapshots import BAD_NUMBER, NOT_UNDERSTOOD, Unparsed

_HEAD = re.compile(r"^(?P<proto>[a-z0-9-]+)\s+(?P<num>\d+)\s+(?P<timeout>\d+)\s+(?P<rest>.*)$")
# The keys of one direction's tuple (conntrack-tools prints them after each src=).
_TUPLE_KEYS = ("src", "dst", "sport", "dport", "type", "code", "id")
# Wider than any protocol number (u8) or timeout (u32 seconds) conntrack prints.
_MAX_DIGITS = 20


@dataclass(frozen=True, slots=True)
class CtTuple:
    """One direction of a connection, the values as printed (ports for TCP/UDP, type/code/id for ICMP)."""

    src: str | None = None
    dst: str | None = None
    sport: str | None = None
    dport: str | None = None
    type: str | None = None
    code: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class CtEntry:
    """One ``conntrack -L`` line."""

    proto: str
    protonum: int
    timeout: int
    state: str | None  # the TCP state word (ESTABLISHED, TIME_WAIT ...), None for other protocols
    original: CtTuple
    reply: CtTuple
    flags: tuple[str, ...]  # the bracketed words: UNREPLIED, ASSURED ...
    mark: str | None
    line: int
    text: str


@dataclass(frozen=True, slots=True)
class Conntrack:
    entries: tuple[CtEntry, ...]
    unparsed: tuple[Unparsed, ...] = ()


def parse_conntrack(text: str) -> Conntrack:
    """Parse ``conntrack -L``; the closing summary line (``conntrack v1.4.7 ...: N flow entries have
    been shown.``, printed on stderr but often pasted) is read and carries nothing."""
    entries: list[CtEntry] = []
    unparsed: list[Unparsed] = []
    for n, line in enumerate(text.splitlines(), start=1):
        m = _HEAD.match(line.strip())
        if not m:
            if line.strip() and not line.startswith("conntrack v"):
                unparsed.append(Unparsed(n, line, NOT_UNDERSTOOD))
            continue
        if len(m.group("num")) > _MAX_DIGITS or len(m.group("timeout")) > _MAX_DIGITS:
            unparsed.append(Unparsed(n, line, BAD_NUMBER))
            continue
        tuples: list[dict[str, str]] = []
        flags: list[str] = []
        state = None
        extra: dict[str, str] = {}
        for tok in m.group("rest").split():
            if tok.startswith("[") and tok.endswith("]"):
                flags.append(tok[1:-1])
            elif "=" in tok:
                k, v = tok.split("=", 1)
                if k == "src":
                    tuples.append({})
                if k in _TUPLE_KEYS and tuples:
                    tuples[-1][k] = v
                else:
                    extra[k] = v
            elif tok.isupper():
                state = tok
        entries.append(
            CtEntry(
                proto=m.group("proto"),
                protonum=int(m.group("num")),
                timeout=int(m.group("timeout")),
                state=state,
                original=CtTuple(**tuples[0]) if tuples else CtTuple(),
                reply=CtTuple(**tuples[1]) if len(tuples) > 1 else CtTuple(),
                flags=tuple(flags),
                mark=extra.get("mark"),
                line=n,
                text=line.strip(),
            )
        )
    return Conntrack(tuple(entries), tuple(unparsed))
