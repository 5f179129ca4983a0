"""The shipped registry of prefix conventions, on real lines copied verbatim from public sources."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from reportgen.errors import InputError
from reportgen.model import Action, LineRef
from reportgen.parsers.nflog import parse_kernel_message
from reportgen.parsers.prefix import (
    HOW_CONVENTION,
    PrefixMap,
    conventions,
    known_backends,
    match_convention,
    parse_conventions,
    resolve_hook,
    user_chain_hooks,
    with_backend_table,
)
from reportgen.sources.framing import strip_wrapper


def resolve(line: str):
    framed = strip_wrapper(line)
    rec = parse_kernel_message(framed.msg, LineRef("t", 1), line, framed.stamp)
    assert rec is not None
    return rec, resolve_hook(rec, PrefixMap.empty()).hook


def test_every_entry_is_cited_and_its_examples_match_it():
    names = {c.name for c in conventions()}
    assert {
        "ufw",
        "firewalld",
        "fwbuilder",
        "openwrt-fw3",
        "openwrt-fw4",
        "shorewall",
        "csf",
        "calico",
        "vyos",
    } <= names
    for conv in conventions():
        assert conv.source and conv.meaning and conv.examples, conv.name
        for example in conv.examples:
            m = match_convention(example)
            assert m is not None and m.convention is conv, (conv.name, example)


def test_registry_refuses_unanchored_or_backtracking_patterns():
    bad = "conventions:\n  - {name: x, pattern: '^(a+)+$', family: record, hooks: [INPUT]}\n"
    with pytest.raises(InputError, match="anchored"):
        parse_conventions(yaml.safe_load(bad), "t.yaml")
    with pytest.raises(InputError, match="anchored"):
        parse_conventions(yaml.safe_load("conventions:\n  - {name: x, pattern: 'DROP', family: record}\n"), "t.yaml")


def test_matching_is_linear_on_hostile_prefixes():
    hostile = [
        "filter_IN_" + "_" * 20000 + "x",
        "RULE " + "1" * 20000 + " --",
        "[UFW " + "B" * 20000,
        "Shorewall:" + "a-" * 10000,
        "[ipv4-FWD-" + "-a" * 10000,
        "drop " + "x " * 10000 + "in",
    ]
    start = time.perf_counter()
    for h in hostile:
        match_convention.__wrapped__(h)  # bypass the cache: measure the matching itself
    assert time.perf_counter() - start < 0.5


# Real lines, verbatim. Each tuple: line, convention, (family, hook or candidates, table), action.
REAL = [
    # wazuh/wazuh-qa#3422, comment by roronoasins, 2022-10-18 (a routed packet UFW blocked)
    (
        "Dec 26 09:05:47 server01 kernel: [126140.629122] [UFW BLOCK] IN=eth0 OUT=ppp0 "
        "MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd SRC=254.253.252.251 DST=191.192.193.194 LEN=52 TOS=0x02 "
        "PREC=0x00 TTL=128 ID=9209 DF PROTO=TCP SPT=17833 DPT=22 WINDOW=8192 RES=0x00 CWR ECE SYN URGP=0",
        "ufw",
        ("ipv4", "FORWARD", "filter"),
        Action.DROP,
    ),
    # wazuh/wazuh-ruleset#645, description by jtyocum, 2020-05-08
    (
        "May  8 11:59:28 wazuh kernel: [7435195.965031] [UFW BLOCK] IN=eth0 OUT= "
        "MAC=00:15:5d:e6:a2:01:2a:a3:c6:42:b1:90:08:00 SRC=172.25.230.143 DST=172.25.230.141 LEN=214 TOS=0x00 "
        "PREC=0x00 TTL=128 ID=43131 PROTO=UDP SPT=53540 DPT=1514 LEN=194",
        "ufw",
        ("ipv4", "INPUT", "filter"),
        Action.DROP,
    ),
    # "What do UFW's audit log entries mean?", https://newbetuts.com/143371-what-do-ufws-audit-log-entries-mean
    (
        "[UFW AUDIT] IN= OUT=eth0 SRC=176.58.105.134 DST=194.238.48.2 LEN=76 TOS=0x10 PREC=0x00 TTL=64 ID=32137 DF "
        "PROTO=UDP SPT=36231 DPT=123 LEN=56",
        "ufw",
        ("ipv4", "OUTPUT", "filter"),
        Action.AUDIT,
    ),
    (
        "[UFW ALLOW] IN= OUT=eth0 SRC=176.58.105.134 DST=194.238.48.2 LEN=76 TOS=0x10 PREC=0x00 TTL=64 ID=32137 DF "
        "PROTO=UDP SPT=36231 DPT=123 LEN=56",
        "ufw",
        ("ipv4", "OUTPUT", "filter"),
        Action.ACCEPT,
    ),
    # weaveworks/weave#450, description by kesavkolla, 2015-03-10 (bridged, br_netfilter FORWARD)
    (
        "[UFW BLOCK] IN=weave OUT=weave PHYSIN=vethwepl8172 PHYSOUT=vethwepl24506 SRC=10.0.20.1 DST=10.0.20.254 "
        "LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=38255 DF PROTO=TCP SPT=36452 DPT=5432 WINDOW=43690 RES=0x00 SYN URGP=0",
        "ufw",
        ("ipv4", "FORWARD", "filter"),
        Action.DROP,
    ),
    # firewalld/firewalld#876, description by freekdk, 2021-11-04 (nft backend; the prefix is quoted)
    (
        '2021-11-04T18:33:46.114797+01:00 rpi4tumhon kernel: [17748.074339][    C0] "filter_IN_public_REJECT: "IN=eth0 '
        "OUT= MAC=33:33:00:00:00:01:98:9b:cb:9d:f4:36:86:dd SRC=fe80:0000:0000:0000:9a9b:cbff:fe9d:f436 "
        "DST=ff02:0000:0000:0000:0000:0000:0000:0001 LEN=64 TC=0 HOPLIMIT=255 FLOWLBL=758639 PROTO=UDP SPT=53805 "
        "DPT=53805 LEN=24",
        "firewalld",
        ("ipv6", "INPUT", "firewalld"),
        Action.REJECT,
    ),
    # firewalld/firewalld#1436, description by SDedik, 2024-12-20
    (
        "Dec 20 11:01:41 <redacted> kernel: rpfilter_DROP: IN=eth0 OUT= MAC=33:33:00:00:00:02:34:40:b5:ab:f2:b8:86:dd "
        "SRC=fe80:0000:0000:0000:3640:b5ff:feab:f2b8 DST=ff02:0000:0000:0000:0000:0000:0000:0002 LEN=56 TC=0 "
        "HOPLIMIT=255 FLOWLBL=148171 PROTO=ICMPv6 TYPE=133 CODE=0",
        "firewalld",
        ("ipv6", "PREROUTING", None),
        Action.DROP,
    ),
    # ossec/ossec-hids#1267, comments by kdslkdsaldsal, 2017-10-02 (fwbuilder's "RULE %N -- %A")
    (
        "Oct  2 06:26:25 example kernel: [593219.016960] RULE 24 -- DROP IN=eth0 OUT= "
        "MAC=00:11:22:33:44:55:66:88:99:00:11:22:33:44 SRC=192.168.0.1 DST=192.168.0.2 LEN=40 TOS=0x00 PREC=0x00 "
        "TTL=113 ID=59263 PROTO=TCP SPT=15314 DPT=21379 WINDOW=53920 RES=0x00 SYN URGP=0",
        "fwbuilder",
        ("ipv4", "INPUT", "filter"),
        Action.DROP,
    ),
    (
        "Oct  2 06:26:25 example kernel: [593219.016960] RULE 24 -- DENY IN=eth0 OUT= "
        "MAC=00:11:22:33:44:55:66:88:99:00:11:22:33:44 SRC=192.168.0.1 DST=192.168.0.2 LEN=40 TOS=0x00 PREC=0x00 "
        "TTL=113 ID=59263 PROTO=TCP SPT=15314 DPT=21379 WINDOW=53920 RES=0x00 SYN URGP=0",
        "fwbuilder",
        ("ipv4", "INPUT", "filter"),
        Action.DROP,
    ),
    # Blog post "Protegiendo servidores con iptables usando Shorewall" (host bastion), 2019-04-15
    (
        "Apr  8 10:35:29 bastion kernel: [  268.309955] Shorewall:net-fw:DROP:IN=enp0s3 OUT= "
        "MAC=08:00:27:f8:e9:01:52:54:00:12:35:02:08:00 SRC=10.0.2.2 DST=10.0.2.15 LEN=44 TOS=0x00 PREC=0x00 TTL=64 "
        "ID=7736 PROTO=TCP SPT=33066 DPT=80 WINDOW=65535 RES=0x00 SYN URGP=0 ",
        "shorewall",
        ("ipv4", "INPUT", "filter"),
        Action.DROP,
    ),
    # centminmod/centminmod-abuseipdb-reporter readme.md (commit 0c4fe853), CSF report with masked addresses
    (
        "Apr  4 02:44:18 kernel: Firewall: *TCP_IN Blocked* IN=eth0 OUT= MAC=00:16:3c:58:ef:51:00:0c:db:f5:6d:00:08:00 "
        "SRC=35.xxx.xxx.xxx DST=0.0.0.x LEN=44 TOS=0x00 PREC=0x00 TTL=17 ID=6799 PROTO=TCP SPT=14833 DPT=111 "
        "WINDOW=1024 RES=0x00 SYN URGP=0 ",
        "csf",
        ("ipv4", "INPUT", "filter"),
        Action.DROP,
    ),
    # jmetzger/training-kubernetes-networking kubernetes-networks/calico/logging-policy.md (a Log rule)
    (
        "Apr  3 10:12:30 aks-workerpool1-13987120-vmss000000 kernel: [10821.860593] calico-packet: "
        "IN=calic440f455693 OUT=eth0 MAC=ee:ee:ee:ee:ee:ee:f2:f8:09:3d:97:03:08:00 SRC=10.244.2.7 DST=8.8.8.8 LEN=84 "
        "TOS=0x00 PREC=0x00 TTL=63 ID=33536 DF PROTO=ICMP TYPE=8 CODE=0 ID=32113 SEQ=43 ",
        "calico",
        ("ipv4", ("FORWARD", "POSTROUTING"), None),
        Action.LOG,
    ),
    # freifunk-gluon/gluon#1284, description by christf, 2017-12-25 (busybox logread; fw3 before 2018-05)
    (
        "Mon Dec 25 13:31:15 2017 kern.warn kernel: [45020.393820] REJECT(src wan)IN=br-wan OUT= "
        "MAC=ff:ff:ff:ff:ff:ff:de:42:86:62:89:92:08:00 SRC=192.168.13.117 DST=192.168.13.255 LEN=97 TOS=0x00 "
        "PREC=0x00 TTL=64 ID=28746 DF PROTO=UDP SPT=39311 DPT=21027 LEN=77 ",
        "openwrt-fw3",
        ("ipv4", "INPUT", "filter"),
        Action.REJECT,
    ),
    # vyos/vyos-documentation#2106 (docs/configuration/firewall/flowtables.md example; its MAC is malformed)
    (
        "Jun 18 22:22:00 kernel: [ipv4-FWD-filter-200-A]IN=bond1.10 OUT=bond2.20 MAC=000:53:00:00:00:01 "
        "00:53:00:00:00:02 SRC=192.168.10.2 DST=192.168.20.2 LEN=84 TOS=0x00 PREC=0x00 TTL=63 ID=56215 DF PROTO=ICMP "
        "TYPE=8 CODE=0 ID=3572 SEQ=1",
        "vyos",
        ("ipv4", "FORWARD", "vyos_filter"),
        Action.ACCEPT,
    ),
]


@pytest.mark.parametrize(("line", "name", "where", "action"), REAL, ids=[f"{r[1]}-{i}" for i, r in enumerate(REAL)])
def test_real_lines(line, name, where, action):
    _, h = resolve(line)
    assert h is not None
    family, hooks, table = where
    assert (h.convention, h.family, h.table, h.action) == (name, family, table, action)
    if isinstance(hooks, tuple):
        assert h.candidates == hooks and not h.placed
    else:
        assert h.placed and h.hook == hooks
    assert h.how.startswith(HOW_CONVENTION)


def test_firewalld_chain_is_the_zone_chain():
    _, h = resolve(REAL[5][0])
    assert h.chain == "filter_IN_public"


def test_convention_contradicted_by_in_out_falls_back_to_kernel_facts():
    # fw4's "in" verdict chains are reached from input_<zone> only; a line with OUT= set cannot be there.
    _, h = resolve(
        "reject wan in: IN=eth1 OUT=br-lan MAC= SRC=192.0.2.1 DST=10.0.0.2 LEN=60 TOS=0x00 PROTO=TCP SPT=1 DPT=2 SYN"
    )
    assert h.convention is None and h.candidates == ("FORWARD", "POSTROUTING")
    assert h.action is Action.REJECT and "do not fit" in h.how


@pytest.mark.parametrize(
    ("prefix", "in_out", "hook", "action"),
    [
        # Prefixes as the projects' sources print them (no verbatim public line of these was found).
        ("reject wan in: ", "IN=eth1 OUT= ", "INPUT", Action.REJECT),  # firewall4 zone-verdict.uc
        ("drop wan out: ", "IN=br-lan OUT=eth1 ", "FORWARD", Action.DROP),
        ("REJECT wan in: ", "IN=eth1 OUT= ", "INPUT", Action.REJECT),  # firewall3 zones.c
        ("DROP wan out: ", "IN= OUT=eth1 ", "OUTPUT", Action.DROP),
        ("Firewall: *TCP_OUT Blocked* ", "IN= OUT=eth0 ", "OUTPUT", Action.REJECT),  # csf.pl, csf.conf DROP_OUT
        ("[UFW LIMIT BLOCK] ", "IN=eth0 OUT= ", "INPUT", Action.REJECT),  # ufw conf/user.rules
        ("STATE_INVALID_DROP: ", "IN=eth0 OUT=eth1 ", "FORWARD", Action.DROP),
        ("Shorewall:fw-net:REJECT:", "IN= OUT=eth0 ", "OUTPUT", Action.REJECT),
        ("Shorewall:loc-net:ACCEPT:", "IN=eth1 OUT=eth0 ", "FORWARD", Action.ACCEPT),
    ],
)
def test_source_prefixes(prefix, in_out, hook, action):
    _, h = resolve(prefix + in_out + "SRC=192.0.2.1 DST=198.51.100.2 LEN=60 TOS=0x00 PROTO=TCP SPT=1 DPT=2 SYN")
    assert h.placed and (h.hook, h.action) == (hook, action)


def test_calico_drop_without_suffix_states_no_outcome():
    # felix logs "calico-drop" for LOG-and-DROP and LOG-and-ACCEPT alike.
    assert match_convention("calico-drop").action is Action.LOG
    assert match_convention("calico-drop LOG-and-ACCEPT").action is Action.ACCEPT


def test_user_chains_of_well_known_projects():
    assert user_chain_hooks("nat", "KUBE-SEP-ABCDEF0123456789") == ("PREROUTING", "OUTPUT")
    assert user_chain_hooks("nat", "KUBE-POSTROUTING") == ("POSTROUTING",)
    assert user_chain_hooks("filter", "KUBE-FORWARD") == ("FORWARD",)
    assert user_chain_hooks("filter", "ufw-after-logging-forward") == ("FORWARD",)
    assert user_chain_hooks("filter", "DOCKER-USER") == ()


def test_firewalld_table_comes_from_the_backend_a_snapshot_shows():
    # Tevault's book: FINAL_REJECT is filter INPUT with the iptables backend (its `iptables -L` shows
    # INPUT_ZONES), inet firewalld with nftables; the line alone cannot tell, so the table stays unknown.
    rec, h = resolve("FINAL_REJECT: IN=enp0s3 OUT= MAC= SRC=192.0.2.1 DST=192.0.2.2 LEN=40 TOS=0x00 PROTO=UDP")
    assert h is not None and h.table is None
    iptables_l = "Chain INPUT (policy ACCEPT)\ntarget prot opt source destination\nINPUT_ZONES  all  --  anywhere\n"
    backends = known_backends([iptables_l])
    assert backends == {"firewalld": "iptables"}
    assert with_backend_table(h, rec.prefix, backends).table == "filter"
    nft = "table inet firewalld {\n\tchain filter_INPUT {\n"
    assert with_backend_table(h, rec.prefix, known_backends([nft])).table == "firewalld"
    assert known_backends([iptables_l, nft]) == {}  # both shown: not known
    _, ufw = resolve("[UFW BLOCK] IN=eth0 OUT= MAC= SRC=192.0.2.1 DST=192.0.2.2 LEN=40 TOS=0x00 PROTO=UDP")
    assert ufw is not None and with_backend_table(ufw, "[UFW BLOCK] ", backends) is ufw


# Vocabularies stated in one place (model.py): the ICMP protocol pair (model.ICMP_PROTOS), hit kinds
# (model.HitKind) and who applied a NAT (model.NatBy). A new spelled-out copy in the package fails here.
_PACKAGE = Path(__file__).resolve().parent.parent / "reportgen"
_REPEATED = {
    "the ICMP protocol pair (use model.ICMP_PROTOS)": re.compile(r"""(["'])ICMP(v6)?\1\s*,\s*(["'])ICMP(?(2)|v6)\3"""),
    "a hit kind compared as a string (use model.HitKind)": re.compile(
        r"""\.kind\s*(?:==|!=|is|in)\s*\(?\s*["'](?:rule|policy|return)["']"""
    ),
    "a NAT's author compared as a string (use model.NatBy)": re.compile(
        r"""\.by\s*(?:==|!=|is|in)\s*\(?\s*["'](?:rule|conntrack)["']"""
    ),
}


def _repeats(text: str) -> list[str]:
    return [what for what, pattern in _REPEATED.items() if pattern.search(text)]


def test_vocabulary_is_not_spelled_out_again():
    found = []
    for path in sorted(_PACKAGE.rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            # The one definition of each is in model.py.
            if path.name == "model.py" and line.startswith("ICMP_PROTOS"):
                continue
            # capture.py's ``kind`` is its own: what a capture set up (a rule, an auto-created chain).
            what = [w for w in _repeats(line) if not (path.name == "capture.py" and "hit kind" in w)]
            found += [f"{path.relative_to(_PACKAGE.parent)}:{n}: {w}" for w in what]
    assert not found, "\n".join(found)


def test_the_vocabulary_check_sees_a_new_copy():
    """The patterns catch the spellings the package used before the constants (both orders, any quotes)."""
    assert _repeats('if r.proto in ("ICMP", "ICMPv6"):')
    assert _repeats("_Q = frozenset({'ICMPv6', 'ICMP'})")
    assert _repeats('if last.kind in ("rule", "policy"):') and _repeats('h.kind == "return"')
    assert _repeats('if n.by == "rule" and x') and _repeats('nat.by != "conntrack"')
    assert not _repeats("if r.proto in ICMP_PROTOS:") and not _repeats('("ICMP", 3): "destination unreachable"')
