"""Failover in a diamond of real nodes linked by secure_tcp, smolmesh's own link: A links to B
and C, both link to D. A continuous ping from A to D must come back quickly when the middle node
carrying it is killed, when the link to it goes silent (every packet dropped, no FIN or RST), and
when it is stopped while its kernel still acknowledges (SIGSTOP).
A line of three (legacy_tcp links) must ride out a short cut
without losing a route; the kernel's view of a silent peer (TCP_INFO) is read through a real cut;
and the router's rules for both are unit-tested with links that only record what they are sent."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from netns import Lab, Proc, tcp_connect, tcp_listen, wait_until
from smolmesh import _core
from smolmesh.router import Router
from test_e2e_kit import (
    KEY,
    PORT,
    PingStream,
    log_lines,
    node_address,
    route_via,
    start_node,
    wait_route,
    wait_up,
)

KILL_GAP_LIMIT = 2.0  # seconds without replies allowed when the carrying node is SIGKILLed
CUT_GAP_LIMIT = 2.0  # ... when the link carrying the pings silently drops everything
STOP_GAP_LIMIT = 2.0  # ... when the carrying node is stopped (SIGSTOP), its kernel acknowledging
PERIOD_S = 10.5  # a node announces itself every 5-10 s
# Node names by corner of the diamond. Status sockets are /run/smolmesh/<node name>.sock, one
# directory for every namespace: the names carry the PID so that concurrent runs never share one.
NAMES = {corner: f"diamond-{corner}-{os.getpid()}" for corner in "abcd"}


def wait_links(proc: Proc, count: int, since: float = 0.0, timeout: float = 20.0) -> None:
    """Wait until the node logged `count` links up after time `since`."""
    deadline = time.monotonic() + timeout
    while len([t for t, _ in log_lines(proc, r"^link \S+ up") if t >= since]) < count:
        assert time.monotonic() < deadline, f"fewer than {count} links up:\n{proc.log()}"
        time.sleep(0.05)


def how_route_left(proc: Proc, name: str, since: float) -> str:
    """How the node's route to `name` first changed after time `since`, from its log."""
    lines = log_lines(proc, rf"route to \S+ \({name}\) (moved|changed|lost)(.*)")
    found = next((found for when, found in lines if when >= since), None)
    if found is None:
        return "unchanged"
    if found[1] == "moved":  # "moved to <link> (<why>)"
        return "moved to the backup path: " + found[2].rsplit("(", 1)[-1].rstrip(")")
    return {
        "changed": "changed by a newer announcement over the other path",
        "lost": "lost with the link, relearnt from the next announcement",
    }[found[1]]


