"""The simulated days: the real engine runs each day, the response model answers it.

For each day D: ``run_day`` (profiles, events, enrolment, journeys, contact policy) as
``baoke run`` would; the dispatcher sends what is due through the sandbox providers, as it
would have by the evening; the customers answer the day's messages, the staff make the day's
calls, owners come in for service or buy a car; all of it is fed back as receipts, replies,
call logs and DMS imports, which the next day's run processes. Nothing here decides what
baoke sends: the engine does, from what it has been told.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from sqlalchemy import Connection, Engine

from baoke.channels.dispatcher import Dispatcher
from baoke.config import Settings
from baoke.ingest.store_io import query_frame
from baoke.journeys.catalog import Catalog, load_catalog
from baoke.journeys.run import day_end, run_day
from baoke.journeys.steps import UTC
from baoke.playbooks.definitions import TaskStep
from baoke.profiles.engine import snapshot_path
from baoke.profiles.snapshot import Snapshot
from baoke.simulate.feedback import (
    Fed,
    call_events,
    dms_frame,
    feed_events,
    import_dms,
    message_events,
)
from baoke.simulate.generator import vin_check_digit
from baoke.simulate.model import ResponseModel
from baoke.simulate.population import day_number, load_population
from baoke.simulate.responses import answer_calls, answer_messages
from baoke.simulate.visits import DayVisits, draw_visits

__all__ = ["Ledger", "Simulation"]

_HOURS = {"min": 1 / 60, "h": 1.0, "d": 24.0, "w": 168.0, "m": 720.0, "y": 8760.0}
_SEVERITY_SCORE = {"severe": (1, 3), "medium": (4, 6), "light": (7, 8)}
Progress = Callable[[dt.date, dict[str, int]], None]
_WAL = "256MB"  # the open snapshot's log is checkpointed at this size (and at the end)


@dataclass
class Ledger:
    """What happened, day by day, as the simulation saw it (the report reads it)."""

    touches: list[pl.DataFrame] = field(default_factory=list)
    reactions: list[pl.DataFrame] = field(default_factory=list)
    calls: list[pl.DataFrame] = field(default_factory=list)
    visits: list[pl.DataFrame] = field(default_factory=list)
    purchases: list[pl.DataFrame] = field(default_factory=list)
    complaints: list[pl.DataFrame] = field(default_factory=list)
    fed: Fed = field(default_factory=Fed)
    timings: dict[str, float] = field(default_factory=dict)

    def frame(self, name: str) -> pl.DataFrame:
        """All days of one kind of record in one frame (empty if none)."""
        parts = [p for p in getattr(self, name) if p.height]
        return pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()


_SENT = """
SELECT t.id AS touch_id, t.customer_id, t.channel, t.playbook, t.priority, t.cost_fen,
       t.sent_at, t.provider_message_id,
       (SELECT min(s.code) FROM short_links s WHERE s.touch_id = t.id AND s.purpose = 'link')
         AS link
FROM touches t
WHERE t.status = 'sent' AND t.channel <> 'phone' AND t.sent_at >= ? AND t.sent_at < ?
ORDER BY t.id
"""
_SENT_SCHEMA: dict[str, pl.DataType] = {
    "touch_id": pl.Int64(),
    "customer_id": pl.Int64(),
    "channel": pl.String(),
    "playbook": pl.String(),
    "priority": pl.String(),
    "cost_fen": pl.Int64(),
    "sent_at": UTC,
    "provider_message_id": pl.String(),
    "link": pl.String(),
}
_TASKS = """
SELECT id AS task_id, customer_id, due_at, planned_at, playbook, step, version,
       idempotency_key
