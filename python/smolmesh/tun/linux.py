"""The Linux TUN device: one file descriptor that carries whole IP packets.

The node opens the device once, watches `fileno()` with the event loop's `add_reader`, and on
each wake-up reads it with `read_batch_raw()` (until it is empty when busy, one packet after a
quiet spell: see `Node._on_tun_readable`); packets for this host go back with `write()` or
`write_batch()`. The fd is non-blocking, so a read past the last queued packet ends the batch
instead of stalling the loop. Addresses, routes and link state are netlink's job
(`smolmesh.netlink`).

Why plain `os.read` with a 64 KiB buffer: measured in a namespace on this project's 2-core
machine, it costs 0.6-1.1 us per packet for 64..1372-byte packets, the same as
`os.read(fd, mtu + 256)`, while `os.readv` into reused bytearrays costs 0.8-1.4 us (handing out
memoryviews) or 1.1-1.9 us (copying out to bytes). CPython shrinks the result in place, so the big
buffer is free, and no packet is ever cut short (the kernel truncates a packet that does not fit
the read), even if the MTU grows under us.

Coalesced writes. The device is opened with IFF_VNET_HDR, so every read and write starts with a
10-byte `struct virtio_net_hdr`. Reads carry no offload (the node never asks for any with
TUNSETOFFLOAD, so the host hands over whole, checksummed packets): `read_batch` cuts the header
off, `read_batch_raw` leaves it for the sealer to skip (`read_skip`), so the node copies nothing.
`write_batch` hands the packets to `_core.tcp_gro`, which joins consecutive TCP segments of one
flow into one GSO packet with a header that tells the host how it was cut (as wireguard-go does
on its TUN device): the host's TCP stack then takes a run of segments in one write instead of a
write, a receive path and often a wake-up of the application each. At MTU 1500 two nodes
carried 55-65% more with it (README, Performance). Any other packet goes out alone behind a zero
header. A kernel that refuses IFF_VNET_HDR gets the plain device (`coalesce` False).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterable
from typing import cast

from smolmesh import _core
from smolmesh.errors import StartupError

DEVICE_PATH = "/dev/net/tun"

# <linux/if_tun.h> and <linux/sockios.h>
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_IFF_VNET_HDR = 0x4000
_TUNSETVNETHDRSZ = 0x400454D8
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
# struct virtio_net_hdr without offloads: a packet as it is.
_VNET_HDR_LEN = _core.VNET_HDR_LEN  # 10
_NO_OFFLOAD = bytes(_VNET_HDR_LEN)
# Runs are made of segments up to this long (the first packet of a batch decides): at MTU 1500 a
# run of 40 segments saves 39 writes and passes through the host's TCP stack; at the node's
# default MTU of 32768 two segments make a run, and the copy and checksum cost about what the
# write saves (README, Performance).
_COALESCE_AT_MOST = 16384
_GSO_SIZES = struct.Struct("<HH")  # hdr_len, gso_size: bytes 2-5 of the header, host order

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

    __slots__ = ("_fd", "coalesce", "mtu", "name", "packets_written", "read_skip", "writes")

    def __init__(self, fd: int, name: str, mtu: int, coalesce: bool = False) -> None:
        self._fd = fd
        self.name = name
        self.mtu = mtu
        self.coalesce = coalesce  # IFF_VNET_HDR: a header before each packet, TCP coalesced
        self.read_skip = _VNET_HDR_LEN if coalesce else 0  # header bytes before a read's packet
        self.packets_written = 0  # IP packets handed to the host by write_batch
        self.writes = 0  # the writes that took them (fewer when TCP segments were coalesced)

    @classmethod
    def open(
        cls,
        name: str = "smolmesh1",
        mtu: int = 1400,
        *,
        txqueuelen: int = DEFAULT_TXQUEUELEN,
        device_path: str = DEVICE_PATH,
        coalesce: bool = True,
    ) -> LinuxTun:
        """Create (or attach to a persistent) TUN device `name` and set its MTU and queue length.

        `coalesce` asks for IFF_VNET_HDR, so that TCP segments for the host are written in runs
        (module doc); a kernel that refuses it gets the plain device. The link stays down and
        without addresses: `smolmesh.netlink.HostRoutes` brings it up. Raises StartupError with
        one line that says what to do.
        """
        raw_name = check_name(name)
        if not 68 <= mtu <= 65535:
            raise StartupError(f"TUN MTU {mtu} is outside 68..65535")
        try:
            fd = os.open(device_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise StartupError(_open_error(device_path, e)) from None
        try:
            try:
                ifr = _set_iff(fd, raw_name, coalesce)
            except OSError as e:
                if not (coalesce and e.errno == errno.EINVAL):
                    raise StartupError(_setiff_error(name, e)) from None
                coalesce = False  # no IFF_VNET_HDR on this kernel: the plain device
                try:
                    ifr = _set_iff(fd, raw_name, coalesce)
                except OSError as e:
                    raise StartupError(_setiff_error(name, e)) from None
            # The kernel writes back the name it used (it differs only for templates like "tun%d",
            # which check_name refuses, but reading it back keeps us honest).
            name = ifr[:_IFNAMSIZ].split(b"\0", 1)[0].decode()
            _set_link_params(name, mtu, txqueuelen)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, name, mtu, coalesce)

    def fileno(self) -> int:
        return self._fd

    def read_batch(self, limit: int = 64) -> list[bytes]:
        """Up to `limit` packets that are waiting now; empty when none is."""
        skip = self.read_skip
        reads = self.read_batch_raw(limit)
        return [read[skip:] for read in reads] if skip else reads

    def read_batch_raw(self, limit: int = 64) -> list[bytes]:
        """As `read_batch`, but each packet behind the `read_skip` bytes of header the device
        gave with it (with IFF_VNET_HDR: no offload, at most a note that the checksum is good).
        The node hands these on as they are: no copy to cut the header off."""
        packets: list[bytes] = []
        read, fd, size = os.read, self._fd, self.read_skip + _READ_SIZE
        try:
            for _ in range(limit):
                packets.append(read(fd, size))
        except BlockingIOError:
            pass
        return packets

    def write(self, packet: bytes | bytearray | memoryview) -> bool:
        """Hand one IP packet to the host. False when the kernel dropped it (not IP, no room)."""
        try:
            if self.coalesce:
                os.writev(self._fd, [_NO_OFFLOAD, packet])
            else:
                os.write(self._fd, packet)
        except OSError as e:
            if e.errno in _DROP_ERRNOS:
                return False
            raise
        return True

    def write_batch(self, packets: Iterable[bytes | bytearray | memoryview], skip: int = 0) -> int:
        """Hand each packet, from byte `skip` on, to the host; returns how many the kernel took.

        `skip` lets the node hand over mesh packets without copying out their IP packets. With
        `coalesce` consecutive TCP segments of a flow go in one write (the count is of packets).
        """
        write, fd = os.write, self._fd
        taken = writes = 0
        batch = packets if isinstance(packets, list) else list(packets)
        if self.coalesce and (len(batch) < 2 or len(batch[0]) - skip > _COALESCE_AT_MOST):
            # A lone packet has nothing to join (and an idle round trip is spared a call into
            # Rust); segments this long gain little from runs (two make a GSO packet) and would
            # cost a copy and a checksum pass. Each goes out alone, behind a header that says so.
            writev = os.writev
            no_offload: list[bytes | bytearray | memoryview] = [_NO_OFFLOAD, b""]
            for packet in batch:
                no_offload[1] = memoryview(packet)[skip:] if skip else packet
                try:
                    writev(fd, no_offload)
                    taken += 1
                    writes += 1
                except OSError as e:
                    if e.errno not in _DROP_ERRNOS:
                        raise
        elif self.coalesce:
            try:
                runs = _core.tcp_gro(cast("list[bytes]", batch), skip)  # as the node's are
            except TypeError:  # a bytearray or memoryview among them
                runs = _core.tcp_gro([bytes(packet) for packet in batch], skip)
            for run in runs:
                try:
                    write(fd, run)
                    writes += 1
                    taken += _packets_in(run)
                except OSError as e:
                    if e.errno not in _DROP_ERRNOS:
                        raise
        else:
            for packet in batch:
                try:
                    write(fd, memoryview(packet)[skip:] if skip else packet)
                    taken += 1
                    writes += 1
                except OSError as e:
                    if e.errno not in _DROP_ERRNOS:
                        raise
        self.packets_written += taken
        self.writes += writes
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


def _packets_in(run: bytes) -> int:
    """How many IP packets one write of `tcp_gro` carries, from its virtio_net_hdr."""
    if run[1] == 0:  # gso_type NONE: one packet as it came
        return 1
    header_len, segment_size = _GSO_SIZES.unpack_from(run, 2)
    return -(-(len(run) - _VNET_HDR_LEN - header_len) // segment_size)


def _set_iff(fd: int, raw_name: bytes, coalesce: bool) -> bytes:
    """TUNSETIFF (and with `coalesce` the 10-byte header size); the kernel's answer."""
    flags = _IFF_TUN | _IFF_NO_PI | (_IFF_VNET_HDR if coalesce else 0)
    request = struct.pack("16sH", raw_name, flags).ljust(_IFREQ_SIZE, b"\0")
    ifr = fcntl.ioctl(fd, _TUNSETIFF, request)
    if coalesce:
        fcntl.ioctl(fd, _TUNSETVNETHDRSZ, struct.pack("i", _VNET_HDR_LEN))
    return ifr


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
