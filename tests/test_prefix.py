"""Hook recognition from prefixes, and the prefix map."""

from __future__ import annotations

from pathlib import Path

import pytest

from reportgen.errors import InputError
from reportgen.model import LineRef
from reportgen.parsers.nflog import parse_kernel_message
from reportgen.parsers.prefix import PrefixMap, resolve_hook

IP_BODY = ("IN=eth0 OUT= SRC=192.0.2.1 DST=192.0.2.2 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=ICMP TYPE=8 "
           "CODE=0 ID=1 SEQ=1 ")
EB_BODY = " IN=eth0 OUT=eth1 MAC source = 52:54:00:12:34:56 MAC dest = 52:54:00:65:43:21 proto = 0x0800"


def hook(msg: str, pm: PrefixMap | None = None):
    rec = parse_kernel_message(msg, LineRef("t", 1), msg, None)
    return resolve_hook(rec, pm or PrefixMap.empty())


@pytest.mark.parametrize(("prefix", "body", "want"), [
    ("iptable/raw-PREROUTE", IP_BODY, ("ipv4", "raw", "PREROUTING")),
    ("iptable/nat-POSTROUTE", IP_BODY, ("ipv4", "nat", "POSTROUTING")),
    ("ctc/ebtable/nat-PREROUTE", EB_BODY, ("bridge", "nat", "PREROUTING")),
    ("ctc/ebtable/filter-input", EB_BODY, ("bridge", "filter", "INPUT")),
    ("ctc/ebtable/broute-BROUTING", EB_BODY, ("bridge", "broute", "BROUTING")),
    ("TRACE: raw:PREROUTING:rule:2 ", IP_BODY, ("ipv4", "raw", "PREROUTING")),
    ("IPT:nat:POSTROUTING ", IP_BODY, ("ipv4", "nat", "POSTROUTING")),
    ("EB:filter:FORWARD", EB_BODY, ("bridge", "filter", "FORWARD")),
    ("fw-mangle-FWD ", IP_BODY, ("ipv4", "mangle", "FORWARD")),
    ("Filter_Output: ", IP_BODY, ("ipv4", "filter", "OUTPUT")),
])
def test_common_conventions(prefix, body, want):
    res = hook(prefix + body)
    assert res.hook is not None, res.problem
    assert (res.hook.family, res.hook.table, res.hook.chain) == want


def test_unknown_prefix_is_not_guessed_and_gets_a_hint():
    res = hook("[UFW BLOCK] " + IP_BODY)
    assert res.hook is None
    assert "prefix map" in res.problem and "UFW BLOCK" in res.problem


def test_two_chains_are_ambiguous():
    assert hook("in-to-out FORWARD INPUT " + IP_BODY).hook is None


def test_prefix_map(tmp_path: Path):
    p = tmp_path / "prefixes.yaml"
    p.write_text("prefixes:\n  '[UFW BLOCK]': ipv4 filter INPUT\n"
                 "  're:^fw-x': {family: ipv4, table: nat, chain: output}\n")
    pm = PrefixMap.load(p)
    res = hook("[UFW BLOCK] " + IP_BODY, pm)
    assert (res.hook.table, res.hook.chain, res.hook.how) == ("filter", "INPUT", "prefix map")
    assert hook("fw-x1 " + IP_BODY, pm).hook.chain == "OUTPUT"


def test_prefix_map_errors_name_the_file(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("prefixes:\n  'x': ipv4 filter NOPE\n")
    with pytest.raises(InputError, match="bad.yaml.*chain must be a hook name"):
        PrefixMap.load(p)
    q = tmp_path / "broken.yaml"
    q.write_text("prefixes: [\n")
    with pytest.raises(InputError, match="broken.yaml:.*not valid YAML"):
        PrefixMap.load(q)
