"""End-to-end throughput of smolmesh beside wireguard-go and the bare veth, in one run.

Run as root:  python3 benches/e2e.py [--seconds 10] [--mtu 1500] [--smolmesh-mtu N]
                                     [--only smolmesh,wireguard,veth] [--repeat N] [--json PATH]
                                     [--smolmesh2 PATH] [--transport secure_tcp|legacy_tcp]

Each row builds its own chain of network namespaces joined by veth pairs (smolmesh.lab, through
benches/e2e_lab.py), lays a tunnel over them (benches/e2e_tunnels.py), then measures with iperf3
and ping (benches/e2e_measure.py): 1 and 4 TCP streams for --seconds each, the idle ping RTT, and
the CPU seconds the VPN processes spent per GB carried (kernel work, such as the veth and TCP
itself, is not counted). With --repeat N the rows run N times in turn and the table shows each
figure's median; the goals (benches/e2e_goals.py) are ratios between rows of one round, listed
per round with their median. With --smolmesh2 PATH (a binary of the reference implementation)
two more rows run it, 2 nodes and the 3-node chain, at its own MTU of 1500. The smolmesh rows link
their nodes with --transport (default secure_tcp, smolmesh's own link; legacy_tcp is smolmesh2's,
which the smolmesh2 rows always use). Everything is removed
when a row ends, also on error or Ctrl-C.
The exit status is 0 when every row ran, 1 when a row failed, 2 when the bench cannot start.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from e2e_goals import format_goals, goal_results, goals
from e2e_lab import BenchError, Chain, chain
from e2e_measure import measure
from e2e_tunnels import Tunnel, smolmesh, smolmesh2, wireguard

GROUPS = ("veth", "wireguard", "smolmesh", "smolmesh2")
# tool -> Debian package
TOOLS = {
    "iperf3": "iperf3",
    "ping": "iputils-ping",
    "ip": "iproute2",
    "tc": "iproute2",
    "ss": "iproute2",
    "wireguard-go": "wireguard-go",
    "wg": "wireguard-tools",
}
WIREGUARD_TOOLS = ("wireguard-go", "wg")
WIREGUARD_DEFAULT_MTU = 1420  # what wg-quick picks over a 1500-byte link
REFERENCE_ROW = "wireguard-go @{mtu}"
SMOLMESH2_ROW = "smolmesh2 @1500 (its own MTU)"
SMOLMESH2_CHAIN_ROW = "smolmesh2 3-node chain @1500"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each iperf3 run")
    parser.add_argument("--mtu", type=int, default=1500, help="tunnel MTU of the compared rows")
    parser.add_argument(
        "--smolmesh-mtu",
        type=int,
        default=None,
        help="MTU of the 'default MTU' smolmesh row (default: smolmesh's own)",
    )
    parser.add_argument(
        "--only", default=",".join(GROUPS), help="comma-separated subset of: " + ",".join(GROUPS)
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the rows this many times in turn (medians)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--wait", type=float, default=30.0, help="seconds a smolmesh tunnel may take to answer ping"
    )
    parser.add_argument(
        "--smolmesh2",
        default=None,
        metavar="PATH",
        help="a smolmesh2 binary: adds its 2-node and 3-node chain rows",
    )
    parser.add_argument(
        "--transport",
        choices=("secure_tcp", "legacy_tcp"),
        default="secure_tcp",
        help="the link between smolmesh nodes (default secure_tcp)",
    )
    args = parser.parse_args(argv)
    args.only = [g.strip() for g in args.only.split(",") if g.strip()]
    if args.smolmesh2 is None:
        args.only = [g for g in args.only if g != "smolmesh2"]
    elif not (os.path.isfile(args.smolmesh2) and os.access(args.smolmesh2, os.X_OK)):
        parser.error(f"--smolmesh2: {args.smolmesh2} is not an executable file")
    unknown = set(args.only) - set(GROUPS)
    if unknown or not args.only:
        parser.error(f"--only takes some of {','.join(GROUPS)}, not {','.join(sorted(unknown))}")
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def missing_packages(groups: list[str]) -> list[str]:
    needed = [t for t in TOOLS if "wireguard" in groups or t not in WIREGUARD_TOOLS]
    return sorted({TOOLS[t] for t in needed if shutil.which(t) is None})


def host_info() -> dict[str, object]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        # Other work on the machine skews every row; the 1-minute load at the start tells of it.
        "load_average": round(os.getloadavg()[0], 2),
        "iperf3": _first_line(["iperf3", "--version"]),
        "wireguard-go": _first_line(["wireguard-go", "--version"]),
    }


def _first_line(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


RowMeasure = Callable[[Path], dict[str, object]]  # measures one row, its logs in the given dir
Row = tuple[str, str, RowMeasure]  # group, label, measure


def default_labels(args: argparse.Namespace) -> tuple[str, str]:
    """Labels of the 2-node and chain rows at smolmesh's default (or --smolmesh-mtu) MTU."""
    label = (
        "smolmesh @default MTU" if args.smolmesh_mtu is None else f"smolmesh @{args.smolmesh_mtu}"
    )
    return label, label.replace("smolmesh", "smolmesh 3-node chain")


