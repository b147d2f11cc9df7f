"""The simulated owners: what the store knows of them, and what only the simulation knows.

The store's facts (tier, car, last visit) come from the imported group at the start. The hidden
traits — personal response rates per channel, how many touches a month a customer tolerates,
their service rhythm, loyalty, whether they are in the market for a new car, a satisfaction
proxy — are drawn once from the seed. Both live in numpy arrays indexed by position; ``index``
maps a store customer id to its position. The state arrays (loyalty, due day, touch pressure…)
change as the days go by.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl
from sqlalchemy import Connection

from baoke.ingest.store_io import query_frame
from baoke.simulate.model import TIERS, ResponseModel
from baoke.touches import CHANNELS

__all__ = [
    "FACT_SCHEMA",
    "MEMORY",
    "Population",
    "build_population",
    "day_number",
    "load_population",
]

FArr = npt.NDArray[np.float64]
IArr = npt.NDArray[np.int64]
BArr = npt.NDArray[np.bool_]

EPOCH = dt.date(1970, 1, 1)
MEMORY = 30  # days of touch pressure kept (the fatigue window)
NEVER = -(10**6)


def day_number(day: dt.date) -> int:
    """Days since 1970-01-01 (the simulation's integer clock)."""
    return (day - EPOCH).days


@dataclass
class Population:
    """Facts, hidden traits and state of every customer, position-indexed."""

    ids: IArr
    index: IArr  # store customer id -> position (-1: not simulated)
    tier: npt.NDArray[np.str_]
    tier_code: IArr  # position in TIERS
    owner: BArr
    start_stage: npt.NDArray[np.str_]
    vin: npt.NDArray[np.object_]
    dealer_code: npt.NDArray[np.object_]
    customer_no: npt.NDArray[np.object_]
    identity_dealer: npt.NDArray[np.object_]  # the dealer whose number customer_no is
    mobile: npt.NDArray[np.object_]
    car_year: IArr
    # Hidden traits.
    rates: dict[str, dict[str, FArr]]  # channel -> delivered/opened/interacted -> rate
    tolerance: FArr
    interval: FArr
    in_market: BArr
    # State.
    loyalty: FArr
    satisfaction: FArr
    due_day: IArr
    first_done: BArr
    new_owner: BArr  # delivered within the new-owner window at the start or during the run
    mileage: FArr
    last_interaction: IArr
    last_reminder: IArr
    last_winback: IArr
    booked_for: IArr  # a day they said they would come (NEVER: none)
    pressure: FArr = field(default_factory=lambda: np.zeros((MEMORY, 0)))
    unsubscribed: dict[str, BArr] = field(default_factory=dict)
    blocked: BArr = field(default_factory=lambda: np.zeros(0, dtype=bool))
    complaining: BArr = field(default_factory=lambda: np.zeros(0, dtype=bool))
    today: int = 0  # the simulated day being played (a day number)
    new_owner_at_start: BArr = field(default_factory=lambda: np.zeros(0, dtype=bool))
    loyalty_at_start: FArr = field(default_factory=lambda: np.zeros(0))

    @property
    def size(self) -> int:
        """How many customers are simulated."""
        return int(self.ids.size)

    def positions(self, customer_ids: pl.Series | IArr) -> IArr:
        """Positions of store customer ids (every id must be simulated)."""
        ids = np.asarray(customer_ids, dtype=np.int64)
        return self.index[ids]

    def touches_last_month(self) -> FArr:
        """Weighted touches of the last 30 days, per customer."""
        total: FArr = self.pressure.sum(axis=0)
        return total


_FACTS = """
SELECT c.id AS customer_id, c.mobile, COALESCE(p.value_tier, 'none') AS tier,
       COALESCE(p.is_owner, FALSE) AS owner, COALESCE(p.lifecycle_stage, 'prospect') AS stage,
       p.last_visit_date, COALESCE(p.first_maintenance_done, FALSE) AS first_done,
       COALESCE(p.open_complaint, FALSE) AS open_complaint,
       v.vin, v.delivery_date, v.model_year, d.code AS dealer_code, ci.customer_no,
       cd.code AS identity_dealer,
       (SELECT max(o.mileage_km) FROM service_orders o WHERE o.vehicle_id = v.id) AS mileage
FROM customers c
LEFT JOIN customer_profiles p ON p.customer_id = c.id
LEFT JOIN vehicles v ON v.id = (
    SELECT min(v2.id) FROM vehicles v2 WHERE v2.customer_id = c.id)
LEFT JOIN dealers d ON d.id = COALESCE(v.dealer_id, c.home_dealer_id)
LEFT JOIN customer_identities ci ON ci.id = (
    SELECT min(ci2.id) FROM customer_identities ci2 WHERE ci2.customer_id = c.id)
LEFT JOIN dealers cd ON cd.id = ci.dealer_id
ORDER BY c.id
"""

FACT_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.Int64(),
    "mobile": pl.String(),
    "tier": pl.String(),
    "owner": pl.Boolean(),
    "stage": pl.String(),
    "last_visit_date": pl.Date(),
    "first_done": pl.Boolean(),
    "open_complaint": pl.Boolean(),
    "vin": pl.String(),
    "delivery_date": pl.Date(),
    "model_year": pl.Int64(),
    "dealer_code": pl.String(),
    "customer_no": pl.String(),
    "identity_dealer": pl.String(),
    "mileage": pl.Int64(),
}


