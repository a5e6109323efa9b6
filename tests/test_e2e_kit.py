"""What the end-to-end tests share: nodes started with the real command, their logs, pings with
timestamps. It holds no tests itself; the tests are test_e2e_basic, _failover and _hostile.

Every node runs as `smolmesh meshnode CONFIG -v` in a namespace of a `netns.Lab`, so the lab stops
it and deletes its namespace (with the TUN device and host routes) when the test ends, also when it
fails.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import smolmesh
from netns import Lab, Proc, wait_until

KEY = "e2e mesh key"
PORT = 5000
# Seconds a node may take from its process start to its first log line "node ... up": Python's
# start-up and name_to_ipv6 of its name, on a machine that may be busy with other work.
START_TIMEOUT = 30.0


def smolmesh_command() -> list[str]:
    """The installed `smolmesh` console script beside this Python, else `python -m smolmesh`."""
    script = Path(sys.executable).with_name("smolmesh")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "smolmesh"]


def node_address(name: str) -> str:
    """The node's IPv6 address in the compressed form `ip` and `ping` print."""
    return str(ipaddress.IPv6Address(smolmesh.name_to_ipv6(name)))


def start_node(lab: Lab, ns: str, config: dict[str, Any], tag: str | None = None) -> Proc:
    """Run the real `smolmesh meshnode CONFIG -v` in ns; config and log are named after `tag`
    (default: the node name), so a node restarted under a new tag keeps its first log."""
    tag = tag or config["node_name"]
    path = lab.write_config(config, tag)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return lab.spawn(ns, [*smolmesh_command(), "meshnode", str(path), "-v"], f"{tag}.log", env)


def wait_up(proc: Proc, timeout: float = START_TIMEOUT) -> float:
    """Wait for the node's "node ... up" line; returns its log time (Unix seconds)."""
    found = proc.wait_for_log(r"(\S+ \S+) INFO smolmesh\.node: node \S+ up as", timeout)
    assert found, f"node did not come up within {timeout} s (alive: {proc.alive}):\n{proc.log()}"
    return log_time(found[1])


def wait_route(proc: Proc, name: str, timeout: float = 20.0) -> float:
    """Wait until the node has learnt a route to node `name`; returns the log time of that line."""
    found = proc.wait_for_log(
        rf"(\S+ \S+) INFO smolmesh\.router: route to \S+ \({name}\) learnt", timeout
    )
    assert found, f"no route to {name} within {timeout} s:\n{proc.log()}"
    return log_time(found[1])


def wait_ping(lab: Lab, ns: str, address: str, timeout: float = 15.0) -> bool:
    """Whether a ping from ns to address is answered within `timeout` s, one ping at a time.

    A route the node has learnt reaches the kernel a moment later (netlink.py's worker), and
    until then an IPv4 ping fails at once, unreachable, rather than waiting for its answer."""
    return bool(wait_until(lambda: lab.ping(ns, address, count=1, timeout=2).ok, timeout, 0.1))


def log_time(stamp: str) -> float:
    """Unix seconds of a log line's asctime, `2026-01-31 12:00:00,123` (local time)."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def log_lines(proc: Proc, pattern: str) -> list[tuple[float, re.Match[str]]]:
    """(log time, match of `pattern` in the message) of every log line whose message matches."""
    lines = []
    for line in proc.log().splitlines():
        head = re.match(r"(\S+ \S+) \w+ \S+: ", line)
        if head:
            found = re.search(pattern, line[head.end() :])
            if found:
                lines.append((log_time(head[1]), found))
    return lines


def route_via(proc: Proc, name: str, before: float | None = None) -> str | None:
    """The peer label of the node's route to `name` as of its log (up to time `before`)."""
    via = None
    pattern = (
        rf"route to \S+ \({name}\) "
        r"(?:learnt via (\S+)|changed from \S+ to (\S+)|moved to (\S+)|lost)"
    )
    for when, found in log_lines(proc, pattern):
        if before is None or when <= before:
            via = found[1] or found[2] or found[3]
    return via


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert found, status
    return int(found[1])


@dataclass(frozen=True)
class Reply:
    at: float  # Unix seconds, as `ping -D` prints them
    seq: int


class PingStream:
    """A continuous `ping -D` from a namespace, its replies read back from its log."""

    def __init__(self, lab: Lab, ns: str, address: str, tag: str, interval: float = 0.1) -> None:
        argv = ["ping", "-n", "-D", "-i", str(interval), address]
        self.proc = lab.spawn(ns, argv, f"{tag}.log")

    def replies(self) -> list[Reply]:
        pattern = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)", re.MULTILINE)
        return [Reply(float(m[1]), int(m[2])) for m in pattern.finditer(self.proc.log())]

    def wait_replies(self, count: int, timeout: float) -> bool:
        """True once `count` replies came in a row, counted from now."""
        start = len(self.replies())
        return bool(wait_until(lambda: len(self.replies()) >= start + count, timeout, 0.05))

    def gap_around(self, event: float) -> float | None:
        """Seconds from the last reply up to `event` to the first after it; None if none came."""
        replies = self.replies()
        before = [r.at for r in replies if r.at <= event]
        after = [r.at for r in replies if r.at > event]
        if not before or not after:
            return None
        return after[0] - before[-1]

    def stop(self) -> None:
        self.proc.terminate(grace=2)
