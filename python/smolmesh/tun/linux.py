"""The Linux TUN device: one file descriptor that carries whole IP packets.

The node opens the device once, watches `fileno()` with the event loop's `add_reader`, and on
each wake-up reads it with `read_batch()` (until it is empty when busy, one packet after a quiet
spell: see `Node._on_tun_readable`); packets for this host go back with `write()` or
`write_batch()`. The fd is non-blocking, so a read past the last queued packet ends the batch
instead of stalling the loop. Addresses, routes and link state are netlink's job
(`smolmesh.netlink`).

Why plain `os.read` with a 64 KiB buffer: measured in a namespace on this project's 2-core
machine, it costs 0.6-1.1 us per packet for 64..1372-byte packets, the same as
`os.read(fd, mtu + 256)`, while `os.readv` into reused bytearrays costs 0.8-1.4 us (handing out
memoryviews) or 1.1-1.9 us (copying out to bytes). CPython shrinks the result in place, so the big
buffer is free, and no packet is ever cut short (the kernel truncates a packet that does not fit
the read), even if the MTU grows under us.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterable

from smolmesh.errors import StartupError

DEVICE_PATH = "/dev/net/tun"

# <linux/if_tun.h> and <linux/sockios.h>
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_SIOCSIFMTU = 0x8922
_SIOCSIFTXQLEN = 0x8943
_IFNAMSIZ = 16  # with the closing NUL, so names have at most 15 bytes
_IFREQ_SIZE = 40

# Kernel default for TUN is 500 queued packets; a burst from a fast local sender overflows that
# before the node's loop gets to read, and drops there are silent. 1000 matches Ethernet devices.
DEFAULT_TXQUEUELEN = 1000

# The largest packet the device gives: a TUN device's MTU is at most 65535 (the kernel's max_mtu
# for TUN), and the node takes `mtu` up to that. Longer than a mesh packet holds is the node's
# business (it answers with ICMP); a read cut short would hand it a malformed packet instead.
_READ_SIZE = 65535

# Write errors that lose one packet and leave the device fine: a packet the kernel will not take
# (EINVAL: not IPv4 or IPv6; EMSGSIZE), or no memory/queue room for it right now.
_DROP_ERRNOS = frozenset({errno.EINVAL, errno.EMSGSIZE, errno.ENOBUFS, errno.EAGAIN, errno.ENOMEM})


def check_name(name: str) -> bytes:
    """The interface name as the kernel takes it; StartupError names the rule a bad one breaks."""
    raw = name.encode()
    if not raw or len(raw) >= _IFNAMSIZ:
        raise StartupError(
            f"TUN device name {name!r} must have 1 to {_IFNAMSIZ - 1} bytes, has {len(raw)}"
        )
    if name in (".", "..") or any(c in name for c in "/:%") or any(c.isspace() for c in name):
        raise StartupError(f"TUN device name {name!r} may not contain '/', ':', '%' or spaces")
    return raw


class LinuxTun:
    """An open TUN device (IFF_TUN | IFF_NO_PI): each read or write is one whole IP packet.

    Make one with `LinuxTun.open(name, mtu)`. Closing it (or the process ending) removes the device
    from the host together with its addresses and routes, unless it was made persistent beforehand
    (`ip tuntap add`), in which case it stays for the next run.
    """

    __slots__ = ("_fd", "mtu", "name")

    def __init__(self, fd: int, name: str, mtu: int) -> None:
        self._fd = fd
        self.name = name
        self.mtu = mtu

    @classmethod
    def open(
        cls,
        name: str = "smolmesh1",
        mtu: int = 1400,
        *,
        txqueuelen: int = DEFAULT_TXQUEUELEN,
        device_path: str = DEVICE_PATH,
    ) -> LinuxTun:
        """Create (or attach to a persistent) TUN device `name` and set its MTU and queue length.

        The link stays down and without addresses: `smolmesh.netlink.HostRoutes` brings it up.
        Raises StartupError with one line that says what to do.
        """
        raw_name = check_name(name)
        if not 68 <= mtu <= 65535:
            raise StartupError(f"TUN MTU {mtu} is outside 68..65535")
        try:
            fd = os.open(device_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise StartupError(_open_error(device_path, e)) from None
        try:
            ifr = struct.pack("16sH", raw_name, _IFF_TUN | _IFF_NO_PI).ljust(_IFREQ_SIZE, b"\0")
            try:
                ifr = fcntl.ioctl(fd, _TUNSETIFF, ifr)
            except OSError as e:
                raise StartupError(_setiff_error(name, e)) from None
            # The kernel writes back the name it used (it differs only for templates like "tun%d",
            # which check_name refuses, but reading it back keeps us honest).
            name = ifr[:_IFNAMSIZ].split(b"\0", 1)[0].decode()
            _set_link_params(name, mtu, txqueuelen)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, name, mtu)

    def fileno(self) -> int:
        return self._fd

    def read_batch(self, limit: int = 64) -> list[bytes]:
        """Up to `limit` packets that are waiting now; empty when none is."""
        packets: list[bytes] = []
        read, fd, size = os.read, self._fd, _READ_SIZE
        try:
            for _ in range(limit):
                packets.append(read(fd, size))
        except BlockingIOError:
            pass
        return packets

    def write(self, packet: bytes | bytearray | memoryview) -> bool:
        """Hand one IP packet to the host. False when the kernel dropped it (not IP, no room)."""
        try:
            os.write(self._fd, packet)
        except OSError as e:
            if e.errno in _DROP_ERRNOS:
                return False
            raise
        return True

    def write_batch(self, packets: Iterable[bytes | bytearray | memoryview], skip: int = 0) -> int:
        """Hand each packet, from byte `skip` on, to the host; returns how many the kernel took.

        `skip` lets the node hand over mesh packets without copying out their IP packets.
        """
        write, fd = os.write, self._fd
        taken = 0
        for packet in packets:
            try:
                write(fd, memoryview(packet)[skip:] if skip else packet)
                taken += 1
            except OSError as e:
                if e.errno not in _DROP_ERRNOS:
                    raise
        return taken

    def close(self) -> None:
        """Release the device; safe to call twice."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> LinuxTun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<LinuxTun {self.name} mtu={self.mtu} {state}>"


def _set_link_params(name: str, mtu: int, txqueuelen: int) -> None:
    """Set MTU and queue length with the classic ioctls: one syscall each, no netlink socket."""
    raw_name = name.encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for request, value, what in (
            (_SIOCSIFMTU, mtu, "MTU"),
            (_SIOCSIFTXQLEN, txqueuelen, "txqueuelen"),
        ):
            ifr = struct.pack("16si", raw_name, value).ljust(_IFREQ_SIZE, b"\0")
            try:
                fcntl.ioctl(s.fileno(), request, ifr)
            except OSError as e:
                raise StartupError(f"cannot set {what} {value} on {name}: {e.strerror}") from None


def _open_error(path: str, e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return f"{path} does not exist: load the tun module (modprobe tun) or allow TUN devices"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to open {path}: run as root or with CAP_NET_ADMIN"
    return f"cannot open {path}: {e.strerror}"


def _setiff_error(name: str, e: OSError) -> str:
    if e.errno == errno.EPERM:
        return f"no permission to create TUN device {name}: run as root or with CAP_NET_ADMIN"
    if e.errno == errno.EBUSY:
        return f"TUN device {name} is in use by another process (another node running?)"
    if e.errno == errno.EINVAL:
        return f"cannot use {name!r} as a TUN device: the name belongs to a device of another kind"
    return f"cannot create TUN device {name}: {e.strerror}"
