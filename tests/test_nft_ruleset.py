"""``nft list ruleset`` as hosts print it and people keep it: handles, sets, comments, files with
defines, damage. Each test names the nft(8) behaviour it rests on; every one failed on the parser that
returned a dict and skipped blocks by counting braces."""

from __future__ import annotations

from pathlib import Path

import pytest

from reportgen.errors import InputError
from reportgen.explain.rules import PacketView, evaluate
from reportgen.model import Action
from reportgen.netfilter import FORWARD, INET, INPUT, IPV4
from reportgen.parsers.nft_rules import rule_from_nft, rulesets_from_nft
from reportgen.parsers.nft_ruleset import INCLUDE, NOT_CLOSED, OBJECT, parse_nft_ruleset
from reportgen.parsers.ruleset import Chain, Ruleset
from reportgen.parsers.snapshots import Kind, detect_kind
from reportgen.sources.case import load_snapshots, load_spec

# "nft -a list ruleset" of a firewalld host (nftables 1.0.6): a ct helper and a set come before the
# chains, each opening line ending in "# handle N", and the set's comment holds braces.
FIREWALLD_A = """\
table inet firewalld { # handle 1
	ct helper helper-tftp-udp { # handle 3
		type "tftp" protocol udp
		l3proto inet
	}

	set blocked { # handle 4
		type ipv4_addr
		flags interval
		comment "operator's block list { see ticket 12 }"
		elements = { 192.0.2.0/24,
			198.51.100.7 }
	}

	chain filter_INPUT { # handle 5
		type filter hook input priority filter + 10; policy accept;
		ct state { established, related } accept # handle 12
		ip saddr @blocked log prefix "BLOCKED " drop # handle 13
		iifname "lo" accept comment "loopback } is fine" # handle 14
	}

	chain filter_FORWARD { # handle 6
		type filter hook forward priority filter + 10; policy drop;
		ct state { established, related } accept # handle 15
	}
}
"""


def test_handles_on_set_lines_do_not_end_the_table():
    # nft -a prints "# handle N" after the "{" of sets, flowtables and objects too (nft(8) -a,
    # --handle); the chains after them belong to the same table.
    rs = parse_nft_ruleset(FIREWALLD_A)
    [t] = rs.tables
    assert (t.family, t.nft_family, t.name) == (INET, "inet", "firewalld")
    inp, fwd = t.chains
    assert (inp.name, inp.hook, inp.priority, inp.policy) == ("filter_INPUT", INPUT, "filter + 10", Action.ACCEPT)
    assert (fwd.name, fwd.hook, fwd.policy, fwd.line) == ("filter_FORWARD", FORWARD, Action.DROP, 22)
    assert [(r.handle, r.line, r.log_prefix) for r in inp.rules] == [
        (12, 17, None),
        (13, 18, "BLOCKED "),
        (14, 19, None),
    ]
    # The rule keeps its comment, whose brace is inside quotes and closes nothing.
    assert inp.rules[2].text == 'iifname "lo" accept comment "loopback } is fine"'
    # The objects are listed as not read, each once, at its opening line.
    assert [(u.line, u.reason) for u in rs.unparsed] == [(2, OBJECT), (7, OBJECT)]


def test_rule_written_over_several_lines_is_one_rule():
    # nft(8) LEXICAL CONVENTIONS: a newline ends a statement, except inside a block such as an
    # anonymous verdict map, which a ruleset file may write across lines.
    rs = parse_nft_ruleset(
        "table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority 0; policy accept;\n"
        "\t\tip saddr vmap { 192.0.2.1 : drop,\n\t\t\t198.51.100.1 : accept }\n\t\ttcp dport 22 accept\n\t}\n}\n"
    )
    [chain] = rs.tables[0].chains
    assert [(r.line, r.text) for r in chain.rules] == [
        (4, "ip saddr vmap { 192.0.2.1 : drop, 198.51.100.1 : accept }"),
        (6, "tcp dport 22 accept"),
    ]
    assert rs.unparsed == ()


def test_ruleset_file_defines_are_expanded_and_includes_listed():
    # nft(8) VARIABLES: "define int_if = eth0" ... "$int_if"; INCLUDE FILES: the rules of an
    # included file are not in this one.
    text = (
        '#!/usr/sbin/nft -f\nflush ruleset\ninclude "/etc/nftables.d/*.nft"\ndefine BAD = 192.0.2.0/24\n'
        "table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority 0; policy accept;\n"
        "\t\tip saddr $BAD drop\n\t}\n}\n"
    )
    assert detect_kind(text) == Kind.NFT_RULESET
    rs = parse_nft_ruleset(text)
    [rule] = rs.tables[0].chains[0].rules
    assert (rule.text, rule.expr) == ("ip saddr $BAD drop", "ip saddr 192.0.2.0/24 drop")
    assert [(u.line, u.reason) for u in rs.unparsed] == [(3, INCLUDE)]
    [ruleset] = rulesets_from_nft(rs, "nftables.conf").values()
    hit = evaluate(
        ruleset, "filter", FORWARD, PacketView("192.0.2.9", "203.0.113.10", "TCP", 40000, 80, "eth0", "eth1")
    )
    assert (hit.verdict, hit.rule.line if hit.rule else None) == ("DROP", 8)


