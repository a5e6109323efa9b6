"""Real nodes in network namespaces: two that ping each other (over each kind of link), four in
a line that carry a 10 MB TCP stream over three hops whose links alternate secure_tcp, legacy_tcp,
secure_tcp (so the middle nodes carry packets from one kind to the other). Each node is the
`smolmesh meshnode` command with a TUN device."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import subprocess
import sys
import time

import pytest

from netns import Lab, tcp_connect, tcp_listen, wait_until
from test_e2e_kit import (
    KEY,
    PORT,
    node_address,
    rss_kib,
    smolmesh_command,
    start_node,
    wait_route,
    wait_up,
)

TUN = "smolmesh1"
# Status sockets are /run/smolmesh/<node name>.sock, one directory for every namespace: names
# carry the PID so that concurrent runs and other test files never share one.
PAIR_A, PAIR_B = (f"pair-{end}-{os.getpid()}" for end in "ab")
LINE = [f"line-{end}-{os.getpid()}" for end in "abcd"]  # A, B, C, D


def routes(lab: Lab, ns: str, family: str) -> str:
    """`ip -4/-6 route show dev smolmesh1` in ns ("" once the device is gone)."""
    return lab.run(ns, ["ip", family, "route", "show", "dev", TUN], check=False).stdout


@pytest.mark.parametrize("kind", ["secure_tcp", "legacy_tcp"])
def test_two_nodes_ping_over_both_families_and_sigterm_cleans_up(tmp_path, kind) -> None:
    with Lab(tmp_path) as lab:
        a, b = lab.namespace(), lab.namespace()
        veth = lab.link(a, b)
        node_a = start_node(lab, a, lab.node_config(PAIR_A, [tcp_listen(PORT, [KEY], kind)],
                                                    ipv4_addresses=["10.250.0.1"]))  # fmt: skip
        wait_up(node_a)  # listening before b dials, so b need not wait 5-10 s to redial
        node_b = start_node(lab, b, lab.node_config(PAIR_B, [tcp_connect(veth.ipv4_a, PORT, KEY,
                                                                         kind)],
                                                    ipv4_addresses=["10.250.0.2"]))  # fmt: skip
        wait_up(node_b)
        wait_route(node_a, PAIR_B)
        wait_route(node_b, PAIR_A)
        assert node_b.wait_for_log(rf"link \S+ up \(outgoing, {kind}\)", timeout=5), node_b.log()

        # The address a user gets from the command is the one on the peer's TUN device.
        printed = subprocess.run([*smolmesh_command(), "name-to-ipv6", PAIR_B], capture_output=True,
                                 text=True, timeout=30, check=True).stdout.strip()  # fmt: skip
        address_b = str(ipaddress.IPv6Address(printed))
        assert address_b == node_address(PAIR_B)
        assert lab.addresses(b, TUN) == ["10.250.0.2", address_b]

        for source, target in ((a, address_b), (a, "10.250.0.2"), (b, node_address(PAIR_A)),
                               (b, "10.250.0.1")):  # fmt: skip
            result = lab.ping(source, target, count=3, timeout=10)
            assert result.ok, (source, target, result)

        # Host routes to the peer's addresses point into the TUN device.
        assert address_b in routes(lab, a, "-6").split()
        assert "10.250.0.2" in routes(lab, a, "-4").split()
        assert node_address(PAIR_A) in routes(lab, b, "-6").split()

        # SIGTERM: a clean exit that takes the device and its routes along.
        assert node_a.terminate(grace=10) == 0, node_a.log()
        assert f"node {PAIR_A} stopped" in node_a.log()
        assert lab.run(a, ["ip", "link", "show", TUN], check=False).returncode != 0
        assert routes(lab, a, "-6") == routes(lab, a, "-4") == ""
        every_route = lab.run(a, ["ip", "-6", "route"]).stdout + lab.run(a, ["ip", "route"]).stdout
        assert address_b not in every_route and "10.250.0.2" not in every_route
        # b sees its link go and drops the routes to a, host routes included, but keeps running.
        assert node_b.wait_for_log(r"route to 10\.250\.0\.1 lost", timeout=10), node_b.log()
        assert wait_until(lambda: node_address(PAIR_A) not in routes(lab, b, "-6"), timeout=5)
        assert "10.250.0.1" not in routes(lab, b, "-4")
        assert node_b.alive
        assert node_b.terminate(grace=10) == 0, node_b.log()
        assert lab.run(b, ["ip", "link", "show", TUN], check=False).returncode != 0


# A TCP sink: accepts one connection on [::]:7000, reads it to the end, prints length and sha256.
SINK = """
import hashlib, socket
server = socket.create_server(("::", 7000), family=socket.AF_INET6, dualstack_ipv6=True)
print("listening", flush=True)
conn, _ = server.accept()
digest, length = hashlib.sha256(), 0
while chunk := conn.recv(1 << 16):
    digest.update(chunk)
    length += len(chunk)
