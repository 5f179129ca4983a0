"""Verdicts name their evidence, and never say what the packet's own lines contradict.

The records are built by hand with the fields the parsers and the prefix registry produce (an
action word, candidate hooks, missing fields), so the explainer is tested on exactly those facts.
"""

from __future__ import annotations

from dataclasses import replace

from reportgen.explain.correlate import correlate
from reportgen.explain.explain import explain
from reportgen.explain.topology import Topology
from reportgen.model import Action, Event, HookRef, LineRef, LogRecord, Packet, VerdictCode
from reportgen.parsers.conntrack import parse_conntrack

_LINE = iter(range(1, 10_000))


def rec(in_dev: str = "", out_dev: str = "", prefix: str = "", **kw: object) -> LogRecord:
    n = next(_LINE)
    base: dict[str, object] = dict(l3="ipv4", src="192.0.2.7", dst="198.51.100.10", length=60, ttl=64, ipid=4242,
                                   proto="TCP", sport=40000, dport=22, tcp_flags=("SYN",))
    base.update(kw)
    return LogRecord(ref=LineRef("kern.log", n), text="...", stamp=float(n) / 1000, fmt="nflog", prefix=prefix,
                     in_dev=in_dev, out_dev=out_dev, **base)  # type: ignore[arg-type]


def ev(r: LogRecord, hook: str, table: str = "filter", family: str = "ipv4", **kw: object) -> Event:
    return Event(r, HookRef(family, hook, table, hook, "prefix words", **kw))  # type: ignore[arg-type]


def packets(*events: Event, topo: Topology | None = None) -> list[Packet]:
    return explain(correlate(list(events)), topo or Topology())[1]


def test_ufw_block_ends_the_packet_citing_the_prefix():
    [p] = packets(ev(rec("eth0", prefix="[UFW BLOCK] "), "INPUT", action=Action.DROP, convention="ufw"))
    assert p.verdict.code == VerdictCode.DROPPED_BY_RULE
    assert p.verdict.evidence == "prefix '[UFW BLOCK]' (action DROP, ufw convention) at kern.log:" + str(
        p.hops[0].event.record.ref.line)
    assert "Dropped at IPv4 filter INPUT" in p.verdict.explanation  # ev() names no writer: no tool


def test_reject_prefix_is_rejected():
    [p] = packets(ev(rec("eth0", prefix="filter_IN_public_REJECT: "), "INPUT", action=Action.REJECT,
                     convention="firewalld"))
    assert p.verdict.code == VerdictCode.REJECTED and "firewalld convention" in p.verdict.evidence


def test_allow_at_input_is_delivered_citing_the_prefix():
    [p] = packets(ev(rec("eth0", prefix="[UFW ALLOW] "), "INPUT", action=Action.ACCEPT, convention="ufw"))
    assert p.verdict.code == VerdictCode.DELIVERED_LOCAL and "[UFW ALLOW]" in p.verdict.evidence


def test_audit_says_nothing_about_the_outcome():
    [p] = packets(ev(rec("eth0", prefix="[UFW AUDIT] "), "INPUT", action=Action.AUDIT, convention="ufw"))
    assert p.verdict.code == VerdictCode.UNKNOWN
    assert "says nothing about the outcome" in p.verdict.explanation


def test_drop_prefix_contradicted_by_a_later_line_is_not_a_drop():
    r1 = rec("eth0", "eth1", prefix="DROP-ish ", dst="203.0.113.5")
    r2 = replace(rec("", "eth1", prefix="post ", dst="203.0.113.5"), ref=LineRef("kern.log", r1.ref.line + 1))
    [p] = packets(ev(r1, "FORWARD", action=Action.DROP), ev(r2, "POSTROUTING", table="nat"))
    assert p.verdict.code == VerdictCode.FORWARDED_OUT
    assert "seen after it" in p.verdict.explanation


def test_forward_line_alone_is_not_left():
    # Routing chose eth1 at FORWARD, but no POSTROUTING line shows the packet leave.
    [p] = packets(ev(rec("eth0", "eth1", prefix="fwd ", dst="203.0.113.5"), "FORWARD"))
    assert p.verdict.code == VerdictCode.LAST_SEEN
    assert p.verdict.evidence.startswith("last seen; the next hook is not traced")


def test_unplaced_hop_names_its_candidates_and_invents_no_skips():
    [p] = packets(ev(rec("eth0", prefix=""), "PREROUTING", candidates=("PREROUTING", "INPUT")))
    text = " ".join(p.hops[0].explanation)
    assert "at PREROUTING or INPUT (the line has IN= only; a prefix map would settle it)" in text
    assert "Received on" not in text  # no sentence that presumes one of the hooks
    assert p.skipped == () and p.path == "undetermined"
    assert p.verdict.code == VerdictCode.LAST_SEEN and "PREROUTING or INPUT" in p.verdict.where


