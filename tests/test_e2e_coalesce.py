"""TCP through two real nodes at MTU 1500, with the receiving node's TUN writes coalesced and
without: the bytes arrive intact over IPv6 and IPv4, and `smolmesh status` shows how many writes
the receiving node needed (tun/linux.py: runs of TCP segments go to the host in one write)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from netns import Lab, tcp_connect, tcp_listen
from test_e2e_basic import SINK, SOURCE
from test_e2e_kit import KEY, PORT, node_address, smolmesh_command, start_node, wait_route, wait_up

PAYLOAD_BYTES = 8 * 1024 * 1024


def node_status(name: str) -> dict:
    done = subprocess.run(
        [*smolmesh_command(), "status", name, "--json"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "one-write-each"])
def test_tcp_at_mtu_1500_arrives_intact_over_both_families(tmp_path, coalesce: bool) -> None:
    sender, receiver = (f"gro-{end}-{int(coalesce)}-{os.getpid()}" for end in "sr")
    with Lab(tmp_path) as lab:
        s, r = lab.namespace(), lab.namespace()
        veth = lab.link(s, r)
        extra = {"mtu": 1500, "tun_coalesce": coalesce}
        config_r = lab.node_config(receiver, [tcp_listen(PORT, [KEY])],
                                   ipv4_addresses=["10.250.0.2"], **extra)  # fmt: skip
        node_r = start_node(lab, r, config_r)
        wait_up(node_r)
        config_s = lab.node_config(sender, [tcp_connect(veth.ipv4_b,
                                   PORT, KEY)], ipv4_addresses=["10.250.0.1"], **extra)  # fmt: skip
        node_s = start_node(lab, s, config_s)
        wait_up(node_s)
        wait_route(node_s, receiver)
        wait_route(node_r, sender)

        payload = tmp_path / "payload"
        payload.write_bytes(os.urandom(PAYLOAD_BYTES))
        digest = hashlib.sha256(payload.read_bytes()).hexdigest()
        for family, target in (("IPv6", node_address(receiver)), ("IPv4", "10.250.0.2")):
            sink = lab.spawn(r, [sys.executable, "-c", SINK], f"sink-{family}.log")
            assert sink.wait_for_log("listening", timeout=20), sink.log()
            lab.run(s, [sys.executable, "-c", SOURCE, target, str(payload)], timeout=120)
            received = sink.wait_for_log(r"received (\d+) (\w+)", timeout=30)
            assert received, sink.log()
            assert (int(received[1]), received[2]) == (PAYLOAD_BYTES, digest), family

        seen = node_status(receiver)
        packets, writes = seen["tun_packets_written"], seen["tun_writes"]
        # 16 MB in segments of at most 1,448 bytes: over 11,000 packets to the receiver's host.
        assert packets > 2 * PAYLOAD_BYTES // 1500, seen
        if coalesce:
            assert writes < packets / 4, (packets, writes)
        else:
            assert writes == packets, (packets, writes)
        print(f"\nMTU 1500, {'coalesced' if coalesce else 'one write each'}: {packets} packets "
              f"to the receiving host in {writes} writes")  # fmt: skip
        assert node_s.alive and node_r.alive
