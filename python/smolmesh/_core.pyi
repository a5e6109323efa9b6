"""smolmesh._core: the per-byte and per-packet routines of smolmesh, in Rust.

Sans-IO: bytes in, bytes out. No sockets, files or clocks; time is passed in as `now_ms`.
Errors raised here are the classes of `smolmesh.errors`.
"""

from collections.abc import Sequence
from typing import Self, final

__all__ = [
    "CMD_DATA",
    "CMD_IPV4",
    "CMD_IPV6",
    "CMD_NAME",
    "DUPLICATE_FILTER_CAPACITY",
    "ECHO_REPLY",
    "ECHO_REPLY_ROW",
    "ECHO_REQUEST",
    "ECHO_REQUEST_ROW",
    "HEADER_LEN",
    "HELLO_LEN",
    "IV_LEN",
    "MAC_LEN",
    "MAX_PACKET_LEN",
    "SECURE_MESSAGE_LEN",
    "VNET_HDR_LEN",
    "WINDOW_MS",
    "DuplicateFilter",
    "Opener",
    "Sealer",
    "SecureInitiator",
    "SecureOpener",
    "SecureSealer",
    "derive_keys",
    "ernd",
    "find_psk",
    "icmp_too_big",
    "ip_destination",
    "keyfinder",
    "keystream",
    "make_hello",
    "make_packet",
    "multispeck",
    "name_to_ipv6",
    "names_to_ipv6",
    "parse_header",
    "secure_respond",
    "speck_encrypt",
    "speck_round_keys",
    "tcp_gro",
    "triage",
]

HELLO_LEN: int  # 32: iv (16) || keyfinder (16)
IV_LEN: int  # 16
MAC_LEN: int  # 16
HEADER_LEN: int  # 9: timestamp_ms (u64 LE) || cmd (u8)
MAX_PACKET_LEN: int  # 65535: a mesh packet's largest length on the wire
WINDOW_MS: int  # 180000: packets older or newer than this are dropped
DUPLICATE_FILTER_CAPACITY: int  # 16384

CMD_NAME: int  # 0
CMD_IPV6: int  # 1
CMD_IPV4: int  # 2
CMD_DATA: int  # 3

VNET_HDR_LEN: int  # 10: the struct virtio_net_hdr before each packet of a TUN write (IFF_VNET_HDR)

SECURE_MESSAGE_LEN: int  # 48: each secure_tcp handshake message (e 32 || tag 16)
ECHO_REQUEST: bytes  # b"\x01": a secure_tcp echo request (docs/SECURE_TCP.md section 4)
ECHO_REPLY: bytes  # b"\x02": its answer
ECHO_REQUEST_ROW: int  # 0x101: SecureOpener.feed_and_triage's row cmd for an echo request opened
ECHO_REPLY_ROW: int  # 0x102: ... and for an echo reply (no mesh cmd is above 0xFF)

# --- Speck128/128 and multispeck (PROTOCOL.md section 1) ---
def ernd(x: int, y: int, k: int) -> tuple[int, int]: ...
def speck_round_keys(key: bytes) -> list[int]: ...
def speck_encrypt(key: bytes, x: int, y: int) -> tuple[int, int]: ...
def keystream(key: bytes, length: int) -> bytes:
    """The first `length` bytes of the counter-mode keystream of `key`."""

def multispeck(parts: Sequence[bytes]) -> bytes: ...
def name_to_ipv6(name: str | bytes) -> bytes:
    """The 16-byte node address of a name (str is taken as its UTF-8 bytes). Slow: cache it."""

def names_to_ipv6(names: Sequence[bytes]) -> list[bytes]:
    """`name_to_ipv6` of each name, in order, the searches side by side in vector lanes: about a
    quarter of the cost each in batches of hundreds (without the GIL when more than one)."""

# --- The legacy_tcp handshake (PROTOCOL.md section 2) ---
def keyfinder(psk: bytes, iv: bytes) -> bytes: ...
def make_hello(psk: bytes, iv: bytes) -> bytes:
    """iv || keyfinder(psk, iv): the 32 bytes a side sends first."""

def find_psk(hello: bytes, psks: Sequence[bytes]) -> int | None:
    """Index of the first PSK whose keyfinder matches the peer's 32-byte hello, or None."""

