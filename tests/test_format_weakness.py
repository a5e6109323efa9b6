"""What one recorded handshake gives away in the legacy_tcp format (README, Security).

`multispeck` is a chain of invertible Speck rounds, and the hello of a link is sent in the clear:
`iv || multispeck(psk, iv, "keyfinder")`. Running the rounds of the known parts ("keyfinder", the
IV) backwards from that output gives the state the chain had after absorbing the PSK, and that
state is all the key derivation needs: from it anyone computes `enc_key` and `mac_key` for any
IV, without the PSK. So whoever records one hello of a key can read and forge every link that
uses the key, before and after, and can dial any listener that accepts it.

This is the wire format, which smolmesh keeps byte for byte to interoperate with smolmesh2; the
test holds the README's warning to the truth, using only what an onlooker sees on the wire.
"""

from __future__ import annotations

import os

from smolmesh import _core

MASK = (1 << 64) - 1


def ror(x: int, r: int) -> int:
    return ((x >> r) | (x << (64 - r))) & MASK


def rol(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & MASK


def round_back(a: int, b: int, k: int) -> tuple[int, int]:
    """`_core.ernd` (PROTOCOL.md section 1) undone: the state before a round, from the state after
    it and its round key."""
    b = ror(b ^ a, 3)
    return rol(((a ^ k) - b) & MASK, 8), b


def absorb(state: tuple[int, int], part: bytes) -> tuple[int, int]:
    """One part of multispeck: its length, each byte, then 0."""
    a, b = _core.ernd(*state, len(part))
    for byte in part:
        a, b = _core.ernd(a, b, byte)
    return _core.ernd(a, b, 0)


def unabsorb(state: tuple[int, int], part: bytes) -> tuple[int, int]:
    a, b = round_back(*state, 0)
    for byte in reversed(part):
        a, b = round_back(a, b, byte)
    return round_back(a, b, len(part))


def digest(state: tuple[int, int]) -> bytes:
    return state[0].to_bytes(8, "little") + state[1].to_bytes(8, "little")


def keystream(key: bytes, length: int) -> bytes:
    """Speck128/128 in counter mode (PROTOCOL.md section 1), slowly."""
    a, b = int.from_bytes(key[8:], "little"), int.from_bytes(key[:8], "little")
    round_keys = []
    for i in range(32):
        round_keys.append(b)
        a, b = _core.ernd(a, b, i)
    out = bytearray()
    counter = 0
    while len(out) < length:
        counter += 1
        x, y = counter >> 64, counter & MASK
        for k in round_keys:
            x, y = _core.ernd(x, y, k)
        out += digest((x, y))
    return bytes(out[:length])


def test_one_recorded_hello_gives_every_link_key_of_its_psk() -> None:
    psk = b"a long pre-shared key that nobody could ever guess: 7f3a9c"
    recorded = _core.make_hello(psk, os.urandom(_core.IV_LEN))  # one hello seen on the wire

    # Back from the keyfinder through "keyfinder" and the IV: the state after the PSK.
    iv, keyfinder = recorded[: _core.IV_LEN], recorded[_core.IV_LEN :]
    state = (int.from_bytes(keyfinder[:8], "little"), int.from_bytes(keyfinder[8:], "little"))
    after_psk = unabsorb(unabsorb(state, b"keyfinder"), iv)

    # Without the PSK: a hello for any IV that a listener holding the key accepts, and the keys of
    # any link of that key, whose IV its own hello sends in the clear; here, a frame it sends.
    other_iv = os.urandom(_core.IV_LEN)
    forged_hello = other_iv + digest(absorb(absorb(after_psk, other_iv), b"keyfinder"))
    assert _core.find_psk(forged_hello, [b"another key", psk]) == 1  # what a listener checks
    enc_key = digest(absorb(absorb(after_psk, other_iv), b"enc_key"))
    secret = _core.make_packet(1_700_000_000_000, _core.CMD_NAME, b"a node nobody should see")
    wire = _core.Sealer(psk, other_iv).seal_batch([secret])
    plaintext = bytes(x ^ y for x, y in zip(wire, keystream(enc_key, len(wire)), strict=True))
    assert plaintext[2 : 2 + len(secret)] == secret
