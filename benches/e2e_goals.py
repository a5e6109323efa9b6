"""The performance goals of benches/e2e.py, as ratios between rows of one run, and their medians.

Every goal compares two rows measured in the same round, so drift of a shared machine falls on
both sides alike; with `--repeat N` each goal gets one ratio per round and its median decides.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Goal:
    text: str
    numerator: str  # row label
    denominator: str  # row label
    metric: str  # "gbps_1", "gbps_4" or "rtt_ms"
    at_least: float | None = None
    at_most: float | None = None

    def met(self, ratio: float) -> bool | None:
        """Whether the ratio meets the goal; None for a reference figure without a target."""
        if self.at_least is not None:
            return ratio >= self.at_least
        if self.at_most is not None:
            return ratio <= self.at_most
        return None

    @property
    def target(self) -> str:
        if self.at_least is not None:
            return f">= {self.at_least}"
        return "-" if self.at_most is None else f"<= {self.at_most}"


def goals(
    mtu: int,
    default_label: str,
    chain_default_label: str,
    smolmesh2_rows: tuple[str, str] | None = None,
) -> list[Goal]:
    """The issue's goals; with smolmesh2's (2-node, chain) row labels, also smolmesh against it."""
    wireguard = f"wireguard-go @{mtu}"
    smolmesh = f"smolmesh @{mtu}"
    chain = f"smolmesh 3-node chain @{mtu}"
    against_smolmesh2 = []
    if smolmesh2_rows is not None:
        two, three = smolmesh2_rows
        # smolmesh is to be faster than the implementation it replaces, at the same MTU and
        # at its own default, and no slower to answer.
        against_smolmesh2 = [
            Goal(f"1 stream @{mtu}, x {two}", smolmesh, two, "gbps_1", at_least=1.0),
            Goal(f"1 stream @default MTU, x {two}", default_label, two, "gbps_1", at_least=1.0),
            Goal(f"3-node chain @{mtu}, x {three}", chain, three, "gbps_1", at_least=1.0),
            Goal(f"idle ping RTT @{mtu}, x {two}", smolmesh, two, "rtt_ms", at_most=1.0),
        ]
    return [
        Goal(f"1 stream @{mtu}, x {wireguard}", smolmesh, wireguard, "gbps_1", at_least=1.0),
        Goal(f"1 stream @default MTU, x {wireguard}", default_label, wireguard, "gbps_1", 2.0),
        Goal(f"3-node chain / 2 nodes @{mtu}", chain, smolmesh, "gbps_1", at_least=0.6),
        Goal(
            "3-node chain / 2 nodes @default MTU",
            chain_default_label,
            default_label,
            "gbps_1",
            at_least=0.6,
        ),
        Goal(f"idle ping RTT @{mtu}, x {wireguard}", smolmesh, wireguard, "rtt_ms", at_most=1.0),
        # The chain goals again with four streams, whose sender fills its batches: yardsticks.
        Goal(f"3-node chain / 2 nodes @{mtu}, 4 streams", chain, smolmesh, "gbps_4"),
        Goal(
            "3-node chain / 2 nodes @default MTU, 4 streams",
            chain_default_label,
            default_label,
            "gbps_4",
        ),
        # What the chain goal asks of smolmesh, asked of wireguard-go: a yardstick, not a goal.
        Goal(
            f"wireguard-go: 3-node chain / 2 nodes @{mtu}",
            f"wireguard-go 3-node chain @{mtu}",
            wireguard,
            "gbps_1",
        ),
        *against_smolmesh2,
    ]


def ratio(goal: Goal, rows: list[dict[str, object]]) -> float | None:
    """The goal's ratio in one round's rows; None when a row is missing or failed."""
    found = {r["row"]: r for r in rows if r.get("status") == "ok"}
    top, bottom = found.get(goal.numerator), found.get(goal.denominator)
    if top is None or bottom is None or not bottom.get(goal.metric):
        return None
    return float(top[goal.metric]) / float(bottom[goal.metric])  # type: ignore[arg-type]


def goal_results(
    goal_list: list[Goal], rounds: list[list[dict[str, object]]]
) -> list[dict[str, Any]]:
    results = []
    for goal in goal_list:
        ratios = [ratio(goal, rows) for rows in rounds]
        known = [r for r in ratios if r is not None]
        median = statistics.median(known) if known else None
        results.append(
            {
                "goal": goal.text,
                "target": goal.target,
                "ratios": ratios,
                "median": median,
                "measured": median is not None,
                "met": None if median is None else goal.met(median),
            }
        )
    return results


def format_goals(results: list[dict[str, Any]]) -> str:
    lines = ["", "goals (ratio per round; the median decides):"]
    width = max(len(r["goal"]) for r in results)
    for r in results:
        per_round = " ".join("-" if x is None else f"{x:.2f}" for x in r["ratios"])
        median = "-" if r["median"] is None else f"{r['median']:.2f}"
        if not r["measured"]:
            verdict = "not measured"
        else:
            verdict = {True: "met", False: "not met", None: "(reference)"}[r["met"]]
        lines.append(
            f"  {r['goal'].ljust(width)}  {r['target']:>6}  rounds {per_round}  "
            f"median {median}  {verdict}"
        )
    return "\n".join(lines)
