"""The living demo: a generated group, imported, then N simulated days through the real engine.

    python bench/demo_bench.py                    # 20,000 customers x 180 days (the target)
    python bench/demo_bench.py --scale 0.25 --days 60
    python bench/demo_bench.py --cli              # `baoke demo` itself, in a child process
    python bench/demo_bench.py --json

``--scale 1.0`` is ``baoke demo``'s default group of 20,000 customers (seed 42). The in-process
run times each phase as the demo runs it — generate, import, first profiles, the simulated
days (split into the engine's daily run, the dispatch, the response model and the feedback
of outcomes) and the report's measures — and prints them next to the target: the whole demo
in 90 s on a 2-core machine. ``--cli`` runs ``baoke demo --customers N --days D`` in a child
process (wall time including Python's start and the printing, peak memory of the child).
Everything goes to a temporary directory (``--workdir`` to keep it). A fixed calibration
workload is timed before and after the run: runs on other days compare only as far as their
calibrations agree.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

TARGET_SECONDS = 90.0
BASE_CUSTOMERS = 20_000


def _in_process(workdir: Path, customers: int, days: int, seed: int) -> dict[str, Any]:
    from baoke.config import Settings
    from baoke.simulate.generator import GenerateConfig, generate
    from baoke.simulate.model import load_model
    from baoke.simulate.report import print_report
    from baoke.simulate.session import import_group, simulate_group

    settings = Settings(data_dir=workdir / "data", database_url=None)
    started = time.perf_counter()
    generated = generate(GenerateConfig(customers=customers, seed=seed), workdir / "files")
    generate_s = time.perf_counter() - started
    run = import_group(settings, workdir / "files", generated.config.today)
    ends: list[float] = [time.perf_counter()]

    def day_done(_day: object, _counts: object) -> None:
        ends.append(time.perf_counter())

    measures = simulate_group(run, load_model(), generated.config.today, days, seed, day_done)
    per_day = [later - earlier for earlier, later in itertools.pairwise(ends)]
    lap = time.perf_counter()
    print_report(measures, Console(file=io.StringIO(), width=160), "bench")
    printing = time.perf_counter() - lap
    total = time.perf_counter() - started
    assert run.simulation is not None
    head = measures.headline()
    return {
        "mode": "in-process",
        "customers": customers,
        "days": days,
        "seconds": round(total, 1),
        "phases": {
            "generate": round(generate_s, 2),
            "import": round(run.timings["import"], 2),
            "first profiles": round(run.timings["profiles"], 2),
            "simulated days": round(run.timings["days"], 2),
            **{
                f"  {k}": round(v, 2)
                for k, v in sorted(run.simulation.ledger.timings.items(), key=lambda kv: -kv[1])
            },
            "measures": round(run.timings["report"], 2),
            "printing": round(printing, 2),
        },
        "per_day": round(run.timings["days"] / days, 3),
        "day_spread": _day_spread(per_day),
        "sent": int(measures.customers["touches"].sum()),
        "visits": int(head["visits"]),
    }


def _day_spread(per_day: list[float]) -> dict[str, Any]:
    """Median and tail of the simulated days' wall times, and the slowest days (1 = the first)."""
    ranked = sorted(per_day)
    slowest = sorted(range(len(per_day)), key=lambda i: -per_day[i])[:5]
    return {
        "median": round(ranked[len(ranked) // 2], 3),
        "p90": round(ranked[int(len(ranked) * 0.9)], 3),
        "slowest": {i + 1: round(per_day[i], 2) for i in slowest},
    }


def _cli(workdir: Path, customers: int, days: int, seed: int) -> dict[str, Any]:
    from child import run_baoke

    data = workdir / "cli-data"
    done = run_baoke(
        ["demo", "--customers", str(customers), "--days", str(days), "--seed", str(seed)],
        {"BAOKE_DATA_DIR": str(data), "COLUMNS": "160"},
    )
    return {
        "mode": "baoke demo (child process)",
        "customers": customers,
        "days": days,
        "seconds": round(done.seconds, 1),
        "peak_mb": round(done.peak_mb),
    }


def _calibration() -> float:
    """Seconds for a fixed workload like a simulated day's: Python steps and small Polars queries.

    This machine's speed drifts by a third between runs; two runs compare only as far as their
    calibrations agree (taken before and after the run).
    """
    import polars as pl

    frame = pl.DataFrame({"a": list(range(800)), "b": [str(i % 50) for i in range(800)]})
    started = time.perf_counter()
    total = 0
    for i in range(2_000_000):
        total += i % 7
    for _ in range(1_000):
        frame.filter(pl.col("a") > 400).group_by("b").len()
    return round(time.perf_counter() - started, 3)


def main() -> None:
    """Parse the options, run, print the figures (and the target beside them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 20,000 customers")
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cli", action="store_true", help="run `baoke demo` in a child")
    parser.add_argument("--workdir", type=Path, help="keep the files here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    customers = max(100, int(BASE_CUSTOMERS * args.scale))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="baoke-demo-bench-"))
    before = _calibration()
    try:
        run = (_cli if args.cli else _in_process)(workdir, customers, args.days, args.seed)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    run["calibration_s"] = {"before": before, "after": _calibration()}
    scaled_target = TARGET_SECONDS * args.scale * args.days / 180
    run["target_seconds"] = round(scaled_target, 1) if args.scale != 1 or args.days != 180 else 90
    run["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    if args.json:
        print(json.dumps(run, indent=2))
        return
    print(f"{run['mode']}: {customers:,} customers x {args.days} days on {run['machine']}")
    for name, seconds in run.get("phases", {}).items():
        print(f"  {name:<24} {seconds:8.2f} s")
    print(f"  {'total':<24} {run['seconds']:8.1f} s   (target {run['target_seconds']} s)")
    if "day_spread" in run:
        spread = run["day_spread"]
        slowest = ", ".join(f"day {day} {s} s" for day, s in spread["slowest"].items())
        print(f"  a day: median {spread['median']} s, p90 {spread['p90']} s; slowest {slowest}")
    calibration = run["calibration_s"]
    print(f"  calibration {calibration['before']} s before, {calibration['after']} s after")


if __name__ == "__main__":
    main()
