"""How `smolmesh status` prints what a node serves: Prometheus's text format (`--prometheus`)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest

from smolmesh import control
from smolmesh.router import format_address

# A sample line of the exposition format: name{label="value",...} number.
SAMPLE = re.compile(
    r'[a-z_]+\{[a-z_]+="(?:[^"\\\n]|\\["\\n])*"(?:,[a-z_]+="(?:[^"\\\n]|\\["\\n])*")*\} \S+'
)


def a_status(name: str, *, rtt_ms: float | None) -> dict[str, Any]:
    link = {
        "peer": "10.0.0.2:5000",
        "outgoing": True,
        "transport": "secure_tcp",
        "bytes_sent": 1000,
        "bytes_received": 2000,
        "packets_dropped": 3,
        "silent": True,
        "silences": 2,
        "answers_echo": True if rtt_ms is not None else None,
        "returns_announcements": False,
        "rtt_ms": rtt_ms,
        "retransmitted_segments": None if rtt_ms is None else 4,
    }
    return {
        "node_name": name,
        "started_at": 1795900000.5,
        "links": [link],
        "routes": [{"backup_paths": 0}, {"backup_paths": 2}],
        "tun_packets_written": 7,
        "tun_writes": 5,
        **(
            {
                "links_allowed": 896,
                "route_table_bytes": 1234,
                "routes_refused": 3,
                "echo_announcements": 5,
                "warm_ticks": 7,
            }
            if rtt_ms is not None
            else {}
        ),
    }


def test_metrics_of_two_nodes_are_one_exposition_with_escaped_labels() -> None:
    text = control.format_prometheus(
        [a_status('odd "name"\\', rtt_ms=0.25), a_status("plain", rtt_ms=None)]
    )
    lines = text.splitlines()
    assert text.endswith("\n")
    names = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(names) == len(set(names))  # each metric's HELP and TYPE once, for every node
    samples = [line for line in lines if not line.startswith("#")]
    assert all(SAMPLE.fullmatch(line) for line in samples), samples
    odd = 'node="odd \\"name\\"\\\\"'
    link = 'peer="10.0.0.2:5000",direction="out",transport="secure_tcp"'
    assert f"smolmesh_link_bytes_received_total{{{odd},{link}}} 2000" in lines
    assert f"smolmesh_link_rtt_seconds{{{odd},{link}}} 0.00025" in lines
    assert f"smolmesh_link_silent{{{odd},{link}}} 1" in lines
    assert f"smolmesh_link_silences_total{{{odd},{link}}} 2" in lines
    assert f"smolmesh_link_answers_echo{{{odd},{link}}} 1" in lines
    assert not any(line.startswith('smolmesh_link_answers_echo{node="plain"') for line in lines)
    assert f"smolmesh_routes_without_backup{{{odd}}} 1" in lines
    assert 'smolmesh_tun_writes_total{node="plain"} 5' in lines
    assert f"smolmesh_links_allowed{{{odd}}} 896" in lines
    assert f"smolmesh_route_table_bytes{{{odd}}} 1234" in lines
    assert f"smolmesh_echo_announcements_total{{{odd}}} 5" in lines
    assert f"smolmesh_warm_ticks_total{{{odd}}} 7" in lines
    assert f"smolmesh_routes_refused_total{{{odd}}} 3" in lines
    # A node too old to give a figure has no sample of it.
    assert not any(line.startswith('smolmesh_links_allowed{node="plain"') for line in lines)
    # A figure the kernel did not give (no TCP_INFO) is left out, not printed as 0.
    assert not any(line.startswith('smolmesh_link_rtt_seconds{node="plain"') for line in lines)


@pytest.mark.parametrize(
    "text",
    [
        "::",
        "::1",
        "::ffff:1.2.3.4",
        "::1.2.3.4",
        "::ffff:0:1.2.3.4",
        "64:ff9b::1.2.3.4",
        "fd00::",
        "fdf0:1:0:0:1::1",
        "1:0:1:0:1:0:1:0",
        "1:0:0:1:0:0:0:1",
        "fd12:3456:789a:bcde:f012:3456:789a:bcde",
        "0.0.0.0",
        "10.1.2.3",
        "255.255.255.255",
    ],
)
def test_route_addresses_are_written_as_ipaddress_writes_them(text: str) -> None:
    # The status writes each route's address with inet_ntop (fast enough for a full table); the
    # text must stay what it was with ipaddress, which scripts and the README show.
    address = ipaddress.ip_address(text)
    assert format_address(address.packed) == str(address)
