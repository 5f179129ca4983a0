"""Command line: thin. Each command parses its arguments and calls one function.

Exit codes:
  0  success
  1  --strict and some input lines could not be used (unrecognised hook, truncated record)
  2  bad input or usage: the message names the file and line (also an input reportgen itself failed
     on: a one-line message names the input; --debug prints the traceback)
  3  a required external tool is missing (Graphviz dot); the message says what to install
  4  lab/capture refused to run (not root, namespaces unavailable, leftover rules)
  5  report over several cases: some cases failed (each is named on stderr; the others were written)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from reportgen import __version__
from reportgen.errors import InputError
from reportgen.render.safe_text import terminal_safe

FORMATS = ("html", "svg", "json", "text", "md", "pdf")
DEFAULT_FORMATS = "html,svg,json,text,md"
EXIT_SOME_CASES_FAILED = 5

_REPORT_EXAMPLES = """examples:
  reportgen report samples/seed-container-to-internet -o out
  reportgen report samples/*/ -o out --jobs 4 --format html,pdf     # a batch: out/index.html
  reportgen report dmesg.log iptables-save.txt route-n.txt -o out    # loose files, one case
  reportgen report case/ -o out --redact --redact-key "$KEY"          # shareable: pseudonyms
  reportgen report case/ -o out --verdict dropped --host 172.17.0.2   # only some conversations

exit codes: 0 written; 1 --strict and unused lines; 2 bad input; 3 Graphviz missing;
  5 several cases and some failed (each named on stderr; the others were written)
"""
_EXPLAIN_EXAMPLES = """examples:
  reportgen explain samples/seed-host-to-container
  journalctl -k -o short-precise | reportgen explain -
  reportgen explain case/ --level minimal --flow c2
  reportgen explain case/ --format md --redact > issue.md
"""


def _case_options(p: argparse.ArgumentParser) -> None:
    """Options report and explain share: input interpretation, selection, detail, redaction."""
    from reportgen.render.options import Level

    p.add_argument("--prefix-map", type=Path, help="YAML prefix -> hook map")
    p.add_argument("--strict", action="store_true", help="exit 1 when any trace line could not be used")
    p.add_argument(
        "--level",
        choices=[lv.value for lv in Level],
        default=Level.DETAILED.value,
        help="detail of the text and Markdown outputs (default detailed)",
    )
    p.add_argument("--flow", action="append", default=[], metavar="ID", help="only this conversation (c1, c2, ...)")
    p.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="ADDR",
        help="only conversations from or to this address (before or after NAT)",
    )
    p.add_argument("--port", action="append", default=[], type=int, help="only conversations with this port")
    p.add_argument(
        "--verdict",
        action="append",
        default=[],
        metavar="OUTCOME",
        help="only conversations with a packet of this outcome (dropped, left, delivered, last-seen)",
    )
    p.add_argument(
        "--redact",
        action="store_true",
        help="replace addresses, MACs and host names by consistent pseudonyms in every output",
    )
    p.add_argument("--redact-key", metavar="KEY", help="key for reproducible pseudonyms (default: a random key)")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="reportgen", description="Explain netfilter packet traces hop by hop.")
    ap.add_argument("--version", action="version", version=f"reportgen {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    rp = sub.add_parser(
        "report",
        help="write reports for one or more cases",
        epilog=_REPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write HTML, SVG, JSON, text, Markdown and PDF reports under OUT/<case>/. "
        "Several case folders make a batch: OUT/index.html lists them, a bad case is reported "
        "and skipped (exit 5), an empty case is a warning.",
    )
    rp.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        help="case folders (each one a case), or trace and snapshot files (one case); - reads stdin",
    )
    rp.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    rp.add_argument(
        "--format", default=DEFAULT_FORMATS, help=f"comma-separated: {','.join(FORMATS)} (default {DEFAULT_FORMATS})"
    )
    rp.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=1,
        metavar="N",
        help="render N cases in parallel processes (output is the same as with 1)",
    )
    rp.add_argument(
        "--appendix",
        action="store_true",
        help="PDF: append every snapshot and trace line (default: only the cited excerpts)",
    )
    _case_options(rp)
    _input_options(rp)

    ex = sub.add_parser(
        "explain",
        help="print the explanation of a case as a text tree",
        epilog=_EXPLAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print each conversation, its packets folded by behaviour, and their hops. "
        "Colour only on a terminal (NO_COLOR turns it off); the width follows the terminal.",
    )
    ex.add_argument("inputs", nargs="+", type=Path, help="a case folder, or trace and snapshot files; - reads stdin")
    ex.add_argument("--format", default="text", help="text or md (default text)")
    _case_options(ex)
    ex.add_argument(
        "--redact-map", type=Path, metavar="FILE", help="with --redact: write the pseudonym mapping here (mode 0600)"
    )
    _input_options(ex)

    cap = sub.add_parser(
        "capture",
        help="log a host's own traffic: print the rules, or --apply them",
        description="Without --apply the rules are only printed. With --apply they are added, "
        "the command after -- runs (or Ctrl-C ends the capture), the new kernel lines are read "
        "and every added rule is removed again. A host filter matches addresses as each hook "
        "sees them, so hooks after NAT may not match.",
    )
    cap.add_argument(
        "--backend",
        default="iptables-nft,ebtables",
        help="comma-separated: iptables-nft, iptables-legacy, ebtables, nft-log, nft-trace",
    )
    cap.add_argument("--host", help="only packets from or to this address")
    cap.add_argument("--proto", choices=("icmp", "tcp", "udp"), help="only this protocol")
    cap.add_argument("--port", type=int, help="only this TCP/UDP port (either direction)")
    cap.add_argument("--rate", default="20/second", help="log rate limit per rule (default 20/second)")
    cap.add_argument("--family", default="4,6", help="IP families for iptables backends: 4, 6 or 4,6")
    cap.add_argument("--apply", action="store_true", help="really add the rules and capture")
    cap.add_argument("--cleanup", action="store_true", help="remove leftovers of earlier capture runs and exit")
    cap.add_argument("--netns", help="run inside this network namespace (ip netns exec)")
    cap.add_argument("-o", "--output", type=Path, default=Path("capture"), help="case folder to write")
    cap.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="command to run while capturing")

    snap = sub.add_parser("snapshot", help="collect a read-only host snapshot into a case folder")
    snap.add_argument("-o", "--output", type=Path, required=True)
    snap.add_argument("--netns", help="collect inside this network namespace")

    sim = sub.add_parser(
        "simulate",
        help="predict a packet's path from a case's snapshots alone (what-if)",
        description="Walk a hypothetical packet through the snapshots: bridge, routing and every "
        "base chain at every hook. Undecidable matches fork the walk; assumptions are listed.",
    )
    sim.add_argument("inputs", nargs="+", type=Path, help="a case folder, or snapshot files")
    sim.add_argument("--from", dest="src", required=True, help="address, name, interface, or 'host'")
    sim.add_argument("--to", dest="dst", required=True, help="address, name, interface, or 'host'")
    sim.add_argument("--proto", choices=("tcp", "udp", "icmp"), default="icmp")
    sim.add_argument("--dport", type=int)
    sim.add_argument("--sport", type=int)
    sim.add_argument("--in", dest="in_iface", help="the interface (or bridge port) the packet arrives on")
    sim.add_argument(
        "--assume-ct",
        choices=("new", "established"),
        default="new",
        help="conntrack state of the packet (default new: a connection's first packet)",
    )
    sim.add_argument("--format", default="text", help=f"comma-separated: {','.join(FORMATS)} (default text)")
    sim.add_argument("-o", "--output", type=Path, help="output folder (without it, text goes to stdout)")

    lab = sub.add_parser("lab", help="build a Docker-like host in network namespaces and capture scenarios")
    lab.add_argument("scenarios", nargs="*", help="scenario names (default: all); 'list' lists them")
    lab.add_argument("-o", "--output", type=Path, default=Path("lab-out"))
    lab.add_argument("--keep", action="store_true", help="leave the namespaces up (for debugging)")
    lab.add_argument(
        "--cleanup",
        action="store_true",
        help="undo lab runs that were killed (namespaces, processes, nf_log_all_netns) and exit",
    )
    return ap


def _input_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--allow-outside",
        action="store_true",
        help="let case.yaml name files outside the case folder (absolute, '..', symlinks)",
    )
    sp.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")


def run() -> None:
    """The program (console script and ``python -m reportgen``): main's status is final once it
    returns, so later SIGINT/SIGTERM/SIGHUP are ignored until the process ends (lab.netns.
    ignore_late_signals: CPython's shutdown would otherwise let a late Ctrl-C replace "4: objects were
    left in place" with a death by SIGINT). Not in main: a caller that runs main in its own process
    keeps its handlers."""
    code = main()
    from reportgen.lab.netns import ignore_late_signals

    ignore_late_signals()
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except _Failed as exc:
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exception(exc.__cause__ or exc)
        print(f"reportgen: error: {terminal_safe(str(exc))}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "report":
            return _report(args)
        if args.command == "explain":
            return _explain(args)
        if args.command == "capture":
            return _capture(args)
        if args.command == "snapshot":
            return _snapshot(args)
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "lab":
            from reportgen.lab.runner import main as lab_main

            try:
                return lab_main(args.scenarios, args.output, keep=args.keep, cleanup=args.cleanup)
            except KeyboardInterrupt:
                return _lab_interrupted()
    except InputError as exc:
        print(f"reportgen: error: {terminal_safe(str(exc))}", file=sys.stderr)
        return 2
    except _Missing as exc:
        print(f"reportgen: error: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:  # unreadable input, full disk, output folder not writable
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"reportgen: error: {terminal_safe(where + (exc.strerror or str(exc)))}", file=sys.stderr)
        return 2
    return 2


class _Missing(Exception):
    pass


class _Failed(Exception):
    """reportgen failed on an input in a way it did not foresee (a bug): one line, the input named."""

    @staticmethod
    def on(where: str, exc: BaseException) -> _Failed:
        return _Failed(
            f"{where}: reportgen failed on this input ({type(exc).__name__}: {str(exc)[:200]}); this is "
            "a bug, please report it (--debug prints the traceback)"
        )


def _formats(text: str, allowed: tuple[str, ...]) -> list[str]:
    """Split --format; an unknown name is a usage error that suggests the closest one."""
    import difflib

    formats = [f.strip() for f in text.split(",") if f.strip()]
    for f in formats:
        if f not in allowed:
            close = difflib.get_close_matches(f, allowed, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise InputError("--format", None, f"unknown format {f}{hint} (choose from {', '.join(allowed)})")
    return formats


def _jobs(args: argparse.Namespace, inputs: list[Path], out: Path, formats: list[str]):  # type: ignore[no-untyped-def]
    """One job per case folder when several folders are given, else one job for all the files."""
    import secrets

    from reportgen.batch import CaseJob
    from reportgen.render.options import Level, RenderOptions
    from reportgen.select import Selection

    key = None
    if args.redact or args.redact_key:
        # One key for the whole run, so a batch's cases share pseudonyms.
        key = args.redact_key.encode("utf-8") if args.redact_key else secrets.token_bytes(32)
    sel = Selection(tuple(args.flow), tuple(args.host), tuple(args.port), tuple(args.verdict))
    opts = RenderOptions(level=Level(args.level), appendix=getattr(args, "appendix", False))
    from reportgen.sources.case import is_output_folder

    if len(inputs) > 1 and all(p.is_dir() for p in inputs):
        groups = []
        for p in sorted(set(inputs), key=lambda p: p.resolve()):
            if is_output_folder(p):
                print(terminal_safe(f"reportgen: {p}: skipped, it is a reportgen output folder"), file=sys.stderr)
            else:
                groups.append([p])
    else:
        groups = [inputs]
    jobs, names = [], set()
    for g in groups:
        job = CaseJob(tuple(g), out, tuple(formats), args.prefix_map, key, sel, opts, args.allow_outside, args.debug)
        # Two cases named alike would write to one output folder: the later ones get a suffix.
        name, k = job.name, 1
        while name in names:
            k += 1
            name = f"{job.name}-{k}"
        if name != job.name:
            print(
                terminal_safe(
                    f"reportgen: {', '.join(map(str, g))}: case name {job.name!r} is taken; writing it as {name!r}"
                ),
                file=sys.stderr,
            )
            job = replace(job, rename=name)
        names.add(name)
        jobs.append(job)
    return jobs


def _strict_status(bad: int, strict: bool) -> int:
    if not strict:
        return 0
    if bad:
        print(f"reportgen: --strict: {bad} lines could not be fully used", file=sys.stderr)
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    import tempfile

    from reportgen import progress
    from reportgen.batch import run_cases
    from reportgen.render.dot import DotMissing
    from reportgen.sources.stdin import spool_streams

    formats = _formats(args.format, FORMATS)
    with tempfile.TemporaryDirectory(prefix="reportgen-stdin-") as tmp:
        jobs = _jobs(args, spool_streams(args.inputs, Path(tmp)), args.output, formats)
        try:
            with progress.shown(len(jobs)) as display:  # cases done, lines read, lines/s, time left
                results = run_cases(jobs, max(1, args.jobs), display)
        except DotMissing as exc:
            raise _Missing(str(exc)) from exc
    for res in results:
        if res.error:
            print(terminal_safe(f"reportgen: error: case {res.name}: {res.error}"), file=sys.stderr)
            continue
        main_file = next((w for w in res.written if w.endswith("report.html")), res.written[0] if res.written else "")
        print(
            terminal_safe(
                f"{res.name}: {res.packets} packets, {res.lines_used}/{res.lines_total} lines used"
                f" -> {args.output / main_file}"
            )
        )
        for w in res.warnings:
            print(terminal_safe(f"reportgen: warning: case {res.name}: {w}"), file=sys.stderr)
    failed = [r for r in results if r.error]
    if len(jobs) > 1:
        from reportgen.render.index import write_index

        index = write_index(results, args.output)
        ok = len(results) - len(failed)
        print(
            f"reportgen: {len(results)} cases: {ok} written, {len(failed)} failed, "
            f"{sum(1 for r in results if r.warnings)} with warnings -> {index}",
            file=sys.stderr,
        )
    if failed:
        return 2 if len(jobs) == 1 else EXIT_SOME_CASES_FAILED
    return _strict_status(sum(r.unplaced for r in results), args.strict)


def _lab_interrupted() -> int:
    """Ctrl-C during a lab run: its finally-blocks have torn down what they could; say what is left."""
    from reportgen.lab.netns import own_leftovers

    left = own_leftovers()
    if left:
        print(
            "reportgen lab: interrupted; these were left in place:"
            + "".join(f"\n  {terminal_safe(x)}" for x in left)
            + "\nremove them with: reportgen lab --cleanup",
            file=sys.stderr,
        )
        return 4
    print("reportgen lab: interrupted; the namespaces it made were removed", file=sys.stderr)
    return 130


def _capture(args: argparse.Namespace) -> int:
    from reportgen import capture as cp

    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    try:
        # Every value is checked before anything runs, also in print-only mode (exit 2).
        netns = cp.check_netns(args.netns)
        flt = cp.Filter(args.host, args.proto, args.port, args.rate)
        backends = [b.strip() for b in args.backend.split(",") if b.strip()]
        families = tuple(f.strip() for f in args.family.split(",") if f.strip())
        cp.plan(backends, flt, families=families)
        if args.apply or args.cleanup:
            cp.require_root()
        run = cp.local_runner(netns)
        if args.cleanup:
            res = cp.cleanup(run, netns)
            lines = res.removed + res.running + res.kept
            print(
                "capture --cleanup:" + "".join(f"\n  {ln}" for ln in lines)
                if lines
                else "capture --cleanup: no recorded capture objects here"
            )
            return 4 if res.kept else 0
        tables = cp.legacy_tables(run) if "iptables-legacy" in backends else None
        p = cp.plan(backends, flt, families=families, legacy_tables=tables)
        if not args.apply:
            sys.stdout.write(p.show())
            return 0
        for note in p.notes:
            print(f"reportgen capture: note: {note}", file=sys.stderr)
        out = cp.apply(p, run, args.output, command, netns)
    except cp.CaptureUsage as exc:
        print(f"reportgen capture: error: {exc}", file=sys.stderr)
        return 2
    except cp.CaptureRefused as exc:
        print(f"reportgen capture: {exc}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        print("reportgen capture: interrupted; the rules it added were removed", file=sys.stderr)
        return 130
    print(f"capture {p.tag}: case written to {out}; explain it with: reportgen report {out} -o OUT")
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    import yaml

    from reportgen.capture import CaptureUsage, check_netns, local_runner
    from reportgen.snapshot import collect

    try:
        run = local_runner(check_netns(args.netns))
    except CaptureUsage as exc:
        print(f"reportgen snapshot: error: {exc}", file=sys.stderr)
        return 2
    frag = collect(args.output, runner=lambda argv: run(argv, None))
    manifest = {"title": f"Snapshot{' of ' + args.netns if args.netns else ''}", "trace": [], **frag}
    (args.output / "case.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    print(
        f"snapshot written to {args.output} ({len(frag['snapshots'])} snapshots, "
        f"{len(frag['attachments'])} attachments, {len(frag['missing'])} missing)"
    )
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from reportgen.simulate import Query, SimulateError, simulate_case

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if [f for f in formats if f not in FORMATS] or (args.output is None and formats != ["text"]):
        print(
            f"reportgen: error: --format takes {', '.join(FORMATS)}; formats other than text need -o", file=sys.stderr
        )
        return 2
    q = Query(args.src, args.dst, args.proto, args.dport, args.sport, args.in_iface, args.assume_ct)
    try:
        report = simulate_case(args.inputs, q)
    except SimulateError as exc:
        print(f"reportgen simulate: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        from reportgen.render.text import render_text

        sys.stdout.write(render_text(report))
        return 0
    from reportgen.render.dot import DotMissing
    from reportgen.render.write import write_report

    try:
        written = write_report(report, args.output, formats)
    except DotMissing as exc:
        raise _Missing(str(exc)) from exc
    main_file = next((w for w in written if w.name == "report.html"), written[0] if written else args.output)
    print(f"{report.name}: {len(report.packets)} predicted packets -> {main_file}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    import os
    import shutil
    import tempfile
    from dataclasses import replace

    from reportgen.batch import load_report, unplaced_lines
    from reportgen.render.markdown import render_markdown
    from reportgen.render.text import render_text
    from reportgen.sources.stdin import spool_streams

    fmt = _formats(args.format, ("text", "md"))
    fmt_one = fmt[0] if fmt else "text"
    out: list[str] = []
    unplaced = 0
    with tempfile.TemporaryDirectory(prefix="reportgen-") as tmp:
        jobs = _jobs(args, spool_streams(args.inputs, Path(tmp) / "stdin"), Path(tmp), [fmt_one])
        for n, job in enumerate(jobs):
            try:
                report, redactor = load_report(job, Path(tmp) / f"case{n}")
            except (InputError, OSError):
                raise
            except Exception as exc:  # noqa: BLE001 - one line naming the input; --debug shows more
                raise _Failed.on(", ".join(str(p) for p in job.inputs), exc) from exc
            # Colour only for a terminal; NO_COLOR (no-color.org) turns it off even there.
            tty = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
            opts = replace(job.options, colour=tty, width=shutil.get_terminal_size().columns if tty else 100)
            # The text renderer escapes input itself, so its own colour codes survive; Markdown is escaped here.
            out.append(terminal_safe(render_markdown(report, opts)) if fmt_one == "md" else render_text(report, opts))
            if redactor is not None and args.redact_map:
                from reportgen.sources.redaction import write_mapping

                write_mapping(redactor, args.redact_map)
            unplaced += unplaced_lines(report)
    sys.stdout.write("".join(out))
    return _strict_status(unplaced, args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