class DiamondOfNodes:
    """A links to B and C, both link to D, over secure_tcp; every node runs as its own process."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.ns = {name: lab.namespace() for name in "abcd"}
        # veth k joins A or D (ending in .1) to a middle node (ending in .2).
        self.veths = {
            (end, middle): lab.link(self.ns[end], self.ns[middle])
            for end in "ad"
            for middle in "bc"
        }
        listen = [tcp_listen(PORT, [KEY], "secure_tcp")]
        self.configs = {end: lab.node_config(NAMES[end], listen) for end in "ad"}
        for middle in "bc":
            dials = [
                tcp_connect(self.veths[end, middle].ipv4_a, PORT, KEY, "secure_tcp") for end in "ad"
            ]
            self.configs[middle] = lab.node_config(NAMES[middle], dials)
        self.nodes: dict[str, Proc] = {}
        for name in "adbc":  # the listeners first, so that nobody waits 5-10 s to redial
            self.nodes[name] = start_node(lab, self.ns[name], self.configs[name])
            wait_up(self.nodes[name])
        wait_links(self.nodes["a"], 2)
        wait_links(self.nodes["d"], 2)

    def carrier(self) -> str:
        """The middle node A's route to D goes through, from A's log."""
        via = route_via(self.nodes["a"], NAMES["d"])
        assert via, self.nodes["a"].log()
        host = via.rsplit(":", 1)[0]
        return next(mid for mid in "bc" if self.veths["a", mid].ipv4_b == host)

    def ping_a_to_d(self) -> PingStream:
        """A ping from A to D every 0.1 s, once it answers."""
        wait_route(self.nodes["a"], NAMES["d"])  # ping gives up at once on an unrouted address
        pings = PingStream(self.lab, self.ns["a"], node_address(NAMES["d"]), "ping-a-d", 0.1)
        assert pings.wait_replies(20, timeout=20), pings.proc.log()
        return pings


def test_diamond_pings_survive_a_killed_middle_node_and_a_silently_cut_link(tmp_path) -> None:
    with Lab(tmp_path) as lab:
        diamond = DiamondOfNodes(lab)
        ns, veths, nodes, configs = diamond.ns, diamond.veths, diamond.nodes, diamond.configs
        carrier = diamond.carrier
        pings = diamond.ping_a_to_d()

        # 1. SIGKILL the middle node that carries the pings: its sockets close with it.
        victim = carrier()
        killed_at = time.time()
        nodes[victim].signal(signal.SIGKILL)
        assert pings.wait_replies(10, timeout=10), "no replies after the kill"
        kill_gap = pings.gap_around(killed_at)
        assert carrier() != victim, nodes["a"].log()
        # A moves its route to D to a backup path at once, when it heard D's last announcement
        # over both middle nodes; else it relearns D from D's announcement 0.2 s after D lost
        # its link (a busy middle node may forward a copy after A's, so A hears it over one).
        kill_how = how_route_left(nodes["a"], NAMES["d"], killed_at)
        assert not nodes[victim].alive

        # Restore it, and wait until A and D have heard D's and A's announcements over it again.
        restarted_at = time.time()
        nodes[victim] = start_node(lab, ns[victim], configs[victim], tag=f"{victim}-restarted")
        wait_up(nodes[victim])
        wait_links(nodes["a"], 1, since=restarted_at)
        wait_links(nodes["d"], 1, since=restarted_at)
        # A new link makes both its ends announce themselves 0.2 s later, all at once, and under
        # load a middle node may then forward D's announcement only after A's copy reached it,
        # leaving A without a backup path. One periodic round of D (every 5-10 s) settles it.
        time.sleep(PERIOD_S)
        assert pings.wait_replies(10, timeout=10)

        # 2. Cut the link from A to the carrying middle node silently, in both directions.
        middle = carrier()
        veth = veths["a", middle]
        cut_at = time.time()
        lab.cut_arrivals(veth.ns_a, veth.dev_a)
        lab.cut_arrivals(veth.ns_b, veth.dev_b)
        assert pings.wait_replies(10, timeout=15), "no replies after the cut"
        cut_gap = pings.gap_around(cut_at)
        pings.stop()
        # A leaves the dead link once it has gone half a second without an acknowledgement
        # (Router.link_silent), or earlier when D's next announcement happens to arrive over the
        # other middle node first.
        assert carrier() != middle, nodes["a"].log()
        cut_how = how_route_left(nodes["a"], NAMES["d"], cut_at)
        silent = [when for when, _ in log_lines(nodes["a"], "acknowledged nothing .*: silent")]
        assert any(when >= cut_at for when in silent), nodes["a"].log()

        print(
            f"\ndiamond: SIGKILL of {victim}: ping gap {kill_gap:.2f} s (A's route to D"
            f" {kill_how});\n  silent cut of A-{middle}: ping gap {cut_gap:.2f} s ({cut_how})"
        )
        assert kill_gap is not None and kill_gap < KILL_GAP_LIMIT
        assert cut_gap is not None and cut_gap < CUT_GAP_LIMIT
        assert all(nodes[name].alive for name in "ad")


def test_diamond_pings_survive_a_stopped_middle_node(tmp_path) -> None:
    """The middle node carrying the pings is stopped (SIGSTOP): its kernel goes on acknowledging,
    so TCP shows nothing wrong, and the routes through it would stay until D's next announcement
    came over the other middle node first (up to 10 s). A and D, sending to it, ask it for an echo
    (docs/SECURE_TCP.md section 4), get none, and route around it within about a second."""
    with Lab(tmp_path) as lab:
        diamond = DiamondOfNodes(lab)
        pings = diamond.ping_a_to_d()
        victim = diamond.carrier()
        stopped_at = time.time()
        diamond.nodes[victim].signal(signal.SIGSTOP)
        try:
            assert pings.wait_replies(10, timeout=15), "no replies after the stop"
            gap = pings.gap_around(stopped_at)
            assert diamond.carrier() != victim, diamond.nodes["a"].log()
            how = how_route_left(diamond.nodes["a"], NAMES["d"], stopped_at)
            silent = [
                when
                for when, _ in log_lines(diamond.nodes["a"], r"answered no echo .*: silent")
                if when >= stopped_at
            ]
        finally:
            diamond.nodes[victim].signal(signal.SIGCONT)
        pings.stop()
        assert gap is not None
        print(f"\ndiamond: SIGSTOP of {victim}: ping gap {gap:.2f} s (A's route to D {how})")
        assert silent, diamond.nodes["a"].log()
        assert gap < STOP_GAP_LIMIT
        assert all(diamond.nodes[name].alive for name in "abcd")


def test_a_line_rides_out_a_short_cut_without_losing_its_routes(tmp_path) -> None:
    """A - B - C, no other path anywhere. The link from B to C is cut on the wire until B finds
    it silent (about 0.8 s), then healed, well before the kernel's 3-s timeout: the pings from A
    to C sent meanwhile wait in B's link and come back once it heals, and no node loses a route."""
    names = {corner: f"line-{corner}-{os.getpid()}" for corner in "abc"}
    with Lab(tmp_path) as lab:
        ns = {corner: lab.namespace() for corner in "abc"}
        veths = {end: lab.link(ns[end], ns["b"]) for end in "ac"}  # the ends are the .1 sides
        nodes = {
            end: start_node(lab, ns[end], lab.node_config(names[end], [tcp_listen(PORT, [KEY])]))
            for end in "ac"
        }
        for end in "ac":
            wait_up(nodes[end])
        dials = [tcp_connect(veths[end].ipv4_a, PORT, KEY) for end in "ac"]
        nodes["b"] = start_node(lab, ns["b"], lab.node_config(names["b"], dials))
        wait_route(nodes["a"], names["c"])
        wait_route(nodes["c"], names["a"])
        pings = PingStream(lab, ns["a"], node_address(names["c"]), "ping-a-c", interval=0.1)
        assert pings.wait_replies(10, timeout=20), pings.proc.log()

        veth = veths["c"]
        cut_at = time.time()
        lab.cut_arrivals(veth.ns_a, veth.dev_a)
        lab.cut_arrivals(veth.ns_b, veth.dev_b)

        def b_found_it_silent() -> bool:
            lines = log_lines(nodes["b"], "acknowledged nothing .*: silent")
            return any(when >= cut_at for when, _ in lines)

        silent = wait_until(b_found_it_silent, timeout=2.0, interval=0.05)
        cut_for = time.time() - cut_at
        lab.cut_arrivals(veth.ns_a, veth.dev_a, cut=False)  # well before the kernel's 3 s
        lab.cut_arrivals(veth.ns_b, veth.dev_b, cut=False)
        assert pings.wait_replies(10, timeout=10), "no replies after the cut healed"
        gap = pings.gap_around(cut_at)
        pings.stop()

        lost = {
            corner: [
                when for when, _ in log_lines(nodes[corner], r"route to .* lost") if when >= cut_at
            ]
            for corner in "abc"
        }
        print(f"\nline: B-C cut for {cut_for:.2f} s, B found the link silent: ping gap {gap:.2f} s")
        assert silent, nodes["b"].log()
        assert not any(lost.values()), lost
        assert all(nodes[corner].alive for corner in "abc")
        assert gap is not None and gap < 3.0


