"""The response model's mechanics: rates by channel, relevance, fatigue, calls."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
from tests.simulate.support import START, population, sends

from baoke.simulate.model import ResponseModel, load_model
from baoke.simulate.population import day_number
from baoke.simulate.responses import answer_calls, answer_messages

N = 20_000
DAY = day_number(START)


def _model() -> ResponseModel:
    return load_model()


def test_rates_fall_inside_the_matrix_ranges_per_channel() -> None:
    model = _model()
    for channel in ("sms", "wecom", "push", "email"):
        pop = population(N)
        pop.today = DAY
        out = answer_messages(model, pop, np.random.default_rng(5), DAY, sends(pop.ids, channel))
        delivered = out.touches["delivered"].mean()
        lo, hi = model.channels[channel].delivered
        assert lo - 0.01 <= delivered <= hi + 0.01  # type: ignore[operator]
        interacted = out.touches.filter(pl.col("delivered"))["interacted"].mean()
        lo, hi = model.channels[channel].interacted
        # A relevant (care) message lifts interaction by the relevance factor.
        lift = model.relevance.relevant
        assert lo * lift * 0.9 <= interacted <= hi * lift * 1.1  # type: ignore[operator]


def test_wecom_earns_more_interactions_than_sms_from_the_same_customers() -> None:
    model = _model()
    pop = population(N)
    pop.today = DAY
    wecom = answer_messages(model, pop, np.random.default_rng(1), DAY, sends(pop.ids, "wecom"))
    pop = population(N)
    pop.today = DAY
    sms = answer_messages(model, pop, np.random.default_rng(1), DAY, sends(pop.ids, "sms"))
    assert wecom.touches["interacted"].sum() > 4 * sms.touches["interacted"].sum()


def test_irrelevant_content_earns_less_and_weighs_more() -> None:
    model = _model()
    pop = population(N)
    pop.today = DAY
    care = answer_messages(model, pop, np.random.default_rng(2), DAY, sends(pop.ids, "wecom"))
    cared = pop.touches_last_month().copy()
    pop = population(N)
    pop.today = DAY
    promo = sends(pop.ids, "wecom", playbook="blast_promotions", priority="marketing")
    sold = answer_messages(model, pop, np.random.default_rng(2), DAY, promo)
    assert sold.touches["interacted"].sum() < 0.6 * care.touches["interacted"].sum()
    assert pop.touches_last_month().sum() > 1.5 * cared.sum()


def test_touches_above_tolerance_bring_reactions_and_drift() -> None:
    """The same customers, a few touches a month against a touch every day for a month."""
    model = _model()

    def month(per_month: int) -> tuple[int, float]:
        pop = population(5_000, tier="low")
        rng = np.random.default_rng(9)
        start_loyalty = pop.loyalty.copy()
        reactions = 0
        every = max(1, 30 // per_month)
        for offset in range(30):
            day = DAY + offset
            pop.today = day
            pop.pressure[day % len(pop.pressure)] = 0.0
            if offset % every:
                continue
            promo = sends(pop.ids, "sms", playbook="blast_promotions", priority="marketing")
            reactions += answer_messages(model, pop, rng, day, promo).reactions.height
        return reactions, float((start_loyalty - pop.loyalty).mean())

    calm_reactions, calm_drift = month(2)
    blast_reactions, blast_drift = month(30)
    assert blast_reactions > 5 * max(calm_reactions, 1)
    assert blast_drift > 5 * max(calm_drift, 1e-6)


def test_a_blocked_customer_gets_no_more_wecom_messages() -> None:
    model = _model()
    pop = population(1_000)
    pop.today = DAY
    pop.blocked[:500] = True
    out = answer_messages(model, pop, np.random.default_rng(4), DAY, sends(pop.ids, "wecom"))
    assert not out.touches.filter(pl.col("position") < 500)["delivered"].any()
    assert out.touches.filter(pl.col("position") >= 500)["delivered"].mean() > 0.8  # type: ignore[operator]


def test_calls_come_within_the_sla_mostly_and_are_answered_at_phone_rates() -> None:
    model = _model()
    pop = population(N)
    due = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
    tasks = pl.DataFrame(
        {
            "task_id": np.arange(1, N + 1),
            "customer_id": pop.ids,
            "due_at": [due] * N,
            "sla_hours": [4.0] * N,
            "complaint": [False] * N,
            "playbook": ["churn_winback"] * N,
        },
        schema_overrides={"due_at": pl.Datetime("us", "UTC")},
    )
    calls = answer_calls(model, pop, np.random.default_rng(6), tasks)
    made = calls.calls
    assert 0.9 * N < made.height < N  # a few are never worked
    assert 0.6 < made["within_sla"].mean() < 0.95  # type: ignore[operator]
    answered = made["outcome"].is_in(["connected", "booked", "refused"]).mean()
    lo, hi = model.channels["phone"].delivered
    assert lo - 0.02 < answered < hi + 0.02  # type: ignore[operator]
    assert (made["at"] > due - dt.timedelta(hours=4)).all()
