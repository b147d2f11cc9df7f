"""What a simulated period earned and cost, per customer and as a director's report.

The measures come from two places, and the report says which: what baoke itself recorded
(touches sent and their cost, tasks and their SLA, journeys and their goals) is read from the
store, as the product's own dashboards would; what customers did (visits, reactions and the
satisfaction proxy) comes from the simulation's ledger, which is what the imports and events
told baoke.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from sqlalchemy import Engine

from baoke.ingest.store_io import query_frame
from baoke.journeys.run import day_end
from baoke.journeys.steps import UTC
from baoke.simulate.loop import Ledger
from baoke.simulate.model import TIERS
from baoke.simulate.population import Population

__all__ = ["Measures", "measure", "print_report"]

WINBACK_DAYS = 30  # a warned customer who visits within this many days is won back
CHURNED_LOYALTY = 0.2  # the model's line below which an owner has gone elsewhere


@dataclass
class Measures:
    """One period's measures: one row per customer, and the breakdowns."""

    customers: pl.DataFrame
    by_channel: pl.DataFrame
    by_playbook: pl.DataFrame
    winback: pl.DataFrame  # customer_id, holdout, won
    sla: pl.DataFrame  # task_id, severity-ish role, within
    days: int
    start: dt.date

    def headline(self, mask: pl.Expr | None = None) -> dict[str, float]:
        """The director's numbers, over all customers or those ``mask`` selects."""
        frame = self.customers.filter(mask) if mask is not None else self.customers
        owners = frame.filter(pl.col("owner"))
        visits = float(frame["visits"].sum())
        cost = float(frame["cost_yuan"].sum())
        won = self.winback.join(frame.select("customer_id"), on="customer_id")
        treated = won.filter(~pl.col("holdout"))
        held = won.filter(pl.col("holdout"))
        new = frame.filter(pl.col("new_owner"))
        return {
            "customers": frame.height,
            "owners": owners.height,
            "visit_rate": _mean(owners["visited"]),
            "visits": visits,
            "revenue_yuan": float(frame["revenue_yuan"].sum()),
            "cost_yuan": cost,
            "cost_per_visit": cost / visits if visits else float("nan"),
            "winback_rate": _mean(treated["won"]),
            "winback_holdout": _mean(held["won"]),
            "winback_n": treated.height,
            "first_maintenance_rate": _mean(new["first_done"]),
            "new_owners": new.height,
            "complaint_sla": _mean(self.sla["within"]) if self.sla.height else float("nan"),
            "complaint_tasks": self.sla.height,
            "unsubscribes": float(frame["unsubscribed"].sum()),
            "blocks": float(frame["blocked"].sum()),
            "complaints": float(frame["complained"].sum()),
            "satisfaction": _mean(owners["satisfaction"]),
            "churned": _mean(owners["churned"]),
            "purchases": float(frame["purchases"].sum()),
        }


def _mean(series: pl.Series) -> float:
    return float(series.cast(pl.Float64).mean()) if series.len() else float("nan")  # type: ignore[arg-type]


