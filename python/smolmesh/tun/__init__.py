"""The TUN device per operating system, behind one small interface (`Tun`).

`open_tun(name, mtu)` gives this platform's device. The node needs nothing else from it: it watches
`fileno()` for readability, drains with `read_batch()`, and hands packets to the host with `write()`
or `write_batch()`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Protocol

from smolmesh.errors import StartupError

__all__ = ["Tun", "open_tun"]


class Tun(Protocol):
    name: str
    mtu: int
    read_skip: int  # bytes before the IP packet in what `read_batch_raw` returns

    def fileno(self) -> int: ...

    def read_batch(self, limit: int = 64) -> list[bytes]: ...

    def read_batch_raw(self, limit: int = 64) -> list[bytes]: ...

    def write(self, packet: bytes | bytearray | memoryview) -> bool: ...

    def write_batch(
        self, packets: Iterable[bytes | bytearray | memoryview], skip: int = 0
    ) -> int: ...

    def close(self) -> None: ...


def open_tun(name: str = "smolmesh1", mtu: int = 1400) -> Tun:
    """Open this platform's TUN device; StartupError when it cannot be had."""
    if sys.platform == "linux":
        from smolmesh.tun.linux import LinuxTun

        return LinuxTun.open(name, mtu)
    raise StartupError(f"smolmesh has no TUN device support on {sys.platform} yet")
