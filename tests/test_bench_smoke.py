"""benches/e2e.py run for real, 1 second per iperf3 run, so that the bench cannot rot.

Needs root (network namespaces) and iperf3, wireguard-go, wg, ping, ip, tc and ss
(Debian: iperf3 wireguard-go wireguard-tools iputils-ping iproute2); skipped otherwise.
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
    assert len(goals) == 6, goals
    assert all(goal["measured"] and goal["median"] > 0 for goal in goals), goals
    assert "goals (ratio per round; the median decides):" in done.stdout
    for goal in goals:
        assert goal["goal"] in done.stdout
