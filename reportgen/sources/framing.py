"""Strip the wrapper that dmesg, journalctl or syslog put around a kernel message.

Formats (../shared/reference/trace-formats.md section 5): util-linux dmesg.c prints
``"[%5ld.%06ld] "``, ``-T`` a ctime stamp, ``-r`` a ``<prio>`` before it; systemd logs-show.c prints
``%b %d %H:%M:%S host kernel: `` (short), ``.%06u`` (short-precise) or ISO 8601 (short-iso);
rsyslog's traditional format uses a space-padded day and may keep the kernel's own ``[123.456]``.
Each line is detected on its own, because pasted files mix wrappers.

Pasted text also breaks records apart and glues them together: ``LineFramer`` splits a physical line
that holds several records (each keeps the line's number) and joins a record wrapped over several
lines (it takes the first line's number), before the wrapper is stripped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from reportgen.parsers.nflog import record_anchors

_PRI: Final = re.compile(r"^<\d{1,3}>")
_RFC5424: Final = re.compile(r"^<\d{1,3}>1 \S+ \S+ \S+ \S+ \S+ (?:-|\[.*?\]) ?\ufeff?")
_SYSLOG_TS: Final = re.compile(
    r"^(?:[A-Za-z\u00C0-\u024F]{3,4}\.? {1,2}\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?"  # Nov 27 06:33:51[.370286]
    # journalctl and syslog print the month with strftime's %b, which zh/ja locales render "11月":
    # "11月 15 14:30:53 user kernel: ..." (github ukuu#111)
    r"|\d{1,2}\u6708 {1,2}\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?"
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"  # ISO 8601
    r"|\d{9,10}\.\d{6}"  # short-unix
    r"|\d\d:\d\d:\d\d(?:\.\d+)?"  # a paste that dropped the date: only taken before "host kernel: "
    r"|[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+"  # short-full
    r"|[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} kern\.\w+"  # busybox logread
    r") "
)
_HOST_TAG: Final = re.compile(r"^(?:(?P<host>\S+) )?kernel(?: ?\[\s*(?P<mono>\d+\.\d+)\])?: ")
_DMESG: Final = re.compile(
    r"^\[(?:\s*(?P<mono>\d+\.\d{1,9})(?: <\s*[\d.]+>)?"
    r"|(?P<ctime>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}))\] ?"
)
_DMESG_X: Final = re.compile(r"^\w+\s*:\s*\w+\s*: ")
_CALLER: Final = re.compile(r"^\[\s*[TC]\d+\] ?")
_KMSG: Final = re.compile(r"^\d+,\d+,(?P<usec>\d+),[^;,]*(?:,[^;]*)?;")


class Framed:
    """A message with its wrapper removed.

    A plain class, not a NamedTuple: compiled, its constructor is native, where a NamedTuple's
    __new__ is interpreted Python called for every record line (docs/performance.md, "Session 7").
    """

    def __init__(self, stamp: float | None, msg: str, wrapped: bool = False) -> None:
        self.stamp = stamp  # kernel monotonic seconds, when known
        self.msg = msg
        self.wrapped = wrapped  # whether a wrapper was found and removed


def strip_wrapper(line: str) -> Framed:
    """Remove any known log wrapper from one line and return the kernel message."""
    # LineFramer frames each line once to decide on joins, and the caller frames the line it yields
    # again; by then the framer has read (and framed) the next line, so the last two are kept: the
    # same string object gives the same answer.
    framed: Framed
    if line is _last[0]:
        framed = _last[1]
        return framed
    if line is _last[2]:
        framed = _last[3]
        return framed
    framed = _strip_wrapper(line)
    _last[:] = [line, framed, _last[0], _last[1]]
    return framed


_last: Final[list[Any]] = [None, None, None, None]


def _strip_wrapper(line: str) -> Framed:
    s = start = line.lstrip()  # pastes indent lines; the kernel never starts a record with a space
    stamp: float | None = None
    if s[:1] != "[":  # dmesg's own "[stamp]" (the usual line) can start none of these wrappers
        m = _KMSG.match(s)
        if m:
            return Framed(int(m.group("usec")) / 1e6, s[m.end() :], True)
        m = _RFC5424.match(s)
        s = s[m.end() :] if m else _PRI.sub("", s, count=1)
        m = _DMESG_X.match(s)
        if m and "[" in s[m.end() : m.end() + 2]:
            s = s[m.end() :]
        m = _SYSLOG_TS.match(s)
        if m:
            rest = s[m.end() :]
            t = _HOST_TAG.match(rest)
            if t:
                s = rest[t.end() :]
                if t.group("mono"):
                    stamp = float(t.group("mono"))
    m = _DMESG.match(s)
    if m:
        if m.group("mono"):
            stamp = float(m.group("mono"))
        s = s[m.end() :]
        if s[:1] == "[":  # _CALLER starts with one; a sub() that finds nothing still costs a call
            s = _CALLER.sub("", s, count=1)
    return Framed(stamp, s, len(s) != len(start))


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) from a file, streaming, tolerant of CRLF, NUL and bad UTF-8.

    Bytes that are not UTF-8 become U+FFFD instead of stopping the read: prefixes may hold any
    byte but a newline (libxt_LOG.c), so a log can never be assumed to be clean text.
    """
    with path.open("rb") as fh:
        yield from decode_lines(fh)


