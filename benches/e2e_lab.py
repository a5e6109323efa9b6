"""The bench's chain of network namespaces a-b(-c), built with smolmesh.lab, for benches/e2e.py.

Each node is a namespace of a `smolmesh.lab.Lab`, and each pair of neighbours gets one veth link,
addressed by the lab: link i joins node i (10.201.{i+1}.1/30) and node i+1 (10.201.{i+1}.2/30).
The lab removes everything it made, namespaces and processes, when the `chain` block ends, however
it ends, and holds back the signals that would interrupt the removal until it is done.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

try:
    from smolmesh import lab as smolmesh_lab
except ImportError as exc:  # the namespaces come from the installed package
    print(
        f"e2e bench: smolmesh is not installed for {sys.executable}: pip install .", file=sys.stderr
    )
    raise SystemExit(2) from exc

NODE_LETTERS = "abc"
NAMESPACE_PREFIX = "smb"  # namespaces are smb-<pid>-<chain number><node letter>
_chain_numbers = itertools.count(1)


class BenchError(Exception):
    """A row could not be measured; the message says why."""


def run(ns: str | None, argv: Sequence[str], *, input: str | None = None) -> str:
    """Run a short command in ns (None: the host); its stdout, or BenchError if it fails."""
    timeout = smolmesh_lab.COMMAND_TIMEOUT_S
    try:
        done = smolmesh_lab.run(ns, argv, check=False, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{' '.join(argv)}: no answer within {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


class Chain:
    """`nodes` namespaces of `lab` in a row, one veth link between neighbours."""

    def __init__(self, lab: smolmesh_lab.Lab, nodes: int) -> None:
        if not 2 <= nodes <= len(NODE_LETTERS):
            raise ValueError(f"a chain has 2 to {len(NODE_LETTERS)} nodes")
        self.lab = lab
        self.nodes = nodes
        self.number = next(_chain_numbers)
        self.namespaces = [lab.namespace(f"{self.number}{NODE_LETTERS[n]}") for n in range(nodes)]
        self.links = [
            lab.link(self.namespaces[i], self.namespaces[i + 1]) for i in range(nodes - 1)
        ]

    @property
    def log_dir(self) -> Path:
        return self.lab.workdir

    def ns(self, node: int) -> str:
        return self.namespaces[node]

    def veth_address(self, pair: int, side: int) -> str:
        """The IPv4 address of `side` (0 = left node, 1 = right node) on veth link `pair`."""
        link = self.links[pair]
        return link.ipv4_b if side else link.ipv4_a

    def unique_name(self, node: int, kind: str) -> str:
        """A name unique on this machine (at most 15 characters, fit for a network interface)."""
        return f"{kind}{os.getpid()}{self.number}{NODE_LETTERS[node]}"[:15]

    def run(self, node: int, argv: Sequence[str]) -> str:
        return run(self.ns(node), argv)

    def sysctl(self, node: int, setting: str) -> None:
        self.run(node, ["sysctl", "-q", "-w", setting])

    def spawn(
        self, node: int, argv: Sequence[str], log_name: str, env: dict[str, str] | None = None
    ) -> smolmesh_lab.Proc:
        """Start a long-running program in node's namespace, logging to log_dir/log_name."""
        return self.lab.spawn(self.ns(node), argv, log_name, env)


@contextlib.contextmanager
def chain(nodes: int, log_dir: Path) -> Iterator[Chain]:
    """A Chain whose processes log to log_dir; all of it is removed when the block ends."""
    try:
        with smolmesh_lab.Lab(log_dir, prefix=NAMESPACE_PREFIX) as lab:
            # A failed row keeps its logs in log_dir and quotes their tails in its error.
            lab.logs_on_error = False
            yield Chain(lab, nodes)
    except (smolmesh_lab.LabError, subprocess.TimeoutExpired) as exc:
        raise BenchError(str(exc)) from exc
