"""The tunnels under test, laid over a Lab's veth chain: wireguard-go and smolmesh.

Each setup starts one VPN process per node, waits until the last node answers ping from the first
through the tunnel, and returns the tunnel address of every node and the VPN processes' PIDs. In a
3-node chain the ends have no direct link, so their traffic crosses the middle node (2 hops).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from e2e_lab import NODE_LETTERS, BenchError, Lab, run, veth_address
from e2e_measure import ping_answers, wait_until

WG_PORT = 51820
WG_SOCKET_DIR = Path("/var/run/wireguard")
WG_START_WAIT_S = 10.0
WG_HANDSHAKE_WAIT_S = 15.0
SMOLMESH_PORT = 4201
SMOLMESH_KEY = "benchkey"
SMOLMESH_TUN = "smolmesh1"
LOG_TAIL_LINES = 15


@dataclass
class Tunnel:
    addresses: list[str]  # tunnel address of node i
    pids: list[int]  # the VPN processes, for CPU accounting
    mtu: int | None  # the MTU the first node's tunnel device ended up with


def _deaths(procs: list[subprocess.Popen[bytes]], names: list[str]) -> str | None:
    dead = [
        f"{name} exited ({proc.returncode})"
        for proc, name in zip(procs, names, strict=True)
        if proc.poll() is not None
    ]
    return "; ".join(dead) or None


def _log_tails(logs: list[Path]) -> str:
    parts = []
    for log in logs:
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        parts.append(f"--- {log.name} (last {LOG_TAIL_LINES} lines) ---")
        parts.extend(lines[-LOG_TAIL_LINES:] or ["(empty)"])
    return "\n".join(parts)


def _link_mtu(lab: Lab, node: int, dev: str) -> int | None:
    try:
        return int(json.loads(lab.run(node, ["ip", "-j", "link", "show", dev]))[0]["mtu"])
    except (BenchError, ValueError, LookupError):
        return None


def _neighbours(lab: Lab, node: int) -> list[tuple[int, int]]:
    """(neighbour, veth pair) for the node's left and right neighbours in the chain."""
    found = []
    if node > 0:
        found.append((node - 1, node - 1))
    if node < lab.nodes - 1:
        found.append((node + 1, node))
    return found


def wireguard(lab: Lab, mtu: int, log_dir: Path) -> Tunnel:
    """`wireguard-go` per node on 10.204.0.0/24, peers along the chain; the middle one forwards."""
    addresses = [f"10.204.0.{node + 1}" for node in range(lab.nodes)]
    # wireguard-go's control socket lives in /var/run/wireguard, shared by all namespaces.
    devs = [lab.unique_name(node, "smw") for node in range(lab.nodes)]
    names = [f"wireguard-go {NODE_LETTERS[n]}" for n in range(lab.nodes)]
    logs = [log_dir / f"wireguard-go-{NODE_LETTERS[n]}.log" for n in range(lab.nodes)]
    env = {**os.environ, "WG_PROCESS_FOREGROUND": "1"}
    procs = [
        lab.spawn(node, ["wireguard-go", devs[node]], logs[node], env=env)
        for node in range(lab.nodes)
    ]
    try:
        wait_until(
            "wireguard-go control sockets",
            lambda: all((WG_SOCKET_DIR / f"{dev}.sock").exists() for dev in devs),
            WG_START_WAIT_S,
            lambda: _deaths(procs, names),
        )
        private = [run(["wg", "genkey"]).strip() for _ in range(lab.nodes)]
        public = [run(["wg", "pubkey"], input=key).strip() for key in private]
        for node in range(lab.nodes):
            key_file = log_dir / f"wg-{NODE_LETTERS[node]}.key"
            key_file.touch(mode=0o600)
            key_file.write_text(private[node] + "\n")
            argv = [
                "wg",
                "set",
                devs[node],
                "listen-port",
                str(WG_PORT),
                "private-key",
                str(key_file),
            ]
            for peer, pair in _neighbours(lab, node):
                # Everything on the peer's side of the chain is reached through that peer.
                far_side = range(peer, -1, -1) if peer < node else range(peer, lab.nodes)
                allowed = ",".join(f"{addresses[n]}/32" for n in far_side)
                endpoint = veth_address(pair, 0 if peer < node else 1)
                argv += [
                    "peer",
                    public[peer],
                    "allowed-ips",
                    allowed,
                    "endpoint",
                    f"{endpoint}:{WG_PORT}",
                ]
            lab.run(node, argv)
            lab.run(node, ["ip", "addr", "add", f"{addresses[node]}/24", "dev", devs[node]])
            lab.run(node, ["ip", "link", "set", devs[node], "mtu", str(mtu), "up"])
        for middle in range(1, lab.nodes - 1):
            lab.sysctl(middle, "net.ipv4.ip_forward=1")
            # Forwarded packets leave by the device they came in on; no redirects for that.
            lab.sysctl(middle, "net.ipv4.conf.all.send_redirects=0")
            lab.sysctl(middle, f"net.ipv4.conf.{devs[middle]}.send_redirects=0")
        wait_until(
            f"ping through wireguard-go to {addresses[-1]}",
            lambda: ping_answers(lab, 0, addresses[-1]),
            WG_HANDSHAKE_WAIT_S,
            lambda: _deaths(procs, names),
        )
    except BenchError as exc:
        raise BenchError(f"{exc}\n{_log_tails(logs)}") from exc
    return Tunnel(addresses, [p.pid for p in procs], _link_mtu(lab, 0, devs[0]))


