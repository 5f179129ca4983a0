"""Data-driven parser tests in the jc style: each real capture ``<kind>--<case>.out`` in
tests/fixtures/parsers has its expected structure beside it in ``<kind>--<case>.json``.

Adding a pair adds a test. To record the expected structure of a new capture, run
``python tests/test_parser_fixtures.py --record`` and review the JSON before committing it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from reportgen.parsers.ruleset import Ruleset, ruleset_dict
from reportgen.parsers.snapshots import PARSERS, detect_kind

FIXTURES = Path(__file__).parent / "fixtures" / "parsers"
CASES = sorted(FIXTURES.glob("*.out"))


def parsed(path: Path) -> object:
    kind = path.name.split("--")[0]
    data = PARSERS[kind](path.read_text(encoding="utf-8"))
    if isinstance(data, Ruleset):
        data = ruleset_dict(data)
    if dataclasses.is_dataclass(data):
        data = dataclasses.asdict(data)  # type: ignore[arg-type]
    return json.loads(json.dumps(data))  # tuples become lists, as in the stored JSON


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_parser_fixture(path: Path):
    expected = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert parsed(path) == expected


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_kind_is_recognised_from_content(path: Path):
    assert detect_kind(path.read_text(encoding="utf-8")) == path.name.split("--")[0]


def test_fixtures_cover_every_parser():
    assert {p.name.split("--")[0] for p in CASES} >= set(PARSERS) - {"ebtables-save"}


if __name__ == "__main__" and "--record" in sys.argv:
    for p in CASES:
        p.with_suffix(".json").write_text(json.dumps(parsed(p), indent=2, sort_keys=True) + "\n")
