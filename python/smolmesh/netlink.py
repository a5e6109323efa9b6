"""Addresses, host routes and link state of the node's TUN device, over netlink (pyroute2).

Theory of operation: pyroute2's synchronous `IPRoute` (0.9 and later) drives an asyncio loop of its
own and refuses to run in a thread whose loop is already running, which is every call made from the
node's event loop. So `HostRoutes` keeps its `IPRoute` on one worker thread of its own and hands
every call there: the methods are plain synchronous calls, safe from any thread (the event loop's
included), serialized, and each blocks for one netlink round trip (about 0.5 ms measured for a
route add or delete).

Host routes follow the route table, which may learn or lose thousands of addresses in one batch
(a node joining a large mesh, a link to most of it going down): 0.5 ms each, waited for on the
event loop, stood the node still for 5 s per 10,000 addresses, time in which it forwarded
nothing and answered no echo. So the node says which addresses it wants routed (`want_route`,
which returns at once) and the worker brings the kernel in line behind it, one address at a time,
taking the wanted state when it gets to an address: a route learnt and lost again before then
costs nothing.

It remembers what it added, so `close()` can take back exactly that; the kernel also drops every
address and route of the device when the device goes, so cleanup never raises.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from smolmesh.errors import StartupError

__all__ = ["HostRoutes", "format_address"]

T = TypeVar("T")
log = logging.getLogger("smolmesh.netlink")

_IFA_F_NODAD = 0x02  # <linux/if_addr.h>: usable at once, no duplicate address detection wait
_GONE = frozenset({errno.ESRCH, errno.ENOENT, errno.ENODEV, errno.EADDRNOTAVAIL})

# Per-device IPv6 settings, written before the link comes up. The device carries only the mesh's
# /128 and host routes: no link-local address (addr_gen_mode 1), so the host does not send router
# solicitations and the like into the mesh, and no router advertisements are taken from it.
_IPV6_SYSCTLS = (("disable_ipv6", "0"), ("addr_gen_mode", "1"), ("accept_ra", "0"))


def format_address(addr: bytes) -> tuple[int, str, int]:
    """(family, text, host prefix length) of a 4- or 16-byte address."""
    if len(addr) == 16:
        return socket.AF_INET6, socket.inet_ntop(socket.AF_INET6, addr), 128
    if len(addr) == 4:
        return socket.AF_INET, socket.inet_ntop(socket.AF_INET, addr), 32
    raise ValueError(f"an address has 4 or 16 bytes, not {len(addr)}")


class HostRoutes:
    """The host-side state of one network device: link up, MTU, addresses, /128 and /32 routes."""

    def __init__(self, ifname: str, *, sysctl_root: str = "/proc/sys/net/ipv6/conf") -> None:
        self.ifname = ifname
        self._sysctl_dir = Path(sysctl_root) / ifname
        self._routes: set[bytes] = set()
        self._addresses: set[bytes] = set()
        # Addresses the node wants routed (want_route), and those with a sync waiting on the
        # worker. Changed on the node's thread, read on the worker's: see want_route.
        self._wanted: set[bytes] = set()
        self._queued: set[bytes] = set()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smolmesh-netlink")
        self._ipr: Any = None
        try:
            self._ipr = self._call(IPRoute)
            found = self._call(self._ipr.link_lookup, ifname=ifname)
        except BaseException:
            self.close()
            raise
        if not found:
            self.close()
            raise StartupError(f"network device {ifname} does not exist")
        self.index: int = found[0]

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._worker.submit(fn, *args, **kwargs).result()

    def up(self, mtu: int | None = None) -> None:
        """Enable IPv6 on the device (see _IPV6_SYSCTLS), set the MTU if given, and bring it up."""
        for key, value in _IPV6_SYSCTLS:
            try:
                (self._sysctl_dir / key).write_text(value)
            except OSError as e:
                # Only disable_ipv6 is needed for the /128 to work; the others are niceties.
                if key == "disable_ipv6":
                    raise StartupError(
                        f"cannot enable IPv6 on {self.ifname}: {e.strerror}"
                    ) from None
        settings: dict[str, Any] = {"state": "up"}
        if mtu is not None:
            settings["mtu"] = mtu
        try:
            self._call(self._ipr.link, "set", index=self.index, **settings)
        except NetlinkError as e:
            raise StartupError(f"cannot bring up {self.ifname}: {_reason(e)}") from None

    def setup(self, mtu: int | None, ipv6: bytes, ipv4s: Iterable[bytes] = ()) -> None:
        """The node's start: the link up with its MTU, its /128 and each /32 on the device."""
        self.up(mtu)
        for addr in (ipv6, *ipv4s):
            self.add_address(addr)

    def add_address(self, addr: bytes) -> None:
        """Put a 16-byte IPv6 address on the device as /128 (no DAD) or a 4-byte IPv4 one as /32."""
        family, text, prefixlen = format_address(addr)
        extra = {"flags": _IFA_F_NODAD} if family == socket.AF_INET6 else {}
        try:
            self._call(
                self._ipr.addr, "add", index=self.index, address=text, prefixlen=prefixlen, **extra
            )
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise StartupError(
                    f"cannot add {text}/{prefixlen} to {self.ifname}: {_reason(e)}"
                ) from None
        self._addresses.add(addr)

    def want_route(self, addr: bytes, routed: bool) -> None:
        """Route `addr` through the device, or not, soon: returns at once, and the worker makes
        it so after the changes asked for before (a failure is logged there). The wanted state
        is set before a sync is queued, and the worker drops an address from the queued ones
        before it reads that state, so no change is missed."""
        if routed:
            self._wanted.add(addr)
        else:
            self._wanted.discard(addr)
        if addr not in self._queued:
            self._queued.add(addr)
            self._worker.submit(self._sync, addr)

    def add_route(self, addr: bytes) -> None:
        """Route one address (/128 or /32) through the device, replacing any route it had, and
        return once it is done (`want_route`, waited for)."""
        self.want_route(addr, True)
        self.wait()

    def remove_route(self, addr: bytes) -> None:
        """Take back a route this object set, and return once it is done; a route that is
        already gone is fine."""
        self.want_route(addr, False)
        self.wait()

    def wait(self) -> None:
        """Return once the worker has made every change asked for before (never on the worker)."""
        self._call(lambda: None)

    def _sync(self, addr: bytes) -> None:
        """On the worker: add or remove the route of `addr` as wanted now."""
        self._queued.discard(addr)
        wanted = addr in self._wanted
        if wanted == (addr in self._routes) or self._ipr is None:
            return
        try:
            # Already on the worker: call straight through, not by way of `_call`.
            if wanted:
                self._change_route("replace", addr)
                self._routes.add(addr)
            else:
                self._routes.discard(addr)
                self._change_route("del", addr)
        except NetlinkError as e:
            if wanted or e.code not in _GONE:
                log.warning("host route to %s: %s", format_address(addr)[1], _reason(e))
        except OSError as e:  # the netlink socket itself failed
            log.warning("host route to %s: %s", format_address(addr)[1], e.strerror or e)

    def _change_route(self, command: str, addr: bytes) -> None:
        family, text, prefixlen = format_address(addr)
        self._ipr.route(command, dst=text, dst_len=prefixlen, oif=self.index, family=family)

    @property
    def pending(self) -> int:
        """Addresses whose host route the worker has yet to bring in line."""
        return len(self._queued)

    @property
    def routes(self) -> frozenset[bytes]:
        """The addresses this object routes through the device now."""
        return frozenset(self._routes)

    def close(self) -> None:
        """Remove the routes and addresses this object added, then let go. Never raises."""
        self._wanted.clear()  # the syncs still queued now only take routes away
        if self._ipr is not None:
            self._quietly(self._call, self._remove_routes)  # after them, on the worker
            for addr in list(self._addresses):
                self._quietly(self._remove_address, addr)
            self._quietly(self._call, self._ipr.close)
            self._ipr = None
        self._routes.clear()
        self._addresses.clear()
        self._worker.shutdown(wait=True)

    def _remove_routes(self) -> None:
        """On the worker (which alone changes `_routes`): take back every route set."""
        for addr in list(self._routes):
            self._quietly(self._change_route, "del", addr)
        self._routes.clear()

    def _remove_address(self, addr: bytes) -> None:
        self._addresses.discard(addr)
        _, text, prefixlen = format_address(addr)
        self._call(self._ipr.addr, "del", index=self.index, address=text, prefixlen=prefixlen)

    @staticmethod
    def _quietly(fn: Callable[..., object], *args: object) -> None:
        # Cleanup: the device may be gone already, which took everything with it.
        with contextlib.suppress(Exception):
            fn(*args)

    def __enter__(self) -> HostRoutes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(e: NetlinkError) -> str:
    return os.strerror(e.code) if isinstance(e.code, int) and e.code > 0 else str(e)
