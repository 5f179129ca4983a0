"""The kernel-log reader's shortcuts state what a fresh reading states.

* nf_log's usual body is read once for the lines of a packet logged at several hooks
  (nflog._usual_bodies): each line still gets a record of its own, equal to a fresh reading of it.
* The end-to-end comparison with the slow path (no prefilter, no usual-body path, so no kept bodies)
  is tests/test_parse_speed.py's test_shortcuts_state_what_the_slow_path_states.
"""

from __future__ import annotations

import dataclasses

from reportgen.model import LineRef, LogRecord
from reportgen.parsers import nflog

BODY = (
    "PHYSIN=veth1 MAC=02:42:ff:e7:b5:d2:02:42:ac:11:00:02:08:00 SRC=172.17.0.2 DST=203.0.113.11 LEN=60 "
    "TOS=0x00 PREC=0x00 TTL=64 ID=40423 DF PROTO=TCP SPT=1024 DPT=80 WINDOW=64240 RES=0x00 SYN URGP=0"
)


def _distinct_value(kind: str, i: int) -> object:
    """A value of a field's type (its annotation's text) that is not its default, and differs from
    every other field's."""
    if kind == "LineRef":
        return LineRef("f", i)
    if kind == "bool":
        return True
    if "float" in kind:
        return i + 0.5
    if kind.startswith("tuple[str | None"):  # embedded: the quoted packet of an ICMP error
        return ("a", "b", "TCP", i, i + 1)
    if kind.startswith("tuple"):
        return (f"v{i}",)
    if kind.startswith("int"):
        return i
    return f"v{i}"


def test_a_kept_body_carries_every_field(interpreted):
    """_same_body lists LogRecord's fields one by one (a compiled call): a field added to the model
    and left out there would silently take its default on every repeated body. The fields' types are
    read from the sources (a compiled dataclass's fields keep no optional types)."""
    fields = dataclasses.fields(interpreted("reportgen.model").LogRecord)
    seen = LogRecord(**{f.name: _distinct_value(str(f.type), i) for i, f in enumerate(fields)})
    same = nflog._same_body(seen, seen.prefix, seen.in_dev, seen.out_dev, seen.ref, seen.text, seen.stamp)
    assert same == seen
    other = nflog._same_body(seen, "p2", "eth9", "eth8", LineRef("g", 3), "t2", 9.5)
    assert (
        dataclasses.replace(seen, prefix="p2", in_dev="eth9", out_dev="eth8", ref=LineRef("g", 3), text="t2", stamp=9.5)
        == other
    )


def test_a_packet_logged_at_several_hooks_reads_as_fresh_lines():
    nflog._usual_bodies.clear()
    first = nflog._parse_message("IPT:raw:PREROUTING IN=docker0 OUT= " + BODY, LineRef("k", 1), "[1.0] raw", 1.0)
    second = nflog._parse_message(
        "IPT:filter:FORWARD IN=docker0 OUT=eth0 " + BODY, LineRef("k", 2), "[1.5] filter", 1.5
    )
    assert BODY in nflog._usual_bodies  # the second line took the kept reading
    nflog._usual_bodies.clear()
    fresh = nflog._parse_message("IPT:filter:FORWARD IN=docker0 OUT=eth0 " + BODY, LineRef("k", 2), "[1.5] filter", 1.5)
    assert first is not None and second == fresh
    assert (second.prefix, second.out_dev, second.ref, second.stamp) == (
        "IPT:filter:FORWARD ",
        "eth0",
        LineRef("k", 2),
        1.5,
    )
    assert (first.prefix, first.out_dev, first.ref) == ("IPT:raw:PREROUTING ", "", LineRef("k", 1))


def test_a_body_not_in_the_usual_layout_is_kept_as_such():
    """A body the usual layout declines is declined again from the cache: the general parser reads it."""
    nflog._usual_bodies.clear()
    odd = BODY + " OPT (020405B4)"
    for n in (1, 2):
        assert nflog._parse_usual_body("FW ", "eth0", "", odd, LineRef("k", n), "t", None) is None
    rec = nflog._parse_message("FW IN=eth0 OUT= " + odd, LineRef("k", 3), "t", None)
    assert rec is not None and rec.dport == 80