def decode_lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    """Decode raw lines as read_lines() does."""
    for n, raw in enumerate(chunks, start=1):
        yield n, decode_line(raw, n == 1)


def decode_line(raw: bytes, first: bool) -> str:
    """Decode one line: bad UTF-8 to U+FFFD, no NUL, no byte-order mark on the first line, no CR/LF."""
    text = raw.decode("utf-8", errors="replace").replace("\x00", "")
    if first:
        text = text.lstrip("\ufeff")
    return text.rstrip("\r\n").rstrip("\r")


# A line that starts with a field of an nf_log body ("MAC=..", "SRC=..", "RES=0x00 SYN URGP=0").
_FIELD_START: Final = re.compile(r"^[A-Z][A-Z0-9]*=")
_FIELD_KEYS: Final = re.compile(r"(?:^| )([A-Z][A-Z0-9]*)=")
# Keys an nf_log body holds twice: the IP and UDP lengths, the IP id and the ICMP echo id.
_TWICE: Final = frozenset({"LEN", "ID"})
# A paste wrapped inside a field: the line ends in the key ("... TTL=64 ID") and the next line starts
# with its "=value" ("=53307 DF PROTO=TCP ..."); joined without a blank (flannel#2116).
_KEY_AT_END: Final = re.compile(r"(?:^| )[A-Z][A-Z0-9]*$")
_VALUE_START: Final = re.compile(r"^=\S")


# ---------------------------------------------------------------------------------------------------
# The prefilter: most lines of a real kern.log are not netfilter records (USB, disks, audit), and
# framing and parsing them only to find that out was half of the parse time. A line is decided on its
# decoded text (decode_line), the text the framer would get; one that cannot be (part of) a record for
# the file's parser is passed on as Unrelated: the framer neither frames it nor joins it to a
# neighbour, and the reader lists it unused with the same reason it would have got. It must reject
# only lines that would end up unused anyway, so every test here is one the slow path could not pass:
# - the anchor: nf_log_syslog.c nf_log_dump_packet_common() prints "%sIN=%s OUT=%s " and ebt_log.c
#   ebt_log_packet() "%s IN=%s OUT=%s MAC source = ..."; parse_kernel_message() needs "IN=", or
#   "OUT=" on a Proxmox pvefw-logger line, which leaves out IN= when there is no input device;
# - text the framer rewrites before parsing ("[/FONT]" markup, "^ " marks): such lines take the slow
#   path (decoding already dropped NUL bytes, so "I\0N=" is tested as the "IN=" the parser reads);
# - a line the framer could join: the rest of a wrapped record starts with a field ("SRC=", after
#   whitespace, _continues) or with the "=value" of a field broken after its key, and a wrapper
#   without a message ("[ 12.3]" alone, or "host kernel: ") takes the record on the next line; the
#   last character of such a wrapper is one of "]:;>-" (the dmesg stamp and caller id, the syslog
#   tag, /dev/kmsg's ";", "<prio>", RFC 5424's "-"), or not ASCII; a piece of an ebt_log record on a
#   line of its own holds one of its piece's words (_EBT_PIECE);
# - nft monitor trace lines hold "trace id " (nftables src/trace.c trace_print_hdr), and a conntrack
#   id wrapped onto its own line holds only digits (NftTraceParser._ct_id_wrapped), so no letter.
# xtables-monitor's parser keeps state across every line it reads (a PACKET line may be wrapped), so
# its files are not prefiltered.
# The tests are substring tests on str: on bytes, CPython 3.11's "in" first tries the needle as an
# integer and formats a TypeError for every test, which had made this filter a quarter of the parse.

