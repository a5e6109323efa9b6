"""The control plane: a running node answers `smolmesh status` over a Unix socket.

A `meshnode` serves its status at `/run/smolmesh/<node name>.sock` (root only: the directory is
mode 0700). A client connects, reads one JSON document (what `Node.status()` returns) to the end of
the stream, and the node closes the connection. Nothing on the data path imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smolmesh.errors import LocalError

log = logging.getLogger("smolmesh.control")

SOCKET_DIR = Path("/run/smolmesh")
MAX_STATUS_BYTES = 16 * 1024 * 1024  # a client reads no more than this


def socket_path(node_name: str, directory: Path = SOCKET_DIR) -> Path:
    """Where the node called `node_name` serves its status. Names may hold any character."""
    safe = "".join(c if c.isalnum() or c in "-_." else f"%{ord(c):02x}" for c in node_name)
    return directory / f"{safe}.sock"


async def serve_status(status: Callable[[], dict[str, Any]], path: Path) -> asyncio.Server | None:
    """Serve `status()` as JSON at `path`; None (and a warning) where the socket cannot be made."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(json.dumps(status()).encode())
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    if not hasattr(asyncio, "start_unix_server"):  # Windows
        return None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left behind by a node that was killed
        server = await asyncio.start_unix_server(answer, path=str(path))
    except OSError as error:
        log.warning("no status socket at %s: %s", path, error.strerror or error)
        return None
    log.debug("status served at %s", path)
    return server


async def close_status(server: asyncio.Server | None, path: Path) -> None:
    if server is None:
        return
    server.close()
    await server.wait_closed()
    with contextlib.suppress(OSError):
        path.unlink()


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
        raise LocalError(f"no node is running with the status socket {path}") from None
    except PermissionError:
        raise LocalError(f"{path}: permission denied (the status socket is root's)") from None
    except OSError as error:
        raise LocalError(f"{path}: {error.strerror or error}") from None
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        raise LocalError(f"{path}: the node answered something that is not JSON") from None


def running_nodes(directory: Path = SOCKET_DIR) -> list[Path]:
    try:
        return sorted(directory.glob("*.sock"))
    except OSError:
        return []


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
            f"    {direction} {link['peer']:<28} up {_duration(now - link['up_since']):>8}"
            f"  sent {_size(link['bytes_sent']):>9}  received {_size(link['bytes_received']):>9}"
            f"  dropped {link['packets_dropped']}"
        )
    lines.append(f"  routes ({len(status['routes'])}):")
    for route in status["routes"]:
        name = f"({route['name']})" if route["name"] else ""
        backups = f"  +{route['backup_paths']} backup" if route["backup_paths"] else ""
        lines.append(f"    {route['address']:<40} {name:<16} via {route['via']}{backups}")
    sent, suppressed = status.get("icmp_errors_sent", 0), status.get("icmp_errors_suppressed", 0)
    if sent or suppressed:  # only with an MTU above what a mesh packet holds
        lines.append(
            f"  ICMP errors for packets too long for the mesh: {sent} sent,"
            f" {suppressed} suppressed (rate limit)"
        )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return str(count)


__all__ = ["format_status", "read_status", "running_nodes", "serve_status", "socket_path"]
