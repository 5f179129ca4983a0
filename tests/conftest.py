from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SEED_CASES = ("seed-container-to-container", "seed-host-to-container", "seed-container-to-internet")


@pytest.fixture(scope="session")
def seed_reports():
    from reportgen.sources.case import build_report, load_spec

    return {name: build_report(load_spec([SAMPLES / name])) for name in SEED_CASES}


def lab_skip_reason() -> str:
    """Why the kernel lab cannot run here ("" when it can)."""
    from reportgen.lab.netns import LabUnavailable, check_available

    try:
        check_available()
    except LabUnavailable as exc:
        return str(exc)
    return ""


LAB_MARKS = [pytest.mark.lab]
_reason = lab_skip_reason()
LAB_MARKS.append(pytest.mark.skipif(bool(_reason), reason=f"lab unavailable: {_reason}"))
