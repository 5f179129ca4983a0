"""Command line: thin. Each command parses its arguments and calls one function.

Exit codes:
  0  success
  1  --strict and some input lines could not be used (unrecognised hook, truncated record)
  2  bad input or usage: the message names the file and line
  3  a required external tool is missing (Graphviz dot); the message says what to install
  4  lab/capture refused to run (not root, namespaces unavailable, leftover rules)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reportgen import __version__
from reportgen.errors import InputError

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

    ex = sub.add_parser("explain", help="print the explanation of a case as a text tree")
    ex.add_argument("inputs", nargs="+", type=Path)
    ex.add_argument("--prefix-map", type=Path)
    ex.add_argument("--strict", action="store_true")

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
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "lab":
            from reportgen.lab.runner import main as lab_main

            return lab_main(args.scenarios, args.output, keep=args.keep, cleanup=args.cleanup)
    except InputError as exc:
        print(f"reportgen: error: {exc}", file=sys.stderr)
        return 2
    except _Missing as exc:
        print(f"reportgen: error: {exc}", file=sys.stderr)
        return 3
    return 2


class _Missing(Exception):
    pass


def _load(inputs: list[Path], prefix_map: Path | None):  # type: ignore[no-untyped-def]
    from reportgen.parsers.prefix import PrefixMap
    from reportgen.sources.case import build_report, load_spec

    pm = PrefixMap.load(prefix_map) if prefix_map else None
    if len(inputs) > 1 and all(p.is_dir() for p in inputs):
        return [build_report(load_spec([p], pm)) for p in sorted(inputs)]
    return [build_report(load_spec(inputs, pm))]


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
    reports = _load(args.inputs, args.prefix_map)
    from reportgen.render.dot import DotMissing

    for report in reports:
        try:
            written = write_report(report, args.output, formats)
        except DotMissing as exc:
            raise _Missing(str(exc)) from exc
        main_file = next((w for w in written if w.name == "report.html"), written[0] if written else None)
        print(f"{report.name}: {len(report.packets)} packets, {report.lines_used}/{report.lines_total} lines used"
              f" -> {main_file}")
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

    reports = _load(args.inputs, args.prefix_map)
    for report in reports:
        sys.stdout.write(render_text(report))
    return _strict_status(reports, args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
