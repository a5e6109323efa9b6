"""The node: wires links, router, TUN device and host routes together, and is the Python API.

    async with smolmesh.Node(config, tun=False) as node:
        node.send(ip_packet)                 # into the mesh, as if read from a TUN device
        packet = await node.receive()        # an IP packet addressed to this node

Several nodes may run in one event loop; none of them touches global state.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import logging
import os
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from time import time_ns
from types import MappingProxyType
from typing import Any

import msgspec

from smolmesh import _core, tuning
from smolmesh.config import (
    Config,
    SecureTcpConnect,
    SecureTcpListen,
    TcpConnect,
    TcpListen,
    load_config,
    parse_config,
)
from smolmesh.errors import ConfigError, StartupError
from smolmesh.links.legacy_tcp import LegacyTcpLink
from smolmesh.links.secure_tcp import SecureTcpLink, secure_psk
from smolmesh.links.tcp import PendingHandshakes, TcpLink, dial_forever, listen
from smolmesh.ratelimit import TokenBucket
from smolmesh.router import Link, Route, Router, format_address, now_ms
from smolmesh.warmth import KeepWarm

log = logging.getLogger("smolmesh.node")

# The longest IP packet one mesh packet holds (65,526 bytes: 65,535 less the 9-byte header).
MAX_IP_PACKET_LEN = _core.MAX_PACKET_LEN - _core.HEADER_LEN


@dataclass(frozen=True)
class LinkInfo:
    """A snapshot of one link that is up."""

    peer: str
    outgoing: bool
    transport: str  # "secure_tcp" (smolmesh's own link) or "legacy_tcp" (smolmesh2's)
    up_since: float
    bytes_sent: int
    bytes_received: int
    packets_dropped: int
    # Bytes a second over the node's last maintenance period (about a second); 0.0 until then.
    sent_per_s: float = 0.0
    received_per_s: float = 0.0
    # The peer sent this node's own announcements back over the link, as smolmesh2 does with
    # every announcement: a backup path over this link is no proof of a second way.
    returns_announcements: bool = False
    # The peer has stopped acknowledging (two retransmission timeouts and half a second without an
    # acknowledgement), or on secure_tcp its process has answered no echo for half a second: the
    # link's routes have moved to other paths where there are any.
    silent: bool = False
    silences: int = 0  # times the link has fallen silent since it came up
    # Whether the peer answers echo requests, so that a peer whose process stops while its kernel
    # acknowledges is found (secure_tcp; docs/SECURE_TCP.md section 4); None where the kind of
    # link has no echo (legacy_tcp).
    answers_echo: bool | None = None
    # The kernel's smoothed round trip to the peer, and the TCP segments it has sent again over the
    # link (lost on the way, or taken for lost); None where the kernel does not tell (not Linux).
    rtt_ms: float | None = None
    retransmitted_segments: int | None = None


@dataclass(frozen=True)
class RouteInfo:
    """A snapshot of one route: where packets to `address` go."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    via: str  # the peer of the link in use
    name: str | None  # the node name, for a node's own address
    backup_paths: int  # other links the address was heard over


@dataclass
class _Listening:
    """A listening transport of a running node: its server, and the PSKs its links are taken
    with (one list, which the links share and a reload changes in place)."""

    server: asyncio.Server
    psks: list[bytes]


