"""`smolmesh demo` as a user runs it: a real subprocess that builds namespaces and nodes, pings
across them and leaves nothing behind, also when Ctrl-C or SIGTERM stops it halfway."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import netns
from conftest import smolmesh_command
from smolmesh import demo, lab

RUN_TIMEOUT_S = 120  # the demo takes about 6 s; its own waits are bounded by 15 and 30 s


class DemoRun:
    """The demo as a subprocess, its output collected line by line on a thread."""

    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen(
            [*smolmesh_command(), "demo", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 60) -> bool:
        """Collect output until a line matches pattern (True) or the end or timeout (False)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return False
            if line is None:
                return False
            self.output += line
            if re.search(pattern, line):
                return True
        return False

    def finish(self, timeout: float = RUN_TIMEOUT_S) -> int:
        """The exit status once the output has ended; SIGKILL and sweep if it runs on."""
        try:
            self.wait_for(r"(?!)", timeout)  # matches nothing: reads to the end
            return self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait()
            lab.sweep_stale(demo.PREFIX)  # a demo killed here leaves namespaces and nodes

    def assert_nothing_left(self) -> None:
        mine = f"{demo.PREFIX}-{self.popen.pid}-"
        assert [ns for ns in lab.lab_namespaces(demo.PREFIX) if ns.startswith(mine)] == []
        pids = [int(pid) for pid in re.findall(r"node \w+  pid (\d+)", self.output)]
        assert [pid for pid in pids if is_meshnode(pid)] == []
        assert "Traceback" not in self.output, self.output
        assert "Done: " in self.output and "Left behind" not in self.output, self.output


def is_meshnode(pid: int) -> bool:
    try:
        return b"meshnode" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture
def root_lab() -> None:
    netns.require_lab()  # skips unless root with `ip netns`, installing iproute2 etc. if missing


def test_demo_pings_across_the_middle_node_and_cleans_up(root_lab: None) -> None:
    run = DemoRun()
    status = run.finish()
    assert status == 0, run.output
    pids = re.findall(r"node (\w)  pid (\d+)", run.output)
    assert [name for name, _ in pids] == ["a", "b", "c"], run.output
    for family, address in (("IPv6", r"fd00:[0-9a-f:]+"), ("IPv4", r"10\.250\.0\.3")):
        line = rf"{family}  a -> c  {address} +ok, 3/3 replies, avg [\d.]+ ms"
        assert re.search(line, run.output), run.output
    # Every node shows host routes to the other two, over both families.
    assert len(re.findall(r"node [abc]  +proto static", run.output)) == 3 * 2 * 2, run.output
    run.assert_nothing_left()


def test_demo_with_a_longer_line(root_lab: None) -> None:
    run = DemoRun("--nodes", "4")
    assert run.finish() == 0, run.output
    assert re.search(r"IPv4  a -> d  10\.250\.0\.4 +ok, 3/3", run.output), run.output
    run.assert_nothing_left()


@pytest.mark.parametrize(
    ("signum", "when", "statuses"),
    [
        (signal.SIGINT, r"all 3 nodes are up", {130}),
        (signal.SIGINT, r"namespace smd-\d+-b ", {130}),
        (signal.SIGTERM, r"node b  pid", {143}),
    ],
    ids=["sigint-nodes-up", "sigint-building", "sigterm-starting"],
)
def test_a_signal_midway_tears_everything_down(
    root_lab: None, signum: int, when: str, statuses: set[int]
) -> None:
    run = DemoRun()
    try:
        assert run.wait_for(when), run.output
        run.popen.send_signal(signum)
    finally:
        status = run.finish(timeout=60)
    assert status in statuses, run.output
    assert "Interrupted (Ctrl-C)." in run.output or "Stopped by SIGTERM." in run.output
    run.assert_nothing_left()


def test_keep_runs_until_ctrl_c(root_lab: None) -> None:
    run = DemoRun("--keep")
    try:
        assert run.wait_for(r"a shell inside node a"), run.output
        ns = re.search(r"ip netns exec (smd-\d+-a) ping (fd00:\S+)", run.output)
        assert ns, run.output
        assert netns.ping(ns[1], ns[2], count=2, timeout=10).ok  # the mesh is still up
        run.popen.send_signal(signal.SIGINT)
    finally:
        status = run.finish(timeout=60)
    assert status == 0, run.output
    run.assert_nothing_left()


def test_without_root_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert demo.main([]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "smolmesh: the demo needs root for network namespaces and TUN devices: sudo smolmesh demo\n"
    )


def test_without_ip_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert demo.main([]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs the `ip` command" in err, err


@pytest.mark.parametrize("args", [["--bogus"], ["--nodes"], ["--nodes", "1"], ["--nodes=99"]])
def test_bad_options_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("smolmesh: ") and "usage: smolmesh demo" in err and err.count("\n") == 1
