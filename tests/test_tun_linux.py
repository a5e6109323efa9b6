"""The Linux TUN device and its host routes, on real kernel objects in a fresh namespace each.

Each namespace test runs its body as a Python script inside the namespace (the TUN device and
netlink act on the namespace of the process that opens them), prints what it saw as JSON, and the
test checks that. Pings answered by the script through the TUN prove both directions of the device.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from ipaddress import ip_address

import pytest

from netns import Lab
from smolmesh.errors import StartupError
from smolmesh.tun.linux import LinuxTun, check_name

# Helpers for the scripts run inside a namespace: echo replies built from echo requests.
SCRIPT_PRELUDE = textwrap.dedent(
    """
    import json, os, select, socket, struct, subprocess, sys, time
    from smolmesh.tun.linux import LinuxTun
    from smolmesh.netlink import HostRoutes
    from smolmesh.errors import StartupError

    V6_HERE = socket.inet_pton(socket.AF_INET6, "fd00::1")
    V6_THERE = socket.inet_pton(socket.AF_INET6, "fd00::2")
    V4_HERE = socket.inet_aton("10.77.0.1")
    V4_THERE = socket.inet_aton("10.77.0.2")

    def sh(*argv):
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout

    def checksum(data):
        data = data + b"\\0" * (len(data) % 2)
        s = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return ~s & 0xFFFF

    def echo_reply(p):
        if p[0] >> 4 == 4 and p[9] == 1 and p[(p[0] & 15) * 4] == 8:
            ihl = (p[0] & 15) * 4
            icmp = bytearray(p[ihl:]); icmp[0] = 0; icmp[2:4] = b"\\0\\0"
            icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
            ip = bytearray(p[:ihl]); ip[12:16] = p[16:20]; ip[16:20] = p[12:16]
            ip[10:12] = b"\\0\\0"; ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
            return bytes(ip + icmp)
        if p[0] >> 4 == 6 and p[6] == 58 and p[40] == 128:
            src, dst = p[8:24], p[24:40]
            icmp = bytearray(p[40:]); icmp[0] = 129; icmp[2:4] = b"\\0\\0"
            pseudo = dst + src + struct.pack("!I", len(icmp)) + b"\\0\\0\\0\\x3a"
            icmp[2:4] = struct.pack("!H", checksum(pseudo + bytes(icmp)))
            return p[:8] + dst + src + bytes(icmp)
        return None

    def answer_pings(tun, addr, count=3, limit_s=8.0):
        # ping runs while we answer its echo requests through the TUN; returns (rc, requests).
        ping = subprocess.Popen(["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", addr],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        requests = 0
        deadline = time.monotonic() + limit_s
        while ping.poll() is None and time.monotonic() < deadline:
            if select.select([tun.fileno()], [], [], 0.1)[0]:
                for packet in tun.read_batch():
                    reply = echo_reply(packet)
                    if reply is not None:
                        requests += 1
                        assert tun.write(reply)
        if ping.poll() is None:
            ping.kill()
        return ping.wait(), requests
    """
)


def run_in_namespace(lab: Lab, body: str, argv_prefix: tuple[str, ...] = ()) -> dict:
    ns = lab.namespace()
    script = SCRIPT_PRELUDE + textwrap.dedent(body)
    done = lab.run(ns, [*argv_prefix, sys.executable, "-c", script], timeout=60)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- No namespace needed ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a" * 16, "smolmesh-too-long", "a/b", "a b", "tun%d", ".."])
def test_bad_names_are_refused_before_any_syscall(name: str) -> None:
    with pytest.raises(StartupError, match="TUN device name"):
        LinuxTun.open(name, device_path="/nonexistent/never-opened")


def test_longest_name_passes_the_check() -> None:
    assert check_name("a" * 15) == b"a" * 15


def test_missing_device_file_is_a_one_line_startup_error(tmp_path) -> None:
    missing = str(tmp_path / "no-tun")
    with pytest.raises(StartupError, match="does not exist: load the tun module") as caught:
        LinuxTun.open("smolmesh1", device_path=missing)
    assert "\n" not in str(caught.value) and missing in str(caught.value)


def test_mtu_out_of_range_is_refused() -> None:
    with pytest.raises(StartupError, match="MTU 40"):
        LinuxTun.open("smolmesh1", mtu=40, device_path="/nonexistent/never-opened")


# --- In a namespace ---------------------------------------------------------------------------


def test_device_addresses_routes_and_pings_both_ways(tmp_path) -> None:
    with Lab(tmp_path) as lab:
        seen = run_in_namespace(
            lab,
            """
            out = {}
            tun = LinuxTun.open("smolmesh1", mtu=1280)
            routes = HostRoutes("smolmesh1")
            routes.setup(1280, V6_HERE, [V4_HERE])
            routes.add_address(V6_HERE)  # twice is fine
            routes.add_route(V6_THERE)
            routes.add_route(V4_THERE)
            routes.add_route(V4_THERE)  # replace, not an error
            out["link"] = sh("ip", "-d", "link", "show", "smolmesh1")
            out["addr"] = sh("ip", "addr", "show", "dev", "smolmesh1")
            out["routes"] = sh("ip", "route", "show", "dev", "smolmesh1")
            out["routes6"] = sh("ip", "-6", "route", "show", "dev", "smolmesh1")
            out["known"] = sorted(a.hex() for a in routes.routes)
            out["ping6"] = answer_pings(tun, "fd00::2")
            out["ping4"] = answer_pings(tun, "10.77.0.2")
            routes.remove_route(V6_THERE)
            routes.remove_route(V6_THERE)  # already gone: fine
            out["routes6_after_remove"] = sh("ip", "-6", "route", "show", "dev", "smolmesh1")
            routes.close()
            routes.close()
            out["routes_after_close"] = sh("ip", "route", "show", "dev", "smolmesh1")
            out["addr_after_close"] = sh("ip", "addr", "show", "dev", "smolmesh1")
            tun.close()
            tun.close()
            out["links_after_tun_close"] = sh("ip", "-o", "link", "show")
            print(json.dumps(out))
            """,
        )
    assert "mtu 1280" in seen["link"] and "qlen 1000" in seen["link"]
    assert "tun type tun pi off" in seen["link"] and ",UP" in seen["link"]
    assert "inet 10.77.0.1/32" in seen["addr"]
    assert "inet6 fd00::1/128" in seen["addr"] and "nodad" in seen["addr"]
    assert (
        "fe80" not in seen["addr"]
    )  # no link-local: the host sends no solicitations into the mesh
    assert "10.77.0.2" in seen["routes"] and "fd00::2" in seen["routes6"]
    assert seen["known"] == sorted(ip_address(a).packed.hex() for a in ("10.77.0.2", "fd00::2"))
    rc6, requests6 = seen["ping6"]
    rc4, requests4 = seen["ping4"]
    assert (rc6, rc4) == (0, 0), "ping through the TUN got no answers"
    assert requests6 >= 3 and requests4 >= 3
    assert "fd00::2" not in seen["routes6_after_remove"]
    assert seen["routes_after_close"].strip() == ""
    assert "10.77.0.1" not in seen["addr_after_close"] and "fd00::1" not in seen["addr_after_close"]
    assert "smolmesh1" not in seen["links_after_tun_close"]


@pytest.mark.parametrize("coalesce", [True, False], ids=["vnet-header", "plain"])
def test_read_batch_respects_the_limit_and_write_drops_non_ip(tmp_path, coalesce: bool) -> None:
    with Lab(tmp_path) as lab:
        seen = run_in_namespace(
            lab,
            f"""
            tun = LinuxTun.open(coalesce={coalesce})
            out = {{"coalesce": tun.coalesce}}
            with HostRoutes(tun.name) as routes:
                routes.setup(None, V6_HERE, [V4_HERE])
                routes.add_route(V4_THERE)
                out["empty"] = tun.read_batch()
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                for i in range(10):
                    s.sendto(b"packet %d" % i, ("10.77.0.2", 9))
                time.sleep(0.1)
                first, rest = tun.read_batch(limit=3), tun.read_batch()
                out["sizes"] = [len(first), len(rest)]
                out["payloads"] = [p[28:].decode() for p in first + rest]
                out["not_ip"] = tun.write(b"\\x00" * 40)
                out["memoryview"] = tun.write(memoryview(bytes(first[0]))) is True
                out["batch"] = tun.write_batch([b"\\x00" * 40, first[0], bytearray(first[1])])
            tun.close()
            print(json.dumps(out))
            """,
        )
    assert seen["coalesce"] is coalesce
    assert seen["empty"] == []
    assert seen["sizes"] == [3, 7]
    assert seen["payloads"] == [f"packet {i}" for i in range(10)]
    assert seen["not_ip"] is False
    assert seen["memoryview"] is True
    assert seen["batch"] == 2


def test_host_routes_work_from_inside_a_running_event_loop(tmp_path) -> None:
    # pyroute2's sync API refuses to run under a running loop; HostRoutes must not care.
    with Lab(tmp_path) as lab:
        seen = run_in_namespace(
            lab,
            """
            import asyncio
            try:
                import uvloop
                run = uvloop.run
            except ImportError:
                run = asyncio.run
            async def main():
                with LinuxTun.open() as tun, HostRoutes(tun.name) as routes:
                    routes.setup(1400, V6_HERE, [])
                    routes.add_route(V6_THERE)
                    await asyncio.to_thread(routes.add_route, V4_THERE)
                    return sh("ip", "route", "show", "dev", tun.name) + sh(
                        "ip", "-6", "route", "show", "dev", tun.name)
            print(json.dumps({"routes": run(main())}))
            """,
        )
    assert "10.77.0.2" in seen["routes"] and "fd00::2" in seen["routes"]


def test_startup_errors_name_the_cause(tmp_path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop CAP_NET_ADMIN")
    with Lab(tmp_path) as lab:
        seen = run_in_namespace(
            lab,
            """
            out = {}
            def error(fn):
                try:
                    fn().close()
                except StartupError as e:
                    return str(e)
                return None
            first = LinuxTun.open("smolmesh1")
            out["busy"] = error(lambda: LinuxTun.open("smolmesh1"))
            out["other_kind"] = error(lambda: LinuxTun.open("lo"))
            first.close()
            out["reopen"] = error(lambda: LinuxTun.open("smolmesh1"))
            try:
                HostRoutes("nosuchdev0")
            except StartupError as e:
                out["no_device"] = str(e)
            print(json.dumps(out))
            """,
        )
        no_cap = run_in_namespace(
            lab,
            """
            try:
                LinuxTun.open("smolmesh1")
                print(json.dumps({"error": None}))
            except StartupError as e:
                print(json.dumps({"error": str(e)}))
            """,
            argv_prefix=("setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"),
        )
    assert "in use by another process" in seen["busy"]
    assert "device of another kind" in seen["other_kind"]
    assert seen["reopen"] is None
    assert seen["no_device"] == "network device nosuchdev0 does not exist"
    assert "no permission to create TUN device smolmesh1" in no_cap["error"]
