"""Where an idle ping's round trip goes, segment by segment, in smolmesh and in a bare forwarder.

Run as root:  python3 benches/rtt_segments.py [--rounds 2] [--count 60]   (needs `perf`)

A ping through a 2-node tunnel (node A on the pinging side, node B on the far side) passes
through the nodes four times. `perf trace` records when each node enters its read and write
system calls on the TUN device and the TCP socket, and each round trip splits at those moments:

    A tun -> sock     A reads the echo request from its TUN device ... and writes it to the link
    A -> B            A's write to the socket (the kernel's TCP and veth) ... B reading it
    B sock -> tun     B's receiving path: open, check, route ... its write to the TUN device
    B host reply      the host answers the echo inside B's write; B's loop wakes for the reply
    B tun -> sock     B's sending path, as A's above
    B -> A            as A -> B
    A sock -> tun     A's receiving path, as B's above

Segments inside a node are the node's own work (Python, Rust and the system call that ends the
segment); segments between nodes are the kernel and the wake-up, the same for any VPN over TCP.
The rows are smolmesh, and the bare forwarder of benches/idle_rtt.py with and without smolmesh's
Rust calls, in turns, each on a fresh chain, pinging every 50 ms so that every pass runs with cold
caches (see benches/cold_calls.py). Each figure is the median over every round trip of every
round, in microseconds; perf trace itself adds a few microseconds to each system call it records.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from e2e_lab import BenchError, Chain, chain
from e2e_tunnels import smolmesh
from idle_rtt import average_rtt_ms, forwarder

INTERVAL_S = 0.05
PERF_START_S = 1.0  # perf trace needs a moment to attach before the first ping
PERF_STOP_TIMEOUT_S = 30.0
LONGEST_ROUND_TRIP_US = 20_000.0  # a round trip slower than this is an outlier, not a sample
SEGMENTS = (
    "A tun -> sock",
    "A -> B",
    "B sock -> tun",
    "B host reply",
    "B tun -> sock",
    "B -> A",
    "A sock -> tun",
)
INSIDE_NODES = (0, 2, 4, 6)  # indexes of SEGMENTS spent inside a node


@dataclass(frozen=True)
class Syscall:
    at_us: float  # entry, perf trace's clock
    pid: int
    op: str  # "read" or "write"
    device: str  # "tun" or "sock"


# 531.185 ( 0.030 ms): python3/2384 write(fd: 12, buf: 0x7f.., count: 84) = 84
_CALL = re.compile(
    r"^\s*(?P<at>[\d.]+) \(\s*[\d.]*(?: ms)?\s*\): \S+/(?P<pid>\d+) (?P<op>read|writev|write)"
    r"\(fd: (?P<fd>\d+)[^,]*,.*?\)\s*(?:= (?P<result>-?\d+)|\.\.\.)"
)
# 531.307 ( 0.035 ms): python3/2384  ... [continued]: write())  = 111
_CONTINUED = re.compile(
    r"^\s*[\d.]+ \(\s*[\d.]*(?: ms)?\s*\): \S+/(?P<pid>\d+)\s+\.\.\. \[continued\]: "
    r"(?P<op>read|writev|write)\(\)\)\s*= (?P<result>-?\d+)"
)


def devices(pid: int) -> dict[tuple[int, int], str]:
    """(pid, fd) -> "tun" or "sock" for the process's TUN device and sockets."""
    found = {}
    for fd_path in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd_path)
        except OSError:  # closed meanwhile
            continue
        if target == "/dev/net/tun":
            found[(pid, int(fd_path.name))] = "tun"
        elif target.startswith("socket:"):
            found[(pid, int(fd_path.name))] = "sock"
    return found


def parse_perf_trace(text: str, fds: dict[tuple[int, int], str]) -> list[Syscall]:
    """The reads and writes on a TUN device or a socket (`fds`) that moved bytes, in time order."""
    calls: list[Syscall] = []
    unfinished: dict[int, Syscall] = {}  # per pid: a call whose result comes on a later line
    for line in text.splitlines():
        if found := _CALL.match(line):
            pid = int(found["pid"])
            device = fds.get((pid, int(found["fd"])))
            if device is None:
                continue
            op = "write" if found["op"] == "writev" else found["op"]  # a TUN write with a header
            call = Syscall(float(found["at"]) * 1000, pid, op, device)
            if found["result"] is None:
                unfinished[pid] = call
            elif int(found["result"]) > 0:
                calls.append(call)
        elif found := _CONTINUED.match(line):
            call = unfinished.pop(int(found["pid"]), None)
            op = "write" if found["op"] == "writev" else found["op"]
            if call is not None and call.op == op and int(found["result"]) > 0:
                calls.append(call)
    return sorted(calls, key=lambda call: call.at_us)


