"""How simulated customers answer the messages and calls of one day.

Everything is drawn for all of the day's touches at once (numpy over arrays, no loop per
touch): delivered, opened, interacted, from each customer's own rates (DOMAIN's matrix
ranges) lifted or lowered by the content's relevance; the touch adds to the customer's
pressure, and above their tolerance each delivered touch may make them unsubscribe, block the
advisor on WeCom or complain, and takes loyalty off (drift). Calls are answered, booked or
refused when the simulated staff get to them, early or late against the task's SLA.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from baoke.simulate.model import Reaction, ResponseModel
from baoke.simulate.population import MEMORY, FArr, IArr, Population

__all__ = ["CallOutcomes", "MessageOutcomes", "answer_calls", "answer_messages", "relevance"]

MESSAGE_CHANNELS = ("sms", "wecom", "push", "email")
_REACTION_SCHEMA = {"position": pl.Int64(), "reaction": pl.String(), "at": pl.Datetime("us", "UTC")}


@dataclass
class MessageOutcomes:
    """What the customers did with one day's messages (one row per touch) and their reactions."""

    touches: pl.DataFrame  # touch columns + delivered, opened, interacted, relevant, at
    reactions: pl.DataFrame  # position, reaction (unsubscribe/block/complaint), channel, touch_id


@dataclass
class CallOutcomes:
    """The calls staff made for the day's new tasks: when, and what came of them."""

    calls: pl.DataFrame  # task_id, customer_id, position, at, outcome, within_sla, complaint
    undone: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def relevance(
    model: ResponseModel, pop: Population, pos: IArr, playbook: pl.Series, priority: pl.Series
) -> np.ndarray:
    """Whether each touch is relevant to its customer now (see response.toml [relevance])."""
    rel = model.relevance
    books = playbook.fill_null("").to_numpy().astype(str)
    by_class = ~np.isin(priority.fill_null("marketing").to_numpy().astype(str), ["marketing"])
    due_book = np.isin(books, list(rel.due_playbooks))
    market_book = np.isin(books, list(rel.market_playbooks))
    today_gap = np.abs(pop.due_day[pos] - pop.today)
    due_now = today_gap <= rel.due_window_days
    return np.where(due_book, due_now, np.where(market_book, pop.in_market[pos], by_class))


def answer_messages(
    model: ResponseModel,
    pop: Population,
    rng: np.random.Generator,
    day: int,
    sent: pl.DataFrame,
) -> MessageOutcomes:
    """Draw the responses to ``sent`` (touch_id, customer_id, channel, playbook, priority,
    sent_at) and update the customers' state."""
    n = sent.height
    pos = pop.positions(sent["customer_id"])
    channel = sent["channel"].to_numpy().astype(str)
    relevant = relevance(model, pop, pos, sent["playbook"], sent["priority"])
    lift = np.where(relevant, model.relevance.relevant, model.relevance.irrelevant)
    delivered_p = _rate(pop, "delivered", channel, pos)
    # A customer who blocked the advisor no longer receives WeCom messages.
    delivered_p = np.where((channel == "wecom") & pop.blocked[pos], 0.0, delivered_p)
    delivered = rng.random(n) < delivered_p
    fatigue = model.fatigue
    weight = np.where(relevant, 1.0, fatigue.irrelevant_weight) * delivered
    np.add.at(pop.pressure[day % MEMORY], pos, weight)
    excess = np.maximum(0.0, pop.touches_last_month()[pos] / pop.tolerance[pos] - 1.0)
    excess = np.where(delivered, excess, 0.0)
    # Over-contact dulls attention before it provokes: the response rates fall with excess.
    lift = lift / (1.0 + fatigue.response_damping * excess)
    interacted = delivered & (
        rng.random(n) < np.minimum(1, _rate(pop, "interacted", channel, pos) * lift)
    )
    opened = interacted | (
        delivered & (rng.random(n) < np.minimum(1, _rate(pop, "opened", channel, pos) * lift))
    )
    sent_at = sent["sent_at"]
    # Customers read in their own time: minutes to hours after the send.
    delay = pl.Series(rng.exponential(2.5 * 3600, n) + 30).cast(pl.Int64) * 1_000_000
    at = sent_at + pl.Series(delay, dtype=pl.Duration("us"))

    def chance(reaction: str) -> FArr:
        r: Reaction = getattr(fatigue, reaction)
        p: FArr = np.minimum(1.0, r.base + r.per_excess * excess)
        return p

    wecom = channel == "wecom"
    already = np.zeros(n, dtype=bool)
    for ch in MESSAGE_CHANNELS:
        mask = channel == ch
        already[mask] = pop.unsubscribed[ch][pos[mask]]
    unsub = delivered & ~wecom & ~already & (rng.random(n) < chance("unsubscribe"))
    block = delivered & wecom & ~pop.blocked[pos] & (rng.random(n) < chance("wecom_block"))
    complaint = (
        delivered & ~pop.complaining[pos] & ~unsub & ~block & (rng.random(n) < chance("complaint"))
    )
    # One reaction of each kind per customer and day is enough.
    unsub &= _first_per(pos, unsub)
    block &= _first_per(pos, block)
    complaint &= _first_per(pos, complaint)
    for ch in MESSAGE_CHANNELS:
        mask = unsub & (channel == ch)
        pop.unsubscribed[ch][pos[mask]] = True
    pop.blocked[pos[block]] = True
    pop.complaining[pos[complaint]] = True

    reacted = unsub | block | complaint
    sat = model.satisfaction
    np.subtract.at(pop.loyalty, pos, fatigue.drift_per_excess * excess)
    np.subtract.at(pop.loyalty, pos, fatigue.drift_on_reaction * reacted)
    np.add.at(pop.satisfaction, pos, sat.excess_touch * (excess > 0))
    np.add.at(pop.satisfaction, pos, sat.reaction * reacted)
    np.add.at(pop.satisfaction, pos, sat.interaction * interacted)
    pop.last_interaction[pos[interacted]] = day
    visits = model.visits
    books = interacted & (rng.random(n) < visits.interaction_books * visits.booked_show)
    pop.booked_for[pos[books]] = day + rng.integers(1, 8, int(books.sum()))
    reminded = (
        delivered
        & relevant
        & np.isin(
            sent["playbook"].fill_null("").to_numpy().astype(str),
            list(model.relevance.due_playbooks),
        )
    )
    pop.last_reminder[pos[reminded]] = day
    winback = interacted & (
        sent["playbook"].fill_null("").to_numpy().astype(str) == "churn_winback"
    )
    np.add.at(pop.loyalty, pos[winback], model.loyalty.winback_regain)
    pop.last_winback[pos[winback]] = day
    np.clip(pop.loyalty, 0.0, 1.0, out=pop.loyalty)
    np.clip(pop.satisfaction, 0.0, 100.0, out=pop.satisfaction)

    touches = sent.with_columns(
        pl.Series("position", pos),
        pl.Series("delivered", delivered),
        pl.Series("opened", opened),
        pl.Series("interacted", interacted),
        pl.Series("relevant", relevant),
        pl.Series("excess", excess),
        at.alias("at"),
    )
    kinds = np.select([unsub, block, complaint], ["unsubscribe", "block", "complaint"], "")
    reactions = touches.with_columns(pl.Series("reaction", kinds)).filter(pl.col("reaction") != "")
    return MessageOutcomes(touches=touches, reactions=reactions)


