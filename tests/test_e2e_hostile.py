"""A listening node N against misbehaving peers: a wrong key, garbage, a forged frame, truncated
streams, odd but well-formed packets, and 300 idle connections on its legacy_tcp port; a wrong key,
garbage, a forged frame and a replayed handshake on its secure_tcp port. N must keep serving a good
peer, log each bad connection once, keep its memory bounded and close the idle connections. A
member that announces hundreds of names as long as a packet leaves N's memory and log bounded."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import sys
import time
from pathlib import Path
from typing import Any

from netns import Lab, tcp_connect, tcp_listen, wait_until
from smolmesh import _core, control
from smolmesh.links.secure_tcp import secure_psk
from test_e2e_kit import (
    KEY,
    PORT,
    log_lines,
    log_time,
    node_address,
    rss_kib,
    smolmesh_command,
    start_node,
    wait_route,
    wait_up,
)

IDLE_CONNECTIONS = 300
SECURE_PORT = PORT + 1  # N's secure_tcp port, beside its legacy_tcp one
HANDSHAKE_TIMEOUT_S = 10.0  # smolmesh.tuning.HANDSHAKE_TIMEOUT_S, as a user sees it
REFUSALS_LOGGED_PER_PERIOD = 20  # smolmesh.tuning: refused connections logged one line each
# The node under attack and the good peer; their status sockets are /run/smolmesh/<name>.sock in
# one directory for every namespace, so the names carry the PID of the pytest run.
NAME_N, NAME_G = (f"hostile-{role}-{os.getpid()}" for role in "ng")


# ----------------------------------------------------------------------------------------------
# The hostile peer: runs as its own process in its own namespace (see `attack`), and reports each
# case as one JSON line on stdout.


def report(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def closed_within(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the node closed the connection (EOF or RST), None if it stayed open."""
    start = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return None
    return time.monotonic() - start


def handshake(host: str, psk: bytes) -> tuple[socket.socket, _core.Sealer]:
    """A connection that did the legacy_tcp handshake right; returns it with our Sealer."""
    sock = socket.create_connection((host, PORT), timeout=10)
    iv = os.urandom(_core.IV_LEN)
    sock.sendall(_core.make_hello(psk, iv))
    hello = b""
    while len(hello) < _core.HELLO_LEN:
        chunk = sock.recv(_core.HELLO_LEN - len(hello))
        assert chunk, "the node closed a correct handshake"
        hello += chunk
    assert _core.find_psk(hello, [psk]) == 0, "the node's hello does not match our key"
    return sock, _core.Sealer(psk, iv)


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "the node closed a correct handshake"
        data += chunk
    return data


def secure_handshake(host: str, psk: bytes) -> tuple[socket.socket, _core.SecureSealer]:
    """A connection that did the secure_tcp handshake right, frame 0 sent; returns our sealer."""
    sock = socket.create_connection((host, SECURE_PORT), timeout=10)
    initiator = _core.SecureInitiator(psk)
    sock.sendall(initiator.message())
    keys = initiator.finish(recv_exactly(sock, _core.SECURE_MESSAGE_LEN))
    assert keys is not None, "the node's message 2 does not match our key"
    sealer, _ = keys
    sock.sendall(sealer.seal(b""))
    return sock, sealer