# Runs inside a namespace of its own: a TCP connection over its loopback goes silent, and heals,
# twice: cut on the wire (packets leave and never arrive) and by the lab's loss (packets may fail to
# leave), while `silence_of` reads the sender's socket. Prints, per way: [silence while the peer
# answered, seconds from the cut until silent, the silence then, seconds from healing to answers].
SILENCE_PROBE = r"""
import json, socket, sys, time
sys.path.insert(0, sys.argv[1])
from netns import cut_arrivals, set_loss
from smolmesh.links.tcp import silence_of, tcp_info

def first(predicate, within):
    start = time.monotonic()
    while time.monotonic() - start < within:
        if predicate():
            return round(time.monotonic() - start, 3)
        time.sleep(0.01)
    return None

server = socket.create_server(("127.0.0.1", 0))
sender = socket.create_connection(server.getsockname())
receiver, _ = server.accept()
results = []
for cut in (lambda on: cut_arrivals(None, "lo", on), lambda on: set_loss(None, "lo", 100 * on)):
    sender.sendall(b"x" * 1000)
    receiver.recv(4096)
    time.sleep(0.3)
    answering = silence_of(tcp_info(sender))
    cut(True)
    sender.sendall(b"y" * 1000)
    silent_after = first(lambda: silence_of(tcp_info(sender)) is not None, 3)
    silence = silence_of(tcp_info(sender))
    cut(False)
    answers_after = first(lambda: silence_of(tcp_info(sender)) is None, 8)
    receiver.recv(4096)
    results.append([answering, silent_after, silence, answers_after])
print(json.dumps(results))
"""


