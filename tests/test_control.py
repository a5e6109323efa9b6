"""The status socket of control.py in a temporary directory: a socket left by a killed node is
replaced, one a running node of the same name serves is left alone, and a node that stops removes
only its own. Real Unix sockets under both event loops a node may run on (uvloop, asyncio)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from loop_watch import LoopWatch
from smolmesh import control, tuning
from smolmesh._core import CMD_IPV6
from smolmesh.node import Node
from smolmesh.router import Link, now_ms

T = TypeVar("T")

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")


def run_on(loop_name: str) -> Callable[[Coroutine[Any, Any, T]], T]:
    if loop_name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run
    return asyncio.run


loops = pytest.mark.parametrize("loop_name", ["uvloop", "asyncio"])


def node_status(name: str, **fields: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A status callable as a node serves it (`Node.status_in_slices`)."""

    async def status() -> dict[str, Any]:
        return {"node_name": name, "pid": os.getpid(), **fields}

    return status


def file_id(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def leave_socket_file(path: Path) -> None:
    """What a killed node leaves: a socket file nobody listens on."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
    assert path.is_socket()


@loops
def test_a_socket_left_by_a_killed_node_is_replaced(tmp_path: Path, loop_name: str) -> None:
    path = control.socket_path("left", tmp_path)
    leave_socket_file(path)

    async def scenario() -> None:
        served = await control.serve_status(node_status("new"), path)
        assert served is not None
        try:
            assert (await asyncio.to_thread(control.read_status, path))["node_name"] == "new"
        finally:
            await control.close_status(served, path)
        assert not path.exists()

    run_on(loop_name)(scenario())


@loops
def test_a_running_node_of_the_same_name_keeps_its_socket(
    tmp_path: Path, loop_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = control.socket_path("twin", tmp_path)

    async def scenario() -> None:
        first = await control.serve_status(node_status("twin", which="first"), path)
        assert first is not None
        try:
            served_by_first = file_id(path)
            with caplog.at_level(logging.WARNING, logger="smolmesh.control"):
                second = await control.serve_status(node_status("twin", which="second"), path)
            assert second is None
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1, warnings
            assert "another node named twin" in warnings[0] and str(path) in warnings[0]
            assert "serves none" in warnings[0]
            assert file_id(path) == served_by_first
            status = await asyncio.to_thread(control.read_status, path)
            assert status["which"] == "first"
            await control.close_status(second, path)  # the second stops: nothing to remove
            assert file_id(path) == served_by_first
        finally:
            await control.close_status(first, path)
        assert not path.exists()

    run_on(loop_name)(scenario())


@loops
def test_a_node_that_stops_removes_only_its_own_socket(tmp_path: Path, loop_name: str) -> None:
    path = control.socket_path("renewed", tmp_path)

    async def scenario() -> None:
        old = await control.serve_status(node_status("renewed"), path)
        assert old is not None
        # The path now names another node's socket (it took the old one for dead, say).
        path.unlink()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
            other.bind(str(path))
            other.listen()
            replaced = file_id(path)
            await control.close_status(old, path)
            assert file_id(path) == replaced
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(5)
                client.connect(str(path))  # still served

    run_on(loop_name)(scenario())


@loops
def test_a_busy_node_with_a_full_backlog_keeps_its_socket(tmp_path: Path, loop_name: str) -> None:
    path = control.socket_path("busy", tmp_path)
    waiting = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as busy:
        busy.bind(str(path))
        busy.listen(0)
        busy_id = file_id(path)
        # Connections nobody accepts fill the backlog; a further connect would wait or fail.
        for _ in range(4):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            waiting.append(client)
            client.setblocking(False)
            try:
                client.connect(str(path))
            except BlockingIOError:
                break
        else:
            pytest.skip("the kernel queued every connection: no full backlog to test with")
        try:

            async def scenario() -> None:
                assert await control.serve_status(node_status("busy"), path) is None

            run_on(loop_name)(scenario())
            assert file_id(path) == busy_id
        finally:
            for client in waiting:
                client.close()


def test_the_socket_directory_is_made_root_only(tmp_path: Path) -> None:
    path = control.socket_path("first", tmp_path / "run" / "smolmesh")

    async def scenario() -> None:
        served = await control.serve_status(node_status("first"), path)
        assert served is not None
        await control.close_status(served, path)

    asyncio.run(scenario())
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    assert not path.exists()


@loops
def test_the_listing_skips_sockets_of_killed_nodes(tmp_path: Path, loop_name: str) -> None:
    # `smolmesh status` without a name lists every socket in the directory; one left behind by a
    # killed node ("a" sorts first) must not hide the node that is running.
    leave_socket_file(control.socket_path("a-killed", tmp_path))
    path = control.socket_path("b-running", tmp_path)

    async def scenario() -> None:
        served = await control.serve_status(node_status("b-running"), path)
        assert served is not None
        try:
            found = await asyncio.to_thread(control.running_nodes, tmp_path)
            assert len(found) == 2
            statuses = await asyncio.to_thread(control.read_statuses, found)
            assert [status["node_name"] for status in statuses] == ["b-running"]
        finally:
            await control.close_status(served, path)

    run_on(loop_name)(scenario())


def test_the_listing_is_empty_when_only_killed_nodes_left_sockets(tmp_path: Path) -> None:
    leave_socket_file(control.socket_path("gone", tmp_path))
    assert control.read_statuses(control.running_nodes(tmp_path)) == []


class _Peer:
    """Where the routes of the full table below were heard: all a route's row reads of its link."""

    label = "10.0.0.2:5000"
    silent = False
    returns_announcements = False


def test_a_full_route_table_is_served_without_holding_up_the_node(tmp_path: Path) -> None:
    """Every route a node may hold (tuning.MAX_ROUTES) is described for `smolmesh status` while
    the event loop keeps turning: built in slices and encoded in one quick call, where building
    it in one go stood the loop still for 3 s, long enough for peers to find the node silent."""
    path = control.socket_path("full-table", tmp_path)
    addresses = [b"\xfd" + n.to_bytes(15, "big") for n in range(tuning.MAX_ROUTES - 1)]
    addresses.append(b"\x00" * 12 + bytes([10, 1, 2, 3]))  # IPv4-compatible: written as ipaddress

    async def scenario() -> tuple[float, str]:
        node = Node({"node_name": "full-table"}, tun=False)
        rows = [(CMD_IPV6, now_ms(), address, b"announcement") for address in addresses]
        node.router.on_triaged(cast(Link, _Peer()), rows)
        assert len(node.router.routes) == tuning.MAX_ROUTES
        gc.collect()  # as a running node has long since done for the routes it learnt one by one
        served = await control.serve_status(node.status_in_slices, path)
        assert served is not None
        try:
            async with LoopWatch(0.005) as watch:
                # Read by another process, as `smolmesh status` does: decoding 8 MB of JSON in a
                # thread of this one would hold the GIL and stall the loop in the client's place.
                reader = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    "import json, sys; from smolmesh import control\n"
                    "status = control.read_status(sys.argv[1])\n"
                    "print(json.dumps([len(status['routes']), status['routes'][-1]]))",
                    str(path),
                    stdout=asyncio.subprocess.PIPE,
                )
                out, _ = await asyncio.wait_for(reader.communicate(), 60)
        finally:
            await control.close_status(served, path)
        return watch.longest, out.decode()

    longest, out = run_on("uvloop")(scenario())
    count, last = json.loads(out)
    assert count == tuning.MAX_ROUTES
    assert last == {"address": "::a01:203", "via": "10.0.0.2:5000", "name": None, "backup_paths": 0}
    assert longest < 0.25, f"the loop stood still for {longest:.2f} s"
