"""`smolmesh demo`: a small mesh on this machine, built, shown, pinged across and taken down.

It makes one network namespace per node, joined in a line (a - b - c) by veth pairs, so a and c
share no link and their traffic has to cross b. In each namespace runs a real node (`smolmesh
meshnode` with a TUN device). Once every node has host routes to every other, it shows those
routes, pings c from a over IPv6 and IPv4, and removes everything again: also on Ctrl-C, SIGTERM,
SIGHUP and errors (the lab holds those signals back while it builds or removes a piece, see
`smolmesh.lab`). With --keep the mesh stays up until Ctrl-C, for the user to try it by hand.

All addresses exist only inside the demo's namespaces: the veth links get 10.201.k.0/30 and
fd00:201:k::/64, the nodes their mesh addresses (fd00:... from the node name) and 10.250.0.i.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from smolmesh import name_to_ipv6
from smolmesh.lab import Lab, LabError, Proc, lab_namespaces, node_config, tcp_connect, tcp_listen

USAGE = "usage: smolmesh demo [--keep] [--nodes N]"
PREFIX = "smd"  # namespaces are smd-<pid of the demo>-<node name>
NODE_NAMES = "abcdefgh"
TUN = "smolmesh1"
PORT = 5000
START_TIMEOUT_S = 15.0  # until a node has its TUN device up and listens
ROUTES_TIMEOUT_S = 30.0  # until every node has host routes to every other
PING_COUNT = 3

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class DemoNode:
    name: str
    ns: str
    ipv6: ipaddress.IPv6Address
    ipv4: ipaddress.IPv4Address
    proc: Proc | None = None


class Stopped(BaseException):
    """SIGTERM or SIGHUP arrived; unwinds like Ctrl-C, so the lab is taken down on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status. argv: the options after `demo`."""
    if argv is None:
        # `smolmesh demo ...` calls this without arguments: the options follow `demo` in sys.argv.
        argv = sys.argv[2:] if sys.argv[1:2] == ["demo"] else []
    try:
        keep, count = _parse_args(list(argv))
    except ValueError as error:
        print(f"smolmesh: {error}; {USAGE}", file=sys.stderr)
        return EXIT_USAGE
    problem = _machine_problem()
    if problem:
        print(f"smolmesh: {problem}", file=sys.stderr)
        return EXIT_FAILURE
    # Ctrl-C raises KeyboardInterrupt even where SIGINT came in ignored (a background job of a
    # script); SIGTERM and SIGHUP raise Stopped. Either way the lab is taken down on the way out.
    old_handlers = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    old_handlers[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="smolmesh-demo-"))
    demo = Demo(count, keep, workdir)
    try:
        status = demo.run()
    finally:
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
    if status == EXIT_FAILURE:
        print(f"The nodes' logs and configs are kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def _parse_args(args: list[str]) -> tuple[bool, int]:
    keep, count = False, 3
    while args:
        arg = args.pop(0)
        if arg == "--keep":
            keep = True
        elif arg == "--nodes" or arg.startswith("--nodes="):
            value = arg.partition("=")[2] if "=" in arg else (args.pop(0) if args else "")
            if not value.isdigit() or not 2 <= int(value) <= len(NODE_NAMES):
                raise ValueError(f"--nodes takes a number from 2 to {len(NODE_NAMES)}")
            count = int(value)
        else:
            raise ValueError(f"unknown option {arg!r}")
    return keep, count


def _machine_problem() -> str:
    if not sys.platform.startswith("linux"):
        return "the demo needs Linux (network namespaces and TUN devices)"
    if os.geteuid() != 0:
        return "the demo needs root for network namespaces and TUN devices: sudo smolmesh demo"
    for command, package in (("ip", "iproute2"), ("ss", "iproute2"), ("ping", "iputils-ping")):
        if shutil.which(command) is None:
            return f"the demo needs the `{command}` command (Debian, Ubuntu: apt install {package})"
    if not os.path.exists("/dev/net/tun"):
        return "the demo needs /dev/net/tun (modprobe tun)"
    return ""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")


def _say(text: str = "") -> None:
    print(text, flush=True)


class Demo:
    """One run: build the lab, start the nodes, wait for routes, show them, ping, take down."""

    def __init__(self, count: int, keep: bool, workdir: Path) -> None:
        self.count = count
        self.keep = keep
        self.lab = Lab(workdir, grace=5.0, prefix=PREFIX)
        self.lab.logs_on_error = False  # a failure shows the log of the node concerned itself
        self.nodes: list[DemoNode] = []
        self.keeping = False  # in --keep's wait, where Ctrl-C is the normal end

    def run(self) -> int:
        names = NODE_NAMES[: self.count]
        first, last = names[0], names[-1]
        relays = " and ".join(names[1:-1]) or "nobody"
        _say(f"smolmesh demo: {self.count} mesh nodes in a line, {' - '.join(names)}.")
        _say("Each node runs in its own network namespace, as if on its own machine. Only")
        _say(f"neighbours share a link, so traffic from {first} to {last} is relayed by {relays}.")
        status = EXIT_FAILURE
        try:
            with self.lab:
                try:
                    status = self._build_and_show()
                except KeyboardInterrupt:
                    status = EXIT_OK if self.keeping else EXIT_INTERRUPTED
                    _say("\nInterrupted (Ctrl-C).")
                except Stopped as stop:
                    status = EXIT_OK if self.keeping else 128 + stop.signum
                    _say(f"\nStopped by {stop}.")
                except LabError as error:
                    _say(f"\nThe demo failed: {error}")
                finally:
                    _say("\nTaking it down: stopping the nodes, deleting the namespaces ...")
        except KeyboardInterrupt:  # a second Ctrl-C, while the first one's messages were printed
            status = EXIT_INTERRUPTED
        except Stopped as stop:
            status = 128 + stop.signum
        except LabError as error:  # no lab can be built here: nothing was made
            print(f"smolmesh: the demo cannot run: {error}", file=sys.stderr)
            return EXIT_FAILURE
        self._report_teardown()
        return status

    # --- The steps ---
    def _build_and_show(self) -> int:
        self._build()
        self._start_nodes()
        seconds = self._wait_for_routes()
        if seconds is None:
            return EXIT_FAILURE
        _say(f"   every node has a route to every other after {seconds:.1f} s.")
        self._show_routes()
        if not self._ping():
            self._show_logs()
            return EXIT_FAILURE
        if self.keep:
            return self._keep_running()
        return EXIT_OK

    def _build(self) -> None:
        _say()
        _say("1. Network namespaces and links (addresses that exist only inside them)")
        for i, name in enumerate(NODE_NAMES[: self.count]):
            ns = self.lab.namespace(name)
            ipv6 = ipaddress.IPv6Address(name_to_ipv6(name))
            ipv4 = ipaddress.IPv4Address(f"10.250.0.{i + 1}")
            self.nodes.append(DemoNode(name, ns, ipv6, ipv4))
            _say(f"   namespace {ns:<16} for node {name}")
        for left, right in zip(self.nodes, self.nodes[1:], strict=False):
            veth = self.lab.link(left.ns, right.ns)
            _say(
                f"   link {left.name} - {right.name}: veth {veth.dev_a} {veth.ipv4_a}/30"
                f" <-> {veth.dev_b} {veth.ipv4_b}/30"
            )

    def _start_nodes(self) -> None:
        _say()
        _say(f"2. Nodes: `smolmesh meshnode` in each namespace, with a TUN device {TUN}")
        for i, node in enumerate(self.nodes):
            transports, roles = [], []
            if i > 0:
                left = self.lab.links[i - 1]
                key = f"demo key {self.nodes[i - 1].name}-{node.name}"
                transports.append(tcp_connect(left.ipv4_a, PORT, key, "secure_tcp"))
                roles.append(f"dials {self.nodes[i - 1].name} at {left.ipv4_a}:{PORT}")
            if i < len(self.nodes) - 1:
                key = f"demo key {node.name}-{self.nodes[i + 1].name}"
                transports.append(tcp_listen(PORT, [key], "secure_tcp"))
                roles.append(f"listens on TCP {PORT} (secure_tcp)")
            config = node_config(node.name, transports, ipv4_addresses=[str(node.ipv4)])
            node.proc = self.lab.start_node(node.ns, config, verbose=False)
            _say(f"   node {node.name}  pid {node.proc.pid:<7} {node.ipv6}  {node.ipv4}")
            _say(f"          {', '.join(roles)}")
            # The next node dials this one: a dial before the listener is up would wait for the
            # node's redial (5-10 s), so each node starts once the one before it listens.
            self._wait_ready(node, listens=i < len(self.nodes) - 1)
        _say(f"   all {len(self.nodes)} nodes are up.")

    def _wait_ready(self, node: DemoNode, listens: bool) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self._tun_up(node) and (not listens or self._listening(node))):
            self._check_alive()
            if time.monotonic() > deadline:
                raise LabError(f"node {node.name} did not come up in {START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)

    def _wait_for_routes(self) -> float | None:
        _say()
        _say(f"3. Waiting (at most {ROUTES_TIMEOUT_S:.0f} s) for the nodes to find each other ...")
        started = time.monotonic()
        while True:
            self._check_alive()
            missing = [(n, m) for n in self.nodes for m in self._missing_routes(n)]
            if not missing:
                return time.monotonic() - started
            if time.monotonic() - started > ROUTES_TIMEOUT_S:
                node, address = missing[0]
                _say(f"   node {node.name} still has no route to {address}: giving up.")
                self._show_logs()
                return None
            time.sleep(0.2)

    def _show_routes(self) -> None:
        _say()
        _say(f"4. Routes: each node put a host route on its {TUN} per address it learnt")
        _say(f"   (what `ip route show dev {TUN}` and `ip -6 route ...` print in its namespace)")
        for node in self.nodes:
            _say(f"   node {node.name}, namespace {node.ns}:")
            for family in ("-4", "-6"):
                out = self.lab.run(node.ns, ["ip", family, "route", "show", "dev", TUN]).stdout
                for line in out.splitlines():
                    destination, _, rest = line.strip().partition(" ")
                    owner = self._owner(destination)
                    owner += " (itself)" if owner == f"node {node.name}" else ""
                    _say(f"     {destination:<40} {owner:<16} {rest}")

    def _ping(self) -> bool:
        first, last = self.nodes[0], self.nodes[-1]
        between = ", ".join(n.name for n in self.nodes[1:-1])
        across = f" across {between}" if between else ""
        _say()
        route = f"{first.name} -> {last.name}{across}"
        _say(f"5. Ping {route}: {PING_COUNT} times over IPv6, then over IPv4")
        ok = True
        for label, address in (("IPv6", last.ipv6), ("IPv4", last.ipv4)):
            result = self.lab.ping(first.ns, str(address), count=PING_COUNT, timeout=10)
            if result.ok and result.rtt_ms is not None:
                verdict = f"ok, {result.received}/{result.sent} replies, avg {result.rtt_ms:.3f} ms"
            else:
                verdict = f"FAILED, {result.received}/{result.sent} replies"
                ok = False
            _say(f"   {label}  {first.name} -> {last.name}  {address!s:<40} {verdict}")
        return ok

    def _keep_running(self) -> int:
        first, last = self.nodes[0], self.nodes[-1]
        _say()
        _say("The mesh stays up until you press Ctrl-C. In another terminal, try:")
        _say(f"   sudo ip netns exec {first.ns} ping {last.ipv6}")
        _say(f"   sudo ip netns exec {first.ns} ping {last.ipv4}")
        _say(f"   sudo ip netns exec {last.ns} ip -6 route show dev {TUN}")
        _say(f"   sudo ip netns exec {first.ns} bash     # a shell inside node {first.name}")
        _say(f"   the nodes' logs: {self.lab.workdir}/<node>.log")
        self.keeping = True
        while True:
            self._check_alive()
            time.sleep(0.5)

    def _report_teardown(self) -> None:
        left_ns = [ns for ns in lab_namespaces(PREFIX) if ns.startswith(f"{PREFIX}-{os.getpid()}-")]
        running = [n.name for n in self.nodes if n.proc is not None and n.proc.alive]
        if left_ns or running:
            _say(f"Left behind: namespaces {left_ns}, nodes {running}.")
        else:
            stopped = sum(n.proc is not None for n in self.nodes)
            _say(
                f"Done: {_count(stopped, 'node')} stopped, {_count(len(self.nodes), 'namespace')}"
                " deleted."
            )

    # --- Looking into the namespaces ---
    def _check_alive(self) -> None:
        for node in self.nodes:
            if node.proc is not None and not node.proc.alive:
                raise LabError(
                    f"node {node.name} exited with status {node.proc.returncode}; its log ends:\n"
                    + node.proc.log_tail()
                )

    def _tun_up(self, node: DemoNode) -> bool:
        done = self.lab.run(node.ns, ["ip", "-o", "link", "show", "dev", TUN], check=False)
        return done.returncode == 0 and ",UP" in done.stdout

    def _listening(self, node: DemoNode) -> bool:
        argv = ["ss", "-Hltn", f"sport = :{PORT}"]
        return bool(self.lab.run(node.ns, argv, check=False).stdout.strip())

    def _missing_routes(self, node: DemoNode) -> list[str]:
        found = set()
        for family in ("-4", "-6"):
            done = self.lab.run(node.ns, ["ip", family, "route", "show", "dev", TUN], check=False)
            found |= {line.split()[0].split("/")[0] for line in done.stdout.splitlines()}
        wanted = [str(a) for n in self.nodes if n is not node for a in (n.ipv6, n.ipv4)]
        return [a for a in wanted if a not in found]

    def _owner(self, destination: str) -> str:
        try:
            address = ipaddress.ip_address(destination.split("/")[0])
        except ValueError:
            return ""
        for node in self.nodes:
            if address in (node.ipv6, node.ipv4):
                return f"node {node.name}"
        return ""

    def _show_logs(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                _say(f"   --- last lines of node {node.name}'s log ({node.proc.log_path}):")
                for line in node.proc.log_tail(10).splitlines():
                    _say(f"   {line}")
