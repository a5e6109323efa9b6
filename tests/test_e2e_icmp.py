"""Two nodes at MTU 65535, the most a TUN device takes. A packet longer than a mesh packet holds
(65,526 bytes) is answered by the node with ICMPv6 "packet too big" / ICMPv4 "fragmentation
needed", so the sender's kernel learns the path MTU and fragments to fit, as behind a router.

What a user sees is checked with the user's tools: `ip route get` shows `mtu 65526`, ping prints
the error and then gets replies to pings of the same size, and a socket that may not fragment gets
EMSGSIZE. The datagrams are the largest a 65535 MTU lets out (65,535 bytes), so the TUN device is
read whole at its maximum too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from netns import Lab, Proc, tcp_connect, tcp_listen
from test_e2e_kit import KEY, PORT, node_address, start_node, wait_route, wait_up

TUN_MTU = 65535
PATH_MTU = 65526  # the longest IP packet one mesh packet holds: 65,535 - 9 bytes of header
IPV4_A, IPV4_B = "10.250.0.1", "10.250.0.2"

# Sends from inside a namespace one UDP datagram that fills the device's MTU, with fragmenting
# forbidden, until the kernel refuses it with EMSGSIZE (the node's ICMP error arrived); then one
# that fits the path MTU. Prints what it saw as JSON. Bounded: 40 tries, 0.05 s apart.
# <linux/in.h>, <linux/in6.h>: Python 3.11 lacks these names.
UDP_PROBE = r"""
import errno, json, socket, sys, time
family, address, header = sys.argv[1], sys.argv[2], int(sys.argv[3])
if family == "6":
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    level, discover, mtu_option = socket.IPPROTO_IPV6, 23, 24  # IPV6_MTU_DISCOVER, IPV6_MTU
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    level, discover, mtu_option = socket.IPPROTO_IP, 10, 14  # IP_MTU_DISCOVER, IP_MTU
sock.setsockopt(level, discover, 2)  # IP(V6)_PMTUDISC_DO: never fragment, report EMSGSIZE
sock.connect((address, 9))
result = {"path_mtu_before": sock.getsockopt(level, mtu_option), "tries": []}
for _ in range(40):
    try:
        sock.send(bytes(65535 - header))
        result["tries"].append("sent")
    except OSError as e:
        result["tries"].append(errno.errorcode[e.errno])
        if e.errno == errno.EMSGSIZE:
            break
    time.sleep(0.05)
result["path_mtu_after"] = sock.getsockopt(level, mtu_option)
# The ICMP error also left EMSGSIZE pending on the socket, for the next call: take it.
result["pending_error"] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
sock.send(bytes(result["path_mtu_after"] - header))
result["fitting_sent"] = True
print(json.dumps(result))
"""


@dataclass
class Mesh:
    lab: Lab
    a: str  # namespaces
    b: str
    node_a: Proc
    node_b: Proc


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with Lab(tmp_path_factory.mktemp("icmp")) as lab:
        a, b = lab.namespace(), lab.namespace()
        veth = lab.link(a, b)
        config_a = lab.node_config(
            "icmp-a", [tcp_listen(PORT, [KEY])], ipv4_addresses=[IPV4_A], mtu=TUN_MTU
        )
        node_a = start_node(lab, a, config_a)
        wait_up(node_a)
        config_b = lab.node_config(
            "icmp-b", [tcp_connect(veth.ipv4_a, PORT, KEY)], ipv4_addresses=[IPV4_B], mtu=TUN_MTU
        )
        node_b = start_node(lab, b, config_b)
        wait_route(node_a, "icmp-b")
        wait_route(node_b, "icmp-a")
        for ns in (a, b):
            words = lab.run(ns, ["ip", "-o", "link", "show", "smolmesh1"]).stdout.split()
            assert int(words[words.index("mtu") + 1]) == TUN_MTU
        yield Mesh(lab, a, b, node_a, node_b)
        for node in (node_a, node_b):
            assert node.alive and "Traceback" not in node.log(), node.log_tail()


def route_get(lab: Lab, ns: str, address: str) -> str:
    return lab.run(ns, ["ip", "route", "get", address]).stdout


def udp_probe(mesh: Mesh, family: str, address: str) -> dict[str, object]:
    header = 48 if family == "6" else 28  # IP + UDP headers
    done = mesh.lab.run(mesh.a, [sys.executable, "-c", UDP_PROBE, family, address, str(header)])
    result: dict[str, object] = json.loads(done.stdout)
    return result


def ping_learns_path_mtu(mesh: Mesh, address: str, size: int, *flags: str) -> None:
    """From b: the first ping too big draws the node's ICMP error and teaches b's kernel the path
    MTU; from then on pings of that size get replies (the kernel fragments them). Only the reply
    to the ping that first gets through may be lost: it teaches a's kernel the same."""
    lab, b = mesh.lab, mesh.b
    assert f"mtu {PATH_MTU}" not in route_get(lab, b, address)
    argv = ["ping", "-n", *flags, "-s", str(size), "-c", "1", "-W", "2", address]
    first = lab.run(b, argv, check=False)
    assert first.returncode != 0, first.stdout
    error = (
        f"Packet too big: mtu={PATH_MTU}"
        if ":" in address
        else f"Frag needed and DF set (mtu = {PATH_MTU})"
    )
    assert error in first.stdout, first.stdout + first.stderr
    assert f"mtu {PATH_MTU}" in route_get(lab, b, address)
    replies = lab.ping(b, address, count=3, timeout=15)
    assert replies.ok and replies.sent - replies.received <= 1, replies


def test_ipv6_packet_too_big(mesh: Mesh) -> None:
    address_b = node_address("icmp-b")
    probe = udp_probe(mesh, "6", address_b)
    assert probe["path_mtu_before"] == TUN_MTU
    assert probe["tries"][0] == "sent" and probe["tries"][-1] == "EMSGSIZE", probe
    assert probe["path_mtu_after"] == PATH_MTU and probe["fitting_sent"]
    assert f"mtu {PATH_MTU}" in route_get(mesh.lab, mesh.a, address_b)
    # ping -6 -s N sends N + 48 bytes: 65,528, just over the path MTU.
    ping_learns_path_mtu(mesh, node_address("icmp-a"), PATH_MTU - 48 + 2, "-6")


def test_ipv4_fragmentation_needed(mesh: Mesh) -> None:
    probe = udp_probe(mesh, "4", IPV4_B)
    assert probe["path_mtu_before"] == TUN_MTU
    assert probe["tries"][0] == "sent" and probe["tries"][-1] == "EMSGSIZE", probe
    assert probe["path_mtu_after"] == PATH_MTU and probe["fitting_sent"]
    assert f"mtu {PATH_MTU}" in route_get(mesh.lab, mesh.a, IPV4_B)
    # ping -s N sends N + 28 bytes; -M do sets DF and forbids fragmenting, as the probe does.
    ping_learns_path_mtu(mesh, IPV4_A, PATH_MTU - 28 + 2, "-M", "do")