def attack(host: str, key: str) -> None:
    psk = key.encode()
    now = int(time.time() * 1000)

    def one_shot(case: str, sock: socket.socket, wire: bytes, eof: bool = False) -> None:
        sock.sendall(wire)
        if eof:
            sock.shutdown(socket.SHUT_WR)
        report(case=case, port=sock.getsockname()[1], closed_after=closed_within(sock, 5))
        sock.close()

    wrong = _core.make_hello(b"not the mesh key", os.urandom(_core.IV_LEN))
    one_shot("wrong key", socket.create_connection((host, PORT), timeout=10), wrong)
    garbage = os.urandom(4096)
    one_shot("garbage", socket.create_connection((host, PORT), timeout=10), garbage)
    sock, sealer = handshake(host, psk)
    forged = bytearray(sealer.seal(_core.make_packet(now, _core.CMD_NAME, b"forger")))
    forged[-1] ^= 1  # a bit of the MAC
    one_shot("bad MAC", sock, bytes(forged))
    half_hello = _core.make_hello(psk, os.urandom(_core.IV_LEN))[:20]
    sock = socket.create_connection((host, PORT), timeout=10)
    one_shot("truncated hello", sock, half_hello, eof=True)
    sock, sealer = handshake(host, psk)
    frame = sealer.seal(_core.make_packet(now, _core.CMD_NAME, b"truncated-peer"))
    one_shot("truncated frame", sock, frame[: len(frame) // 2], eof=True)

    # secure_tcp: the same breakers, and a recorded message 1 replayed (answered, then nothing:
    # the replayer cannot make the connector's frame 0 without its ephemeral key).
    def secure_connection() -> socket.socket:
        return socket.create_connection((host, SECURE_PORT), timeout=10)

    wrong = _core.SecureInitiator(secure_psk("not the mesh key")).message()
    one_shot("secure wrong key", secure_connection(), wrong)
    one_shot("secure garbage", secure_connection(), os.urandom(4096))
    sock, secure_sealer = secure_handshake(host, secure_psk(key))
    forged = bytearray(secure_sealer.seal(_core.make_packet(now, _core.CMD_NAME, b"forger")))
    forged[-1] ^= 1  # a bit of the tag
    one_shot("secure bad tag", sock, bytes(forged))
    replayer = secure_connection()
    replayer.sendall(_core.SecureInitiator(secure_psk(key)).message())
    answer = recv_exactly(replayer, _core.SECURE_MESSAGE_LEN)
    report(case="secure replay", port=replayer.getsockname()[1], answered=len(answer),
           closed_after=closed_within(replayer, HANDSHAKE_TIMEOUT_S + 5))  # fmt: skip
    replayer.close()

    # Odd but well-formed: sealed right, so the link must stay up and go on working.
    odd, sealer = handshake(host, psk)
    packets = [
        _core.make_packet(now, 9, b"an unknown command"),
        _core.make_packet(now, _core.CMD_NAME, b"\xff\xfe not UTF-8"),
        _core.make_packet(now, _core.CMD_IPV4, b"\x0a\xfa\x00"),  # 3 bytes, not 4
        _core.make_packet(now, _core.CMD_IPV6, bytes(15)),  # 15 bytes, not 16
        _core.make_packet(now - 10 * 60_000, _core.CMD_NAME, b"stale-peer"),
        _core.make_packet(now + 10 * 60_000, _core.CMD_NAME, b"future-peer"),
        _core.make_packet(now, _core.CMD_DATA, b"\x00" * 40),  # no IP packet
        b"",  # a zero-length frame
        b"\x01" * 8,  # shorter than a header
    ]
    odd.sendall(sealer.seal_batch(packets))
    time.sleep(0.5)
    fine = _core.make_packet(int(time.time() * 1000), _core.CMD_NAME, b"odd-peer")
    odd.sendall(sealer.seal(fine))
    report(case="odd packets", port=odd.getsockname()[1], closed_after=closed_within(odd, 2))

    # Idle connections: opened and never written to.
    selector = selectors.DefaultSelector()
    idle = []
    opened_at = time.time()
    for _ in range(IDLE_CONNECTIONS):
        sock = socket.create_connection((host, PORT), timeout=10)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, time.monotonic())
        idle.append(sock)
    report(case="idle open", ports=[s.getsockname()[1] for s in idle], at=opened_at)
    lasted: list[float] = []  # seconds from each connection's opening to the node closing it
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S + 15
    while len(lasted) < len(idle) and time.monotonic() < deadline:
        for ready, _ in selector.select(timeout=0.5):
            sock = ready.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(1)
            except ConnectionResetError:
                data = b""
            assert not data, "the node sent bytes on a connection that sent none"
            selector.unregister(sock)
            lasted.append(time.monotonic() - ready.data)
    report(case="idle closed", lasted=sorted(lasted))
    odd.settimeout(0.1)
    try:
        still_up = odd.recv(1) != b""  # anything but EOF; the node has nothing to send
    except TimeoutError:
        still_up = True
    except ConnectionResetError:
        still_up = False
    report(case="odd link at the end", up=still_up, at=time.time())
    for sock in [odd, *idle]:
        sock.close()


def announce_huge_names(host: str, key: str, count: int, size: int) -> None:
    """A member (it has the key) that announces `count` node names of `size` bytes each, as long
    as the protocol allows, then keeps its link open for a minute so the routes stay."""
    sock, sealer = handshake(host, key.encode())
    now = int(time.time() * 1000)
    for first in range(0, count, 10):
        names = [f"{n:06d}".encode() + b"n" * (size - 6) for n in range(first, first + 10)]
        sock.sendall(sealer.seal_batch([_core.make_packet(now, _core.CMD_NAME, n) for n in names]))
    report(case="announced", count=count, size=size)
    sock.settimeout(60)
    try:
        while sock.recv(1 << 16):  # N's own announcements and its floods, until the test ends
            pass
    except OSError:
        pass
    sock.close()


def open_links(host: str, key: str, count: int) -> None:
    """A member that opens `count` links (handshake done) at once and holds them: reports how
    many the node kept open, then holds them for a minute or until the test stops it."""
    links = [handshake(host, key.encode())[0] for _ in range(count)]
    time.sleep(2.0)  # a refused link is closed at once; a kept one sends an announcement
    kept = 0
    for sock in links:
        sock.settimeout(0.5)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            kept += sock.recv(1 << 16) != b""
    report(case="links", opened=count, kept=kept)
    time.sleep(60)
    for sock in links:
        sock.close()


# ----------------------------------------------------------------------------------------------
# The test


def reports(text: str) -> dict[str, dict[str, Any]]:
    found = (json.loads(line) for line in text.splitlines() if line.startswith("{"))
    return {item["case"]: item for item in found}


def test_node_keeps_serving_while_peers_misbehave(tmp_path) -> None:
    with Lab(tmp_path) as lab:
        n, hostile, good = lab.namespace(), lab.namespace(), lab.namespace()
        to_hostile, to_good = lab.link(n, hostile), lab.link(n, good)
        listens = [
            tcp_listen(PORT, ["another key", KEY]),
            tcp_listen(SECURE_PORT, ["another key", KEY], "secure_tcp"),
        ]
        node = start_node(lab, n, lab.node_config(NAME_N, listens))
        wait_up(node)
        time.sleep(1.0)  # let it settle before the first reading
        rss = {"before": rss_kib(node.pid)}

        tests_dir = Path(__file__).resolve().parent
        program = (
            f"import sys; sys.path.insert(0, {str(tests_dir)!r}); import test_e2e_hostile; "
            f"test_e2e_hostile.attack({to_hostile.ipv4_a!r}, {KEY!r})"
        )
        attacker = lab.spawn(hostile, [sys.executable, "-c", program], "attacker.log")
        assert attacker.wait_for_log('"case": "idle open"', timeout=60), attacker.log()
        idle_opened = time.monotonic()
        rss["300 idle open"] = rss_kib(node.pid)

        # A good peer links and pings at once while the idle connections are open.
        peer = start_node(
            lab, good, lab.node_config(NAME_G, [tcp_connect(to_good.ipv4_a, PORT, KEY)])
        )
        peer_up = wait_up(peer)
        linked = peer.wait_for_log(r"(\S+ \S+) INFO smolmesh\.links: link \S+ up", timeout=10)
        assert linked, peer.log()
        wait_route(peer, NAME_N, timeout=10)
        ping = lab.ping(good, node_address(NAME_N), count=1, timeout=5)
        pinged = time.time()
        assert ping.ok, (ping, node.log())
        print(f"\nhostile: good peer linked {log_time(linked[1]) - peer_up:.2f} s after it"
              f" started, first reply {pinged - peer_up:.2f} s; the idle connections opened"
              f" {time.monotonic() - idle_opened:.1f} s before")  # fmt: skip

        assert attacker.wait(timeout=HANDSHAKE_TIMEOUT_S + 40) == 0, attacker.log()
        results = reports(attacker.log())
        rss["after"] = rss_kib(node.pid)
        print(f"hostile: RSS of N in KiB: {rss}")
        print("hostile: closed after (ms): " + ", ".join(
            f"{case} {r['closed_after'] * 1000:.1f}" if r["closed_after"] is not None
            else f"{case} never" for case, r in results.items() if "port" in r))  # fmt: skip

        # Protocol breakers are closed at once, each logged in one line naming it.
        expected = {
            "wrong key": "wrong key",
            "garbage": "wrong key",
            "bad MAC": "bad MAC",
            "truncated hello": "closed by peer",
            "truncated frame": "closed by peer",
            "secure wrong key": "wrong key",
            "secure garbage": "wrong key",
            "secure bad tag": "bad MAC",
        }
        # The idle connections that follow may reuse a source port of these cases: only what N
        # logged before they opened counts.
        idle_opened_at = results["idle open"]["at"]

        def case_lines(port: int, pattern: str) -> list:
            label = f"{to_hostile.ipv4_b}:{port}"
            found = log_lines(node, rf"^link {label} {pattern}")
            return [line for line in found if line[0] < idle_opened_at]

        for case, reason in expected.items():
            closed_after = results[case]["closed_after"]
            assert closed_after is not None and closed_after < 2, (case, results[case])
            lines = case_lines(results[case]["port"], "(?:refused|down): (.*)")
            assert len(lines) == 1, (case, lines, node.log())
            assert reason in lines[0][1][1], (case, lines[0][1][1])

        # A replayed secure_tcp message 1 is answered, brings no link up, and is closed with the
        # other unauthenticated connections, at the handshake timeout.
        replay = results["secure replay"]
        assert replay["answered"] == _core.SECURE_MESSAGE_LEN
        assert replay["closed_after"] is not None, replay
        lines = case_lines(replay["port"], "(refused|down|up)(.*)")
        assert len(lines) == 1 and lines[0][1][1] == "refused", (replay, node.log())
        assert "no handshake within" in lines[0][1][2], lines

        # Odd but well-formed packets are dropped one by one; the link stays up and works.
        assert results["odd packets"]["closed_after"] is None
        assert results["odd link at the end"]["up"]
        odd_label = f"{to_hostile.ipv4_b}:{results['odd packets']['port']}"
        assert log_lines(node, rf"route to \S+ \(odd-peer\) learnt via {odd_label}")
        end = results["odd link at the end"]["at"]  # then the peer closed it
        downs = log_lines(node, rf"^link {odd_label} down")
        assert all(when + 0.001 >= end for when, _ in downs), (end, downs)  # log: ms resolution
        assert not log_lines(node, r"\((?:stale|future)-peer\)")

        # Idle connections: each closed once, none open much longer than the handshake timeout;
        # beyond 64 unauthenticated ones, each new connection closes the oldest at once.
        idle_ports = results["idle open"]["ports"]
        lasted = results["idle closed"]["lasted"]
        assert len(lasted) == IDLE_CONNECTIONS, f"{IDLE_CONNECTIONS - len(lasted)} still open"
        assert max(lasted) < HANDSHAKE_TIMEOUT_S + 3, lasted[-10:]
        timed_out = [t for t in lasted if t > HANDSHAKE_TIMEOUT_S / 2]
        assert timed_out and min(timed_out) > HANDSHAKE_TIMEOUT_S - 1, timed_out

        # A flood of connections is no flood of logs: a line each for the first ones of a period,
        # then one line that counts the rest; every refused connection is in one or the other.
        def idle_refusals_logged() -> tuple[int, int]:
            # Lines from when the idle connections opened only: one of them may reuse the source
            # port of an earlier case, closed by then, whose line would count for it (log times
            # are cut to the millisecond). The idle ones hold their ports until the end.
            found_lines = log_lines(node, rf"^link {to_hostile.ipv4_b}:(\d+) refused: (\w+)")
            lines = [line for line in found_lines if line[0] + 0.001 >= idle_opened_at]
            reasons = {int(found[1]): found[2] for _, found in lines}
            assert len(lines) == len(reasons)  # never two lines for one connection
            idle = [reasons[port] for port in idle_ports if port in reasons]
            assert set(idle) <= {"too", "no"}  # "too many unauthenticated", "no handshake"
            counted = log_lines(node, r"(\d+) more incoming connections refused")
            return len(idle), sum(int(found[1]) for _, found in counted)

        assert wait_until(lambda: sum(idle_refusals_logged()) == IDLE_CONNECTIONS, timeout=15), (
            idle_refusals_logged()
        )
        one_line_each, counted = idle_refusals_logged()
        assert counted > 0 and one_line_each <= 3 * REFUSALS_LOGGED_PER_PERIOD
        print(f"hostile: {len(lasted) - len(timed_out)} idle connections closed as newer ones came"
              f" (over 64 unauthenticated), {len(timed_out)} after"
              f" {min(timed_out):.2f}..{max(timed_out):.2f} s")  # fmt: skip

        # N kept serving throughout, and its memory stayed bounded.
        assert node.alive and peer.alive
        assert lab.ping(good, node_address(NAME_N), count=2, timeout=5).ok
        assert rss["after"] - rss["before"] < 32 * 1024, rss


HUGE_NAMES, HUGE_NAME_BYTES = 600, 60_000  # 36 MB of announcements
MAX_ROUTE_BYTES = 16 * 1024 * 1024  # smolmesh.tuning.MAX_ROUTE_BYTES


def test_a_member_announcing_huge_names_leaves_memory_and_log_bounded(tmp_path) -> None:
    """A name may be as long as a packet. A peer with the key announcing 600 names of 60,000 bytes
    would have N hold 72 MB (each announcement and its name) and log 36 MB. N holds up to
    MAX_ROUTE_BYTES of them, logs the start of each name and says once that its table is full;
    it keeps serving its good peer."""
    with Lab(tmp_path) as lab:
        n, hostile, good = lab.namespace(), lab.namespace(), lab.namespace()
        to_hostile, to_good = lab.link(n, hostile), lab.link(n, good)
        node = start_node(lab, n, lab.node_config(NAME_N, [tcp_listen(PORT, [KEY])]))
        wait_up(node)
        peer = start_node(
            lab, good, lab.node_config(NAME_G, [tcp_connect(to_good.ipv4_a, PORT, KEY)])
        )
        wait_up(peer)
        wait_route(peer, NAME_N, timeout=10)
        time.sleep(1.0)  # let it settle before the first reading
        rss_before = rss_kib(node.pid)

        tests_dir = Path(__file__).resolve().parent
        program = (
            f"import sys; sys.path.insert(0, {str(tests_dir)!r}); import test_e2e_hostile; "
            f"test_e2e_hostile.announce_huge_names({to_hostile.ipv4_a!r}, {KEY!r},"
            f" {HUGE_NAMES}, {HUGE_NAME_BYTES})"
        )
        member = lab.spawn(hostile, [sys.executable, "-c", program], "member.log")
        assert member.wait_for_log('"case": "announced"', timeout=60), member.log()
        assert node.wait_for_log("route table full", timeout=20), node.log_tail()
        time.sleep(1.0)  # what was sent is taken in
        status = control.read_status(control.socket_path(NAME_N))
        rss_after = rss_kib(node.pid)
        log_bytes = len(node.log().encode())
        print(f"\nhostile: {HUGE_NAMES} names of {HUGE_NAME_BYTES} bytes: N holds"
              f" {len(status['routes'])} routes, RSS {rss_before} -> {rss_after} KiB,"
              f" log {log_bytes} bytes")  # fmt: skip

        huge = [r for r in status["routes"] if r["name"] and len(r["name"]) == HUGE_NAME_BYTES]
        held = 2 * HUGE_NAME_BYTES + _core.HEADER_LEN  # the announcement and the name
        assert 0 < len(huge) <= MAX_ROUTE_BYTES // held, len(huge)
        assert len(huge) * held <= status["route_table_bytes"] <= MAX_ROUTE_BYTES
        assert len(log_lines(node, "route table full")) == 1, node.log_tail()
        assert log_bytes < 1024 * 1024, log_bytes
        assert rss_after - rss_before < 2 * MAX_ROUTE_BYTES // 1024, (rss_before, rss_after)
        assert node.alive and lab.ping(good, node_address(NAME_N), count=2, timeout=5).ok


FILES_KEPT_FREE = 128  # smolmesh.tuning.FILES_KEPT_FREE: open files not given to links
FLOOD_LINKS = 400


def test_links_beyond_the_open_file_limit_are_refused_and_said_so(tmp_path) -> None:
    """Each link is an open file. Offered 400 links, a node whose process may open 300 files takes
    172 and refuses the rest with a log line, keeping files for `smolmesh status` and for peers
    once the flood is gone. Without the bound its event loop reset the connections it had no
    file for, in mid-handshake and without a word in its log. With a hard limit above its soft
    one the node raises its own and takes all 400."""
    with Lab(tmp_path) as lab:
        n, m, hostile, good = (lab.namespace() for _ in range(4))
        to_n, to_m, good_n = lab.link(n, hostile), lab.link(m, hostile), lab.link(n, good)
        started = []
        for ns, name, nofile in ((n, NAME_N, "300:300"), (m, NAME_G + "-m", "300:4096")):
            path = lab.write_config(lab.node_config(name, [tcp_listen(PORT, [KEY])]), name)
            argv = ["prlimit", f"--nofile={nofile}", *smolmesh_command(), "meshnode", str(path)]
            started.append(lab.spawn(ns, argv, f"{name}.log"))
        node, roomy = started
        wait_up(node)
        wait_up(roomy)

        tests_dir = Path(__file__).resolve().parent
        members = []
        for target in (to_n, to_m):
            program = (
                f"import sys; sys.path.insert(0, {str(tests_dir)!r}); import test_e2e_hostile; "
                f"test_e2e_hostile.open_links({target.ipv4_a!r}, {KEY!r}, {FLOOD_LINKS})"
            )
            members.append(
                lab.spawn(hostile, [sys.executable, "-c", program], f"member-{len(members)}.log")
            )
        for member in members:
            assert member.wait_for_log('"case": "links"', timeout=60), member.log()
        at_n, at_m = (reports(member.log())["links"] for member in members)
        print(f"\nhostile: {FLOOD_LINKS} links to a node that may open 300 files:"
              f" {at_n['kept']} kept;"
              f" to one that may raise its limit to 4096: {at_m['kept']} kept")  # fmt: skip

        assert at_n["kept"] == 300 - FILES_KEPT_FREE, at_n
        refused = log_lines(node, r"link \S+ refused: too many links \((\d+) up")
        assert refused and all(int(found[1]) == 172 for _, found in refused), node.log_tail()
        status = control.read_status(control.socket_path(NAME_N))
        assert len(status["links"]) == 172 and status["links_allowed"] == 172
        assert at_m["kept"] == FLOOD_LINKS, (at_m, roomy.log_tail())

        # The flood gone, a good peer links to N and pings it.
        for member in members:
            member.terminate()
        peer = start_node(
            lab, good, lab.node_config(NAME_G, [tcp_connect(good_n.ipv4_a, PORT, KEY)])
        )
        wait_route(peer, NAME_N, timeout=20)
        assert lab.ping(good, node_address(NAME_N), count=2, timeout=5).ok
