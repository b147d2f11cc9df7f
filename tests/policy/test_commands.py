"""``baoke plan`` and ``baoke plan explain`` as a user runs them, on a small generated group."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from tests.journeys.test_commands import DAY, baoke, ok, one_line_error


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A generated group of 400 customers, imported, and its first daily run (as JSON)."""
    root = tmp_path_factory.mktemp("plan")
    ok("generate", "--customers", "400", "--seed", "11", "--out", str(root / "group"), home=root)
    ok("import", "all", str(root / "group"), home=root)
    first = json.loads(ok("run", "--date", DAY, "--json", home=root))
    return root, first


def test_the_run_plans_and_the_plan_command_shows_the_stored_plan(
    planned: tuple[Path, dict[str, Any]],
) -> None:
    home, first = planned
    assert first["plan"]["candidates"] > 0
    plan = json.loads(ok("plan", "--date", DAY, "--json", home=home))
    assert plan["decided_now"]["candidates"] == 0  # the run decided them already
    assert plan["candidates"] == first["plan"]["candidates"]
    assert plan["outcomes"] == first["plan"]["outcomes"]
    assert plan["touches"] == sum(row["touches"] for row in plan["by_channel"])
    assert plan["cost_fen"] == sum(row["cost_fen"] for row in plan["by_playbook"])
    assert sum(row["n"] for row in plan["not_sent_by_rule"]) == plan["candidates"] - plan["touches"]
    text = ok("plan", "--date", DAY, home=home)
    assert f"plan {DAY}" in text and "by channel" in text and "not sent, by rule" in text


def test_explain_names_each_candidate_and_masks_the_customer(
    planned: tuple[Path, dict[str, Any]],
) -> None:
    home, _ = planned
    plan = json.loads(ok("plan", "--date", DAY, "--json", home=home))
    assert plan["candidates"] > 0
    # A customer with a dropped candidate: the explanation names the rule.
    rows = json.loads(ok("plan", "explain", "1", "--json", home=home))
    assert rows["customer_id"] == 1
    customer = _customer_with_decisions(home)
    found = json.loads(ok("plan", "explain", str(customer), "--date", DAY, "--json", home=home))
    assert found["decisions"] and all(d["reason"] for d in found["decisions"])
    assert found["mobile"] is None or "****" in found["mobile"]
    assert len(found["greeting"]) <= 3
    screen = ok("plan", "explain", str(customer), "--date", DAY, home=home)
    assert "this month:" in screen and "channels:" in screen
    assert found["decisions"][0]["outcome_words"] in screen


def _customer_with_decisions(home: Path) -> int:
    import sqlite3

    db = sqlite3.connect(home / "data" / "baoke.db")
    try:
        (cid,) = db.execute(
            "SELECT customer_id FROM policy_decisions ORDER BY customer_id LIMIT 1"
        ).fetchone()
    finally:
        db.close()
    return int(cid)


def test_a_dry_run_decides_without_writing(planned: tuple[Path, dict[str, Any]]) -> None:
    home, first = planned
    deferred = first["plan"]["outcomes"].get("deferred", 0)
    assert deferred > 0  # moved to the next day: that day's plan decides them again
    nxt = (dt.date.fromisoformat(DAY) + dt.timedelta(days=1)).isoformat()
    dry = json.loads(ok("plan", "--date", nxt, "--dry-run", "--json", home=home))
    assert dry["dry_run"] is True and dry["candidates"] == deferred
    again = json.loads(ok("plan", "--date", nxt, "--dry-run", "--json", home=home))
    assert again["outcomes"] == dry["outcomes"]  # nothing was written, the same is decided
    assert "would plan" in ok("plan", "--date", nxt, "--dry-run", home=home)


def test_bad_input_is_one_line(planned: tuple[Path, dict[str, Any]]) -> None:
    home, _ = planned
    assert "--date" in one_line_error(baoke("plan", "--date", "2026-02-30", home=home))
    assert "no customer 99999999" in one_line_error(baoke("plan", "explain", "99999999", home=home))
    assert "no customer with mobile" in one_line_error(
        baoke("plan", "explain", "13900000000", home=home)
    )
    assert "by id or mobile" in one_line_error(baoke("plan", "explain", "张三", home=home))
    config = home / "baoke.toml"
    config.write_text('[policy]\nquiet_hours = ["21:00", "08:00"]\n', encoding="utf-8")
    try:
        line = one_line_error(baoke("plan", "--date", DAY, home=home))
    finally:
        config.unlink()
    assert "policy.quiet_hours" in line and "start before the end" in line