def test_arp_frames_get_no_ip_hook_skip_reasons():
    r = LogRecord(ref=LineRef("kern.log", next(_LINE)), text="...", stamp=None, fmt="ebtlog", prefix="arp ",
                  in_dev="veth1", out_dev="veth2", mac_src="02:42:ac:11:00:02", mac_dst="02:42:ac:11:00:03",
                  ethertype=0x0806, l3="arp")
    [p] = packets(ev(r, "FORWARD", family="bridge"))
    assert all(s.family == "bridge" for s in p.skipped)


def test_icmp_id_one_source_does_not_print_is_no_nat():
    # ebtables --log-ip prints addresses and protocol but no ICMP id; the nf_log line has it.
    common = dict(proto="ICMP", sport=None, dport=None, tcp_flags=(), icmp_type=8, src="172.17.0.2",
                  dst="172.17.0.3", physin="veth1", mac_src="02:42:ac:11:00:02", mac_dst="02:42:ac:11:00:03")
    ebt = replace(rec("veth1", **{**common, "icmp_type": None, "ipid": None, "length": None, "ttl": None,
                                  "physin": ""}), fmt="ebtlog")
    ipt = rec("docker0", **common, icmp_id=7, icmp_seq=1)
    [p] = packets(ev(ebt, "PREROUTING", table="nat", family="bridge"), ev(ipt, "PREROUTING", table="raw"))
    assert p.nat == ()


def test_retransmitted_syn_after_a_dropped_syn_is_not_established():
    def syn(n: int) -> list[Event]:
        a = rec("eth0", "", prefix="pre ", ipid=100 + n, dst="198.51.100.10")
        b = rec("eth0", "eth1", prefix="[UFW BLOCK] ", ipid=100 + n, dst="198.51.100.10", ttl=63)
        return [ev(a, "PREROUTING", table="raw"), ev(b, "FORWARD", action=Action.DROP, convention="ufw")]

    first, again = packets(*syn(1), *syn(2))
    assert again.conversation == first.conversation and again.role == "request"
    assert again.verdict.code == VerdictCode.DROPPED_BY_RULE
    assert all(s.reason != "conntrack" for s in again.skipped), again.skipped


def test_flooded_copies_are_one_packet_with_several_exits():
    topo = Topology(bridges={"br0": ("p1", "p2", "p3")})
    common = dict(src="10.0.0.1", dst="10.0.0.9", physin="p1", mac_src="02:00:00:00:00:01",
                  mac_dst="02:00:00:00:00:09", proto="UDP", sport=5000, dport=5001, tcp_flags=())
    evs = [ev(rec("br0", **common), "PREROUTING", table="raw")]
    for port in ("p2", "p3"):
        evs.append(ev(rec("br0", "br0", physout=port, **common), "FORWARD"))
        evs.append(ev(rec("", "br0", physout=port, **common), "POSTROUTING", table="nat"))
    [p] = packets(*evs, topo=topo)
    assert p.verdict.code == VerdictCode.DELIVERED_TO_PORT and p.verdict.where == "p2, p3"
    assert "flooded" in p.verdict.explanation


def test_reply_on_the_uplink_is_paired_by_the_conntrack_snapshot():
    # Only the reply is in the trace: it arrives on the uplink for the masquerading address and
    # conntrack rewrites its destination back to the container. It is a reply, never "DNAT by rule".
    [entry] = parse_conntrack(
        "tcp      6 431999 ESTABLISHED src=172.17.0.2 dst=203.0.113.10 sport=5555 dport=80 "
        "src=203.0.113.10 dst=198.51.100.10 sport=80 dport=5555 [ASSURED] mark=0 use=1\n"
    ).entries
    common = dict(src="203.0.113.10", sport=80, dport=5555, tcp_flags=("ACK",), ipid=77)
    evs = [ev(rec("eth0", **common, dst="198.51.100.10"), "PREROUTING", table="raw"),
           ev(rec("eth0", "docker0", **common, dst="172.17.0.2", ttl=63), "FORWARD")]
    [alone] = packets(*evs)
    # Nothing in the lines says which side opened: an ACK is mid-connection (RFC 9293 3.5), so it is
    # neither called a request nor a reply.
    assert alone.role == "unknown"
    [p] = packets(*evs, topo=Topology(conntrack=(("conntrack.txt", entry),)))
    assert p.role == "reply"
    [n] = p.nat
    assert (n.type, n.direction, n.by, n.field) == ("SNAT", "reply", "conntrack", "destination")


