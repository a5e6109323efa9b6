"""The least a Python VPN can do: one TUN device, one TCP connection, no crypto, no routing.

benches/idle_rtt.py runs a pair of these beside smolmesh and wireguard-go to show how much of an
idle round trip is the bare cost of a uvloop process carrying packets between a TUN device and TCP,
and how much is smolmesh's own work on top (sealing, opening, the duplicate filter, routing).

Run as root in a network namespace:
    python3 rtt_forwarder.py listen PORT TUN_NAME ADDRESS/PREFIX [--smolmesh-calls]
    python3 rtt_forwarder.py connect HOST:PORT TUN_NAME ADDRESS/PREFIX [--smolmesh-calls]
Frames are a 2-byte little-endian length and the packet. It runs until killed.

With --smolmesh-calls each packet also goes through the Rust calls a smolmesh node makes for it,
and nothing else of the node: sealed into a legacy_tcp frame with a fixed key, opened and checked
against the duplicate filter at the other end. Set beside the plain forwarder and smolmesh, it
splits a node's extra round-trip time between those calls and its Python (routing, links).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import struct
import subprocess
import sys
import time

import uvloop

_TUNSETIFF = 0x400454CA
_IFF_TUN_NO_PI = 0x0001 | 0x1000
_LENGTH = struct.Struct("<H")


def open_tun(name: str, address: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN_NO_PI))
    subprocess.run(["ip", "addr", "add", address, "dev", name], check=True)
    subprocess.run(["ip", "link", "set", name, "mtu", "1500", "up"], check=True)
    return fd


class SmolmeshLink(asyncio.Protocol):
    """Frames as smolmesh seals them, opened and triaged as a node does, then written out."""

    def __init__(self, tun: int, opener: object) -> None:
        from smolmesh import _core

        self.tun = tun
        self.opener = opener
        self.triage = _core.triage
        self.seen = _core.DuplicateFilter()

    def data_received(self, data: bytes) -> None:
        packets = self.opener.feed(data)  # type: ignore[attr-defined]
        for _cmd, _timestamp, _key, packet in self.triage(packets, _now_ms(), self.seen):
            os.write(self.tun, memoryview(packet)[9:])

    def connection_lost(self, exc: Exception | None) -> None:
        os._exit(0)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Link(asyncio.Protocol):
    def __init__(self, tun: int) -> None:
        self.tun = tun
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        buf = self.pending + data
        at = 0
        while len(buf) - at >= 2:
            (length,) = _LENGTH.unpack_from(buf, at)
            if len(buf) - at - 2 < length:
                break
            os.write(self.tun, buf[at + 2 : at + 2 + length])
            at += 2 + length
        self.pending = buf[at:]

    def connection_lost(self, exc: Exception | None) -> None:
        os._exit(0)


async def serve(role: str, where: str, tun: int, smolmesh_calls: bool) -> None:
    loop = asyncio.get_running_loop()
    if role == "listen":
        listener = socket.create_server(("0.0.0.0", int(where)))
        sock, _ = await loop.sock_accept(listener)
        listener.close()
    else:
        host, port = where.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    if smolmesh_calls:
        from smolmesh import _core

        # Each side seals with the IV of its role and opens with the other's.
        ivs = {"listen": bytes(16), "connect": bytes(range(16))}
        peer = "connect" if role == "listen" else "listen"
        sealer = _core.Sealer(b"rtt", ivs[role])
        opener = _core.Opener(b"rtt", ivs[peer])
        transport, _ = await loop.connect_accepted_socket(lambda: SmolmeshLink(tun, opener), sock)

        def frame(packet: bytes) -> bytes:
            return sealer.seal_data_batch([packet], _now_ms())
    else:
        transport, _ = await loop.connect_accepted_socket(lambda: Link(tun), sock)

        def frame(packet: bytes) -> bytes:
            return _LENGTH.pack(len(packet)) + packet

    def tun_readable() -> None:
        try:
            while True:
                transport.write(frame(os.read(tun, 65535)))
        except BlockingIOError:
            pass

    loop.add_reader(tun, tun_readable)
    await asyncio.Event().wait()


def main() -> None:
    role, where, name, address = sys.argv[1:5]
    smolmesh_calls = sys.argv[5:] == ["--smolmesh-calls"]
    tun = open_tun(name, address)
    uvloop.run(serve(role, where, tun, smolmesh_calls))


if __name__ == "__main__":
    main()
