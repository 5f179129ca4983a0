"""Truth gaps closed in session 8: each fact stated once, in the place it belongs, and nothing stated
that the input does not prove."""

from __future__ import annotations

import json
from pathlib import Path

from reportgen.pipeline import build_report
from reportgen.render.options import Level, RenderOptions
from reportgen.render.write import write_report
from reportgen.sources.case import load_spec

# github:wazuh/wazuh-qa#3422 (public corpus log-ufw-block-forward-ppp0), verbatim.
UFW_BLOCK = (
    "Dec 26 09:05:47 server01 kernel: [126140.629122] [UFW BLOCK] IN=eth0 OUT=ppp0 "
    "MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd SRC=254.253.252.251 DST=191.192.193.194 LEN=52 TOS=0x02 "
    "PREC=0x00 TTL=128 ID=9209 DF PROTO=TCP SPT=17833 DPT=22 WINDOW=8192 RES=0x00 CWR ECE SYN URGP=0\n"
)


def _outputs(tmp_path: Path, files: dict[str, str], formats: list[str]) -> dict[str, str]:
    """Write the files as a case folder and render it at the detailed level: output file name -> text."""
    case = tmp_path / "case"
    case.mkdir(exist_ok=True)
    for name, text in files.items():
        (case / name).write_text(text)
    out = tmp_path / "out"
    write_report(build_report(load_spec([case])), out, formats, RenderOptions(level=Level.DETAILED))
    return {p.name: p.read_text() for p in (out / "case").iterdir() if p.is_file()}


def test_the_ufw_follows_paragraph_is_printed_once(tmp_path: Path):
    """What ufw's own rules do after its [UFW BLOCK] LOG rule (prefix_conventions.yaml `follows`) is a
    fact about that hop's rules: the hop states it, and the verdict drawn from the prefix points there
    instead of printing the same paragraph again."""
    outs = _outputs(tmp_path, {"kern.log": UFW_BLOCK}, ["text", "md", "html", "json"])
    for name in ("report.txt", "report.md", "report.html", "report.json"):
        assert outs[name].count("from two places") == 1, (name, outs[name].count("from two places"))
    doc = json.loads(outs["report.json"])
    [behaviour] = doc["behaviours"]
    assert "from two places" in " ".join(behaviour["hops"][0]["explanation"])
    verdict = behaviour["verdict"]["explanation"]
    assert verdict.startswith("Dropped at iptables filter FORWARD: its last line carries the prefix '[UFW BLOCK]'")
    assert "that hop says what the ufw convention's own rules do after its LOG rule" in verdict