def plan(args: argparse.Namespace) -> list[Row]:
    s, mtu = args.seconds, args.mtu

    def veth_row(log_dir: Path) -> dict[str, object]:
        with chain(2, log_dir) as two:
            return measure(two, 0, 1, two.veth_address(0, 1), s)

    def tunnel_row(nodes: int, start: Callable[[Chain], Tunnel]) -> RowMeasure:
        def row(log_dir: Path) -> dict[str, object]:
            with chain(nodes, log_dir) as row_chain:
                tunnel = start(row_chain)
                last = nodes - 1  # in a chain, the ends talk through the middle
                return {
                    "mtu": tunnel.mtu,
                    **measure(row_chain, 0, last, tunnel.addresses[last], s, tunnel.pids),
                }

        return row

    def wireguard_row(nodes: int, wg_mtu: int) -> RowMeasure:
        return tunnel_row(nodes, lambda row_chain: wireguard(row_chain, wg_mtu))

    def smolmesh_row(nodes: int, sm_mtu: int | None) -> RowMeasure:
        return tunnel_row(
            nodes, lambda row_chain: smolmesh(row_chain, sm_mtu, args.wait, args.transport)
        )

    def smolmesh2_row(nodes: int) -> RowMeasure:
        return tunnel_row(nodes, lambda row_chain: smolmesh2(row_chain, args.smolmesh2, args.wait))

    default_label, chain_label = default_labels(args)
    rows: list[Row] = [
        ("veth", "bare veth", veth_row),
        ("wireguard", REFERENCE_ROW.format(mtu=mtu), wireguard_row(2, mtu)),
        ("smolmesh", f"smolmesh @{mtu}", smolmesh_row(2, mtu)),
        ("smolmesh", default_label, smolmesh_row(2, args.smolmesh_mtu)),
        ("smolmesh", f"smolmesh 3-node chain @{mtu}", smolmesh_row(3, mtu)),
        ("smolmesh", chain_label, smolmesh_row(3, args.smolmesh_mtu)),
        ("wireguard", f"wireguard-go 3-node chain @{mtu}", wireguard_row(3, mtu)),
        ("smolmesh2", SMOLMESH2_ROW, smolmesh2_row(2)),
        ("smolmesh2", SMOLMESH2_CHAIN_ROW, smolmesh2_row(3)),
    ]
    if mtu != WIREGUARD_DEFAULT_MTU:
        rows.insert(
            2,
            (
                "wireguard",
                REFERENCE_ROW.format(mtu=WIREGUARD_DEFAULT_MTU),
                wireguard_row(2, WIREGUARD_DEFAULT_MTU),
            ),
        )
    return [row for row in rows if row[0] in args.only]


def run_rows(
    rows: list[Row], log_root: Path, round_number: int, rounds: int
) -> list[dict[str, object]]:
    results = []
    say_round = f"round {round_number}/{rounds} " if rounds > 1 else ""
    for number, (group, label, fn) in enumerate(rows, 1):
        log_dir = log_root / f"round{round_number}-row{number}"
        log_dir.mkdir()
        print(f"{say_round}[{number}/{len(rows)}] {label} ...", file=sys.stderr, flush=True)
        result: dict[str, object] = {"row": label, "group": group}
        try:
            result.update(fn(log_dir), status="ok")
        except BenchError as exc:
            print(f"    FAILED: {exc}", file=sys.stderr, flush=True)
            result.update(status="failed", error=str(exc))
        results.append(result)
    return results


