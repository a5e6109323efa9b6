"""The control plane: a running node answers `smolmesh status` over a Unix socket.

A `meshnode` serves its status at `/run/smolmesh/<node name>.sock` (root only: the directory is
mode 0700). A client connects, reads one JSON document (what `Node.status()` returns) to the end of
the stream, and the node closes the connection. Nothing on the data path imports this module.

One name, one socket. The directory is shared by every network namespace of the machine, so a
second node of the same name may start while the first runs. A socket file whose path is taken is
probed: nobody listening means a node was killed and left it, and it is replaced; a node that
answers keeps it, and the newcomer serves no status (with a warning) rather than hide the running
node from `smolmesh status`. A node that stops removes the path only while it is still its own
socket file (same device and inode as when it bound it).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from smolmesh.errors import LocalError

log = logging.getLogger("smolmesh.control")

SOCKET_DIR = Path("/run/smolmesh")
MAX_STATUS_BYTES = 16 * 1024 * 1024  # a client reads no more than this
PROBE_TIMEOUT_S = 0.5  # a running node accepts at once; a killed node's socket refuses at once


def socket_path(node_name: str, directory: Path = SOCKET_DIR) -> Path:
    """Where the node called `node_name` serves its status. Names may hold any character."""
    safe = "".join(c if c.isalnum() or c in "-_." else f"%{ord(c):02x}" for c in node_name)
    return directory / f"{safe}.sock"


@dataclass(frozen=True)
class StatusSocket:
    """The status server of this node and the identity of the socket file it bound."""

    server: asyncio.Server
    file_id: tuple[int, int]  # (st_dev, st_ino) right after bind


async def serve_status(
    status: Callable[[], Awaitable[dict[str, Any]]], path: Path
) -> StatusSocket | None:
    """Serve `await status()` as JSON at `path`; None (and a warning) where the socket cannot be
    made or another running node already serves its status there."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # msgspec encodes a full route table (7.8 MB) in about 20 ms, json in 140.
            writer.write(msgspec.json.encode(await status()))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    if not hasattr(asyncio, "start_unix_server"):  # Windows
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            sock.bind(str(path))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            if await _answers(path):
                sock.close()
                log.warning(
                    "another node named %s already serves its status at %s; this node serves"
                    " none (`smolmesh status` shows the other node)",
                    (await status())["node_name"],
                    path,
                )
                return None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # left behind by a node that was killed
            sock.bind(str(path))
        stat = os.stat(path)
        sock.listen()
        server = await asyncio.start_unix_server(answer, sock=sock)
    except OSError as error:
        sock.close()
        log.warning("no status socket at %s: %s", path, error.strerror or error)
        return None
    log.debug("status served at %s", path)
    return StatusSocket(server, (stat.st_dev, stat.st_ino))


async def _answers(path: Path) -> bool:
    """Whether a running node listens at `path`. Only a refused connection or a missing file
    says no; a connection that does not complete (a full backlog, or no answer in time) says
    yes, so a busy node keeps its socket. Any other error (permission denied, say) is raised."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), PROBE_TIMEOUT_S)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except (BlockingIOError, TimeoutError):
        return True
    writer.close()
    return True


async def close_status(served: StatusSocket | None, path: Path) -> None:
    """Stop serving; remove the socket file at `path` only if it is still the one this node bound
    (a node of the same name may have replaced it after this one was taken for dead)."""
    if served is None:
        return
    # Compared while the server is open: its bound socket keeps the inode it was bound to in use,
    # so another file at `path` cannot have been given the same number.
    with contextlib.suppress(OSError):
        stat = os.stat(path)
        if (stat.st_dev, stat.st_ino) == served.file_id:
            path.unlink()
    served.server.close()
    await served.server.wait_closed()


class NoNodeThere(LocalError):
    """Nothing serves the status socket: no file, or one a killed node left behind."""


def read_status(path: Path, timeout: float = 5.0) -> dict[str, Any]:
    """The status of the node serving at `path`; LocalError in one line when there is none."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            chunks = []
            size = 0
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_STATUS_BYTES:
                    raise LocalError(f"{path}: status larger than {MAX_STATUS_BYTES} bytes")
    except (FileNotFoundError, ConnectionRefusedError):
        raise NoNodeThere(f"no node is running with the status socket {path}") from None
    except PermissionError:
        raise LocalError(f"{path}: permission denied (the status socket is root's)") from None
    except OSError as error:
        raise LocalError(f"{path}: {error.strerror or error}") from None
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        raise LocalError(f"{path}: the node answered something that is not JSON") from None