def _rate(pop: Population, kind: str, channel: np.ndarray, pos: IArr) -> FArr:
    out = np.zeros(pos.size)
    for ch, rates in pop.rates.items():
        mask = channel == ch
        out[mask] = rates[kind][pos[mask]]
    return out


def _first_per(pos: IArr, mask: np.ndarray) -> np.ndarray:
    """True at the first True of ``mask`` for each customer position, False elsewhere."""
    keep = np.zeros(pos.size, dtype=bool)
    hits = np.flatnonzero(mask)
    _, first = np.unique(pos[hits], return_index=True)
    keep[hits[first]] = True
    return keep


def answer_calls(
    model: ResponseModel,
    pop: Population,
    rng: np.random.Generator,
    tasks: pl.DataFrame,
) -> CallOutcomes:
    """When the staff call for each new task (task_id, customer_id, due_at, sla_hours,
    complaint) and what the customer says."""
    staff = model.staff
    n = tasks.height
    pos = pop.positions(tasks["customer_id"])
    done = rng.random(n) >= staff.never_done
    sla = tasks["sla_hours"].to_numpy().astype(np.float64)
    hours = rng.lognormal(np.log(np.maximum(staff.median_share_of_sla * sla, 0.05)), staff.sigma, n)
    start = tasks["due_at"] - pl.Series(
        (sla * 3600 * 1_000_000).astype(np.int64), dtype=pl.Duration("us")
    )
    at = start + pl.Series((hours * 3600 * 1_000_000).astype(np.int64), dtype=pl.Duration("us"))
    phone = pop.rates["phone"]
    has_mobile = pl.Series(pop.mobile[pos], dtype=pl.String).is_not_null().to_numpy()
    complaint = tasks["complaint"].to_numpy().astype(bool)
    answered = rng.random(n) < np.where(
        complaint, np.sqrt(phone["delivered"][pos]), phone["delivered"][pos]
    )
    booked = answered & (rng.random(n) < phone["interacted"][pos])
    refused = answered & ~booked & (rng.random(n) < 0.1)
    outcome = np.select(
        [~has_mobile, booked, refused, answered],
        ["wrong_number", "booked", "refused", "connected"],
        "not_connected",
    )
    within = hours <= sla
    calls = tasks.with_columns(
        pl.Series("position", pos),
        at.alias("at"),
        pl.Series("outcome", outcome),
        pl.Series("within_sla", within),
    ).filter(pl.Series(done))
    return CallOutcomes(calls=calls, undone=int(n - done.sum()))
