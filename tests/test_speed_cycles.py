"""A report leaves no reference cycle behind per conversation.

Every case runs with the cyclic garbage collector off (batch.cyclic_gc_paused): a big case is
millions of small objects freed by reference counting. A cycle made per conversation is then memory
that grows with the case until its end, and one collection at the end that walks it all. The
compiled jsonfold.fold_conversation made one (a mypyc function's nested functions and the scope
they share refer to each other): 27 objects per conversation, 29 MB of the 945k-line nft bench
input's peak RSS and about 4 % of its run (docs/performance.md, Session 9).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "tests" / "bench" / "bench_scale.py")
assert _spec is not None and _spec.loader is not None
bench_scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_scale)

# The whole `reportgen report --format json` path in a child (the collector's state and the
# compiled modules are the CLI's own), with the collector off from the start: what a collection
# finds afterwards is every cycle the run left.
CHILD = """
import gc, sys
gc.disable()
from reportgen.cli import main
code = main(["report", sys.argv[1], "-o", sys.argv[2], "--format", "json"])
assert code == 0, code
print(gc.collect())  # with what start-up left (argparse, imports), the same for every case
"""


def _garbage(tmp_path: Path, lines: int) -> int:
    log = tmp_path / f"kern-{lines}.log"
    assert bench_scale.make_kernlog(log, lines) == lines
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(log), str(tmp_path / f"out-{lines}")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return int(out.stdout.strip().splitlines()[-1])


def test_cyclic_garbage_does_not_grow_with_conversations(tmp_path: Path) -> None:
    # 62 LOG lines per connection and an unrelated line after each: about 160 and 650 conversations.
    small, big = _garbage(tmp_path, 20_000), _garbage(tmp_path, 80_000)
    assert big <= small + 100, (small, big)
