"""Two nodes at MTU 65535, the most a TUN device takes. A packet longer than a mesh packet holds
(65,526 bytes) is answered by the node with ICMPv6 "packet too big" / ICMPv4 "fragmentation
needed", so the sender's kernel learns the path MTU and fragments to fit, as behind a router.

What a user sees is checked with the user's tools: `ip route get` shows `mtu 65526`, ping prints
the error and then gets replies to pings of the same size, and a socket that may not fragment gets
EMSGSIZE. The datagrams are the largest a 65535 MTU lets out (65,535 bytes), so the TUN device is
read whole at its maximum too.

The node limits these errors (tuning.ICMP_ERROR_BURST at once, ICMP_ERRORS_PER_S a second): a
burst of too-long packets that ignore the path MTU gets no more errors than that lets through,
counted by the receiving kernel's own ICMP statistics. A node configured with
`icmp_errors_per_s: 0, icmp_error_burst: 0` sends none.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from netns import Lab, Proc, tcp_connect, tcp_listen, wait_until
from smolmesh import control, tuning
from test_e2e_kit import KEY, PORT, node_address, start_node, wait_ping, wait_route, wait_up

# The status socket is /run/smolmesh/<node name>.sock, one directory for every namespace: the PID
# in the names keeps two runs of this file at once off each other's sockets.
NAME_A, NAME_B, NAME_C = (f"icmp-{end}-{os.getpid()}" for end in "abc")
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

# Sends from inside a namespace COUNT datagrams that fill the device's MTU, INTERVAL seconds apart,
# with DF set and the path MTU ignored (IP(V6)_PMTUDISC_PROBE), so each one reaches the node even
# after the kernel has learnt the path MTU. Prints how many went out. A node's ICMP error fails the
# socket's next call with EMSGSIZE (and is then cleared): that datagram is sent again, once.
UDP_BURST = r"""
import socket, sys, time
family, address, header, count, interval = sys.argv[1:]
if family == "6":
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, 23, 3)  # IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, 10, 3)  # IP_MTU_DISCOVER, IP_PMTUDISC_PROBE
sock.connect((address, 9))
sent = 0
for _ in range(int(count)):
    for _ in range(2):
        try:
            sock.send(bytes(65535 - int(header)))
            sent += 1
            break
        except OSError:
            pass
    time.sleep(float(interval))
print(sent)
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
            NAME_A, [tcp_listen(PORT, [KEY])], ipv4_addresses=[IPV4_A], mtu=TUN_MTU
        )
        node_a = start_node(lab, a, config_a)
        wait_up(node_a)
        config_b = lab.node_config(
            NAME_B, [tcp_connect(veth.ipv4_a, PORT, KEY)], ipv4_addresses=[IPV4_B], mtu=TUN_MTU
        )
        node_b = start_node(lab, b, config_b)
        wait_route(node_a, NAME_B)
        wait_route(node_b, NAME_A)
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


def icmp_too_big_received(lab: Lab, ns: str, family: str) -> int:
    """How many ICMPv6 "packet too big" / ICMPv4 "destination unreachable" the namespace's kernel
    has received: /proc/net/snmp6 Icmp6InPktTooBigs, /proc/net/snmp Icmp InDestUnreachs."""
    if family == "6":
        lines = lab.run(ns, ["cat", "/proc/net/snmp6"]).stdout.splitlines()
        return int(dict(line.split() for line in lines if line.strip())["Icmp6InPktTooBigs"])
    rows = [line.split() for line in lab.run(ns, ["cat", "/proc/net/snmp"]).stdout.splitlines()]
    names, values = [row for row in rows if row[0] == "Icmp:"]
    return int(values[names.index("InDestUnreachs")])


def test_ipv6_packet_too_big(mesh: Mesh) -> None:
    address_b = node_address(NAME_B)
    probe = udp_probe(mesh, "6", address_b)
    assert probe["path_mtu_before"] == TUN_MTU
    assert probe["tries"][0] == "sent" and probe["tries"][-1] == "EMSGSIZE", probe
    assert probe["path_mtu_after"] == PATH_MTU and probe["fitting_sent"]
    assert f"mtu {PATH_MTU}" in route_get(mesh.lab, mesh.a, address_b)
    # ping -6 -s N sends N + 48 bytes: 65,528, just over the path MTU.
    ping_learns_path_mtu(mesh, node_address(NAME_A), PATH_MTU - 48 + 2, "-6")


