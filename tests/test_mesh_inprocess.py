"""Many nodes in one event loop, linked over loopback TCP, scripted through the Python API."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import struct
import time
from collections import deque

import pytest

from smolmesh import Node
from smolmesh.control import format_status

KEY = "in-process mesh key"


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; held open together so that they are distinct."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def ipv6_packet(
    source: ipaddress.IPv6Address, destination: ipaddress.IPv6Address, payload: bytes
) -> bytes:
    header = struct.pack("!IHBB", 6 << 28, len(payload), 59, 64)  # next header 59: no next header
    return header + source.packed + destination.packed + payload


def ipv4_packet(source: str, destination: str, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 0, 0, 64, 253, 0)
    return (
        header
        + ipaddress.IPv4Address(source).packed
        + ipaddress.IPv4Address(destination).packed
        + payload
    )


def random_connected_graph(
    count: int, extra_edges: int, rng: random.Random
) -> set[tuple[int, int]]:
    """A random tree over `count` nodes plus `extra_edges` more edges; (a, b) means a dials b."""
    edges = {(i, rng.randrange(i)) for i in range(1, count)}
    while len(edges) < count - 1 + extra_edges:
        a, b = rng.sample(range(count), 2)
        if (a, b) not in edges and (b, a) not in edges:
            edges.add((a, b))
    return edges


def hops_from(start: int, edges: set[tuple[int, int]], count: int) -> list[int]:
    neighbours: list[list[int]] = [[] for _ in range(count)]
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    distance = [-1] * count
    distance[start] = 0
    queue = deque([start])
    while queue:
        here = queue.popleft()
        for there in neighbours[here]:
            if distance[there] < 0:
                distance[there] = distance[here] + 1
                queue.append(there)
    return distance


def node_config(index: int, port: int, dial_ports: list[int]) -> dict:
    transports = [{"type": "legacy_tcp_listen", "port": port, "keys": ["other key", KEY]}]
    transports += [
        {"type": "legacy_tcp_connect", "host": "127.0.0.1", "port": p, "key": KEY}
        for p in dial_ports
    ]
    return {
        "node_name": f"inproc-{index}",
        "linux_tuntap": False,
        "ipv4_addresses": [f"198.18.{index // 250}.{index % 250 + 1}"],
        "transports": transports,
    }


async def wait_for(predicate, timeout: float) -> float:
    """Seconds until predicate() held; fails the test after `timeout`."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def test_thirty_two_nodes_converge_and_carry_packets_across_hops() -> None:
    count = 32
    rng = random.Random(2026)
    edges = random_connected_graph(count, extra_edges=8, rng=rng)
    ports = free_ports(count)
    dials: list[list[int]] = [[] for _ in range(count)]
    for a, b in edges:
        dials[a].append(ports[b])

    async def scenario() -> None:
        nodes = [Node(node_config(i, ports[i], dials[i])) for i in range(count)]
        try:
            for node in nodes:
                await node.start()
            everyone = {node.address for node in nodes} | {
                a for node in nodes for a in node.ipv4_addresses
            }

            def converged() -> bool:
                return all(
                    everyone - set(node.routes) == {node.address, *node.ipv4_addresses}
                    for node in nodes
                )

            seconds = await wait_for(converged, timeout=30)
            print(f"{count} nodes converged in {seconds:.2f} s")

            distance = hops_from(0, edges, count)
            far = max(range(count), key=lambda i: distance[i])
            assert distance[far] >= 3, "the graph should make the packet cross several hops"
            source, target = nodes[0], nodes[far]

            payload = b"across the mesh " * 20
            assert source.send(ipv6_packet(source.address, target.address, payload))
            received = await asyncio.wait_for(target.receive(), 5)
            assert received == ipv6_packet(source.address, target.address, payload)

            packet4 = ipv4_packet(
                str(source.ipv4_addresses[0]), str(target.ipv4_addresses[0]), b"v4"
            )
            assert source.send(packet4)
            assert await asyncio.wait_for(target.receive(), 5) == packet4

            # No route: not sent, and nobody receives it.
            stranger = ipaddress.IPv6Address("fd00::1")
            assert not source.send(ipv6_packet(source.address, stranger, b"lost"))
        finally:
            for node in nodes:
                await node.stop()

    asyncio.run(scenario())


def test_node_api_views_and_context_manager() -> None:
    ports = free_ports(2)

    async def scenario() -> None:
        async with (
            Node(node_config(0, ports[0], []), tun=False) as left,
            Node(node_config(1, ports[1], [ports[0]]), tun=False) as right,
        ):
            await wait_for(lambda: len(left.links) == 1 and len(right.links) == 1, timeout=10)
            await wait_for(lambda: right.address in left.routes, timeout=10)
            route = left.routes[right.address]
            assert route.name == "inproc-1"
            assert left.links[0].outgoing is False and right.links[0].outgoing is True
            assert left.listening_ports == [ports[0]]
            with pytest.raises(TypeError):
                left.routes[right.address] = route  # type: ignore[index]
        assert left.links == [] and right.links == []

    asyncio.run(scenario())


def test_links_report_their_rate_over_the_last_second() -> None:
    ports = free_ports(2)
    payload = bytes(1000)

    async def scenario() -> None:
        async with (
            Node(node_config(0, ports[0], []), tun=False) as left,
            Node(node_config(1, ports[1], [ports[0]]), tun=False) as right,
        ):
            await wait_for(lambda: right.address in left.routes, timeout=10)
            packet = ipv6_packet(left.address, right.address, payload)
            # 200 packets of about 1 kB every 0.1 s for 2.5 s: about 2 MB/s from left to right,
            # so every maintenance second (tuning.MAINTENANCE_PERIOD_S) sees a steady rate.
            for _ in range(25):
                for _ in range(200):
                    assert left.send(packet)
                await asyncio.sleep(0.1)
            sent = left.links[0].sent_per_s
            received = right.links[0].received_per_s
            assert 0.5e6 < sent < 5e6, sent
            assert 0.5e6 < received < 5e6, received
            assert left.links[0].received_per_s < 0.1 * sent  # only announcements come back
            status = right.status()
            assert status["links"][0]["received_per_s"] == received
            assert "Mbit/s)" in format_status(status)  # as `smolmesh status` prints it

    asyncio.run(scenario())
