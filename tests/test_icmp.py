"""smolmesh._core.icmp_too_big from Python: the binding's arguments, and the errors' checksums
verified by a second implementation of the Internet checksum. The kernel's view is
test_e2e_icmp; the cases of what gets no answer are rust/icmp.rs's tests."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from smolmesh import _core

PATH_MTU = _core.MAX_PACKET_LEN - _core.HEADER_LEN
HOST6 = ipaddress.IPv6Address("fd00::1").packed
PEER6 = ipaddress.IPv6Address("fd00::2").packed
NODE6 = ipaddress.IPv6Address("fd00::9").packed
HOST4, PEER4 = bytes([10, 250, 0, 1]), bytes([10, 250, 0, 2])


def internet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp6(length: int) -> bytes:
    header = struct.pack("!IHBB16s16s", 6 << 28, length - 40, 17, 64, HOST6, PEER6)
    return header + bytes(length - 40)


def udp4(length: int, flags: int = 0x4000) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 1, flags, 64, 17, 0, HOST4, PEER4)
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    return header + bytes(length - 20)


def test_ipv6_packet_too_big() -> None:
    packet = udp6(65535)
    error = _core.icmp_too_big(packet, PATH_MTU, NODE6)
    assert error is not None and len(error) == 1280
    assert error[8:24] == NODE6 and error[24:40] == HOST6
    icmp = error[40:]
    assert icmp[:2] == bytes([2, 0]) and struct.unpack("!I", icmp[4:8]) == (PATH_MTU,)
    pseudo = NODE6 + HOST6 + struct.pack("!I3xB", len(icmp), 58)
    assert internet_checksum(pseudo + icmp) == 0
    assert icmp[8:] == packet[:1232]
    # No source given: the packet's destination.
    assert _core.icmp_too_big(packet, PATH_MTU)[8:24] == PEER6  # type: ignore[index]


def test_ipv4_fragmentation_needed() -> None:
    packet = udp4(65535)
    error = _core.icmp_too_big(packet, PATH_MTU, NODE6)
    assert error is not None and len(error) == 576
    assert internet_checksum(error[:20]) == 0 and internet_checksum(error[20:]) == 0
    assert error[12:16] == PEER4 and error[16:20] == HOST4
    assert error[20:22] == bytes([3, 4]) and struct.unpack("!H", error[26:28]) == (PATH_MTU,)
    assert error[28:] == packet[:548]


def test_what_gets_no_answer() -> None:
    assert _core.icmp_too_big(udp6(PATH_MTU), PATH_MTU, NODE6) is None  # fits
    assert _core.icmp_too_big(udp4(PATH_MTU), PATH_MTU) is None
    assert _core.icmp_too_big(b"\x50" * 65535, PATH_MTU) is None  # not IP
    assert _core.icmp_too_big(udp4(65535)[:-1], PATH_MTU) is None  # length disagrees


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="source_v6 must be 16 bytes"):
        _core.icmp_too_big(udp6(65535), PATH_MTU, HOST4)
    with pytest.raises(ValueError, match="source_v4 must be 4 bytes"):
        _core.icmp_too_big(udp4(65535), PATH_MTU, None, HOST6)
    with pytest.raises(OverflowError):
        _core.icmp_too_big(udp4(65535), 65536)
