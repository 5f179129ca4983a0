"""Small formatting helpers every renderer shares, so all outputs word a fact the same way."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from reportgen.explain.answer import SEVERITY as _CODES
from reportgen.explain.answer import plural
from reportgen.explain.attribution import UNKNOWN_ADDRESS_WORDS
from reportgen.model import (
    ICMP_PROTOS,
    ICMP_TYPE_NAMES,
    Endpoint,
    Footer,
    LogRecord,
    Packet,
    PacketGroup,
    Report,
    id_number,
    id_order,
)
from reportgen.parsers.nflog import arp_summary, shown

if TYPE_CHECKING:
    from reportgen.render.digest import Alike, Row

# Verdict codes from worst to best (explain.answer.SEVERITY): a batch index shows a case's worst, a
# summary lists dropped first.
SEVERITY = tuple(c.value for c in _CODES)


def outcome(p: Packet) -> str:
    """The packet's verdict code as the explain layer set it ("unknown" when it gave none)."""
    return p.verdict.code.value if p.verdict else "unknown"


def severity(word: str) -> int:
    """Rank an outcome word: 0 is the worst."""
    return SEVERITY.index(word) if word in SEVERITY else len(SEVERITY)


def group_flow_text(report_packets: dict[str, Packet], g: PacketGroup) -> str:
    """A group's flow, stating only what every member shares.

    TCP flags that differ between members are listed as the set they take and ICMP sequence numbers
    as their range. Any other field they differ in (an address, a port, the protocol, the ICMP type
    or id, a frame's MACs) is "various", and the first member follows as an example ("e.g. p1: ...").
    Members of a conversation share its addresses; the packets of no conversation (a masked address,
    ARP) share only their behaviour (explain.groups), so their group's members may differ.
    """
    recs = [(i, r) for i in g.packets if (r := first_record(report_packets[i])) is not None]
    if not recs:
        return report_packets[g.first].summary
    shared = _merged([_flow_parts(r) for _, r in recs])
    text = _flow_of(shared)
    if VARIOUS in shared.values():
        example, r = recs[0]
        text += f" (e.g. {example}: {flow_text(r)})"
    return text


# What a group's header says of a field its members differ in (group_flow_text).
VARIOUS = "various"

# The parts of a record's flow (flow_text) a group's members may differ in, by name. Values are text
# ("" when the record has none); "flags" and "seq" are merged as a set and a range, the rest as one
# value or VARIOUS.
_FlowParts = dict[str, str]


def _flow_parts(r: LogRecord) -> _FlowParts:
    if not r.src and "src" not in r.redacted:
        arp = arp_summary(r) if r.mac_src is None and r.mac_dst is None else None
        return {"frame": arp or f"{shown(r, 'mac_src')} → {shown(r, 'mac_dst')}"}
    proto = r.proto or "IP"
    parts = {"src": shown(r, "src"), "dst": shown(r, "dst"), "proto": proto}
    if proto in ICMP_PROTOS:
        what = f" type {r.icmp_type}" if r.icmp_type is not None else ""
        word = ICMP_TYPE_NAMES.get((proto, r.icmp_type if r.icmp_type is not None else -1))
        if word:
            what = " " + word.replace(" ", "-")  # as ping and tcpdump word them: echo-request
        parts["icmp"] = what
        if r.icmp_id is not None:
            parts["icmp_id"] = str(r.icmp_id)
            if r.icmp_seq is not None:  # a line cut before SEQ= has none to show
                parts["seq"] = str(r.icmp_seq)
    elif r.sport is not None:
        dport = "" if r.dport is None else str(r.dport)
        parts.update(sport=str(r.sport), dport=dport, flags=" ".join(r.tcp_flags))
    return parts


