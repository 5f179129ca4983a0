"""Public cases reproduced in the lab and captured on this kernel (reportgen/lab/scenarios_public.py).

"Docker bypasses UFW" with ufw 0.36.2's own rules: the facts the capture proves, and what the report
must (and must not) say about them. The checked-in capture is samples/lab-public-ufw-docker-published-port;
these tests capture it again.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import LAB_MARKS

from reportgen.lab.scenarios_public import BLOCKED_PORT, PUBLIC
from reportgen.model import Packet, Report, VerdictCode
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

pytestmark = LAB_MARKS
UFW = next(s for s in PUBLIC if s.name == "public-ufw-docker-published-port")


@pytest.fixture(scope="module")
def ufw_case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from reportgen.lab.runner import run_scenario

    yield run_scenario(UFW, tmp_path_factory.mktemp("ufw"))


def _to_port(report: Report, port: int) -> list[Packet]:
    out = []
    for p in report.packets:
        first = p.hops[0].event.record
        if first.dst == "198.51.100.10" and first.dport == port:
            out.append(p)
    return out


def test_published_port_bypasses_ufw(ufw_case: Path) -> None:
    report = build_report(load_spec([ufw_case]))
    syn = _to_port(report, 8080)[0]
    # Docker's DNAT in nat PREROUTING, then FORWARD: ufw's INPUT chains never log it.
    assert syn.nat[0].type == "DNAT" and "--to-destination 172.17.0.2:80" in (syn.nat[0].rule or "")
    assert syn.verdict is not None and syn.verdict.code is VerdictCode.DELIVERED_TO_PORT
    assert not any(h.event.record.prefix.startswith("[UFW") for p in _to_port(report, 8080) for h in p.hops)
    assert {h.event.hook.hook for h in syn.hops} >= {"PREROUTING", "FORWARD", "POSTROUTING"}


def test_blocked_port_is_logged_by_ufw_and_dropped(ufw_case: Path) -> None:
    report = build_report(load_spec([ufw_case]))
    syns = _to_port(report, BLOCKED_PORT)
    assert len(syns) >= 2, "the client did not retransmit its SYN"  # nothing answered it
    for p in syns:
        ufw = [h for h in p.hops if h.event.record.prefix.startswith("[UFW BLOCK]")]
        assert ufw and ufw[-1].event.hook.table == "filter" and ufw[-1].event.hook.hook == "INPUT"
        # Not "the rule it names": the snapshot shows the LOG rule in ufw-after-logging-input, the
        # return to INPUT and INPUT's policy DROP (ufw's DEFAULT_INPUT_POLICY).
        assert p.verdict is not None and p.verdict.code is VerdictCode.DROPPED_BY_POLICY, p.verdict
        assert p.verdict.evidence.startswith("policy DROP of filter INPUT")
        assert "printed '[UFW BLOCK]' (ufw-after-logging-input rule 1" in p.verdict.explanation


def _without_ufw_lines(case: Path, dest: Path, rulesets: bool) -> Path:
    shutil.copytree(case, dest)
    log = dest / "dmesg.log"
    log.write_text("".join(ln for ln in log.read_text().splitlines(True) if "[UFW " not in ln))
    if not rulesets:
        spec = yaml.safe_load((dest / "case.yaml").read_text())
        rules = [a for a in spec["attachments"] if a["kind"] in ("iptables-save", "nft-ruleset")]
        assert rules, "the capture has no ruleset to take away"
        for a in rules:
            (dest / a["file"]).unlink()
        spec["attachments"] = [a for a in spec["attachments"] if a not in rules]
        (dest / "case.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def test_without_ufw_lines_the_snapshot_finds_the_policy(ufw_case: Path, tmp_path: Path) -> None:
    """The lab's LOG rules sit at the top of filter INPUT, before ufw's. Evaluating ufw's rules from
    there (its -m addrtype matches decided from the ip addr snapshot) reaches INPUT's policy DROP; it
    used to say "3 SYNs delivered to the local process"."""
    report = build_report(load_spec([_without_ufw_lines(ufw_case, tmp_path / "case", rulesets=True)]))
    syns = _to_port(report, BLOCKED_PORT)
    assert syns
    for p in syns:
        assert p.verdict is not None and p.verdict.code is VerdictCode.DROPPED_BY_POLICY, p.verdict
        assert p.verdict.evidence.startswith("policy DROP of filter INPUT")


def test_without_ufw_lines_or_rulesets_input_is_not_called_delivery(ufw_case: Path, tmp_path: Path) -> None:
    """A line at the top of filter INPUT shows the SYN reached INPUT, not that it was delivered (it was
    not: no SYN-ACK or RST came back): without a ruleset the report must say it does not know."""
    report = build_report(load_spec([_without_ufw_lines(ufw_case, tmp_path / "case", rulesets=False)]))
    syns = _to_port(report, BLOCKED_PORT)
    assert syns
    for p in syns:
        assert p.verdict is not None and p.verdict.code is VerdictCode.LAST_SEEN, p.verdict
        assert "not what the rest of the chain did" in p.verdict.explanation
    # The published port's SYN is not delivered locally, and its container answered: it keeps its verdict.
    assert _to_port(report, 8080)[0].verdict.code is VerdictCode.DELIVERED_TO_PORT  # type: ignore[union-attr]