def test_no_drop_when_the_same_datagram_is_logged_later_in_pieces_kept_apart():
    # The correlator keeps these apart (the second names another bridge port), but the same IP
    # datagram seen later at a later hook contradicts a drop at the first one.
    common = dict(dst="198.51.100.10", ipid=900)
    a = ev(rec("br0", prefix="x-DROP ", physin="p1", **common), "PREROUTING", table="raw", action=Action.DROP)
    b = ev(rec("", "eth1", prefix="post ", physin="p9", **common), "POSTROUTING", table="nat")
    first, second = packets(a, b)
    assert first.verdict.code == VerdictCode.LAST_SEEN
    assert "so it was not dropped there" in first.verdict.explanation
    assert first.verdict.evidence == f"seen after: {second.hops[0].event.record.ref}"


def test_a_trace_that_stops_inside_a_chain_does_not_show_delivery():
    from reportgen.model import HitKind, RuleHit

    def traced(verdict: str, kind: HitKind = HitKind.RULE) -> Event:
        r = rec("eth0", prefix="TRACE: ", dst="198.51.100.10")
        hit = RuleHit("filter", "KUBE-FIREWALL" if kind is HitKind.RULE else "INPUT", kind, verdict, "", "1", r.ref)
        return Event(r, HookRef("ipv4", "INPUT", "filter", "INPUT", "TRACE prefix"), (hit,))

    [stopped] = packets(traced("jump KUBE-FIREWALL"))
    assert stopped.verdict.code == VerdictCode.LAST_SEEN and "trace stops in filter KUBE-FIREWALL" in \
        stopped.verdict.evidence
    [passed] = packets(traced("accept", kind=HitKind.POLICY))
    assert passed.verdict.code == VerdictCode.DELIVERED_LOCAL


def test_json_states_no_hook_for_an_unplaced_hop():
    from reportgen.render.jsonout import _hop, _packet

    [p] = packets(ev(rec("eth0", prefix=""), "PREROUTING", candidates=("PREROUTING", "INPUT")))
    hop = _hop(p.hops[0])
    assert hop["hook"] is None and hop["hook_candidates"] == ["PREROUTING", "INPUT"]
    verdict = _packet(p)["verdict"]
    assert set(verdict) == {"code", "where", "explanation", "evidence", "rule", "rule_line"}
    assert verdict["code"] == "last-seen" and "None" not in verdict["explanation"]


def test_drop_prefix_on_an_unplaced_line_names_both_hooks():
    [p] = packets(ev(rec("eth0", prefix="BLOCKED "), "PREROUTING", candidates=("PREROUTING", "INPUT"),
                     action=Action.DROP))
    assert p.verdict.code == VerdictCode.DROPPED_BY_RULE
    assert p.verdict.explanation.startswith("Dropped at PREROUTING or INPUT (the line has IN= only")


def test_redacted_addresses_never_print_none_nor_invent_a_destination_change():
    """A paste that masked SRC/DST: the packet is described with 'redacted', a SYN is still a request,
    and a field known on one hop only is never called changed (no NAT from a field not printed)."""
    masked = rec("eth0", src=None, dst=None, redacted=("src", "dst"))
    [p] = packets(ev(masked, "INPUT", action=Action.DROP, convention="ufw"))
    assert p.summary == "TCP redacted:40000 → redacted:22 [SYN]" and p.role == "request"
    said = " ".join(p.summary.split() + [t for h in p.hops for t in h.explanation])
    assert "None" not in said
    udp = rec("eth0", src=None, dst=None, redacted=("src", "dst"), proto="UDP", tcp_flags=())
    [q] = packets(ev(udp, "INPUT"))
    assert q.role == "unknown"  # a UDP datagram alone does not say who opened the conversation
    # A cut line (no TOS/LEN, no SPT: ansible-role-nftables#80) is still an IP packet, not a "frame".
    cut = rec("", "ens3", src=None, redacted=("src",), l3=None, proto="UDP", sport=None, dport=123, tcp_flags=())
    [c] = packets(ev(cut, "OUTPUT"))
    assert c.summary == "UDP redacted:? → 198.51.100.10:123"
    a = rec("eth1", "eth0", src="192.0.2.7", dst=None, redacted=("dst",))
    b = rec("", "eth0", src="192.0.2.7")
    [r] = packets(ev(a, "FORWARD"), ev(b, "POSTROUTING", table="nat"))
    assert not any("Destination changed" in t for h in r.hops for t in h.explanation)


