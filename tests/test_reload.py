"""Changing a running node's config: `Node.reload` through the Python API over loopback, and
`smolmesh meshnode` reading its file again on SIGHUP, as a real process in network namespaces."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time

import pytest

from loop_watch import LoopWatch
from netns import Lab, tcp_connect, tcp_listen
from smolmesh import Node
from smolmesh.errors import ConfigError
from test_e2e_kit import (
    KEY,
    PORT,
    log_lines,
    node_address,
    smolmesh_command,
    start_node,
    wait_route,
    wait_up,
)
from test_secure_tcp import config, connect, free_port, listen, wait_for

OTHER_KEY = "a second key of the hub"


async def stopped(*nodes: Node) -> None:
    for node in nodes:
        await node.stop()


def test_a_key_taken_out_of_a_listener_closes_its_links_and_only_those(caplog) -> None:
    async def scenario() -> None:
        port = free_port()
        hub = Node(config("reload-hub", [listen(port, [KEY, OTHER_KEY])]))
        kept = Node(config("reload-kept", [connect(port, KEY)]))
        dropped = Node(config("reload-dropped", [connect(port, OTHER_KEY)]))
        try:
            for node in (hub, kept, dropped):
                await node.start()
            await wait_for(lambda: len(hub.links) == 2, 10)
            await hub.reload(config("reload-hub", [listen(port, [KEY])]))
            await wait_for(lambda: len(hub.links) == 1 and not dropped.links, 5)
            assert kept.links and kept.address in hub.routes
            await asyncio.sleep(1.0)  # `dropped` dials again after 5-10 s, and is refused then
            assert len(hub.links) == 1
        finally:
            await stopped(kept, dropped, hub)

    with caplog.at_level(logging.INFO, logger="smolmesh"):
        asyncio.run(scenario())
    assert "its key left the config" in caplog.text
    assert "config reloaded: 1 transports listening, 0 dialing" in caplog.text


def test_transports_added_and_removed_take_effect_at_once() -> None:
    """A node started with no transports dials once a reload adds one, and stops (no redial)
    once a reload takes it out; a listener added by a reload accepts links of its own kind."""

    async def scenario() -> None:
        secure_port, legacy_port = free_port(), free_port()
        hub = Node(config("reload-hub", [listen(secure_port, [KEY])]))
        spoke = Node(config("reload-spoke", []))
        legacy = Node(config("reload-legacy", [connect(legacy_port, KEY, "legacy_tcp")]))
        try:
            await hub.start()
            await spoke.start()
            await spoke.reload(config("reload-spoke", [connect(secure_port, KEY)]))
            await wait_for(lambda: spoke.address in hub.routes, 10)

            await hub.reload(
                config(
                    "reload-hub",
                    [listen(secure_port, [KEY]), listen(legacy_port, [KEY], "legacy_tcp")],
                )
            )
            assert sorted(hub.listening_ports) == sorted([secure_port, legacy_port])
            await legacy.start()
            await wait_for(lambda: legacy.address in hub.routes, 10)

            await spoke.reload(config("reload-spoke", []))
            await wait_for(lambda: not spoke.links and spoke.address not in hub.routes, 5)
            await asyncio.sleep(1.0)
            assert not spoke.links
            assert [link.transport for link in hub.links] == ["legacy_tcp"]
        finally:
            await stopped(legacy, spoke, hub)

    asyncio.run(scenario())


def test_fields_that_need_a_restart_are_kept_and_named(caplog) -> None:
    async def scenario() -> None:
        port = free_port()
        node = Node(config("reload-fixed", [listen(port, [KEY])]))
        with pytest.raises(RuntimeError):
            await node.reload(config("reload-fixed", []))
        await node.start()
        try:
            with pytest.raises(ConfigError):
                await node.reload({"node_name": "", "transports": []})
            assert node.listening_ports == [port]
            await node.reload({**config("renamed", [listen(port, [KEY])]), "mtu": 9000})
            assert node.config.node_name == "reload-fixed" and node.config.mtu is None
            assert node.listening_ports == [port]
        finally:
            await node.stop()

    with caplog.at_level(logging.INFO, logger="smolmesh"):
        asyncio.run(scenario())
    assert "config: node_name, mtu changed; restart the node to apply it" in caplog.text


def test_sighup_makes_a_running_node_read_its_config_again(tmp_path) -> None:
    """The real command: B starts with no transports; its file gains a link to A and `smolmesh
    reload` (a SIGHUP to the node it finds by its status socket) brings the link up. A broken
    file is the reload command's error, and B is not signalled; a SIGHUP sent all the same costs
    one log line, and B runs on, linked."""
    names = {corner: f"reload-{corner}-{os.getpid()}" for corner in "ab"}
    with Lab(tmp_path) as lab:
        ns_a, ns_b = lab.namespace(), lab.namespace()
        veth = lab.link(ns_a, ns_b)
        node_a = start_node(lab, ns_a, lab.node_config(names["a"], [tcp_listen(PORT, [KEY])]))
        config_b = lab.node_config(names["b"], [])
        node_b = start_node(lab, ns_b, config_b)
        wait_up(node_a)
        wait_up(node_b)

        def reload_b() -> subprocess.CompletedProcess[str]:
            argv = [*smolmesh_command(), "reload", names["b"]]
            return subprocess.run(argv, capture_output=True, text=True, timeout=30)

        lab.write_config({**config_b, "transports": [tcp_connect(veth.ipv4_a, PORT, KEY)]})
        asked = reload_b()
        assert asked.returncode == 0 and "asked to read its config again" in asked.stdout, asked
        wait_route(node_b, names["a"])
        wait_route(node_a, names["b"])

        path = lab.write_config(config_b)
        path.write_text('{"node_name": ')
        refused = reload_b()
        assert refused.returncode == 2, refused
        assert refused.stderr.startswith(f"smolmesh: {path}: ") and refused.stderr.count("\n") == 1
        assert not refused.stdout, refused

        node_b.signal(signal.SIGHUP)
        found = node_b.wait_for_log(r"ERROR smolmesh\.node: reload: .*runs on as it was", 10)
        assert found, node_b.log()
        assert len(log_lines(node_b, r"reload: ")) == 1  # the SIGHUP's: the command sent none
        assert node_b.alive and "Traceback" not in node_b.log()
        assert not log_lines(node_b, r"link \S+ down")
        assert lab.ping(ns_b, node_address(names["a"]), count=2, timeout=10).ok


def test_new_secure_keys_are_derived_without_stalling_the_node() -> None:
    """Each new secure_tcp key costs a scrypt (some 55 ms). A reload that adds ten of them keeps
    the event loop turning meanwhile, so links carry packets and answer echoes on time."""

    async def scenario() -> float:
        port = free_port()
        node = Node(config("reload-keys", []))
        await node.start()
        try:
            async with LoopWatch(0.01) as watch:
                keys = [f"reload key {n} {os.getpid()} {time.time()}" for n in range(10)]
                await node.reload(config("reload-keys", [listen(port, keys)]))
                assert node.listening_ports == [port]
        finally:
            await node.stop()
        return watch.longest

    longest = asyncio.run(scenario())
    assert longest < 0.25, f"the loop stood still for {longest:.2f} s"


def test_reload_of_a_node_that_is_not_running_is_one_line_and_status_1() -> None:
    asked = subprocess.run(
        [*smolmesh_command(), "reload", f"no-such-node-{os.getpid()}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert asked.returncode == 1, asked
    assert asked.stderr.count("\n") == 1 and "no node is running" in asked.stderr, asked.stderr
