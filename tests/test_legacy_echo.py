"""legacy_tcp has no echo packet, but smolmesh2 sends every announcement back over the link it
came from. So over a link to such a peer, this node's own announcement serves as the echo request
(Node._announce_for_echo): a peer that stops while its kernel acknowledges is found silent within
a few seconds, where only the far end's next announcement (5-10 s) found it before. Real loopback
TCP in one process, with a peer written out by hand that behaves as smolmesh2 does, or as a
smolmesh node over legacy_tcp does (it sends nothing back). The diamond with a stopped smolmesh2
middle node is in test_interop_smolmesh2.py."""

from __future__ import annotations

import asyncio
import os
import time

from smolmesh import Node, _core, tuning
from test_mesh_inprocess import free_ports, node_config
from test_secure_tcp import (
    KEY,
    PEER_NAME,
    StoppablePeer,
    node_linked_to,
    silent_after,
    silent_while_stopped,
    wait_for,
)

# Found silent once quiet (0.25 s), asked (an announcement, at most one a second), unanswered
# (0.5 s after it reached the peer's kernel), with the looks between.
SILENT_WITHIN_S = 3.0
CMD_ANNOUNCEMENTS = (_core.CMD_NAME, _core.CMD_IPV6, _core.CMD_IPV4)


class LegacyPeer(StoppablePeer):
    """A legacy_tcp connector written out by hand: it announces PEER_NAME and, if `returns`,
    sends every announcement it gets back, as smolmesh2 does."""

    def __init__(self, returns: bool) -> None:
        self.returns = returns
        self.announcements = 0  # announcements the node sent it (its probes are not counted)
        self.newest_ms = 0

    async def connect(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        psk, iv = KEY.encode(), os.urandom(_core.IV_LEN)
        self.writer.write(_core.make_hello(psk, iv))
        hello = await asyncio.wait_for(self.reader.readexactly(_core.HELLO_LEN), 5)
        self.sealer, self.opener = _core.Sealer(psk, iv), _core.Opener(psk, hello[: _core.IV_LEN])
        now_ms = time.time_ns() // 1_000_000
        self.writer.write(self.sealer.seal(_core.make_packet(now_ms, _core.CMD_NAME, PEER_NAME)))
        self.task = asyncio.create_task(self._serve())

    async def _serve(self) -> None:
        while data := await self.reader.read(65536):
            for packet in self.opener.feed(data):
                header = _core.parse_header(packet)
                if header is not None and header[1] in CMD_ANNOUNCEMENTS:
                    if header[0] > self.newest_ms:  # a probe is older than what came before it
                        self.announcements += 1
                        self.newest_ms = header[0]
                    if self.returns:
                        self.writer.write(self.sealer.seal(packet))


def test_a_smolmesh2_like_peer_that_stops_is_found_silent_by_its_returned_announcements(
    caplog,
) -> None:
    """While the node sends one way and the peer, alive, sends back only the announcements it
    gets, the link stays up and speaking, at the cost of about one announcement of the node a
    second. Once the peer's process stops, the link is silent within SILENT_WITHIN_S, and
    answers again once the peer runs again."""

    async def scenario() -> tuple[float | None, int]:
        async with node_linked_to(LegacyPeer(returns=True), "legacy_tcp") as (node, peer):
            await wait_for(lambda: node.router.links[0].returns_announcements, 12)
            before = peer.announcements
            assert await silent_after(node, 3.0) is None
            asked = peer.announcements - before
            assert node.status()["echo_announcements"] >= 1
            found = await silent_while_stopped(node, peer, 6.0)
            return found, asked

    with caplog.at_level("INFO", logger="smolmesh"):
        found, asked = asyncio.run(scenario())
    print(f"\nstopped smolmesh2-like peer found silent after {found} s; {asked} announcements"
          " in 3 s of sending one way to it alive")  # fmt: skip
    assert found is not None and found <= SILENT_WITHIN_S, caplog.text
    assert "sent none of our announcements back for" in caplog.text
    assert "answers again" in caplog.text
    assert asked <= 3 / tuning.ECHO_ANNOUNCE_MIN_S + 1, asked


def test_a_peer_that_sends_no_announcements_back_is_not_judged_by_them() -> None:
    """A smolmesh node over legacy_tcp sends nothing back: sending one way to it while it says
    nothing must neither make its link silent nor make the node announce more often."""

    async def scenario() -> tuple[float | None, int]:
        async with node_linked_to(LegacyPeer(returns=False), "legacy_tcp") as (node, peer):
            before = peer.announcements
            found = await silent_after(node, 3.0)
            assert node.status()["echo_announcements"] == 0
            return found, peer.announcements - before

    found, announced = asyncio.run(scenario())
    assert found is None
    assert announced <= 1, announced  # the periodic one (every 5-10 s), at most


def test_in_a_ring_of_smolmesh_nodes_over_legacy_tcp_no_link_is_taken_for_a_returning_one() -> None:
    """Four smolmesh nodes in a ring over legacy_tcp: each node's announcement comes back to it
    round the ring, over a link whose peer sent nothing back. Such a link was marked as one that
    returns announcements, and so judged by them: with one-way traffic over it while the ring was
    slow or broken elsewhere, it could fall silent though its peer ran (seen in one process, where
    a busy node held the copies back). The probes mark no link here."""

    async def scenario() -> list[bool]:
        ports = free_ports(4)
        nodes = [Node(node_config(i, ports[i], [ports[(i + 1) % 4]])) for i in range(4)]
        try:
            for node in nodes:
                await node.start()
            await wait_for(lambda: all(len(node.router.links) == 2 for node in nodes), 20)
            for node in nodes:  # each announcement goes round the ring both ways
                node._announce_now()
                await asyncio.sleep(0.2)
            return [link.returns_announcements for node in nodes for link in node.router.links]
        finally:
            for node in nodes:
                await node.stop()

    marked = asyncio.run(scenario())
    assert marked == [False] * 8