def measure(
    engine: Engine,
    pop: Population,
    ledger: Ledger,
    start: dt.date,
    days: int,
    phone_cost_fen: int,
    zone: ZoneInfo,
) -> Measures:
    """Everything the report needs, for the ``days`` from ``start``."""
    begin = dt.datetime.combine(start, dt.time(0), zone).astimezone(dt.UTC)
    end = day_end(start + dt.timedelta(days=days - 1), zone)
    with engine.connect() as conn:
        spend = query_frame(
            conn,
            "SELECT customer_id, channel, playbook, count(*) AS n, sum(cost_fen) AS fen "
            "FROM touches WHERE sent_at >= ? AND sent_at < ? GROUP BY customer_id, channel, "
            "playbook",
            [begin, end],
            {
                "customer_id": pl.Int64(),
                "channel": pl.String(),
                "playbook": pl.String(),
                "n": pl.Int64(),
                "fen": pl.Int64(),
            },
        )
        # Calls a journey asked for directly (not a phone touch, which is in touches already).
        calls = query_frame(
            conn,
            "SELECT customer_id, playbook, count(*) AS n FROM tasks WHERE status = 'done' "
            "AND completed_at >= ? AND completed_at < ? "
            "AND (idempotency_key IS NULL OR idempotency_key NOT LIKE ?) "
            "GROUP BY customer_id, playbook",
            [begin, end, "touch:%"],
            {"customer_id": pl.Int64(), "playbook": pl.String(), "n": pl.Int64()},
        )
        journeys = query_frame(
            conn,
            "SELECT customer_id, status, enrolled_at FROM journeys "
            "WHERE playbook = 'churn_winback' AND enrolled_at >= ? AND enrolled_at < ?",
            [begin, end],
            {"customer_id": pl.Int64(), "status": pl.String(), "enrolled_at": UTC},
        )
        sla = query_frame(
            conn,
            "SELECT id AS task_id, role, due_at, completed_at, status FROM tasks "
            "WHERE playbook = 'complaint_recovery' AND due_at >= ? AND due_at < ?",
            [begin, end - dt.timedelta(days=2)],
            {
                "task_id": pl.Int64(),
                "role": pl.String(),
                "due_at": UTC,
                "completed_at": UTC,
                "status": pl.String(),
            },
        )
    calls = calls.with_columns(
        pl.lit("phone").alias("channel"), (pl.col("n") * phone_cost_fen).alias("fen")
    )
    costs = pl.concat([spend, calls.select(spend.columns)])
    per_customer = _per_customer(pop, ledger, costs)
    visits = ledger.frame("visits")
    winback = _winback(journeys, visits, pop, zone)
    sla = sla.select(
        "task_id",
        "role",
        ((pl.col("status") == "done") & (pl.col("completed_at") <= pl.col("due_at"))).alias(
            "within"
        ),
    )
    return Measures(
        customers=per_customer,
        by_channel=_by_channel(ledger, costs),
        by_playbook=_by_playbook(ledger, costs, visits),
        winback=winback,
        sla=sla,
        days=days,
        start=start,
    )


def _counts(frame: pl.DataFrame, n: int, where: pl.Expr | None = None) -> np.ndarray:
    out = np.zeros(n)
    if frame.height:
        picked = frame.filter(where) if where is not None else frame
        if picked.height:
            np.add.at(out, picked["position"].to_numpy(), 1)
    return out


def _per_customer(pop: Population, ledger: Ledger, costs: pl.DataFrame) -> pl.DataFrame:
    n = pop.size
    visits, reactions = ledger.frame("visits"), ledger.frame("reactions")
    touches, purchases = ledger.frame("touches"), ledger.frame("purchases")
    revenue = np.zeros(n)
    if visits.height:
        np.add.at(revenue, visits["position"].to_numpy(), visits["amount_yuan"].to_numpy())
    cost = np.zeros(n)
    if costs.height:
        summed = costs.group_by("customer_id").agg(pl.col("fen").sum())
        np.add.at(cost, pop.positions(summed["customer_id"]), summed["fen"].to_numpy() / 100)
    first = _counts(visits, n, pl.col("first")) > 0
    react = {
        kind: _counts(reactions, n, pl.col("reaction") == kind) > 0
        for kind in ("unsubscribe", "block", "complaint")
    }
    new_owner_start = pop.new_owner_at_start
    return pl.DataFrame(
        {
            "customer_id": pop.ids,
            "tier": pop.tier,
            "owner": pop.owner,
            "new_owner": new_owner_start,
            "visits": _counts(visits, n),
            "visited": _counts(visits, n) > 0,
            "first_done": first | (pop.first_done & ~new_owner_start),
            "revenue_yuan": revenue,
            "cost_yuan": cost,
            "touches": _counts(touches, n),
            "interactions": _counts(touches, n, pl.col("interacted")),
            "unsubscribed": react["unsubscribe"],
            "blocked": react["block"],
            "complained": react["complaint"],
            "satisfaction": pop.satisfaction,
            "churned": (pop.loyalty < CHURNED_LOYALTY) & (pop.loyalty_at_start >= CHURNED_LOYALTY),
            "purchases": _counts(purchases, n),
        }
    )


