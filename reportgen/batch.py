"""Run ``report`` over one case or many: each case read, explained and written on its own.

A bad case is reported and skipped (keep-going), so one malformed case.yaml no longer costs the
other cases their reports. Cases may run in parallel processes; each writes only its own folder and
the results come back in input order, so the output does not depend on ``--jobs``.
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from reportgen.errors import InputError
from reportgen.model import NO_CONVERSATION, ConversationResult, Packet, Report
from reportgen.redact import Redactor
from reportgen.render.options import RenderOptions
from reportgen.select import Selecting, Selection, select
from reportgen.sources.case import TraceReading

if TYPE_CHECKING:
    from reportgen.sources.case import CaseSpec


class Sink(Protocol):
    """A pipeline sink that can forget what it got (pipeline.stream_case restarts a stale pass)."""

    def __call__(self, result: ConversationResult) -> None: ...

    def restart(self) -> None: ...


REDACTION_MAP = "redaction-map.json"


@dataclass(frozen=True)
class CaseJob:
    """One case to report: its inputs and everything that decides its output."""

    inputs: tuple[Path, ...]
    out: Path
    formats: tuple[str, ...]
    prefix_map: Path | None = None
    redact_key: bytes | None = None  # None: no redaction
    selection: Selection = Selection()
    options: RenderOptions = RenderOptions()
    allow_outside: bool = False  # let case.yaml name files outside the case folder
    debug: bool = False  # let an unexpected error raise (with its traceback) instead of failing the case
    rename: str | None = None  # the case's name when another case of the run already has its own

    @property
    def name(self) -> str:
        if self.rename is not None:
            return self.rename
        return self.inputs[0].name if len(self.inputs) == 1 else self.inputs[0].parent.name or "case"


@dataclass(frozen=True)
class CaseResult:
    """What became of one case: its counts and files, or why it failed."""

    name: str
    error: str | None = None
    packets: int = 0
    conversations: int = 0
    outcomes: tuple[tuple[str, int], ...] = ()  # worst first
    lines_total: int = 0
    lines_used: int = 0
    unplaced: int = 0  # lines --strict counts: hook not recognised, truncated records
    written: tuple[str, ...] = ()  # paths relative to the output folder
    warnings: tuple[str, ...] = ()

    @property
    def worst(self) -> str:
        return self.outcomes[0][0] if self.outcomes else "—"


def _spec(job: CaseJob, scratch: Path) -> tuple[CaseSpec, Redactor | None]:
    """A job's case as the pipeline reads it (redacted when asked), with the Redactor, if any."""
    from reportgen.parsers.prefix import PrefixMap
    from reportgen.sources.case import load_spec

    spec = load_spec(
        list(job.inputs), PrefixMap.load(job.prefix_map) if job.prefix_map else None, allow_outside=job.allow_outside
    )
    redactor = None
    if job.redact_key is not None:
        from reportgen.sources.redaction import redact_case

        redactor = Redactor(job.redact_key)
        spec = redact_case(spec, redactor, scratch / "redacted")
    return spec, redactor


def load_report(job: CaseJob, scratch: Path) -> tuple[Report, Redactor | None]:
    """Read and explain a job's case (redacted when asked); return it with the Redactor, if any."""
    from reportgen.pipeline import build_report

    spec, redactor = _spec(job, scratch)
    report = build_report(spec)
    if job.rename is not None:
        report = replace(report, name=job.rename)
    return select(report, job.selection), redactor


