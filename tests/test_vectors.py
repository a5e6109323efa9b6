"""Every vector of shared/protocol/vectors.json, checked through the Python binding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from smolmesh import _core
from smolmesh.errors import BadMacError

VECTORS_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "protocol" / "vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
HEX = bytes.fromhex


def cases(section: str) -> Any:
    return pytest.mark.parametrize(
        "vector", VECTORS[section], ids=[f"{section}{i}" for i in range(len(VECTORS[section]))]
    )


def test_every_section_is_covered() -> None:
    # A new section in vectors.json must get a test here.
    covered = {"ernd", "speck128_128", "multispeck", "name_to_ipv6", "handshake", "keystream"}
    assert set(VECTORS) - {"note"} == covered | {"stream"}


@cases("ernd")
def test_ernd(vector: dict[str, Any]) -> None:
    assert _core.ernd(vector["x"], vector["y"], vector["k"]) == (vector["out_x"], vector["out_y"])


@cases("speck128_128")
def test_speck128_128(vector: dict[str, Any]) -> None:
    key = HEX(vector["key"])
    round_keys = _core.speck_round_keys(key)
    assert len(round_keys) == 32
    assert round_keys[:4] == [int(word, 16) for word in vector["round_keys_first4"]]
    x, y = int(vector["pt_x"], 16), int(vector["pt_y"], 16)
    assert _core.speck_encrypt(key, x, y) == (int(vector["ct_x"], 16), int(vector["ct_y"], 16))
    # Encrypting is 32 rounds of ernd with the round keys.
    for round_key in round_keys:
        x, y = _core.ernd(x, y, round_key)
    assert (x, y) == (int(vector["ct_x"], 16), int(vector["ct_y"], 16))


@cases("multispeck")
def test_multispeck(vector: dict[str, Any]) -> None:
    parts = [HEX(part) for part in vector["parts"]]
    assert _core.multispeck(parts).hex() == vector["out"]
    assert _core.multispeck(tuple(parts)).hex() == vector["out"]


@cases("name_to_ipv6")
def test_name_to_ipv6(vector: dict[str, Any]) -> None:
    expected = bytes.fromhex(vector["ipv6"].replace(":", ""))
    assert _core.name_to_ipv6(vector["name"]) == expected
    assert _core.name_to_ipv6(vector["name"].encode()) == expected
    # Derived together with others, in vector lanes, it comes out the same.
    others = [b"other %d" % n for n in range(20)]
    assert _core.names_to_ipv6([*others, vector["name"].encode(), *others])[20] == expected


@cases("handshake")
def test_handshake(vector: dict[str, Any]) -> None:
    psk, iv = HEX(vector["psk"]), HEX(vector["iv"])
    assert _core.keyfinder(psk, iv).hex() == vector["keyfinder"]
    assert _core.multispeck([psk, iv, b"keyfinder"]).hex() == vector["keyfinder"]
    hello = _core.make_hello(psk, iv)
    assert hello == iv + HEX(vector["keyfinder"])
    assert len(hello) == _core.HELLO_LEN
    enc_key, mac_key = _core.derive_keys(psk, iv)
    assert (enc_key.hex(), mac_key.hex()) == (vector["enc_key"], vector["mac_key"])
    assert _core.find_psk(hello, [psk]) == 0
    assert _core.find_psk(hello, [b"not the key", psk + b"x", psk]) == 2
    assert _core.find_psk(hello, [b"not the key"]) is None
    assert _core.find_psk(hello, []) is None


@cases("keystream")
def test_keystream(vector: dict[str, Any]) -> None:
    key, expected = HEX(vector["enc_key"]), HEX(vector["first_bytes"])
    assert _core.keystream(key, len(expected)) == expected
    # Any prefix is the same stream: the counter does not depend on the length asked for.
    for length in (0, 1, 15, 16, 17, 33):
        assert _core.keystream(key, length) == expected[:length]


@cases("stream")
def test_stream_sealing(vector: dict[str, Any]) -> None:
    psk, iv, wire = HEX(vector["psk"]), HEX(vector["iv"]), HEX(vector["wire"])
    packets = [HEX(packet) for packet in vector["packets"]]
    hello, frames = wire[: _core.HELLO_LEN], wire[_core.HELLO_LEN :]
    assert _core.make_hello(psk, iv) == hello
    assert _core.Sealer(psk, iv).seal_batch(packets) == frames
    one_by_one = _core.Sealer(psk, iv)
    assert b"".join(one_by_one.seal(packet) for packet in packets) == frames


@cases("stream")
def test_stream_is_plaintext_xor_keystream(vector: dict[str, Any]) -> None:
    # The frame format of PROTOCOL.md section 2, built here from the primitives alone.
    psk, iv, wire = HEX(vector["psk"]), HEX(vector["iv"]), HEX(vector["wire"])
    enc_key, mac_key = _core.derive_keys(psk, iv)
    plaintext = b"".join(
        len(packet).to_bytes(2, "little") + packet + _core.multispeck([mac_key, packet])
        for packet in map(HEX, vector["packets"])
    )
    frames = wire[_core.HELLO_LEN :]
    stream = _core.keystream(enc_key, len(plaintext))
    assert bytes(a ^ b for a, b in zip(plaintext, stream, strict=True)) == frames


@cases("stream")
def test_stream_opening_at_every_split(vector: dict[str, Any]) -> None:
    psk, iv, wire = HEX(vector["psk"]), HEX(vector["iv"]), HEX(vector["wire"])
    packets = [HEX(packet) for packet in vector["packets"]]
    frames = wire[_core.HELLO_LEN :]
    for split in range(len(frames) + 1):
        opener = _core.Opener(psk, iv)
        got = opener.feed(frames[:split])
        got += opener.feed(frames[split:])
        assert got == packets, f"split at {split}"
        assert opener.buffered == 0


@cases("stream")
def test_stream_opening_byte_by_byte(vector: dict[str, Any]) -> None:
    psk, iv, wire = HEX(vector["psk"]), HEX(vector["iv"]), HEX(vector["wire"])
    packets = [HEX(packet) for packet in vector["packets"]]
    frames = wire[_core.HELLO_LEN :]
    opener = _core.Opener(psk, iv)
    got: list[bytes] = []
    for index in range(len(frames)):
        got += opener.feed(frames[index : index + 1])
        assert got == packets[: len(got)]
    assert got == packets
    assert opener.buffered == 0


@cases("stream")
def test_stream_tampered_is_refused(vector: dict[str, Any]) -> None:
    psk, iv, wire = HEX(vector["psk"]), HEX(vector["iv"]), HEX(vector["wire"])
    frames = bytearray(wire[_core.HELLO_LEN :])
    frames[-1] ^= 0x01  # the last byte of the last frame's MAC
    opener = _core.Opener(psk, iv)
    with pytest.raises(BadMacError):
        opener.feed(bytes(frames))
    with pytest.raises(BadMacError):
        opener.feed(b"")


@cases("stream")
def test_stream_wrong_key_is_refused(vector: dict[str, Any]) -> None:
    psk, iv, wire = HEX(vector["psk"]), HEX(vector["iv"]), HEX(vector["wire"])
    opener = _core.Opener(psk + b"!", iv)
    with pytest.raises(BadMacError):
        # Decrypted with the wrong key the length is random: feed enough for any frame.
        opener.feed(wire[_core.HELLO_LEN :] + bytes(2 + 65535 + 16))
