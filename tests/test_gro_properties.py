"""Properties of `_core.tcp_gro` over generated batches of interleaved TCP flows and other packets.

Each write is split back into segments the way the kernel's GSO would (gso_size chunks, headers
from the head with the IP length, IPv4 ID and header checksum, TCP sequence number, PSH and
checksum fixed up). What comes back must be exactly the input packets: each once, byte for byte,
in the order they came within each TCP connection; packets not coalesced follow a zero header.
"""

from __future__ import annotations

import random
import struct
from collections import defaultdict
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smolmesh import _core

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HDR = struct.Struct("<BBHHHH")
ACK, PSH = 0x10, 0x08
NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6 = 1, 1, 4


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_header_len(packet: bytes) -> int:
    return 40 if packet[0] >> 4 == 6 else (packet[0] & 0x0F) * 4


def with_checksums(packet: bytearray) -> bytes:
    """`packet` (IPv4 without options or IPv6, then TCP) with valid IPv4 and TCP checksums."""
    iph = ip_header_len(packet)
    v6 = iph == 40
    if not v6:
        packet[10:12] = b"\0\0"
        packet[10:12] = checksum(bytes(packet[:20])).to_bytes(2, "big")
    addresses = packet[8:40] if v6 else packet[12:20]
    pseudo = bytes(addresses) + struct.pack("!IxxxB", len(packet) - iph, 6)
    packet[iph + 16 : iph + 18] = b"\0\0"
    packet[iph + 16 : iph + 18] = checksum(pseudo + bytes(packet[iph:])).to_bytes(2, "big")
    return bytes(packet)


@dataclass
class Flow:
    v6: bool
    port: int
    mss: int
    seq: int
    ip_id: int
    window: int = 1000


def tcp_segment(flow: Flow, payload: bytes, psh: bool, options: bytes) -> bytes:
    tcp = struct.pack(
        "!HHIIBBHHH",
        40000,
        flow.port,
        flow.seq,
        0x01020304,
        (20 + len(options)) // 4 << 4,
        ACK | (PSH if psh else 0),
        flow.window,
        0,
        0,
    )
    tcp += options + payload
    if flow.v6:
        ip = struct.pack("!IHBB", 0x6012_3456, len(tcp), 6, 64)
        ip += b"\xfd" + bytes(14) + b"\1" + b"\xfd" + bytes(14) + b"\2"
    else:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(tcp), flow.ip_id, 0x4000, 64, 6, 0)
        ip += bytes([10, 250, 0, 1, 10, 250, 0, 2])
    flow.seq = (flow.seq + len(payload)) % 2**32
    flow.ip_id = (flow.ip_id + 1) % 2**16
    return with_checksums(bytearray(ip + tcp))


def other_packet(kind: int, flow: Flow, rnd: random.Random) -> bytes:
    """A packet that is not a candidate: UDP, ICMP, a pure ACK, a bad checksum, random bytes."""
    if kind == 0:
        udp = bytearray(tcp_segment(Flow(False, flow.port, 0, 0, 0), rnd.randbytes(30), False, b""))
        udp[9] = 17
        return bytes(udp)
    if kind == 1:
        return bytes([0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 1, 0, 0]) + rnd.randbytes(16)
    if kind == 2:
        return tcp_segment(flow, b"", False, b"")
    if kind == 3:
        bad = bytearray(tcp_segment(Flow(flow.v6, flow.port, 0, 0, 0), b"x" * 10, False, b""))
        bad[-1] ^= 0xFF
        return bytes(bad)
    return rnd.randbytes(rnd.randrange(0, 80))


