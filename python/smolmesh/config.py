"""The node's config: smolmesh2's JSON file, decoded into typed frozen structs.

A file written for smolmesh2 loads unchanged; fields this version does not know are ignored, so a
newer file loads too. Every mistake becomes one `ConfigError` whose str() is one line naming the
file and the place in it, e.g. `config.json: $.transports[0].port: expected int, got str`.

Addresses stay strings as written (`ipv4_addresses` holds canonical dotted quads: they are checked
with `ipaddress.IPv4Address`, which also refuses leading zeros, so the string is already canonical).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from smolmesh import tuning
from smolmesh.errors import ConfigError

__all__ = [
    "Config",
    "LegacyTcpConnect",
    "LegacyTcpListen",
    "SecureTcpConnect",
    "SecureTcpListen",
    "TcpConnect",
    "TcpListen",
    "Transport",
    "load_config",
    "parse_config",
]

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
# A Linux interface name: at most 15 bytes (IFNAMSIZ - 1), none of them a slash, colon or space.
_INTERFACE_NAME = re.compile(r"[^/:\s]{1,15}")
# 1280 is the least MTU on which the kernel keeps IPv6 (the node's own address) on a device; the
# most is the TUN device's. A packet longer than a mesh packet holds after its 9-byte header
# (65,526 bytes) is answered with ICMP "packet too big" / "fragmentation needed", so the host
# learns to send at most that much to the mesh.
Mtu = Annotated[int, msgspec.Meta(ge=1280, le=65535)]
# The limit on those ICMP errors (RFC 4443, section 2.4 (f): it SHOULD be configurable): a token
# bucket of `icmp_error_burst` tokens that refills at `icmp_errors_per_s`. Burst 0 sends none;
# rate 0 sends one burst in the node's life and no more.
IcmpErrorsPerS = Annotated[float, msgspec.Meta(ge=0)]
IcmpErrorBurst = Annotated[int, msgspec.Meta(ge=0)]
KeepWarmS = Annotated[float, msgspec.Meta(ge=0)]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class TcpConnect(msgspec.Struct, frozen=True, kw_only=True):
    """Dial `host:port` and keep the link up (redialling after a failure) with the PSK `key`.
    The fields of both kinds of link; a config names the kind by its subclass's `type` tag."""

    host: NonEmptyStr
    port: Port
    key: NonEmptyStr


class TcpListen(msgspec.Struct, frozen=True, kw_only=True):
    """Accept links on TCP `port` (all addresses) from peers holding any one of `keys`."""

    port: Port
    keys: Annotated[list[NonEmptyStr], msgspec.Meta(min_length=1)]


class LegacyTcpConnect(
    TcpConnect, frozen=True, kw_only=True, tag_field="type", tag="legacy_tcp_connect"
):
    """A `TcpConnect` over smolmesh2's legacy_tcp link."""


class LegacyTcpListen(
    TcpListen, frozen=True, kw_only=True, tag_field="type", tag="legacy_tcp_listen"
):
    """A `TcpListen` for smolmesh2's legacy_tcp link."""


class SecureTcpConnect(
    TcpConnect, frozen=True, kw_only=True, tag_field="type", tag="secure_tcp_connect"
):
    """A `TcpConnect` over smolmesh's own secure_tcp link (docs/SECURE_TCP.md): for peers that
    are smolmesh nodes."""


class SecureTcpListen(
    TcpListen, frozen=True, kw_only=True, tag_field="type", tag="secure_tcp_listen"
):
    """A `TcpListen` for smolmesh's own secure_tcp link (docs/SECURE_TCP.md)."""