def _merged(all_parts: list[_FlowParts]) -> _FlowParts:
    """The parts every member shares; a part they differ in (or some lack) is VARIOUS, except TCP
    flags (the distinct sets, in order of appearance) and ICMP sequence numbers (their range)."""
    out: _FlowParts = {}
    for name in dict.fromkeys(k for parts in all_parts for k in parts):
        values = list(dict.fromkeys(parts.get(name) for parts in all_parts))
        if len(values) == 1 and values[0] is not None:
            out[name] = values[0]
        elif name == "flags" and all(values):  # a member without flags would be left out of a set
            out[name] = " / ".join(v for v in values if v)
        elif name == "seq" and all(v is not None and v.isdigit() for v in values):
            nums = [int(v) for v in values if v is not None]
            out[name] = f"{min(nums)}–{max(nums)}"
        else:
            out[name] = VARIOUS
    return out


def _flow_of(parts: _FlowParts) -> str:
    """Word flow parts as flow_text does."""
    if "src" not in parts:
        return parts.get("frame", VARIOUS)
    src, dst, proto = parts["src"], parts["dst"], parts["proto"]
    proto = "of various protocols" if proto == VARIOUS else proto
    if "icmp" in parts:
        ids = f" id {parts['icmp_id']}" if "icmp_id" in parts else ""
        ids += f" seq {parts['seq']}" if ids and "seq" in parts else ""
        what = parts["icmp"] if parts["icmp"] != VARIOUS else " of various types"
        return f"{src} → {dst} {proto}{what}{ids}"
    if "sport" in parts:
        flags = f" [{parts['flags']}]" if parts.get("flags") else ""
        return f"{_endpoint(src, parts['sport'])} → {_endpoint(dst, parts['dport'])} {proto}{flags}"
    return f"{src} → {dst} {proto}"


def _endpoint(addr: str, port: str) -> str:
    """An address and port as model.Endpoint words them; the address alone when there is no port."""
    return addr if not port else f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def final_packet_of(footers: Mapping[str, Footer], g: PacketGroup) -> str:
    """ "" when a group's members share their final packet (the one its body shows), else " of p1":
    the body then shows its first member's."""
    finals = {footers[i].final for i in g.packets if i in footers}
    return "" if len(finals) <= 1 else f" of {g.first}"


def flow_text(r: LogRecord) -> str:
    """Addresses and protocol of one record; ICMP by type, id and sequence, never as ports."""
    return _flow_of(_flow_parts(r))


def first_record(p: Packet) -> LogRecord | None:
    """The packet's richest record: the first nf_log line with addresses, else the first hop's."""
    recs = [h.event.record for h in p.hops]
    return next(
        (r for r in recs if r.src and r.fmt == "nflog"), next((r for r in recs if r.src), recs[0] if recs else None)
    )


def group_label(g: PacketGroup) -> str:
    """ "×4 (p1–p4, 3.1 s)": how many packets a group folds, which, and over how long.

    A group of thousands names its first and last few members: the label is a heading, and the
    group's table or report.json lists every member.
    """
    if g.count == 1:
        ids = g.packets[0]
    elif _consecutive(g):
        ids = f"{g.packets[0]}–{g.packets[-1]}"
    elif g.count <= LABEL_IDS:
        ids = ", ".join(g.packets)
    else:
        ids = ", ".join(g.packets[:3]) + ", …, " + g.packets[-1]
    span = ""
    if g.count > 1 and g.first_stamp is not None and g.last_stamp is not None:
        d = g.last_stamp - g.first_stamp
        span = f", {d:.1f} s" if d >= 1 else f", {d * 1000:.0f} ms"
    return f"×{g.count} ({ids}{span})"


# A group label lists up to this many member ids; a longer group shows its first three and its last.
LABEL_IDS = 8


def _consecutive(g: PacketGroup) -> bool:
    nums = [n for n in map(id_number, g.packets) if n is not None]
    return len(nums) == g.count and nums == list(range(nums[0], nums[0] + len(nums)))