_WHITESPACE: Final = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.strip() strips among ASCII characters
_LETTER: Final = re.compile(r"[A-Za-z]")


def _kernel_line_may_be_record(text: str) -> bool:
    # Every field word holds "=": a line without one (a USB or disk message) skips those tests.
    if "=" in text and (
        "IN=" in text
        or "OUT=" in text
        # A piece of an ebt_log record on a line of its own (_EBT_PIECE): "MAC source = ", "IP SRC=", ...
        or " = " in text
        or "SRC=" in text
        or "DST=" in text
        or "PT=" in text
        or "TYPE=" in text
        or "proto=" in text
        or "tos=" in text
        or "priority=" in text
        or "Header=" in text
        or "OPCODE=" in text
    ):
        return True
    if "[/" in text or "^ " in text or "INCOMPLETE" in text:
        return True
    s = text.strip(_WHITESPACE)
    if not s or s[0] >= "\x80" or s[-1] >= "\x80" or s[-1] in "]:;>-":
        return True  # blank (its own reason), or maybe whitespace or a wrapper that is not ASCII
    # The "=value" rest of a field a paste broke inside (_VALUE_START) may be joined too. A field starts
    # with a capital (tested first: most lines start with "[" and need no regex).
    first = s[0]
    return first == "=" or ("A" <= first <= "Z" and _FIELD_START.match(s) is not None)


def _nft_line_may_be_event(text: str) -> bool:
    # "IN=": a kernel LOG record in the same file, which the reader parses as one (sources/case.py).
    return "trace id" in text or "IN=" in text or _LETTER.search(text) is None


def prefilter(fmt: str | None) -> Callable[[str], bool] | None:
    """For a trace file's format (detect_trace_format: None for kernel logs), a test on a decoded
    line that is False only when the line cannot be part of a record; None when there is no such test."""
    if fmt is None:
        return _kernel_line_may_be_record
    if fmt == "nfttrace":
        return _nft_line_may_be_event
    return None


