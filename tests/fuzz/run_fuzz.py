"""Nightly-style fuzz run: many damaged inputs per parser entry point, crashes counted per entry point.

    .venv/bin/python tests/fuzz/run_fuzz.py [--per-entry N] [--seed S]

Exits 1 when anything crashed, printing the first input and traceback of each distinct crash site.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.entry_points import call, entry_points, make_input  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-entry", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--only", help="run only entry points whose name contains this")
    args = ap.parse_args()
    total = crashes = 0
    sites: dict[tuple[str, str, int], tuple[str, BaseException]] = {}
    for name, (fn, pool) in entry_points().items():
        if args.only and args.only not in name:
            continue
        rng = random.Random(f"{args.seed}:{name}")
        n_crash = 0
        start = time.monotonic()
        for _ in range(args.per_entry):
            text = make_input(rng, name, pool)
            exc = call(fn, text)
            if exc is not None:
                n_crash += 1
                tb = traceback.extract_tb(exc.__traceback__)[-1]
                sites.setdefault((name, tb.filename, tb.lineno or 0), (text, exc))
        total += args.per_entry
        crashes += n_crash
        print(f"{name:32} {args.per_entry:7} inputs {n_crash:6} crashes {time.monotonic() - start:6.1f}s", flush=True)
    print(f"total: {total} inputs, {crashes} crashes, {len(sites)} distinct crash sites")
    for (name, file, line), (text, exc) in sorted(sites.items()):
        print(f"\n== {name} at {file}:{line}: {type(exc).__name__}: {exc}"[:400])
        print(f"   input: {text[:300]!r}")
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
