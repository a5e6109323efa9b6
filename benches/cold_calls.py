"""What each call on a node's per-packet path costs when the caches are cold, as after idling.

Run:  python3 benches/cold_calls.py [--rounds 60]

An idle ping finds every node asleep: its code and data have left the caches, and each pass
through the node pays for bringing them back. This times each call of the path once right after
evicting the caches (by writing 64 MiB) and once more at once (warm), and prints the medians.
The pipe calls stand for the TUN device and the socket: a bare forwarder makes those too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from smolmesh import _core

EVICT_BYTES = 64 << 20
CACHE_LINE = 64
PSK = b"cold-calls"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()

    evict = bytearray(EVICT_BYTES)
    line_marks = b"\x01" * (EVICT_BYTES // CACHE_LINE)

    def flush() -> None:
        evict[::CACHE_LINE] = line_marks

    now_ms = time.time_ns() // 1_000_000
    # An ICMP echo of 84 bytes to 10.0.0.2, as a ping sends it.
    ip_packet = bytes([0x45, 0, 0, 84]) + bytes(8) + bytes([10, 0, 0, 1, 10, 0, 0, 2]) + bytes(64)
    sealer = _core.Sealer(PSK, bytes(16))
    seen = _core.DuplicateFilter()
    for n in range(_core.DUPLICATE_FILTER_CAPACITY):  # full, as a running node's is
        seen.insert(n.to_bytes(4, "little"))
    pipe_r, pipe_w = os.pipe()
    os.set_blocking(pipe_r, False)
    # Each triage call gets a packet the filter has not seen, as a node's would.
    fresh = iter(
        [_core.make_packet(now_ms, _core.CMD_DATA, ip_packet + n.to_bytes(4, "little"))]
        for n in range(2 * args.rounds)
    )
    # Each feed gets an opener at the start of the stream, so the frame opens as the first.
    wire = _core.Sealer(PSK, bytes(16)).seal_data_batch([ip_packet], now_ms)
    openers = iter([_core.Opener(PSK, bytes(16)) for _ in range(4 * args.rounds)])
    # The link's one call: open and triage, each frame new to the filter.
    fresh_wires = iter(
        _core.Sealer(PSK, bytes(16)).seal_data_batch([ip_packet + n.to_bytes(4, "little")], now_ms)
        for n in range(2 * args.rounds)
    )

    def read_until_empty() -> object:
        try:
            while True:
                os.read(pipe_r, 65535)
        except BlockingIOError:
            return None

    calls: list[tuple[str, Callable[[], object]]] = [
        ("Sealer.seal_data_batch, 1 packet", lambda: sealer.seal_data_batch([ip_packet], now_ms)),
        ("Opener.feed, 1 frame", lambda: next(openers).feed(wire)),
        ("triage (duplicate filter), 1 packet", lambda: _core.triage(next(fresh), now_ms, seen)),
        (
            "Opener.feed_and_triage, 1 frame",
            lambda: next(openers).feed_and_triage(next(fresh_wires), now_ms, seen),
        ),
        ("ip_destination", lambda: _core.ip_destination(ip_packet)),
        ("parse_header (next to nothing to do)", lambda: _core.parse_header(ip_packet)),
        ("time.time_ns", time.time_ns),
        ("os.write to a pipe", lambda: os.write(pipe_w, ip_packet)),
        ("os.read until empty (EAGAIN)", read_until_empty),
    ]
    cold: dict[str, list[int]] = {name: [] for name, _ in calls}
    warm: dict[str, list[int]] = {name: [] for name, _ in calls}
    for _ in range(args.rounds):
        for name, call in calls:
            flush()
            started = time.perf_counter_ns()
            call()
            cold[name].append(time.perf_counter_ns() - started)
            started = time.perf_counter_ns()
            call()
            warm[name].append(time.perf_counter_ns() - started)
    print(f"median of {args.rounds} rounds, microseconds per call")
    print(f"{'call':42s} {'cold':>7s} {'warm':>7s}")
    for name, _ in calls:
        print(
            f"{name:42s} {statistics.median(cold[name]) / 1000:7.1f}"
            f" {statistics.median(warm[name]) / 1000:7.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
