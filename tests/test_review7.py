"""Review findings of session 7, each a statement the tool made that its evidence did not support."""

from __future__ import annotations

from pathlib import Path

from reportgen.explain.attribution import packet_view
from reportgen.lab.runner import RunKeeps
from reportgen.pipeline import build_report
from reportgen.sources.case import load_spec

NFS_REPLY = (
    "Nov 28 07:00:01 host kernel: [100.000001] FWD: IN=eth0 OUT=eth1 MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 "
    "SRC=10.0.0.5 DST=10.1.0.9 LEN=128 TOS=0x00 PREC=0x00 TTL=63 ID=4242 DF PROTO=UDP SPT=2049 DPT=800 LEN=108\n"
)


def _first_role(tmp_path: Path, text: str) -> str:
    log = tmp_path / "kern.log"
    log.write_text(text)
    [p] = build_report(load_spec([log])).packets
    return p.role


def test_a_reply_from_a_server_port_above_1023_to_a_reserved_client_port_is_not_a_request(tmp_path: Path) -> None:
    # NFS over UDP: the client binds a reserved port (800), the server answers from 2049. A trace that
    # starts with the answer has no evidence the datagram opened the conntrack entry.
    assert _first_role(tmp_path, NFS_REPLY) != "request"


def test_a_datagram_from_an_ephemeral_port_to_a_well_known_one_is_a_request(tmp_path: Path) -> None:
    assert _first_role(tmp_path, NFS_REPLY.replace("SPT=2049 DPT=800", "SPT=40001 DPT=53")) == "request"


def test_a_cut_line_without_mark_proves_no_mark(tmp_path: Path) -> None:
    # A line cut before its end says nothing by an absent MARK=; a whole one shows mark 0.
    log = tmp_path / "kern.log"
    log.write_text(NFS_REPLY + NFS_REPLY.replace("ID=4242", "ID=4243").replace(" LEN=108\n", " LE\n"))
    report = build_report(load_spec([log]))
    whole, cut = [p.hops[0].event for p in report.packets]
    assert packet_view(whole, False, report.topology).mark == 0  # type: ignore[arg-type]
    assert cut.record.truncated or cut.record.missing
    assert packet_view(cut, False, report.topology).mark is None  # type: ignore[arg-type]


def test_a_tool_line_is_kept_by_a_whole_mac_only() -> None:
    # A MAC of this run inside another run's MAC= field at another offset is not this run's line.
    keep = RunKeeps("r3f", ("[UFW ",), ("aa:bb:cc:dd:ee:ff",))
    line = "[UFW BLOCK] IN=ens33 OUT= MAC=11:aa:bb:cc:dd:ee:ff:22:33:44:55:66:08:00 SRC=192.0.2.1 DST=192.0.2.2"
    assert not keep(line)
    assert keep(line.replace("11:aa:bb:cc:dd:ee:ff:22:33:44:55:66", "11:22:33:44:55:66:aa:bb:cc:dd:ee:ff"))