def running_nodes(directory: Path = SOCKET_DIR) -> list[Path]:
    """The status sockets in `directory`, some perhaps left behind by killed nodes."""
    try:
        return sorted(directory.glob("*.sock"))
    except OSError:
        return []


def read_statuses(paths: list[Path]) -> list[dict[str, Any]]:
    """The status of each node that answers at one of `paths`.

    A socket a killed node left behind is skipped: it stays until a node of that name starts
    again, and must not hide the nodes that are running. Any other failure is an error."""
    statuses = []
    for path in paths:
        try:
            statuses.append(read_status(path))
        except NoNodeThere:
            continue
    return statuses


def format_status(status: dict[str, Any]) -> str:
    """The status as a person reads it."""
    now = time.time()
    lines = [
        f"node {status['node_name']}  {status['address']}  " + "  ".join(status["ipv4_addresses"]),
        f"  up {_duration(now - status['started_at'])}, pid {status['pid']}",
        f"  links ({len(status['links'])}):",
    ]
    for link in status["links"]:
        direction = "out" if link["outgoing"] else "in "
        lines.append(
            f"    {direction} {link['peer']:<28} {link.get('transport', ''):<10}"
            f" up {_duration(now - link['up_since']):>8}"
            f"  sent {_size(link['bytes_sent']):>9} {_rate(link.get('sent_per_s', 0.0)):>14}"
            f"  received {_size(link['bytes_received']):>9}"
            f" {_rate(link.get('received_per_s', 0.0)):>14}"
            f"  dropped {link['packets_dropped']}"
            + _tcp_stats(link)
            + ("  (returns our announcements)" if link.get("returns_announcements") else "")
            + ("  (silent: the peer answers nothing)" if link.get("silent") else "")
            + (f"  (fell silent {link['silences']}x)" if link.get("silences") else "")
            + ("  (answers no echo)" if link.get("answers_echo") is False else "")
        )
    lines.append(f"  routes ({len(status['routes'])}):")
    for route in status["routes"]:
        name = f"({route['name']})" if route["name"] else ""
        backups = f"  +{route['backup_paths']} backup" if route["backup_paths"] else ""
        lines.append(f"    {route['address']:<40} {name:<16} via {route['via']}{backups}")
    if status.get("tun"):
        packets, writes = status.get("tun_packets_written", 0), status.get("tun_writes", 0)
        lines.append(f"  device {status['tun']}: {packets} packets to the host in {writes} writes")
    if status.get("routes_refused"):
        lines.append(
            f"  route table full: {status['routes_refused']} new addresses ignored"
            f" ({_size(status.get('route_table_bytes', 0))} of announcements and names held)"
        )
    sent, suppressed = status.get("icmp_errors_sent", 0), status.get("icmp_errors_suppressed", 0)
    if sent or suppressed:  # only with an MTU above what a mesh packet holds
        lines.append(
            f"  ICMP errors for packets too long for the mesh: {sent} sent,"
            f" {suppressed} suppressed (rate limit)"
        )
    return "\n".join(lines)


