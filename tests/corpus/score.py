"""Score reportgen on the public corpus: run with `.venv/bin/python tests/corpus/score.py`.

Prints the totals (cases, distinct sources, facts right / total, trace lines used / total, cases
that use no line, cases that crash) and one line per case. `-v` also lists every wrong fact.
The checking itself is tests/test_public_corpus.py's, so the score and the test cannot disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from test_public_corpus import case_dirs, check_case  # noqa: E402


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    results = [check_case(c) for c in case_dirs()]
    sources = {s for r in results for s in r.sources}
    right = sum(len(r.right) for r in results)
    total = right + sum(len(r.wrong) for r in results)
    used = sum(r.lines_used for r in results)
    lines = sum(r.lines_total for r in results)
    idle = [r.name for r in results if not r.crash and r.lines_used == 0]
    crashed = [r.name for r in results if r.crash]
    print(f"cases: {len(results)}")
    print(f"distinct sources: {len(sources)}")
    print(f"facts right / total: {right} / {total}" + (f" ({100 * right / total:.0f} %)" if total else ""))
    print(f"trace lines used / total: {used} / {lines}")
    print(f"cases with no line used: {len(idle)}" + (f" ({', '.join(idle)})" if idle else ""))
    print(f"cases that crash: {len(crashed)}" + (f" ({', '.join(crashed)})" if crashed else ""))
    print()
    width = max((len(r.name) for r in results), default=4)
    for r in results:
        n = len(r.right) + len(r.wrong)
        status = r.crash or ("ok" if not r.wrong else f"{len(r.wrong)} wrong")
        print(
            f"{r.name:<{width}}  facts {len(r.right):>3}/{n:<3}  lines {r.lines_used:>3}/{r.lines_total:<3}  {status}"
        )
        if verbose:
            for w in r.wrong:
                print(f"{'':<{width}}    - {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
