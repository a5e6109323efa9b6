"""The status socket of control.py in a temporary directory: a socket left by a killed node is
replaced, one a running node of the same name serves is left alone, and a node that stops removes
only its own. Real Unix sockets under both event loops a node may run on (uvloop, asyncio)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from smolmesh import control

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")


def run_on(loop_name: str) -> Callable[[Coroutine[Any, Any, None]], None]:
    if loop_name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run
    return asyncio.run


loops = pytest.mark.parametrize("loop_name", ["uvloop", "asyncio"])


def node_status(name: str) -> Callable[[], dict[str, Any]]:
    return lambda: {"node_name": name, "pid": os.getpid()}


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
        first = await control.serve_status(lambda: {"node_name": "twin", "which": "first"}, path)
        assert first is not None
        try:
            served_by_first = file_id(path)
            with caplog.at_level(logging.WARNING, logger="smolmesh.control"):
                second = await control.serve_status(
                    lambda: {"node_name": "twin", "which": "second"}, path
                )
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
