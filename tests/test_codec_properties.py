"""Properties of the legacy_tcp link codec (Sealer/Opener), over generated packets and chunkings.

1. What one side seals, the other opens, whatever the TCP stream's chunk boundaries.
2. A single flipped bit anywhere in the sealed bytes never yields a wrong packet: the opener either
   raises BadMacError or (a flip in a length field that makes the frame look longer) hands out the
   packets before the flip and waits for bytes that will never come.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smolmesh import _core
from smolmesh.errors import BadMacError

PSK = b"correct horse battery staple"
IV = bytes(range(16))
FRAME_OVERHEAD = 2 + _core.MAC_LEN
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _random_bytes(size_and_seed: tuple[int, int]) -> bytes:
    size, seed = size_and_seed
    return random.Random(seed).randbytes(size)


# Mostly small packets (where the framing edge cases are), sometimes up to the 65,535-byte limit;
# big ones come from a seed so hypothesis need not draw every byte.
packet_strategy = st.one_of(
    st.binary(max_size=40),
    st.binary(min_size=1400, max_size=1500),
    st.tuples(st.integers(0, _core.MAX_PACKET_LEN), st.integers(0, 2**32)).map(_random_bytes),
    st.just(bytes(_core.MAX_PACKET_LEN)),
)
packets_strategy = st.lists(packet_strategy, max_size=6)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given offsets (taken modulo its length, sorted, duplicates kept)."""
    points = sorted(cut % (len(data) + 1) for cut in cuts)
    bounds = [0, *points, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


@SETTINGS
@given(packets=packets_strategy, cuts=st.lists(st.integers(0, 2**20), max_size=20))
def test_open_returns_what_was_sealed_at_any_chunking(
    packets: list[bytes], cuts: list[int]
) -> None:
    wire = _core.Sealer(PSK, IV).seal_batch(packets)
    assert len(wire) == sum(len(packet) + FRAME_OVERHEAD for packet in packets)
    opener = _core.Opener(PSK, IV)
    got: list[bytes] = []
    for chunk in chunked(wire, cuts):
        got += opener.feed(chunk)
        assert got == packets[: len(got)]
    assert got == packets
    assert opener.buffered == 0


@SETTINGS
@given(batches=st.lists(packets_strategy, max_size=4))
def test_keystream_runs_on_across_calls(batches: list[list[bytes]]) -> None:
    # Sealing batch after batch is the same stream as sealing everything at once.
    sealer = _core.Sealer(PSK, IV)
    pieces = [sealer.seal_batch(batch) for batch in batches]
    everything = [packet for batch in batches for packet in batch]
    assert b"".join(pieces) == _core.Sealer(PSK, IV).seal_batch(everything)
    assert _core.Opener(PSK, IV).feed(b"".join(pieces)) == everything


@SETTINGS
@given(
    ip_packets=st.lists(st.binary(max_size=1500), max_size=8),
    timestamp_ms=st.integers(0, 2**64 - 1),
)
def test_seal_data_batch_is_cmd3_packets(ip_packets: list[bytes], timestamp_ms: int) -> None:
    wire = _core.Sealer(PSK, IV).seal_data_batch(ip_packets, timestamp_ms)
    expected = [_core.make_packet(timestamp_ms, _core.CMD_DATA, ip) for ip in ip_packets]
    assert _core.Opener(PSK, IV).feed(wire) == expected
    for packet in expected:
        assert _core.parse_header(packet) == (timestamp_ms, _core.CMD_DATA)


@SETTINGS
@given(
    packets=st.lists(packet_strategy, min_size=1, max_size=4),
    bit=st.integers(0, 2**40),
    cuts=st.lists(st.integers(0, 2**20), max_size=6),
)
def test_a_flipped_bit_never_yields_a_wrong_packet(
    packets: list[bytes], bit: int, cuts: list[int]
) -> None:
    wire = bytearray(_core.Sealer(PSK, IV).seal_batch(packets))
    bit %= len(wire) * 8
    wire[bit // 8] ^= 1 << (bit % 8)
    opener = _core.Opener(PSK, IV)
    got: list[bytes] = []
    try:
        for chunk in chunked(bytes(wire), cuts):
            got += opener.feed(chunk)
    except BadMacError:
        with pytest.raises(BadMacError):  # a broken stream stays broken
            opener.feed(b"")
    else:
        # No error: the flip made a frame look longer and the opener is waiting for the rest.
        assert opener.buffered > 0
        assert len(got) < len(packets)
    assert got == packets[: len(got)], "a wrong packet came out"


def test_zero_length_frames() -> None:
    wire = _core.Sealer(PSK, IV).seal_batch([b"", b"", b"x", b""])
    assert len(wire) == 4 * FRAME_OVERHEAD + 1
    assert _core.Opener(PSK, IV).feed(wire) == [b"", b"", b"x", b""]


def test_oversized_packet_is_refused() -> None:
    with pytest.raises(ValueError):
        _core.Sealer(PSK, IV).seal(bytes(_core.MAX_PACKET_LEN + 1))


@SETTINGS
@given(
    payloads=st.lists(st.binary(min_size=20, max_size=60), max_size=6),
    cuts=st.lists(st.integers(0, 2**12), max_size=8),
    repeats=st.lists(st.integers(0, 5), max_size=4),
)
def test_feed_and_triage_is_triage_of_feed(
    payloads: list[bytes], cuts: list[int], repeats: list[int]
) -> None:
    """The one-call receive path of a link gives what its two calls give, filter and all."""
    now = 1_700_000_000_000
    packets = [_core.make_packet(now, _core.CMD_DATA, bytes([0x45]) + p) for p in payloads]
    packets += [packets[i % len(packets)] for i in repeats] if packets else []  # duplicates
    packets.append(_core.make_packet(now - 10 * _core.WINDOW_MS, _core.CMD_DATA, bytes(20)))
    wire = _core.Sealer(PSK, IV).seal_batch(packets)
    one_call, two_calls = _core.Opener(PSK, IV), _core.Opener(PSK, IV)
    seen_one, seen_two = (
        _core.DuplicateFilter(seed=bytes(16)),
        _core.DuplicateFilter(seed=bytes(16)),
    )
    for chunk in chunked(wire, cuts):
        got = one_call.feed_and_triage(chunk, now, seen_one)
        assert got == _core.triage(two_calls.feed(chunk), now, seen_two)
    assert len(seen_one) == len(seen_two) == len(set(packets)) - 1  # the stale one is dropped
    forged = wire[:-1] + bytes([wire[-1] ^ 1])  # the last frame's MAC, one bit off
    with pytest.raises(BadMacError):
        _core.Opener(PSK, IV).feed_and_triage(forged, now, seen_one)


@given(names=st.lists(st.binary(max_size=80), max_size=40))
@settings(max_examples=25, deadline=None)
def test_names_derived_together_get_the_addresses_each_gets_alone(names: list[bytes]) -> None:
    assert _core.names_to_ipv6(names) == [_core.name_to_ipv6(name) for name in names]
