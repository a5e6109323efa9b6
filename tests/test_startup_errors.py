"""The real `smolmesh meshnode` on a machine unfit to run it: one line, exit 1, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def meshnode(
    config: dict, tmp_path: Path, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    path = tmp_path / "node.json"
    path.write_text(json.dumps(config))
    argv = [*prefix, sys.executable, "-m", "smolmesh", "meshnode", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def assert_one_line_failure(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("smolmesh: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = {
            "node_name": "port-in-use",
            "transports": [{"type": "legacy_tcp_listen", "port": port, "keys": ["k"]}],
        }
        done = meshnode(config, tmp_path)
    assert_one_line_failure(done, f"port {port}", "already in use")


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_no_dev_net_tun_is_one_line(tmp_path: Path) -> None:
    # A mount namespace of its own where /dev/net is an empty directory: nothing else changes.
    script = 'mount -t tmpfs tmpfs /dev/net && exec "$@"'
    prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh")
    done = meshnode({"node_name": "no-tun", "linux_tuntap": True}, tmp_path, prefix)
    assert_one_line_failure(done, "/dev/net/tun")


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_no_privilege_for_a_tun_device_is_one_line(tmp_path: Path) -> None:
    # Root without CAP_NET_ADMIN is what an unprivileged user is to the TUN device.
    prefix = ("setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin")
    done = meshnode({"node_name": "no-caps", "linux_tuntap": True}, tmp_path, prefix)
    assert_one_line_failure(done)
    assert "root" in done.stderr or "CAP_NET_ADMIN" in done.stderr or "permission" in done.stderr