def _winback(
    journeys: pl.DataFrame, visits: pl.DataFrame, pop: Population, zone: ZoneInfo
) -> pl.DataFrame:
    """Each win-back enrolment: held out or not, and whether the customer came back."""
    if journeys.height == 0:
        return pl.DataFrame(
            schema={"customer_id": pl.Int64(), "holdout": pl.Boolean(), "won": pl.Boolean()}
        )
    enrolled = journeys.with_columns(
        (pl.col("status") == "holdout").alias("holdout"),
        pl.col("enrolled_at").dt.convert_time_zone(str(zone)).dt.date().alias("from"),
    )
    if visits.height == 0:
        return enrolled.select("customer_id", "holdout", pl.lit(False).alias("won"))
    seen = visits.select(
        pl.Series("customer_id", pop.ids[visits["position"].to_numpy()]), pl.col("day")
    )
    joined = enrolled.join(seen, on="customer_id", how="left").with_columns(
        (
            (pl.col("day") >= pl.col("from"))
            & (pl.col("day") <= pl.col("from") + pl.duration(days=WINBACK_DAYS))
        )
        .fill_null(False)
        .alias("hit")
    )
    return (
        joined.group_by("customer_id", "from", "holdout")
        .agg(pl.col("hit").any().alias("won"))
        .select("customer_id", "holdout", "won")
    )


def _by_channel(ledger: Ledger, costs: pl.DataFrame) -> pl.DataFrame:
    touches, reactions = ledger.frame("touches"), ledger.frame("reactions")
    spent = costs.group_by("channel").agg(pl.col("n").sum().alias("sent"), pl.col("fen").sum())
    if touches.height:
        rates = touches.group_by("channel").agg(
            pl.col("delivered").mean().alias("delivered"),
            pl.col("opened").mean().alias("opened"),
            pl.col("interacted").mean().alias("interacted"),
        )
        spent = spent.join(rates, on="channel", how="left")
    return _with_reactions(spent, reactions, "channel")


def _by_playbook(ledger: Ledger, costs: pl.DataFrame, visits: pl.DataFrame) -> pl.DataFrame:
    touches, reactions = ledger.frame("touches"), ledger.frame("reactions")
    spent = costs.group_by("playbook").agg(pl.col("n").sum().alias("sent"), pl.col("fen").sum())
    if touches.height:
        rates = touches.group_by("playbook").agg(pl.col("interacted").mean().alias("interacted"))
        spent = spent.join(rates, on="playbook", how="left")
        # A visit within 14 days of an interaction is credited to that touch's playbook.
        if visits.height:
            credited = (
                touches.filter(pl.col("interacted"))
                .select("position", "playbook", pl.col("day").alias("touched"))
                .join(visits.select("position", "day"), on="position")
                .filter(
                    (pl.col("day") >= pl.col("touched"))
                    & (pl.col("day") <= pl.col("touched") + pl.duration(days=14))
                )
                .unique(["position", "day"])
                .group_by("playbook")
                .len("visits_after")
            )
            spent = spent.join(credited, on="playbook", how="left")
    return _with_reactions(spent.filter(pl.col("playbook").is_not_null()), reactions, "playbook")


def _with_reactions(frame: pl.DataFrame, reactions: pl.DataFrame, by: str) -> pl.DataFrame:
    if reactions.height == 0:
        return frame.with_columns(
            pl.lit(0).alias("unsubscribe"), pl.lit(0).alias("block"), pl.lit(0).alias("complaint")
        )
    counts = reactions.group_by(by).agg(
        *(
            (pl.col("reaction") == kind).sum().alias(kind)
            for kind in ("unsubscribe", "block", "complaint")
        )
    )
    return frame.join(counts, on=by, how="left").fill_null(0)


# --------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "—" if x != x else f"{x:.1%}"


def _yuan(x: float) -> str:
    return "—" if x != x else f"¥{x:,.0f}"