def derive_keys(psk: bytes, iv: bytes) -> tuple[bytes, bytes]:
    """(enc_key, mac_key) of the direction whose sender chose `iv`."""

@final
class Sealer:
    """Turns mesh packets into wire frames for one direction of a link (its keystream runs on)."""

    def __new__(cls, psk: bytes, iv: bytes) -> Self: ...
    def seal(self, packet: bytes) -> bytes: ...
    def seal_batch(self, packets: Sequence[bytes]) -> bytes:
        """All frames of `packets`, in order, in one buffer (MACs computed side by side)."""

    def seal_data_batch(
        self, ip_packets: Sequence[bytes], timestamp_ms: int, skip: int = 0
    ) -> bytes:
        """Wrap each IP packet as a cmd-3 mesh packet stamped `timestamp_ms`, and seal them all.

        The first `skip` bytes of each are left out (a TUN read's header); ValueError if shorter."""

@final
class Opener:
    """Reads the other direction of a link: feed it the TCP byte stream in chunks of any size."""

    def __new__(cls, psk: bytes, iv: bytes) -> Self: ...
    def feed(self, chunk: bytes) -> list[bytes]:
        """Every complete, verified mesh packet the stream holds so far.

        Raises smolmesh.errors.BadMacError on a MAC mismatch; from then on every call raises it.
        """

    def feed_and_triage(
        self, chunk: bytes, now_ms: int, seen: DuplicateFilter
    ) -> list[tuple[int, int, bytes, bytes | None]]:
        """`triage(self.feed(chunk), now_ms, seen)` in one call (one crossing into Rust)."""

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""

# --- The secure_tcp link (docs/SECURE_TCP.md) ---
@final
class SecureInitiator:
    """The connector's side of the Noise_NNpsk0_25519_AESGCM_SHA256 handshake, with a fresh
    ephemeral key. `psk`: the 32-byte scrypt of the config key (ValueError otherwise)."""

    def __new__(cls, psk: bytes) -> Self: ...
    def message(self) -> bytes:
        """Message 1, 48 bytes: send it as soon as TCP is up."""

    def finish(self, message2: bytes) -> tuple[SecureSealer, SecureOpener] | None:
        """The link from the listener's 48-byte answer, or None when it does not verify (close).

        Callable once: a second call raises ValueError. Send an empty packet first (key
        confirmation)."""

def secure_respond(
    message1: bytes, psks: Sequence[bytes]
) -> tuple[int, bytes, SecureSealer, SecureOpener] | None:
    """The listener's side: (index of the first PSK with which `message1` verifies, message 2 to
    send, sealer, opener), or None when none does (close). Each PSK must be 32 bytes (ValueError).
    """

@final
class SecureSealer:
    """Turns mesh packets into secure_tcp frames for one direction of a link (AES-256-GCM, its
    nonce counting the frames)."""

    def __new__(cls, key: bytes) -> Self:
        """`key`: the direction's 32-byte key from the handshake's split."""

    def seal(self, packet: bytes) -> bytes: ...
    def seal_batch(self, packets: Sequence[bytes]) -> bytes:
        """All frames of `packets`, in order, in one buffer."""

    def seal_data_batch(
        self, ip_packets: Sequence[bytes], timestamp_ms: int, skip: int = 0
    ) -> bytes:
        """Wrap each IP packet as a cmd-3 mesh packet stamped `timestamp_ms`, and seal them all.

        The first `skip` bytes of each are left out (a TUN read's header); ValueError if shorter."""

@final
class SecureOpener:
    """Reads the other direction of a secure_tcp link: feed it the TCP byte stream in chunks of
    any size."""

    def __new__(cls, key: bytes) -> Self:
        """`key`: the direction's 32-byte key from the handshake's split."""

    def feed(self, chunk: bytes) -> list[bytes]:
        """Every complete, verified mesh packet the stream holds so far (empty ones included).

        Raises smolmesh.errors.BadMacError when a frame's tag fails; from then on every call
        raises it.
        """

    def feed_and_triage(
        self, chunk: bytes, now_ms: int, seen: DuplicateFilter
    ) -> list[tuple[int, int, bytes, bytes | None]]:
        """`triage(self.feed(chunk), now_ms, seen)` in one call (one crossing into Rust), then a
        row `(ECHO_REQUEST_ROW or ECHO_REPLY_ROW, 0, b"", None)` for each echo packet opened."""

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""

    @property
    def frames_opened(self) -> int:
        """Frames opened so far; the listener counts the link as up once it is 1."""

