"""A node at smolmesh's default (large) MTU and a node at 1500, the MTU of a smolmesh2 node: TCP
agrees on a segment size that fits the smaller side, and large pings and datagrams, which the
kernel fragments or reassembles, cross in both directions."""

from __future__ import annotations

import hashlib
import os
import sys

from netns import Lab, tcp_connect, tcp_listen
from smolmesh import tuning
from test_e2e_basic import SINK, SOURCE
from test_e2e_kit import KEY, PORT, node_address, start_node, wait_route, wait_up

# Status sockets are /run/smolmesh/<node name>.sock, one directory for every namespace: the names
# carry the PID so that concurrent runs never share one.
WIDE, NARROW = (f"mtu-{side}-{os.getpid()}" for side in ("wide", "narrow"))


def device_mtu(lab: Lab, ns: str) -> int:
    words = lab.run(ns, ["ip", "-o", "link", "show", "smolmesh1"]).stdout.split()
    return int(words[words.index("mtu") + 1])


def send_and_check(lab: Lab, source: str, sink_ns: str, target: str, payload_path) -> None:
    sink = lab.spawn(sink_ns, [sys.executable, "-c", SINK], f"sink-{sink_ns}.log")
    assert sink.wait_for_log("listening", timeout=20), sink.log()
    lab.run(source, [sys.executable, "-c", SOURCE, target, str(payload_path)], timeout=120)
    received = sink.wait_for_log(r"received (\d+) (\w+)", timeout=30)
    assert received, sink.log()
    data = payload_path.read_bytes()
    assert (int(received[1]), received[2]) == (len(data), hashlib.sha256(data).hexdigest())


def test_large_mtu_node_and_1500_node_carry_tcp_and_large_packets_both_ways(tmp_path) -> None:
    with Lab(tmp_path) as lab:
        wide, narrow = lab.namespace(), lab.namespace()
        veth = lab.link(wide, narrow)
        wide_config = lab.node_config(
            WIDE, [tcp_listen(PORT, [KEY])], ipv4_addresses=["10.250.0.1"], mtu=None
        )
        wide_node = start_node(lab, wide, wide_config)
        wait_up(wide_node)
        narrow_config = lab.node_config(
            NARROW,
            [tcp_connect(veth.ipv4_a, PORT, KEY)],
            ipv4_addresses=["10.250.0.2"],
            mtu=1500,
        )
        narrow_node = start_node(lab, narrow, narrow_config)
        wait_route(wide_node, NARROW)
        wait_route(narrow_node, WIDE)
        assert device_mtu(lab, wide) == tuning.DEFAULT_MTU > 1500
        assert device_mtu(lab, narrow) == 1500

        payload = tmp_path / "payload"
        payload.write_bytes(os.urandom(4 * 1024 * 1024))
        send_and_check(lab, wide, narrow, node_address(NARROW), payload)
        send_and_check(lab, narrow, wide, "10.250.0.1", payload)

        # Packets larger than the narrow side's MTU: the wide side sends them whole, the narrow
        # side fragments its replies; both families, both directions.
        for source, target in (
            (wide, "10.250.0.2"),
            (wide, node_address(NARROW)),
            (narrow, "10.250.0.1"),
            (narrow, node_address(WIDE)),
        ):
            done = lab.run(
                source, ["ping", "-c", "2", "-W", "5", "-s", "20000", target], check=False
            )
            assert done.returncode == 0, (source, target, done.stdout, done.stderr)
