"""The enrolment's order: which occurrence of a day goes first must not depend on row order."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from baoke.journeys.enrol import CANDIDATE_SCHEMA, _first_per_customer
from baoke.playbooks.definitions import load_builtin_playbooks

BOOKS = {book.name: book for book in load_builtin_playbooks()}
AT = dt.datetime(2026, 12, 7, 16, tzinfo=dt.UTC)
# Two date triggers of one playbook, due the same day for the same customers: every key but
# the trigger ties, as a maintenance reminder and an insurance quote do in the service calendar.
_ROWS = [
    ("service_calendar", trigger, "2026-12-08", customer, AT, f"{trigger} falls on 2026-12-08")
    for customer in range(1, 40)
    for trigger in ("maintenance_booking", "insurance_renewal")
] + [("churn_winback", "at_risk", "2026-12-08", c, AT, "entered") for c in range(1, 40)]


def _candidates(order: list[int]) -> pl.DataFrame:
    return pl.DataFrame([_ROWS[i] for i in order], schema=CANDIDATE_SCHEMA, orient="row")


@settings(max_examples=40, deadline=None)
@given(st.permutations(range(len(_ROWS))))
def test_the_first_occurrence_and_the_deferred_do_not_follow_the_rows_order(
    order: list[int],
) -> None:
    first, later = _first_per_customer(_candidates(order), BOOKS)
    expected_first, expected_later = _first_per_customer(
        _candidates(list(range(len(_ROWS)))), BOOKS
    )
    assert first.equals(expected_first)
    assert later.equals(expected_later)
    # One occurrence per (playbook, customer) now, in the order the playbook lists its
    # triggers; the other one in the day's later pass.
    assert first.height == 78 and later.height == 39
    assert set(first.filter(pl.col("playbook") == "service_calendar")["trigger"]) == {
        "maintenance_booking"
    }
    assert set(later["trigger"]) == {"insurance_renewal"}
