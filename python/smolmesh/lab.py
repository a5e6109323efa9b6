"""A lab of network namespaces on this machine: namespaces, veth links, processes, ping.

`smolmesh demo` builds its mesh with it and the end-to-end tests build theirs (tests/netns.py adds
the pytest parts), so both share one way to make and, above all, to undo these things:

    with Lab(prefix="smd") as lab:
        a, b = lab.namespace("a"), lab.namespace("b")
        link = lab.link(a, b)                   # veth: 10.201.k.1/30 in a, 10.201.k.2/30 in b
        lab.start_node(a, node_config("a", [tcp_listen(5000, ["k"])]))
        lab.start_node(b, node_config("b", [tcp_connect(link.ipv4_a, 5000, "k")]))
        print(lab.ping(a, "fd00:...", count=3, timeout=10))

Everything a lab makes is undone when the `with` block ends, also when the body raised or a
signal stopped it: processes get SIGTERM, then SIGKILL after a grace period, and the namespaces
(with their veth ends) are deleted. SIGINT, SIGTERM and SIGHUP are held back while a process or
namespace is being made or the lab is being taken down, so a Ctrl-C cannot leave something
unrecorded or half removed; they take effect right after. Names carry the owning process's PID
(`<prefix>-<pid>-<label>`), so concurrent labs do not collide, and namespaces of a lab whose
process was killed outright are swept, with whatever still runs in them, by the next lab of the
same prefix.

The lab uses the `ip` command (iproute2) to build namespaces and links; the node itself does not.
Addresses exist only inside the lab's namespaces: 10.201.<k>.1-2/30 and fd00:201:<k>::1-2/64 for
the k-th veth link.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smolmesh.errors import LocalError

__all__ = [
    "Lab",
    "LabError",
    "PingResult",
    "Proc",
    "Veth",
    "delete_namespace",
    "lab_namespaces",
    "lab_problem",
    "node_config",
    "ns_argv",
    "ping",
    "run",
    "spawn",
    "sweep_stale",
    "tcp_connect",
    "tcp_listen",
    "wait_until",
]

_names = itertools.count(1)  # labels of unnamed namespaces, unique within this process
HELD_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
COMMAND_TIMEOUT_S = 30.0


class LabError(LocalError, RuntimeError):
    """A lab cannot be built here, or one of its `ip` commands failed. str() says why."""


# ----------------------------------------------------------------------------------------------
# Availability


_problem: str | None = None  # "" when a lab can be built here, else why not


def lab_problem() -> str:
    """Empty when this process can make namespaces (Linux, root, `ip netns`), else one line why."""
    global _problem
    if _problem is None:
        _problem = _probe()
    return _problem


def _probe() -> str:
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command is missing (Debian and Ubuntu: apt-get install iproute2)"
    probe = f"smlab-{os.getpid()}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    return ""


# ----------------------------------------------------------------------------------------------
# Signals held back


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back for the block; they are delivered when it ends."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _release_signals() -> None:
    # A child inherits the signal mask: one started while signals are held must not keep them.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)


# ----------------------------------------------------------------------------------------------
# Commands and processes inside a namespace


def ns_argv(ns: str | None, argv: Sequence[str]) -> list[str]:
    """argv run inside namespace ns (None: the host). `ip netns exec` execs, so PIDs are exact."""
    return [*argv] if ns is None else ["ip", "netns", "exec", ns, *argv]


def run(
    ns: str | None,
    argv: Sequence[str],
    *,
    timeout: float = COMMAND_TIMEOUT_S,
    check: bool = True,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv in ns to the end (killed after timeout); check=True raises LabError on failure."""
    done = subprocess.run(
        ns_argv(ns, argv), capture_output=True, text=True, timeout=timeout, env=env, input=input
    )
    if check and done.returncode != 0:
        raise LabError(
            f"{' '.join(argv)} in {ns or 'host'} exited {done.returncode}:\n"
            f"{done.stdout}{done.stderr}"
        )
    return done