class Unrelated:
    """A decoded line the prefilter showed cannot be part of any record."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class LineFramer:
    """Turn physical lines into record lines: split glued records, join wrapped ones.

    Iterate it for (line number, text); ``last_line`` is then the number of physical lines read.
    A line given as ``Unrelated`` ends the record being built and passes through alone, with
    ``unrelated`` True while it is the line last yielded.
    """

    def __init__(self, lines: Iterable[tuple[int, str | Unrelated]]) -> None:
        self.lines = lines
        self.last_line = 0
        self.unrelated = False
        # First physical line of a record joined from several -> its last physical line, so every
        # line of a wrapped record is accounted as used when the record is.
        self.spans: dict[int, int] = {}
        # A line that reads as the next piece of the ebt_log record before it, but whose wrapper says
        # it is another packet's (_pieces_apart) -> why it was not joined, for the reader's unused list.
        self.unjoined: dict[int, str] = {}

    def __iter__(self) -> Iterator[tuple[int, str]]:
        # The record being built: its first line, its text, and the previous physical line framed
        # (each line's wrapper is stripped once here).
        pending: tuple[int, str, Framed] | None = None
        # Records held back while another host's lines come between an ebt_log record and its pieces
        # (_Held); empty in a file of one host, where a record is yielded as soon as the next one starts.
        held = _Held()
        for n, text in self.lines:
            self.last_line = n
            if isinstance(text, Unrelated):
                yield from held.flush()
                if pending is not None:
                    yield from _split(pending[0], pending[1], pending[2])
                    pending = None
                self.unrelated = True
                yield n, text.text
                self.unrelated = False
                continue
            if "[/" in text:
                text = _BBCODE.sub("", text)
            if "^ " in text:
                text = _CARET.sub("", text)
            framed = strip_wrapper(text)
            if held.records and held.join(n, text, framed, pending):
                self.spans[held.joined] = n
                continue
            if pending is not None and _continues(pending[2], text, framed):
                # A wrapped line continues a record only as an ebt_log piece (_continues), and its
                # wrapper may show that it is another packet's piece.
                apart = _pieces_apart(pending[1], pending[2], text, framed) if framed.wrapped else None
                if apart is None:
                    inside = _VALUE_START.match(text.strip()) is not None  # wrapped inside a field
                    # An ebt_log piece logged as a line of its own keeps its wrapper there: join its message.
                    joined = (
                        pending[1].rstrip() + ("" if inside else " ") + (framed.msg if framed.wrapped else text).strip()
                    )
                    pending = (pending[0], joined, strip_wrapper(joined))
                    self.spans[pending[0]] = n
                    continue
                self.unjoined[n] = apart
            elif (
                self.unjoined
                and pending is not None
                and pending[0] in self.unjoined
                and _EBT_PIECE.match(framed.msg.lstrip())
            ):
                self.unjoined[n] = _AFTER_UNJOINED  # the rest of a piece not joined: its record's start is not here
            elif held.ebt and framed.wrapped and _EBT_PIECE.match(framed.msg.lstrip()) and _other_host(text, pending):
                self.unjoined[n] = _NO_RECORD_OF_HOST  # no record of its host was held open for it (_Held)
            if pending is not None:
                # Only a line with a host name (no dmesg stamp first) can be another host's; the substring
                # tests spare most records (not ebt_log's) the call.
                last = pending[1]
                named = not text.startswith("[")
                ebt = named and (" MAC source = " in last or last.find("OUT=", len(last) - 48) >= 0)
                if held.records or (ebt and _awaits_pieces(last, text)):
                    yield from held.add(pending, text)
                else:
                    yield from _split(pending[0], pending[1], pending[2])
            pending = (n, text, framed)
        yield from held.flush()
        if pending is not None:
            yield from _split(pending[0], pending[1], pending[2])


def _host(line: str) -> str | None:
    """The host a line's syslog or journal wrapper names (_host_and_clock), found without a regex for
    a line that starts with a dmesg stamp, which no host name comes before."""
    return None if line.lstrip().startswith("[") else _host_and_clock(line)[0]


def _other_host(text: str, pending: tuple[int, str, Framed] | None) -> bool:
    """Whether a line's wrapper names a host, and another than the record before it."""
    host = _host(text)
    return host is not None and (pending is None or _host(pending[1]) != host)


def _is_ebt(record: str) -> bool:
    """Whether a record is ebt_log's (_EBT_PIECE), or its start cut after the devices."""
    # The regex only where a line ends in its devices (most records end in their fields).
    tail = record.find("OUT=", len(record) - 48) >= 0
    return " MAC source = " in record or (tail and _EBT_HEAD_END.search(record.rstrip()) is not None)


def _awaits_pieces(record: str, after: str) -> bool:
    """Whether an ebt_log record may still take pieces after the line ``after`` it: that line is another
    host's (_Held)."""
    if not _is_ebt(record):
        return False
    host = _host(record)
    return host is not None and _host(after) not in (None, host)


