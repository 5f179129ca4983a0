"""--redact: no original address, MAC or host name survives in any output of any sample."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import SAMPLES

from reportgen.batch import REDACTION_MAP, CaseJob, run_cases
from reportgen.redact import Redactor
from reportgen.sources.case import load_spec
from reportgen.sources.framing import read_lines
from reportgen.sources.redaction import case_names

CASES = sorted(p.name for p in SAMPLES.iterdir() if p.is_dir())
FORMATS = ("html", "svg", "json", "text", "md", "pdf")
KEY = b"test-key"


def originals(case: Path) -> tuple[set[str], set[str], set[str]]:
    """Every address, MAC and name in a case's input that redaction must replace."""
    spec = load_spec([case])
    r = Redactor(KEY, sorted(case_names(spec)))
    for path in [*spec.traces, *(p for p, _, _ in spec.snapshots)]:
        for _, line in read_lines(path):
            r.text(line)
    ips = {k.split("/")[0] for k, v in r.mapping["ip"].items() if k.split("/")[0] != v.split("/")[0]}
    macs = {k for k, v in r.mapping["mac"].items() if k != v}
    return ips, macs, set(r.mapping["name"])


def output_text(folder: Path) -> str:
    """All bytes of a case's outputs as text; the PDF through pdftotext, as a reader would copy it."""
    parts = []
    for p in sorted(folder.rglob("*")):
        if p.name == REDACTION_MAP or not p.is_file():
            continue
        if p.suffix == ".pdf":
            parts.append(subprocess.run(["pdftotext", str(p), "-"], capture_output=True, text=True, check=True).stdout)
        else:
            parts.append(p.read_text(encoding="utf-8"))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def redacted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("redacted")
    jobs = [CaseJob((SAMPLES / c,), out, FORMATS, redact_key=KEY) for c in CASES]
    results = run_cases(jobs, workers=4)
    assert not [r for r in results if r.error], [r.error for r in results if r.error]
    return out


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils is not installed (./run installs it)")
@pytest.mark.parametrize("case", CASES)
def test_no_original_survives(case: str, redacted: Path) -> None:
    ips, macs, names = originals(SAMPLES / case)
    assert ips or macs, "the sample has something to redact"
    text = output_text(redacted / case)
    # Word boundaries as the redactor's own: 172.17.0.2 must not match inside 172.17.0.21.
    left = [ip for ip in ips if re.search(rf"(?<![\w.:]){re.escape(ip)}(?![\w:]|\.\d)", text, re.I)]
    left += [mac for mac in macs if re.search(re.escape(mac), text, re.I)]
    left += [n for n in names if re.search(rf"(?<![A-Za-z0-9]){re.escape(n)}(?![A-Za-z0-9])", text)]
    assert not left, f"{case}: originals left in the redacted outputs: {sorted(left)[:10]}"
    # Readable ranges and interface names stay: the reader can still follow the path.
    assert "docker0" in text or "eth0" in text or "ens33" in text


def test_mapping_is_private_reproducible_and_kept_apart(redacted: Path, tmp_path: Path) -> None:
    case = "lab-tcp-dropped"
    mapping = redacted / case / REDACTION_MAP
    assert stat.S_IMODE(mapping.stat().st_mode) == 0o600
    data = json.loads(mapping.read_text())
    assert data["ip"]["172.17.0.2"] != "172.17.0.2" and data["name"]["container1"].startswith("host-")
    assert data["ip"]["203.0.113.10"] == "203.0.113.10"  # documentation range kept readable
    # The same key gives the same pseudonyms, so two reports of one incident can be compared.
    again = run_cases([CaseJob((SAMPLES / case,), tmp_path, ("json",), redact_key=KEY)])[0]
    assert not again.error
    assert (tmp_path / case / "report.json").read_bytes() == (redacted / case / "report.json").read_bytes()
    other = run_cases([CaseJob((SAMPLES / case,), tmp_path / "o", ("json",), redact_key=b"other")])[0]
    assert not other.error
    assert (tmp_path / "o" / case / "report.json").read_bytes() != (redacted / case / "report.json").read_bytes()


def test_cli_redact_without_key_writes_a_map(tmp_path: Path) -> None:
    from reportgen.cli import main

    assert (
        main(
            ["report", str(SAMPLES / "seed-container-to-internet"), "-o", str(tmp_path), "--redact", "--format", "text"]
        )
        == 0
    )
    text = (tmp_path / "seed-container-to-internet" / "report.txt").read_text()
    assert "172.17.0.2" not in text and "114.114.114.114" not in text
    assert (tmp_path / "seed-container-to-internet" / REDACTION_MAP).exists()
