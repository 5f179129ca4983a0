"""Which kernel records a lab run keeps: the kernel ring is shared by every namespace, so a tool's own
prefix (ufw's "[UFW BLOCK]", which carries no run tag) must be attributed to the run by its devices."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import LAB_MARKS

from reportgen.lab.runner import RunKeeps

OURS = ("9a:1b:2c:3d:4e:5f", "7e:00:11:22:33:44")  # this run's uplink pair (ens33, internet eth0)
THEIRS = "d6:aa:bb:cc:dd:ee:52:00:11:22:33:99:08:00"


def _ufw(mac: str, ins: str = "ens33", physin: str = "") -> str:
    return (
        f"[UFW BLOCK] IN={ins} OUT= {physin}MAC={mac} SRC=198.51.100.1 DST=198.51.100.10 LEN=60 TOS=0x00 "
        "PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=40000 DPT=8081 WINDOW=64240 RES=0x00 SYN URGP=0"
    )


def test_a_tool_line_of_this_run_is_kept_by_its_uplink_mac() -> None:
    keep = RunKeeps("r3f", ("[UFW ",), OURS)
    assert keep(_ufw(f"{OURS[0]}:{OURS[1]}:08:00"))
    assert keep(_ufw(f"{OURS[0].upper()}:{OURS[1].upper()}:08:00"))


def test_a_tool_line_of_another_run_of_the_same_rules_is_not() -> None:
    keep = RunKeeps("r3f", ("[UFW ",), OURS)
    assert not keep(_ufw(THEIRS))
    # without a MAC (a packet the host sends), nothing ties the line to this run
    assert not keep(_ufw("", ins="").replace(" MAC=", " "))


def test_tagged_lines_are_kept_and_tool_lines_only_when_asked() -> None:
    assert RunKeeps("r3f", ("[UFW ",), OURS)(_ufw(THEIRS, ins="docker0", physin="PHYSIN=vethr3fc1 "))
    assert RunKeeps("r3f", (), ())("rglab-r3f-fwd IN=docker0 OUT=ens33")
    assert not RunKeeps("r3f", (), ())(_ufw(f"{OURS[0]}:{OURS[1]}:08:00"))


@LAB_MARKS[0]
@LAB_MARKS[1]
def test_two_concurrent_runs_of_the_ufw_scenario_keep_only_their_own_lines(tmp_path: Path) -> None:
    """Two copies of ufw's rules in two labs at once: each capture's [UFW BLOCK] lines name its own
    uplink (the MAC= of its ens33), and each has the SYNs its own client sent, not the other's."""
    runs = 2
    code = (
        "import sys; from pathlib import Path; from reportgen.lab.runner import run_scenario; "
        "from reportgen.lab.scenarios_public import PUBLIC; "
        "run_scenario(PUBLIC[0], Path(sys.argv[1]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"run{i}")], stderr=subprocess.PIPE, text=True)
        for i in range(runs)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    macs = []
    for i in range(runs):
        case = tmp_path / f"run{i}" / "public-ufw-docker-published-port"
        blocks = [ln for ln in (case / "dmesg.log").read_text().splitlines() if "[UFW BLOCK]" in ln]
        assert blocks, f"run {i} kept no [UFW BLOCK] line"
        ens33 = re.search(r"ens33@?\S*: .*?link/ether (\S+)", (case / "ip-addr.txt").read_text(), re.S)
        assert ens33 is not None
        mine = {ln.split(" MAC=")[1][:17] for ln in blocks}
        assert mine == {ens33.group(1)}, (i, mine, ens33.group(1))
        macs.append(ens33.group(1))
    assert len(set(macs)) == runs


def test_a_tool_line_the_host_sends_itself_is_counted_as_left_out(tmp_path: Path) -> None:
    """A [UFW BLOCK] line of a packet the host sends (OUTPUT: no MAC=, OUT=ens33 as in every run) cannot
    be tied to this run: it is not kept, and the case notes say how many such lines were left out."""
    from types import SimpleNamespace

    import yaml

    from reportgen.lab.runner import _write_manifest
    from reportgen.lab.scenarios_public import PUBLIC

    keep = RunKeeps("r3f", ("[UFW ",), OURS)
    sent = _ufw("", ins="").replace(" MAC=", " ").replace("IN= OUT=", "IN= OUT=ens33")
    assert not keep(sent)
    assert keep(_ufw(f"{OURS[0]}:{OURS[1]}:08:00")) and not keep(_ufw(THEIRS))
    assert keep.unattributed == 1  # the foreign MAC is another run's, not an unattributed line
    lab = SimpleNamespace(tag="r3f", ports=lambda: ("vethr3fc1", "vethr3fc2"))
    snap = {"snapshots": [], "attachments": [], "missing": []}
    _write_manifest(tmp_path, PUBLIC[0], lab, snap, [], ["dmesg.log"], keep.unattributed)  # type: ignore[arg-type]
    notes = yaml.safe_load((tmp_path / "case.yaml").read_text())["notes"]
    said = "1 kernel line of the tool's own rules ('[UFW') named neither a device nor a MAC"
    assert any(n.startswith(said) for n in notes), notes
    _write_manifest(tmp_path, PUBLIC[0], lab, snap, [], ["dmesg.log"], 0)  # type: ignore[arg-type]
    assert not any("named neither" in n for n in yaml.safe_load((tmp_path / "case.yaml").read_text())["notes"])