def medians(rounds: list[list[dict[str, object]]]) -> list[dict[str, object]]:
    """One row per label: the median of each figure over the rounds; failed if any round failed."""
    merged = []
    for same_row in zip(*rounds, strict=True):
        failed = next((r for r in same_row if r["status"] != "ok"), None)
        if failed is not None:
            merged.append(dict(failed))
            continue
        row = dict(same_row[0])
        for key in ("gbps_1", "gbps_4", "rtt_ms", "cpu_s_per_gb"):
            values = [r[key] for r in same_row if r.get(key) is not None]
            row[key] = statistics.median(values) if values else None  # type: ignore[type-var]
        merged.append(row)
    return merged


def add_ratios(results: list[dict[str, object]], reference: str) -> None:
    ref = next((r for r in results if r["row"] == reference and r["status"] == "ok"), None)
    for r in results:
        ok = ref is not None and r["status"] == "ok"
        r["ratio_1_to_wireguard"] = r["gbps_1"] / ref["gbps_1"] if ok else None  # type: ignore[operator]


def format_table(
    info: dict[str, object],
    args: argparse.Namespace,
    results: list[dict[str, object]],
    reference: str,
) -> str:
    def num(value: object, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    header = [
        "",
        "1-stream Gbit/s",
        "4-stream Gbit/s",
        "ping RTT ms",
        "CPU s/GB",
        f"1-stream / {reference}",
    ]
    lines = [
        [r["row"] + (f" (mtu {r['mtu']})" if "default" in str(r["row"]) and r.get("mtu") else "")]
        for r in results
    ]
    for line, r in zip(lines, results, strict=True):
        if r["status"] == "ok":
            line += [
                num(r["gbps_1"], ".3f"),
                num(r["gbps_4"], ".3f"),
                num(r["rtt_ms"], ".3f"),
                num(r["cpu_s_per_gb"], ".2f"),
                num(r["ratio_1_to_wireguard"], ".2f"),
            ]
        else:
            line += ["failed", "-", "-", "-", "-"]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def aligned(cells: list[str]) -> str:
        # The first column (the row name) is left-aligned, the figures right-aligned.
        padded = [
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    out = [
        f"smolmesh end-to-end bench, {info['date']}",
        f"kernel {info['kernel']}, {info['cpu_model']}, {info['cores']} cores, "
        f"load average {info['load_average']} at the start",
        f"{args.seconds} s per iperf3 run, {info['iperf3']}, {info['wireguard-go']}"
        + (f"; medians of {args.repeat} rounds" if args.repeat > 1 else ""),
        f"smolmesh rows link their nodes with {args.transport}",
        "",
        aligned(header),
        *(aligned(line) for line in lines),
    ]
    for r in results:
        if r["status"] != "ok":
            out.append(f"{r['row']} failed: {str(r['error']).splitlines()[0]}")
    return "\n".join(out)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every lab's cleanup


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("e2e bench: needs root (network namespaces); run it with sudo", file=sys.stderr)
        return 2
    missing = missing_packages(args.only)
    if missing:
        print(
            f"e2e bench: missing tools; run: apt-get install {' '.join(missing)}", file=sys.stderr
        )
        return 2
    # Ctrl-C raises KeyboardInterrupt even when our parent left SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    info = host_info()
    reference = REFERENCE_ROW.format(mtu=args.mtu)
    log_root = Path(tempfile.mkdtemp(prefix="smolmesh-e2e-"))
    rows = plan(args)
    rounds = [run_rows(rows, log_root, n, args.repeat) for n in range(1, args.repeat + 1)]
    results = medians(rounds)
    add_ratios(results, reference)
    smolmesh2_rows = (SMOLMESH2_ROW, SMOLMESH2_CHAIN_ROW) if "smolmesh2" in args.only else None
    goal_list = goal_results(goals(args.mtu, *default_labels(args), smolmesh2_rows), rounds)
    print(format_table(info, args, results, reference), flush=True)
    print(format_goals(goal_list), flush=True)
    failed = any(r["status"] != "ok" for rows_of_round in rounds for r in rows_of_round)
    if failed:
        print(f"logs of the failed rows kept in {log_root}", file=sys.stderr)
    else:
        shutil.rmtree(log_root, ignore_errors=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "host": info,
                    "seconds": args.seconds,
                    "mtu": args.mtu,
                    "repeat": args.repeat,
                    "rows": results,
                    "goals": goal_list,
                    "rounds": rounds,
                },
                indent=2,
            )
            + "\n"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("e2e bench: interrupted; its namespaces and processes are removed", file=sys.stderr)
        sys.exit(130)
