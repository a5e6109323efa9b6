"""legacy_tcp links: the encrypted TCP link of smolmesh2 (PROTOCOL.md section 2).

The connector sends `iv || keyfinder` at once; the listener waits for the peer's 32 bytes, finds
the PSK among its keys and answers with its own; each side derives its keys from the PSK and the
IV of its direction. Everything else of a link (frames, silence, backpressure) is `TcpLink`'s.
Whoever records one of these handshakes can recover every key of its PSK (README, "Security"):
between smolmesh nodes, secure_tcp is the link to use.
"""

from __future__ import annotations

import asyncio
import os

from smolmesh import _core
from smolmesh.links.tcp import TcpLink


class LegacyTcpLink(TcpLink):
    """One legacy_tcp connection, outgoing (one key) or incoming (any of the listener's keys)."""

    transport_type = "legacy_tcp"

    def _begin_handshake(self, stream: asyncio.Transport) -> None:
        self._my_iv = os.urandom(_core.IV_LEN)
        self._hello = b""
        if self.outgoing:
            stream.write(_core.make_hello(self.psks[0], self._my_iv))

    def _handshake(self, data: bytes) -> bytes:
        need = _core.HELLO_LEN - len(self._hello)
        self._hello += data[:need]
        rest = data[need:]
        if len(self._hello) < _core.HELLO_LEN:
            return b""
        peer_iv = self._hello[: _core.IV_LEN]
        if self.outgoing:
            psk = self.psks[0]
            if _core.find_psk(self._hello, [psk]) is None:
                self.close("wrong key: the peer's hello does not match our key")
                return b""
        else:
            index = _core.find_psk(self._hello, self.psks)
            if index is None:
                self.close("wrong key: the peer's hello matches none of our keys")
                return b""
            psk = self.psks[index]
            assert self.transport is not None
            self.transport.write(_core.make_hello(psk, self._my_iv))
        self._up(_core.Sealer(psk, self._my_iv), _core.Opener(psk, peer_iv), psk)
        return rest
