"""docs/SECURE_TCP.md, implemented a second time from the text alone, reproduces the vectors.

smolmesh's handshake is snow's and its frames are ring's; the vectors come from them. Here the
Noise rules of the spec (revision 34: HKDF, MixHash, MixKey, MixKeyAndHash, EncryptAndHash,
Split; the AESGCM nonce) are written out with `cryptography`'s X25519 and AES-GCM and hashlib, so
that a peer built from the document alone would agree with smolmesh byte for byte."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

VECTORS = json.loads((Path(__file__).parent / "vectors" / "secure_tcp.json").read_text())
PROTOCOL_NAME = b"Noise_NNpsk0_25519_AESGCM_SHA256"  # 32 bytes: used as h as it is
PROLOGUE = b"smolmesh secure_tcp v1"


def nonce(n: int) -> bytes:
    """The AESGCM cipher's nonce: 4 zero bytes, then the counter as a 64-bit big-endian."""
    return bytes(4) + n.to_bytes(8, "big")


def hkdf(chaining_key: bytes, material: bytes, outputs: int) -> list[bytes]:
    temp = hmac.digest(chaining_key, material, "sha256")
    out, previous = [], b""
    for i in range(1, outputs + 1):
        previous = hmac.digest(temp, previous + bytes([i]), "sha256")
        out.append(previous)
    return out


def public(private: bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(private).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class SymmetricState:
    """Noise's SymmetricState with the AESGCM cipher and SHA-256."""

    def __init__(self) -> None:
        self.h = self.ck = PROTOCOL_NAME
        self.k: bytes | None = None
        self.n = 0
        self.mix_hash(PROLOGUE)

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def mix_key(self, material: bytes) -> None:
        self.ck, self.k = hkdf(self.ck, material, 2)
        self.n = 0

    def mix_key_and_hash(self, material: bytes) -> None:
        self.ck, temp_h, self.k = hkdf(self.ck, material, 3)
        self.mix_hash(temp_h)
        self.n = 0

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        assert self.k is not None
        ciphertext = AESGCM(self.k).encrypt(nonce(self.n), plaintext, self.h)
        self.n += 1
        self.mix_hash(ciphertext)
        return ciphertext

    def split(self) -> tuple[bytes, bytes]:
        first, second = hkdf(self.ck, b"", 2)
        return first, second


def handshake(psk: bytes, e_i: bytes, e_r: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """Both messages and the initiator's (send, receive) keys of `-> psk, e` / `<- e, ee`, as the
    initiator writes message 1 and the responder message 2 (each side's transcript is the same,
    so one state serves for both here)."""
    state = SymmetricState()
    state.mix_key_and_hash(psk)  # psk
    e_i_public = public(e_i)  # e: in psk handshakes it is also mixed into the key
    state.mix_hash(e_i_public)
    state.mix_key(e_i_public)
    message1 = e_i_public + state.encrypt_and_hash(b"")
    e_r_public = public(e_r)  # e
    state.mix_hash(e_r_public)
    state.mix_key(e_r_public)
    shared = X25519PrivateKey.from_private_bytes(e_r).exchange(
        X25519PublicKey.from_public_bytes(e_i_public)
    )
    state.mix_key(shared)  # ee
    message2 = e_r_public + state.encrypt_and_hash(b"")
    send, receive = state.split()
    return message1, message2, send, receive


def frame(key: bytes, counter: int, packet: bytes) -> bytes:
    """docs/SECURE_TCP.md section 3: len(m) u16 big-endian, then AES-256-GCM(k, nonce(n), "", m)."""
    return len(packet).to_bytes(2, "big") + AESGCM(key).encrypt(nonce(counter), packet, b"")


def test_the_psk_is_the_keys_scrypt() -> None:
    psk = hashlib.scrypt(
        VECTORS["key"].encode(), salt=PROLOGUE, n=16384, r=8, p=1, maxmem=64 << 20, dklen=32
    )
    assert psk.hex() == VECTORS["psk"]
    assert bytes.fromhex(VECTORS["prologue"]) == PROLOGUE
    assert VECTORS["noise_protocol"].encode() == PROTOCOL_NAME


def test_the_handshake_from_the_spec_gives_the_vectors_messages_and_keys() -> None:
    message1, message2, send, receive = handshake(
        bytes.fromhex(VECTORS["psk"]),
        bytes.fromhex(VECTORS["initiator_ephemeral_private"]),
        bytes.fromhex(VECTORS["responder_ephemeral_private"]),
    )
    assert len(message1) == len(message2) == 48
    assert message1.hex() == VECTORS["message1"]
    assert message2.hex() == VECTORS["message2"]
    assert send.hex() == VECTORS["initiator_send_key"]
    assert receive.hex() == VECTORS["initiator_receive_key"]


def test_frames_from_the_spec_are_the_vectors_frames() -> None:
    keys = {
        "initiator": bytes.fromhex(VECTORS["initiator_send_key"]),
        "responder": bytes.fromhex(VECTORS["initiator_receive_key"]),
    }
    counters = {"initiator": 0, "responder": 0}
    first = VECTORS["frames"][0]
    assert (first["direction"], first["packet_hex"]) == ("initiator", "")  # key confirmation
    for vector in VECTORS["frames"]:
        direction = vector["direction"]
        assert vector["counter"] == counters[direction]  # each direction counts its own frames
        wire = frame(keys[direction], counters[direction], bytes.fromhex(vector["packet_hex"]))
        assert wire.hex() == vector["frame_hex"]
        counters[direction] += 1
