"""``baoke run``, ``events ingest``, ``journeys``, ``candidates`` and ``playbooks disable`` as a
user runs them: real processes on a small generated group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from baoke.simulate.generator import DEFAULT_AS_OF

DAY = DEFAULT_AS_OF.isoformat()


def baoke(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAOKE_")}
    env["BAOKE_DATA_DIR"] = str(home / "data")
    return subprocess.run(
        [sys.executable, "-m", "baoke", *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ok(*args: str, home: Path) -> str:
    done = baoke(*args, home=home)
    assert done.returncode == 0, done.stderr
    return done.stdout


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def day_one(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A generated group of 400 customers, imported, and its first daily run (as JSON).

    Module-scoped, and so once per test worker: every test finds the day already run.
    """
    root = tmp_path_factory.mktemp("cli")
    ok("generate", "--customers", "400", "--seed", "5", "--out", str(root / "group"), home=root)
    ok("import", "all", str(root / "group"), home=root)
    first = json.loads(ok("run", "--date", DAY, "--json", home=root))
    return root, first


@pytest.fixture
def home(day_one: tuple[Path, dict[str, Any]]) -> Path:
    """The data directory of the group after its first daily run."""
    return day_one[0]


def test_run_enrols_and_a_rerun_adds_nothing(day_one: tuple[Path, dict[str, Any]]) -> None:
    home, first = day_one
    assert first["profiles_refreshed"] is True
    assert first["enrolment"]["enrolled"] > 0
    assert first["advance"]["touches"] > 0 and first["advance"]["tasks"] >= 0
    again = json.loads(ok("run", "--date", DAY, "--skip-profiles", "--json", home=home))
    assert again["enrolment"]["enrolled"] == 0
    assert again["advance"]["touches"] == again["advance"]["tasks"] == 0
    listed = json.loads(ok("journeys", "list", "--json", "--limit", "5", home=home))
    assert sum(c["n"] for c in listed["counts"]) >= first["enrolment"]["enrolled"]
    journey = listed["journeys"][0]["id"]
    shown = ok("journeys", "show", str(journey), home=home)
    assert "enrol" in shown or "holdout" in shown


def test_candidates_are_rendered_with_names_masked(home: Path) -> None:
    data = json.loads(ok("candidates", "--date", DAY, "--json", home=home))
    assert data["totals"]["touches"] > 0
    for touch in data["touches"]:
        assert "{{" not in touch["text"] and "cannot render" not in touch["text"]
        assert len(touch["greeting"]) <= 3  # 张先生, never the full name


def test_disable_is_audited_and_listed(home: Path) -> None:
    ok("playbooks", "disable", "upgrade_replacement", "--reason", "旺季暂停", home=home)
    rows = json.loads(ok("playbooks", "list", "--json", home=home))
    row = next(r for r in rows if r["name"] == "upgrade_replacement")
    assert row["enabled"] is False and row["disabled_by_operator"] == "旺季暂停"
    ok("playbooks", "enable", "upgrade_replacement", home=home)
    rows = json.loads(ok("playbooks", "list", "--json", home=home))
    assert next(r for r in rows if r["name"] == "upgrade_replacement")["enabled"] is True
    assert "unknown playbook" in one_line_error(
        baoke("playbooks", "disable", "no_such_book", home=home)
    )


def test_events_ingest_quarantines_bad_rows(home: Path) -> None:
    events = home / "events.jsonl"
    rows = [
        {
            "type": "complaint_opened",
            "customer_id": 1,
            "occurred_at": f"{DAY}T10:00:00+08:00",
            "severity": "severe",
        },
        {
            "type": "complaint_opened",
            "customer_id": 1,
            "occurred_at": f"{DAY}T10:05:00+08:00",
            "severity": "catastrophic",
        },
    ]
    events.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    data = json.loads(ok("events", "ingest", str(events), "--json", home=home))
    assert (data["rows_read"], data["stored"]) == (2, 1)
    assert data["quarantine_file"] and Path(data["quarantine_file"]).exists()
    assert "catastrophic" in Path(data["quarantine_file"]).read_text(encoding="utf-8-sig")


def test_bad_input_is_one_line(home: Path) -> None:
    assert "--date" in one_line_error(baoke("run", "--date", "2026-13-01", home=home))
    assert "no such file" in one_line_error(baoke("events", "ingest", "nope.jsonl", home=home))
    assert "no journey" in one_line_error(baoke("journeys", "show", "99999999", home=home))