def test_the_kernel_shows_a_peer_that_stopped_acknowledging(tmp_path) -> None:
    """`silence_of` the socket's TCP_INFO: nothing while the peer acknowledges; once the path drops
    every packet, the silence within a second or so (a retransmission timeout and 0.5 s without
    an acknowledgement); nothing again once the path heals and the peer acknowledges."""
    with Lab(tmp_path) as lab:
        ns = lab.namespace()
        tests = str(Path(__file__).parent)
        done = lab.run(ns, [sys.executable, "-c", SILENCE_PROBE, tests], timeout=40)
        for way, (answering, silent_after, silence, answers_after) in zip(
            ("cut on the wire", "lab loss"), json.loads(done.stdout), strict=True
        ):
            print(
                f"\n{way}: silent {silent_after} s after the cut, answers {answers_after} s after"
            )
            assert answering is None, way
            # Silence counts from the last acknowledgement, 0.3 s before the cut.
            assert silent_after is not None and silent_after <= 1.5, way
            assert silence is not None and silence >= 0.5, way
            assert answers_after is not None, way


class FakeLink:
    """A link that records what the router sends over it."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.sent: list[bytes] = []
        self.returns_announcements = False
        self.silent = False
        self.congested_since: float | None = None  # it takes everything at once

    def send_packets(self, packets: list[bytes], *, control: bool = False) -> None:
        self.sent.extend(packets)

    def send_data(self, ip_packets: list[bytes], timestamp_ms: int, skip: int = 0) -> None:
        self.sent.extend(
            _core.make_packet(timestamp_ms, _core.CMD_DATA, p[skip:]) for p in ip_packets
        )


def test_router_detours_a_packet_sent_back_over_its_own_route() -> None:
    """What the diamond above can run into: B's route to D runs through A (A's copy of D's newer
    announcement reached B first) while A's runs through B (A's link to C went down). A packet
    from A to D then reaches B over the link B's route points to; B sends it on over its backup
    path, straight to D, instead of back to A, which would drop it as a duplicate, and its route
    to D leaves A for good."""
    router = Router([node_address_bytes("b")], lambda packets: None)
    to_a, to_d = FakeLink("a"), FakeLink("d")
    router.link_up(to_a)
    router.link_up(to_d)
    now = int(time.time() * 1000)
    older, newer = (_core.make_packet(now - age, _core.CMD_NAME, b"d") for age in (5000, 0))
    router.on_packets(to_d, [older])
    router.on_packets(to_a, [newer])  # first copy of the newer announcement: via A
    router.on_packets(to_d, [newer])  # its duplicate: D is a backup path
    assert router.routes[node_address_bytes("d")].link is to_a
    to_a.sent.clear()
    to_d.sent.clear()
    ipv6 = bytes([0x60]) + bytes(23) + node_address_bytes("d")  # a header up to the destination
    data = _core.make_packet(now, _core.CMD_DATA, ipv6)
    router.on_packets(to_a, [data])
    assert to_d.sent == [data] and to_a.sent == []
    assert router.routes[node_address_bytes("d")].link is to_d
    assert to_a not in router.routes[node_address_bytes("d")].paths


class Smolmesh2Echo:
    """Node M between two smolmesh2 nodes, L - M - R, as the router of M sees them.

    smolmesh2 floods every announcement to every link, the one it came from included, so R sends
    each of L's announcements that M forwards to it straight back: M takes R for a backup path to
    L, although R reaches L only through M."""

    def __init__(self) -> None:
        self.changes: list[tuple[bytes, object]] = []
        self.router = Router(
            [node_address_bytes("m")],
            lambda packets: None,
            lambda address, link: self.changes.append((address, link)),
        )
        self.to_l, self.to_r, self.to_x = FakeLink("l"), FakeLink("r"), FakeLink("x")
        for link in (self.to_l, self.to_r, self.to_x):
            self.router.link_up(link)
        self.now = int(time.time() * 1000)
        self.l_address = node_address_bytes("l")
        announcement = _core.make_packet(self.now, _core.CMD_NAME, b"l")
        self.router.on_packets(self.to_l, [announcement])
        assert self.to_r.sent == [announcement]  # M floods it on ...
        self.router.on_packets(self.to_r, [announcement])  # ... and R sends it back
        route = self.router.routes[self.l_address]
        assert route.link is self.to_l and self.to_r in route.paths  # the "backup" via R
        self.router.link_down(self.to_l)  # L dies
        assert self.router.routes[self.l_address].link is self.to_r
        for link in (self.to_r, self.to_x):
            link.sent.clear()
        self.changes.clear()

    def data_for_l(self, offset_ms: int = 0) -> bytes:
        ipv6 = bytes([0x60]) + bytes(23) + self.l_address
        return _core.make_packet(self.now + offset_ms, _core.CMD_DATA, ipv6)


def test_a_route_to_a_smolmesh2_echo_is_dropped_by_the_first_packet_it_returns() -> None:
    """M sends a packet for L to R; R's route to L is M, so R sends it back. M then knows R is
    no path to L and, having no other, drops the route (and the host route with it) at once
    instead of keeping it for the 3 minutes until it expires."""
    echo = Smolmesh2Echo()
    returned = echo.data_for_l()
    echo.router.on_packets(echo.to_r, [returned])
    assert echo.l_address not in echo.router.routes
    assert echo.l_address not in echo.router.next_hop
    assert echo.changes == [(echo.l_address, None)]
    assert echo.to_r.sent == [] and echo.to_x.sent == []


def test_a_relayed_packet_that_comes_back_as_a_duplicate_also_drops_the_route() -> None:
    """X sends a packet for L through M, which forwards it to R; R returns it. M has seen it, so
    it does not forward it again, but the repeat still shows that R routes L through M."""
    echo = Smolmesh2Echo()
    relayed = echo.data_for_l(offset_ms=1)
    echo.router.on_packets(echo.to_x, [relayed])
    assert echo.to_r.sent == [relayed]
    echo.router.on_packets(echo.to_r, [relayed])
    assert echo.l_address not in echo.router.routes
    assert echo.to_r.sent == [relayed] and echo.to_x.sent == []


def test_a_link_that_sends_our_probe_back_is_marked_and_one_a_copy_comes_round_is_not() -> None:
    """With its announcement M sends each link its own probe, an older copy of its name
    announcement. R, like every smolmesh2 node, sends what it gets straight back: `smolmesh
    status` shows that link as one whose copies prove no second path, and it gets no more
    probes. X sends back a copy of M's announcement itself, as a cycle of smolmesh nodes does
    (the copy came round from the far side), and the probe X got went nowhere: X is not marked."""
    echo = Smolmesh2Echo()
    own = _core.make_packet(echo.now, _core.CMD_NAME, b"m")
    echo.router.announce([own])
    assert echo.to_r.sent[0] == own and echo.to_x.sent[0] == own
    probe_r, probe_x = echo.to_r.sent[1], echo.to_x.sent[1]
    assert len(echo.to_r.sent) == len(echo.to_x.sent) == 2 and probe_r != probe_x
    for probe in (probe_r, probe_x):  # the same name, a little older than the announcement
        assert probe[_core.HEADER_LEN :] == b"m"
        assert echo.now - 10 < _core.parse_header(probe)[0] < echo.now  # type: ignore[index]
    echo.router.on_packets(echo.to_x, [own])
    echo.router.on_packets(echo.to_r, [own, probe_r])
    assert echo.to_r.returns_announcements is True
    assert echo.to_x.returns_announcements is False
    assert node_address_bytes("m") not in echo.router.routes

    echo.router.announce([_core.make_packet(echo.now + 1, _core.CMD_NAME, b"m")])
    assert len(echo.to_r.sent) == 3 and len(echo.to_x.sent) == 4  # X alone is probed again


def test_a_duplicate_data_packet_from_elsewhere_leaves_the_route_alone() -> None:
    """A repeat that arrives over any other link than the route's says nothing about the route."""
    echo = Smolmesh2Echo()
    relayed = echo.data_for_l(offset_ms=2)
    echo.router.on_packets(echo.to_x, [relayed])
    echo.router.on_packets(echo.to_x, [relayed])
    assert echo.router.routes[echo.l_address].link is echo.to_r
    assert echo.to_r.sent == [relayed]