class _Held:
    """ebt_log records held back for their pieces while another host's lines come in between.

    Two hosts logging to one syslog file interleave their lines, so the pieces of one host's ebt_log
    record (_EBT_PIECE) may come after the other host's record. One kernel prints a packet's pieces back
    to back under ebt_log_lock (net/bridge/netfilter/ebt_log.c), so a host's record is complete once that
    host logs its next record; until then it is held, open to pieces with its host's name that are
    stamped close to it (_pieces_apart). Records after a held one are held too, to keep line order. At
    most MAX records are held: an older one is let go (a host whose record never gets its pieces).
    """

    MAX: Final = 16

    def __init__(self) -> None:
        self.records: list[tuple[int, str, Framed, str | None, bool]] = []  # line, text, framed, host, open
        self.joined = 0  # the first line of the record the last join extended
        self.ebt = False  # whether a record was held open: only then is another host's lone piece explained

    def add(self, record: tuple[int, str, Framed], after: str) -> Iterator[tuple[int, str]]:
        """Hold a finished line's record (open to pieces when it is an ebt_log record of another host
        than the line ``after`` it); yield the records no piece can reach any more, in line order."""
        host, nxt = _host(record[1]), _host(after)
        open_ = _awaits_pieces(record[1], after)
        self.ebt = self.ebt or open_
        # The next record's host has moved on: its held records are complete.
        self.records = [(a, b, c, h, o and h != nxt) for a, b, c, h, o in self.records]
        self.records.append((record[0], record[1], record[2], host, open_))
        yield from self._release(self.MAX)

    def join(self, n: int, text: str, framed: Framed, pending: tuple[int, str, Framed] | None) -> bool:
        """Join an ebt_log piece of another host than ``pending``'s to that host's held record."""
        if not framed.wrapped or not _EBT_PIECE.match(framed.msg.lstrip()):
            return False
        host = _host(text)
        if host is None or (pending is not None and _host(pending[1]) == host):
            return False
        for i in range(len(self.records) - 1, -1, -1):
            first, before, before_framed, h, open_ = self.records[i]
            if not open_ or h != host:
                continue
            if not _ebt_piece(before_framed.msg, framed.msg) or _pieces_apart(before, before_framed, text, framed):
                return False
            joined = before.rstrip() + " " + framed.msg.strip()
            self.records[i] = (first, joined, strip_wrapper(joined), h, True)
            self.joined = first
            return True
        return False

    def flush(self) -> Iterator[tuple[int, str]]:
        """Yield every held record, in line order."""
        yield from self._release(0)

    def _release(self, keep: int) -> Iterator[tuple[int, str]]:
        # The records at the front no piece can reach, and open ones too while more than ``keep`` are held.
        while self.records and (len(self.records) > keep or not self.records[0][4]):
            first, text, framed, _, _ = self.records.pop(0)
            yield from _split(first, text, framed)


def _continues(before: Framed, text: str, framed: Framed) -> bool:
    """Whether a line is clearly the rest of the record on the previous line.

    Either the previous line is a wrapper with no message and this line, unwrapped, starts a record;
    or the previous line starts a record and this line, unwrapped, carries only fields the previous
    one lacks (a stray tail of another record repeats fields and is left alone).
    """
    if _ebt_piece(before.msg, framed.msg):
        return True
    if framed.wrapped:
        return False
    body = text.strip()
    if _VALUE_START.match(body) and _KEY_AT_END.search(before.msg.rstrip()):
        # The rest of a field the line broke inside: the record before must be an nf_log record
        # and this line must not start one of its own.
        return bool(record_anchors(before.msg)) and not record_anchors(body)
    field_start = _FIELD_START.match(body)
    empty_before = before.wrapped and not before.msg.strip()
    if not (field_start or empty_before):
        return False  # the common case: a line of its own, decided without another regex
    anchors = record_anchors(body)
    if empty_before:
        return bool(anchors)
    prev_anchors = record_anchors(before.msg)
    if anchors or not prev_anchors:
        return False
    seen = set(_FIELD_KEYS.findall(before.msg[prev_anchors[-1][1] :])) - _TWICE
    return not seen & set(_FIELD_KEYS.findall(body))


# The pieces of an ebt_log record after "IN=%s OUT=%s" (net/bridge/netfilter/ebt_log.c
# ebt_log_packet(): "MAC source = %pM MAC dest = %pM proto = 0x%04x", then " IP SRC=%pI4 IP DST=%pI4,
# IP tos=0x%02X, IP proto=%d" or " IPv6 SRC=... Next Header=%d" or " ARP HTYPE=%d, PTYPE=0x%04x,
# OPCODE=%d" and " ARP MAC SRC=... ARP IP DST=%pI4", then print_ports()'s " SPT=%u DPT=%u", or
# " INCOMPLETE ..."), each piece a printk call of its own: a piece the kernel logs as a record of its
# own (a printk without KERN_CONT starts a new record), a continuation journald or syslog keeps as an
# entry of its own when another message interrupted it, and a paste that wraps the long record over
# indented lines all leave a line that starts with a piece the ebt_log record on the line before
# lacks: the rest of that record.
_EBT_PIECE: Final = re.compile(
    r"^(?P<head>MAC source = |MAC dest = |proto = 0x|IP (?:SRC|DST|tos|proto)=|IPv6 (?:SRC|DST|priority)=|"
    r"Next Header=|ARP (?:HTYPE|MAC SRC|IP SRC|MAC DST|IP DST)=|PTYPE=|OPCODE=|SPT=|DPT=|INCOMPLETE )"
)
_EBT_HEAD_END: Final = re.compile(r"(?:^| )IN=\S* OUT=\S*$")


