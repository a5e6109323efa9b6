"""secure_tcp links: smolmesh's own encrypted TCP link (docs/SECURE_TCP.md).

A Noise NNpsk0 handshake (fresh X25519 keys of both ends, mixed with the PSK) gives each direction
its own AES-256-GCM key; frames are sealed and opened in batches by `_core.SecureSealer` and
`_core.SecureOpener`, and everything after the handshake is `TcpLink`'s, as for legacy_tcp.

The handshake, as this side sees it:
- connector: sends message 1 at once; reads the 48 bytes of message 2; on success sends its first
  frame, an empty packet that confirms its keys to the listener, and is up.
- listener: reads message 1, finds the PSK it was made with among its keys, answers with message
  2, and is up once the connector's first frame has opened (so a replayed message 1 brings no
  link up, only a timeout).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time

from smolmesh import _core
from smolmesh.errors import BadMacError
from smolmesh.links.tcp import TcpLink

# docs/SECURE_TCP.md section 1: scrypt makes each guess at a short key cost what a scrypt costs
# (some 50 ms and 16 MiB here) against a recorded handshake.
PSK_SALT = b"smolmesh secure_tcp v1"
PSK_SCRYPT_N, PSK_SCRYPT_R, PSK_SCRYPT_P = 16384, 8, 1


@functools.lru_cache(maxsize=256)
def secure_psk(key: str) -> bytes:
    """The 32-byte Noise PSK of a config key (docs/SECURE_TCP.md section 1)."""
    return hashlib.scrypt(
        key.encode(),
        salt=PSK_SALT,
        n=PSK_SCRYPT_N,
        r=PSK_SCRYPT_R,
        p=PSK_SCRYPT_P,
        maxmem=64 * 1024 * 1024,
        dklen=32,
    )


class SecureTcpLink(TcpLink):
    """One secure_tcp connection; `psks` are `secure_psk`s of the config's keys."""

    transport_type = "secure_tcp"
    echoes = True

    def _begin_handshake(self, stream: asyncio.Transport) -> None:
        self._message = b""
        self._initiator: _core.SecureInitiator | None = None
        self._unconfirmed: tuple[_core.SecureSealer, _core.SecureOpener, bytes] | None = None
        if self.outgoing:
            self._initiator = _core.SecureInitiator(self.psks[0])
            stream.write(self._initiator.message())

    def _handshake(self, data: bytes) -> bytes:
        if self._unconfirmed is not None:
            return self._confirm(data)
        need = _core.SECURE_MESSAGE_LEN - len(self._message)
        self._message += data[:need]
        rest = data[need:]
        if len(self._message) < _core.SECURE_MESSAGE_LEN:
            return b""
        if self._initiator is not None:
            keys = self._initiator.finish(self._message)
            if keys is None:
                self.close("wrong key: the peer's handshake does not match our key")
                return b""
            sealer, opener = keys
            assert self.transport is not None
            self.transport.write(sealer.seal(b""))  # key confirmation: frame 0, empty
            self._up(sealer, opener, self.psks[0])
            return rest
        answer = _core.secure_respond(self._message, self.psks)
        if answer is None:
            self.close("wrong key: the peer's handshake matches none of our keys")
            return b""
        index, message2, sealer, opener = answer
        assert self.transport is not None
        self.transport.write(message2)
        self._unconfirmed = (sealer, opener, self.psks[index])
        return self._confirm(rest) if rest else b""

    def _confirm(self, data: bytes) -> bytes:
        """Listener: open the connector's first frames; the link is up once one has opened."""
        assert self._unconfirmed is not None
        sealer, opener, psk = self._unconfirmed
        try:
            rows = opener.feed_and_triage(data, time.time_ns() // 1_000_000, self.router.seen)
        except BadMacError:
            self.close("bad tag: the peer's first frame does not open with the handshake's keys")
            return b""
        if opener.frames_opened:
            self._up(sealer, opener, psk)
            if rows:
                self.router.on_triaged(self, rows)
        return b""
