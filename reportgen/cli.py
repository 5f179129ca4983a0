"""Command line: thin. Each command parses its arguments and calls one function.

Exit codes:
  0  success
  1  --strict and some input lines could not be used (unrecognised hook, truncated record)
  2  bad input or usage: the message names the file and line
  3  a required external tool is missing (Graphviz dot); the message says what to install
  4  lab/capture refused to run (not root, namespaces unavailable, leftover rules)
  5  report over several cases: some cases failed (each is named on stderr; the others were written)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reportgen import __version__
from reportgen.errors import InputError

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

    cap = sub.add_parser("capture", help="log a host's own traffic: print the rules, or --apply them",
                         description="Without --apply the rules are only printed. With --apply they are added, "
                         "the command after -- runs (or Ctrl-C ends the capture), the new kernel lines are read "
                         "and every added rule is removed again. A host filter matches addresses as each hook "
                         "sees them, so hooks after NAT may not match.")
    cap.add_argument("--backend", default="iptables-nft,ebtables",
                     help="comma-separated: iptables-nft, iptables-legacy, ebtables, nft-log, nft-trace")
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

    lab = sub.add_parser("lab", help="build a Docker-like host in network namespaces and capture scenarios")
    lab.add_argument("scenarios", nargs="*", help="scenario names (default: all); 'list' lists them")
    lab.add_argument("-o", "--output", type=Path, default=Path("lab-out"))
    lab.add_argument("--keep", action="store_true", help="leave the namespaces up (for debugging)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "report":
            return _report(args)
        if args.command == "explain":
            return _explain(args)
        if args.command == "capture":
            return _capture(args)
        if args.command == "snapshot":
            return _snapshot(args)
        if args.command == "lab":
            from reportgen.lab.runner import main as lab_main

            return lab_main(args.scenarios, args.output, keep=args.keep)
    except InputError as exc:
        print(f"reportgen: error: {exc}", file=sys.stderr)
        return 2
    except _Missing as exc:
        print(f"reportgen: error: {exc}", file=sys.stderr)
        return 3
    return 2


class _Missing(Exception):
    pass


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
    groups = [[p] for p in sorted(inputs)] if len(inputs) > 1 and all(p.is_dir() for p in inputs) else [inputs]
    return [CaseJob(tuple(g), out, tuple(formats), args.prefix_map, key, sel, opts) for g in groups]


def _strict_status(bad: int, strict: bool) -> int:
    if not strict:
        return 0
    if bad:
        print(f"reportgen: --strict: {bad} lines could not be fully used", file=sys.stderr)
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    import tempfile

    from reportgen.batch import Progress, run_cases
    from reportgen.render.dot import DotMissing
    from reportgen.sources.stdin import spool_streams

    formats = _formats(args.format, FORMATS)
    with tempfile.TemporaryDirectory(prefix="reportgen-stdin-") as tmp:
        jobs = _jobs(args, spool_streams(args.inputs, Path(tmp)), args.output, formats)
        progress = Progress(len(jobs))
        try:
            results = run_cases(jobs, max(1, args.jobs), progress)
        except DotMissing as exc:
            raise _Missing(str(exc)) from exc
        finally:
            progress.close()
    for res in results:
        if res.error:
            print(f"reportgen: error: case {res.name}: {res.error}", file=sys.stderr)
            continue
        main_file = next((w for w in res.written if w.endswith("report.html")), res.written[0] if res.written else "")
        print(
            f"{res.name}: {res.packets} packets, {res.lines_used}/{res.lines_total} lines used"
            f" -> {args.output / main_file}"
        )
        for w in res.warnings:
            print(f"reportgen: warning: case {res.name}: {w}", file=sys.stderr)
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


def _capture(args: argparse.Namespace) -> int:
    from reportgen.capture import CaptureRefused, Filter, apply, cleanup, local_runner, plan

    run = local_runner(args.netns)
    if args.cleanup:
        removed = cleanup(run, args.netns)
        print(f"removed {len(removed)} capture rules/tables")
        for r in removed:
            print(f"  {r}")
        return 0
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    try:
        p = plan([b.strip() for b in args.backend.split(",") if b.strip()],
                 Filter(args.host, args.proto, args.port, args.rate),
                 families=tuple(f.strip() for f in args.family.split(",") if f.strip()))
        if not args.apply:
            sys.stdout.write(p.show())
            return 0
        out = apply(p, run, args.output, command, args.netns)
    except CaptureRefused as exc:
        print(f"reportgen capture: {exc}", file=sys.stderr)
        return 4
    print(f"capture {p.tag}: case written to {out}; explain it with: reportgen report {out} -o OUT")
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    import yaml

    from reportgen.capture import local_runner
    from reportgen.snapshot import collect

    run = local_runner(args.netns)
    frag = collect(args.output, runner=lambda argv: run(argv, None))
    manifest = {"title": f"Snapshot{' of ' + args.netns if args.netns else ''}", "trace": [], **frag}
    (args.output / "case.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    print(f"snapshot written to {args.output} ({len(frag['snapshots'])} snapshots, "
          f"{len(frag['attachments'])} attachments, {len(frag['missing'])} missing)")
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
            report, redactor = load_report(job, Path(tmp) / f"case{n}")
            # Colour only for a terminal; NO_COLOR (no-color.org) turns it off even there.
            tty = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
            opts = replace(job.options, colour=tty, width=shutil.get_terminal_size().columns if tty else 100)
            out.append(render_markdown(report, opts) if fmt_one == "md" else render_text(report, opts))
            if redactor is not None and args.redact_map:
                from reportgen.sources.redaction import write_mapping

                write_mapping(redactor, args.redact_map)
            unplaced += unplaced_lines(report)
    sys.stdout.write("".join(out))
    return _strict_status(unplaced, args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
