"""Command line: thin. Each command parses its arguments and calls one function.

Exit codes:
  0  success
  1  --strict and some input lines could not be used (unrecognised hook, truncated record)
  2  bad input or usage: the message names the file and line (also an input reportgen itself failed
     on: a one-line message names the input; --debug prints the traceback)
  3  a required external tool is missing (Graphviz dot); the message says what to install
  4  lab/capture refused to run (not root, namespaces unavailable, leftover rules)
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


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="reportgen", description="Explain netfilter packet traces hop by hop.")
    ap.add_argument("--version", action="version", version=f"reportgen {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    rp = sub.add_parser("report", help="write reports for one or more cases")
    rp.add_argument("inputs", nargs="+", type=Path,
                    help="case folders (each one a case), or trace and snapshot files (one case)")
    rp.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    rp.add_argument("--format", default=DEFAULT_FORMATS,
                    help=f"comma-separated: {','.join(FORMATS)} (default {DEFAULT_FORMATS})")
    rp.add_argument("--prefix-map", type=Path, help="YAML prefix -> hook map")
    rp.add_argument("--strict", action="store_true", help="exit 1 when any trace line could not be used")
    _input_options(rp)

    ex = sub.add_parser("explain", help="print the explanation of a case as a text tree")
    ex.add_argument("inputs", nargs="+", type=Path)
    ex.add_argument("--prefix-map", type=Path)
    ex.add_argument("--strict", action="store_true")
    _input_options(ex)

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

    sim = sub.add_parser("simulate", help="predict a packet's path from a case's snapshots alone (what-if)",
                         description="Walk a hypothetical packet through the snapshots: bridge, routing and every "
                         "base chain at every hook. Undecidable matches fork the walk; assumptions are listed.")
    sim.add_argument("inputs", nargs="+", type=Path, help="a case folder, or snapshot files")
    sim.add_argument("--from", dest="src", required=True, help="address, name, interface, or 'host'")
    sim.add_argument("--to", dest="dst", required=True, help="address, name, interface, or 'host'")
    sim.add_argument("--proto", choices=("tcp", "udp", "icmp"), default="icmp")
    sim.add_argument("--dport", type=int)
    sim.add_argument("--sport", type=int)
    sim.add_argument("--in", dest="in_iface", help="the interface (or bridge port) the packet arrives on")
    sim.add_argument("--assume-ct", choices=("new", "established"), default="new",
                     help="conntrack state of the packet (default new: a connection's first packet)")
    sim.add_argument("--format", default="text", help=f"comma-separated: {','.join(FORMATS)} (default text)")
    sim.add_argument("-o", "--output", type=Path, help="output folder (without it, text goes to stdout)")

    lab = sub.add_parser("lab", help="build a Docker-like host in network namespaces and capture scenarios")
    lab.add_argument("scenarios", nargs="*", help="scenario names (default: all); 'list' lists them")
    lab.add_argument("-o", "--output", type=Path, default=Path("lab-out"))
    lab.add_argument("--keep", action="store_true", help="leave the namespaces up (for debugging)")
    lab.add_argument("--cleanup", action="store_true",
                     help="undo lab runs that were killed (namespaces, processes, nf_log_all_netns) and exit")
    return ap


def _input_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--allow-outside", action="store_true",
                    help="let case.yaml name files outside the case folder (absolute, '..', symlinks)")
    sp.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")


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

            return lab_main(args.scenarios, args.output, keep=args.keep, cleanup=args.cleanup)
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
        return _Failed(f"{where}: reportgen failed on this input ({type(exc).__name__}: {str(exc)[:200]}); this is "
                       "a bug, please report it (--debug prints the traceback)")


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from reportgen.parsers.prefix import PrefixMap
    from reportgen.sources.case import build_report, is_output_folder, load_spec

    pm = PrefixMap.load(args.prefix_map) if args.prefix_map else None
    inputs: list[Path] = args.inputs
    if len(inputs) > 1 and all(p.is_dir() for p in inputs):
        groups = []
        for p in sorted(set(inputs), key=lambda p: p.resolve()):
            if is_output_folder(p):
                print(terminal_safe(f"reportgen: {p}: skipped, it is a reportgen output folder"), file=sys.stderr)
            else:
                groups.append([p])
    else:
        groups = [inputs]
    reports = []
    names: set[str] = set()
    for group in groups:
        try:
            report = build_report(load_spec(group, pm, allow_outside=args.allow_outside))
        except (InputError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - turned into one line naming the input; --debug shows more
            raise _Failed.on(", ".join(str(p) for p in group), exc) from exc
        # Two cases named alike would write to one output folder: the later ones get a suffix.
        name, n = report.name, 1
        while name in names:
            n += 1
            name = f"{report.name}-{n}"
        if name != report.name:
            print(terminal_safe(f"reportgen: {', '.join(map(str, group))}: case name {report.name!r} is taken; "
                                f"writing it as {name!r}"), file=sys.stderr)
            report = replace(report, name=name)
        names.add(name)
        reports.append(report)
    return reports


def _strict_status(reports, strict: bool) -> int:  # type: ignore[no-untyped-def]
    if not strict:
        return 0
    bad = [u for r in reports for u in r.unused if u.reason.startswith("hook not recognised")]
    bad += [h for r in reports for p in r.packets for h in p.hops if h.event.record.truncated]
    if bad:
        print(f"reportgen: --strict: {len(bad)} lines could not be fully used", file=sys.stderr)
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    from reportgen.render.write import write_report

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        print(f"reportgen: error: unknown format {', '.join(unknown)}; choose from {', '.join(FORMATS)}",
              file=sys.stderr)
        return 2
    reports = _load(args)
    from reportgen.render.dot import DotMissing

    for report in reports:
        try:
            written = write_report(report, args.output, formats)
        except DotMissing as exc:
            raise _Missing(str(exc)) from exc
        except (InputError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - one line naming the case; --debug shows more
            raise _Failed.on(f"case {report.name}", exc) from exc
        main_file = next((w for w in written if w.name == "report.html"), written[0] if written else None)
        print(terminal_safe(f"{report.name}: {len(report.packets)} packets, {report.lines_used}/{report.lines_total} "
                            f"lines used -> {main_file}"))
    return _strict_status(reports, args.strict)


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
            print("capture --cleanup:" + "".join(f"\n  {ln}" for ln in lines) if lines else
                  "capture --cleanup: no recorded capture objects here")
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
    print(f"snapshot written to {args.output} ({len(frag['snapshots'])} snapshots, "
          f"{len(frag['attachments'])} attachments, {len(frag['missing'])} missing)")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from reportgen.simulate import Query, SimulateError, simulate_case

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if [f for f in formats if f not in FORMATS] or (args.output is None and formats != ["text"]):
        print(f"reportgen: error: --format takes {', '.join(FORMATS)}; formats other than text need -o",
              file=sys.stderr)
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
    from reportgen.render.text import render_text

    reports = _load(args)
    for report in reports:
        try:
            text = terminal_safe(render_text(report))
        except Exception as exc:  # noqa: BLE001 - one line naming the case; --debug shows more
            raise _Failed.on(f"case {report.name}", exc) from exc
        sys.stdout.write(text)
    return _strict_status(reports, args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
