"""The tunnels under test, laid over a Chain of veth-linked namespaces: wireguard-go, smolmesh and,
when the bench is given a binary of it, the reference smolmesh2.

Each setup starts one VPN process per node, waits until the last node answers ping from the first
through the tunnel, and returns the tunnel address of every node and the VPN processes' PIDs. In a
3-node chain the ends have no direct link, so their traffic crosses the middle node (2 hops).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from e2e_lab import NODE_LETTERS, BenchError, Chain, run
from e2e_measure import ping_answers, wait_until

from smolmesh.lab import Proc, node_config, tcp_connect, tcp_listen

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


def _deaths(procs: list[Proc], names: list[str]) -> str | None:
    dead = [
        f"{name} exited ({proc.returncode})"
        for proc, name in zip(procs, names, strict=True)
        if not proc.alive
    ]
    return "; ".join(dead) or None


def _log_tails(procs: list[Proc]) -> str:
    parts = []
    for proc in procs:
        parts.append(f"--- {proc.log_path.name} (last {LOG_TAIL_LINES} lines) ---")
        parts.append(proc.log_tail(LOG_TAIL_LINES) or "(empty)")
    return "\n".join(parts)


def _link_mtu(chain: Chain, node: int, dev: str) -> int | None:
    try:
        return int(json.loads(chain.run(node, ["ip", "-j", "link", "show", dev]))[0]["mtu"])
    except (BenchError, ValueError, LookupError):
        return None


def _neighbours(chain: Chain, node: int) -> list[tuple[int, int]]:
    """(neighbour, veth pair) for the node's left and right neighbours in the chain."""
    found = []
    if node > 0:
        found.append((node - 1, node - 1))
    if node < chain.nodes - 1:
        found.append((node + 1, node))
    return found


def wireguard(chain: Chain, mtu: int) -> Tunnel:
    """`wireguard-go` per node on 10.204.0.0/24, peers along the chain; the middle one forwards."""
    addresses = [f"10.204.0.{node + 1}" for node in range(chain.nodes)]
    # wireguard-go's control socket lives in /var/run/wireguard, shared by all namespaces.
    devs = [chain.unique_name(node, "smw") for node in range(chain.nodes)]
    names = [f"wireguard-go {NODE_LETTERS[n]}" for n in range(chain.nodes)]
    env = {**os.environ, "WG_PROCESS_FOREGROUND": "1"}
    procs = [
        chain.spawn(
            node, ["wireguard-go", devs[node]], f"wireguard-go-{NODE_LETTERS[node]}.log", env
        )
        for node in range(chain.nodes)
    ]
    try:
        wait_until(
            "wireguard-go control sockets",
            lambda: all((WG_SOCKET_DIR / f"{dev}.sock").exists() for dev in devs),
            WG_START_WAIT_S,
            lambda: _deaths(procs, names),
        )
        private = [run(None, ["wg", "genkey"]).strip() for _ in range(chain.nodes)]
        public = [run(None, ["wg", "pubkey"], input=key).strip() for key in private]
        for node in range(chain.nodes):
            key_file = chain.log_dir / f"wg-{NODE_LETTERS[node]}.key"
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
            for peer, pair in _neighbours(chain, node):
                # Everything on the peer's side of the chain is reached through that peer.
                far_side = range(peer, -1, -1) if peer < node else range(peer, chain.nodes)
                allowed = ",".join(f"{addresses[n]}/32" for n in far_side)
                endpoint = chain.veth_address(pair, 0 if peer < node else 1)
                argv += [
                    "peer",
                    public[peer],
                    "allowed-ips",
                    allowed,
                    "endpoint",
                    f"{endpoint}:{WG_PORT}",
                ]
            chain.run(node, argv)
            chain.run(node, ["ip", "addr", "add", f"{addresses[node]}/24", "dev", devs[node]])
            chain.run(node, ["ip", "link", "set", devs[node], "mtu", str(mtu), "up"])
        for middle in range(1, chain.nodes - 1):
            chain.sysctl(middle, "net.ipv4.ip_forward=1")
            # Forwarded packets leave by the device they came in on; no redirects for that.
            chain.sysctl(middle, "net.ipv4.conf.all.send_redirects=0")
            chain.sysctl(middle, f"net.ipv4.conf.{devs[middle]}.send_redirects=0")
        wait_until(
            f"ping through wireguard-go to {addresses[-1]}",
            lambda: ping_answers(chain, 0, addresses[-1]),
            WG_HANDSHAKE_WAIT_S,
            lambda: _deaths(procs, names),
        )
    except BenchError as exc:
        raise BenchError(f"{exc}\n{_log_tails(procs)}") from exc
    return Tunnel(addresses, [p.pid for p in procs], _link_mtu(chain, 0, devs[0]))