def test_two_lines_of_one_rule_at_one_hook_are_two_packets():
    # firewalld#1436: the same rpfilter_DROP line twice in one second. One packet passes IP PREROUTING
    # once (ip_sabotage_in() stops a second run), so the second line is a second packet, and the
    # first one's DROP is not contradicted by it.
    def line() -> Event:
        r = rec("eth0", prefix="rpfilter_DROP: ", l3="ipv6", src="fe80::1", dst="ff02::fb", ipid=None, proto="UDP",
                tcp_flags=(), flowlabel=223537, sport=5353, dport=5353)
        return ev(r, "PREROUTING", table=None, family="ipv6", action=Action.DROP, convention="firewalld")

    ps = packets(line(), line())
    assert len(ps) == 2 and all(p.verdict.code == VerdictCode.DROPPED_BY_RULE for p in ps)


def test_two_log_rules_of_one_table_log_one_packet_twice():
    # newbetuts 143371: ufw logs [UFW AUDIT] then [UFW ALLOW] for one packet at filter OUTPUT (LOG
    # continues, xt_LOG.c XT_CONTINUE); after a prefix that ends the table, the same table is a new packet.
    def line(prefix: str, action: Action) -> Event:
        return ev(rec("", "eth0", prefix=prefix, ipid=32137, proto="UDP", tcp_flags=()), "OUTPUT",
                  action=action, convention="ufw")

    [p] = packets(line("[UFW AUDIT] ", Action.AUDIT), line("[UFW ALLOW] ", Action.ACCEPT))
    assert len(p.hops) == 2 and "another LOG rule" in p.hops[1].explanation[0]
    assert len(packets(line("[UFW ALLOW] ", Action.ACCEPT), line("[UFW AUDIT] ", Action.AUDIT))) == 2
    assert len(packets(line("[UFW AUDIT] ", Action.AUDIT), line("[UFW AUDIT] ", Action.AUDIT))) == 2


def test_a_packet_sent_over_loopback_comes_back_in_as_the_same_packet():
    # newbetuts 143371: a SYN logged at OUTPUT with OUT=lo and at INPUT with IN=lo (same IP ID):
    # loopback_xmit() hands that skb back to the stack. Another SYN (another ID) stays apart.
    out = ev(rec("", "lo", dst="192.0.2.7", ipid=54579), "OUTPUT", action=Action.AUDIT, convention="ufw")
    back = ev(rec("lo", dst="192.0.2.7", ipid=54579), "INPUT", action=Action.AUDIT, convention="ufw")
    other = ev(rec("lo", dst="192.0.2.7", ipid=4319, sport=40001), "INPUT", action=Action.AUDIT, convention="ufw")
    p, q = packets(out, back, other)
    assert [h.stage for h in p.hops] == ["ip-out", "ip-in"] and "Looped back" in p.hops[1].explanation[0]
    assert not any(k.hook == "PREROUTING" for k in p.skipped)  # nat was bound at OUTPUT/POSTROUTING
    assert [h.stage for h in q.hops] == ["ip-in"]


def _syn_and_answer(flags: tuple[str, ...]) -> list[Packet]:
    """A SYN logged at the top of filter INPUT (no action word), and the host's answer at OUTPUT."""
    syn = ev(rec("eth0", prefix="in "), "INPUT")
    answer = rec(
        out_dev="eth0",
        prefix="out ",
        src="198.51.100.10",
        dst="192.0.2.7",
        sport=22,
        dport=40000,
        ipid=999,
        tcp_flags=flags,
    )
    return packets(syn, ev(answer, "OUTPUT"))


def test_a_log_line_at_input_alone_is_not_delivery():
    # The lab's reproduction of "Docker bypasses UFW" (tests/test_lab_public.py): a LOG rule at the top
    # of filter INPUT logged SYNs that ufw's INPUT policy then dropped; they were called "delivered".
    [p] = packets(ev(rec("eth0", prefix="in "), "INPUT"))
    assert p.verdict.code == VerdictCode.LAST_SEEN
    assert "not what the rest of the chain did" in p.verdict.explanation
    assert "No ruleset snapshot shows the rules after the logging rule in filter INPUT" in p.verdict.explanation


def test_a_request_the_host_answered_was_delivered():
    syn, synack = _syn_and_answer(("ACK", "SYN"))
    assert synack.role == "reply" and synack.path == "local-out"
    assert syn.verdict.code == VerdictCode.DELIVERED_LOCAL
    assert syn.verdict.evidence == f"answered by p2 from the host ({synack.hops[0].event.record.ref})"


def test_a_reset_does_not_show_delivery():
    # A REJECT rule in INPUT answers with a RST (ipt_REJECT.c) before the packet is delivered.
    syn, rst = _syn_and_answer(("ACK", "RST"))
    assert rst.role == "reply" and syn.verdict.code == VerdictCode.LAST_SEEN
