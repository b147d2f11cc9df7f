"""Visits, churn and purchases: the customer's own rhythm, and what touches add to it."""

from __future__ import annotations

import numpy as np
from tests.simulate.support import START, population

from baoke.simulate.model import load_model
from baoke.simulate.population import NEVER, Population, day_number
from baoke.simulate.visits import draw_visits

DAY = day_number(START)


def _days(pop: Population, days: int, *, interact_every: int | None = None, seed: int = 1) -> int:
    model = load_model()
    rng = np.random.default_rng(seed)
    visits = 0
    for offset in range(days):
        day = DAY + offset
        pop.today = day
        if interact_every and offset % interact_every == 0:
            pop.last_interaction[:] = day
        out = draw_visits(model, pop, rng, day, np.zeros(pop.size, dtype=bool))
        visits += int(out.maintenance.sum())
    return visits


def test_owners_due_come_in_and_interactions_bring_more() -> None:
    # Last visit 200 days ago, a 210-day rhythm: most are due within the next weeks.
    alone = _days(population(5_000, last_visit_days_ago=200), 90)
    touched = _days(population(5_000, last_visit_days_ago=200), 90, interact_every=10)
    assert alone > 500
    assert touched > 1.3 * alone


def test_a_visit_moves_the_due_date_and_counts_the_first_maintenance() -> None:
    model = load_model()
    pop = population(2_000, last_visit_days_ago=210)
    pop.first_done[:1000] = False
    pop.today = DAY
    out = draw_visits(model, pop, np.random.default_rng(2), DAY, np.zeros(pop.size, dtype=bool))
    came = out.positions[out.maintenance]
    assert came.size > 0
    assert (pop.due_day[came] > DAY).all()
    assert pop.first_done[came].all()
    assert out.first.sum() == (came < 1000).sum()


def test_a_booking_brings_the_customer_in_on_the_day() -> None:
    model = load_model()
    pop = population(500, last_visit_days_ago=10)  # not due at all
    pop.booked_for[:100] = DAY
    pop.today = DAY
    out = draw_visits(model, pop, np.random.default_rng(3), DAY, np.zeros(pop.size, dtype=bool))
    assert set(range(100)) <= set(out.positions[out.maintenance].tolist())
    assert (pop.booked_for[:100] == NEVER).all()


def test_owners_long_overdue_drift_away() -> None:
    pop = population(2_000, last_visit_days_ago=400)
    before = pop.loyalty.copy()
    _days(pop, 60)
    assert (pop.loyalty <= before + 1e-9).all()
    assert (before - pop.loyalty).mean() > 0.1


def test_owners_in_the_market_buy_more_after_an_upgrade_interaction() -> None:
    model = load_model()
    bought = []
    for interested in (False, True):
        pop = population(20_000)
        pop.in_market[:] = True
        rng = np.random.default_rng(4)
        total = 0
        for offset in range(60):
            pop.today = DAY + offset
            hot = np.full(pop.size, interested)
            total += draw_visits(model, pop, rng, DAY + offset, hot).buyers.size
        bought.append(total)
    assert bought[1] > 3 * bought[0] > 0
