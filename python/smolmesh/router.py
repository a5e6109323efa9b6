"""The router: which link leads to each address, and what becomes of each packet.

Theory of operation
-------------------
Every node floods announcements (PROTOCOL.md section 3): cmd 0 "I am <name>" and cmd 1/2 "I handle
<address>". Each node remembers the most recent 16,384 distinct packets, so only the first copy of
an announcement to arrive is acted upon: the link it came over becomes the route to its address
(the fastest path), and the packet is forwarded unchanged on every other link.

smolmesh also remembers the links that later copies arrive over, as *backup paths*: a duplicate
announcement proves the address is reachable over that link too. When a link dies, each route over
it moves at once to the backup heard most recently, not waiting up to 10 s for the next flood.

A later copy cannot tell whether it crossed this node on its way: smolmesh2 floods every
announcement back over the link it came from too, so a smolmesh2 neighbour returns each of ours, and
a route can move to a "backup" that leads back here. The data plane catches that: a data packet that
arrives over the very link our route to its destination leads over (a repeated one included, which
is not forwarded again) shows that the peer there routes it through us. The route then leaves that
link at once, for the freshest other path or none, so the host route goes and `smolmesh status`
tells the truth, instead of packets going round until the route expires.

A link whose peer sends announcements back, as smolmesh2 does, is marked `returns_announcements`
(the status shows it, and legacy_tcp's echo rests on it, see links/tcp.py). A copy of this node's
own announcement coming back over a link does not show it: in a cycle of smolmesh nodes the copy
comes round from the far side. So with each announcement the node sends every link not yet marked
a *probe* of its own, an older copy of its name announcement that goes to that link alone: only a
peer that sends packets back where they came from returns it over that link (a smolmesh node
floods it nowhere, as it is no news, see `_learn`).

A link whose peer stops acknowledging (a cut cable, a host gone without a FIN) is not closed by the
kernel for seconds. The node marks it *silent* as soon as the kernel shows it (`link_silent`, about
0.8 s on a LAN; see links/tcp.py, silence_of), and a secure_tcp link also when its peer's kernel
acknowledges but its process answers no echo (a stopped or hung node, about 1 s). A silent link's
routes move to their freshest backup paths at once, no announcement over it takes a route while
it stays silent, and one heard over another link takes a route back from it. The node also
announces itself again, so that nodes whose routes to it crossed the link learn the paths that are
left. A route with no other path stays where it is: its packets wait in the link's buffers, and a
hiccup shorter than the kernel's timeout costs only their delay. (Sending them back to the peer they
came from would make a smolmesh peer drop its route, as above, and in a line of nodes, with no other
path anywhere, a one-second hiccup would then cost the upstream nodes their routes until the next
announcement.)

Data packets (cmd 3) go to the local sink when addressed to this node, else over the route's link.
The hot path is `on_triaged`: one call per batch of packets from a link (opened and triaged by the
link's one call into Rust), a dict lookup per packet.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from smolmesh import _core, tuning
from smolmesh._core import CMD_DATA, CMD_IPV4, CMD_IPV6, CMD_NAME

log = logging.getLogger("smolmesh.router")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# A row of `_core.triage`: (cmd, timestamp_ms, key, packet or None for a packet seen before).
Triaged = tuple[int, int, bytes, bytes | None]


class Link(Protocol):
    """What the router needs of a link (see links/tcp.py)."""

    label: str
    outgoing: bool
    up_since: float | None
    bytes_sent: int
    bytes_received: int
    packets_dropped: int
    congested_since: float | None  # monotonic time the send buffer went over its mark
    # Set by the router once the peer sent this node's probe back over this link, as a smolmesh2
    # node does with every announcement: its copies prove no second path.
    returns_announcements: bool
    # Set by the router while the peer acknowledges nothing we send, or its process answers no
    # echo (see `link_silent`).
    silent: bool

    def send_packets(self, packets: list[bytes], *, control: bool = False) -> None: ...
    def send_data(self, ip_packets: list[bytes], timestamp_ms: int, skip: int = 0) -> None: ...
    def close(self, reason: str) -> None: ...
    def heard_echo(self, row: int) -> None: ...


def address_of_name(name: bytes) -> bytes:
    """name_to_ipv6 of a name, cached: it costs about 65,536 Speck rounds (50 us; 1.7 ms for a
    60,000-byte name). Every node's name comes by every 5-10 s over each link, so the cache holds
    as many names as the route table does addresses: one of 4096 names, in a mesh of 20,000 nodes
    and over 3 links, derived 8000 addresses a second (0.4 s of CPU a second). The protocol
    bounds a name only by the packet, so long names have a cache of their own, small enough that
    its keys hold 1 MiB at most."""
    if len(name) <= _SHORT_NAME_BYTES:
        return _SHORT_NAMES.address(name)
    return _LONG_NAMES.address(name)


def derive_addresses(names: Iterable[bytes]) -> None:
    """Cache the addresses of those of `names` the cache lacks, derived together: a batch of
    thousands of new names (a table replayed by a new peer) costs a fraction of what they cost
    one by one (`_core.names_to_ipv6`, README: Bounds)."""
    _SHORT_NAMES.derive(name for name in names if len(name) <= _SHORT_NAME_BYTES)


class _NameCache:
    """The addresses of the `size` names asked for most recently."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._addresses: OrderedDict[bytes, bytes] = OrderedDict()

    def address(self, name: bytes) -> bytes:
        addresses = self._addresses
        address = addresses.get(name)
        if address is None:
            address = _core.name_to_ipv6(name)
            self._keep(name, address)
        else:
            addresses.move_to_end(name)
        return address

    def derive(self, names: Iterable[bytes]) -> None:
        """Derive the addresses of those of `names` not held yet, in one call."""
        addresses = self._addresses
        missing = [name for name in dict.fromkeys(names) if name not in addresses]
        if missing:
            for name, address in zip(missing, _core.names_to_ipv6(missing), strict=True):
                self._keep(name, address)

    def _keep(self, name: bytes, address: bytes) -> None:
        addresses = self._addresses
        addresses[name] = address
        if len(addresses) > self.size:
            addresses.popitem(last=False)

    def clear(self) -> None:
        self._addresses.clear()


