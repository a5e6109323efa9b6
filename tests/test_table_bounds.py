"""What a node's route table costs it. The table's byte bound (tuning.MAX_ROUTE_BYTES) in the
router alone: what it holds is counted as routes come and go, so a table that filled takes new
routes again once they leave. The replay of the table to a new peer over real loopback TCP: paced
by what the peer reads, so a peer that reads nothing holds back at most SEND_BUFFER_MAX. Expiry
a slice of the table at a time. The end-to-end test of a member announcing huge names is in
test_e2e_hostile.py."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import cast

import pytest

from smolmesh import Node, _core, tuning
from smolmesh import router as router_module
from smolmesh.links.tcp import TcpLink
from smolmesh.router import Link, Router, now_ms

KEY = "table bounds key"


class _Peer:
    """All the router reads of a link whose routes come and go here."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.silent = False
        self.returns_announcements = False


def announce(router: Router, link: _Peer, names: list[bytes]) -> None:
    timestamp = now_ms()
    rows = [
        (_core.CMD_NAME, timestamp, name, _core.make_packet(timestamp, _core.CMD_NAME, name))
        for name in names
    ]
    router.on_triaged(cast(Link, link), rows)


def test_held_bytes_are_counted_as_routes_come_and_go(caplog: pytest.LogCaptureFixture) -> None:
    router = Router([], lambda packets: None)
    size = 60_000
    held = 2 * size + _core.HEADER_LEN  # the announcement and the name
    fits = tuning.MAX_ROUTE_BYTES // held
    first, second = _Peer("first"), _Peer("second")
    with caplog.at_level(logging.WARNING, logger="smolmesh.router"):
        announce(router, first, [b"%06d" % n + b"a" * (size - 6) for n in range(fits + 20)])
    assert len(router.routes) == fits
    assert router.route_bytes == fits * held
    assert [r.getMessage() for r in caplog.records if "table full" in r.getMessage()]

    router.link_down(cast(Link, first))  # every route it brought goes, with its bytes
    assert not router.routes and router.route_bytes == 0
    announce(router, second, [b"short name", b"another"])
    assert len(router.routes) == 2
    assert router.route_bytes == 2 * _core.HEADER_LEN + 2 * len(b"short name" + b"another")