def round_trips(calls: list[Syscall], a: int, b: int) -> Iterator[list[float]]:
    """Each round trip's segments (microseconds), in the order of SEGMENTS."""
    steps = [
        (a, "read", "tun"),
        (a, "write", "sock"),
        (b, "read", "sock"),
        (b, "write", "tun"),
        (b, "read", "tun"),
        (b, "write", "sock"),
        (a, "read", "sock"),
        (a, "write", "tun"),
    ]
    keys = [(call.pid, call.op, call.device) for call in calls]
    moments: list[float] = []
    for call, key in zip(calls, keys, strict=True):
        if key == steps[0] and len(moments) <= 2:
            # A's next packet before B took the last one: that one was no echo request (the
            # host sends a few packets of its own into a new device); start again from here.
            moments = [call.at_us]
        elif moments and key == steps[len(moments)]:
            moments.append(call.at_us)
            if len(moments) == len(steps):
                if moments[-1] - moments[0] < LONGEST_ROUND_TRIP_US:
                    yield [later - earlier for earlier, later in itertools.pairwise(moments)]
                moments = []


def _forwarder_pids(row_chain: Chain) -> tuple[int, int]:
    """The dialling forwarder (node A, next to the pinger) and the listening one (node B)."""
    by_role = {
        role: proc.pid for proc in row_chain.lab.procs for role in ("connect", "listen")
        if role in proc.argv
    }  # fmt: skip
    return by_role["connect"], by_role["listen"]


def _start_smolmesh(row_chain: Chain) -> tuple[str, int, int]:
    tunnel = smolmesh(row_chain, 1500, 30.0)
    return tunnel.addresses[1], tunnel.pids[0], tunnel.pids[1]


def _start_forwarder(*options: str) -> Callable[[Chain], tuple[str, int, int]]:
    def start(row_chain: Chain) -> tuple[str, int, int]:
        address = forwarder(row_chain, *options)
        return (address, *_forwarder_pids(row_chain))

    return start


TUNNELS: dict[str, Callable[[Chain], tuple[str, int, int]]] = {
    "smolmesh @1500": _start_smolmesh,
    "forwarder + smolmesh's Rust calls": _start_forwarder("--smolmesh-calls"),
    "bare forwarder @1500": _start_forwarder(),
}


def traced_round_trips(
    row_chain: Chain, address: str, a: int, b: int, count: int
) -> tuple[list[list[float]], float]:
    """Ping `count` times every INTERVAL_S under perf trace of nodes a and b.

    Returns the round trips found in the trace, and ping's own average (milliseconds)."""
    fds = devices(a) | devices(b)
    trace_path = row_chain.log_dir / f"perf-trace-{row_chain.number}.txt"
    argv = ["perf", "trace", "-e", "read,write,writev", "-o", str(trace_path), "--pid", f"{a},{b}"]
    perf = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(PERF_START_S)
        if perf.poll() is not None:
            raise BenchError(f"perf trace exited at once: {perf.communicate()[1].strip()}")
        rtt_ms = average_rtt_ms(row_chain, address, count, INTERVAL_S)
    finally:
        if perf.poll() is None:
            perf.send_signal(signal.SIGINT)
        try:
            perf.wait(PERF_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            perf.kill()
            perf.wait()
    calls = parse_perf_trace(trace_path.read_text(errors="replace"), fds)
    return list(round_trips(calls, a, b)), rtt_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--count", type=int, default=60, help="pings per tunnel per round")
    args = parser.parse_args()
    if shutil.which("perf") is None:
        print("rtt_segments: needs perf (Debian: apt-get install linux-perf)", file=sys.stderr)
        return 2
    samples: dict[str, list[list[float]]] = {name: [] for name in TUNNELS}
    pings: dict[str, list[float]] = {name: [] for name in TUNNELS}
    log_dir = Path(tempfile.mkdtemp(prefix="smolmesh-rtt-segments-"))
    try:
        for round_number in range(1, args.rounds + 1):
            for name, start in TUNNELS.items():
                with chain(2, log_dir) as row_chain:
                    address, a, b = start(row_chain)
                    trips, rtt_ms = traced_round_trips(row_chain, address, a, b, args.count)
                if not trips:
                    raise BenchError(f"{name}: no whole round trip in the perf trace")
                samples[name] += trips
                pings[name].append(rtt_ms)
                print(
                    f"round {round_number} {name:34s} ping {rtt_ms:.3f} ms, "
                    f"{len(trips)} round trips traced ({args.count} pings)",
                    flush=True,
                )
    except (BenchError, subprocess.SubprocessError, OSError) as exc:
        print(f"rtt_segments: {exc}", file=sys.stderr)
        return 1
    print(f"\nmedian microseconds over {args.rounds} rounds of {args.count} pings every 50 ms")
    print(format_table(samples, pings))
    return 0


def format_table(samples: dict[str, list[list[float]]], pings: dict[str, list[float]]) -> str:
    names = list(samples)
    header = f"| segment | {' | '.join(names)} |"
    lines = [header, "|---" * (len(names) + 1) + "|"]
    for index, segment in enumerate(SEGMENTS):
        cells = [f"{statistics.median(trip[index] for trip in samples[n]):.0f}" for n in names]
        lines.append(f"| {segment} | {' | '.join(cells)} |")
    for label, indexes in (("inside the nodes", INSIDE_NODES), ("all segments", range(7))):
        cells = [
            f"{statistics.median(sum(trip[i] for i in indexes) for trip in samples[n]):.0f}"
            for n in names
        ]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    cells = [f"{statistics.median(pings[n]) * 1000:.0f}" for n in names]
    lines.append(f"| ping's own average | {' | '.join(cells)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
