"""The namespace lab itself: links that carry traffic, loss that drops it, and cleanup that holds
even when the test body fails."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import netns
from netns import Lab, lab_namespaces, tcp_connect, tcp_listen


def mine() -> list[str]:
    return [ns for ns in lab_namespaces() if ns.startswith(f"{netns.PREFIX}-{os.getpid()}-")]


def test_two_namespaces_joined_by_veth_ping_each_other(tmp_path) -> None:
    with Lab(tmp_path) as lab:
        a, b = lab.namespace(), lab.namespace()
        assert re.fullmatch(rf"smt-{os.getpid()}-\d+", a)
        link = lab.link(a, b)
        assert (link.ipv4_a, link.ipv4_b) == ("10.201.1.1", "10.201.1.2")
        assert lab.addresses(b, link.dev_b) == ["10.201.1.2", "fd00:201:1::2"]
        there = lab.ping(a, link.ipv4_b, count=2, timeout=5)
        back = lab.ping(b, link.ipv6_a, count=2, timeout=5)
        assert there.ok and back.ok, (there, back)
        assert there.rtt_ms is not None and 0 < there.rtt_ms < 100
        # A second link from the same namespace gets its own subnet and device names.
        c = lab.namespace()
        link2 = lab.link(a, c, mtu=1300)
        assert (link2.dev_a, link2.ipv4_b) == ("v2a", "10.201.2.2")
        assert "mtu 1300" in lab.run(c, ["ip", "link", "show", link2.dev_b]).stdout
        assert lab.ping(c, link2.ipv4_a, timeout=5).ok
        # Namespaces are isolated: c has no way to b.
        assert not lab.ping(c, link.ipv4_b, timeout=1).ok
    assert mine() == []


def test_loss_drops_and_comes_back(tmp_path) -> None:
    with Lab(tmp_path) as lab:
        a, b = lab.namespace(), lab.namespace()
        link = lab.link(a, b)
        assert lab.ping(a, link.ipv4_b, timeout=5).ok
        lab.set_loss(a, link.dev_a, 100)
        assert lab.ping(a, link.ipv4_b, count=2, timeout=1).received == 0
        assert lab.ping(a, link.ipv6_b, count=2, timeout=1).received == 0
        lab.set_loss(a, link.dev_a, 50)
        half = netns.ping(a, link.ipv4_b, count=1000, timeout=3, interval=0.01)
        assert half.sent >= 80 and 0.2 < half.received / half.sent < 0.8, half
        lab.set_loss(a, link.dev_a, 0)
        lab.set_loss(a, link.dev_a, 0)  # no loss twice is fine
        assert lab.ping(a, link.ipv4_b, count=3, timeout=5).ok


def test_cleanup_holds_when_the_body_raises(tmp_path) -> None:
    procs: list[netns.Proc] = []
    with pytest.raises(RuntimeError, match="the body failed"), Lab(tmp_path, grace=1) as lab:
        a, b = lab.namespace(), lab.namespace()
        lab.link(a, b)
        procs.append(lab.spawn(a, ["sleep", "300"], "sleep.log"))
        # One that ignores SIGTERM, so close() has to escalate to SIGKILL.
        stubborn = ["sh", "-c", "trap '' TERM; echo ready; sleep 300"]
        procs.append(lab.spawn(b, stubborn, "stubborn.log"))
        assert procs[1].wait_for_log("ready", timeout=5)
        assert len(mine()) == 2
        raise RuntimeError("the body failed")
    assert mine() == []
    assert all(not p.alive for p in procs)
    assert not os.path.exists(f"/proc/{procs[1].pid}")


def test_spawned_process_log_wait_and_terminate(tmp_path) -> None:
    with Lab(tmp_path) as lab:
        ns = lab.namespace()
        proc = lab.spawn(
            ns, ["sh", "-c", "echo started in $(ip -o link | wc -l) links; sleep 30"], "x.log"
        )
        found = proc.wait_for_log(r"started in (\d+) links", timeout=5)
        assert found and found[1] == "1", proc.log()  # only lo: it runs inside the namespace
        assert proc.alive
        assert proc.terminate(grace=2) == -15
        assert not proc.alive
        quick = lab.spawn(ns, ["sh", "-c", "echo bye; exit 3"], "quick.log")
        assert quick.wait(5) == 3 and quick.log() == "bye\n"
        assert quick.wait_for_log("never", timeout=5) is None  # returns at exit, not at timeout
        assert (tmp_path / "x.log").exists()


def test_node_config_and_start_command(tmp_path) -> None:
    # A real node starts: its status socket is /run/smolmesh/<name>.sock, shared by every
    # namespace, so the name carries the PID of this run.
    name = f"kit-alpha-{os.getpid()}"
    config = netns.node_config(
        name,
        [tcp_listen(5000, ["k1", "k2"]), tcp_connect("10.201.1.2", 5000, "k1")],
        ipv4_addresses=["10.99.0.1"],
        mtu=1300,
    )
    lab = Lab(tmp_path)
    path = lab.write_config(config)
    assert json.loads(path.read_text()) == {
        "node_name": name,
        "linux_tuntap": True,
        "ipv4_addresses": ["10.99.0.1"],
        "transports": [
            {"type": "legacy_tcp_listen", "port": 5000, "keys": ["k1", "k2"]},
            {"type": "legacy_tcp_connect", "host": "10.201.1.2", "port": 5000, "key": "k1"},
        ],
        "tun_name": "smolmesh1",
        "mtu": 1300,
    }
    with lab:
        ns = lab.namespace()
        node = lab.start_node(ns, config)
        assert node.argv[:4] == [sys.executable, "-m", "smolmesh", "meshnode"]
        assert node.argv[4] == str(path) and node.log_path == tmp_path / f"{name}.log"
    assert not node.alive


def test_stale_namespaces_of_dead_runs_are_swept() -> None:
    netns.require_lab()
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = f"{netns.PREFIX}-{gone.pid}-1"
    subprocess.run(["ip", "netns", "add", stale], check=True, timeout=10)
    try:
        netns.sweep_stale()
        assert stale not in lab_namespaces()
    finally:
        netns.delete_namespace(stale)