print("received", length, digest.hexdigest(), flush=True)
"""

# A TCP source: sends the file argv[2] to [argv[1]]:7000 and closes its side.
SOURCE = """
import socket, sys
with socket.create_connection((sys.argv[1], 7000), timeout=30) as conn:
    with open(sys.argv[2], "rb") as file:
        conn.sendfile(file)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)
"""


def test_four_nodes_in_a_line_reach_end_to_end_and_carry_10_mb_intact(tmp_path) -> None:
    names = LINE
    with Lab(tmp_path) as lab:
        spaces = [lab.namespace() for _ in names]
        veths = [lab.link(spaces[i], spaces[i + 1]) for i in range(3)]
        nodes = {}
        # Each node dials its right-hand neighbour, which is started (listening) first; the
        # links alternate between the two kinds.
        kinds = ["secure_tcp", "legacy_tcp", "secure_tcp"]
        for i in reversed(range(4)):
            transports = [tcp_listen(PORT, [KEY], kinds[i - 1])] if i > 0 else []
            if i < 3:
                transports.append(tcp_connect(veths[i].ipv4_b, PORT, KEY, kinds[i]))
            config = lab.node_config(names[i], transports, ipv4_addresses=[f"10.250.0.{i + 1}"])
            started = time.time()
            nodes[names[i]] = start_node(lab, spaces[i], config)
            up = wait_up(nodes[names[i]])
        a, d = spaces[0], spaces[3]

        # A joins a running line: it learns D at once from B's replay of what B knows, and D
        # learns A when A's announcement has been flooded over three hops.
        a_knows_d = wait_route(nodes[names[0]], names[3]) - up
        d_knows_a = wait_route(nodes[names[3]], names[0]) - up
        address_a, address_d = node_address(names[0]), node_address(names[3])
        assert lab.ping(a, address_d, count=1, timeout=10).ok
        first_reply = time.time() - up
        print(f"\nline of 4: A up {up - started:.2f} s after its process started; from then A"
              f" knows D after {a_knows_d:.2f} s, D knows A after {d_knows_a:.2f} s (3 hops),"
              f" first reply A->D after {first_reply:.2f} s")  # fmt: skip
        for source, target in ((a, address_d), (a, "10.250.0.4"), (d, address_a),
                               (d, "10.250.0.1")):  # fmt: skip
            result = lab.ping(source, target, count=3, timeout=10)
            assert result.ok, (source, target, result)

        payload = tmp_path / "payload"
        payload.write_bytes(os.urandom(10 * 1024 * 1024))
        sink = lab.spawn(d, [sys.executable, "-c", SINK], "sink.log")
        assert sink.wait_for_log("listening", timeout=20), sink.log()
        rss_before = {name: rss_kib(node.pid) for name, node in nodes.items()}
        began = time.monotonic()
        lab.run(a, [sys.executable, "-c", SOURCE, address_d, str(payload)], timeout=120)
        received = sink.wait_for_log(r"received (\d+) (\w+)", timeout=30)
        took = time.monotonic() - began
        assert received, sink.log()
        assert int(received[1]) == 10 * 1024 * 1024
        assert received[2] == hashlib.sha256(payload.read_bytes()).hexdigest()
        rss_after = {name: rss_kib(node.pid) for name, node in nodes.items()}
        print(f"10 MB A->D over 3 hops: {took:.2f} s ({80 / took:.1f} Mbit/s); RSS KiB before "
              f"{rss_before}, after {rss_after}")  # fmt: skip
        assert all(node.alive for node in nodes.values())
