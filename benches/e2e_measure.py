"""Throughput (iperf3), round-trip time (ping) and VPN CPU time, measured across a Chain."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from e2e_lab import BenchError, Chain

from smolmesh.lab import ns_argv, ping

IPERF_PORT = 5201
IPERF_SLACK_S = 30.0  # beyond the test's own length, before we give up on an iperf3 client
LISTEN_WAIT_S = 10.0
PING_COUNT = 20
PING_INTERVAL_S = 0.05
GB = 1e9


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU time so far of the processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError as exc:
            raise BenchError(f"process {pid} is gone") from exc
        # Fields after the command name, which may hold spaces, closed by the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    alive: Callable[[], str | None] = lambda: None,
) -> None:
    """Poll check() until it holds; fail after timeout, or at once when alive() names a death."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        death = alive()
        if death:
            raise BenchError(f"waiting for {what}: {death}")
        if check():
            return
        time.sleep(0.2)
    raise BenchError(f"no {what} within {timeout:.0f} s")


def ping_answers(chain: Chain, node: int, address: str) -> bool:
    return ping(chain.ns(node), address, count=1, timeout=1).ok


def ping_rtt_ms(chain: Chain, node: int, address: str) -> float:
    """The average of PING_COUNT round trips; BenchError if any went unanswered."""
    deadline_s = int(PING_COUNT * PING_INTERVAL_S) + 5
    result = ping(chain.ns(node), address, PING_COUNT, deadline_s, PING_INTERVAL_S)
    if not result.ok or result.rtt_ms is None:
        raise BenchError(f"ping {address}: {result.received} of {result.wanted} answered")
    return result.rtt_ms


def start_iperf_server(chain: Chain, node: int) -> None:
    chain.spawn(node, ["iperf3", "-s", "-p", str(IPERF_PORT)], f"iperf3-server-{node}.log")

    def listening() -> bool:
        out = chain.run(node, ["ss", "-H", "-l", "-t", "-n", f"sport = :{IPERF_PORT}"])
        return bool(out.strip())

    wait_until("iperf3 server", listening, LISTEN_WAIT_S)


def iperf(chain: Chain, node: int, address: str, streams: int, seconds: int) -> dict[str, float]:
    """One iperf3 run from node to address; the bits per second and bytes the receiver counted."""
    argv = [
        "iperf3",
        "-c",
        address,
        "-p",
        str(IPERF_PORT),
        "-t",
        str(seconds),
        "-P",
        str(streams),
        "-J",
        "--connect-timeout",
        "5000",
    ]
    try:
        done = subprocess.run(
            ns_argv(chain.ns(node), argv),
            capture_output=True,
            text=True,
            timeout=seconds + IPERF_SLACK_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"iperf3 to {address} did not finish") from exc
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        why = done.stderr.strip() or done.stdout[:200]
        raise BenchError(f"iperf3 to {address}: {why}") from exc
    if "error" in report:
        raise BenchError(f"iperf3 to {address}: {report['error']}")
    received = report["end"]["sum_received"]
    return {
        "bits_per_second": float(received["bits_per_second"]),
        "bytes": float(received["bytes"]),
    }


def measure(
    chain: Chain,
    client: int,
    server: int,
    address: str,
    seconds: int,
    vpn_pids: Sequence[int] = (),
) -> dict[str, object]:
    """Ping while idle, then 1 and 4 streams; CPU s/GB counts vpn_pids over both iperf3 runs."""
    start_iperf_server(chain, server)
    rtt_ms = ping_rtt_ms(chain, client, address)
    runs: dict[str, dict[str, float]] = {}
    for streams in (1, 4):
        cpu_before = cpu_seconds(vpn_pids)
        result = iperf(chain, client, address, streams, seconds)
        result["vpn_cpu_seconds"] = cpu_seconds(vpn_pids) - cpu_before
        runs[f"{streams}_stream"] = result
    total_gb = sum(r["bytes"] for r in runs.values()) / GB
    total_cpu = sum(r["vpn_cpu_seconds"] for r in runs.values())
    return {
        "gbps_1": runs["1_stream"]["bits_per_second"] / 1e9,
        "gbps_4": runs["4_stream"]["bits_per_second"] / 1e9,
        "rtt_ms": rtt_ms,
        "cpu_s_per_gb": total_cpu / total_gb if vpn_pids and total_gb > 0 else None,
        "runs": runs,
    }