def _ebt_piece(before: str, msg: str) -> bool:
    """Whether ``msg`` is the next piece of the ebt_log record ``before`` (_EBT_PIECE)."""
    if " MAC source = " in before:
        m = _EBT_PIECE.match(msg.strip())
        # A piece the record already holds starts another record's text, not this one's rest.
        return m is not None and f" {m.group('head')}" not in before
    # Only a record's start, cut after its devices, takes the MAC source piece.
    return msg.lstrip().startswith("MAC source = ") and _EBT_HEAD_END.search(before.rstrip()) is not None


# ebt_log_packet() prints every piece of one packet's record while it holds ebt_log_lock with bottom
# halves off (spin_lock_bh, net/bridge/netfilter/ebt_log.c), and nothing there sleeps: one kernel stores
# the pieces back to back, stamped (a piece that breaks off is a record with a stamp of its own) within
# that section's run, microseconds plus what printk spends flushing queued lines to a slow console in the
# caller's context. A second is far more than that, and it is also the resolution of syslog's
# traditional wall-clock stamp, whose second may roll over between two pieces. The lock keeps another
# packet's ebt_log pieces from coming in between on one kernel, so a piece stamped further away, or one
# whose wrapper names another host (two hosts in one syslog file), is another packet's: joined, it
# would make one record of two packets.
_PIECES_APART_S = 1.0
_RFC5424_HEAD = re.compile(r"^<\d{1,3}>1 (\S+) (\S+) ")
_CLOCK = re.compile(r"(\d\d):(\d\d):(\d\d)(?:[.,](\d+))?")
_UNIX_STAMP = re.compile(r"^\d{9,10}\.\d{6}$")
_OTHER_HOST = (
    "an ebt_log piece whose wrapper names another host than the record on the line before: one packet's "
    "pieces come from one kernel (ebt_log.c), so it is not joined to that record"
)
_STAMPED_APART = (
    f"an ebt_log piece stamped more than {_PIECES_APART_S:g} s from the record on the line before: ebt_log.c "
    "prints one packet's pieces under one lock, back to back, so it is another packet's and is not joined"
)

_NO_RECORD_OF_HOST = (
    "an ebt_log piece whose host logged no ebt_log record open for it (within 1 s, before its next record): "
    "one packet's pieces come from one kernel (ebt_log.c), so it is not joined to another host's record"
)
_AFTER_UNJOINED = (
    "an ebt_log piece after a piece that was not joined: the start of its record is not on the line before, "
    "so it is not joined either"
)


def _pieces_apart(first: str, first_framed: Framed, text: str, framed: Framed) -> str | None:
    """Why the ebt_log piece on ``text`` is not the rest of the record starting on ``first``, by their
    wrappers (_PIECES_APART_S), or None when the wrappers allow it."""
    host, clock = _host_and_clock(first)
    piece_host, piece_clock = _host_and_clock(text)
    if host is not None and piece_host is not None and host != piece_host:
        return _OTHER_HOST
    if first_framed.stamp is not None and framed.stamp is not None:
        apart: float | None = abs(framed.stamp - first_framed.stamp)  # the kernel's monotonic stamps
    elif clock is not None and piece_clock is not None:
        apart = min(abs(piece_clock - clock), 86400 - abs(piece_clock - clock))  # across midnight too
    else:
        apart = None  # an unwrapped piece (a paste's wrap) or a wrapper without a stamp: nothing against
    return _STAMPED_APART if apart is not None and apart > _PIECES_APART_S else None


