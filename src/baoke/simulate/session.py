"""One simulated group from files to measures: import, profiles, the days, the report's data.

Shared by ``baoke demo`` (one group, the defaults) and ``baoke simulate`` (one run per arm).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from baoke.config import Settings
from baoke.ingest.pipeline import ImportSummary, find_kind_files, import_file
from baoke.profiles.engine import RefreshResult, refresh_profiles
from baoke.simulate.loop import Progress, Simulation
from baoke.simulate.model import ResponseModel
from baoke.simulate.report import Measures, measure
from baoke.store.db import ensure_schema, make_engine

__all__ = ["GroupRun", "import_group", "simulate_group"]


@dataclass
class GroupRun:
    """What one group's run produced, with timings in seconds per phase."""

    settings: Settings
    engine: Engine
    imports: list[ImportSummary] = field(default_factory=list)
    refreshed: RefreshResult | None = None
    simulation: Simulation | None = None
    measures: Measures | None = None
    timings: dict[str, float] = field(default_factory=dict)


def import_group(
    settings: Settings,
    files: Path,
    as_of: dt.date,
    note: Callable[[str], None] | None = None,
) -> GroupRun:
    """Import every generated file into the settings' store and compute the profiles."""
    say = note or (lambda _msg: None)
    started = time.perf_counter()
    engine = make_engine(settings.url)
    ensure_schema(engine)
    run = GroupRun(settings, engine)
    for kind, path in find_kind_files(files):
        say(f"importing {kind} from {path.name}")
        run.imports.append(
            import_file(engine, kind, path, tz=settings.zone, batch_rows=settings.import_batch_rows)
        )
    run.timings["import"] = time.perf_counter() - started
    say("computing profiles, tags and segments")
    lap = time.perf_counter()
    run.refreshed = refresh_profiles(settings, engine, as_of)
    run.timings["profiles"] = time.perf_counter() - lap
    return run


def simulate_group(
    run: GroupRun,
    model: ResponseModel,
    start: dt.date,
    days: int,
    seed: int,
    progress: Progress | None = None,
) -> Measures:
    """Play ``days`` days from ``start`` and measure them."""
    lap = time.perf_counter()
    sim = Simulation(run.settings, run.engine, model, start, seed=seed)
    run.simulation = sim
    try:
        ledger = sim.run(days, progress)
    finally:
        sim.close()
    run.timings["days"] = time.perf_counter() - lap
    lap = time.perf_counter()
    run.measures = measure(
        run.engine,
        sim.population,
        ledger,
        start,
        days,
        run.settings.policy.cost_fen["phone"],
        run.settings.zone,
    )
    run.timings["report"] = time.perf_counter() - lap
    return run.measures