FROM tasks WHERE status = 'open' AND planned_at IS NOT NULL AND id > ?
ORDER BY id
"""
_TASK_SCHEMA: dict[str, pl.DataType] = {
    "task_id": pl.Int64(),
    "customer_id": pl.Int64(),
    "due_at": UTC,
    "planned_at": UTC,
    "playbook": pl.String(),
    "step": pl.String(),
    "version": pl.String(),
    "idempotency_key": pl.String(),
}


class Simulation:
    """One simulated dealer group on one store, advanced a day at a time."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        model: ResponseModel,
        start: dt.date,
        *,
        seed: int,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.model = model
        self.start = start
        self.zone = settings.zone
        streams = np.random.SeedSequence(seed).spawn(2)
        # Traits from one stream, daily draws from another: two arms with the same seed have
        # the same customers, whatever the arms do.
        self.rng = np.random.default_rng(streams[1])
        with engine.connect() as conn:
            self.population = load_population(conn, model, start, np.random.default_rng(streams[0]))
        self.ledger = Ledger()
        self.files = settings.data_dir / "simulated"
        self._pending_calls = pl.DataFrame()
        self._resolutions: list[tuple[int, int, bool]] = []  # (day, position, in SLA)
        self._last_task = 0
        self._serial = 0
        self._catalog: Catalog | None = None
        self._snapshot: Snapshot | None = None
        self._since = time.perf_counter()

    # ----------------------------------------------------------------------------------------

    def run(self, days: int, progress: Progress | None = None) -> Ledger:
        """Play ``days`` days from the start date; ``progress`` is told after each."""
        for offset in range(days):
            day = self.start + dt.timedelta(days=offset)
            counts = self.play(day)
            if progress:
                progress(day, counts)
        return self.ledger

    def close(self) -> None:
        """Close the analytical snapshot the days keep open (checkpointing it)."""
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None

    def play(self, day: dt.date) -> dict[str, int]:
        """One simulated day through the engine and back; the day's counts."""
        pop = self.population
        number = day_number(day)
        pop.today = number
        self._since = time.perf_counter()
        pop.pressure[number % len(pop.pressure)] = 0.0  # the oldest day leaves the window
        lap = self._lap
        if self._snapshot is None:
            # One snapshot connection for every day: opening the file twice a day and
            # checkpointing it at each close cost more than the refresh's reads (about 0.15 s
            # a day at 20,000 customers).
            self._snapshot = Snapshot(snapshot_path(self.settings), checkpoint_threshold=_WAL)
        ran = run_day(
            self.settings,
            self.engine,
            day,
            until=day_end(day, self.zone),
            snapshot=self._snapshot,
        )
        lap("engine: run_day")
        for phase, seconds in ran.timings.items():
            key = f"engine: run_day: {phase}"
            self.ledger.timings[key] = self.ledger.timings.get(key, 0.0) + seconds
        evening = dt.datetime.combine(day, dt.time(20, 59), self.zone).astimezone(dt.UTC)
        dispatcher = Dispatcher(self.settings, self.engine, clock=lambda: evening)
        try:
            dispatcher.run()
        finally:
            dispatcher.close()
        lap("engine: dispatch")
        start = dt.datetime.combine(day, dt.time(0), self.zone).astimezone(dt.UTC)
        end = day_end(day, self.zone)
        with self.engine.connect() as conn:
            sent = query_frame(conn, _SENT, [start, end], _SENT_SCHEMA)
            tasks = query_frame(conn, _TASKS, [self._last_task], _TASK_SCHEMA)
            catalog = self._catalog_of(conn)
        answered = answer_messages(self.model, pop, self.rng, number, sent)
        calls_today = self._calls(tasks, catalog, end)
        visits = draw_visits(self.model, pop, self.rng, number, self._market_interest(number))
        frames = self._dms(day, answered.reactions, visits)
        lap("response model")
        fed = self.ledger.fed
        with self.engine.begin() as conn:
            reactions = answered.reactions.with_columns(
                pl.Series("mobile", pop.mobile[answered.reactions["position"].to_numpy()])
                if answered.reactions.height
                else pl.lit(None, pl.String).alias("mobile")
            )
            rows, unmatched = message_events(conn, answered.touches, reactions)
            rows.extend(call_events(conn, calls_today))
        fed.unmatched_receipts += unmatched
        feed_events(self.engine, self.zone, rows, fed)
        import_dms(self.engine, self.zone, self.files, day, frames, fed)
        self._record(day, answered.touches, answered.reactions, calls_today, visits)
        lap("feedback")
        return {
            "sent": sent.height,
            "interacted": int(answered.touches["interacted"].sum()) if sent.height else 0,
            "calls": calls_today.height,
            "visits": int(visits.positions.size),
            "reactions": answered.reactions.height,
        }

    # ----------------------------------------------------------------------------------------

    def _lap(self, name: str) -> None:
        """Add the time since the last lap to the ledger's timing of ``name``."""
        now = time.perf_counter()
        timings = self.ledger.timings
        timings[name] = timings.get(name, 0.0) + now - self._since
        self._since = now

    def _catalog_of(self, conn: Connection) -> Catalog:
        if self._catalog is None:
            self._catalog = load_catalog(conn, self.settings, record=False)
        return self._catalog

    def _calls(self, tasks: pl.DataFrame, catalog: Catalog, end: dt.datetime) -> pl.DataFrame:
        """Answer the new tasks now; return the calls that happen before ``end``."""
        pop = self.population
        if tasks.height:
            self._last_task = int(tasks["task_id"].max())  # type: ignore[arg-type]
            tasks = tasks.with_columns(
                pl.Series("sla_hours", [_sla_hours(catalog, row) for row in tasks.iter_rows()]),
                (pl.col("playbook") == "complaint_recovery").fill_null(False).alias("complaint"),
            )
            made = answer_calls(self.model, pop, self.rng, tasks).calls
            self._pending_calls = pl.concat([self._pending_calls, made], how="diagonal_relaxed")
        if self._pending_calls.height == 0:
            return self._pending_calls
        now = self._pending_calls.filter(pl.col("at") < end)
        self._pending_calls = self._pending_calls.filter(pl.col("at") >= end)
        self._after_calls(now)
        return now

    def _after_calls(self, calls: pl.DataFrame) -> None:
        """What a call changes for the customer: a booking, loyalty, a complaint's fate."""
        if calls.height == 0:
            return
        pop, model = self.population, self.model
        pos = calls["position"].to_numpy()
        outcome = calls["outcome"].to_numpy().astype(str)
        books = calls["playbook"].fill_null("").to_numpy().astype(str)
        day = pop.today
        booked = outcome == "booked"
        show = booked & (self.rng.random(pos.size) < model.visits.booked_show)
        pop.booked_for[pos[show]] = day + self.rng.integers(1, 6, int(show.sum()))
        pop.last_interaction[pos[booked]] = day
        winback = booked & (books == "churn_winback")
        np.add.at(pop.loyalty, pos[winback], model.loyalty.winback_regain)
        reached = np.isin(outcome, ["connected", "booked", "refused"])
        complaint = calls["complaint"].to_numpy().astype(bool) & reached
        lo, hi = model.staff.resolve_days
        within = calls["within_sla"].to_numpy().astype(bool)
        for p, ok in zip(pos[complaint], within[complaint], strict=True):
            if pop.complaining[p]:
                self._resolutions.append((day + int(self.rng.integers(lo, hi + 1)), int(p), ok))
                pop.complaining[p] = False
        np.clip(pop.loyalty, 0.0, 1.0, out=pop.loyalty)

    def _market_interest(self, day: int) -> np.ndarray:
        """Customers who interacted with an upgrade or lost-lead touch lately."""
        pop = self.population
        recent = np.zeros(pop.size, dtype=bool)
        window = self.model.visits.memory_days
        books = self.model.relevance.market_playbooks
        for frame in self.ledger.touches[-window:]:
            hit = frame.filter(pl.col("interacted") & pl.col("playbook").is_in(books))
            recent[hit["position"].to_numpy()] = True
        return recent

    # ----------------------------------------------------------------------------------------

    def _dms(
        self, day: dt.date, reactions: pl.DataFrame, visits: DayVisits
    ) -> dict[str, pl.DataFrame]:
        """Today's DMS exports: service orders, complaints (new and resolved), new cars."""
        pop = self.population
        number = day_number(day)
        where = visits.positions
        orders = dms_frame(
            "service-orders",
            {
                "order_no": [f"SIM{number}-{int(pop.ids[p])}" for p in where],
                "dealer_code": pop.dealer_code[where],
                "vin": pop.vin[where],
                "settled_on": [day.isoformat()] * where.size,
                "order_type": np.where(visits.maintenance, "maintenance", "repair"),
                "amount": visits.amount_yuan,
                "mileage": visits.mileage,
            },
        )
        complaints = self._complaint_rows(day, reactions)
        cars = self._new_cars(day, visits.buyers)
        self.ledger.purchases.append(
            pl.DataFrame({"day": [day] * visits.buyers.size, "position": visits.buyers})
        )
        return {"service-orders": orders, "complaints": complaints, "vehicles": cars}

    def _complaint_rows(self, day: dt.date, reactions: pl.DataFrame) -> pl.DataFrame:
        pop, staff = self.population, self.model.staff
        opened = (
            reactions.filter(pl.col("reaction") == "complaint")
            if reactions.height
            else pl.DataFrame()
        )
        new = opened["position"].to_numpy() if opened.height else np.zeros(0, dtype=np.int64)
        severities = list(staff.severity_share)
        severity = self.rng.choice(severities, new.size, p=list(staff.severity_share.values()))
        scores = [int(self.rng.integers(*_SEVERITY_SCORE[s])) for s in severity]
        at = opened["at"].dt.convert_time_zone(str(self.zone)) if opened.height else pl.Series([])
        number = day_number(day)
        rows = {
            "complaint_no": [f"SIMC{number}-{int(pop.ids[p])}" for p in new],
            "dealer_code": list(pop.identity_dealer[new]),
            "customer_no": list(pop.customer_no[new]),
            "opened_at": [a.strftime("%Y-%m-%d %H:%M:%S") for a in at],
            "severity": list(severity),
            "satisfaction": scores,
            "status": ["open"] * new.size,
            "category": ["营销打扰"] * new.size,
            "description": ["客户反映收到的营销信息过多"] * new.size,
            "resolved_at": [None] * new.size,
        }
        if new.size:
            self.ledger.complaints.append(
                pl.DataFrame({"day": [day] * new.size, "position": new, "severity": severity})
            )
            np.add.at(pop.satisfaction, new, self.model.satisfaction.complaint)
        resolved = self._resolved_rows(day)
        frame = dms_frame("complaints", rows)
        return pl.concat([frame, resolved], how="diagonal_relaxed") if resolved.height else frame

    def _resolved_rows(self, day: dt.date) -> pl.DataFrame:
        """Complaints the staff resolve today: their tickets, updated to resolved."""
        number = day_number(day)
        due = [r for r in self._resolutions if r[0] <= number]
        self._resolutions = [r for r in self._resolutions if r[0] > number]
        if not due:
            return pl.DataFrame()
        pop, loyalty, sat = self.population, self.model.loyalty, self.model.satisfaction
        ids = [int(pop.ids[p]) for _, p, _ in due]
        for _, p, ok in due:
            if ok:
                pop.loyalty[p] = min(1.0, pop.loyalty[p] * (1 + loyalty.recovery_bonus))
                pop.satisfaction[p] = min(100.0, pop.satisfaction[p] + sat.recovered)
            else:
                pop.loyalty[p] = max(0.0, pop.loyalty[p] - loyalty.late_recovery_penalty)
        with self.engine.connect() as conn:
            tickets = _open_tickets(conn, ids, str(self.zone))
        at = dt.datetime.combine(day, dt.time(17, 0)).strftime("%Y-%m-%d %H:%M:%S")
        return dms_frame(
            "complaints",
            {
                "complaint_no": tickets["complaint_no"].to_list(),
                "dealer_code": tickets["dealer_code"].to_list(),
                "customer_no": tickets["customer_no"].to_list(),
                "mobile": tickets["mobile"].to_list(),
                "opened_at": tickets["opened_at"].to_list(),
                "severity": tickets["severity"].to_list(),
                "satisfaction": tickets["satisfaction"].to_list(),
                "status": ["resolved"] * tickets.height,
                "category": tickets["category"].to_list(),
                "description": tickets["description"].to_list(),
                "resolved_at": [at] * tickets.height,
            },
        )

    def _new_cars(self, day: dt.date, buyers: np.ndarray) -> pl.DataFrame:
        """Vehicle records of today's purchases, with fresh valid VINs."""
        pop = self.population
        vins = []
        for _ in buyers:
            self._serial += 1
            body = f"LBKSMXAB0T1{self._serial:06d}"
            vins.append(body[:8] + vin_check_digit(body) + body[9:])
        pop.vin[buyers] = vins
        pop.car_year[buyers] = day.year
        return dms_frame(
            "vehicles",
            {
                "vin": vins,
                "dealer_code": list(pop.identity_dealer[buyers]),
                "customer_no": list(pop.customer_no[buyers]),
                "mobile": list(pop.mobile[buyers]),
                "purchase_date": [day.isoformat()] * buyers.size,
                "delivery_date": [day.isoformat()] * buyers.size,
                "price": [self.model.purchases.price_yuan] * buyers.size,
                "model_year": [day.year] * buyers.size,
            },
        )

    def _record(
        self,
        day: dt.date,
        touches: pl.DataFrame,
        reactions: pl.DataFrame,
        calls: pl.DataFrame,
        visits: DayVisits,
    ) -> None:
        keep = [
            "touch_id",
            "position",
            "channel",
            "playbook",
            "cost_fen",
            "delivered",
            "opened",
            "interacted",
            "relevant",
        ]
        if touches.height:
            self.ledger.touches.append(touches.select(keep).with_columns(pl.lit(day).alias("day")))
        if reactions.height:
            self.ledger.reactions.append(
                reactions.select("position", "channel", "playbook", "reaction").with_columns(
                    pl.lit(day).alias("day")
                )
            )
        if calls.height:
            self.ledger.calls.append(
                calls.select(
                    "task_id", "position", "playbook", "outcome", "within_sla", "complaint"
                )
            )
        self.ledger.visits.append(
            pl.DataFrame(
                {
                    "day": [day] * visits.positions.size,
                    "position": visits.positions,
                    "maintenance": visits.maintenance,
                    "first": visits.first,
                    "amount_yuan": visits.amount_yuan,
                }
            )
        )