def id_runs(ids: Sequence[str], limit: int) -> str:
    """Ids as runs ("c2–c40, c42"), at most ``limit`` runs, then how many ids the rest holds.

    Ids are a letter and a number (c12, p7), as the explain layer numbers them; one that is not is
    a run of its own.
    """
    runs: list[list[str]] = []
    prev: int | None = None
    for i in ids:
        n = id_number(i)
        if runs and n is not None and prev is not None and n == prev + 1 and runs[-1][0][0] == i[0]:
            runs[-1][1:] = [i]
        else:
            runs.append([i])
        prev = n
    parts = ["–".join(r) for r in runs[:limit]]
    if len(runs) > limit:
        rest = len(ids) - sum(len(_expand(r)) for r in runs[:limit])
        parts.append(f"and {rest} more")
    return ", ".join(parts)


def _expand(run: list[str]) -> range:
    # Only numbered ids join a run of more than one, so both ends have numbers.
    return range(id_order(run[0]), id_order(run[-1]) + 1) if len(run) > 1 else range(1)


def groups_of(report: Report) -> dict[str, list[PacketGroup]]:
    """The report's packet groups per conversation ("-" for packets without one), in order."""
    out: dict[str, list[PacketGroup]] = {}
    for g in report.groups:
        out.setdefault(g.conversation, []).append(g)
    return out


def stamp_text(stamp: float | None) -> str:
    """A kernel timestamp as dmesg prints it, or "" when the line carried none."""
    return "" if stamp is None else f"{stamp:.6f}"


def generation_date() -> str | None:
    """The generation date, from SOURCE_DATE_EPOCH only: without it none is shown, so output is reproducible.

    This is the one place reportgen reads a date (reproducible-builds.org/specs/source-date-epoch).
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch.isdigit():
        return None
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(epoch)))


def endpoint_text(p: Packet, ep: Endpoint) -> str:
    """An address and port as the packet's protocol has them: an ICMP echo id is no port (RFC 792)."""
    r = first_record(p)
    icmp = r is not None and (r.proto or "").startswith("ICMP")
    if not ep.addr:  # an address no input shows (model.Nat.unknown says why)
        return UNKNOWN_ADDRESS_WORDS if icmp or ep.port is None else f"{UNKNOWN_ADDRESS_WORDS}, port {ep.port}"
    return ep.addr if icmp else str(ep)


def alike_line(c: Row) -> str:
    """One line for a conversation told by another: its id, flow, packet count and outcomes."""
    counts = ", ".join(f"{n} {word}" for word, n in c.outcomes)
    return f"{c.id}  {c.summary}  {plural(c.count, 'packet')}: {counts}"


ALIKE_NOTE = "behave like {owner}: the same hooks, kinds of NAT and verdicts; only their addresses and ports differ"


def alike_totals(owner: str, alike: Alike) -> str:
    """The exact counts of a behaviour, over every conversation of it (listed or not)."""
    n = alike.counts
    counts = ", ".join(f"{k} {code.value}" for code, k in n.outcomes)
    text = f"{owner} and {plural(alike.conversations, 'other conversation')} like it: {plural(n.packets, 'packet')}"
    text += f" ({counts})" if counts else ""
    if n.first_stamp is not None and n.last_stamp is not None:
        first, last = f"{n.first_stamp:.3f}", f"{n.last_stamp:.3f}"
        text += f", kernel time {first} s" if first == last else f", kernel time {first}–{last} s"
    if n.first_line is not None and n.last_line is not None:
        first, last = str(n.first_line), str(n.last_line)
        text += f", at line {first}" if first == last else f", within lines {first}–{last}"
    return text


def alike_rest(owner: str, alike: Alike, head: Sequence[Row], tail: Sequence[Row]) -> str:
    """What a list of ``alike``'s rows ``head`` and ``tail`` (Alike.listed) leaves out, and where to
    find it; "" when it leaves nothing out. The same sentence in every document."""
    left = alike.conversations - len(head) - len(tail)
    if left <= 0:
        return ""
    after = head[-1].id if head else owner
    span = f"between {after} and {tail[0].id}" if tail else f"after {after}"
    return (
        f"… and {plural(left, 'more conversation')} like {owner}, with ids {span}: "
        f"every one is in {ALIKE_ELSEWHERE}, by id"
    )


# Where a conversation left out of a document's lists is told: the JSON path writes every one.
ALIKE_ELSEWHERE = "report.json / report.jsonl"