class _Counted:
    """The sink a case is read into: the writers, counting what the batch summary shows (packets,
    conversations, truncated records) as results pass; forgets them when a pass restarts."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks
        self.packets = self.conversations = self.truncated = 0

    def __call__(self, result: ConversationResult) -> None:
        for sink in self.sinks:
            sink(result)
        self.packets += len(result.packets)
        self.conversations += result.conversation.id != NO_CONVERSATION  # packets of no conversation
        self.truncated += truncated_records(result.packets)

    def restart(self) -> None:
        for sink in self.sinks:
            sink.restart()
        self.packets = self.conversations = self.truncated = 0


def _stream_case(job: CaseJob, scratch: Path) -> tuple[Report, Redactor | None, _Counted, list[Path]]:
    """Read a case into its files as its conversations finish: report.json and report.jsonl as they
    go (render.jsonout.JsonStream), the other formats from what they tell (render.digest.DigestSink),
    with a selection applied to each conversation as it finishes (select.Selecting)."""
    from reportgen.pipeline import stream_case
    from reportgen.render.digest import DigestSink
    from reportgen.render.jsonout import PACKETS_FILE, REPORT_FILE, JsonStream
    from reportgen.render.write import output_folder, render_into

    spec, redactor = _spec(job, scratch)
    name = job.rename if job.rename is not None else spec.name
    formats = list(job.formats)
    with output_folder(job.out, name) as (tmp, final):
        stream = JsonStream(tmp) if "json" in formats else None
        room = job.options.markdown_limit if "md" in formats else 0  # the answers a Markdown head lists
        digest = DigestSink(answer_room=room) if set(formats) - {"json"} else None
        counted = _Counted([s for s in (stream, digest) if s is not None])
        selecting = None if job.selection.empty else Selecting(job.selection, counted)
        # The appendix's first trace lines are kept for the documents that list them.
        head = replace(stream_case(spec, selecting or counted, appendix=digest is not None), name=name)
        if selecting is not None:
            head = selecting.head(head)
        if stream is not None:
            # The appendix note speaks of the documents' appendix: report.json is the same whichever
            # formats are asked.
            appendix = TraceReading([], list(head.lines), {"": head.lines_total}).appendix_note() if digest else []
            stream.close(replace(head, notes=tuple(n for n in head.notes if n not in appendix)))
        names = [REPORT_FILE, PACKETS_FILE] if stream else []
        if digest is not None:
            names = render_into(digest.digest(head), tmp, formats, job.options)
    return head, redactor, counted, [final / n for n in names]


def unplaced_lines(report: Report) -> int:
    """Count the lines --strict fails on: records whose hook was not recognised, truncated records
    (of the packets the report holds: a streamed head holds none, its sink counts them)."""
    from reportgen.pipeline import unused_rows

    unplaced = sum(n for _, _, reason, _, n in unused_rows(report.unused) if reason.startswith("hook not recognised"))
    return unplaced + truncated_records(report.packets)


def truncated_records(packets: Iterable[Packet]) -> int:
    """Count the hops whose record was cut off (the other kind of line --strict fails on)."""
    return sum(1 for p in packets for h in p.hops if h.event.record.truncated)


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a case is read, explained and written.

    A big case is millions of small tracked objects, almost all acyclic and freed by reference
    counting, and each collection walks all of them: 17-25 % of a large run (docs/performance.md).
    What exists before (imports, caches) is frozen out of the collections; the collector is enabled
    again afterwards, also when the case fails, unless it was off already.
    """
    was_enabled = gc.isenabled()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def run_case(job: CaseJob) -> CaseResult:
    """Report one case; an input error becomes a failed result naming the file and line."""
    try:
        with cyclic_gc_paused(), tempfile.TemporaryDirectory(prefix="reportgen-") as tmp:
            report, redactor, counted, written = _stream_case(job, Path(tmp))
            packets, conversations, truncated = counted.packets, counted.conversations, counted.truncated
            if redactor is not None:
                from reportgen.sources.redaction import write_mapping

                write_mapping(redactor, job.out / report.name / REDACTION_MAP)
    except (InputError, OSError) as exc:
        return CaseResult(job.name, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one line naming the case; --debug shows the traceback
        if job.debug:
            raise
        return CaseResult(
            job.name,
            error=f"{', '.join(map(str, job.inputs))}: reportgen failed on this input ({type(exc).__name__}: "
            f"{str(exc)[:200]}); this is a bug, please report it (--debug prints the traceback)",
        )
    warnings = []
    if report.lines_total == 0:
        warnings.append("no trace lines: the case is empty")
    elif not packets:
        warnings.append(f"none of its {report.lines_total} trace lines is a packet record")
    summary = report.summary
    return CaseResult(
        name=report.name,
        packets=packets,
        conversations=conversations,
        outcomes=tuple((c.value, n) for c, n in summary.outcomes) if summary is not None else (),
        lines_total=report.lines_total,
        lines_used=report.lines_used,
        unplaced=unplaced_lines(report) + truncated,
        written=tuple(p.relative_to(job.out).as_posix() for p in written),
        warnings=tuple(warnings),
    )


def run_cases(
    jobs: list[CaseJob], workers: int = 1, progress: Callable[[int, int, str], None] | None = None
) -> list[CaseResult]:
    """Run every job, in ``workers`` processes when more than one, and return results in job order."""
    results: list[CaseResult] = []

    def each(it: Iterator[CaseResult]) -> None:
        for res in it:
            results.append(res)
            if progress is not None:
                progress(len(results), len(jobs), res.name)

    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            each(pool.map(run_case, jobs))
    else:
        each(run_case(j) for j in jobs)
    return results
