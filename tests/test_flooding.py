"""What a node floods on: news only.

The duplicate filter remembers the last 16,384 packets (PROTOCOL.md section 3). In a mesh of more
addresses than that, a copy of an announcement that arrives late (over a longer path, or replayed
to a link that came up) has been forgotten and passes as new. smolmesh2 floods it on again, so one
link coming up made every node flood the whole table once more. smolmesh floods an announcement
only when it is news to its route table: a new address, or newer than the announcement it holds.
The router rules first, then a ring of nodes over real loopback TCP whose filters are made small
so that a table of a few thousand routes overflows them.
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

from smolmesh import Node, _core
from smolmesh.router import Link, Router
from test_e2e_failover import FakeLink
from test_mesh_inprocess import free_ports, node_config, wait_for
from test_table_bounds import announce


def test_a_copy_the_filter_forgot_is_not_flooded_again_and_news_is() -> None:
    router = Router([_core.name_to_ipv6(b"me")], lambda packets: None)
    a, b, c = FakeLink("a"), FakeLink("b"), FakeLink("c")
    for link in (a, b, c):
        router.link_up(cast(Link, link))
    now = int(time.time() * 1000)
    first, newer = (_core.make_packet(now + age, _core.CMD_NAME, b"x") for age in (0, 1))

    def arrive(link: FakeLink, packet: bytes) -> None:
        # As the link hands it on when the filter has no memory of it (triage's row for a new
        # packet), whatever the node's own filter says.
        key = _core.parse_header(packet)
        assert key is not None
        router.on_triaged(cast(Link, link), [(_core.CMD_NAME, key[0], b"x", packet)])

    arrive(a, first)  # a new address: flooded to the other links
    assert (a.sent, b.sent, c.sent) == ([], [first], [first])
    arrive(b, first)  # the same announcement again, forgotten by the filter: a backup path only
    arrive(c, first)
    assert (a.sent, b.sent, c.sent) == ([], [first], [first])
    assert set(router.routes[_core.name_to_ipv6(b"x")].paths) == {a, b, c}
    arrive(c, newer)  # news: flooded, and the route follows it
    assert (a.sent, b.sent) == ([newer], [first, newer])
    assert router.routes[_core.name_to_ipv6(b"x")].link is c

    own = _core.make_packet(now, _core.CMD_NAME, b"me")
    router.announce([own])
    before = [len(link.sent) for link in (a, b, c)]
    router.seen = _core.DuplicateFilter()  # the filter forgets it ...
    arrive_own = _core.triage([own], now, router.seen)
    router.on_triaged(cast(Link, a), arrive_own)  # ... and a copy comes back around
    assert [len(link.sent) for link in (a, b, c)] == before


ROUTES = 3000  # announced into the ring; each node's filter holds FILTER_CAPACITY packets
FILTER_CAPACITY = 512
FRAMING = 18  # bytes a legacy_tcp frame adds to its packet: the length and the MAC


def test_a_link_coming_back_up_costs_the_mesh_its_replay_and_no_more() -> None:
    """A ring of four nodes knows 3000 routes, more than the filters (shrunk to 512) hold. One
    link goes down and comes back up: its two ends send each other the table, 6000
    announcements, and that is all the ring sends. Before, every node flooded the replayed
    copies on, as new: the ring sent more than three times that (11.3 MB against 3.4 for a
    table of 40,000 routes, and with these small filters the copies went round the ring until
    their timestamps were 3 minutes old: 401 MB in the 15 s the test waited)."""

    def bytes_sent(nodes: list[Node], links: set[Link]) -> int:
        for node in nodes:
            links.update(node.router.links)  # a link that went down keeps its counts
        return sum(link.bytes_sent for link in links)

    async def scenario() -> tuple[int, int]:
        ports = free_ports(4)
        nodes = [Node(node_config(i, ports[i], [ports[(i + 1) % 4]])) for i in range(4)]
        links: set[Link] = set()
        try:
            for node in nodes:
                node.router.seen = _core.DuplicateFilter(FILTER_CAPACITY)
                await node.start()
            await wait_for(lambda: all(len(node.router.links) == 2 for node in nodes), 20)
            names = [b"ring-route-%05d" % n for n in range(ROUTES)]
            announce(nodes[0].router, FakeLink("member"), names)
            await wait_for(lambda: all(len(n.router.routes) >= ROUTES for n in nodes), 30)
            await asyncio.sleep(0.5)  # the last copies go round

            before = bytes_sent(nodes, links)
            flapped = nodes[1].router.links[0]
            replay = sum(len(r.announcement) + FRAMING for r in nodes[1].router.routes.values())
            flapped.close("the test takes it down")
            await wait_for(lambda: len(nodes[1].router.links) == 1, 5)
            # Its dialling end redials within 5-10 s; the table goes both ways, then the floods
            # it set off would follow within a second.
            await wait_for(lambda: all(len(node.router.links) == 2 for node in nodes), 15)
            settled = bytes_sent(nodes, links)
            for _ in range(30):  # until nothing more is sent for 0.5 s, at most 15 s
                await asyncio.sleep(0.5)
                now = bytes_sent(nodes, links)
                if now == settled:
                    break
                settled = now
            return settled - before, replay
        finally:
            for node in nodes:
                await node.stop()

    sent, replay = asyncio.run(scenario())
    print(
        f"\nflooding: a link back up cost the ring {sent} bytes, {sent / replay:.2f} times"
        f" one replay ({replay} bytes)"
    )
    # Two replays (plus the handshakes and the nodes' own announcements meanwhile).
    assert 2 * replay <= sent < 2.5 * replay, (sent, replay)