def print_report(measures: Measures, console: Console, title: str) -> None:
    """The director's report: headline, then by tier, channel and playbook."""
    h = measures.headline()
    end = measures.start + dt.timedelta(days=measures.days - 1)
    lines = [
        f"{measures.start} → {end} ({measures.days} days), {h['customers']:,.0f} customers, "
        f"{h['owners']:,.0f} owners",
        "",
        f"service visit rate        {_pct(h['visit_rate'])} of owners came in at least once "
        f"({h['visits']:,.0f} visits, service revenue {_yuan(h['revenue_yuan'])})",
        f"win-back rate             {_pct(h['winback_rate'])} of {h['winback_n']:,.0f} churn "
        f"warnings came back within {WINBACK_DAYS} days (held out, no contact: "
        f"{_pct(h['winback_holdout'])})",
        f"new-owner first service   {_pct(h['first_maintenance_rate'])} of "
        f"{h['new_owners']:,.0f} new owners had their first maintenance",
        f"complaints handled in SLA {_pct(h['complaint_sla'])} of "
        f"{h['complaint_tasks']:,.0f} complaint calls",
        f"spend                     {_yuan(h['cost_yuan'])} on messages and calls; "
        f"cost per visit {_yuan(h['cost_per_visit'])}",
        f"fatigue                   {h['unsubscribes']:,.0f} unsubscribed, {h['blocks']:,.0f} "
        f"blocked the advisor on WeCom, {h['complaints']:,.0f} complained of too many messages",
        f"satisfaction (proxy)      {h['satisfaction']:.1f} / 100;  owners drifted away "
        f"{_pct(h['churned'])};  new cars bought {h['purchases']:,.0f}",
    ]
    console.print(Panel("\n".join(lines), title=title, title_align="left"))
    _tier_table(measures, console)
    _channel_table(measures, console)
    _playbook_table(measures, console)


def _tier_table(measures: Measures, console: Console) -> None:
    table = Table(title="By value tier (at the start)", title_justify="left")
    for col in ("tier", "owners", "visit rate", "cost", "cost/visit", "unsub", "blocks"):
        table.add_column(col, justify="left" if col == "tier" else "right")
    table.add_column("complaints", justify="right")
    table.add_column("satisfaction", justify="right")
    for tier in TIERS:
        h = measures.headline(pl.col("tier") == tier)
        if not h["customers"]:
            continue
        table.add_row(
            tier,
            f"{h['owners']:,.0f}",
            _pct(h["visit_rate"]),
            _yuan(h["cost_yuan"]),
            _yuan(h["cost_per_visit"]),
            f"{h['unsubscribes']:,.0f}",
            f"{h['blocks']:,.0f}",
            f"{h['complaints']:,.0f}",
            f"{h['satisfaction']:.1f}",
        )
    console.print(table)


def _sends_table(title: str, columns: tuple[str, ...]) -> Table:
    """A table of sends whose first column names the group and whose last three count fatigue."""
    table = Table(title=title, title_justify="left")
    for col in (*columns, "unsub", "blocks", "complaints"):
        table.add_column(col, justify="left" if col == columns[0] else "right")
    return table


def _fatigue_cells(row: dict[str, Any]) -> tuple[str, str, str]:
    return f"{row['unsubscribe']:,}", f"{row['block']:,}", f"{row['complaint']:,}"


def _channel_table(measures: Measures, console: Console) -> None:
    columns = ("channel", "sent", "delivered", "opened", "interacted", "cost")
    table = _sends_table("By channel", columns)
    for row in measures.by_channel.sort("sent", descending=True).iter_rows(named=True):
        table.add_row(
            row["channel"],
            f"{row['sent']:,}",
            _pct(row.get("delivered") or float("nan")),
            _pct(row.get("opened") or float("nan")),
            _pct(row.get("interacted") or float("nan")),
            _yuan(row["fen"] / 100),
            *_fatigue_cells(row),
        )
    console.print(table)


def _playbook_table(measures: Measures, console: Console) -> None:
    table = _sends_table("By playbook", ("playbook", "sent", "interacted", "visits after", "cost"))
    frame = measures.by_playbook
    for row in frame.sort("sent", descending=True).iter_rows(named=True):
        table.add_row(
            row["playbook"],
            f"{row['sent']:,}",
            _pct(row.get("interacted") or float("nan")),
            f"{row.get('visits_after') or 0:,}",
            _yuan(row["fen"] / 100),
            *_fatigue_cells(row),
        )
    console.print(table)
    console.print(
        "[dim]Sent, cost and SLA are what baoke recorded; visits, reactions and satisfaction "
        "are what the simulated customers did (a model: see docs/simulation.md). A visit "
        "within 14 days of an interaction is credited to that touch's playbook.[/]"
    )
