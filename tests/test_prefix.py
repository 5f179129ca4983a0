"""Hook recognition from prefixes, IN=/OUT= kernel facts, and the prefix map."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from reportgen.errors import InputError
from reportgen.model import Action, LineRef
from reportgen.parsers.nflog import parse_kernel_message
from reportgen.parsers.prefix import (
    HOW_EBT_LAYOUT,
    HOW_IN_OUT,
    PrefixMap,
    forward_only_reason,
    mapping_yaml,
    prefix_action,
    resolve_hook,
)

ROOT = Path(__file__).resolve().parents[1]
TAIL = "SRC=192.0.2.1 DST=192.0.2.2 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1 "
IN_ONLY = "IN=eth0 OUT= " + TAIL
OUT_ONLY = "IN= OUT=eth0 " + TAIL
# Since Linux 3.4 nf_log prints MAC= whenever there is an input device (see test_no_mac_field_dates_the_kernel).
BOTH = "IN=eth0 OUT=eth1 MAC=52:54:00:65:43:21:52:54:00:12:34:56:08:00 " + TAIL
EB = " IN=eth0 OUT=eth1 MAC source = 52:54:00:12:34:56 MAC dest = 52:54:00:65:43:21 proto = 0x0800"
EB_IN = " IN=eth0 OUT= MAC source = 52:54:00:12:34:56 MAC dest = 52:54:00:65:43:21 proto = 0x0800"


def hook(msg: str, pm: PrefixMap | None = None):
    rec = parse_kernel_message(msg, LineRef("t", 1), msg, None)
    assert rec is not None
    return resolve_hook(rec, pm or PrefixMap.empty())


@pytest.mark.parametrize(
    ("prefix", "body", "want"),
    [
        ("iptable/raw-PREROUTE", IN_ONLY, ("ipv4", "raw", "PREROUTING")),
        ("iptable/nat-POSTROUTE", OUT_ONLY, ("ipv4", "nat", "POSTROUTING")),
        ("ctc/ebtable/nat-PREROUTE", EB_IN, ("bridge", "nat", "PREROUTING")),
        ("ctc/ebtable/filter-input", EB_IN, ("bridge", "filter", "INPUT")),
        ("ctc/ebtable/broute-BROUTING", EB_IN, ("bridge", "broute", "BROUTING")),
        ("TRACE: raw:PREROUTING:rule:2 ", IN_ONLY, ("ipv4", "raw", "PREROUTING")),
        ("IPT:nat:POSTROUTING ", BOTH, ("ipv4", "nat", "POSTROUTING")),
        ("EB:filter:FORWARD", EB, ("bridge", "filter", "FORWARD")),
        ("fw-mangle-FWD ", BOTH, ("ipv4", "mangle", "FORWARD")),
        ("Filter_Output: ", OUT_ONLY, ("ipv4", "filter", "OUTPUT")),
    ],
)
def test_prefix_words(prefix, body, want):
    res = hook(prefix + body)
    assert res.hook is not None, res.problem
    assert (res.hook.family, res.hook.table, res.hook.chain) == want
    assert res.hook.placed


def test_prefix_words_that_contradict_in_out_are_not_trusted():
    # A POSTROUTING line never has IN= without OUT= (ip_output passes the output device), so the words
    # lose to the kernel facts: PREROUTING or INPUT.
    res = hook("iptable/nat-POSTROUTE" + IN_ONLY)
    assert res.hook is not None and res.hook.candidates == ("PREROUTING", "INPUT")
    assert res.hook.how == HOW_IN_OUT


@pytest.mark.parametrize(
    ("body", "candidates"),
    [
        (IN_ONLY, ("PREROUTING", "INPUT")),
        (OUT_ONLY, ("OUTPUT", "POSTROUTING")),
        # ip_output() passes skb->dev as the input device, so a forwarded packet prints IN= at
        # POSTROUTING too: both set is FORWARD or POSTROUTING, never one guessed hook.
        (BOTH, ("FORWARD", "POSTROUTING")),
    ],
)
def test_unknown_and_empty_prefixes_get_the_candidates_in_out_allow(body, candidates):
    for prefix in ("", "mystery: "):
        res = hook(prefix + body)
        assert res.hook is not None
        assert res.hook.candidates == candidates and not res.hook.placed
        assert res.hook.hook == candidates[0] and res.hook.how == HOW_IN_OUT
        # Neither the prefix nor the line names the tool (iptables' LOG and nft's log print the same
        # text): the label names the family.
        assert res.hook.label == "IPv4 ? " + " or ".join(candidates)


def test_no_mac_field_or_a_bridged_frame_rules_out_postrouting():
    # Before xt_LOG (Linux 3.4) the MAC header was logged "for input path only" (in && !out): a line
    # with IN= and OUT= and no MAC field comes from a kernel that passed no input device to
    # POSTROUTING (that came with 5.5), so it is FORWARD (log-noprefix-virthost-vpn-bridge).
    old = hook("IN=tun0 OUT=br1 " + TAIL)
    assert old.hook is not None and old.hook.placed and old.hook.hook == "FORWARD"
    for mac in ("MAC= ", "MAC=<filtered> ", "MAC=xx:xx:xx "):  # printed, even empty or redacted
        assert hook(f"IN=eth0 OUT=eth1 {mac}" + TAIL).hook.candidates == ("FORWARD", "POSTROUTING")
    # br_nf_post_routing() runs the IP POSTROUTING hook with no input device: PHYSOUT= means FORWARD.
    bridged = hook("IN=br1 OUT=br1 PHYSIN=tap0 PHYSOUT=eth1 MAC=52:54:00:65:43:21:52:54:00:12:34:56:08:00 " + TAIL)
    assert bridged.hook is not None and bridged.hook.placed and bridged.hook.hook == "FORWARD"
    # The report says why (explain._hop_text cites it on the FORWARD hop).
    line = "IN=tun0 OUT=br1 " + TAIL
    rec = parse_kernel_message(line, LineRef("t", 1), line, None)
    assert rec is not None and "no MAC field" in (forward_only_reason(rec) or "")
    assert forward_only_reason(replace(rec, mac_logged=True)) is None


def test_bridge_in_and_out_is_forward():
    # __br_forward() is the only bridge hook with both devices (br_forward.c).
    res = hook("x" + EB)
    assert res.hook is not None and res.hook.placed
    # ebt_log's layout names the tool too (prefix.EBT_LOG_WRITER_NOTE).
    assert (res.hook.family, res.hook.hook, res.hook.how) == ("bridge", "FORWARD", HOW_IN_OUT + HOW_EBT_LAYOUT)
    assert res.hook.tool == "ebtables"


def test_family_from_addresses_and_mac():
    v6 = (
        "IN=eth0 OUT= MAC=33:33:00:00:00:01:98:9b:cb:9d:f4:36:86:dd SRC=fe80:0000:0000:0000:9a9b:cbff:fe9d:f436 "
        "DST=ff02:0000:0000:0000:0000:0000:0000:0001 LEN=64 PROTO=UDP SPT=53805 DPT=53805 LEN=24"
    )
    assert hook(v6).hook.family == "ipv6"
    # Addresses redacted, no TOS/TC: the ethertype in MAC= still says IPv6.
    redacted = "IN=eth0 OUT= MAC=33:33:00:00:00:01:98:9b:cb:9d:f4:36:86:dd SRC=<filtered> DST=x.x.x.x PROTO=UDP"
    assert hook(redacted).hook.family == "ipv6"


def test_arp_and_empty_in_out_stay_unresolved_with_a_reason():
    arp = hook("IN=eth0 OUT= ARP HTYPE=1 PTYPE=0x0800 OPCODE=1")
    assert arp.hook is None and "ARP" in arp.problem
    none = hook("odd: IN= OUT= " + TAIL)
    assert none.hook is None and "prefixes.yaml" in none.problem


@pytest.mark.parametrize(
    ("prefix", "action"),
    [
        ("DROP: ", Action.DROP),
        ("INPUT_DROP ", Action.DROP),
        ("Dropped by firewall: ", Action.DROP),
        ("[DENIED] ", Action.DROP),
        ("BLOCKED ", Action.DROP),
        ("iptables REJECT ", Action.REJECT),
        ("REJECTED: ", Action.REJECT),
        ("[INPUT_ACCEPT]", Action.ACCEPT),
        ("ALLOW in ", Action.ACCEPT),
        ("fw AUDIT ", Action.AUDIT),
        ("LIMIT ", Action.LIMIT),
        ("LIMIT BLOCK ", Action.DROP),
        ("DROP or ACCEPT ", None),
        ("hello ", None),
        ("", None),
    ],
)
def test_action_words_are_evidence(prefix, action):
    assert prefix_action(prefix) is action
    res = hook(prefix + BOTH)
    # A prefix that states no action still records that the packet was logged there.
    assert res.hook is not None and res.hook.action is (action or Action.LOG)


def test_prefix_map(tmp_path: Path):
    p = tmp_path / "prefixes.yaml"
    p.write_text(
        "prefixes:\n  'my-block': ipv4 filter INPUT\n  're:^fw-x': {family: ipv4, table: nat, chain: output}\n"
    )
    pm = PrefixMap.load(p)
    res = hook("my-block " + IN_ONLY, pm)
    assert (res.hook.table, res.hook.chain, res.hook.how, res.hook.action) == (
        "filter",
        "INPUT",
        "prefix map",
        Action.DROP,
    )
    assert hook("fw-x1 " + OUT_ONLY, pm).hook.chain == "OUTPUT"


def test_prefix_map_errors_name_the_file(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("prefixes:\n  'x': ipv4 filter NOPE\n")
    with pytest.raises(InputError, match="bad.yaml.*chain must be a hook name"):
        PrefixMap.load(p)
    q = tmp_path / "broken.yaml"
    q.write_text("prefixes: [\n")
    with pytest.raises(InputError, match="broken.yaml:.*not valid YAML"):
        PrefixMap.load(q)


@pytest.mark.parametrize(
    ("prefix", "key"),
    [
        ("", ""),
        ("RULE 12 -- DROP ", r"re:^RULE \d+ -- DROP"),
        ('odd "quoted" [x] (y) a.b*c+ ', 'odd "quoted" [x] (y) a.b*c+'),
        ("fw rule 7/3 blocked: ", r"re:^fw rule \d+/\d+ blocked:"),
        ("ünïcode\\path ", "ünïcode\\path"),
        ("line\u2028sep\x85 tab\t ", "line\u2028sep\x85 tab"),  # YAML line breaks must be escaped
    ],
)
def test_hint_yaml_pastes_into_a_prefix_map(tmp_path: Path, prefix, key):
    line = mapping_yaml(prefix, "ipv4", "INPUT")
    assert yaml.safe_load(line) == {"prefixes": {key: "ipv4 filter INPUT"}}
    p = tmp_path / "prefixes.yaml"
    p.write_text(line + "\n", encoding="utf-8")
    pm = PrefixMap.load(p)
    res = hook(prefix + "IN= OUT= " + TAIL, pm)
    assert res.hook is not None and (res.hook.hook, res.hook.how) == ("INPUT", "prefix map")
    if key.startswith("re:"):  # the pattern also covers other rule numbers
        other = prefix.replace("12", "3456").replace("7/3", "1/22")
        assert hook(other + "IN= OUT= " + TAIL, pm).hook.how == "prefix map"


def test_unresolved_hint_is_the_pasteable_yaml(tmp_path: Path):
    res = hook("IN= OUT= " + TAIL)
    assert res.hook is None
    pasted = res.problem[res.problem.index("prefixes: {") :]
    assert pasted == 'prefixes: {"": ipv4 filter INPUT}'
    p = tmp_path / "prefixes.yaml"
    p.write_text(pasted)
    assert hook("IN= OUT= " + TAIL, PrefixMap.load(p)).hook.hook == "INPUT"


@pytest.mark.parametrize(
    ("line", "action", "where"),
    [
        # geerlingguy/ansible-role-firewall#34 (addresses and MAC masked with x)
        (
            "Feb 23 03:17:19 ubuntu kernel: Dropped by firewall: IN=eth0 OUT= MAC=33:33:00:00:00:01:00:05:73:a0:xx:"
            "xx:xx:xx SRC=xxxx:0000:0000:0000:0000:0000:0000:0001 DST=xxxx:0000:0000:0000:0000:0000:0000:0001 "
            "LEN=104 TC=224 HOPLIMIT=255 FLOWLBL=0 PROTO=ICMPv6 TYPE=134 CODE=0",
            Action.DROP,
            ("ipv6", ("PREROUTING", "INPUT")),
        ),
        # FoobarOy/foomuuri#107 (dmesg)
        (
            "[  957.703250] OUTPUT REJECT IN= OUT=eth1 SRC=fe80:0000:0000:0000:4262:31ff:fe07:d301 "
            "DST=ff02:0000:0000:0000:0000:0000:0000:0002 LEN=56 TC=0 HOPLIMIT=255 FLOWLBL=0 PROTO=ICMPv6 TYPE=133 "
            "CODE=0 ",
            Action.REJECT,
            ("ipv6", "OUTPUT"),
        ),
    ],
)
def test_real_action_words(line, action, where):
    from reportgen.sources.framing import strip_wrapper

    h = hook(strip_wrapper(line).msg)
    assert h.hook is not None and h.hook.action is action and h.hook.family == where[0]
    if isinstance(where[1], tuple):
        assert h.hook.candidates == where[1]
    else:
        assert h.hook.placed and h.hook.hook == where[1]


def test_forwarded_packets_print_in_at_postrouting_on_this_kernel():
    # The lab capture (samples/lab-container-to-internet/dmesg.log:9) is nat POSTROUTING of a routed
    # packet, and prints IN=docker0: ip_output() passes skb->dev as the input device. So a line with
    # both devices and no telling prefix may be FORWARD or POSTROUTING.
    line = (ROOT / "samples" / "lab-container-to-internet" / "dmesg.log").read_text().splitlines()[8]
    assert "nat-POSTROUTEIN=docker0 OUT=ens33" in line
    h = hook(line.split("] ", 1)[1].replace("reb/iptable/nat-POSTROUTE", "x: "))
    assert h.hook.candidates == ("FORWARD", "POSTROUTING")
    # ... and the prefix words, consistent with that, still place it.
    assert hook(line.split("] ", 1)[1]).hook.chain == "POSTROUTING"


def test_in_and_out_words_are_directions_not_chains():
    # netdata/netdata#2047 (FireHOL): "IN-work" names an interface direction, not the INPUT chain.
    h = hook(
        "IN-work: IN=realize OUT= MAC=45:00:00:4e SRC=192.168.9.10 DST=255.255.255.255 LEN=78 TOS=00 "
        "PREC=0x00 TTL=128 ID=31586 PROTO=UDP SPT=137 DPT=137 LEN=58 MARK=0 "
    ).hook
    assert h.candidates == ("PREROUTING", "INPUT")


def test_book_callout_numbers_do_not_hide_the_fields_or_the_convention():
    # A book's callout markers glued to the fields (log-ufw-limit-block-book-callouts): "2SRC=" is SRC=,
    # and "1 [UFW LIMIT BLOCK]" is ufw's prefix; a number alone before an unknown prefix changes nothing.
    line = (
        "1 [UFW LIMIT BLOCK] IN=enp0s8 OUT= MAC=08:00:27:fb:c3:af:0a:00:27:00:00:00:08:00 2SRC=172.28.128.1 "
        "3DST=172.28.128.3 LEN=64 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF PROTO=TCP SPT=58634 4DPT=5000 SYN URGP=0"
    )
    rec = parse_kernel_message(line, LineRef("t", 1), line, None)
    assert rec is not None and (rec.src, rec.dst, rec.dport) == ("172.28.128.1", "172.28.128.3", 5000)
    h = resolve_hook(rec, PrefixMap.empty()).hook
    assert h is not None and (h.convention, h.hook, h.table, h.action) == ("ufw", "INPUT", "filter", Action.REJECT)
    other = hook("1 mystery: " + IN_ONLY).hook
    assert other is not None and other.convention is None
