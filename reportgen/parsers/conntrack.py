"""Parse ``conntrack -L`` output (conntrack-tools): one connection per line, original and reply tuples.

Format (conntrack(8), and conntrack-tools src/conntrack.c output): ``PROTO PROTONUM TIMEOUT [STATE]
src= dst= [sport= dport= | type= code= id=] [UNREPLIED] src= dst= ... [ASSURED] mark= use=``.
The first ``src=/dst=`` group is the original direction, the second the reply direction; a reply
tuple that is not the mirror of the original shows the NAT mapping.
"""

from __future__ import annotations

import re
from typing import Any

_HEAD = re.compile(r"^(?P<proto>[a-z0-9-]+)\s+(?P<num>\d+)\s+(?P<timeout>\d+)\s+(?P<rest>.*)$")


def parse_conntrack(text: str) -> dict[str, Any]:
    """Return {"entries": [...], "unparsed": [(line, text)]}."""
    entries: list[dict[str, Any]] = []
    unparsed: list[tuple[int, str]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        m = _HEAD.match(line.strip())
        if not m:
            if line.strip() and not line.startswith("conntrack v"):
                unparsed.append((n, line))
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
                if k in ("src", "dst", "sport", "dport", "type", "code", "id") and tuples:
                    tuples[-1][k] = v
                else:
                    extra[k] = v
            elif tok.isupper():
                state = tok
        entries.append(
            {
                "proto": m.group("proto"),
                "protonum": int(m.group("num")),
                "timeout": int(m.group("timeout")),
                "state": state,
                "original": tuples[0] if tuples else {},
                "reply": tuples[1] if len(tuples) > 1 else {},
                "flags": flags,
                "mark": extra.get("mark"),
                "line": n,
                "text": line.strip(),
            }
        )
    return {"entries": entries, "unparsed": unparsed}
