"""Property: no parser entry point crashes on damaged input; it returns, or says "bad input" (InputError).

Inputs are real sample lines and files damaged the way pasted logs are (cut, spliced, salted with
control and non-ASCII characters, huge numbers, runs of blanks), plus free text. The seed is fixed
(derandomize), so a failure is reproducible; tests/fuzz/run_fuzz.py runs the same entry points much
longer.
"""

from __future__ import annotations

import random

import pytest
from fuzz.entry_points import call, entry_points, make_input
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ENTRY_POINTS = entry_points()
EXAMPLES = 2000
# The whole pipeline (correlate, explain, render) costs ~20 ms an input: fewer examples in CI, more in
# tests/fuzz/run_fuzz.py.
PIPELINE_EXAMPLES = 300


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_entry_point_never_crashes(name: str):
    fn, pool = ENTRY_POINTS[name]

    @settings(
        max_examples=PIPELINE_EXAMPLES if name == "pipeline" else EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.one_of(
            st.integers(0, 2**32).map(lambda seed: make_input(random.Random(seed), name, pool)), st.text(max_size=80)
        )
    )
    def check(text: str) -> None:
        exc = call(fn, text)
        if exc is not None:
            raise exc

    check()


def test_damage_reaches_the_parsers():
    """The generator really produces damaged variants, not only the clean sample lines."""
    rng = random.Random(1)
    fn, pool = ENTRY_POINTS["nflog"]
    texts = {make_input(rng, "nflog", pool) for _ in range(1000)}
    assert len(texts) > 750
    assert any("\x1b" in t or "\x00" in t or "\x85" in t for t in texts)
    assert any("   " in t for t in texts)