class Node:
    """A smolmesh node. `config` is a `smolmesh.Config` or a dict of the JSON config's shape.

    `tun`: None follows the config's `linux_tuntap`; False runs without a TUN device (packets for
    this node wait in `receive()`); True requires one.
    """

    def __init__(self, config: Config | Mapping[str, Any], *, tun: bool | None = None) -> None:
        if not isinstance(config, Config):
            config = parse_config(config, "config")
        self.config = config
        self.address_bytes = _core.name_to_ipv6(config.node_name)
        self.address = ipaddress.IPv6Address(self.address_bytes)
        self.ipv4_addresses = [ipaddress.IPv4Address(a) for a in config.ipv4_addresses]
        on_windows = sys.platform == "win32"
        wanted = config.windows_tuntap if on_windows else config.linux_tuntap
        self.use_tun = wanted if tun is None else tun
        local = [self.address_bytes] + [a.packed for a in self.ipv4_addresses]
        self.router = Router(local, self._deliver, self._route_changed)
        self._received: deque[bytes] = deque(maxlen=tuning.RECEIVE_QUEUE_LIMIT)
        self._received_event = asyncio.Event()
        self._stopping = asyncio.Event()
        self._pending = PendingHandshakes()
        # The transports running now: each listener by its kind and port, with its server and
        # the PSKs its links are taken with (one list, changed in place when a reload changes
        # the keys); each connect by its config entry, with the task that dials it.
        self._listening: dict[tuple[type, int], _Listening] = {}
        self._dialing: dict[TcpConnect, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._all_links: set[TcpLink] = set()
        self._reannounce: asyncio.TimerHandle | None = None
        self._announced_at = 0.0  # monotonic time of the last announcement on every link
        self._tun: Any = None
        self._host: Any = None
        self._tun_read_ms = 0  # when the device was last read (ms since the epoch)
        # ICMP errors for packets too long for the mesh: limited as configured, counted in `status`.
        self._icmp_errors = TokenBucket(
            config.icmp_errors_per_s, config.icmp_error_burst, time.monotonic()
        )
        self.icmp_errors_sent = 0
        self.icmp_errors_suppressed = 0  # over the limit: not sent
        # Announcements made to ask smolmesh2 peers for an echo (_announce_for_echo), counted in
        # `status`: what watching legacy_tcp links for a stopped peer costs the mesh.
        self.echo_announcements = 0
        # Wakes the node every few milliseconds while sparse traffic flows (warmth.py); made at
        # start, as it needs the running loop.
        self._warmth: KeepWarm | None = None
        # Each link's byte counters at the last maintenance, and the rates measured since the one
        # before: (monotonic time, bytes sent, bytes received) and (sent, received) per second.
        self._link_counts: dict[Link, tuple[float, int, int]] = {}
        self._link_rates: dict[Link, tuple[float, float]] = {}
        self.started = False
        self.started_at = 0.0
        # Links that may be up at once before incoming ones are refused: set at start from the
        # open-file limit of the process (see _room_for_incoming_link); None where it has none.
        self.links_allowed: int | None = None
        # The file the config came from, for `smolmesh reload` to check before it signals the
        # node (set by `smolmesh meshnode`; None for a node made in Python).
        self.config_path: str | None = None

    # --- Lifecycle ---
    async def start(self) -> None:
        if self.started:
            return
        self._stopping.clear()  # a stopped node may be started again
        limit = open_file_limit()
        self.links_allowed = None if limit is None else max(1, limit - tuning.FILES_KEPT_FREE)
        try:
            if self.use_tun:
                self._open_tun()
            await _derive_secure_psks(self.config)
            for transport in self.config.transports:
                if isinstance(transport, TcpListen):
                    await self._listen(transport)
            for transport in self.config.transports:
                if isinstance(transport, TcpConnect):
                    self._dial(transport)
        except BaseException:
            await self.stop()
            raise
        self._tasks.append(asyncio.create_task(self._announce_forever()))
        self._tasks.append(asyncio.create_task(self._maintain_forever()))
        self._warmth = KeepWarm(self.router, self.config.keep_warm_s)
        self.started = True
        self.started_at = time.time()
        log.info(
            "node %s up as %s%s",
            self.config.node_name,
            self.address,
            "" if self.links_allowed is None else f" (at most {self.links_allowed} links)",
        )

    async def stop(self) -> None:
        self._stopping.set()
        if self._reannounce is not None:
            self._reannounce.cancel()
        servers = [listening.server for listening in self._listening.values()]
        tasks = self._tasks + list(self._dialing.values())
        for server in servers:
            server.close()
        for link in list(self._all_links):
            link.close("node stopping")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            await server.wait_closed()
        self._listening.clear()
        self._dialing.clear()
        self._tasks.clear()
        if self._warmth is not None:
            self._warmth.close()
        self._close_tun()
        if self.started:
            log.info("node %s stopped", self.config.node_name)
        self.started = False

    async def reload(self, config: Config | Mapping[str, Any]) -> None:
        """Apply a changed config to the running node (`smolmesh meshnode` does on SIGHUP).

        Transports take effect at once: a new one listens or dials, a removed one stops and its
        links close, and a listener whose `keys` changed closes the links that came up with a key
        no longer listed. Any other field needs a restart: the node logs which and keeps its own.
        Raises ConfigError (the node unchanged) for a config that does not check, and
        RuntimeError on a node that is not running (make a new `Node` instead).
        """
        if not self.started:
            raise RuntimeError("reload() needs a started node; a new Node takes a new config")
        if not isinstance(config, Config):
            config = parse_config(config, "config")
        await _derive_secure_psks(config)
        fixed = {
            field: getattr(self.config, field)
            for field in Config.__struct_fields__
            if field != "transports" and getattr(config, field) != getattr(self.config, field)
        }
        if fixed:
            log.warning("config: %s changed; restart the node to apply it", ", ".join(fixed))
        listens = {(type(t), t.port): t for t in config.transports if isinstance(t, TcpListen)}
        for key in self._listening.keys() - listens.keys():
            self._listening.pop(key).server.close()
            self._close_links(key, None, "its transport left the config")
        for key, listener in listens.items():
            if key not in self._listening:
                try:
                    await self._listen(listener)
                except StartupError as error:  # a port in use: the rest still applies
                    log.error("config: %s", error)
                continue
            psks = _link_kind(listener, listener.keys)[1]
            if psks != self._listening[key].psks:
                self._listening[key].psks[:] = psks
                self._close_links(key, psks, "its key left the config")
        connects = {t for t in config.transports if isinstance(t, TcpConnect)}
        for connect in self._dialing.keys() - connects:
            self._dialing.pop(connect).cancel()
            self._close_links(connect, None, "its transport left the config")
        for connect in connects - self._dialing.keys():
            self._dial(connect)
        self.config = msgspec.structs.replace(config, **fixed)
        log.info(
            "config reloaded: %d transports listening, %d dialing",
            len(self._listening),
            len(self._dialing),
        )

    async def _listen(self, transport: TcpListen) -> None:
        kind, psks = _link_kind(transport, transport.keys)
        key = (type(transport), transport.port)
        make_link = functools.partial(self._new_link, kind, psks, False, key)
        server = await listen(transport.port, make_link, self._pending)
        self._listening[key] = _Listening(server, psks)

    def _dial(self, transport: TcpConnect) -> None:
        kind, psks = _link_kind(transport, [transport.key])
        make_link = functools.partial(self._new_link, kind, psks, True, transport)
        self._dialing[transport] = asyncio.create_task(
            dial_forever(transport.host, transport.port, make_link, self._stopping)
        )

    def _close_links(self, origin: object, keep_psks: list[bytes] | None, reason: str) -> None:
        """Close the links that came from `origin`, except those whose PSK is in `keep_psks`."""
        for link in list(self._all_links):
            if link.origin == origin and (keep_psks is None or link.psk not in keep_psks):
                link.close(reason)

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- Views ---
    @property
    def links(self) -> list[LinkInfo]:
        infos = []
        for link in self.router.links:
            sent_per_s, received_per_s = self._link_rates.get(link, (0.0, 0.0))
            stats = link.tcp_stats() if isinstance(link, TcpLink) else None
            rtt_ms, retransmitted = stats if stats is not None else (None, None)
            infos.append(
                LinkInfo(
                    peer=link.label,
                    outgoing=link.outgoing,
                    transport=getattr(link, "transport_type", ""),
                    up_since=link.up_since or 0.0,
                    bytes_sent=link.bytes_sent,
                    bytes_received=link.bytes_received,
                    packets_dropped=link.packets_dropped,
                    sent_per_s=sent_per_s,
                    received_per_s=received_per_s,
                    returns_announcements=link.returns_announcements,
                    silent=link.silent,
                    silences=getattr(link, "silences", 0),
                    answers_echo=(
                        link.echo_answered if isinstance(link, TcpLink) and link.echoes else None
                    ),
                    rtt_ms=rtt_ms,
                    retransmitted_segments=retransmitted,
                )
            )
        return infos

    @property
    def routes(self) -> Mapping[ipaddress.IPv4Address | ipaddress.IPv6Address, RouteInfo]:
        table = {}
        for address, route in self.router.routes.items():
            ip = ipaddress.ip_address(address)
            table[ip] = RouteInfo(ip, route.link.label, route.name, len(route.paths) - 1)
        return MappingProxyType(table)

    def status(self) -> dict[str, Any]:
        """Everything `smolmesh status` shows, as plain JSON-ready data."""
        status = self._status_without_routes()
        status["routes"] = _route_rows(self.router.routes, list(self.router.routes))
        return status

    async def status_in_slices(self) -> dict[str, Any]:
        """`status()`, with the event loop let in between slices of the route table: what the
        status socket serves. A full table (65,536 routes) takes about 0.1 s to describe on a
        slow machine, and packets would wait that long behind it.

        A route learnt or forgotten while it is built may be missed or shown all the same."""
        status = self._status_without_routes()
        routes = self.router.routes
        # The addresses, not (address, route) pairs: bytes are no work for the garbage collector,
        # while 65,536 pairs that outlive a turn of the loop set off a full collection (45 ms).
        addresses = list(routes)
        rows: list[dict[str, Any]] = []
        step = tuning.STATUS_ROUTES_PER_SLICE
        for start in range(0, len(addresses), step):
            if start:
                await asyncio.sleep(0)
            rows += _route_rows(routes, addresses[start : start + step])
        status["routes"] = rows
        return status

    def _status_without_routes(self) -> dict[str, Any]:
        return {
            "node_name": self.config.node_name,
            "address": str(self.address),
            "ipv4_addresses": [str(a) for a in self.ipv4_addresses],
            "pid": os.getpid(),
            "config_path": self.config_path,
            "started_at": self.started_at,
            "tun": self.config.tun_name if self._tun is not None else None,
            "links": [dataclasses.asdict(link) for link in self.links],
            "links_allowed": self.links_allowed,  # then incoming links are refused; None: no cap
            "routes": [],  # filled in by the caller, in this place
            "route_table_bytes": self.router.route_bytes,  # bounded by MAX_ROUTE_BYTES
            "routes_refused": self.router.routes_refused,  # new addresses the full table ignored
            # Packets handed to the host through the device, and the writes that took them: fewer
            # writes than packets is TCP segments coalesced (tun/linux.py).
            "tun_packets_written": self._tun.packets_written if self._tun is not None else 0,
            "tun_writes": self._tun.writes if self._tun is not None else 0,
            "icmp_errors_sent": self.icmp_errors_sent,
            "icmp_errors_suppressed": self.icmp_errors_suppressed,
            "echo_announcements": self.echo_announcements,
            # Wake-ups to keep the packet path warm while sparse traffic flows (warmth.py).
            "warm_ticks": self._warmth.ticks if self._warmth is not None else 0,
        }

    @property
    def listening_ports(self) -> list[int]:
        servers = [listening.server for listening in self._listening.values()]
        ports = {sock.getsockname()[1] for server in servers for sock in server.sockets}
        return sorted(ports)

    # --- Data through the API ---
    def send(self, ip_packet: bytes) -> bool:
        """Send one IP packet into the mesh; False if there is no route to its destination."""
        if len(ip_packet) > MAX_IP_PACKET_LEN:
            raise ValueError(
                f"an IP packet of {len(ip_packet)} bytes does not fit in one mesh packet"
                f" (at most {MAX_IP_PACKET_LEN} bytes)"
            )
        return self.router.route_packets([bytes(ip_packet)], now_ms()) == 1

    async def receive(self) -> bytes:
        """The next IP packet addressed to this node (when it runs without a TUN device)."""
        while not self._received:
            self._received_event.clear()
            await self._received_event.wait()
        return self._received.popleft()

    def _deliver(self, mesh_packets: list[bytes]) -> None:
        """Keep packets for `receive()`; with a TUN device the router writes to it instead."""
        header = _core.HEADER_LEN
        self._received.extend(packet[header:] for packet in mesh_packets)
        self._received_event.set()

    # --- Links ---
    def _new_link(
        self, kind: type[TcpLink], psks: list[bytes], outgoing: bool, origin: object
    ) -> TcpLink:
        link = kind(self.router, psks, outgoing=outgoing)
        link.origin = origin
        link.on_up = self._link_up
        link.on_down = lambda link, reason: self._link_changed()
        link.on_silence = self._link_silence
        link.on_echo_wanted = self._announce_for_echo
        if not outgoing:
            link.admit = self._room_for_incoming_link
        self._all_links.add(link)
        link.closed.add_done_callback(lambda _: self._all_links.discard(link))
        return link

    def _room_for_incoming_link(self) -> str | None:
        """None while an incoming link may come up; else why not. Each link is an open file, and
        a process out of them accepts nothing more and logs nothing about it: the event loop
        resets the connections it has no file for."""
        if self.links_allowed is None or len(self.router.links) < self.links_allowed:
            return None
        return (
            f"too many links ({len(self.router.links)} up; this process may open"
            f" {open_file_limit()} files, {tuning.FILES_KEPT_FREE} of them kept for the rest)"
        )

    def _link_up(self, link: TcpLink) -> None:
        """Greet a new peer with a fresh announcement of this node, then tell the whole mesh."""
        link.send_packets(self._own_announcements(remember=True), control=True)
        self._link_changed()

    def _link_silence(self, link: TcpLink, silent_for: float | None, cause: str) -> None:
        """A link's peer fell silent (`silent_for` seconds; `cause`: how it shows), or (None)
        answers again: the router moves the link's routes (Router.link_silent). A link that falls
        silent also makes the node announce itself soon, as a link that goes down does, so that
        nodes whose routes to it crossed that link learn the paths that are left."""
        was_silent = link.silent
        self.router.link_silent(link, silent_for, cause)
        if link.silent and not was_silent:
            link.silences += 1
            self._link_changed()

    def _link_changed(self) -> None:
        """Announce again soon, so the mesh learns the new paths without waiting for the period.

        The wait is short and random, so that the two ends of a new link, which change at the same
        moment, do not flood at the same moment and each learn the other as a backup path too.
        """
        if self._stopping.is_set() or self._reannounce is not None:
            return
        delay = random.uniform(tuning.REANNOUNCE_MIN_S, tuning.REANNOUNCE_MAX_S)
        self._reannounce = asyncio.get_running_loop().call_later(delay, self._announce_now)

    # --- Periodic work ---
    def _own_announcements(self, *, remember: bool = False) -> list[bytes]:
        """This node's announcements, stamped now: its name, then each IPv4 address."""
        stamp = now_ms()
        packets = [_core.make_packet(stamp, _core.CMD_NAME, self.config.node_name.encode())]
        packets += [_core.make_packet(stamp, _core.CMD_IPV4, a.packed) for a in self.ipv4_addresses]
        if remember:
            for packet in packets:
                self.router.seen.insert(packet)
        return packets

    def _announce_now(self) -> None:
        # A reannouncement still to come is this one: cancelled (harmless when it is the one
        # running now), so that the periodic or an echo announcement is not followed by another.
        if self._reannounce is not None:
            self._reannounce.cancel()
            self._reannounce = None
        self._announced_at = time.monotonic()
        self.router.announce(self._own_announcements())

    def _announce_for_echo(self, quiet_since: float) -> float | None:
        """A legacy_tcp link whose smolmesh2 peer has been quiet since `quiet_since` (monotonic)
        wants this node's announcement back as an echo (TcpLink.on_echo_wanted): an announcement
        that went out since serves; else announce now, unless the last one went out less than
        ECHO_ANNOUNCE_MIN_S ago (then None: the link asks again). Announcing floods the mesh,
        so one-way traffic to a quiet smolmesh2 peer costs at most one flood that often.

        "Since" leaves a margin: the kernel gives the quiet time in jiffies, and on a LAN the
        peer's last bytes may be the very announcement it sent back a millisecond after it went
        out, which must not count as unanswered."""
        if self._announced_at >= quiet_since + _ECHO_ANNOUNCE_MARGIN_S:
            return self._announced_at
        if time.monotonic() - self._announced_at < tuning.ECHO_ANNOUNCE_MIN_S:
            return None
        self._announce_now()
        self.echo_announcements += 1
        return self._announced_at

    async def _announce_forever(self) -> None:
        while True:
            self._announce_now()
            await asyncio.sleep(random.uniform(tuning.ANNOUNCE_MIN_S, tuning.ANNOUNCE_MAX_S))

    async def _maintain_forever(self) -> None:
        while True:
            await asyncio.sleep(tuning.MAINTENANCE_PERIOD_S)
            self.router.expire()
            self._measure_link_rates(time.monotonic())
            stalled_before = time.monotonic() - tuning.STALL_TIMEOUT_S
            for link in list(self.router.links):
                since = link.congested_since
                if since is not None and since < stalled_before:
                    link.close("stalled: the peer reads nothing")

    def _measure_link_rates(self, now: float) -> None:
        """Each link's bytes a second since the last call, for `links` and `status`."""
        counts: dict[Link, tuple[float, int, int]] = {}
        rates: dict[Link, tuple[float, float]] = {}
        for link in self.router.links:
            counts[link] = (now, link.bytes_sent, link.bytes_received)
            before = self._link_counts.get(link)
            if before is not None and now > before[0]:
                elapsed = now - before[0]
                rates[link] = (
                    (link.bytes_sent - before[1]) / elapsed,
                    (link.bytes_received - before[2]) / elapsed,
                )
        self._link_counts, self._link_rates = counts, rates  # links gone are forgotten

    # --- TUN device and host routes ---
    def _open_tun(self) -> None:
        if not sys.platform.startswith("linux"):
            raise StartupError(
                "this smolmesh has TUN devices on Linux only; set windows_tuntap to false to relay"
            )
        from smolmesh.netlink import HostRoutes
        from smolmesh.tun.linux import LinuxTun

        mtu = self.config.mtu or tuning.DEFAULT_MTU
        self._tun = LinuxTun.open(self.config.tun_name, mtu=mtu, coalesce=self.config.tun_coalesce)
        self._host = HostRoutes(self.config.tun_name)
        self._host.setup(mtu, self.address_bytes, [a.packed for a in self.ipv4_addresses])
        asyncio.get_running_loop().add_reader(self._tun.fileno(), self._on_tun_readable)
        self.router.deliver = functools.partial(self._tun.write_batch, skip=_core.HEADER_LEN)

    def _close_tun(self) -> None:
        if self._tun is None:
            return
        self.router.deliver = self._deliver
        with contextlib.suppress(RuntimeError, ValueError, OSError):  # loop or fd already gone
            asyncio.get_running_loop().remove_reader(self._tun.fileno())
        if self._host is not None:
            self._host.close()
            self._host = None
        self._tun.close()
        self._tun = None

    def _on_tun_readable(self) -> None:
        # Within a millisecond of the last read the device is read until it is empty, as a busy
        # stream fills it. After a quiet spell one packet is read per wake-up instead: finding
        # the device empty costs a system call and a Python exception, tens of microseconds of
        # an idle round trip with cold caches, and the event loop calls again at once if more
        # is waiting.
        timestamp_ms = time_ns() // 1_000_000  # router.now_ms, without the call
        busy = timestamp_ms - self._tun_read_ms <= 1
        self._tun_read_ms = timestamp_ms
        # Each read as the device gave it: the IP packet starts at byte `skip` (a header with
        # IFF_VNET_HDR), which the sealer leaves out, so the packet is never copied here.
        packets = self._tun.read_batch_raw(tuning.TUN_READ_BATCH if busy else 1)
        if not packets:
            return
        skip = self._tun.read_skip
        if max(map(len, packets)) - skip > MAX_IP_PACKET_LEN:
            # The device's MTU lets the host send more than a mesh packet holds: answer as a router
            # does, so the host learns the path MTU and fragments or sends smaller segments.
            # The error comes from this node's IPv6 address; for IPv4 from the packet's own
            # destination, since the host drops IPv4 from an address of its own as martian.
            # At most `icmp_error_burst` errors at once and `icmp_errors_per_s` a second are sent
            # (config; RFC 4443's 10 and 10 by default).
            now = time.monotonic()
            for packet in packets:
                if len(packet) - skip > MAX_IP_PACKET_LEN:
                    error = _core.icmp_too_big(packet[skip:], MAX_IP_PACKET_LEN, self.address_bytes)
                    if error is None:
                        continue
                    if self._icmp_errors.take(now):
                        self._tun.write(error)
                        self.icmp_errors_sent += 1
                    else:
                        self.icmp_errors_suppressed += 1
            packets = [packet for packet in packets if len(packet) - skip <= MAX_IP_PACKET_LEN]
        self.router.route_packets(packets, timestamp_ms, skip)

    def _route_changed(self, address: bytes, link: object) -> None:
        """Keep a host route through the device for every address that has a route.

        Which link carries an address does not matter to the host, so only an address's first
        route and its loss touch the kernel, on HostRoutes' worker: the call returns at once and
        the route is there about half a millisecond later, after those asked for before it.
        """
        if self._host is not None:
            self._host.want_route(address, link is not None)


def open_file_limit() -> int | None:
    """How many files this process may open (the soft RLIMIT_NOFILE); None where there is no
    such limit (Windows) or it is unlimited."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_file_limit() -> None:
    """Raise this process's soft limit of open files to its hard limit, as Go's runtime does for
    every program. Each link is a socket, and systemd's default soft limit (1024) would refuse a
    hub's thousandth peer while its hard limit (524,288) allows far more."""
    try:
        import resource
    except ImportError:  # Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit still stops at the kernel's fs.nr_open (2**20 unless raised).
    wanted = min(hard, _NR_OPEN) if hard != resource.RLIM_INFINITY else _NR_OPEN
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as error:
            log.debug("open-file limit stays at %d: %s", soft, error)


_NR_OPEN = 1 << 20
_ECHO_ANNOUNCE_MARGIN_S = 0.05  # see Node._announce_for_echo


def _route_rows(routes: Mapping[bytes, Route], addresses: list[bytes]) -> list[dict[str, Any]]:
    """The status's rows (the fields of RouteInfo) for these addresses of the router's table, less
    any forgotten since the list was made. Each row holds only strings and numbers, so the garbage
    collector does not track it."""
    rows = []
    for address in addresses:
        route = routes.get(address)
        if route is not None:
            rows.append(
                {
                    "address": format_address(address),
                    "via": route.link.label,
                    "name": route.name,
                    "backup_paths": len(route.paths) - 1,
                }
            )
    return rows


def run_meshnode(
    config: Config, log_level: str | None = None, config_path: str | None = None
) -> int:
    """The `smolmesh meshnode` command: run a node until SIGINT or SIGTERM; on SIGHUP, read
    `config_path` again and apply it (`Node.reload`)."""
    level = (log_level or config.log_level or "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pyroute2 logs every netlink message at DEBUG; -v is for smolmesh's own lines. Its import
    # resets its loggers' levels, so it is imported before they are set.
    if sys.platform.startswith("linux"):
        import pyroute2  # noqa: F401

    logging.getLogger("pyroute2").setLevel(max(logging.getLogger().level, logging.WARNING))
    raise_open_file_limit()

    from smolmesh import control

    async def main() -> None:
        node = Node(config)
        node.config_path = os.path.abspath(config_path) if config_path is not None else None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Windows has no loop signal handlers; there Ctrl-C arrives as KeyboardInterrupt.
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        if config_path is not None and hasattr(signal, "SIGHUP"):  # not on Windows
            _reload_on_sighup(loop, node, config_path)
        await node.start()
        status_path = control.socket_path(config.node_name)
        status_server = await control.serve_status(node.status_in_slices, status_path)
        try:
            await stop.wait()
        finally:
            await control.close_status(status_server, status_path)
            await node.stop()

    try:
        import uvloop
    except ImportError:  # Windows: the standard loop
        asyncio.run(main())
    else:
        uvloop.run(main())
    return 0


def _reload_on_sighup(loop: asyncio.AbstractEventLoop, node: Node, config_path: str) -> None:
    """On each SIGHUP read the config file again and apply it to `node`, one at a time; a file
    that does not check is logged in one line, and the node runs on as it was."""
    reloading = asyncio.Lock()
    reloads: set[asyncio.Task[None]] = set()  # held until done: the loop keeps no reference

    async def reload() -> None:
        async with reloading:
            try:
                await node.reload(load_config(config_path))
            except ConfigError as error:
                log.error("reload: %s; the node runs on as it was", error)

    def on_sighup() -> None:
        task = asyncio.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)


async def _derive_secure_psks(config: Config) -> None:
    """Fill `secure_psk`'s cache for every secure_tcp key of `config`. Each new key costs a
    scrypt (some 55 ms): it runs on a thread (hashlib lets go of the GIL), not on the event loop,
    which meanwhile carries packets and answers echoes, so peers do not take the node for stopped.
    """
    keys = [
        key
        for transport in config.transports
        if isinstance(transport, (SecureTcpListen, SecureTcpConnect))
        for key in (transport.keys if isinstance(transport, TcpListen) else [transport.key])
    ]
    await asyncio.to_thread(lambda: [secure_psk(key) for key in keys])


def _link_kind(
    transport: TcpListen | TcpConnect, keys: list[str]
) -> tuple[type[TcpLink], list[bytes]]:
    """The link class of a configured transport, and its keys as that class takes them: the
    bytes of each key for legacy_tcp, the scrypt-derived PSK of each for secure_tcp (derived
    once per key, on a thread, by `_derive_secure_psks` before this is called)."""
    if isinstance(transport, (SecureTcpListen, SecureTcpConnect)):
        return SecureTcpLink, [secure_psk(key) for key in keys]
    return LegacyTcpLink, [key.encode() for key in keys]
