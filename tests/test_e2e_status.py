"""`smolmesh status` against real running nodes: what a user sees of links and routes."""

from __future__ import annotations

import json
import os
import subprocess

from netns import Lab, tcp_connect, tcp_listen, wait_until
from smolmesh import control
from test_e2e_kit import (
    KEY,
    PORT,
    PingStream,
    node_address,
    smolmesh_command,
    start_node,
    wait_ping,
    wait_route,
    wait_up,
)


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*smolmesh_command(), "status", *args], capture_output=True, text=True, timeout=30
    )


def test_status_shows_links_and_routes_and_goes_away_with_the_node(tmp_path) -> None:
    left, right = f"status-left-{os.getpid()}", f"status-right-{os.getpid()}"
    with Lab(tmp_path) as lab:
        a, b = lab.namespace(), lab.namespace()
        veth = lab.link(a, b)
        node_a = start_node(
            lab, a, lab.node_config(left, [tcp_listen(PORT, [KEY])], ipv4_addresses=["10.250.0.1"])
        )
        wait_up(node_a)
        config_b = lab.node_config(
            right, [tcp_connect(veth.ipv4_a, PORT, KEY)], ipv4_addresses=["10.250.0.2"]
        )
        node_b = start_node(lab, b, config_b)
        wait_route(node_a, right)
        assert wait_ping(lab, a, "10.250.0.2")

        done = status(left, "--json")
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
        assert seen["node_name"] == left and seen["address"] == node_address(left)
        assert seen["pid"] > 0
        assert [link["outgoing"] for link in seen["links"]] == [False]
        assert seen["links"][0]["bytes_received"] > 0
        # A smolmesh peer never sends this node's own announcements back (smolmesh2 does).
        assert seen["links"][0]["returns_announcements"] is False
        assert seen["links"][0]["silent"] is False
        assert 0 < seen["links"][0]["rtt_ms"] < 100  # two namespaces on one machine
        assert seen["links"][0]["retransmitted_segments"] >= 0
        routes = {route["address"]: route for route in seen["routes"]}
        assert routes[node_address(right)]["name"] == right
        assert "10.250.0.2" in routes

        text = status(right)
        assert text.returncode == 0, text.stderr
        assert f"node {right}" in text.stdout and "links (1):" in text.stdout
        assert f"({left})" in text.stdout and "10.250.0.1" in text.stdout
        assert " ms  resent " in text.stdout  # the link's round trip and retransmissions

        metrics = status(left, "--prometheus")
        assert metrics.returncode == 0, metrics.stderr
        samples = dict(
            line.rsplit(" ", 1) for line in metrics.stdout.splitlines() if not line.startswith("#")
        )
        peer = seen["links"][0]["peer"]
        link = f'node="{left}",peer="{peer}",direction="in",transport="legacy_tcp"'
        assert float(samples[f"smolmesh_link_bytes_received_total{{{link}}}"]) > 0
        assert samples[f"smolmesh_link_silent{{{link}}}"] == "0"
        assert 0 < float(samples[f"smolmesh_link_rtt_seconds{{{link}}}"]) < 0.1
        assert samples[f'smolmesh_routes{{node="{left}"}}'] == "2"  # right's address and IPv4

        everyone = status("--json")
        assert everyone.returncode == 0, everyone.stderr
        assert {left, right} <= {node["node_name"] for node in json.loads(everyone.stdout)}

        # Cut the path on the wire, both ways: once a ping has gone unacknowledged through two
        # retransmission timeouts, the link shows as silent, before the kernel closes it (3 s).
        lab.cut_arrivals(a, veth.dev_a)
        lab.cut_arrivals(b, veth.dev_b)
        pings = PingStream(lab, a, "10.250.0.2", "ping-cut", interval=0.1)

        def silent_link() -> str | None:
            shown = status(left)
            return shown.stdout if "(silent: the peer answers nothing)" in shown.stdout else None

        text_silent = wait_until(silent_link, timeout=2.5, interval=0.1)
        pings.stop()
        assert text_silent, node_a.log()
        assert "(fell silent 1x)" in text_silent

        assert node_b.terminate(grace=10) == 0
        assert wait_until(lambda: not control.socket_path(right).exists(), timeout=5)
        gone = status(right)
        assert gone.returncode == 1 and gone.stderr.count("\n") == 1, gone.stderr
        assert "no node is running" in gone.stderr and "Traceback" not in gone.stderr