def smolmesh_config(
    chain: Chain, node: int, mtu: int | None, kind: str = "legacy_tcp"
) -> dict[str, object]:
    """Each node listens for its right neighbour and dials its left one, as A and B below do,
    over links of `kind` ("legacy_tcp", which smolmesh2 speaks too, or "secure_tcp")."""
    transports = []
    if node < chain.nodes - 1:
        transports.append(tcp_listen(SMOLMESH_PORT, [SMOLMESH_KEY], kind))
    if node > 0:
        left = chain.veth_address(node - 1, 0)
        transports.append(tcp_connect(left, SMOLMESH_PORT, SMOLMESH_KEY, kind))
    config = node_config(
        f"bench-{NODE_LETTERS[node]}",
        transports,
        ipv4_addresses=[f"10.205.0.{node + 1}"],
        tun_name=SMOLMESH_TUN,
    )
    if mtu is None:
        del config["mtu"]  # smolmesh picks its own
    else:
        config["mtu"] = mtu
    return config


def smolmesh(chain: Chain, mtu: int | None, wait_s: float, kind: str = "secure_tcp") -> Tunnel:
    """`python -m smolmesh meshnode CONFIG` per node, links of `kind` along the veth chain."""
    addresses = [f"10.205.0.{node + 1}" for node in range(chain.nodes)]
    names = [f"smolmesh node {NODE_LETTERS[n]}" for n in range(chain.nodes)]
    # cwd is the log directory so that nothing beside the bench shadows the installed package.
    procs = [
        chain.lab.start_node(
            chain.ns(node),
            smolmesh_config(chain, node, mtu, kind),
            verbose=False,
            cwd=chain.log_dir,
        )
        for node in range(chain.nodes)
    ]
    return _answering(chain, "smolmesh", addresses, procs, names, wait_s)


def smolmesh2(chain: Chain, binary: str, wait_s: float) -> Tunnel:
    """`SMOLMESH2 meshnode CONFIG` per node: the reference implementation, with smolmesh's configs.

    smolmesh2 reads the same file (it ignores the fields it does not know, such as `mtu`) and
    keeps its device at the kernel's default MTU, 1500. It learns routes only from announcements
    every 5-10 s, so the first ping may wait that long."""
    addresses = [f"10.205.0.{node + 1}" for node in range(chain.nodes)]
    names = [f"smolmesh2 node {NODE_LETTERS[n]}" for n in range(chain.nodes)]
    procs = []
    for node in range(chain.nodes):
        config = smolmesh_config(chain, node, None)
        path = chain.lab.write_config(config)
        procs.append(
            chain.spawn(node, [binary, "meshnode", str(path)], f"{config['node_name']}.log")
        )
    return _answering(chain, "smolmesh2", addresses, procs, names, wait_s)


def _answering(
    chain: Chain, vpn: str, addresses: list[str], procs: list[Proc], names: list[str], wait_s: float
) -> Tunnel:
    """The Tunnel of a smolmesh or smolmesh2 chain once its last node answers ping from the first
    (both keep their device as smolmesh1); BenchError with the logs' tails if it does not."""
    try:
        wait_until(
            f"ping through {vpn} to {addresses[-1]}",
            lambda: ping_answers(chain, 0, addresses[-1]),
            wait_s,
            lambda: _deaths(procs, names),
        )
    except BenchError as exc:
        raise BenchError(f"{exc}\n{_log_tails(procs)}") from exc
    return Tunnel(addresses, [p.pid for p in procs], _link_mtu(chain, 0, SMOLMESH_TUN))