def _host_and_clock(line: str) -> tuple[str | None, float | None]:
    """The host a syslog or journal wrapper names and its wall-clock time of day in seconds, if shown."""
    s = line.lstrip()
    m = _RFC5424_HEAD.match(s)
    if m:
        return m.group(2), _seconds(m.group(1))
    s = _PRI.sub("", s, count=1)
    m = _SYSLOG_TS.match(s)
    if m is None:
        return None, None
    tag = _HOST_TAG.match(s[m.end() :])
    return (tag.group("host") if tag else None), _seconds(m.group(0).strip())


def _seconds(stamp: str) -> float | None:
    if _UNIX_STAMP.match(stamp):
        return float(stamp) % 86400
    m = _CLOCK.search(stamp)
    if m is None:
        return None
    h, mi, sec, frac = m.groups()
    return int(h) * 3600 + int(mi) * 60 + int(sec) + (float(f"0.{frac}") if frac else 0.0)


# Forum markup pasted around log text ("[FONT=arial]...[/FONT]"); it is never part of a kernel record.
_BBCODE: Final = re.compile(r"\[/?(?:FONT|COLOR|SIZE|B|I|U|CODE|QUOTE|HIGHLIGHT|ICODE)(?:=[^\]\s]*)?\]", re.IGNORECASE)
# A caret glued to a field value, where a paste marked its own line breaks ("...:08:00^ SRC=").
_CARET: Final = re.compile(r"(?<=[0-9A-Za-z])\^(?= |$)")
_STAMP: Final = re.compile(r"\[\s*\d+\.\d+\]")

# The start of an nf_log body: a record whose body lies between two IN=/OUT= anchors is complete.
_BODY: Final = re.compile(r"(?:^| )(?:SRC|PROTO|LEN|MAC)=")
_BODY_TOKEN: Final = re.compile(
    r"^(?:\[?[A-Z][A-Z0-9]*=\S*|\]|OPT|\(\S*\)|DF|MF|CE|CWR|ECE|URG|ACK|PSH|RST|SYN|FIN|AE)$"
)


def _split(n: int, text: str, framed: Framed) -> list[tuple[int, str]]:
    """Split a line holding several records at the end of each record's body.

    A prefix may itself contain "IN=x OUT=y" (trace-formats.md section 6), so a second anchor only
    starts a new record when a record body (SRC=, PROTO=, LEN=, MAC=) lies before it; the new record
    then starts after the last body token, so its wrapper and prefix go with it. Other text pasted
    between records (a shell prompt, other kernel messages, stray marks) ends where the record's
    own dmesg stamp begins, and stays with the record before it.
    """
    # A list, not a generator: one record per line is the usual case, and a generator costs an object.
    if " MAC source = " in text:
        return [(n, text)]
    anchors = record_anchors(text)
    if not anchors:
        return [(n, text)]
    first = _record_start(text, 0, anchors[0][0], framed)
    if len(anchors) == 1:  # the usual line: what the loop below gives for one anchor, without it
        return [(n, text if first == 0 else text[first:].strip())]
    starts = [first]
    for (_, end), (nxt, _) in zip(anchors, anchors[1:], strict=False):
        segment = text[end:nxt]
        if not _BODY.search(segment):
            continue
        cut = end
        pos = end
        for tok in segment.split(" "):
            pos += len(tok) + 1
            if tok and _BODY_TOKEN.match(tok):
                cut = pos
        starts.append(_record_start(text, min(cut, nxt), nxt, None))
    if starts == [0]:
        return [(n, text)]
    ends = [*starts[1:], len(text)]
    return [(n, text[start:end].strip()) for start, end in zip(starts, ends, strict=True)]


def _record_start(text: str, start: int, anchor: int, line: Framed | None) -> int:
    """Where a record begins: at ``start``, or at its own dmesg stamp when text that no wrapper explains
    (a shell prompt, another kernel message) comes before it.

    ``line`` is the whole line framed, for the first record (strip_wrapper() removes only a head, so
    the record's message is the tail of the line).
    """
    if line is not None and start == 0:
        msg_start = len(text) - len(line.msg)
    else:
        msg_start = start + len(text[start:anchor]) - len(_strip_wrapper(text[start:anchor]).msg)
    if text.find("[", msg_start, anchor) < 0:
        return start  # the usual record: no stamp (_STAMP starts with "[") before its anchor
    stamps = list(_STAMP.finditer(text, msg_start, anchor))
    return stamps[-1].start() if stamps else start
