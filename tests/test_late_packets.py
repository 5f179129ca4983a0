"""A TCP packet that comes after its connection closed and was reported, while conntrack still keeps the
entry (TIME_WAIT 120 s after the last packet, nf_conntrack_proto_tcp.c tcp_timeouts): the kernel
matched it to that entry, so the report must not call it a request with a new DNAT and no reply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reportgen.cli import main
from reportgen.render.jsonfold import read_conversations, read_packets

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "lab-tcp-to-internet" / "dmesg.log"


def _late_server_ack(tmp_path: Path, gap: float, flags: str = "ACK", copies: int = 1) -> Path:
    """The lab's connection, then its server's final ACK (the last 8 lines: ens33 in, bridged out to
    the container) again ``gap`` seconds later with the next IP id, its flags replaced by ``flags``
    (``copies`` times, ``gap`` apart)."""
    lines = SAMPLE.read_text().splitlines()
    assert "SPT=80 DPT=39668" in lines[-8] and " ACK URGP" in lines[-8]
    shifted = []
    for n in range(1, copies + 1):
        for ln in lines[-8:]:
            stamp, body = ln[1:].split("]", 1)
            body = body.replace("ID=4448", f"ID={4448 + n}").replace(" ACK URGP", f" {flags} URGP")
            shifted.append(f"[{float(stamp) + n * gap:12.6f}]{body}")
    path = tmp_path / "case" / "dmesg.log"
    path.parent.mkdir()
    path.write_text("\n".join(lines + shifted) + "\n")
    return path


def _report(path: Path, out: Path) -> tuple[list[dict[str, object]], list[dict[str, object]], str]:
    assert main(["report", str(path), "--format", "json,text", "-o", str(out)]) == 0
    doc = json.loads((out / "dmesg" / "report.json").read_text())
    with (out / "dmesg" / "report.jsonl").open() as fh:
        packets = list(read_packets(doc, fh))
    return list(read_conversations(doc)), packets, (out / "dmesg" / "report.txt").read_text()


def test_a_late_ack_in_time_wait_is_the_closed_connections_reply(tmp_path: Path) -> None:
    convs, packets, text = _report(_late_server_ack(tmp_path, 5.0), tmp_path / "out")
    assert [c["id"] for c in convs] == ["c1", "c2"]  # c1 was reported 1 s after its close
    late = convs[1]
    answer = str(late["answer"])
    assert "late packet of c1's connection: c1 closed 5.0 s earlier" in answer
    assert "still in TIME_WAIT" in answer
    assert "no reply" not in answer and "DNAT" not in answer
    assert "reply: SNAT reversed by conntrack" in answer
    assert late["summary"] == convs[0]["summary"] == "TCP 172.17.0.2:39668 ↔ 203.0.113.10:80"
    # The same fact as data, for a reader of report.json; an ordinary conversation has no such key.
    assert late["late_of"] == {
        "conversation": "c1",
        "seconds": 4.999961,  # the late ACK's stamp less the final ACK's (dmesg.log:62)
        "state": "TIME_WAIT",
        "timeout_seconds": 120.0,
    }
    assert "late_of" not in convs[0]
    p9 = packets[-1]
    assert (p9["id"], p9["conversation"], p9["role"]) == ("p9", "c2", "reply")
    assert [(n["type"], n["direction"]) for n in p9["nat"]] == [("SNAT", "reply")]  # type: ignore[attr-defined]
    c2 = text[text.index("\nc2 ") :]
    assert "DNAT" not in c2 and "no reply" not in c2 and "(p9) reply [routed]" in c2


def test_a_second_late_ack_is_still_the_first_connections_reply(tmp_path: Path) -> None:
    # The first late ACK's conversation was reported too: its tombstone keeps c1's directions.
    convs, packets, _ = _report(_late_server_ack(tmp_path, 5.0, copies=2), tmp_path / "out")
    assert [c["id"] for c in convs] == ["c1", "c2", "c3"]
    assert "late packet of c1's connection: c1 closed 10.0 s earlier" in str(convs[2]["answer"])
    assert [(p["id"], p["conversation"], p["role"]) for p in packets[-2:]] == [
        ("p9", "c2", "reply"),
        ("p10", "c3", "reply"),
    ]


@pytest.mark.parametrize(
    ("gap", "flags"),
    [
        (120.5, "ACK"),  # conntrack destroyed the TIME_WAIT entry 120 s after its last packet
        (5.0, "SYN"),  # a SYN in TIME_WAIT re-opens the entry as a new connection (tcp_conntracks sTW -> sSS)
    ],
)
def test_a_packet_conntrack_does_not_match_to_the_closed_entry_is_not_called_late(
    tmp_path: Path, gap: float, flags: str
) -> None:
    convs, _, _ = _report(_late_server_ack(tmp_path, gap, flags), tmp_path / "out")
    assert len(convs) == 2
    assert "late packet" not in str(convs[1]["answer"])
