"""A lab of network namespaces for end-to-end tests: namespaces, veth links, processes, loss, ping.

    from netns import Lab, tcp_listen, tcp_connect

    def test_two_nodes(tmp_path):
        with Lab(tmp_path) as lab:              # skips the test unless root with `ip netns`
            a, b = lab.namespace(), lab.namespace()
            link = lab.link(a, b)               # veth: 10.201.k.1/30 in a, 10.201.k.2/30 in b
            a_name, b_name = f"a-{os.getpid()}", f"b-{os.getpid()}"  # node names: see below
            lab.start_node(a, lab.node_config(a_name, [tcp_listen(5000, ["k"])]))
            lab.start_node(b, lab.node_config(b_name, [tcp_connect(link.ipv4_a, 5000, "k")]))
            assert lab.ping(a, "fd00:...", count=3, timeout=10).ok

The lab itself (namespaces, veth links, processes, ping, cleanup) is `smolmesh.lab`, which
`smolmesh demo` uses too; this module re-exports it and adds what only tests want: skipping
unless the machine can run a lab (installing missing tools with apt-get first), packet loss, cut
paths, and
the tails of the logs printed when the body raised, so pytest shows them with the failure.

Everything a lab makes is undone when the `with` block ends, also when the body raised: processes
get SIGTERM, then SIGKILL after a grace period, and the namespaces (with their veth ends) are
deleted. Names carry the pytest process's PID (`smt-<pid>-<n>`), so concurrent runs do not collide,
and namespaces of a run that was killed outright are swept by the next lab whose PID is gone.
Node names are the test's to choose, and carry the PID too: a node serves its status at
/run/smolmesh/<node name>.sock, one directory for every namespace, and while one node of a name
runs, another of that name serves no status.

Addresses exist only inside the lab's namespaces: 10.201.<k>.1-2/30 and fd00:201:<k>::1-2/64 for
the k-th veth link. Logs of processes go to the lab's directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys

import pytest

from smolmesh import lab as _lab
from smolmesh.lab import (
    PingResult,
    Proc,
    Veth,
    delete_namespace,
    node_config,
    ns_argv,
    ping,
    run,
    spawn,
    tcp_connect,
    tcp_listen,
    wait_until,
)

__all__ = [
    "PREFIX",
    "Lab",
    "PingResult",
    "Proc",
    "Veth",
    "cut_arrivals",
    "delete_namespace",
    "ensure_tools",
    "lab_namespaces",
    "node_config",
    "ns_argv",
    "ping",
    "require_lab",
    "run",
    "set_loss",
    "spawn",
    "sweep_stale",
    "tcp_connect",
    "tcp_listen",
    "wait_until",
]

PREFIX = "smt"
_names = _lab._names

# Command -> Debian package that brings it. nft stands in for tc netem where the kernel lacks it.
_TOOLS = {"ip": "iproute2", "tc": "iproute2", "ping": "iputils-ping", "nft": "nftables"}


# ----------------------------------------------------------------------------------------------
# Availability


_available: str | None = None  # "" when usable, else why not


def require_lab() -> None:
    """pytest.skip unless this process can make namespaces (root, Linux, `ip netns`)."""
    global _available
    if _available is None:
        _available = _probe()
    if _available:
        pytest.skip(_available)


def _probe() -> str:
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = ensure_tools()
    if missing:
        return f"missing tools: {', '.join(missing)}"
    return _lab.lab_problem()


def ensure_tools() -> list[str]:
    """Install missing iproute2 / iputils-ping / nftables with apt-get; returns what still lacks."""
    missing = sorted({pkg for cmd, pkg in _TOOLS.items() if shutil.which(cmd) is None})
    if missing and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=300, env=env)
            subprocess.run(
                ["apt-get", "install", "-y", "-q", *missing],
                capture_output=True,
                timeout=300,
                env=env,
            )
    return sorted({cmd for cmd in _TOOLS if shutil.which(cmd) is None})


# ----------------------------------------------------------------------------------------------
# Loss


_netem_works: bool | None = None


def set_loss(ns: str, dev: str, percent: float) -> None:
    """Drop `percent` of the packets that leave dev in ns (0 removes the loss).

    Uses `tc ... netem loss`; on kernels built without netem it falls back to nftables rules that
    drop the same share of IP packets routed out of dev (ARP still passes there, unlike netem).
    """
    global _netem_works
    if not 0 <= percent <= 100:
        raise ValueError(f"loss {percent}% is outside 0..100")
    if _netem_works is not False:
        if percent == 0:
            run(ns, ["tc", "qdisc", "del", "dev", dev, "root"], check=False)
        else:
            argv = ["tc", "qdisc", "replace", "dev", dev, "root", "netem", "loss", f"{percent}%"]
            done = run(ns, argv, check=False)
            if done.returncode == 0:
                _netem_works = True
                return
            if "unknown" not in done.stderr.lower() or _netem_works:
                raise RuntimeError(f"{' '.join(argv)} in {ns}: {done.stderr.strip()}")
            _netem_works = False
    table = "smt_loss_" + re.sub(r"\W", "_", dev)
    script = f"table inet {table} {{}}\ndelete table inet {table}\n"  # replace atomically
    if percent > 0:
        share = f"numgen random mod 10000 < {round(percent * 100)} " if percent < 100 else ""
        rule = f'oifname "{dev}" {share}drop'
        script += (
            f"table inet {table} {{\n"
            f"  chain sent {{ type filter hook output priority 0; {rule}; }}\n"
            f"  chain routed {{ type filter hook forward priority 0; {rule}; }}\n"
            "}\n"
        )
    run(ns, ["nft", "-f", "-"], input=script)


def cut_arrivals(ns: str | None, dev: str, cut: bool = True) -> None:
    """Drop every packet that arrives at dev in ns (nftables' netdev ingress hook), or (cut=False)
    none again. Unlike `set_loss`, whose packets may fail to leave, the sender's kernel sends each
    packet and hears nothing back: a path cut on the wire, or a peer gone without FIN or RST."""
    table = "smt_cut_" + re.sub(r"\W", "_", dev)
    script = f"table netdev {table} {{}}\ndelete table netdev {table}\n"
    if cut:
        script += (
            f"table netdev {table} {{\n"
            f'  chain arrived {{ type filter hook ingress device "{dev}" priority 0; drop; }}\n'
            "}\n"
        )
    run(ns, ["nft", "-f", "-"], input=script)


# ----------------------------------------------------------------------------------------------
# The lab


class Lab(_lab.Lab):
    """smolmesh.lab.Lab for tests: skips unless a lab can run here; loss; logs shown on failure."""

    prefix = PREFIX

    def __enter__(self) -> Lab:
        require_lab()
        super().__enter__()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:  # a failure, a skip, or a Ctrl-C of a test that hung
            self.print_logs()
        self.close()

    def namespace(self, label: str | None = None) -> str:
        """A new namespace with lo up; its name is returned."""
        require_lab()
        return super().namespace(label)

    def set_loss(self, ns: str, dev: str, percent: float) -> None:
        set_loss(ns, dev, percent)

    def cut_arrivals(self, ns: str, dev: str, cut: bool = True) -> None:
        cut_arrivals(ns, dev, cut)


def lab_namespaces() -> list[str]:
    """Names of every namespace this kit made that exists now (any PID)."""
    return _lab.lab_namespaces(PREFIX)


def sweep_stale() -> None:
    """Delete namespaces left by test runs whose process is gone (killed before cleanup)."""
    _lab.sweep_stale(PREFIX)
