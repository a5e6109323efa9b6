"""The limit on ICMP errors for packets too long for the mesh: the token bucket with time passed
in, and the node's TUN path with a stand-in device. Through real kernels: test_e2e_icmp."""

from __future__ import annotations

import ipaddress
import struct

import pytest

import smolmesh
from smolmesh import Node, _core, tuning
from smolmesh.control import format_status
from smolmesh.ratelimit import TokenBucket

TOO_LONG = _core.MAX_PACKET_LEN - _core.HEADER_LEN + 2  # 65,528 bytes
HOST6 = ipaddress.IPv6Address("fd00::1").packed
PEER6 = ipaddress.IPv6Address("fd00::2").packed


def takes(bucket: TokenBucket, now: float, tries: int) -> int:
    return sum(bucket.take(now) for _ in range(tries))


def test_a_full_bucket_allows_the_burst_at_once_and_no_more() -> None:
    bucket = TokenBucket(rate=10.0, burst=10, now=100.0)
    assert takes(bucket, 100.0, 50) == 10
    assert not bucket.take(100.0)


def test_tokens_come_back_at_the_rate() -> None:
    # Times in eighths of a second, which binary floating point holds exactly.
    bucket = TokenBucket(rate=4.0, burst=4, now=0.0)
    assert takes(bucket, 0.0, 10) == 4
    assert not bucket.take(0.125)  # half a token
    assert bucket.take(0.25)  # the whole one
    assert not bucket.take(0.25)
    assert takes(bucket, 1.0, 10) == 3  # 0.25 s .. 1 s: three more
    assert takes(bucket, 1.375, 10) == 1  # 1.5: one, the half kept
    assert takes(bucket, 1.5, 10) == 1  # and the kept half made whole


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=10, now=0.0)
    assert bucket.tokens == 10
    assert takes(bucket, 3600.0, 50) == 10  # an hour idle still gives one burst
    assert bucket.tokens == 0
    assert takes(bucket, 3600.5, 50) == 5


def test_any_stretch_allows_at_most_burst_plus_rate_times_its_length() -> None:
    rate, burst = 10.0, 10
    bucket = TokenBucket(rate, burst, now=0.0)
    allowed = [t / 1000 for t in range(0, 5000, 3) if bucket.take(t / 1000)]  # a try every 3 ms
    for i, start in enumerate(allowed):
        for j in range(i, len(allowed)):
            assert j - i + 1 <= burst + rate * (allowed[j] - start) + 1e-9
    assert len(allowed) == burst + 49  # 10 at once, then one per 0.1 s over 4.9 s after them


def test_a_clock_that_steps_back_refills_nothing() -> None:
    bucket = TokenBucket(rate=10.0, burst=10, now=50.0)
    assert takes(bucket, 50.0, 10) == 10
    assert takes(bucket, 10.0, 5) == 0
    assert takes(bucket, 50.1, 5) == 1


def test_rate_zero_allows_one_burst_and_never_refills() -> None:
    bucket = TokenBucket(rate=0.0, burst=3, now=0.0)
    assert takes(bucket, 0.0, 10) == 3
    assert takes(bucket, 1.0, 10) == 0
    assert takes(bucket, 1e9, 10) == 0  # about 30 years on
    assert bucket.tokens == 0


@pytest.mark.parametrize("rate", [0.0, 10.0, 1e9])
def test_burst_zero_allows_nothing_at_any_rate(rate: float) -> None:
    bucket = TokenBucket(rate, burst=0, now=0.0)
    assert takes(bucket, 0.0, 10) == 0
    assert takes(bucket, 3600.0, 10) == 0
    assert bucket.tokens == 0


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, 10), (float("nan"), 10), (10.0, -1)])
def test_a_negative_or_nan_limit_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, now=0.0)


class StandInTun:
    """Just what Node._on_tun_readable uses of a TUN device: batches to read, writes kept.

    Each packet read comes behind a 10-byte header, as from a device with IFF_VNET_HDR."""

    read_skip = 10
    packets_written = writes = 0  # for Node.status()

    def __init__(self, batches: list[list[bytes]]) -> None:
        self.batches = batches
        self.written: list[bytes] = []

    def read_batch_raw(self, limit: int) -> list[bytes]:
        batch = self.batches.pop(0) if self.batches else []
        return [bytes(self.read_skip) + packet for packet in batch]

    def write(self, packet: bytes | memoryview) -> None:
        self.written.append(bytes(packet))


def udp6(length: int) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, length - 40, 17, 64, HOST6, PEER6) + bytes(
        length - 40
    )


def test_the_node_sends_one_burst_of_errors_and_counts_the_rest() -> None:
    node = Node({"node_name": "icmp-limit", "mtu": 65535, "linux_tuntap": False}, tun=False)
    tun = StandInTun([[udp6(TOO_LONG)] * 50, [udp6(1280)] * 3])
    node._tun = tun
    node._on_tun_readable()  # one batch, one moment: the burst and no more
    assert len(tun.written) == tuning.ICMP_ERROR_BURST
    assert all(packet[40] == 2 for packet in tun.written)  # ICMPv6 packet too big
    assert node.icmp_errors_sent == tuning.ICMP_ERROR_BURST
    assert node.icmp_errors_suppressed == 50 - tuning.ICMP_ERROR_BURST
    node._on_tun_readable()  # packets that fit draw no error and take no token
    assert node.icmp_errors_sent + node.icmp_errors_suppressed == 50
    status = node.status()
    assert status["icmp_errors_sent"] == tuning.ICMP_ERROR_BURST
    assert status["icmp_errors_suppressed"] == 50 - tuning.ICMP_ERROR_BURST
    assert "10 sent, 40 suppressed" in format_status({**status, "started_at": 0.0})


@pytest.mark.parametrize(
    ("limit", "sent"),
    [
        ({"icmp_errors_per_s": 0, "icmp_error_burst": 0}, 0),
        ({"icmp_errors_per_s": 1000, "icmp_error_burst": 0}, 0),
        ({"icmp_errors_per_s": 0, "icmp_error_burst": 3}, 3),
        ({"icmp_error_burst": 25}, 25),
    ],
)
def test_the_config_sets_the_limit(limit: dict[str, float], sent: int) -> None:
    # Through the public API: smolmesh.Node with a smolmesh.Config.
    config = smolmesh.parse_config({"node_name": "icmp-config", "mtu": 65535, **limit})
    node = smolmesh.Node(config, tun=False)
    tun = StandInTun([[udp6(TOO_LONG)] * 50])
    node._tun = tun
    node._on_tun_readable()
    assert len(tun.written) == node.icmp_errors_sent == sent
    assert node.icmp_errors_suppressed == 50 - sent