class Diamond:
    """Node A of the diamond, as its router sees it: D heard over B first, over C as a backup."""

    def __init__(self) -> None:
        self.router = Router([node_address_bytes("a")], lambda packets: None)
        self.to_b, self.to_c = FakeLink("b"), FakeLink("c")
        self.router.link_up(self.to_b)
        self.router.link_up(self.to_c)
        self.now = int(time.time() * 1000)
        self.d = node_address_bytes("d")
        self.hear(0)

    def hear(self, offset_ms: int, *, first: str = "b") -> None:
        """A copy of D's announcement stamped `offset_ms` later, over `first`, then the other."""
        announcement = _core.make_packet(self.now + offset_ms, _core.CMD_NAME, b"d")
        links = [self.to_b, self.to_c] if first == "b" else [self.to_c, self.to_b]
        for link in links:
            self.router.on_packets(link, [announcement])

    def via(self) -> FakeLink:
        link = self.router.next_hop[self.d]
        assert isinstance(link, FakeLink) and self.router.routes[self.d].link is link
        return link


def test_a_silent_link_gives_its_routes_to_the_backup_and_takes_none_until_it_answers() -> None:
    """B stops acknowledging: A's route to D moves to C at once. While B stays silent, even the
    first copy of D's next announcement over B leaves the route on C; once B answers again, the
    next announcement whose copy comes over B first takes the route back (the fastest path)."""
    diamond = Diamond()
    assert diamond.via() is diamond.to_b
    diamond.router.link_silent(diamond.to_b, 0.6)
    assert diamond.to_b.silent and diamond.via() is diamond.to_c
    diamond.hear(5000, first="b")
    assert diamond.via() is diamond.to_c
    diamond.router.link_silent(diamond.to_b, None)
    assert not diamond.to_b.silent and diamond.via() is diamond.to_c
    diamond.hear(10000, first="b")
    assert diamond.via() is diamond.to_b