class Proc:
    """A process started in a namespace, its output going to a log file."""

    def __init__(self, popen: subprocess.Popen[bytes], argv: Sequence[str], log_path: Path):
        self.popen = popen
        self.pid = popen.pid
        self.argv = list(argv)
        self.log_path = log_path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait(self, timeout: float = 10) -> int:
        """The exit code; raises subprocess.TimeoutExpired if it runs on."""
        return self.popen.wait(timeout)

    def signal(self, sig: int) -> None:
        # The process leads its own session (start_new_session), so its group holds only it and
        # whatever it started: signal them all, by that group's id.
        if self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def terminate(self, grace: float = 5) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.popen.poll()

    def wait_for_log(self, pattern: str, timeout: float = 10) -> re.Match[str] | None:
        """The first match of regex `pattern` in the log; polls until timeout or the exit."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            ended = not self.alive
            found = regex.search(self.log())
            if found or ended or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def __repr__(self) -> str:
        return f"<Proc {self.pid} {' '.join(self.argv)!r} rc={self.returncode}>"


def spawn(
    ns: str | None,
    argv: Sequence[str],
    log_path: Path | str,
    env: dict[str, str] | None = None,
    *,
    cwd: Path | str | None = None,
) -> Proc:
    """Start argv in ns (in cwd) with stdout and stderr going to log_path; it runs until stopped."""
    log_path = Path(log_path)
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            ns_argv(ns, argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,  # Ctrl-C in the terminal reaches the lab, which stops it
            preexec_fn=_release_signals,
        )
    return Proc(popen, argv, log_path)


# ----------------------------------------------------------------------------------------------
# Reachability


@dataclass(frozen=True)
class PingResult:
    wanted: int  # replies asked for
    sent: int
    received: int
    rtt_ms: float | None  # average round trip of the replies, None when none came

    @property
    def ok(self) -> bool:
        return self.received >= self.wanted


def ping(
    ns: str, addr: str, count: int = 1, timeout: float = 2.0, interval: float = 0.2
) -> PingResult:
    """Ping from ns until `count` replies came (ok) or `timeout` seconds passed."""
    deadline = max(1, math.ceil(timeout))
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-w", str(deadline), addr]
    out = run(ns, argv, check=False, timeout=deadline + 10).stdout
    counts = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", out)
    rtt = re.search(r"= [\d.]+/([\d.]+)/", out)
    sent, received = (int(counts[1]), int(counts[2])) if counts else (0, 0)
    return PingResult(count, sent, received, float(rtt[1]) if rtt else None)


def wait_until(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.1) -> Any:
    """Poll predicate until it returns something true (which is returned) or timeout (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value or None
        time.sleep(interval)


# ----------------------------------------------------------------------------------------------
# smolmesh configs


def tcp_connect(host: str, port: int, key: str, kind: str = "legacy_tcp") -> dict[str, Any]:
    """A transport that dials `host:port`; `kind` "legacy_tcp" or "secure_tcp"."""
    return {"type": f"{kind}_connect", "host": host, "port": port, "key": key}


def tcp_listen(port: int, keys: Iterable[str], kind: str = "legacy_tcp") -> dict[str, Any]:
    """A transport that listens on `port`; `kind` "legacy_tcp" or "secure_tcp"."""
    return {"type": f"{kind}_listen", "port": port, "keys": list(keys)}


def node_config(
    node_name: str,
    transports: Iterable[dict[str, Any]] = (),
    *,
    ipv4_addresses: Iterable[str] = (),
    tun_name: str = "smolmesh1",
    mtu: int = 1400,
    linux_tuntap: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """A meshnode config as a dict; extra fields pass through unchanged."""
    return {
        "node_name": node_name,
        "linux_tuntap": linux_tuntap,
        "ipv4_addresses": list(ipv4_addresses),
        "transports": list(transports),
        "tun_name": tun_name,
        "mtu": mtu,
        **extra,
    }


# ----------------------------------------------------------------------------------------------
# The lab


@dataclass(frozen=True)
class Veth:
    """One veth pair: dev_a in ns_a, dev_b in ns_b, each end with an IPv4 /30 and IPv6 /64."""

    ns_a: str
    dev_a: str
    ns_b: str
    dev_b: str
    ipv4_a: str
    ipv4_b: str
    ipv6_a: str
    ipv6_b: str


class Lab:
    """Namespaces, links and processes that are all removed on close (or leaving `with`)."""

    prefix = "smlab"  # namespace names are <prefix>-<pid>-<label>
    logs_on_error = True  # print the tail of every process's log when the `with` body raised

    def __init__(
        self, workdir: Path | str | None = None, grace: float = 5.0, *, prefix: str | None = None
    ) -> None:
        self.grace = grace  # seconds between SIGTERM and SIGKILL on close
        if prefix is not None:
            self.prefix = prefix
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="smt-lab-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.namespaces: list[str] = []
        self.procs: list[Proc] = []
        self.links: list[Veth] = []

    def __enter__(self) -> Lab:
        problem = lab_problem()
        if problem:
            raise LabError(problem)
        sweep_stale(self.prefix)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.logs_on_error and isinstance(exc, Exception):
            self.print_logs()
        self.close()

    def namespace(self, label: str | None = None) -> str:
        """A new namespace with lo up; its name, <prefix>-<pid>-<label>, is returned."""
        name = f"{self.prefix}-{os.getpid()}-{label or next(_names)}"
        with held_signals():
            run(None, ["ip", "netns", "add", name])
            self.namespaces.append(name)
        run(name, ["ip", "link", "set", "lo", "up"])
        return name

    def link(self, ns_a: str, ns_b: str, mtu: int | None = None) -> Veth:
        """A veth pair between two namespaces, addressed and up."""
        k = len(self.links) + 1
        if k > 255:
            raise LabError("a lab has at most 255 links")
        veth = Veth(ns_a, f"v{k}a", ns_b, f"v{k}b", f"10.201.{k}.1", f"10.201.{k}.2",
                    f"fd00:201:{k}::1", f"fd00:201:{k}::2")  # fmt: skip
        add = ["ip", "link", "add", veth.dev_a, "netns", ns_a, "type", "veth"]
        run(None, [*add, "peer", "name", veth.dev_b, "netns", ns_b])
        self.links.append(veth)
        ends = (
            (ns_a, veth.dev_a, veth.ipv4_a, veth.ipv6_a),
            (ns_b, veth.dev_b, veth.ipv4_b, veth.ipv6_b),
        )
        for ns, dev, v4, v6 in ends:
            run(ns, ["ip", "addr", "add", f"{v4}/30", "dev", dev])
            run(ns, ["ip", "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad"])
            if mtu is not None:
                run(ns, ["ip", "link", "set", dev, "mtu", str(mtu)])
            run(ns, ["ip", "link", "set", dev, "up"])
        return veth

    def run(
        self, ns: str | None, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return run(ns, argv, **kwargs)

    def spawn(
        self,
        ns: str | None,
        argv: Sequence[str],
        log_name: str,
        env: dict[str, str] | None = None,
        *,
        cwd: Path | str | None = None,
    ) -> Proc:
        """Start argv in ns, logging to <workdir>/<log_name>; stopped when the lab closes."""
        with held_signals():
            proc = spawn(ns, argv, self.workdir / log_name, env, cwd=cwd)
            self.procs.append(proc)
        return proc

    def ping(
        self, ns: str, addr: str, count: int = 1, timeout: float = 2.0, interval: float = 0.2
    ) -> PingResult:
        return ping(ns, addr, count, timeout, interval)

    def addresses(self, ns: str, dev: str = "smolmesh1") -> list[str]:
        """Global addresses on dev in ns (to ping a node by what it put on its TUN)."""
        out = run(ns, ["ip", "-o", "addr", "show", "dev", dev, "scope", "global"]).stdout
        return [line.split()[3].split("/")[0] for line in out.splitlines()]

    node_config = staticmethod(node_config)

    def write_config(self, config: dict[str, Any], name: str | None = None) -> Path:
        path = self.workdir / f"{name or config['node_name']}.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start_node(
        self,
        ns: str,
        config: dict[str, Any],
        env: dict[str, str] | None = None,
        *,
        verbose: bool = True,
        cwd: Path | str | None = None,
    ) -> Proc:
        """Write config, run `python -m smolmesh meshnode CONFIG [-v]` in ns, logging to a file.

        `python -m` looks in its working directory first: a cwd without a `smolmesh` directory
        makes sure the installed package runs."""
        path = self.write_config(config)
        argv = [sys.executable, "-m", "smolmesh", "meshnode", str(path), *(["-v"] * verbose)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        return self.spawn(ns, argv, f"{config['node_name']}.log", env, cwd=cwd)

    def print_logs(self, lines: int = 40) -> None:
        for proc in self.procs:
            print(
                f"--- {proc.log_path} ({proc!r}), last {lines} lines:\n{proc.log_tail(lines)}",
                file=sys.stderr,
            )

    def close(self) -> None:
        """Stop every process (SIGTERM, SIGKILL after the grace) and delete every namespace."""
        with held_signals():
            for proc in self.procs:
                proc.signal(signal.SIGTERM)
            deadline = time.monotonic() + self.grace
            for proc in self.procs:
                try:
                    proc.popen.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
            for ns in reversed(self.namespaces):
                delete_namespace(ns)
            self.namespaces.clear()


def delete_namespace(ns: str) -> None:
    """Delete ns; its veth ends go with it. Never raises."""
    with contextlib.suppress(Exception):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def lab_namespaces(prefix: str) -> list[str]:
    """Names of every namespace of labs with this prefix that exists now (any PID)."""
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    names = (line.split()[0] for line in done.stdout.splitlines() if line.strip())
    return [n for n in names if re.fullmatch(rf"{re.escape(prefix)}-\d+-\w+", n)]


def sweep_stale(prefix: str) -> None:
    """Delete namespaces of labs whose process is gone (killed before cleanup), and SIGKILL the
    processes still running in them, found by PID with `ip netns pids`."""
    for ns in lab_namespaces(prefix):
        pid = int(ns.split("-")[-2])
        if pid == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        with contextlib.suppress(Exception):
            pids = run(None, ["ip", "netns", "pids", ns], check=False, timeout=10).stdout.split()
            for orphan in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(orphan), signal.SIGKILL)
        delete_namespace(ns)
