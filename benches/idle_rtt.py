"""Ping round trips through smolmesh, wireguard-go and a bare Python forwarder, interleaved.

Run as root:  python3 benches/idle_rtt.py [--rounds 3] [--count 100]

Each round builds a fresh 2-node chain per tunnel (benches/e2e_lab.py), then pings through it at
two intervals: 50 ms (idle: each packet finds the processes asleep and their caches cold, as
benches/e2e.py measures it) and 3 ms (busy: they are still awake). The tunnels take turns within
each round, so drift on a shared machine falls on all of them alike. The bare forwarder
(benches/rtt_forwarder.py) is a uvloop process with one TUN device and one TCP connection and no
crypto or routing: the floor of a Python VPN over TCP. The same forwarder with --smolmesh-calls
also makes the Rust calls a smolmesh node makes per packet over legacy_tcp (seal, open, duplicate
filter) and
nothing else of the node, which splits smolmesh's extra time between those calls and its Python.
Prints the median of each tunnel's per-round averages, and its ratio to wireguard-go's.

To weigh a change, `--build DIR` (repeatable) adds a row per other build of smolmesh: DIR holds a
`smolmesh` package (a copy of the installed one with the change, say), which the row's nodes run
with PYTHONPATH=DIR, in turns with the rest. `--only NAME,...` keeps the rows whose names start so.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from e2e_lab import BenchError, Chain, chain
from e2e_measure import ping_answers, wait_until
from e2e_tunnels import smolmesh, wireguard

INTERVALS_S = (0.05, 0.003)
FORWARDER = Path(__file__).with_name("rtt_forwarder.py")
FORWARDER_PORT = 4202
FORWARDER_NET = "10.206.0"


def forwarder(row_chain: Chain, *options: str) -> str:
    """A pair of bare forwarders over the chain's veth; returns the far end's tunnel address."""
    far = f"{FORWARDER_NET}.2"
    row_chain.spawn(
        1,
        [
            sys.executable,
            str(FORWARDER),
            "listen",
            str(FORWARDER_PORT),
            "rttfw",
            f"{far}/24",
            *options,
        ],
        "forwarder-b.log",
    )
    wait_until("forwarder b listening", lambda: _listening(row_chain, 1), 10.0)
    row_chain.spawn(
        0,
        [
            sys.executable,
            str(FORWARDER),
            "connect",
            f"{row_chain.veth_address(0, 1)}:{FORWARDER_PORT}",
            "rttfw",
            f"{FORWARDER_NET}.1/24",
            *options,
        ],
        "forwarder-a.log",
    )
    wait_until("ping through the forwarder", lambda: ping_answers(row_chain, 0, far), 10.0)
    return far


def _listening(row_chain: Chain, node: int) -> bool:
    return f":{FORWARDER_PORT} " in row_chain.run(node, ["ss", "-ltnH"])


TUNNELS: dict[str, Callable[[Chain], str]] = {
    "smolmesh @1500": lambda c: smolmesh(c, 1500, 30.0).addresses[1],
    "smolmesh @1500 over legacy_tcp": lambda c: smolmesh(c, 1500, 30.0, "legacy_tcp").addresses[1],
    "wireguard-go @1500": lambda c: wireguard(c, 1500).addresses[1],
    "bare forwarder @1500": forwarder,
    "forwarder + smolmesh's Rust calls": lambda c: forwarder(c, "--smolmesh-calls"),
}


def smolmesh_build(directory: str) -> Callable[[Chain], str]:
    """Start a 2-node smolmesh tunnel from the package in `directory` instead of the installed
    one; returns the far end's tunnel address."""

    def start(row_chain: Chain) -> str:
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = directory  # the nodes inherit the environment
        try:
            return smolmesh(row_chain, 1500, 30.0).addresses[1]
        finally:
            if before is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = before

    return start


def average_rtt_ms(row_chain: Chain, address: str, count: int, interval_s: float) -> float:
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval_s), "-W", "2", address]
    out = row_chain.run(0, argv)
    found = re.search(r"= [\d.]+/([\d.]+)/", out)
    if found is None:
        raise BenchError(f"ping {address}: no round-trip line in {out!r}")
    return float(found[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=100, help="pings per interval per round")
    parser.add_argument(
        "--build", action="append", default=[], help="a directory holding another smolmesh build"
    )
    parser.add_argument("--only", help="comma-separated prefixes of the rows to run")
    args = parser.parse_args()
    tunnels = dict(TUNNELS)
    for directory in args.build:
        tunnels[f"smolmesh @1500 from {directory}"] = smolmesh_build(os.path.abspath(directory))
    if args.only:
        prefixes = tuple(args.only.split(","))
        tunnels = {n: start for n, start in tunnels.items() if n.startswith(prefixes)}
        tunnels["wireguard-go @1500"] = TUNNELS["wireguard-go @1500"]  # the yardstick
    results: dict[tuple[str, float], list[float]] = {}
    log_dir = Path(tempfile.mkdtemp(prefix="smolmesh-idle-rtt-"))
    try:
        for round_number in range(1, args.rounds + 1):
            for name, start in tunnels.items():
                with chain(2, log_dir) as row_chain:
                    address = start(row_chain)
                    for interval in INTERVALS_S:
                        rtt = average_rtt_ms(row_chain, address, args.count, interval)
                        results.setdefault((name, interval), []).append(rtt)
                        print(
                            f"round {round_number} {name:34s} every {interval * 1000:g} ms: "
                            f"{rtt:.3f} ms",
                            flush=True,
                        )
    except (BenchError, subprocess.SubprocessError) as exc:
        print(f"idle_rtt: {exc}", file=sys.stderr)
        return 1
    print(f"\nmedian of {args.rounds} rounds, {args.count} pings each (logs in {log_dir}):")
    for interval in INTERVALS_S:
        reference = statistics.median(results[("wireguard-go @1500", interval)])
        for name in tunnels:
            rtt = statistics.median(results[(name, interval)])
            print(
                f"  every {interval * 1000:4g} ms  {name:34s} {rtt:.3f} ms  "
                f"x{rtt / reference:.2f} wireguard-go"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
