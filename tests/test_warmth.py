"""Keeping the packet path warm while sparse traffic flows (warmth.py), and only then.

First the rules, on a real router in a real event loop; then real nodes in network namespaces:
while pings flow the node wakes every few milliseconds, once they stop it wakes for nothing, and
`keep_warm_s: 0` turns it off.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import cast

from netns import Lab, tcp_connect, tcp_listen
from smolmesh import _core
from smolmesh.router import Link, Router
from smolmesh.warmth import KeepWarm
from test_e2e_failover import FakeLink
from test_e2e_kit import (
    KEY,
    PORT,
    smolmesh_command,
    start_node,
    wait_ping,
    wait_route,
    wait_up,
)

PING = bytes.fromhex("4500005400004000400100000a0000010a000002") + bytes(64)  # to 10.0.0.2


def test_data_wakes_it_and_it_sleeps_once_the_data_stops() -> None:
    async def scenario() -> None:
        router = Router([_core.name_to_ipv6(b"me")], lambda packets: None)
        link = FakeLink("peer")
        router.link_up(cast(Link, link))
        warmth = KeepWarm(router, window_s=0.1, period_s=0.005)
        await asyncio.sleep(0.05)
        assert not warmth.awake and warmth.ticks == 0  # nothing has passed yet
        sent_before = len(link.sent)
        for _ in range(10):  # a packet every 20 ms for 0.2 s
            router.route_packets([PING], int(time.time() * 1000))
            assert warmth.awake
            await asyncio.sleep(0.02)
        assert warmth.ticks >= 20
        # 0.1 s after the last packet it stops, and stays stopped.
        assert await _within(0.5, lambda: not warmth.awake)
        ticks = warmth.ticks
        await asyncio.sleep(0.1)
        assert warmth.ticks == ticks
        # Its scratch packets went nowhere: the link carried no more than the router sent it.
        assert len(link.sent) == sent_before
        # The next packet wakes it again.
        router.route_packets([PING], int(time.time() * 1000))
        assert warmth.awake
        warmth.close()
        assert not warmth.awake and router.on_data is None

    asyncio.run(scenario())


def test_announcements_do_not_wake_it_and_data_from_a_link_does() -> None:
    async def scenario() -> None:
        me = _core.name_to_ipv6(b"me")
        router = Router([me], lambda packets: None)
        link = FakeLink("peer")
        router.link_up(cast(Link, link))
        warmth = KeepWarm(router, window_s=0.1, period_s=0.005)
        now = int(time.time() * 1000)
        announcement = _core.make_packet(now, _core.CMD_NAME, b"other")
        router.on_triaged(cast(Link, link), [(_core.CMD_NAME, now, b"other", announcement)])
        assert not warmth.awake  # a mesh that only announces keeps its nodes asleep
        data = _core.make_packet(now, _core.CMD_DATA, b"for me")
        router.on_triaged(cast(Link, link), [(_core.CMD_DATA, now, me, data)])
        assert warmth.awake  # delivered to this node
        warmth.close()

    asyncio.run(scenario())


def test_zero_turns_it_off() -> None:
    async def scenario() -> None:
        router = Router([_core.name_to_ipv6(b"me")], lambda packets: None)
        warmth = KeepWarm(router, window_s=0)
        router.route_packets([PING], int(time.time() * 1000))
        await asyncio.sleep(0.05)
        assert not warmth.awake and warmth.ticks == 0 and router.on_data is None

    asyncio.run(scenario())


async def _within(seconds: float, condition) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return bool(condition())


def _status(name: str) -> dict:  # type: ignore[type-arg]
    done = subprocess.run(
        [*smolmesh_command(), "status", name, "--json"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return cast(dict, json.loads(done.stdout))  # type: ignore[type-arg]


def _wake_ups(pid: int) -> int:
    """Times the node's main thread (its event loop) has gone to sleep and woken up."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


def _settled_ticks(name: str, timeout: float) -> int | None:
    """The node's warm_ticks once two looks 0.3 s apart agree; None if they never do."""
    last = _status(name)["warm_ticks"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = _status(name)["warm_ticks"]
        if now == last:
            return int(now)
        last = now
    return None


def test_pings_keep_a_node_awake_and_an_idle_node_sleeps(tmp_path) -> None:
    """What `keep_warm_s` costs: wake-ups while pings flow every 50 ms, none once they stop
    (the status counts them, and /proc shows the event loop asleep)."""
    left, right = f"warm-left-{os.getpid()}", f"warm-right-{os.getpid()}"
    cold = f"warm-cold-{os.getpid()}"
    with Lab(tmp_path) as lab:
        a, b, c = lab.namespace(), lab.namespace(), lab.namespace()
        to_b, to_c = lab.link(a, b), lab.link(a, c)
        node_a = start_node(
            lab,
            a,
            lab.node_config(left, [tcp_listen(PORT, [KEY])], ipv4_addresses=["10.251.0.1"]),
        )
        wait_up(node_a)
        start_node(
            lab,
            b,
            lab.node_config(
                right, [tcp_connect(to_b.ipv4_a, PORT, KEY)], ipv4_addresses=["10.251.0.2"]
            ),
        )
        start_node(
            lab,
            c,
            lab.node_config(
                cold,
                [tcp_connect(to_c.ipv4_a, PORT, KEY)],
                ipv4_addresses=["10.251.0.3"],
                keep_warm_s=0,
            ),
        )
        wait_route(node_a, right)
        wait_route(node_a, cold)
        assert wait_ping(lab, a, "10.251.0.2") and wait_ping(lab, a, "10.251.0.3")

        # Idle: once the pings above are a second old, the node stops waking for them.
        before = _settled_ticks(right, timeout=5)
        assert before is not None, "the node kept waking with no traffic"
        pid = _status(right)["pid"]
        wakes = _wake_ups(pid)
        time.sleep(1.0)
        idle_wakes = _wake_ups(pid) - wakes
        assert _status(right)["warm_ticks"] == before
        # Its own timers (announcements, maintenance, a look at a link) wake it a few times.
        assert idle_wakes <= 30, idle_wakes

        # Pings every 50 ms for a second: the node keeps warm between them, every 5 ms.
        wakes = _wake_ups(pid)
        assert lab.ping(a, "10.251.0.2", count=20, timeout=5, interval=0.05).ok
        ticks, busy_wakes = _status(right)["warm_ticks"] - before, _wake_ups(pid) - wakes
        print(f"wake-ups in 1 s idle: {idle_wakes}; in 1 s of pings: {busy_wakes}, {ticks} ticks")
        assert ticks >= 100
        assert busy_wakes >= 100
        assert lab.ping(a, "10.251.0.3", count=20, timeout=5, interval=0.05).ok
        # and stops keep_warm_s (1 s) after the last of them.
        assert _settled_ticks(right, timeout=5) is not None
        # A node told `keep_warm_s: 0` never wakes for it.
        assert _status(cold)["warm_ticks"] == 0
