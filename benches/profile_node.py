"""Where a packet's time goes in a node: py-spy samples of every node of a tunnel under load.

    python3 benches/profile_node.py [--mtu 1500] [--seconds 5] [--chain]
                                    [--transport secure_tcp|legacy_tcp]
                                    # as root; needs py-spy (pip), iperf3

Two nodes in network namespaces (with --chain three in a line, so the middle one relays), one
iperf3 TCP stream from the first to the last through the tunnel; py-spy samples each node at
100 Hz. A sample is put in the bucket of the innermost line of smolmesh it
is in: time in Rust and in system calls is counted on the Python line that calls it. The buckets'
shares of the samples divide the process's CPU time (from /proc) among them.
With the packet rate, the shares become microseconds per packet for each node: the sender reads
its TUN device and seals, the receiver opens and writes its TUN device (the kernel's own TCP work
for the packet runs inside that write), and a middle node opens, routes and seals again.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import smolmesh
from smolmesh.lab import Lab, node_config, tcp_connect, tcp_listen, wait_until

RATE = 100  # samples a second
PACKAGE_ROOT = Path(smolmesh.__file__).resolve().parent.parent  # py-spy names "smolmesh/x.py"

# (file, code on the line) -> bucket; the first match from the innermost frame out wins.
BUCKETS = [
    ("tun/linux.py", "read(", "TUN read (syscall)"),
    ("tun/linux.py", "write(", "TUN write (syscall + kernel stack)"),
    ("tun/linux.py", "writev(", "TUN write (syscall + kernel stack)"),
    ("tun/linux.py", "tcp_gro", "join TCP segments for the TUN write (Rust)"),
    ("tcp.py", "seal", "seal (Rust)"),
    ("tcp.py", "transport.write", "TCP send (syscall)"),
    ("tcp.py", "opener.feed", "open + verify + triage (Rust, one call)"),
    ("router.py", "_core.triage", "triage + duplicate filter (Rust)"),
    ("router.py", "destination", "IP destination (Rust)"),
]
LOOP = "event loop (uvloop: epoll, TCP receive)"
PYTHON = "Python (routing, batching, callbacks)"


def bucket_of(stack: list[str], sources: dict[str, list[str]]) -> str:
    """The bucket of one sampled stack (outermost frame first)."""
    # Frames below the event loop's run() are callbacks; none of smolmesh's: the loop itself.
    loop_at = max((i for i, frame in enumerate(stack) if frame.startswith("Runner.run")), default=0)
    for frame in reversed(stack[loop_at + 1 :]):
        # py-spy's raw frames look like "function (smolmesh/router.py:123)"
        path, _, line = frame.rsplit("(", 1)[-1].rstrip(")").rpartition(":")
        if not path.startswith("smolmesh/"):
            continue
        code = sources.setdefault(path, _source_lines(path))
        text = code[int(line) - 1] if line.isdigit() and int(line) <= len(code) else ""
        for file, needle, bucket in BUCKETS:
            if path.endswith(file) and needle in text:
                return bucket
        return PYTHON
    return LOOP


def _source_lines(path: str) -> list[str]:
    source = PACKAGE_ROOT / path
    return source.read_text().splitlines() if source.is_file() else []


def profile(raw: Path) -> collections.Counter[str]:
    sources: dict[str, list[str]] = {}
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        counts[bucket_of(stack.split(";"), sources)] += int(number)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--chain", action="store_true", help="three nodes: profile the relay too")
    parser.add_argument(
        "--transport",
        choices=("secure_tcp", "legacy_tcp"),
        default="secure_tcp",
        help="the link between the nodes (default secure_tcp)",
    )
    args = parser.parse_args()
    for tool in ("py-spy", "iperf3", "ip"):
        if shutil.which(tool) is None:
            print(f"profile_node: {tool} is missing (pip install py-spy; apt-get install iperf3)")
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="smolmesh-profile-"))  # the lab's: it goes with it
    samples = Path(tempfile.mkdtemp(prefix="smolmesh-profile-samples-"))
    roles = ["sender", "middle", "receiver"] if args.chain else ["sender", "receiver"]
    names = [f"profile-{role}" for role in roles]
    addresses = [f"10.250.0.{i + 1}" for i in range(len(roles))]
    with Lab(workdir, prefix="smp") as lab:
        namespaces = [lab.namespace(role) for role in roles]
        veths = [lab.link(left, right) for left, right in itertools.pairwise(namespaces)]
        nodes = {}
        # Each node listens for the next one and dials the one before, as in benches/e2e.py.
        for i, (name, ns) in enumerate(zip(names, namespaces, strict=True)):
            transports = []
            if i < len(roles) - 1:
                transports.append(tcp_listen(4300, ["profile"], args.transport))
            if i > 0:
                transports.append(tcp_connect(veths[i - 1].ipv4_a, 4300, "profile", args.transport))
            config = node_config(name, transports, ipv4_addresses=[addresses[i]], mtu=args.mtu)
            path = workdir / f"{name}.json"
            path.write_text(json.dumps(config))
            argv = [sys.executable, "-m", "smolmesh", "meshnode", str(path)]
            nodes[name] = lab.spawn(ns, argv, f"{name}.log")
            if i < len(roles) - 1:
                time.sleep(1.0)  # listening before the next one dials
        first, last, last_address = namespaces[0], namespaces[-1], addresses[-1]
        if not wait_until(lambda: lab.ping(first, last_address, count=1, timeout=1).ok, timeout=30):
            print("profile_node: the tunnel did not come up")
            return 1
        lab.spawn(last, ["iperf3", "-s", "-1"], "iperf3-server.log")
        time.sleep(0.5)
        client = subprocess.Popen(
            ["ip", "netns", "exec", first, "iperf3", "-c", last_address, "-J", "-t",
             str(args.seconds + 2)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(1)
        pids = {name: _python_pid(proc.pid) for name, proc in nodes.items()}
        cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        samplers = [
            subprocess.Popen(
                [*sampler_argv(samples / f"{name}.txt", args.seconds), str(pid)],
                stdout=subprocess.DEVNULL,
            )
            for name, pid in pids.items()
        ]
        started = time.monotonic()
        for sampler in samplers:
            sampler.wait(timeout=args.seconds + 30)
        elapsed = time.monotonic() - started
        cpu = {name: _cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        out, _ = client.communicate(timeout=60)
        bits = json.loads(out)["end"]["sum_received"]["bits_per_second"]
    packets_per_s = bits / 8 / args.mtu
    print(f"MTU {args.mtu}: {bits / 1e9:.2f} Gbit/s, about {packets_per_s:,.0f} packets/s")
    for name, role in zip(names, roles, strict=True):
        counts = profile(samples / f"{name}.txt")
        # Samples give the shares (they count time in a call, on the CPU or waiting for it);
        # /proc gives the CPU time they share.
        total_us = cpu[name] / elapsed * 1e6 / packets_per_s
        samples_taken = sum(counts.values())
        spent = {bucket: count / samples_taken * total_us for bucket, count in counts.items()}
        print(f"\n{role} ({name}): {cpu[name] / elapsed:.0%} of a core; us per packet by where:")
        for bucket, us in sorted(spent.items(), key=lambda item: -item[1]):
            print(f"  {us:7.2f} us  {bucket}")
        print(f"  {total_us:7.2f} us  in all")
    shutil.rmtree(samples, ignore_errors=True)
    return 0


def sampler_argv(output: Path, seconds: int) -> list[str]:
    """py-spy at RATE Hz, raw stacks; idle samples (waiting in epoll) are left out."""
    return ["py-spy", "record", "-f", "raw", "-r", str(RATE), "-d", str(seconds),
            "-o", str(output), "-p"]  # fmt: skip


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _python_pid(pid: int) -> int:
    """The node's Python process: `ip netns exec` execs it, a pyenv shim may fork it."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = children.read_text().split() if children.exists() else []
    return int(kids[0]) if kids else pid


if __name__ == "__main__":
    sys.exit(main())