def test_ipv4_fragmentation_needed(mesh: Mesh) -> None:
    probe = udp_probe(mesh, "4", IPV4_B)
    assert probe["path_mtu_before"] == TUN_MTU
    assert probe["tries"][0] == "sent" and probe["tries"][-1] == "EMSGSIZE", probe
    assert probe["path_mtu_after"] == PATH_MTU and probe["fitting_sent"]
    assert f"mtu {PATH_MTU}" in route_get(mesh.lab, mesh.a, IPV4_B)
    # ping -s N sends N + 28 bytes; -M do sets DF and forbids fragmenting, as the probe does.
    ping_learns_path_mtu(mesh, IPV4_A, PATH_MTU - 28 + 2, "-M", "do")


@pytest.mark.parametrize("family", ["6", "4"])
def test_a_burst_of_too_long_packets_gets_errors_up_to_the_limit(mesh: Mesh, family: str) -> None:
    """50 datagrams over the path MTU in half a second, from b to a: b's node answers the first
    ICMP_ERROR_BURST of them and then about ICMP_ERRORS_PER_S a second, and counts the rest."""
    lab, b = mesh.lab, mesh.b
    count, burst, rate = 50, tuning.ICMP_ERROR_BURST, tuning.ICMP_ERRORS_PER_S
    address, header = (node_address(NAME_A), 48) if family == "6" else (IPV4_A, 28)
    status_path = control.socket_path(NAME_B)
    time.sleep(burst / rate)  # the earlier tests' errors are paid back: the bucket is full
    before = control.read_status(status_path)
    received_before = icmp_too_big_received(lab, b, family)

    start = time.monotonic()
    argv = [sys.executable, "-c", UDP_BURST, family, address, str(header), str(count), "0.01"]
    done = lab.run(b, argv, timeout=20)
    assert int(done.stdout) == count, done.stdout + done.stderr

    def settled() -> int | None:  # the count once two readings 0.2 s apart agree
        first = icmp_too_big_received(lab, b, family)
        time.sleep(0.2)
        return first if icmp_too_big_received(lab, b, family) == first else None

    received = (wait_until(settled, timeout=5) or 0) - received_before
    elapsed = time.monotonic() - start
    # No stretch of `elapsed` seconds lets the node send more, however the packets fell.
    assert burst <= received <= burst + rate * elapsed, (received, elapsed)

    after = control.read_status(status_path)
    sent = after.get("icmp_errors_sent", 0) - before.get("icmp_errors_sent", 0)
    suppressed = after.get("icmp_errors_suppressed", 0) - before.get("icmp_errors_suppressed", 0)
    assert sent == received and sent + suppressed == int(done.stdout), (sent, suppressed, done)


def test_a_node_configured_to_send_no_errors_sends_none(mesh: Mesh) -> None:
    """A third node, c, dialling a, with the limit at 0 and 0: too-long datagrams from c's host
    draw no ICMP error (c's kernel counts none) and every one is counted as suppressed."""
    lab, a = mesh.lab, mesh.a
    c = lab.namespace()
    veth = lab.link(a, c)
    config_c = lab.node_config(
        NAME_C,
        [tcp_connect(veth.ipv4_a, PORT, KEY)],
        mtu=TUN_MTU,
        icmp_errors_per_s=0,
        icmp_error_burst=0,
    )
    node_c = start_node(lab, c, config_c)
    wait_route(node_c, NAME_A)
    assert wait_ping(lab, c, IPV4_A)  # a's IPv4 route is in c's kernel too
    burst_draws_no_errors(lab, c, NAME_C, "6", node_address(NAME_A))
    burst_draws_no_errors(lab, c, NAME_C, "4", IPV4_A)
    assert node_c.terminate(grace=10) == 0, node_c.log_tail()


def burst_draws_no_errors(lab: Lab, ns: str, node_name: str, family: str, address: str) -> None:
    """20 too-long datagrams from ns to address: the node counts all of them as suppressed, sends
    no error, and ns's kernel receives none."""
    count, header = 20, 48 if family == "6" else 28
    status_path = control.socket_path(node_name)
    received_before = icmp_too_big_received(lab, ns, family)
    suppressed_before = control.read_status(status_path)["icmp_errors_suppressed"]
    argv = [sys.executable, "-c", UDP_BURST, family, address, str(header), str(count), "0.01"]
    done = lab.run(ns, argv, timeout=20)
    assert int(done.stdout) == count, done.stdout + done.stderr

    def all_counted() -> dict[str, int] | None:
        status = control.read_status(status_path)
        return status if status["icmp_errors_suppressed"] - suppressed_before == count else None

    status = wait_until(all_counted, timeout=5)
    assert status is not None and status["icmp_errors_sent"] == 0, status
    assert icmp_too_big_received(lab, ns, family) == received_before