# --- Mesh packets (PROTOCOL.md section 3) ---
def parse_header(packet: bytes) -> tuple[int, int] | None:
    """(timestamp_ms, cmd), or None when the packet is shorter than 9 bytes."""

def ip_destination(ip_packet: bytes, skip: int = 0) -> bytes | None:
    """Destination address of an IPv4 (4 bytes) or IPv6 (16 bytes) packet that starts at byte
    `skip`, or None."""

def make_packet(timestamp_ms: int, cmd: int, payload: bytes) -> bytes: ...

@final
class DuplicateFilter:
    """The most recent `capacity` distinct packets, by a keyed hash of their bytes."""

    def __new__(cls, capacity: int = ..., seed: bytes | None = None) -> Self:
        """`capacity` defaults to DUPLICATE_FILTER_CAPACITY (16,384); `seed`: 16 bytes of hash key,
        None draws a random one. (The default shows as `...`: stubtest matches pyo3's signature.)"""

    def insert(self, packet: bytes) -> bool:
        """True if the packet is new (and is now remembered), False if it was seen."""

    def __contains__(self, packet: bytes, /) -> bool: ...
    def __len__(self) -> int: ...

def triage(
    packets: Sequence[bytes], now_ms: int, seen: DuplicateFilter
) -> list[tuple[int, int, bytes, bytes | None]]:
    """Steps 1-3 and 6 of PROTOCOL.md section 3 over a batch, in order.

    For each packet that survives (long enough, inside the window, known cmd with a well-formed
    payload) one tuple (cmd, timestamp_ms, key, packet):
    cmd 0: key = the name bytes (UTF-8 not yet checked); cmd 1: the 16-byte address;
    cmd 2: the 4-byte address; cmd 3: the IP destination (4 or 16 bytes; no IP packet: dropped).
    `packet` is the whole mesh packet, unchanged, for forwarding. Dropped packets are omitted;
    a dropped packet is not remembered by `seen` unless it reached step 3.
    A packet seen before is not acted on, but returned with `packet` None, since the link it came
    over still tells something: for an announcement (cmd 0, 1, 2) that the address is reachable
    over it too (a backup path); for data (cmd 3) that arrives over the link our route to its
    destination leads over, that the peer there routes it back through us.
    """

# --- Packets too long for the mesh (see rust/icmp.rs) ---
def icmp_too_big(
    ip_packet: bytes, mtu: int, source_v6: bytes | None = None, source_v4: bytes | None = None
) -> bytes | None:
    """The ICMP error that tells the host an IP packet longer than `mtu` does not fit.

    IPv6: "packet too big" (type 2) with `mtu`, quoting the packet up to 1280 bytes in all;
    IPv4: "fragmentation needed" (type 3 code 4) with `mtu`, quoting it up to 576 bytes in all.
    From `source_v6` (16 bytes) or `source_v4` (4 bytes), None: the packet's own destination; to
    the packet's source. None when there is nothing to answer: the packet fits, is not IPv4 or IPv6,
    is malformed, is an ICMP error itself, a later IPv4 fragment, or from or (IPv4) to an address
    no ICMP error may concern.
    """

# --- TUN writes with IFF_VNET_HDR (see rust/gro.rs) ---
def tcp_gro(packets: Sequence[bytes], skip: int) -> list[bytes]:
    """The TUN writes for a batch of delivered packets, each packet's IP packet at byte `skip`.

    Each write is a 10-byte virtio_net_hdr and then a packet or a TCP super-packet: consecutive
    full-size segments of one flow (same addresses, ports, ACK, options, window; IPv4 with DF and
    no options; flags ACK or ACK|PSH; valid checksums) coalesced for the kernel to take as one
    (GSO, NEEDS_CSUM). Any other packet follows a zero header unchanged. Writes keep each TCP
    connection's order; a run stands where its first segment stood. A packet with nothing after
    `skip` is left out.
    """
