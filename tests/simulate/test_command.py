"""``baoke simulate`` and ``baoke demo`` as a user runs them: arms, JSON, one-line errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import polars as pl
from tests.test_cli import baoke

from baoke.simulate.compare import Interval, assign_arms, difference, figures


def test_simulate_json_puts_two_arms_side_by_side(tmp_path: Path) -> None:
    done = baoke(
        "simulate",
        "--arm",
        "sms=sms_only",
        "--arm",
        "wecom_led",
        "--customers",
        "300",
        "--days",
        "3",
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [a["arm"] for a in report["arms"]] == ["sms", "wecom_led"]
    assert report["days"] == 3
    # Every customer counts in exactly one arm.
    assert sum(a["customers"] for a in report["arms"]) == _customers_in_store(tmp_path)
    for arm in report["arms"]:
        visit = arm["visit_rate"]
        assert visit["low"] <= visit["value"] <= visit["high"]
        assert arm["cost_yuan"]["value"] >= 0


def _customers_in_store(tmp_path: Path) -> int:
    """The group as imported (the same person at two dealers is one customer)."""
    store = tmp_path / "data" / "simulate" / "sms" / "baoke.db"
    with sqlite3.connect(store) as conn:
        count = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
    return int(count)


def test_a_bad_arm_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for arm, message in (
        ("nope", "nope"),
        ("a=sms_only", None),
        ("bad name=sms_only", "NAME"),
    ):
        args = ["simulate", "--arm", arm, "--arm", "a=wecom_led", "--days", "1"]
        done = baoke(*args, cwd=tmp_path)
        assert done.returncode == 2, done.stdout
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1
        if message:
            assert message in lines[0]
        else:
            assert "two arms are called 'a'" in lines[0]


def test_a_bad_model_file_is_one_line(tmp_path: Path) -> None:
    model = tmp_path / "model.toml"
    model.write_text("[channels]\n", encoding="utf-8")
    done = baoke("demo", "--customers", "100", "--days", "1", "--model", str(model), cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "model.toml" in done.stderr


def test_the_demo_refuses_a_configured_store(tmp_path: Path) -> None:
    done = baoke(
        "demo",
        "--days",
        "1",
        cwd=tmp_path,
        env={"BAOKE_DATABASE_URL": f"sqlite:///{tmp_path / 'mine.db'}"},
    )
    assert done.returncode == 2
    assert "embedded store" in done.stderr
    assert not (tmp_path / "mine.db").exists()


def test_assignment_is_stable_balanced_and_seeded() -> None:
    ids = np.arange(1, 30_001)
    arms = assign_arms(ids, 3, seed=42)
    assert np.array_equal(arms, assign_arms(ids, 3, seed=42))
    counts = np.bincount(arms, minlength=3)
    assert counts.min() > 9_700 and counts.max() < 10_300
    assert (arms != assign_arms(ids, 3, seed=43)).mean() > 0.5


def test_intervals_cover_what_they_should() -> None:
    rng = np.random.default_rng(1)
    n = 4_000
    frame = pl.DataFrame(
        {
            "owner": [True] * n,
            "visited": rng.random(n) < 0.3,
            "visits": rng.poisson(0.4, n).astype(float),
            "cost_yuan": rng.exponential(3.0, n),
            "satisfaction": rng.normal(70, 8, n),
            "unsubscribed": rng.random(n) < 0.01,
            "blocked": rng.random(n) < 0.02,
            "complained": np.zeros(n, dtype=bool),
            "churned": rng.random(n) < 0.05,
        }
    )
    got = figures(frame, seed=3)
    visit = got["visit_rate"]
    assert visit.low < 0.3 < visit.high and visit.high - visit.low < 0.03
    per_visit = got["cost_per_visit"]
    assert per_visit.low < 3.0 / 0.4 < per_visit.high
    assert got["complained"] == Interval(0.0, 0.0, 0.0)
    d = difference(Interval(0.30, 0.28, 0.32), Interval(0.40, 0.38, 0.42))
    assert abs(d.value - 0.10) < 1e-12 and d.low > 0.07 and d.high < 0.13