def test_a_route_with_no_other_path_stays_on_its_silent_link_until_one_is_heard() -> None:
    """D was heard over B alone: the route stays on B when B falls silent (it may recover); a copy
    of D's announcement over C, even an old one, then moves it to C; and if B goes down the route
    goes to C as well."""
    router = Router([node_address_bytes("a")], lambda packets: None)
    to_b, to_c = FakeLink("b"), FakeLink("c")
    router.link_up(to_b)
    router.link_up(to_c)
    d = node_address_bytes("d")
    announcement = _core.make_packet(int(time.time() * 1000), _core.CMD_NAME, b"d")
    router.on_packets(to_b, [announcement])
    router.link_silent(to_b, 0.6)
    assert router.next_hop[d] is to_b
    router.on_packets(to_c, [announcement])  # a duplicate: only proof of a path
    assert router.next_hop[d] is to_c
    router.link_down(to_b)
    assert router.next_hop[d] is to_c and to_b not in router.routes[d].paths


def test_a_failed_route_prefers_a_backup_that_answers_over_a_fresher_silent_one() -> None:
    """Three paths to D: B carries the route, C was heard most recently but is silent, E answers.
    When B goes down the route goes to E."""
    diamond = Diamond()
    to_e = FakeLink("e")
    diamond.router.link_up(to_e)
    announcement = _core.make_packet(diamond.now, _core.CMD_NAME, b"d")
    diamond.router.on_packets(to_e, [announcement])
    diamond.router.on_packets(diamond.to_c, [announcement])  # C: the freshest backup
    diamond.router.link_silent(diamond.to_c, 0.6)
    assert diamond.via() is diamond.to_b
    diamond.router.link_down(diamond.to_b)
    assert diamond.via() is to_e


def test_data_for_a_route_whose_only_path_fell_silent_waits_on_that_link() -> None:
    """In a line D - B - A, B's link to A has gone silent; it is B's one path to A. A packet from
    D for A goes on into that link, where it waits for the link to answer again (a hiccup shorter
    than the kernel's timeout), and does not go back to D, which would take it for a sign that
    its route through B leads back and drop the route (see the smolmesh2 echo tests above)."""
    router = Router([node_address_bytes("b")], lambda packets: None)
    to_a, to_d = FakeLink("a"), FakeLink("d")
    router.link_up(to_a)
    router.link_up(to_d)
    now = int(time.time() * 1000)
    router.on_packets(to_a, [_core.make_packet(now, _core.CMD_NAME, b"a")])
    router.link_silent(to_a, 0.6)
    assert router.next_hop[node_address_bytes("a")] is to_a
    to_a.sent.clear()
    to_d.sent.clear()
    ipv6 = bytes([0x60]) + bytes(23) + node_address_bytes("a")
    data = _core.make_packet(now, _core.CMD_DATA, ipv6)
    router.on_packets(to_d, [data])
    assert to_a.sent == [data] and to_d.sent == []


def node_address_bytes(name: str) -> bytes:
    return _core.name_to_ipv6(name)
