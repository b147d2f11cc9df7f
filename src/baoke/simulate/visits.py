"""Who comes in for service today, who buys a new car, and who drifts away.

A daily draw over every owner at once. Around the customer's own due date (their rhythm, not
the profile's estimate) each day carries a chance of a maintenance visit sized so that, left
alone, ``natural_return`` x loyalty of them come within the window; a recent interaction or a
relevant reminder lifts it, a booking brings them in on the day they said. Past the window
the chance fades and loyalty decays (they are going elsewhere); repairs happen at random.
Owners in the market for a new car buy with a small yearly chance, lifted by an interaction
with an upgrade or lost-lead touch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from baoke.simulate.model import TIERS, ResponseModel
from baoke.simulate.population import NEVER, IArr, Population

__all__ = ["DayVisits", "draw_visits"]


@dataclass
class DayVisits:
    """Positions of today's visitors, what each visit was and cost, and today's buyers."""

    positions: IArr
    maintenance: np.ndarray  # bool per visit: maintenance (else a repair)
    amount_yuan: np.ndarray
    mileage: np.ndarray
    first: np.ndarray  # bool per visit: the car's first maintenance
    buyers: IArr


def draw_visits(
    model: ResponseModel,
    pop: Population,
    rng: np.random.Generator,
    day: int,
    market_interaction: np.ndarray,
) -> DayVisits:
    """Draw today's visits and purchases and move the customers' state on.

    ``market_interaction`` is a bool per customer: interacted with an upgrade or lost-lead
    touch within the memory window.
    """
    v, loyalty = model.visits, model.loyalty
    can = pop.owner & (pop.due_day > NEVER)
    rel = day - pop.due_day
    width = v.window_before_days + v.window_after_days
    in_window = (rel >= -v.window_before_days) & (rel <= v.window_after_days)
    late = rel > v.window_after_days
    natural = np.clip(v.natural_return * pop.loyalty, 0.0, 0.999)
    hazard = 1.0 - (1.0 - natural) ** (1.0 / width)
    hazard = np.where(in_window, hazard, np.where(late, hazard * 0.15, 0.0))
    recent = day - pop.last_interaction <= v.memory_days
    reminded = day - pop.last_reminder <= v.memory_days
    # An interaction can pull a visit forward a month before the window opens.
    early = (rel >= -v.window_before_days - 30) & ~in_window & ~late
    hazard = np.where(recent & early, natural / width, hazard)
    hazard = hazard * np.where(recent, v.interaction_lift, np.where(reminded, v.reminder_lift, 1))
    booked = pop.booked_for == day
    maintenance = can & ((rng.random(pop.size) < np.minimum(hazard, 0.9)) | booked)
    repair = (
        can
        & ~maintenance
        & (rng.random(pop.size) < v.repairs_per_year / 365 * np.sqrt(pop.loyalty))
    )
    visit = maintenance | repair
    where = np.flatnonzero(visit)
    is_maint = maintenance[where]
    tier_code = pop.tier_code[where]
    median = np.array([v.maintenance_yuan[t] for t in TIERS])[tier_code]
    amount = np.where(
        is_maint,
        median * rng.lognormal(0.0, 0.3, where.size),
        v.repair_yuan * rng.lognormal(0.0, 0.6, where.size),
    )
    since = np.clip(day - np.maximum(pop.due_day[where] - pop.interval[where], 0), 0, 3650)
    pop.mileage[where] += v.km_per_day * np.minimum(since, 400) * rng.uniform(0.6, 1.4, where.size)
    first = is_maint & ~pop.first_done[where]
    maint_pos = where[is_maint]
    pop.due_day[maint_pos] = day + pop.interval[maint_pos].astype(np.int64)
    pop.first_done[maint_pos] = True
    pop.new_owner[maint_pos] = False
    pop.booked_for[booked] = NEVER
    pop.satisfaction[where] += model.satisfaction.visit
    # Past due for long: they are going elsewhere.
    overdue = can & (rel > loyalty.overdue_after_days) & ~visit
    pop.loyalty[overdue] -= loyalty.overdue_decay
    np.clip(pop.loyalty, 0.0, 1.0, out=pop.loyalty)

    p = model.purchases
    buy_chance = p.yearly_purchase / 365 * np.where(market_interaction, p.interaction_lift, 1.0)
    buyers = np.flatnonzero(pop.owner & pop.in_market & (rng.random(pop.size) < buy_chance))
    pop.in_market[buyers] = False
    pop.new_owner[buyers] = True
    pop.first_done[buyers] = False
    pop.due_day[buyers] = day + v.first_maintenance_days
    pop.mileage[buyers] = 0
    return DayVisits(
        positions=where,
        maintenance=is_maint,
        amount_yuan=np.round(amount, 2),
        mileage=pop.mileage[where].astype(np.int64),
        first=first,
        buyers=buyers,
    )
