"""Write a report's files: the one place that decides output names and order.

A case's output folder is replaced as a whole: every file is written (and fsynced) into a hidden
temporary folder beside it, which is then swapped in with one rename (Linux renameat2
RENAME_EXCHANGE when the folder exists, rename(2) when it does not). A reader, a concurrent run or a
SIGKILL at any moment sees the old folder or the new one, never a torn file, and files of an earlier
run (svg/ of packets that are gone) do not linger. Each output folder holds a marker file, so
reportgen never reads its own reports back as input.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reportgen.errors import InputError
from reportgen.model import Report
from reportgen.render.digest import Digest
from reportgen.render.options import RenderOptions
from reportgen.render.safe_text import terminal_safe, xml_safe
from reportgen.sources.case import OUTPUT_MARKER

_RENAME_EXCHANGE = 2  # linux/fs.h: atomically exchange the two paths
_AT_FDCWD = -100
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-\w+$")


def safe_case_name(name: str) -> str:
    """A case name that is one plain path component: no separators, control characters or dot names."""
    clean = re.sub(r"[/\\\x00-\x1f\x7f-\x9f]", "_", name).strip()
    return clean if clean and clean not in (".", "..") and not clean.startswith(".") else f"case{clean}"


def write_report(
    report: Report, out_root: Path, formats: list[str], options: RenderOptions | None = None
) -> list[Path]:
    """Write the requested formats under OUT/<case name>/ and return the paths written."""
    with output_folder(out_root, report.name) as (tmp, final):
        names = render_into(report, tmp, formats, options or RenderOptions())
    return [final / n for n in names]


@contextmanager
def output_folder(out_root: Path, case_name: str) -> Iterator[tuple[Path, Path]]:
    """Yield (a fresh hidden folder to write a case's files into, OUT/<case name>); when the block ends
    without an error the folder is swapped in at OUT/<case name> as a whole, else removed.

    A streaming writer (render.jsonout.JsonStream) opens its files in the hidden folder while the
    case is still being read, so its report.json and report.jsonl appear together or not at all.
    """
    out_root.mkdir(parents=True, exist_ok=True)
    name = safe_case_name(case_name)
    final = out_root / name
    if final.resolve().parent != out_root.resolve():
        raise InputError(str(final), None, f"resolves outside the output folder {out_root} (a symlink?); not written")
    _remove_stale_temps(out_root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-{os.getpid()}-", dir=out_root))
    try:
        yield tmp, final
        (tmp / OUTPUT_MARKER).write_text("written by reportgen; not read as input\n", encoding="utf-8")
        _fsync_dir(tmp)
        _swap_in(tmp, final)
        _fsync_dir(out_root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the new folder on failure, the old one after a swap


def render_into(report: Report | Digest, out: Path, formats: list[str], options: RenderOptions) -> list[str]:
    """Write the formats into folder ``out``; return their names. Given a Digest (a streamed case,
    batch._stream_case) the JSON files are already there, written by render.jsonout.JsonStream."""
    from reportgen.render.digest import digest_of

    written: list[str] = []
    case = report if isinstance(report, Digest) else digest_of(report) if set(formats) - {"json"} else None

    def put(name: str, data: str | bytes) -> None:
        p = out / name
        with p.open("wb") as fh:
            fh.write(data if isinstance(data, bytes) else data.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        written.append(name)

    svgs: dict[str, str] | None = None
    if {"svg", "html", "pdf"} & set(formats):
        from reportgen.render.html import packet_svgs

        svgs = {pid: xml_safe(svg) for pid, svg in packet_svgs(case or report).items()}
    if "svg" in formats and svgs is not None:
        (out / "svg").mkdir()
        for pid, svg in svgs.items():
            put(f"svg/{safe_case_name(pid)}.svg", svg)
        _fsync_dir(out / "svg")
    html: str | None = None
    if "html" in formats:
        from reportgen.render.html import render_html

        html = render_html(case or report, svgs)
    if "html" in formats and html is not None:
        put("report.html", xml_safe(html))
    if "json" in formats:
        from reportgen.render.jsonout import PACKETS_FILE, REPORT_FILE, write_json

        # report.json and report.jsonl, written as they go and fsynced
        written += [REPORT_FILE, PACKETS_FILE] if isinstance(report, Digest) else write_json(report, out)
    if "text" in formats:
        from reportgen.render.text import render_text

        put("report.txt", terminal_safe(render_text(case or report, options)))
    if "md" in formats:
        from reportgen.render.markdown import render_markdown

        put("report.md", terminal_safe(render_markdown(case or report, options)))
    if "pdf" in formats and svgs is not None:
        from reportgen.render.pdf import render_pdf

        put("report.pdf", render_pdf(case or report, svgs, options))
    return written


def _swap_in(new: Path, final: Path) -> None:
    """Put folder ``new`` at ``final``; afterwards ``new`` holds the old folder (or nothing)."""
    for _ in range(3):
        if not final.exists():
            try:
                os.rename(new, final)
                new.mkdir()  # so the caller's clean-up has something to remove, as after an exchange
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                continue  # a concurrent run put its folder there first: exchange with it
        if _exchange(new, final):
            return
        # No renameat2 (not Linux, or an old libc): move the old folder aside first. There is then a
        # moment with no folder at all, but still never a torn file.
        aside = new.with_name(new.name + "-old")
        os.rename(final, aside)
        os.rename(new, final)
        os.rename(aside, new)
        return
    raise OSError(errno.EBUSY, "output folder kept changing under concurrent runs", str(final))


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temps(out_root: Path) -> None:
    """Remove temporary folders left by runs that were killed (their process no longer exists)."""
    for p in out_root.iterdir():
        m = _TEMP.match(p.name)
        if m and p.is_dir() and not _alive(int(m.group("pid"))):
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
