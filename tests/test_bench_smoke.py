"""The benches run for real, briefly, so that they cannot rot: benches/e2e.py with 1 second per
iperf3 run, idle_rtt.py (also weighing a copy of the package) and rtt_segments.py with a few
pings, cold_calls.py with 2 rounds, profile_node.py over a 3-node chain for 1 second.

Needs root (network namespaces) and iperf3, wireguard-go, wg, ping, ip, tc and ss
(Debian: iperf3 wireguard-go wireguard-tools iputils-ping iproute2); skipped otherwise.
rtt_segments.py needs a working `perf trace` besides (Debian: linux-perf), profile_node.py py-spy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benches" / "e2e.py"
TOOLS = ("iperf3", "wireguard-go", "wg", "ping", "ip", "tc", "ss")
RUN_TIMEOUT_S = 600  # 7 rows of 2 s iperf3 each, plus up to 30 s for each smolmesh tunnel to rise

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the bench needs root for network namespaces"),
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in TOOLS),
        reason="needs " + ", ".join(t for t in TOOLS if shutil.which(t) is None),
    ),
]


def test_bench_runs_every_row_and_prints_the_table(tmp_path: Path) -> None:
    result_path = tmp_path / "e2e.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "1", "--json", str(result_path)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr  # 1: a row failed
    assert "1-stream Gbit/s" in done.stdout, done.stderr
    rows = json.loads(result_path.read_text())["rows"]
    by_group: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_group.setdefault(str(row["group"]), []).append(row)
        assert str(row["row"]) in done.stdout
        if row["status"] == "ok":
            assert row["gbps_1"] > 0 and row["gbps_4"] > 0, row
            assert row["rtt_ms"] > 0, row
    for row in by_group["veth"] + by_group["wireguard"] + by_group["smolmesh"]:
        assert row["status"] == "ok", row.get("error")
        if row["group"] != "veth":
            assert row["cpu_s_per_gb"] > 0, row
    assert len(by_group["smolmesh"]) == 4  # 2 nodes and a chain, each at 1500 and the default
    # Every goal of the issue is computed from the rows of the run and printed with its verdict.
    goals = json.loads(result_path.read_text())["goals"]
    assert len(goals) == 8, goals
    assert all(goal["measured"] and goal["median"] > 0 for goal in goals), goals
    assert "goals (ratio per round; the median decides):" in done.stdout
    for goal in goals:
        assert goal["goal"] in done.stdout


def test_bench_refuses_a_smolmesh2_that_is_not_a_program(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--smolmesh2", str(tmp_path / "nothing-here")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is not an executable file" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(
    not os.environ.get("SMOLMESH2_BIN"),
    reason="SMOLMESH2_BIN names no smolmesh2 binary (see tests/test_interop_smolmesh2.py)",
)
def test_bench_runs_smolmesh2_beside_smolmesh(tmp_path: Path) -> None:
    result_path = tmp_path / "e2e.json"
    argv = [sys.executable, str(BENCH), "--seconds", "1", "--only", "smolmesh,smolmesh2"]
    argv += ["--smolmesh2", os.environ["SMOLMESH2_BIN"], "--json", str(result_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(result_path.read_text())
    smolmesh2_rows = [row for row in results["rows"] if row["group"] == "smolmesh2"]
    assert [row["row"] for row in smolmesh2_rows] == [
        "smolmesh2 @1500 (its own MTU)",
        "smolmesh2 3-node chain @1500",
    ]
    assert all(row["gbps_1"] > 0 and row["mtu"] == 1500 for row in smolmesh2_rows), smolmesh2_rows
    against = [goal for goal in results["goals"] if "x smolmesh2" in goal["goal"]]
    assert len(against) == 4 and all(goal["measured"] for goal in against), against


BENCHES = BENCH.parent


def _run_bench(name: str, *args: str, timeout: float) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_idle_rtt_pings_through_every_tunnel_and_compares_them() -> None:
    out = _run_bench("idle_rtt.py", "--rounds", "1", "--count", "3", timeout=300)
    for interval in ("50 ms", "3 ms"):
        for row in ("smolmesh @1500", "wireguard-go @1500", "bare forwarder @1500"):
            assert any(interval in line and row in line for line in out.splitlines()), out
    assert "x1.00 wireguard-go" in out, out


def test_idle_rtt_weighs_another_build_against_wireguard_go(tmp_path: Path) -> None:
    import smolmesh

    build = tmp_path / "build"
    shutil.copytree(Path(smolmesh.__file__).parent, build / "smolmesh")
    prefix = f"smolmesh @1500 from {build}"
    out = _run_bench(
        "idle_rtt.py",
        *("--rounds", "1", "--count", "3", "--build", str(build), "--only", prefix),
        timeout=300,
    )
    summary = [line for line in out.splitlines() if line.startswith("  every")]
    for row in (prefix, "wireguard-go @1500"):
        assert sum(row in line for line in summary) == 2, out  # at both intervals
    assert len(summary) == 4, out  # and no other row


def _perf_trace_works() -> bool:
    if shutil.which("perf") is None:
        return False
    probe = subprocess.run(
        ["perf", "trace", "-e", "write", "--", "true"], capture_output=True, timeout=60
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _perf_trace_works(), reason="needs a working `perf trace`")
def test_rtt_segments_splits_round_trips_of_each_tunnel() -> None:
    out = _run_bench("rtt_segments.py", "--rounds", "1", "--count", "5", timeout=300)
    table = out[out.index("| segment |") :]
    for row in ("A tun -> sock", "B sock -> tun", "inside the nodes", "all segments"):
        cells = next(line for line in table.splitlines() if line.startswith(f"| {row} |"))
        # One figure per tunnel (smolmesh and the two forwarders), each a number of microseconds.
        figures = [cell.strip() for cell in cells.strip("|").split("|")[1:]]
        assert len(figures) == 3 and all(f.lstrip("-").isdigit() for f in figures), cells


def test_cold_calls_times_each_call_cold_and_warm() -> None:
    out = _run_bench("cold_calls.py", "--rounds", "2", timeout=120)
    for call in ("Sealer.seal_data_batch", "Opener.feed_and_triage", "os.read until empty"):
        line = next(line for line in out.splitlines() if line.startswith(call))
        cold, warm = (float(figure) for figure in line.split()[-2:])
        assert cold > 0 and warm > 0, line


@pytest.mark.skipif(shutil.which("py-spy") is None, reason="needs py-spy (pip install py-spy)")
def test_profile_node_splits_each_hop_of_a_chain_into_buckets() -> None:
    out = _run_bench("profile_node.py", "--chain", "--seconds", "1", timeout=180)
    for role in ("sender", "middle", "receiver"):
        section = out[out.index(f"\n{role} (profile-{role})") :]
        total = next(line for line in section.splitlines() if line.endswith("us  in all"))
        assert float(total.split()[0]) > 0, section
    # Each node's main work has its own bucket, not "Python".
    assert "seal (Rust)" in out and "open + verify + triage (Rust, one call)" in out, out
    assert "TUN write (syscall + kernel stack)" in out, out