def test_a_full_table_counts_what_it_ignores_and_warns_again_while_it_goes_on(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first address ignored is warned of at once; more within TABLE_FULL_LOG_PERIOD_S are
    only counted, and the next warning says how many. So a table that filled, drained and filled
    again is told of again (it was once per run), and the status counts every one."""
    monkeypatch.setattr(tuning, "MAX_ROUTES", 4)
    monkeypatch.setattr(tuning, "TABLE_FULL_LOG_PERIOD_S", 0.2)
    router = Router([], lambda packets: None)
    peer = _Peer("peer")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if "table full" in r.getMessage()]

    with caplog.at_level(logging.WARNING, logger="smolmesh.router"):
        announce(router, peer, [b"node %d" % n for n in range(7)])
        assert len(router.routes) == 4 and router.routes_refused == 3
        assert len(warnings()) == 1 and warnings()[0].endswith("ignoring new ones")
        announce(router, peer, [b"node 7"])  # within the period: counted, not logged
        assert router.routes_refused == 4 and len(warnings()) == 1

        router.link_down(cast(Link, peer))  # the table drains ...
        assert not router.routes
        time.sleep(0.3)
        announce(router, peer, [b"again %d" % n for n in range(6)])  # ... and fills again
    assert len(router.routes) == 4 and router.routes_refused == 6
    assert len(warnings()) == 2
    # The two the first batch went on to refuse, node 7, and the first of these.
    assert "4 new addresses ignored in 0." in warnings()[1]


def test_names_heard_again_are_not_derived_again_in_a_mesh_of_thousands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name's address costs 50 µs to derive, and every name comes by again every 5-10 s over
    each link. The cache held 4096 names: in a mesh of more, each came back after it had been
    pushed out, and every announcement cost a derivation. It holds as many as the table now."""
    router_module._SHORT_NAMES.clear()
    derived: list[bytes] = []
    one, many = _core.name_to_ipv6, _core.names_to_ipv6

    def counting_one(name: bytes) -> bytes:
        derived.append(name)
        return one(name)

    def counting_many(names: list[bytes]) -> list[bytes]:
        derived.extend(names)
        return many(names)

    monkeypatch.setattr(router_module._core, "name_to_ipv6", counting_one)
    monkeypatch.setattr(router_module._core, "names_to_ipv6", counting_many)
    router = Router([], lambda packets: None)
    names = [b"mesh-node-%05d" % n for n in range(6000)]
    announce(router, _Peer("first"), names)
    assert len(derived) == len(names)
    time.sleep(0.002)  # newer announcements of the same names, over another link too
    announce(router, _Peer("second"), names)
    announce(router, _Peer("first"), names)
    assert len(derived) == len(names)
    router_module._SHORT_NAMES.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_table_is_replayed_as_fast_as_the_peer_reads() -> None:
    """A node holding 8 MB of announcements (130 names of 60,000 bytes) that gains a peer which
    reads nothing queues the high mark and one slice for it, 2.3 MB (it queued the 5 MB the
    kernel did not take), while a peer that reads learns every route."""
    names = [b"%06d" % n + b"r" * 59_994 for n in range(130)]

    async def scenario() -> tuple[int, int]:
        port = free_port()
        listen = {"type": "legacy_tcp_listen", "port": port, "keys": [KEY]}
        node = Node({"node_name": "replaying", "transports": [listen]}, tun=False)
        await node.start()
        announce(node.router, _Peer("an earlier peer"), names)
        assert len(node.router.routes) == len(names)
        loop = asyncio.get_running_loop()
        # A peer that reads nothing, with a small window so that the kernels take little.
        mute = socket.socket()
        mute.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        mute.setblocking(False)
        peer = None
        try:
            await loop.sock_connect(mute, ("127.0.0.1", port))
            await loop.sock_sendall(mute, _core.make_hello(KEY.encode(), os.urandom(_core.IV_LEN)))
            deadline = time.monotonic() + 10
            while not node.router.links and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            (link,) = node.router.links
            await asyncio.sleep(1.0)  # what the kernel takes is taken by now
            queued = cast(TcpLink, link).transport.get_write_buffer_size()

            dial = {"type": "legacy_tcp_connect", "host": "127.0.0.1", "port": port, "key": KEY}
            peer = Node({"node_name": "reading", "transports": [dial]}, tun=False)
            await peer.start()
            deadline = time.monotonic() + 20
            while len(peer.router.routes) <= len(names) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return queued, len(peer.router.routes)
        finally:
            mute.close()
            if peer is not None:
                await peer.stop()
            await node.stop()

    queued, learnt = asyncio.run(scenario())
    assert queued <= tuning.SEND_BUFFER_HIGH + tuning.REPLAY_SLICE_BYTES, queued
    assert learnt == len(names) + 1  # and the node's own address


def test_routes_expire_a_slice_of_the_table_at_a_time() -> None:
    """A route not announced for ROUTE_TTL_S goes, and so does a backup path; each call of
    `expire` (once a second) looks at EXPIRE_SLICE_ROUTES routes only, so that a full table does
    not hold up packets (all 65,536 at once took 0.1 s)."""
    router = Router([], lambda packets: None)
    first, second = _Peer("first"), _Peer("second")
    count = 2 * tuning.EXPIRE_SLICE_ROUTES + 100
    addresses = [b"\xfd" + n.to_bytes(15, "big") for n in range(count)]
    timestamp = now_ms()
    packets = [_core.make_packet(timestamp, _core.CMD_IPV6, a) for a in addresses]
    rows = [(_core.CMD_IPV6, timestamp, a, p) for a, p in zip(addresses, packets, strict=True)]
    router.on_triaged(cast(Link, first), rows)
    heard_first = time.monotonic()
    time.sleep(0.2)
    kept = addresses[-1]
    router.on_triaged(cast(Link, second), [(_core.CMD_IPV6, now_ms(), kept, None)])  # a backup
    heard_second = time.monotonic()
    assert len(router.routes[kept].paths) == 2

    for _ in range(3):  # within the TTL: nothing goes
        router.expire(now=heard_first + tuning.ROUTE_TTL_S - 1)
    assert len(router.routes) == count

    left = []
    for _ in range(3):  # past it for the first link's paths, not yet for the second's
        router.expire(now=heard_second + tuning.ROUTE_TTL_S - 0.1)
        left.append(len(router.routes))
    slice_ = tuning.EXPIRE_SLICE_ROUTES
    assert left == [count - slice_, count - 2 * slice_, 1], left
    assert list(router.routes[kept].paths) == [second]
    assert router.route_bytes == len(router.routes[kept].announcement)


def test_many_routes_at_once_log_a_line_each_for_the_first_and_count_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """100 routes learnt in one batch, then a link carrying them (60 with a backup path) goes
    down: each time a line each for the first ROUTE_LINES_PER_EVENT routes, then one line that
    counts the rest; every route is still learnt, then moves or goes."""
    router = Router([], lambda packets: None)
    first, second = _Peer("first"), _Peer("second")
    addresses = [b"\xfd" + n.to_bytes(15, "big") for n in range(100)]
    timestamp = now_ms()
    packets = [_core.make_packet(timestamp, _core.CMD_IPV6, a) for a in addresses]
    with caplog.at_level(logging.INFO, logger="smolmesh.router"):
        router.on_triaged(
            cast(Link, first),
            [(_core.CMD_IPV6, timestamp, a, p) for a, p in zip(addresses, packets, strict=True)],
        )
    lines = [record.getMessage() for record in caplog.records]
    assert len([line for line in lines if " learnt via first" in line]) == 16, lines
    assert lines[-1] == "84 more routes learnt or changed via first (a line each for the first 16)"
    assert len(router.routes) == 100
    router.on_triaged(
        cast(Link, second), [(_core.CMD_IPV6, timestamp, a, None) for a in addresses[:60]]
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="smolmesh.router"):
        router.link_down(cast(Link, first))
    lines = [record.getMessage() for record in caplog.records]
    each = [line for line in lines if line.startswith("route to ")]
    assert len(each) == tuning.ROUTE_LINES_PER_EVENT, lines
    counted = [line for line in lines if "more routes moved or lost" in line]
    assert counted == [
        f"link first went down: {100 - tuning.ROUTE_LINES_PER_EVENT} more routes moved or lost"
        f" (60 moved and 40 lost in all; a line each for the first"
        f" {tuning.ROUTE_LINES_PER_EVENT})"
    ]
    assert sorted(router.routes) == sorted(addresses[:60])
    assert all(route.link is second for route in router.routes.values())
