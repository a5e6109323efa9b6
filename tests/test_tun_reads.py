"""How the node reads its TUN device: until empty when busy, one packet after a quiet spell.

Finding the device empty costs a system call and a Python exception; after idling, with cold
caches, that is tens of microseconds of a ping's round trip (benches/cold_calls.py), so a node
woken after a quiet spell reads the one packet that woke it and lets the event loop call again if
more is waiting. Within a millisecond of the last read it reads until the device is empty.
"""

from __future__ import annotations

import pytest

from smolmesh import node as node_module
from smolmesh import tuning
from smolmesh.node import Node


class RecordingTun:
    """A stand-in TUN device that hands out `limit` packets and remembers each limit asked."""

    read_skip = 0

    def __init__(self) -> None:
        self.limits: list[int] = []

    def read_batch_raw(self, limit: int) -> list[bytes]:
        self.limits.append(limit)
        return [bytes([0x45]) + bytes(19)] * min(limit, 3)


def test_one_packet_after_a_quiet_spell_and_until_empty_when_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock_ms = [1_000_000]
    monkeypatch.setattr(node_module, "time_ns", lambda: clock_ms[0] * 1_000_000)
    node = Node({"node_name": "tun-reads", "linux_tuntap": False}, tun=False)
    tun = RecordingTun()
    node._tun = tun
    routed: list[tuple[int, int]] = []
    monkeypatch.setattr(
        node.router,
        "route_packets",
        lambda packets, ts, skip: routed.append((len(packets), ts)) or 0,
    )

    node._on_tun_readable()  # the first wake-up: quiet before it
    clock_ms[0] += 1
    node._on_tun_readable()  # a millisecond on: busy
    clock_ms[0] += 50
    node._on_tun_readable()  # after 50 ms of nothing: quiet again
    node._on_tun_readable()  # the same millisecond: more was waiting

    batch = tuning.TUN_READ_BATCH
    assert tun.limits == [1, batch, 1, batch]
    # Every packet read is routed, stamped with the time of its wake-up.
    assert routed == [(1, 1_000_000), (3, 1_000_001), (1, 1_000_051), (3, 1_000_051)]
