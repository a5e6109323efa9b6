"""Network namespaces joined by veth pairs, and the processes started in them, for benches/e2e.py.

A `Lab` is a chain of namespaces a-b(-c) with one veth pair between neighbours. Pair i joins node i
(10.203.0.{4i+1}/30) and node i+1 (10.203.0.{4i+2}/30). Everything a Lab makes, namespaces and
processes, is removed when its `with` block ends, however it ends; the signals that would
interrupt that removal are held back until it is done.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

NODE_LETTERS = "abc"
PROCESS_STOP_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
_lab_numbers = itertools.count(1)
HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold back Ctrl-C and termination until the block is done; they arrive after it."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _unhold_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)


class BenchError(Exception):
    """A row could not be measured; the message says why."""


def run(argv: list[str], *, timeout: float = COMMAND_TIMEOUT_S, input: str | None = None) -> str:
    """Run a short command, return its stdout, raise BenchError if it fails."""
    try:
        done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{' '.join(argv)}: no answer within {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def veth_address(pair: int, side: int) -> str:
    """The address of `side` (0 = left node, 1 = right node) on veth pair `pair`."""
    return f"10.203.0.{4 * pair + 1 + side}"


class Lab:
    """`nodes` namespaces in a chain; `lab.ns(i)` is node i's namespace name."""

    def __init__(self, nodes: int) -> None:
        if not 2 <= nodes <= len(NODE_LETTERS):
            raise ValueError(f"a lab has 2 to {len(NODE_LETTERS)} nodes")
        self.nodes = nodes
        self.number = next(_lab_numbers)
        # Names carry our PID and a per-run number so that concurrent runs never meet.
        self.tag = f"{os.getpid()}-{self.number}"
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def ns(self, node: int) -> str:
        return f"smb-{self.tag}-{NODE_LETTERS[node]}"

    def unique_name(self, node: int, kind: str) -> str:
        """A name unique on this machine (at most 15 characters, fit for a network interface)."""
        return f"{kind}{os.getpid()}{self.number}{NODE_LETTERS[node]}"[:15]

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _build(self) -> None:
        for node in range(self.nodes):
            self.namespaces.append(self.ns(node))  # first, so that an interrupted add is undone
            run(["ip", "netns", "add", self.ns(node)])
            run(["ip", "-n", self.ns(node), "link", "set", "lo", "up"])
        for pair in range(self.nodes - 1):
            left, right = self.ns(pair), self.ns(pair + 1)
            # The peer is made straight inside the other namespace: no name in the root one.
            run(
                [
                    "ip",
                    "-n",
                    left,
                    "link",
                    "add",
                    f"to{NODE_LETTERS[pair + 1]}",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    f"to{NODE_LETTERS[pair]}",
                    "netns",
                    right,
                ]
            )
            for side, ns, dev in (
                (0, left, f"to{NODE_LETTERS[pair + 1]}"),
                (1, right, f"to{NODE_LETTERS[pair]}"),
            ):
                run(["ip", "-n", ns, "addr", "add", f"{veth_address(pair, side)}/30", "dev", dev])
                run(["ip", "-n", ns, "link", "set", dev, "up"])

    def exec_argv(self, node: int, argv: list[str]) -> list[str]:
        # `ip netns exec` execs in place, so the PID we get is the program's own.
        return ["ip", "netns", "exec", self.ns(node), *argv]

    def run(self, node: int, argv: list[str], *, timeout: float = COMMAND_TIMEOUT_S) -> str:
        return run(self.exec_argv(node, argv), timeout=timeout)

    def sysctl(self, node: int, setting: str) -> None:
        self.run(node, ["sysctl", "-q", "-w", setting])

    def spawn(
        self,
        node: int,
        argv: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running program in node's namespace, logging to log_path, until close()."""
        # A signal between the start and the bookkeeping would leave the process unknown to close().
        with _signals_held(), open(log_path, "ab") as log:
            proc = subprocess.Popen(
                self.exec_argv(node, argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,  # a Ctrl-C in the terminal reaches us only; we stop them
                preexec_fn=_unhold_signals,  # the child must not inherit the held-back signals
            )
            self.processes.append(proc)
        return proc

    def close(self) -> None:
        with _signals_held():
            self._stop_processes()
            for ns in reversed(self.namespaces):
                # Deleting the namespace takes its veths and TUN devices with it.
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            self.namespaces.clear()

    def _stop_processes(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + PROCESS_STOP_TIMEOUT_S
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(timeout=PROCESS_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:  # stuck in the kernel; the namespace goes anyway
                    print(f"e2e bench: process {proc.pid} did not die", file=sys.stderr)
        self.processes.clear()
