"""The ``baoke simulate`` command: arms in, a side-by-side comparison out."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from baoke.config import Settings
from baoke.errors import InputError
from baoke.simulate.arms import Arm, parse_arm_option
from baoke.simulate.compare import compare, comparison_json, print_comparison
from baoke.simulate.generator import GenerateConfig, generate
from baoke.simulate.model import load_model
from baoke.simulate.report import Measures
from baoke.simulate.session import import_group, simulate_group

__all__ = ["run_simulate"]


def _arms(specs: list[str]) -> list[Arm]:
    arms = [parse_arm_option(spec) for spec in specs]
    names = [a.name for a in arms]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"two arms are called {repeated[0]!r}: give each a name, NAME=CONFIG")
    if not 1 <= len(arms) <= 6:
        raise InputError("give between one and six arms")
    return arms


def run_simulate(
    settings: Settings,
    *,
    arms: list[str],
    customers: int,
    days: int,
    seed: int,
    model_path: Path | None,
    as_json: bool,
    console: Console,
) -> None:
    """Generate one group, run it under every arm, print the comparison (or JSON on stdout)."""
    chosen = _arms(arms)
    model = load_model(model_path)
    root = settings.data_dir / "simulate"
    shutil.rmtree(root, ignore_errors=True)
    files = root / "population"
    generated = generate(GenerateConfig(customers=customers, seed=seed), files)
    start = generated.config.today
    console.print(
        f"[bold]baoke simulate[/]: {customers:,} customers (seed {seed}), {days} days, "
        f"{len(chosen)} arms; each customer is counted in one arm, chosen at random. The "
        "customers are a response model (docs/simulation.md), the engine is the real one."
    )
    progress = Progress(
        TextColumn("[bold]{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days"),
        TimeElapsedColumn(),
        console=console,
    )

    def run_arm(arm_settings: Settings, arm: Arm, index: int) -> tuple[Measures, float]:
        started = time.perf_counter()
        task = progress.add_task(f"{arm.label} (importing)", total=days)
        group = import_group(arm_settings, files, start)
        progress.update(task, description=arm.label)
        measures = simulate_group(
            group, model, start, days, seed, lambda _day, _counts: progress.advance(task)
        )
        group.engine.dispose()
        return measures, time.perf_counter() - started

    with progress:
        results = compare(settings, chosen, root, seed, run_arm)
    if as_json:
        print(comparison_json(results, days, start))
        return
    print_comparison(results, console, days)
    console.print(
        "[dim]A model, not a forecast: the figures come from the response model's mechanics "
        "(DOMAIN's channel rates, tolerance of touches, service rhythm) and the seed. Change "
        "the model with --model FILE to see how sensitive a conclusion is.[/]"
    )