# Prometheus metrics of `status`: (name, type, help, value of a link or of a node's status).
_LINK_METRICS: list[tuple[str, str, str, Callable[[dict[str, Any]], float | None]]] = [
    (
        "link_bytes_sent_total",
        "counter",
        "Bytes sent over the link.",
        lambda link: link["bytes_sent"],
    ),
    (
        "link_bytes_received_total",
        "counter",
        "Bytes received over the link.",
        lambda link: link["bytes_received"],
    ),
    (
        "link_packets_dropped_total",
        "counter",
        "Data packets dropped because the link's send buffer was full.",
        lambda link: link["packets_dropped"],
    ),
    (
        "link_rtt_seconds",
        "gauge",
        "The kernel's smoothed round trip to the peer.",
        lambda link: None if link.get("rtt_ms") is None else round(link["rtt_ms"] / 1000, 6),
    ),
    (
        "link_retransmitted_segments_total",
        "counter",
        "TCP segments sent again over the link.",
        lambda link: link.get("retransmitted_segments"),
    ),
    (
        "link_silent",
        "gauge",
        "1 while the peer answers nothing (no acknowledgement, or no echo) and the link's routes"
        " avoid it.",
        lambda link: int(bool(link.get("silent"))),
    ),
    (
        "link_silences_total",
        "counter",
        "Times the link has fallen silent since it came up.",
        lambda link: link.get("silences", 0),
    ),
    (
        "link_answers_echo",
        "gauge",
        "1 if the peer answers echo requests, so a stopped peer is found (secure_tcp only).",
        lambda link: None if link.get("answers_echo") is None else int(link["answers_echo"]),
    ),
    (
        "link_returns_announcements",
        "gauge",
        "1 if the peer sends this node's own announcements back, as smolmesh2 does.",
        lambda link: int(bool(link.get("returns_announcements"))),
    ),
]
_NODE_METRICS: list[tuple[str, str, str, Callable[[dict[str, Any]], float | None]]] = [
    (
        "start_time_seconds",
        "gauge",
        "When the node started (Unix time).",
        lambda status: status["started_at"],
    ),
    ("links", "gauge", "Links that are up.", lambda status: len(status["links"])),
    (
        "links_allowed",
        "gauge",
        "Links that may be up at once (from the open-file limit); more incoming ones are refused.",
        lambda status: status.get("links_allowed"),
    ),
    ("routes", "gauge", "Addresses the node has a route to.", lambda status: len(status["routes"])),
    (
        "routes_without_backup",
        "gauge",
        "Routes heard over one link only: no path to fall back on if it fails.",
        lambda status: sum(1 for route in status["routes"] if not route["backup_paths"]),
    ),
    (
        "route_table_bytes",
        "gauge",
        "Bytes of announcements and node names the route table holds; at 16 MiB new addresses"
        " are ignored.",
        lambda status: status.get("route_table_bytes"),
    ),
    (
        "routes_refused_total",
        "counter",
        "Announcements of new addresses ignored because the route table was full.",
        lambda status: status.get("routes_refused"),
    ),
    (
        "tun_packets_written_total",
        "counter",
        "Packets handed to the host through the TUN device.",
        lambda status: status.get("tun_packets_written", 0),
    ),
    (
        "tun_writes_total",
        "counter",
        "Writes to the TUN device that took them.",
        lambda status: status.get("tun_writes", 0),
    ),
    (
        "icmp_errors_sent_total",
        "counter",
        "ICMP errors sent for packets too long for a mesh packet.",
        lambda status: status.get("icmp_errors_sent", 0),
    ),
    (
        "echo_announcements_total",
        "counter",
        "Announcements made to ask smolmesh2 peers, which send each back, whether they still run"
        " (legacy_tcp's echo; at most one a second).",
        lambda status: status.get("echo_announcements"),
    ),
    (
        "warm_ticks_total",
        "counter",
        "Wake-ups to keep the packet path warm while sparse traffic flows (config keep_warm_s).",
        lambda status: status.get("warm_ticks"),
    ),
    (
        "icmp_errors_suppressed_total",
        "counter",
        "ICMP errors not sent, over the rate limit.",
        lambda status: status.get("icmp_errors_suppressed", 0),
    ),
]


def format_prometheus(statuses: list[dict[str, Any]]) -> str:
    """The statuses of nodes as metrics in Prometheus's text exposition format, each sample
    labelled with its node (and a link's with its peer, direction and kind of link)."""
    lines = []
    for metrics, per_link in ((_NODE_METRICS, False), (_LINK_METRICS, True)):
        for name, kind, help_text, value_of in metrics:
            lines += [f"# HELP smolmesh_{name} {help_text}", f"# TYPE smolmesh_{name} {kind}"]
            for status in statuses:
                node = _label(status["node_name"])
                if not per_link:
                    value = value_of(status)
                    if value is not None:  # None: a node too old to say
                        lines.append(f'smolmesh_{name}{{node="{node}"}} {_number(value)}')
                    continue
                for link in status["links"]:
                    value = value_of(link)
                    if value is None:  # not known here (no TCP_INFO: not Linux)
                        continue
                    labels = (
                        f'node="{node}",peer="{_label(link["peer"])}",'
                        f'direction="{"out" if link["outgoing"] else "in"}",'
                        f'transport="{_label(link.get("transport", ""))}"'
                    )
                    lines.append(f"smolmesh_{name}{{{labels}}} {_number(value)}")
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    """A label value escaped as the exposition format asks."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | None) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _tcp_stats(link: dict[str, Any]) -> str:
    """A link's round trip and TCP retransmissions, as the kernel counts them (Linux only)."""
    if link.get("rtt_ms") is None:
        return ""
    return f"  rtt {link['rtt_ms']:.2f} ms  resent {link['retransmitted_segments']} segments"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _rate(bytes_per_s: float) -> str:
    """A link's rate as network people write it: bits a second, in powers of 1000."""
    bits = bytes_per_s * 8
    for unit in ("bit/s", "kbit/s", "Mbit/s"):
        if bits < 1000:
            return f"({bits:.0f} {unit})" if unit == "bit/s" else f"({bits:.1f} {unit})"
        bits /= 1000
    return f"({bits:.2f} Gbit/s)"


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return str(count)


__all__ = [
    "format_prometheus",
    "format_status",
    "read_status",
    "running_nodes",
    "serve_status",
    "socket_path",
]