def smolmesh_config(lab: Lab, node: int, mtu: int | None) -> dict[str, object]:
    """Each node listens for its right neighbour and dials its left one, as A and B below do."""
    transports: list[dict[str, object]] = []
    if node < lab.nodes - 1:
        transports.append(
            {"type": "legacy_tcp_listen", "port": SMOLMESH_PORT, "keys": [SMOLMESH_KEY]}
        )
    if node > 0:
        transports.append(
            {
                "type": "legacy_tcp_connect",
                "host": veth_address(node - 1, 0),
                "port": SMOLMESH_PORT,
                "key": SMOLMESH_KEY,
            }
        )
    config: dict[str, object] = {
        "node_name": f"bench-{NODE_LETTERS[node]}",
        "linux_tuntap": True,
        "ipv4_addresses": [f"10.205.0.{node + 1}"],
        "tun_name": SMOLMESH_TUN,
        "transports": transports,
    }
    if mtu is not None:
        config["mtu"] = mtu
    return config


def smolmesh(lab: Lab, mtu: int | None, log_dir: Path, wait_s: float) -> Tunnel:
    """`python -m smolmesh meshnode CONFIG` per node, legacy_tcp links along the veth chain."""
    if importlib.util.find_spec("smolmesh") is None:
        raise BenchError(f"smolmesh is not installed for {sys.executable}: pip install .")
    addresses = [f"10.205.0.{node + 1}" for node in range(lab.nodes)]
    names = [f"smolmesh node {NODE_LETTERS[n]}" for n in range(lab.nodes)]
    logs = [log_dir / f"smolmesh-{NODE_LETTERS[n]}.log" for n in range(lab.nodes)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = []
    for node in range(lab.nodes):
        config_path = log_dir / f"smolmesh-{NODE_LETTERS[node]}.json"
        config_path.write_text(json.dumps(smolmesh_config(lab, node, mtu), indent=2) + "\n")
        argv = [sys.executable, "-m", "smolmesh", "meshnode", str(config_path)]
        # cwd is the log directory so that nothing beside the bench shadows the installed package.
        procs.append(lab.spawn(node, argv, logs[node], env=env, cwd=log_dir))
    try:
        wait_until(
            f"ping through smolmesh to {addresses[-1]}",
            lambda: ping_answers(lab, 0, addresses[-1]),
            wait_s,
            lambda: _deaths(procs, names),
        )
    except BenchError as exc:
        raise BenchError(f"{exc}\n{_log_tails(logs)}") from exc
    return Tunnel(addresses, [p.pid for p in procs], _link_mtu(lab, 0, SMOLMESH_TUN))