def _sla_hours(catalog: Catalog, row: tuple[object, ...]) -> float:
    """A task's SLA in hours: its playbook step's, else the time it was given when planned."""
    _tid, _cid, due_at, planned_at, playbook, step, version, _key = row
    if playbook and step and version:
        try:
            found = catalog.get(str(playbook), str(version)).step(str(step))
        except KeyError:
            found = None
        if isinstance(found, TaskStep):
            return found.sla.amount * _HOURS[found.sla.unit]
    if isinstance(due_at, dt.datetime) and isinstance(planned_at, dt.datetime):
        return float(min(48.0, max(1.0, (due_at - planned_at).total_seconds() / 3600)))
    return 4.0


_TICKETS = """
SELECT c.complaint_no, d.code AS dealer_code, ci.customer_no, cu.mobile, c.opened_at,
       c.severity, c.satisfaction, c.category, c.description
FROM complaints c
JOIN dealers d ON d.id = c.dealer_id
JOIN customers cu ON cu.id = c.customer_id
LEFT JOIN customer_identities ci
  ON ci.customer_id = c.customer_id AND ci.dealer_id = c.dealer_id
WHERE c.status IN ('open', 'in_progress') AND c.customer_id IN ({})
"""


def _open_tickets(conn: Connection, ids: list[int], zone: str) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {
        "complaint_no": pl.String(),
        "dealer_code": pl.String(),
        "customer_no": pl.String(),
        "mobile": pl.String(),
        "opened_at": UTC,
        "severity": pl.String(),
        "satisfaction": pl.Int64(),
        "category": pl.String(),
        "description": pl.String(),
    }
    frame = query_frame(conn, _TICKETS.format(", ".join("?" * len(ids))), ids, schema)
    return frame.with_columns(
        pl.col("opened_at").dt.convert_time_zone(zone).dt.strftime("%Y-%m-%d %H:%M:%S"),
        pl.col("customer_no").fill_null(""),
    )
