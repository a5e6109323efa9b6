"""What every TCP link of a node shares, whatever its handshake and frames.

Theory of operation
-------------------
A `TcpLink` is an asyncio protocol with two states:

- *handshaking*: the subclass's `_handshake` consumes the first bytes of the stream (legacy_tcp:
  `iv || keyfinder` each way, PROTOCOL.md section 2; secure_tcp: a Noise handshake,
  docs/SECURE_TCP.md) and ends by calling `_up` with the link's sealer and opener. The handshake
  must finish within HANDSHAKE_TIMEOUT_S; unauthenticated incoming connections are also capped in
  number (`PendingHandshakes`), the oldest giving way to a new one, so idle sockets cannot lock out
  real peers.
- *up*: bytes from TCP go to the Rust opener, whose verified packets go to the router in one
  batch; packets to send are sealed in one batch by the Rust sealer and written with one call.
  Both kinds of link have sealers and openers of the same shape, so this path is the same.

A link that breaks the protocol (wrong key, bad MAC) or stalls is closed and logged once. Silent
death is left to the kernel: keepalive probes and TCP_USER_TIMEOUT close a dead connection within
a few seconds, without any byte on the wire that smolmesh2 would not understand. Sooner than that,
a link that has sent something looks at the kernel's view of the connection (TCP_INFO) every
SILENCE_CHECK_PERIOD_S until all it sent is acknowledged, and tells `on_silence` when the peer has
stopped acknowledging (see `silence_of`) and when it answers again, so that the node can route
around the link meanwhile. An idle link costs no wake-up.

A peer whose kernel acknowledges but whose process is stopped or hung (SIGSTOP, a wedged event
loop) shows nothing of that in TCP_INFO. A link that can echo (secure_tcp, docs/SECURE_TCP.md
section 4) asks such a peer: when it has sent something and heard nothing back for ECHO_AFTER_S,
it sends an echo request, and once the peer's kernel has acknowledged the request (or shut its
window), ECHO_TIMEOUT_S more without a byte from the peer make the link silent as above. Only a
peer that has answered an echo (each link asks once when it comes up) is judged this way, so a
peer that predates echo is never taken for a stopped one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from smolmesh import _core, tuning
from smolmesh.errors import BadMacError, StartupError

if TYPE_CHECKING:
    from smolmesh.router import Router

log = logging.getLogger("smolmesh.links")


def _tune_socket(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    options = [
        (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    ]
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; Windows keeps its own keepalive defaults
        options += [
            (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, tuning.TCP_KEEPIDLE_S),
            (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, tuning.TCP_KEEPINTVL_S),
            (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, tuning.TCP_KEEPCNT),
        ]
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        options.append((socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, tuning.TCP_USER_TIMEOUT_MS))
    for level, name, value in options:
        with contextlib.suppress(OSError):  # an option this kernel lacks is no reason to fail
            sock.setsockopt(level, name, value)


_LINUX = sys.platform.startswith("linux") and hasattr(socket, "TCP_INFO")
# struct tcp_info of linux/tcp.h up to tcpi_total_retrans: eight one-byte fields, then 32-bit ones.
_TCP_INFO = struct.Struct("=8B24I")
_TCPI_RETRANSMITS, _TCPI_BACKOFF = 2, 4  # timeouts since the peer last acknowledged new data
_TCPI_UNACKED = 12  # segments sent and not yet acknowledged
_TCPI_LAST_DATA_RECV = 19  # milliseconds since the peer last sent data (not a bare ACK)
_TCPI_LAST_ACK_RECV = 20  # milliseconds since the last acknowledgement
_TCPI_RTT = 23  # the smoothed round trip, microseconds
_TCPI_TOTAL_RETRANS = 31  # segments sent again over the connection's life
# Further on (Linux 4.19 and later): tcpi_bytes_acked, tcpi_notsent_bytes, tcpi_bytes_sent and
# tcpi_bytes_retrans, at their offsets in the struct.
_TCP_INFO_BYTES = struct.Struct("=120xQ16xI52xQQ")


def tcp_info(sock: Any) -> tuple[int, ...] | None:
    """The kernel's struct tcp_info of a TCP socket as far as `_TCP_INFO` reads it, or None where
    the kernel does not tell (not Linux: other kernels lay the struct out differently, or have
    none). `sock`: a socket, the socket-like object of an event loop's transport (uvloop's
    PseudoSocket), or None."""
    return _read_tcp_info(sock, _TCP_INFO)


def stream_bytes(sock: Any) -> tuple[int, int] | None:
    """(bytes of the stream the peer has acknowledged, bytes handed to the kernel so far) of a
    TCP socket; None where the kernel does not tell (as `tcp_info`, or a kernel before 4.19)."""
    fields = _read_tcp_info(sock, _TCP_INFO_BYTES)
    if fields is None:
        return None
    acked, not_sent, sent, resent = fields
    return acked, sent - resent + not_sent


def _read_tcp_info(sock: Any, layout: struct.Struct) -> tuple[int, ...] | None:
    """The fields `layout` reads from the start of the socket's struct tcp_info; None where the
    kernel gives less, or none."""
    if sock is None or not _LINUX:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, layout.size)
    except OSError:
        return None
    return layout.unpack(raw) if len(raw) >= layout.size else None


def silence_of(info: tuple[int, ...]) -> float | None:
    """Seconds since the peer last acknowledged anything, when it looks gone; else None.

    `info`: the connection's `tcp_info`. Gone: the oldest data we sent is still unacknowledged
    after SILENT_AFTER_TIMEOUTS of the kernel's retransmission timeouts in a row (each twice the
    one before, the first at least 200 ms: some 0.6 s on a LAN, and longer by itself on a slower
    path), or, when this host's own network refuses to send it, after as many backed-off retries;
    and nothing at all has been acknowledged for SILENT_AFTER_S (a peer that answers zero-window
    probes is slow, not gone). A single loss never counts: its first retransmission is answered.
    """
    timeouts = max(info[_TCPI_RETRANSMITS], info[_TCPI_BACKOFF])
    quiet_s = info[_TCPI_LAST_ACK_RECV] / 1000
    if timeouts < tuning.SILENT_AFTER_TIMEOUTS or quiet_s < tuning.SILENT_AFTER_S:
        return None
    return quiet_s


class Sealer(Protocol):
    """A link's sealer: `_core.Sealer` (legacy_tcp) or `_core.SecureSealer` (secure_tcp)."""

    def seal_batch(self, packets: list[bytes]) -> bytes: ...
    def seal_data_batch(
        self, ip_packets: list[bytes], timestamp_ms: int, skip: int = 0
    ) -> bytes: ...