_SHORT_NAME_BYTES = 255
_NAME_LOGGED = 64  # characters of a node name that log lines show
# A batch of at least this many announcements has its new names derived together first.
_DERIVE_TOGETHER_AT = 16

# Full: 12 MiB for names of 20-odd bytes, 27 MiB at most (names of 255 bytes), names included.
_SHORT_NAMES = _NameCache(tuning.MAX_ROUTES)
_LONG_NAMES = _NameCache(16)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_address(address: bytes) -> str:
    """An address as `ipaddress` writes it, about eight times faster (status lists every route).

    inet_ntop writes the same text, except for IPv6 addresses it ends in dotted IPv4."""
    if len(address) == 4:
        return socket.inet_ntop(socket.AF_INET, address)
    text = socket.inet_ntop(socket.AF_INET6, address)
    return text if "." not in text else str(ipaddress.IPv6Address(address))


@dataclass(eq=False)
class Route:
    """How to reach one address: the link in use and every link it was heard over."""

    link: Link
    timestamp_ms: int  # of the announcement that chose `link`
    name: str | None = None  # the node name, for addresses announced by cmd 0
    announcement: bytes = b""  # the freshest announcement packet, replayed to new links
    # link -> (newest announcement timestamp heard over it, monotonic time heard)
    paths: dict[Link, tuple[int, float]] = field(default_factory=dict)


@dataclass(eq=False)
class _Replay:
    """The addresses known when a link came up, and how many of them its peer has been sent."""

    addresses: list[bytes]
    position: int = 0


