"""A synthetic population for the response model's unit tests (no store needed)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from baoke.simulate.model import ResponseModel, load_model
from baoke.simulate.population import FACT_SCHEMA, Population, build_population

START = dt.date(2026, 11, 1)


def population(
    n: int,
    *,
    tier: str = "mid",
    last_visit_days_ago: int = 150,
    model: ResponseModel | None = None,
    seed: int = 1,
) -> Population:
    """``n`` owners of one tier whose last visit was ``last_visit_days_ago`` days ago."""
    facts = pl.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "mobile": [f"139{i:08d}" for i in range(n)],
            "tier": [tier] * n,
            "owner": [True] * n,
            "stage": ["maintained"] * n,
            "last_visit_date": [START - dt.timedelta(days=last_visit_days_ago)] * n,
            "first_done": [True] * n,
            "open_complaint": [False] * n,
            "vin": [f"VIN{i:014d}" for i in range(n)],
            "delivery_date": [START - dt.timedelta(days=800)] * n,
            "model_year": [2023] * n,
            "dealer_code": ["D001"] * n,
            "customer_no": [f"C{i}" for i in range(n)],
            "identity_dealer": ["D001"] * n,
            "mileage": [20_000] * n,
        },
        schema=FACT_SCHEMA,
    )
    return build_population(facts, model or load_model(), START, np.random.default_rng(seed))


def sends(
    customer_ids: np.ndarray,
    channel: str,
    *,
    playbook: str = "care_moments",
    priority: str = "care",
) -> pl.DataFrame:
    """One day's sent messages, one per customer id given."""
    at = dt.datetime(2026, 11, 1, 12, 59, tzinfo=dt.UTC)
    n = customer_ids.size
    return pl.DataFrame(
        {
            "touch_id": np.arange(1, n + 1),
            "customer_id": customer_ids,
            "channel": [channel] * n,
            "playbook": [playbook] * n,
            "priority": [priority] * n,
            "sent_at": [at] * n,
        },
        schema_overrides={"sent_at": pl.Datetime("us", "UTC")},
    )