# A batch: per step, which flow sends (or a non-candidate), payload size, PSH, window change.
steps = st.lists(
    st.tuples(
        st.integers(0, 4),
        st.one_of(st.just(-1), st.integers(1, 9000)),
        st.booleans(),
        st.integers(0, 20),
    ),
    max_size=80,
)


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[bytes], int]:
    seed = draw(st.integers(0, 2**32))
    rnd = random.Random(seed)
    flows = [
        Flow(
            v6=draw(st.booleans()),
            port=1000 + i,
            mss=draw(st.sampled_from([1, 100, 536, 1448, 8948])),
            seq=draw(st.sampled_from([0, 2**32 - 3000, rnd.randrange(2**32)])),
            ip_id=rnd.randrange(2**16),
        )
        for i in range(4)
    ]
    options = draw(st.sampled_from([b"", bytes([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2])]))
    skip = draw(st.integers(0, 9))
    packets: list[bytes] = []
    for who, size, psh, what in draw(steps):
        if who == 4:
            packet = other_packet(what % 5, flows[what % 4], rnd)
        else:
            flow = flows[who]
            if what == 0:
                flow.window += 1
            full = size == -1 or what > 3
            length = flow.mss if full else min(size, flow.mss)
            packet = tcp_segment(flow, rnd.randbytes(length), psh and what < 5, options)
        prefix = rnd.randbytes(skip)
        if what == 20:
            prefix = prefix[: rnd.randrange(skip + 1)]
            packet = b""
        packets.append(prefix + packet)
    return packets, skip


def split(write: bytes) -> list[bytes]:
    """The packets a write stands for: itself after a zero header, or its GSO segments."""
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = HDR.unpack_from(write)
    body = write[HDR.size :]
    if (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset) == (0, 0, 0, 0, 0, 0):
        return [body]
    v6 = body[0] >> 4 == 6
    iph = 40 if v6 else 20
    assert (flags, gso_type, csum_start, csum_offset) == (
        NEEDS_CSUM,
        GSO_TCPV6 if v6 else GSO_TCPV4,
        iph,
        16,
    )
    headers, payload = body[:hdr_len], body[hdr_len:]
    assert len(payload) > gso_size > 0, "a super-packet has two segments or more"
    (seq,) = struct.unpack_from("!I", headers, iph + 4)
    (ip_id,) = struct.unpack_from("!H", headers, 4)
    segments = []
    for start in range(0, len(payload), gso_size):
        chunk = payload[start : start + gso_size]
        segment = bytearray(headers + chunk)
        if v6:
            segment[4:6] = (len(segment) - 40).to_bytes(2, "big")
        else:
            segment[2:4] = len(segment).to_bytes(2, "big")
            segment[4:6] = ((ip_id + start // gso_size) % 2**16).to_bytes(2, "big")
        segment[iph + 4 : iph + 8] = ((seq + start) % 2**32).to_bytes(4, "big")
        if start + gso_size < len(payload):
            segment[iph + 13] &= ~PSH
        segments.append(with_checksums(segment))
    return segments


def connection(packet: bytes) -> object:
    """Addresses and ports of a TCP packet; anything else counts as one connection of its own."""
    if len(packet) >= 44 and packet[0] >> 4 == 6 and packet[6] == 6:
        return (packet[8:40], packet[40:44])
    if len(packet) >= 24 and packet[0] >> 4 == 4 and packet[9] == 6:
        iph = ip_header_len(packet)
        return (packet[12:20], packet[iph : iph + 4])
    return "other"


@SETTINGS
@given(batch=batches())
def test_split_writes_give_back_each_packet_once_in_order(batch: tuple[list[bytes], int]) -> None:
    packets, skip = batch
    ip_packets = [packet[skip:] for packet in packets]
    writes = _core.tcp_gro(packets, skip)
    unused: dict[bytes, list[int]] = defaultdict(list)
    for index, ip_packet in enumerate(ip_packets):
        if ip_packet:
            unused[ip_packet].append(index)
    order: list[int] = []
    for write in writes:
        for packet in split(write):
            assert unused[packet], "every write's packets are input packets, each once"
            order.append(unused[packet].pop(0))
    assert sorted(order) == [i for i, p in enumerate(ip_packets) if p]
    last: dict[object, int] = {}
    for index in order:
        key = connection(ip_packets[index])
        assert last.get(key, -1) < index, "each connection keeps its order"
        last[key] = index


def test_full_segments_of_one_flow_become_one_write() -> None:
    flow = Flow(v6=False, port=5201, mss=1448, seq=2**32 - 2000, ip_id=7)
    packets = [tcp_segment(flow, bytes(1448), False, b"") for _ in range(8)]
    (write,) = _core.tcp_gro([b"mesh head" + p for p in packets], 9)
    assert HDR.unpack_from(write) == (NEEDS_CSUM, GSO_TCPV4, 40, 1448, 20, 16)
    assert split(write) == packets
    assert HDR.size == _core.VNET_HDR_LEN