Transport = LegacyTcpConnect | LegacyTcpListen | SecureTcpConnect | SecureTcpListen
TRANSPORT_TYPES = (
    "legacy_tcp_connect",
    "legacy_tcp_listen",
    "secure_tcp_connect",
    "secure_tcp_listen",
)


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """One node's settings. Build it with `load_config`, `parse_config` or `Config.from_dict`:
    the constructor itself does not check field types."""

    node_name: NonEmptyStr
    linux_tuntap: bool = False
    windows_tuntap: bool = False
    ipv4_addresses: list[str] = []
    transports: list[Transport] = []
    tun_name: str = "smolmesh1"
    mtu: Mtu | None = None  # None: the node's default
    log_level: str | None = None  # None: INFO, or what the command line says
    icmp_errors_per_s: IcmpErrorsPerS = tuning.ICMP_ERRORS_PER_S
    icmp_error_burst: IcmpErrorBurst = tuning.ICMP_ERROR_BURST
    # Write runs of TCP segments for the host to the TUN device in one write each (IFF_VNET_HDR,
    # see tun/linux.py); False: one write per packet, as before.
    tun_coalesce: bool = True
    # Seconds after a data packet that the node keeps its packet path warm, waking every 5 ms
    # (warmth.py); 0: never, so a packet after a quiet spell finds it cold.
    keep_warm_s: KeepWarmS = tuning.KEEP_WARM_S

    def __post_init__(self) -> None:
        # msgspec reports a ValueError raised here as a ValidationError of this message without a
        # place of its own (this struct is the root), so the message carries its place itself.
        for index, address in enumerate(self.ipv4_addresses):
            if not _is_ipv4(address):
                raise ValueError(
                    f"not an IPv4 address: {address!r} - at `$.ipv4_addresses[{index}]`"
                )
        if not _INTERFACE_NAME.fullmatch(self.tun_name) or len(self.tun_name.encode()) > 15:
            raise ValueError(
                f"not an interface name: {self.tun_name!r}, expected 1 to 15 bytes without"
                " '/', ':' or spaces - at `$.tun_name`"
            )
        if self.log_level is not None and self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(
                f"unknown log level {self.log_level!r}, expected one of {', '.join(LOG_LEVELS)}"
                " - at `$.log_level`"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source_name: str = "config") -> Config:
        """A Config from a dict of the JSON file's shape; raises ConfigError like load_config."""
        return parse_config(data, source_name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON file's shape of this config (every field, defaults included)."""
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check the JSON config file at `path`."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise ConfigError(f"{name}: cannot read: {error.strerror or error}") from None
    return parse_config(data, name)


def parse_config(data: bytes | str | Mapping[str, Any], source_name: str = "config") -> Config:
    """Check a config given as JSON text or as a dict; `source_name` starts every error message."""
    try:
        if isinstance(data, Mapping):
            return msgspec.convert(data, Config)
        if isinstance(data, str):
            data = data.encode()
        # Windows editors like to start a UTF-8 file with a byte order mark.
        data = data.removeprefix(b"\xef\xbb\xbf")
        if not data.strip():
            raise ConfigError(f"{source_name}: the file is empty, expected a JSON object")
        return msgspec.json.decode(data, type=Config)
    except msgspec.ValidationError as error:
        raise ConfigError(f"{source_name}: {_reshape_validation(str(error))}") from None
    except msgspec.DecodeError as error:
        raise ConfigError(f"{source_name}: {_reshape_decode(str(error), data)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source_name}: invalid JSON: a string is not valid UTF-8") from None


def _is_ipv4(address: str) -> bool:
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return True


_PLACE = re.compile(r"(?P<text>.*) - at `(?P<place>\$[^`]*)`", re.DOTALL)
_TRANSPORT_TYPE = re.compile(r"\$\.transports\[\d+\]\.type")
_BYTE_OFFSET = re.compile(r"\s*\(byte (\d+)\)")


def _reshape_validation(message: str) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.a.b`" as "$.a.b: expected int, got str"."""
    match = _PLACE.fullmatch(message)
    text, place = (match["text"], match["place"]) if match else (message, "$")
    text = text.replace("`", "")
    if text.startswith("Object missing required field "):
        text = "missing required field " + text.removeprefix("Object missing required field ")
    elif _TRANSPORT_TYPE.fullmatch(place) and text.startswith("Invalid value "):
        value = text.removeprefix("Invalid value ")
        text = f"unknown transport type {value}, expected one of {', '.join(TRANSPORT_TYPES)}"
    text = text[:1].lower() + text[1:]
    return _one_line(f"{place}: {text}")


def _reshape_decode(message: str, data: bytes | str | Mapping[str, Any]) -> str:
    """msgspec's "JSON is malformed: invalid character (byte 12)" with a line and column."""
    text = message.removeprefix("JSON is malformed: ")
    if text == "Input data was truncated":
        text = "the JSON ends too early"
    elif text.lower().startswith("invalid utf-8"):
        # msgspec 0.23 checks UTF-8 itself; before, decoding raised UnicodeDecodeError (below).
        text = "a string is not valid UTF-8"
    offset_match = _BYTE_OFFSET.search(text)
    where = ""
    if offset_match and isinstance(data, bytes):
        offset = int(offset_match[1])
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        where = f"line {line} column {column}: "
        text = _BYTE_OFFSET.sub("", text)
    return _one_line(f"{where}invalid JSON: {text[:1].lower() + text[1:]}")


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")
