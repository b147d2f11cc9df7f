"""``baoke simulate``: the same synthetic group under several arms, compared side by side.

The population is generated once. Each customer is assigned at random (by the seed) to one
arm; each arm runs the whole group through the real engine on a store of its own with the
arm's playbooks and policy, and is measured on the customers assigned to it only, so every
customer counts in exactly one arm, as in a field A/B test. The customers' hidden traits come
from the same seed in every arm: a customer is the same person whichever arm they are in.

Intervals are 95%: normal for shares and means, a bootstrap over customers for cost per
visit. The differences are against the first arm.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from baoke.config import Settings
from baoke.simulate.arms import Arm, apply_arm
from baoke.simulate.report import Measures

__all__ = [
    "ArmResult",
    "Interval",
    "assign_arms",
    "compare",
    "comparison_json",
    "difference",
    "figures",
    "print_comparison",
]

Z95 = 1.959964
BOOTSTRAP = 1000


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        """Plain numbers, for JSON."""
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass
class ArmResult:
    """One arm's measures over the customers assigned to it."""

    arm: Arm
    measures: Measures
    customers: pl.DataFrame  # the per-customer rows of the arm's own customers
    seconds: float = 0.0
    figures: dict[str, Interval] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "arm": self.arm.name,
            "label": self.arm.label,
            "customers": self.customers.height,
            "seconds": round(self.seconds, 1),
            **{k: v.as_dict() for k, v in self.figures.items()},
        }