class Router:
    """Routes and forwarding for one node. Links register with `link_up`/`link_down`."""

    def __init__(
        self,
        local_addresses: Iterable[bytes],
        deliver: Callable[[list[bytes]], None],
        on_route_change: Callable[[bytes, Link | None], None] | None = None,
    ) -> None:
        self.local_addresses = frozenset(local_addresses)
        # Where mesh packets addressed to this node go (the IP packet starts at byte 9). The node
        # points it straight at its TUN device while it has one: a call less per packet.
        self.deliver = deliver
        self._on_route_change = on_route_change
        self.seen = _core.DuplicateFilter()
        self.links: list[Link] = []
        # The data plane reads `next_hop` only; `routes` holds the rest of the routing state.
        self.next_hop: dict[bytes, Link] = {}
        self.routes: dict[bytes, Route] = {}
        # Bytes of the announcements and names `routes` holds, bounded by MAX_ROUTE_BYTES.
        self.route_bytes = 0
        # New addresses ignored because the table was full (MAX_ROUTES or MAX_ROUTE_BYTES), in
        # all and since the last warning; when that warning went out (monotonic, None: never).
        self.routes_refused = 0
        self._refused_unlogged = 0
        self._table_full_logged_at: float | None = None
        # Routes learnt or changed in the batch `on_triaged` is handling (see _route_line).
        self._route_lines = 0
        # The addresses `expire` goes through, a slice per call, and where the next slice starts.
        self._expire_order: list[bytes] = []
        self._expire_next = 0
        # Links whose peer is still being told the routes known when it came up (link_up).
        self._replays: dict[Link, _Replay] = {}
        # The timestamp of this node's latest announcement (`announce`): copies of it, or of
        # older ones, that come back are not flooded again (see _learn).
        self._announced_ms = 0
        # This node's name, from its announcements, and the probes sent since the latest one:
        # timestamp -> the link it went to (see the module's docstring and `_probe`).
        self._own_name: bytes | None = None
        self._probes: dict[int, Link] = {}
        # Batches of data packets handled (sent from this node, forwarded or delivered to it),
        # and who to tell of the next one while nobody watches the count (see warmth.KeepWarm).
        self.data_batches = 0
        self.on_data: Callable[[], None] | None = None

    # --- Links ---
    def link_up(self, link: Link) -> None:
        """Add a link, and tell its peer every route we know at once.

        The announcements replayed are the originals, unchanged and inside their 3-minute window,
        so the peer learns the mesh now instead of over the next 5-10 s of floods.
        """
        self.links.append(link)
        if self.routes:
            self._replays[link] = _Replay(list(self.routes))
            self.link_writable(link)

    def link_writable(self, link: Link) -> None:
        """The send buffer of `link` has room (again): go on replaying the table to its peer.

        The replay goes a slice at a time while the buffer stays under its mark, and takes each
        route's freshest announcement as it goes, so a peer that reads slowly, or not at all,
        holds back only a list of addresses here, not a copy of the table's announcements.
        """
        replay = self._replays.get(link)
        if replay is None:
            return
        addresses, routes = replay.addresses, self.routes
        while replay.position < len(addresses) and link.congested_since is None:
            batch: list[bytes] = []
            size = 0
            while replay.position < len(addresses) and size < tuning.REPLAY_SLICE_BYTES:
                route = routes.get(addresses[replay.position])
                replay.position += 1
                if route is not None and route.announcement:
                    batch.append(route.announcement)
                    size += len(route.announcement)
            if batch:
                link.send_packets(batch, control=True)
        if replay.position >= len(addresses):
            del self._replays[link]

    def link_down(self, link: Link) -> None:
        """Forget a link; move its routes to the freshest backup path, or drop them."""
        if link in self.links:
            self.links.remove(link)
        self._replays.pop(link, None)
        for route in self.routes.values():
            route.paths.pop(link, None)
        self._fall_back_routes_of(link, f"link {link.label} went down")

    def link_silent(
        self, link: Link, silent_for: float | None, cause: str = "acknowledged nothing"
    ) -> None:
        """The peer of `link` has been silent for `silent_for` seconds (`cause`: what it did not
        do, for the log), or (None) answers again. A silent link gives up its routes to backup
        paths heard over links that answer; a link that answers again wins routes back by the
        usual rule, when its copy of an announcement arrives first."""
        if silent_for is None:
            if link.silent:
                link.silent = False
                log.info("link %s answers again", link.label)
            return
        if link.silent:
            return
        link.silent = True
        why = f"link {link.label} {cause} for {silent_for:.1f} s"
        kept = self._fall_back_routes_of(link, why)
        log.info("%s: silent%s", why, f"; {kept} routes have no other path" if kept else "")

    # --- Packets from links ---
    def on_packets(self, source: Link, packets: list[bytes]) -> None:
        """Handle a batch of verified mesh packets that arrived over `source`."""
        self.on_triaged(source, _core.triage(packets, now_ms(), self.seen))

    def on_triaged(self, source: Link, rows: list[Triaged]) -> None:
        """Handle what `_core.triage` (or `Opener.feed_and_triage`) let through from `source`."""
        local = self.local_addresses
        next_hop = self.next_hop
        to_deliver: list[bytes] = []
        outgoing: dict[Link, list[bytes]] = {}
        flood: list[bytes] = []
        if len(rows) >= _DERIVE_TOGETHER_AT:
            derive_addresses(key for cmd, _, key, packet in rows if cmd == CMD_NAME and packet)
        for cmd, timestamp, key, packet in rows:
            if cmd == CMD_DATA:
                if key in local:
                    if packet is not None:
                        to_deliver.append(packet)
                    continue
                link = next_hop.get(key)
                if link is source:  # the peer we route to sent it back: it routes through us
                    link = self._leads_back(key, source)
                if link is not None and packet is not None:  # a repeat is not sent again
                    batch = outgoing.get(link)
                    if batch is None:
                        outgoing[link] = [packet]
                    else:
                        batch.append(packet)
            elif cmd > 0xFF:  # an echo packet of the link itself (secure_tcp), not a mesh packet
                source.heard_echo(cmd)
            elif packet is None:  # an announcement seen before: a backup path, nothing to send
                self._learn(source, cmd, timestamp, key, None)
            elif self._learn(source, cmd, timestamp, key, packet):
                flood.append(packet)
        if to_deliver:
            self.deliver(to_deliver)
        for link, batch in outgoing.items():
            link.send_packets(batch)
        if to_deliver or outgoing:
            self.data_batches += 1
            if self.on_data is not None:
                self.on_data()
        if flood:
            for link in self.links:
                if link is not source:
                    link.send_packets(flood, control=True)
        if self._route_lines:
            unlogged = self._route_lines - tuning.ROUTE_LINES_PER_EVENT
            if unlogged > 0:
                log.info(
                    "%d more routes learnt or changed via %s (a line each for the first %d)",
                    unlogged,
                    source.label,
                    tuning.ROUTE_LINES_PER_EVENT,
                )
            self._route_lines = 0

    def route_packets(self, ip_packets: list[bytes], timestamp_ms: int, skip: int = 0) -> int:
        """Send IP packets of this node into the mesh; returns how many had a route.

        Each packet starts at byte `skip` (what comes before, a TUN read's header, is not sent)."""
        groups: dict[Link, list[bytes]] = {}
        next_hop = self.next_hop
        destination = _core.ip_destination
        for ip_packet in ip_packets:
            link = next_hop.get(destination(ip_packet, skip))  # type: ignore[arg-type]  # None: no route
            if link is not None:
                batch = groups.get(link)
                if batch is None:
                    groups[link] = [ip_packet]
                else:
                    batch.append(ip_packet)
        routed = 0
        for link, batch in groups.items():
            link.send_data(batch, timestamp_ms, skip)
            routed += len(batch)
        self.data_batches += 1
        if self.on_data is not None:
            self.on_data()
        return routed

    def announce(self, packets: list[bytes]) -> None:
        """Send this node's own announcements on every link; remember them as seen. Then probe
        each link not yet known to send announcements back."""
        for packet in packets:
            self.seen.insert(packet)
            header = _core.parse_header(packet)
            if header is not None:
                self._announced_ms = max(self._announced_ms, header[0])
                if header[1] == CMD_NAME:
                    self._own_name = packet[_core.HEADER_LEN :]
        for link in self.links:
            link.send_packets(packets, control=True)
        self._probes.clear()  # a probe's copy comes back within a round trip, or never
        for link in self.links:
            if not link.returns_announcements:
                self._probe(link)

    def _probe(self, link: Link) -> None:
        """Send `link` alone a copy of this node's name announcement a few milliseconds older
        than the latest: news to no route table, so smolmesh floods it nowhere and smolmesh2
        changes no route for it, but a smolmesh2 peer sends it straight back (`_learn` marks the
        link). Each probe has a timestamp of its own, which tells its copy apart."""
        if self._own_name is None:
            return
        timestamp = self._announced_ms - 1 - len(self._probes)
        packet = _core.make_packet(timestamp, CMD_NAME, self._own_name)
        self.seen.insert(packet)
        self._probes[timestamp] = link
        link.send_packets([packet], control=True)

    def _leads_back(self, address: bytes, via: Link) -> Link | None:
        """A data packet for `address` came in over `via`, the link our route to it leads over.

        The peer there routes the address through us, so `via` is no path to it: our route moved
        to it as a backup path that was really our own announcement returned (smolmesh2 floods
        every announcement back where it came from), or the peer heard a newer announcement via
        us after our route had moved to it. Returns where the route leads now, if anywhere.
        """
        route = self.routes.get(address)
        if route is None:  # next_hop and routes change together; kept for safety
            return None
        route.paths.pop(via, None)
        return self._fall_back(address, route, f"its path via {via.label} leads back here")

    # --- Routing state ---
    def _learn(
        self, source: Link, cmd: int, timestamp: int, key: bytes, packet: bytes | None
    ) -> bool:
        """Take an announcement into account; True if it should be flooded on.

        `packet` is None for a duplicate: it only adds `source` as a backup path.

        Only news is flooded: a new address, or an announcement newer than the one the route
        holds (or than this node's own latest). The duplicate filter remembers the last 16,384
        packets, so in a mesh of more addresses than that a copy arriving late, over a longer
        path or replayed to a link that came up, passes it as new; smolmesh2 floods such a copy
        again, and so every node did it again, mesh-wide, for each copy. This node has flooded
        an announcement at least as new already, to every link then up, and a link that came up
        since was sent the table (link_up), so holding the copy back loses nobody anything.
        """
        fresh = packet is not None
        name = None
        if cmd == CMD_NAME:
            try:
                name = key.decode()
            except UnicodeDecodeError:
                return False
            address = address_of_name(key)
        elif cmd in (CMD_IPV6, CMD_IPV4):
            address = key
        else:  # triage passes known commands only; kept for safety
            return False
        if address in self.local_addresses:
            if not fresh and cmd == CMD_NAME and self._probes.get(timestamp) is source:
                source.returns_announcements = True  # our probe, back over the link it went to
            return fresh and timestamp > self._announced_ms
        heard_at = time.monotonic()
        route = self.routes.get(address)
        if route is None:
            if packet is None:  # a copy of an announcement whose address is not routed
                return False
            size = len(packet) + (len(key) if name is not None else 0)
            if (
                len(self.routes) >= tuning.MAX_ROUTES
                or self.route_bytes + size > tuning.MAX_ROUTE_BYTES
            ):
                self._refuse_route(heard_at)
                return True  # flooded on all the same: other nodes may have room for it
            route = Route(link=source, timestamp_ms=timestamp, name=name, announcement=packet)
            route.paths[source] = (timestamp, heard_at)
            self.routes[address] = route
            self.route_bytes += size
            self.next_hop[address] = source
            self._route_changed(address, source)  # first, so the host can use what the log says
            if self._route_line():
                log.info("route to %s learnt via %s", self._describe(address, route), source.label)
            return True
        previous = route.paths.get(source)
        if previous is None or timestamp >= previous[0]:
            route.paths[source] = (timestamp, heard_at)
        newer = False
        if packet is not None and timestamp > route.timestamp_ms:
            newer = True
            route.timestamp_ms = timestamp
            self.route_bytes += len(packet) - len(route.announcement)
            route.announcement = packet
        # The first copy of a newer announcement moves the route to its link (the fastest path),
        # unless that link is silent; any copy over a link that answers moves it off a silent one.
        if route.link is not source and not source.silent and (newer or route.link.silent):
            old = route.link
            route.link = source
            self.next_hop[address] = source
            if self._route_line():
                log.info(
                    "route to %s changed from %s to %s",
                    self._describe(address, route),
                    old.label,
                    source.label,
                )
            self._route_changed(address, source)
        return newer

    def _refuse_route(self, now: float) -> None:
        """Count a new address the full table has no room for, and warn: at once the first time,
        then at most once per TABLE_FULL_LOG_PERIOD_S while more are refused (a line that counts
        them), so a table that fills again after it drained is told of again."""
        self.routes_refused += 1
        self._refused_unlogged += 1
        logged_at = self._table_full_logged_at
        if logged_at is not None and now - logged_at < tuning.TABLE_FULL_LOG_PERIOD_S:
            return
        what = "ignoring new ones"
        if logged_at is not None:
            what = f"{self._refused_unlogged} new addresses ignored in {now - logged_at:.1f} s"
        log.warning(
            "route table full (%d addresses, %d bytes of announcements and names): %s",
            len(self.routes),
            self.route_bytes,
            what,
        )
        self._table_full_logged_at = now
        self._refused_unlogged = 0

    def _route_line(self) -> bool:
        """Whether a route learnt or changed by the batch being handled gets a line of its own:
        the first ROUTE_LINES_PER_EVENT do, and `on_triaged` counts the rest in one line."""
        self._route_lines += 1
        return self._route_lines <= tuning.ROUTE_LINES_PER_EVENT

    def _fall_back_routes_of(self, link: Link, why: str) -> int:
        """`_fall_back` for every route on `link`; returns how many stay on it (no other path).

        The first ROUTE_LINES_PER_EVENT routes moved or lost get a log line each and the rest one
        line that counts them: a hub's link to a large mesh would log thousands of lines."""
        kept = moved = lost = 0
        for address, route in list(self.routes.items()):
            if route.link is not link:
                continue
            logged = moved + lost < tuning.ROUTE_LINES_PER_EVENT
            new = self._fall_back(address, route, why, logged)
            if new is link:
                kept += 1
            elif new is None:
                lost += 1
            else:
                moved += 1
        unlogged = moved + lost - tuning.ROUTE_LINES_PER_EVENT
        if unlogged > 0:
            log.info(
                "%s: %d more routes moved or lost (%d moved and %d lost in all; a line each for"
                " the first %d)",
                why,
                unlogged,
                moved,
                lost,
                tuning.ROUTE_LINES_PER_EVENT,
            )
        return kept

    def _fall_back(
        self, address: bytes, route: Route, why: str, logged: bool = True
    ) -> Link | None:
        """Move a route whose link failed to its freshest backup path, or drop it; the new link.

        A path over a silent link is taken only when there is no other; when that is the route's
        own (silent) link, the route stays as it is. `logged`: whether a move or loss gets its
        own log line.
        """
        backup = max(
            route.paths.items(), key=lambda item: (not item[0].silent, item[1]), default=None
        )
        if backup is None:
            self._forget(address, why, logged)
            return None
        if backup[0] is route.link:
            return route.link
        route.link = backup[0]
        self.next_hop[address] = backup[0]
        if logged:
            log.info(
                "route to %s moved to %s (%s)",
                self._describe(address, route),
                backup[0].label,
                why,
            )
        self._route_changed(address, backup[0])
        return backup[0]

    def expire(self, now: float | None = None) -> None:
        """Forget routes and backup paths not heard of for ROUTE_TTL_S (as of `now`, monotonic).

        Each call looks at the next EXPIRE_SLICE_ROUTES routes of the table, so a full table is
        gone through every 16 calls (maintenance runs once a second) and a route lives at most
        that much past its TTL; looking at all 65,536 at once stood packets still for 0.1 s.
        """
        cutoff = (time.monotonic() if now is None else now) - tuning.ROUTE_TTL_S
        if self._expire_next >= len(self._expire_order):
            self._expire_order, self._expire_next = list(self.routes), 0
        start, self._expire_next = self._expire_next, self._expire_next + tuning.EXPIRE_SLICE_ROUTES
        for address in self._expire_order[start : self._expire_next]:
            route = self.routes.get(address)
            if route is None:  # forgotten since the order was taken
                continue
            stale = [link for link, (_, heard) in route.paths.items() if heard < cutoff]
            for link in stale:
                del route.paths[link]
            if not route.paths:
                self._forget(address, f"no announcement for {tuning.ROUTE_TTL_S:g} s")

    def _forget(self, address: bytes, why: str, logged: bool = True) -> None:
        route = self.routes.pop(address)
        self.route_bytes -= len(route.announcement) + (
            len(route.name.encode()) if route.name is not None else 0
        )
        self.next_hop.pop(address, None)
        if logged:
            log.info("route to %s lost: %s", self._describe(address, route), why)
        self._route_changed(address, None)

    def _route_changed(self, address: bytes, link: Link | None) -> None:
        if self._on_route_change is not None:
            self._on_route_change(address, link)

    @staticmethod
    def _describe(address: bytes, route: Route) -> str:
        text = format_address(address)
        if not route.name:
            return text
        # A name may be as long as a packet; a log line shows its start.
        name = route.name if len(route.name) <= _NAME_LOGGED else f"{route.name[:_NAME_LOGGED]}..."
        return f"{text} ({name})"
