"""Keeping the packet path warm while sparse traffic flows through a node.

A packet that finds the node asleep pays for its sleep: the CPU wakes from its idle state, and
the node's code and data come back into caches that other work has filled meanwhile. Each call of
the packet path then costs about ten times what it costs warm (benches/cold_calls.py), and a ping
every 50 ms through two nodes takes twice as long as one every 3 ms (benches/idle_rtt.py).
Traffic of that kind is common: interactive sessions, game and voice ticks, DNS, pings.

So once a data packet passes (sent from this node, forwarded, or delivered to it), the node wakes
every WARM_PERIOD_S for the next `keep_warm_s` seconds (the config's; tuning.KEEP_WARM_S by
default) and runs the Rust calls of its packet path on a scratch packet: it seals it and opens
and triages it again, with both kinds of link codec and a duplicate filter of its own, so no
link, route or counter sees anything. A wake-up in which packets passed does nothing more. Then
it stops: an idle node wakes for nothing. What it costs and gains is measured in the README
(Performance, "Idle ping").
"""

from __future__ import annotations

import asyncio
import time

from smolmesh import _core, tuning
from smolmesh.router import Router

# A scratch IPv4 packet of a ping's size (84 bytes) to 10.0.0.1, the destination the triage
# reads; it never leaves the scratch codecs.
_SCRATCH_PACKET = bytes.fromhex("4500005400004000400100000a0000020a000001") + bytes(64)


class KeepWarm:
    """Watches `router.data_batches` and keeps the packet path warm while it moves.

    Asleep, it sits in `router.on_data`, which the router calls with the next data batch; awake,
    it leaves `on_data` empty and looks at the count on each wake-up instead, so a packet costs
    the router nothing but a count while it ticks. `window_s` 0 turns it off."""

    def __init__(
        self, router: Router, window_s: float, period_s: float = tuning.WARM_PERIOD_S
    ) -> None:
        self.router = router
        self.period_s = period_s
        # Wake-ups in a row without data after which it stops.
        self._quiet_limit = round(window_s / period_s)
        self.ticks = 0  # wake-ups so far, for the status
        self._quiet = 0
        self._seen = 0
        self._handle: asyncio.TimerHandle | None = None
        self._codecs: tuple[_core.SecureSealer, _core.SecureOpener, _core.Sealer, _core.Opener]
        self._codecs = (
            _core.SecureSealer(bytes(32)),
            _core.SecureOpener(bytes(32)),
            _core.Sealer(b"scratch", bytes(_core.IV_LEN)),
            _core.Opener(b"scratch", bytes(_core.IV_LEN)),
        )
        self._seen_packets = _core.DuplicateFilter(64)
        if self._quiet_limit > 0:
            router.on_data = self.wake

    @property
    def awake(self) -> bool:
        return self._handle is not None

    def wake(self) -> None:
        """Data passed while asleep: tick from now on, until the traffic has stopped."""
        self.router.on_data = None
        self._quiet = 0
        self._seen = self.router.data_batches
        self._handle = asyncio.get_running_loop().call_later(self.period_s, self._tick)

    def _tick(self) -> None:
        self.ticks += 1
        batches = self.router.data_batches
        if batches != self._seen:  # the path ran since the last wake-up: warm already
            self._seen = batches
            self._quiet = 0
        elif self._quiet >= self._quiet_limit:
            self._handle = None
            self.router.on_data = self.wake
            return
        else:
            self._quiet += 1
        # The next wake-up is set before any work, so that nothing here can stop the ticking.
        self._handle = asyncio.get_running_loop().call_later(self.period_s, self._tick)
        if self._quiet:
            self._exercise()

    def _exercise(self) -> None:
        """Seal, open and triage the scratch packet with each kind of link codec."""
        secure_sealer, secure_opener, sealer, opener = self._codecs
        now_ms = time.time_ns() // 1_000_000
        packets = [_SCRATCH_PACKET]
        secure_opener.feed_and_triage(
            secure_sealer.seal_data_batch(packets, now_ms), now_ms, self._seen_packets
        )
        opener.feed_and_triage(sealer.seal_data_batch(packets, now_ms), now_ms, self._seen_packets)

    def close(self) -> None:
        """Stop ticking and stop listening to the router."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.router.on_data == self.wake:
            self.router.on_data = None