def assign_arms(customer_ids: np.ndarray, arms: int, seed: int) -> np.ndarray:
    """The arm (0..arms-1) of each customer: a stable random split by seed and customer id."""
    salt = hashlib.sha256(f"arms:{seed}".encode()).digest()[:8]
    mixed = (customer_ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.frombuffer(
        salt, dtype=np.uint64
    )[0]
    mixed ^= mixed >> np.uint64(29)
    mixed *= np.uint64(0xBF58476D1CE4E5B9)
    mixed ^= mixed >> np.uint64(32)
    arm: np.ndarray = (mixed % np.uint64(arms)).astype(np.int64)
    return arm


def _share(values: np.ndarray) -> Interval:
    n = values.size
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    p = float(values.mean())
    half = Z95 * np.sqrt(max(p * (1 - p), 0.0) / n)
    return Interval(p, max(0.0, p - half), min(1.0, p + half))


def _mean(values: np.ndarray) -> Interval:
    n = values.size
    if n < 2:
        v = float(values.mean()) if n else float("nan")
        return Interval(v, v, v)
    m = float(values.mean())
    half = Z95 * float(values.std(ddof=1)) / np.sqrt(n)
    return Interval(m, m - half, m + half)


def _ratio(num: np.ndarray, den: np.ndarray, rng: np.random.Generator) -> Interval:
    """sum(num) / sum(den) with a bootstrap interval over customers."""
    if den.sum() == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    value = float(num.sum() / den.sum())
    picks = rng.integers(0, num.size, (BOOTSTRAP, num.size))
    ratios = num[picks].sum(axis=1) / np.maximum(den[picks].sum(axis=1), 1e-9)
    low, high = np.quantile(ratios, [0.025, 0.975])
    return Interval(value, float(low), float(high))


def figures(customers: pl.DataFrame, seed: int) -> dict[str, Interval]:
    """The A/B reference's measures (cost, visits, satisfaction, fatigue) with intervals."""
    owners = customers.filter(pl.col("owner"))

    def col(frame: pl.DataFrame, name: str) -> np.ndarray:
        return frame[name].cast(pl.Float64).to_numpy()

    rng = np.random.default_rng(seed)
    return {
        "cost_yuan": Interval(*(float(col(customers, "cost_yuan").sum()),) * 3),
        "cost_per_customer": _mean(col(customers, "cost_yuan")),
        "visit_rate": _share(col(owners, "visited")),
        "cost_per_visit": _ratio(col(customers, "cost_yuan"), col(customers, "visits"), rng),
        "satisfaction": _mean(col(owners, "satisfaction")),
        "unsubscribed": _share(col(customers, "unsubscribed")),
        "blocked": _share(col(customers, "blocked")),
        "complained": _share(col(customers, "complained")),
        "churned": _share(col(owners, "churned")),
    }


def difference(a: Interval, b: Interval) -> Interval:
    """b - a, its interval from the two (independent) intervals."""
    half = np.hypot((a.high - a.low) / 2, (b.high - b.low) / 2)
    d = b.value - a.value
    return Interval(d, d - half, d + half)


RunArm = Callable[[Settings, Arm, int], tuple[Measures, float]]


def compare(
    settings: Settings,
    arms: Sequence[Arm],
    root: Path,
    seed: int,
    run_arm: RunArm,
) -> list[ArmResult]:
    """Run every arm (``run_arm(settings_of_arm, arm, index)``) and measure its own customers."""
    results = []
    for index, arm in enumerate(arms):
        arm_settings = apply_arm(settings, arm, root / arm.name)
        measures, seconds = run_arm(arm_settings, arm, index)
        ids = measures.customers["customer_id"].to_numpy()
        mine = assign_arms(ids, len(arms), seed) == index
        own = measures.customers.filter(pl.Series(mine))
        result = ArmResult(arm, measures, own, seconds)
        result.figures = figures(own, seed)
        results.append(result)
    return results


def _fmt(iv: Interval, kind: str) -> str:
    if iv.value != iv.value:
        return "—"
    if kind == "pct":
        return f"{iv.value:.1%} [{iv.low:.1%}, {iv.high:.1%}]"
    if kind == "yuan":
        return f"¥{iv.value:,.2f} [{iv.low:,.2f}, {iv.high:,.2f}]"
    if kind == "total":
        return f"¥{iv.value:,.0f}"
    return f"{iv.value:.1f} [{iv.low:.1f}, {iv.high:.1f}]"


ROWS = (
    ("cost (messages and calls)", "cost_yuan", "total"),
    ("cost per customer", "cost_per_customer", "yuan"),
    ("service visit rate (owners)", "visit_rate", "pct"),
    ("cost per visit", "cost_per_visit", "yuan"),
    ("satisfaction proxy (0-100)", "satisfaction", "num"),
    ("unsubscribed", "unsubscribed", "pct"),
    ("blocked the advisor on WeCom", "blocked", "pct"),
    ("complained of too many messages", "complained", "pct"),
    ("owners drifted away", "churned", "pct"),
)


def print_comparison(results: list[ArmResult], console: Console, days: int) -> None:
    """The arms side by side, then each arm's difference from the first."""
    table = Table(
        title=f"Arms side by side: {days} days, customers assigned at random; 95% intervals",
        title_justify="left",
    )
    table.add_column("measure")
    for r in results:
        table.add_column(f"{r.arm.label}\n({r.customers.height:,} customers)", justify="right")
    for label, key, kind in ROWS:
        table.add_row(label, *(_fmt(r.figures[key], kind) for r in results))
    console.print(table)
    if len(results) < 2:
        return
    base = results[0]
    diff = Table(title=f"Difference from {base.arm.label}", title_justify="left")
    diff.add_column("measure")
    for r in results[1:]:
        diff.add_column(r.arm.label, justify="right")
    for label, key, kind in ROWS[1:]:
        cells = []
        for r in results[1:]:
            d = difference(base.figures[key], r.figures[key])
            if d.value != d.value:
                cells.append("—")
            elif kind == "pct":
                sign = "clear" if d.low > 0 or d.high < 0 else "not clear"
                cells.append(
                    f"{d.value * 100:+.1f} pt [{d.low * 100:+.1f}, {d.high * 100:+.1f}] {sign}"
                )
            else:
                sign = "clear" if d.low > 0 or d.high < 0 else "not clear"
                cells.append(f"{d.value:+,.2f} [{d.low:+,.2f}, {d.high:+,.2f}] {sign}")
        diff.add_row(label, *cells)
    console.print(diff)
    for r in results:
        console.print(f"[bold]{r.arm.label}[/] ({r.arm.name}): {r.arm.description}")


def comparison_json(results: list[ArmResult], days: int, start: dt.date) -> str:
    """The comparison as JSON (``--json``)."""
    return json.dumps(
        {"days": days, "start": start.isoformat(), "arms": [r.as_dict() for r in results]},
        ensure_ascii=False,
        indent=2,
    )
