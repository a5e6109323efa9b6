"""smolmesh: a mesh VPN node that speaks the smolmesh2 protocol, scriptable from Python.

The per-packet work (Speck128/128, multispeck MACs, the legacy_tcp link codec, the duplicate
filter) is the Rust module `smolmesh._core`, re-exported here; the node, its links and the host
side are Python. `Node` is imported on first use, so `import smolmesh` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smolmesh._core import (
    CMD_DATA,
    CMD_IPV4,
    CMD_IPV6,
    CMD_NAME,
    DUPLICATE_FILTER_CAPACITY,
    HEADER_LEN,
    HELLO_LEN,
    IV_LEN,
    MAC_LEN,
    MAX_PACKET_LEN,
    WINDOW_MS,
    DuplicateFilter,
    Opener,
    Sealer,
    derive_keys,
    find_psk,
    ip_destination,
    keyfinder,
    keystream,
    make_hello,
    make_packet,
    multispeck,
    name_to_ipv6,
    parse_header,
    triage,
)
from smolmesh.config import (
    Config,
    LegacyTcpConnect,
    LegacyTcpListen,
    SecureTcpConnect,
    SecureTcpListen,
    load_config,
    parse_config,
)
from smolmesh.errors import (
    BadMacError,
    ConfigError,
    HandshakeError,
    LocalError,
    PeerError,
    SmolmeshError,
    StartupError,
)

if TYPE_CHECKING:
    from smolmesh.node import Node

__version__ = "0.1.0"

__all__ = [
    "CMD_DATA",
    "CMD_IPV4",
    "CMD_IPV6",
    "CMD_NAME",
    "DUPLICATE_FILTER_CAPACITY",
    "HEADER_LEN",
    "HELLO_LEN",
    "IV_LEN",
    "MAC_LEN",
    "MAX_PACKET_LEN",
    "WINDOW_MS",
    "BadMacError",
    "Config",
    "ConfigError",
    "DuplicateFilter",
    "HandshakeError",
    "LegacyTcpConnect",
    "LegacyTcpListen",
    "LocalError",
    "Node",
    "Opener",
    "PeerError",
    "Sealer",
    "SecureTcpConnect",
    "SecureTcpListen",
    "SmolmeshError",
    "StartupError",
    "derive_keys",
    "find_psk",
    "format_ipv6",
    "ip_destination",
    "keyfinder",
    "keystream",
    "load_config",
    "make_hello",
    "make_packet",
    "multispeck",
    "name_to_ipv6",
    "parse_config",
    "parse_header",
    "triage",
]


def format_ipv6(address: bytes) -> str:
    """16 address bytes as smolmesh2 prints them: 8 groups of 4 lowercase hex digits."""
    if len(address) != 16:
        raise ValueError(f"an IPv6 address is 16 bytes, got {len(address)}")
    return ":".join(address[i : i + 2].hex() for i in range(0, 16, 2))


def __getattr__(name: str) -> Any:
    # PEP 562: the node (asyncio, uvloop, the links) loads only when a script asks for it.
    if name == "Node":
        from smolmesh.node import Node

        return Node
    raise AttributeError(f"module 'smolmesh' has no attribute {name!r}")