def load_population(
    conn: Connection, model: ResponseModel, start: dt.date, rng: np.random.Generator
) -> Population:
    """Read the store's customers and draw their hidden traits from ``rng``."""
    return build_population(query_frame(conn, _FACTS, [], FACT_SCHEMA), model, start, rng)


def build_population(
    facts: pl.DataFrame, model: ResponseModel, start: dt.date, rng: np.random.Generator
) -> Population:
    """Customers from their store facts (:data:`FACT_SCHEMA`), hidden traits drawn from ``rng``."""
    n = facts.height
    ids = facts["customer_id"].to_numpy().astype(np.int64)
    index = np.full(int(ids.max(initial=0)) + 1, -1, dtype=np.int64)
    index[ids] = np.arange(n)
    tier = facts["tier"].to_numpy().astype(str)
    tier_code = (
        facts["tier"]
        .replace_strict({t: i for i, t in enumerate(TIERS)}, default=3, return_dtype=pl.Int64)
        .to_numpy()
    )
    today = day_number(start)

    def by_tier(values: dict[str, float]) -> FArr:
        lookup: FArr = np.array([values[t] for t in TIERS], dtype=np.float64)
        picked: FArr = lookup[tier_code]
        return picked

    rates = {
        ch: {
            kind: _uniform(rng, getattr(model.channels[ch], kind), n)
            for kind in ("delivered", "opened", "interacted")
        }
        for ch in CHANNELS
    }
    fatigue, visits = model.fatigue, model.visits
    tolerance = by_tier(fatigue.tolerance) * rng.lognormal(0.0, fatigue.tolerance_sigma, n)
    interval = by_tier(visits.interval_days) * rng.lognormal(0.0, visits.interval_sigma, n)
    beta = np.array([model.loyalty.beta[t] for t in TIERS])[tier_code]
    loyalty = rng.beta(beta[:, 0], beta[:, 1])
    last_visit = _days(facts["last_visit_date"])
    delivered = _days(facts["delivery_date"])
    first_done = facts["first_done"].to_numpy()
    due = np.where(
        last_visit > NEVER,
        last_visit + interval.astype(np.int64),
        np.where(delivered > NEVER, delivered + visits.first_maintenance_days, NEVER),
    )
    # Someone whose records stopped long ago has gone elsewhere: their due day is past, and
    # their loyalty has decayed for every day beyond the churn threshold (not re-simulated).
    overdue = np.clip(today - due - model.loyalty.overdue_after_days, 0, None)
    loyalty = np.clip(loyalty - model.loyalty.overdue_decay * overdue * (due > NEVER), 0.02, 1)
    car_year = facts["model_year"].fill_null(start.year).to_numpy().astype(np.int64)
    age = start.year - car_year
    in_market = (age >= model.purchases.market_car_age_years) & (
        rng.random(n) < model.purchases.market_share
    )
    sat = model.satisfaction
    never = np.full(n, NEVER, dtype=np.int64)
    pop = Population(
        ids=ids,
        index=index,
        tier=tier,
        tier_code=tier_code,
        owner=facts["owner"].to_numpy() & facts["vin"].is_not_null().to_numpy(),
        start_stage=facts["stage"].to_numpy().astype(str),
        vin=facts["vin"].to_numpy(),
        dealer_code=facts["dealer_code"].to_numpy(),
        customer_no=facts["customer_no"].to_numpy(),
        identity_dealer=facts["identity_dealer"].to_numpy(),
        mobile=facts["mobile"].to_numpy(),
        car_year=car_year,
        rates=rates,
        tolerance=tolerance,
        interval=interval,
        in_market=in_market,
        loyalty=loyalty,
        satisfaction=np.clip(rng.normal(sat.start, sat.sigma, n), 0, 100),
        due_day=due.astype(np.int64),
        first_done=first_done.astype(bool),
        new_owner=(delivered > NEVER) & (today - delivered <= 90) & ~first_done,
        mileage=facts["mileage"].fill_null(0).to_numpy().astype(np.float64),
        last_interaction=never.copy(),
        last_reminder=never.copy(),
        last_winback=never.copy(),
        booked_for=never.copy(),
        pressure=np.zeros((MEMORY, n)),
        unsubscribed={ch: np.zeros(n, dtype=bool) for ch in CHANNELS},
        blocked=np.zeros(n, dtype=bool),
        # An open ticket from the records is worked like a new one: called, then resolved.
        complaining=facts["open_complaint"].to_numpy().astype(bool),
        today=today,
    )
    pop.new_owner_at_start = pop.new_owner.copy()
    pop.loyalty_at_start = pop.loyalty.copy()
    return pop


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> FArr:
    return rng.uniform(bounds[0], bounds[1], size=n)


def _days(dates: pl.Series) -> IArr:
    """Day numbers of a date column (NEVER for a missing date)."""
    numbers = dates.cast(pl.Int64).fill_null(NEVER).to_numpy()
    return numbers.astype(np.int64)
