"""The least a Python VPN can do: one TUN device, one TCP connection, no crypto, no routing.

benches/idle_rtt.py runs a pair of these beside smolmesh and wireguard-go to show how much of an
idle round trip is the bare cost of a uvloop process carrying packets between a TUN device and TCP,
and how much is smolmesh's own work on top (sealing, opening, the duplicate filter, routing).

Run as root in a network namespace:
    python3 rtt_forwarder.py listen PORT TUN_NAME ADDRESS/PREFIX
    python3 rtt_forwarder.py connect HOST:PORT TUN_NAME ADDRESS/PREFIX
Frames are a 2-byte little-endian length and the packet. It runs until killed.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import struct
import subprocess
import sys

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


async def serve(role: str, where: str, tun: int) -> None:
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
    transport, _ = await loop.connect_accepted_socket(lambda: Link(tun), sock)

    def tun_readable() -> None:
        try:
            while True:
                packet = os.read(tun, 65535)
                transport.write(_LENGTH.pack(len(packet)) + packet)
        except BlockingIOError:
            pass

    loop.add_reader(tun, tun_readable)
    await asyncio.Event().wait()


def main() -> None:
    role, where, name, address = sys.argv[1:5]
    tun = open_tun(name, address)
    uvloop.run(serve(role, where, tun))


if __name__ == "__main__":
    main()
