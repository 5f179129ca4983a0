from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SEED_CASES = ("seed-container-to-container", "seed-host-to-container", "seed-container-to-internet")


@pytest.fixture(scope="session")
def seed_reports():
    from reportgen.pipeline import build_report
    from reportgen.sources.case import load_spec

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


@pytest.fixture()
def lab() -> Iterator[Any]:
    """The lab built with nf_log_all_netns set, one ping between the containers already made (neighbours
    and routes are warm), torn down after the test (tests using it carry LAB_MARKS)."""
    from reportgen.lab.netns import Lab, log_all_netns, run

    built = Lab()
    with log_all_netns(built.tag):
        try:
            built.build()
            run(["ping", "-c1", "-W2", "172.17.0.3"], ns=built.ns("c1"))
            yield built
        finally:
            built.teardown()


# -- no silent skips where everything can run ------------------------------------------------------------
# On a machine that can run every test (root, with the lab's tools), a skipped or xfailed test hides
# a failure, so the session fails. A skip is allowed only when its reason contains one of these
# strings, each with the reason it is acceptable. Keep this list short.
ALLOWED_SKIPS: dict[str, str] = {}


def _can_run_everything() -> bool:
    import os
    import shutil

    from reportgen.lab.netns import REQUIRED_TOOLS

    return os.geteuid() == 0 and all(shutil.which(t) for t in REQUIRED_TOOLS)


def _hidden(stats: dict[str, list[pytest.TestReport]]) -> list[str]:
    out = []
    for kind in ("skipped", "xfailed"):
        for rep in stats.get(kind, []):
            reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            if not any(allowed in reason for allowed in ALLOWED_SKIPS):
                out.append(f"{rep.nodeid}: {kind}: {reason}")
    return out


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _can_run_everything():
        return
    hidden = _hidden(terminalreporter.stats)
    if hidden:
        terminalreporter.section("tests skipped on a machine that can run them", sep="=", red=True, bold=True)
        terminalreporter.write_line("This machine is root and has the lab tools, so every test must run here.")
        terminalreporter.write_line("Fix the cause, or add the reason to ALLOWED_SKIPS in tests/conftest.py with why.")
        for line in hidden:
            terminalreporter.write_line(f"  {line}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and _can_run_everything() and _hidden(reporter.stats) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_PURE: dict[str, ModuleType] = {}  # reportgen's modules imported from their sources, kept for the session


def _ours(name: str) -> bool:
    return name == "reportgen" or name.startswith("reportgen.")


@pytest.fixture
def interpreted() -> Iterator[Callable[[str], Any]]:
    """reportgen's modules run from their sources (not the compiled ones) during this test; it gets
    them with the returned import function. A test that patches a function or method inside a module
    that mypyc compiles (reportgen/compiled.py) must patch these: compiled code calls a compiled
    function or method directly, never through the module or class attribute a patch replaces."""
    from reportgen import compiled

    saved = {name: m for name, m in sys.modules.items() if _ours(name)}
    finders = list(sys.meta_path)
    pure = os.environ.get(compiled.PURE_ENV)
    for name in saved:
        del sys.modules[name]
    sys.modules.update(_PURE)
    sys.meta_path.insert(0, compiled._Sources)  # for the modules the session has not imported yet
    os.environ[compiled.PURE_ENV] = "1"  # for a fresh `import reportgen` (its compiled.check)
    try:
        yield importlib.import_module
    finally:
        sys.meta_path[:] = finders
        if pure is None:
            del os.environ[compiled.PURE_ENV]
        else:
            os.environ[compiled.PURE_ENV] = pure
        for name in [n for n in sys.modules if _ours(n)]:
            _PURE[name] = sys.modules.pop(name)
        sys.modules.update(saved)
