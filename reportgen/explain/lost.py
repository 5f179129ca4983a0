"""Which conversations a trace monitor's lost events may have touched.

``reportgen capture`` writes a case note when its trace monitor lost events (TraceMonitor.lost: the
monitor ended early, or its socket's drop counter rose). A lost event is a rule-trace line that never
reached the trace file, so any packet that passed while the monitor ran may lack its rule hits there.
The note carries the monitor's running time in kernel-log time; each conversation whose lines fall in
that time (or that no line places in time) gets an assumption saying so, next to its answer. A note
without a time (an older capture's) places the loss nowhere: every conversation of the case gets it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from reportgen.model import Answer, Packet

# The note's start; older captures wrote it too, followed by "; packets after that point are missing".
NOTE_HEAD: Final = "The trace monitor lost events ("
_WINDOW: Final = re.compile(
    r"while it ran from kernel time (?P<start>\d+\.\d+) to (?P<end>\d+\.\d+) s; "
    r"rule-trace lines of (?P<file>\S+) may be missing"
)
# A loss not placed in time: capture's note without a time, and the note of captures before it.
_UNPLACED: Final = re.compile(
    r"\); (?:rule-trace lines of (?P<file>\S+) may be missing for any packet"
    r"|packets after that point are missing from (?P<old>\S+?))\.$"
)


def slack(start: float) -> float:
    """How far a time taken with CLOCK_MONOTONIC may lie from the kernel log's stamp of the same moment.

    The kernel log stamps records with local_clock() (kernel/printk/printk.c vprintk_store), which NTP
    does not steer; CLOCK_MONOTONIC is slewed by at most 500 ppm (adjtimex(2), MAXFREQ), so the two part
    by at most that share of the time since boot, plus a second for how each started counting."""
    return 1.0 + start * 0.0005


@dataclass(frozen=True)
class MonitorLoss:
    """A trace monitor's loss, as its case note states it."""

    what: str  # what was lost, in TraceMonitor.lost's words
    file: str  # the trace file missing the events
    start: float | None  # the monitor's running time in kernel-log seconds; None when not placed in time
    end: float | None

    def note(self) -> str:
        """The case note capture writes (monitor_losses reads it back)."""
        if self.start is None or self.end is None:
            return f"{NOTE_HEAD}{self.what}); rule-trace lines of {self.file} may be missing for any packet."
        return (
            f"{NOTE_HEAD}{self.what}) while it ran from kernel time {self.start:.6f} to {self.end:.6f} s; "
            f"rule-trace lines of {self.file} may be missing for any packet in that time."
        )


def monitor_losses(notes: Iterable[str]) -> tuple[MonitorLoss, ...]:
    """The monitor losses a case's notes state, in note order."""
    out = []
    for note in notes:
        if not note.startswith(NOTE_HEAD):
            continue
        m = _WINDOW.search(note)
        if m is not None:
            what = note[len(NOTE_HEAD) : m.start()].removesuffix(") ")
            out.append(MonitorLoss(what, m["file"], float(m["start"]), float(m["end"])))
            continue
        u = _UNPLACED.search(note)
        if u is not None:
            out.append(MonitorLoss(note[len(NOTE_HEAD) : u.start()], u["file"] or u["old"], None, None))
        else:
            out.append(MonitorLoss(note[len(NOTE_HEAD) :], "the trace monitor's file", None, None))
    return tuple(out)


def _span(packets: Iterable[Packet]) -> tuple[float, float] | None:
    """The kernel time of the first and last stamped line the packets used; None when no line has one."""
    stamps = [h.event.record.stamp for p in packets for h in p.hops if h.event.record.stamp is not None]
    return (min(stamps), max(stamps)) if stamps else None


def loss_assumptions(packets: Sequence[Packet], losses: Sequence[MonitorLoss]) -> tuple[str, ...]:
    """What each loss means for these packets (one conversation's), when it may have touched them."""
    out = []
    span = _span(packets) if losses else None
    for loss in losses:
        if loss.start is None or loss.end is None:
            when, whose = "at a time the case does not record", "these packets'"
        elif span is None:
            when = (
                f"between kernel time {loss.start:.3f} and {loss.end:.3f} s, and no line places these packets in time"
            )
            whose = "their"
        elif span[0] <= loss.end + slack(loss.end) and span[1] >= loss.start - slack(loss.start):
            when, whose = f"while these packets passed (kernel time {loss.start:.3f} to {loss.end:.3f} s)", "their"
        else:
            continue  # the loss was before or after these packets
        out.append(
            f"the trace monitor lost events ({loss.what}) {when}: rule-trace lines of {loss.file} may be "
            f"missing from {whose} hops; a capture whose monitor lost nothing would settle it"
        )
    return tuple(out)


# Added to the answer's sentence, which every output shows (the assumptions may be folded away).
MAY_LACK_WORDS: Final = "its rule trace may be incomplete: the trace monitor lost events during the capture"


def with_losses(answer: Answer, packets: Sequence[Packet], losses: Sequence[MonitorLoss]) -> Answer:
    """The answer saying, in its sentence, that a monitor loss may have touched its packets, with an
    assumption for each such loss."""
    extra = loss_assumptions(packets, losses) if losses else ()
    if not extra:
        return answer
    sentence = f"{answer.sentence.removesuffix('.')}; {MAY_LACK_WORDS}."
    return replace(answer, sentence=sentence, assumptions=(*answer.assumptions, *extra))