def test_addresses_the_evaluator_cannot_read_are_not_evaluated():
    # nft(8) accepts ranges ("10.0.0.1-10.0.0.9") and variables where an address goes; the evaluator
    # reads prefixes only, and once took these for "no match", so the policy decided instead.
    view = PacketView("192.0.2.5", "203.0.113.10", "TCP", 40000, 80, "eth0", "eth1")
    for expr in ("ip saddr 192.0.2.1-192.0.2.9 drop", "ip saddr $UNSET drop", "iifname $WAN drop"):
        rule = rule_from_nft("filter", "FORWARD", 1, 4, expr)
        rs = Ruleset(IPV4, "nft.txt", {"filter": {"FORWARD": Chain("FORWARD", "ACCEPT", [rule])}})
        res = evaluate(rs, "filter", "FORWARD", view)
        assert res.verdict is None and res.unevaluated, expr


def test_undefined_variable_is_named():
    rs = parse_nft_ruleset(
        "table inet t {\n\tchain c {\n\t\ttype filter hook input priority 0; policy accept;\n"
        "\t\tip saddr $LAN accept\n\t}\n}\n"
    )
    assert [(u.line, u.reason) for u in rs.unparsed] == [(4, "a variable that no define before it sets: $LAN")]


def test_unclosed_blocks_and_stray_braces_are_listed_with_their_lines():
    rs = parse_nft_ruleset(
        "}\ntable inet t {\n\tchain c {\n\t\ttype filter hook input priority 0; policy drop;\n\t\ttcp dport 22 accept\n"
    )
    # What was read is kept: the chain and its rule.
    [chain] = rs.tables[0].chains
    assert (chain.policy, [r.text for r in chain.rules]) == (Action.DROP, ["tcp dport 22 accept"])
    assert [(u.line, u.text) for u in rs.unparsed] == [(1, "}"), (2, "table inet t {"), (3, "chain c {")]
    assert all(NOT_CLOSED in u.reason for u in rs.unparsed[1:])


def test_json_output_is_refused_with_its_line(tmp_path: Path):
    # nft -j prints JSON (libnftables-json(5)); read as text it would give an empty ruleset in silence.
    with pytest.raises(InputError, match="nft -j") as err:
        parse_nft_ruleset('\n{"nftables": [{"metainfo": {"version": "1.0.6"}}]}\n')
    assert err.value.line == 2
    (tmp_path / "nft.json").write_text('{"nftables": [{"metainfo": {"json_schema_version": 1}}]}\n')
    (tmp_path / "kern.log").write_text("")
    (tmp_path / "case.yaml").write_text("trace: [kern.log]\nsnapshots:\n- file: nft.json\n", encoding="utf-8")
    _, notes = load_snapshots(load_spec([tmp_path]))
    assert any("nft.json was not used" in n and "line 1" in n and "nft -j" in n for n in notes), notes


def test_iptables_nft_warning_marks_the_table_and_does_not_hide_the_snapshot():
    # nftables src/rule.c table_print(): "# Warning: table ip filter is managed by iptables-nft, do
    # not touch!" before a table holding xt expressions; with 2>&1 it is the file's first line.
    text = (
        "# Warning: table ip filter is managed by iptables-nft, do not touch!\n"
        "table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy drop;\n"
        '\t\txt match "physdev" counter packets 0 bytes 0 accept\n\t}\n}\n'
        "table inet mine {\n}\n"
    )
    assert detect_kind(text) == Kind.NFT_RULESET
    filt, mine = parse_nft_ruleset(text).tables
    assert (filt.iptables_nft, mine.iptables_nft) == (True, False)


def test_dormant_table_stands_for_no_hook():
    # nft(8) TABLES: "dormant": the table is not evaluated, its base chains are unregistered.
    rs = parse_nft_ruleset(
        "table ip t {\n\tflags dormant\n\tchain fwd {\n"
        "\t\ttype filter hook forward priority filter; policy drop;\n\t}\n}\n"
    )
    assert rs.tables[0].dormant
    [ruleset] = rulesets_from_nft(rs, "nft.txt").values()
    assert ruleset.chain("filter", "FORWARD") is None and ruleset.chain("t", "fwd") is not None