class Opener(Protocol):
    """A link's opener: `_core.Opener` (legacy_tcp) or `_core.SecureOpener` (secure_tcp)."""

    def feed_and_triage(
        self, chunk: bytes, now_ms: int, seen: _core.DuplicateFilter
    ) -> list[tuple[int, int, bytes, bytes | None]]: ...


class TcpLink(asyncio.Protocol):
    """One TCP link, outgoing (one key) or incoming (any of the listener's keys). Subclasses
    write `_begin_handshake` and `_handshake`, which end in `_up`."""

    transport_type = ""  # the config's name of the kind of link, e.g. "legacy_tcp"
    echoes = False  # whether the link's frames carry echo packets (secure_tcp)

    def __init__(
        self, router: Router, psks: list[bytes], *, outgoing: bool, label: str = ""
    ) -> None:
        self.router = router
        self.psks = psks
        self.outgoing = outgoing
        self.label = label or ("outgoing" if outgoing else "incoming")
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.on_up: Callable[[TcpLink], None] | None = None
        self.on_down: Callable[[TcpLink, str], None] | None = None
        self.on_handshake_done: Callable[[TcpLink], None] | None = None
        self.on_refused: Callable[[str, str], None] | None = None  # (peer, why), before the link
        # Asked when the handshake is done: None lets the link come up, a reason closes it.
        self.admit: Callable[[], str | None] | None = None
        self.is_up = False
        self.up_since: float | None = None
        self.bytes_received = 0
        self.bytes_sent = 0
        self.packets_dropped = 0
        self.congested_since: float | None = None
        self.returns_announcements = False  # set by the router (see router.Link)
        self.silent = False  # set by the router (see router.Link)
        self.silences = 0  # counted by the node: times the link has fallen silent
        # Told the seconds the peer has been silent, once it looks gone, with what shows it, and
        # None once it answers again (see `_look_for_silence`).
        self.on_silence: Callable[[TcpLink, float | None, str], None] | None = None
        # legacy_tcp has no echo packet; a smolmesh2 peer sends every announcement back, so this
        # node's own announcement serves as the request. Given when the peer fell quiet, the
        # node returns when an announcement of its own went out since (now, if it announces
        # now), or None when it may not announce again yet (see Node._announce_for_echo).
        self.on_echo_wanted: Callable[[float], float | None] | None = None
        self._silence_look: asyncio.TimerHandle | None = None
        self.echo_answered = False  # the peer has answered an echo request: it is judged by them
        self._echo_asked: float | None = None  # when the unanswered echo request went out
        self._echo_delivered: float | None = None  # when nothing of ours was in flight after it
        # Bytes of the stream up to the end of the echo request (with what the transport still
        # holds), when the kernel tells: delivered once the peer has acknowledged as many.
        self._echo_end: int | None = None
        self.psk: bytes | None = None  # the key of `psks` the link came up with
        # Where the link comes from, for the node: its transport in the config (a reload that
        # removes the transport, or the key, closes the link).
        self.origin: object = None
        self._sealer: Sealer | None = None
        self._opener: Opener | None = None
        self._close_reason: str | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though uvloop's is no subclass of asyncio.Transport.
        self.transport = stream = cast(asyncio.Transport, transport)
        peer = stream.get_extra_info("peername")
        if peer:
            host, port = peer[0], peer[1]
            self.label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        _tune_socket(stream)
        stream.set_write_buffer_limits(tuning.SEND_BUFFER_HIGH, tuning.SEND_BUFFER_LOW)
        self._begin_handshake(stream)
        loop = asyncio.get_running_loop()
        self._handshake_timer = loop.call_later(
            tuning.HANDSHAKE_TIMEOUT_S,
            self.close,
            f"no handshake within {tuning.HANDSHAKE_TIMEOUT_S:g} s",
        )

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        opener = self._opener
        if opener is None:
            data = self._handshake(data)
            opener = self._opener
            if opener is None or not data:
                return
        router = self.router
        try:
            # Opened and triaged in one call: on an idle node each call into Rust costs about
            # ten microseconds of cold caches (benches/cold_calls.py).
            rows = opener.feed_and_triage(data, time.time_ns() // 1_000_000, router.seen)
        except BadMacError:
            self.close("bad MAC: forged or corrupt stream")
            return
        if rows:
            router.on_triaged(self, rows)

    def eof_received(self) -> bool:
        self._close_reason = self._close_reason or "closed by peer"
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self._close_reason or (f"connection lost: {exc}" if exc else "closed by peer")
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        if self._silence_look is not None:
            self._silence_look.cancel()
            self._silence_look = None
        if self.is_up:
            self.is_up = False
            log.info("link %s down: %s", self.label, reason)
            self.router.link_down(self)
            if self.on_down is not None:
                self.on_down(self, reason)
        elif self._close_reason is not None:
            if self.on_refused is not None:
                self.on_refused(self.label, reason)
            else:
                log.info("link %s refused: %s", self.label, reason)
        if not self.closed.done():
            self.closed.set_result(reason)

    def _look_for_silence(self) -> None:
        """Read the kernel's view of the connection, SILENCE_CHECK_PERIOD_S after a send: tell
        `on_silence` when the peer looks gone (`silence_of`) or answers again, and look again
        while anything sent waits for an acknowledgement, or the link is silent."""
        self._silence_look = None
        if not self.is_up or self.transport is None or self.on_silence is None:
            return
        info = tcp_info(self.transport.get_extra_info("socket"))
        if info is None:
            return
        silent_for, cause = silence_of(info), "acknowledged nothing"
        if silent_for is None and (self.echoes or self.returns_announcements):
            silent_for = self._unanswered_echo(info)
            cause = "answered no echo" if self.echoes else "sent none of our announcements back"
        if silent_for is not None or self.silent:
            self.on_silence(self, silent_for, cause)
        waiting = info[_TCPI_UNACKED] or info[_TCPI_BACKOFF] or info[_TCPI_RETRANSMITS]
        # An unanswered request keeps the watch going only where the peer answers them: a peer
        # that never has would otherwise keep an idle link waking up until it next spoke.
        asking = self._echo_asked is not None and self._judged_by_echo
        if waiting or asking or self.silent or self.transport.get_write_buffer_size():
            self._watch()

    def _unanswered_echo(self, info: tuple[int, ...]) -> float | None:
        """Seconds the peer has sent nothing, once an echo request has gone unanswered for
        ECHO_TIMEOUT_S after it reached the peer's kernel; else None. Asks when the peer has been
        quiet for ECHO_AFTER_S (this runs only while we send, see `_look_for_silence`)."""
        quiet_s = info[_TCPI_LAST_DATA_RECV] / 1000
        if quiet_s < tuning.ECHO_AFTER_S:  # the peer's process spoke lately: it runs
            self._echo_asked = self._echo_delivered = None
            return None
        now = time.monotonic()
        if self._echo_asked is None:
            self._echo_asked = self._ask_for_echo(now - quiet_s)
            self._echo_end = self._stream_end() if self._echo_asked is not None else None
            return None
        if self._echo_delivered is None and self._request_delivered(info):
            # Nothing of ours in flight: the request is in the peer's kernel, or the peer's
            # window is shut because its process reads nothing. Either way its turn to speak.
            self._echo_delivered = now
        if (
            not self._judged_by_echo
            or self._echo_delivered is None
            or now - self._echo_delivered < tuning.ECHO_TIMEOUT_S
        ):
            return None
        return quiet_s

    def _stream_end(self) -> int | None:
        """Bytes written to the link so far, the transport's buffer included; None where the
        kernel does not tell."""
        if self.transport is None:
            return None
        counts = stream_bytes(self.transport.get_extra_info("socket"))
        return None if counts is None else counts[1] + self.transport.get_write_buffer_size()

    def _request_delivered(self, info: tuple[int, ...]) -> bool:
        """Whether the echo request has reached the peer's kernel: the peer has acknowledged the
        stream up to its end; where the kernel does not count bytes, nothing of ours is in
        flight (which steady sending can hide: the peer's kernel delays its ACKs)."""
        if self._echo_end is not None and self.transport is not None:
            counts = stream_bytes(self.transport.get_extra_info("socket"))
            if counts is not None:
                return counts[0] >= self._echo_end
        return not info[_TCPI_UNACKED]

    @property
    def _judged_by_echo(self) -> bool:
        """Whether the peer's silence after a request makes the link silent: over secure_tcp
        once it has answered an echo; over legacy_tcp once it has sent one of this node's own
        announcements back, as smolmesh2 does with each (then announcements are the requests)."""
        return self.echo_answered if self.echoes else self.returns_announcements

    def _ask_for_echo(self, quiet_since: float) -> float | None:
        """Ask the peer, quiet since `quiet_since` (monotonic), to say something: when the request
        went out, or None when it cannot go yet (ask again at the next look)."""
        if self.echoes:
            self.send_packets([_core.ECHO_REQUEST], control=True)
            return time.monotonic()
        return None if self.on_echo_wanted is None else self.on_echo_wanted(quiet_since)

    def heard_echo(self, row: int) -> None:
        """The peer sent an echo packet (a row of `SecureOpener.feed_and_triage`, handed on by
        the router): answer a request; a reply shows that the peer answers them."""
        if row == _core.ECHO_REQUEST_ROW:
            self.send_packets([_core.ECHO_REPLY], control=True)
        else:
            self.echo_answered = True

    def _watch(self) -> None:
        """Look for silence SILENCE_CHECK_PERIOD_S from now (and up to half as long again, at
        random), unless a look is already due.

        The random part keeps the looks out of step with traffic sent at a steady rate: a look
        right after each send would find that packet in flight every time (a stopped peer's
        kernel delays its ACKs up to 40 ms), and an echo request never seen delivered (seen with
        pings every 50 ms while the node also woke every 5 ms to keep warm: 4-5 s to find a
        stopped smolmesh2 peer silent instead of 0.7 s)."""
        if self._silence_look is None:
            period = tuning.SILENCE_CHECK_PERIOD_S * random.uniform(1.0, 1.5)
            self._silence_look = asyncio.get_running_loop().call_later(
                period, self._look_for_silence
            )

    def tcp_stats(self) -> tuple[float, int] | None:
        """The kernel's smoothed round trip to the peer (ms) and the segments it has sent again
        over this link; None where the kernel does not tell."""
        info = None if self.transport is None else tcp_info(self.transport.get_extra_info("socket"))
        if info is None:
            return None
        return info[_TCPI_RTT] / 1000, info[_TCPI_TOTAL_RETRANS]

    def pause_writing(self) -> None:
        self.congested_since = time.monotonic()

    def resume_writing(self) -> None:
        self.congested_since = None
        if self.is_up:
            self.router.link_writable(self)

    # --- Handshake (subclasses) ---
    def _begin_handshake(self, stream: asyncio.Transport) -> None:
        """TCP is up: send what this side says first, if anything."""
        raise NotImplementedError

    def _handshake(self, data: bytes) -> bytes:
        """Consume handshake bytes; call `_up` when done and return what follows them (b"" while
        the handshake goes on, or after `close`)."""
        raise NotImplementedError

    def _up(self, sealer: Sealer, opener: Opener, psk: bytes) -> None:
        """The handshake with `psk` is done: frames flow from now on, and the router hears of the
        link."""
        refusal = self.admit() if self.admit is not None else None
        if refusal is not None:
            self.close(refusal)
            return
        self.psk = psk
        self._sealer = sealer
        self._opener = opener
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        self.is_up = True
        self.up_since = time.time()
        if self.on_handshake_done is not None:
            self.on_handshake_done(self)
        log.info(
            "link %s up (%s, %s)",
            self.label,
            "outgoing" if self.outgoing else "incoming",
            self.transport_type,
        )
        self.router.link_up(self)
        if self.on_up is not None:
            self.on_up(self)
        if self.echoes:  # one echo at once, to learn whether the peer answers them
            self._echo_asked = time.monotonic()
            self.send_packets([_core.ECHO_REQUEST], control=True)

    # --- Sending ---
    def send_packets(self, packets: list[bytes], *, control: bool = False) -> None:
        """Seal and send mesh packets; data is dropped while the send buffer is over its mark."""
        if not self.is_up or self._sealer is None or self.transport is None:
            return
        if self.congested_since is not None and (
            not control or self.transport.get_write_buffer_size() >= tuning.SEND_BUFFER_MAX
        ):
            self.packets_dropped += len(packets)
            return
        wire = self._sealer.seal_batch(packets)
        self.bytes_sent += len(wire)
        self.transport.write(wire)
        if self._silence_look is None:
            self._watch()

    def send_data(self, ip_packets: list[bytes], timestamp_ms: int, skip: int = 0) -> None:
        """Wrap this node's IP packets (from byte `skip` on) as cmd-3 mesh packets, seal and send
        them in one write."""
        if not self.is_up or self._sealer is None or self.transport is None:
            return
        if self.congested_since is not None:
            self.packets_dropped += len(ip_packets)
            return
        wire = self._sealer.seal_data_batch(ip_packets, timestamp_ms, skip)
        self.bytes_sent += len(wire)
        self.transport.write(wire)
        if self._silence_look is None:
            self._watch()

    def close(self, reason: str) -> None:
        if self._close_reason is None:
            self._close_reason = reason
        if self.transport is not None:
            self.transport.abort()


class PendingHandshakes:
    """Bounds the unauthenticated incoming connections of a node: the oldest gives way.

    It also logs the connections refused, one line each up to REFUSALS_LOGGED_PER_PERIOD in a
    period and then one line that counts the rest, so a flood of connections is no flood of logs.
    """

    def __init__(self, limit: int = tuning.MAX_PENDING_HANDSHAKES) -> None:
        self.limit = limit
        self._links: OrderedDict[TcpLink, None] = OrderedDict()
        self._period_start = 0.0
        self._logged = 0
        self._unlogged = 0

    def add(self, link: TcpLink) -> None:
        while len(self._links) >= self.limit:
            oldest, _ = self._links.popitem(last=False)
            oldest.close("too many unauthenticated connections; oldest closed")
        self._links[link] = None
        link.closed.add_done_callback(lambda _: self._links.pop(link, None))
        link.on_handshake_done = self.discard
        link.on_refused = self.log_refusal

    def log_refusal(self, peer: str, reason: str) -> None:
        now = time.monotonic()
        if now - self._period_start >= tuning.REFUSAL_LOG_PERIOD_S:
            self._period_start, self._logged = now, 0
        if self._logged < tuning.REFUSALS_LOGGED_PER_PERIOD:
            self._logged += 1
            log.info("link %s refused: %s", peer, reason)
            return
        if not self._unlogged:
            delay = self._period_start + tuning.REFUSAL_LOG_PERIOD_S - now
            asyncio.get_running_loop().call_later(delay, self._log_unlogged)
        self._unlogged += 1

    def _log_unlogged(self) -> None:
        log.warning(
            "%d more incoming connections refused in %g s (a line each for the first %d only)",
            self._unlogged,
            tuning.REFUSAL_LOG_PERIOD_S,
            tuning.REFUSALS_LOGGED_PER_PERIOD,
        )
        self._unlogged = 0

    def discard(self, link: TcpLink) -> None:
        self._links.pop(link, None)

    def __len__(self) -> int:
        return len(self._links)


async def listen(
    port: int,
    make_link: Callable[[], TcpLink],
    pending: PendingHandshakes,
    host: str | None = None,
) -> asyncio.Server:
    """Accept links on every address (IPv4 and IPv6) of `port`."""
    loop = asyncio.get_running_loop()

    def factory() -> TcpLink:
        link = make_link()
        pending.add(link)
        return link

    try:
        return await loop.create_server(factory, host=host, port=port, reuse_address=True)
    except OSError as error:
        if error.errno == 98 or "address already in use" in str(error).lower():
            raise StartupError(f"port {port} is already in use") from None
        raise StartupError(f"cannot listen on port {port}: {error.strerror or error}") from None


async def dial_forever(
    host: str,
    port: int,
    make_link: Callable[[], TcpLink],
    stopping: asyncio.Event,
) -> None:
    """Keep one outgoing link to host:port up, redialling after a random 5-10 s when it fails."""
    loop = asyncio.get_running_loop()
    failures = 0
    while not stopping.is_set():
        reason = await _dial_once(loop, host, port, make_link)
        if reason is not None:
            failures += 1
            # The first failure of a series is worth a line; repeats every 5-10 s are not.
            level = logging.INFO if failures == 1 else logging.DEBUG
            log.log(level, "link to %s:%d: %s; redialling in 5-10 s", host, port, reason)
        else:
            failures = 0
        delay = random.uniform(tuning.REDIAL_MIN_S, tuning.REDIAL_MAX_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)


async def _dial_once(
    loop: asyncio.AbstractEventLoop, host: str, port: int, make_link: Callable[[], TcpLink]
) -> str | None:
    """One connection attempt, held until it closes. Returns why it failed, or None if it was up."""
    try:
        # Resolved anew on every dial, without blocking the loop.
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        return f"cannot resolve {host}: {error.strerror or error}"
    last_error = "no address"
    for *_, address in infos:
        try:
            _, link = await asyncio.wait_for(
                loop.create_connection(make_link, host=str(address[0]), port=int(address[1])),
                tuning.CONNECT_TIMEOUT_S,
            )
        except TimeoutError:
            last_error = f"no answer from {address[0]} within {tuning.CONNECT_TIMEOUT_S:g} s"
            continue
        except OSError as error:
            last_error = f"cannot connect to {address[0]}: {error.strerror or error}"
            continue
        reason = await asyncio.shield(link.closed)
        return None if link.up_since is not None else reason
    return last_error
