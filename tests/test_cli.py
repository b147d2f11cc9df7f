"""The ``baoke`` command as a user runs it: real processes, exit codes, stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from baoke.store.db import head_revision

SUBCOMMANDS = [
    [],
    ["version"],
    ["db"],
    ["db", "upgrade"],
    ["db", "status"],
    ["import"],
    ["generate"],
    ["demo"],
    ["simulate"],
    ["imports"],
]


def baoke(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BAOKE_")}
    full_env["BAOKE_DATA_DIR"] = str(cwd / "data")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "baoke", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=lambda c: " ".join(c) or "baoke")
def test_every_subcommand_has_help(command: list[str], tmp_path: Path) -> None:
    result = baoke(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unknown_kind_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a\n1\n", encoding="utf-8")
    line = _one_line_error(baoke("import", "cars", "x.csv", cwd=tmp_path))
    assert "unknown import kind 'cars'" in line


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    line = _one_line_error(baoke("import", "customers", "nope.csv", cwd=tmp_path))
    assert "nope.csv" in line
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 definitely not a workbook")
    line = _one_line_error(baoke("import", "customers", "broken.xlsx", cwd=tmp_path))
    assert "broken.xlsx" in line


def test_bad_settings_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "baoke.toml").write_text('timezone = "Mars/Olympus"\n', encoding="utf-8")
    line = _one_line_error(baoke("db", "status", cwd=tmp_path))
    assert "time zone" in line
    (tmp_path / "baoke.toml").write_text("timezone = [", encoding="utf-8")
    line = _one_line_error(baoke("db", "status", cwd=tmp_path))
    assert "baoke.toml" in line


def test_unreachable_database_is_one_line_without_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://u:s3cret@127.0.0.1:9/none"
    line = _one_line_error(baoke("db", "upgrade", cwd=tmp_path, env={"BAOKE_DATABASE_URL": url}))
    assert "cannot reach the database" in line
    assert "s3cret" not in line


def test_import_json_summary_and_db_status(tmp_path: Path) -> None:
    (tmp_path / "dealers.csv").write_text(
        "经销商代码,经销商名称\nD01,杭州店\nD02,宁波店\n,空代码店\n", encoding="utf-8"
    )
    result = baoke("import", "dealers", "dealers.csv", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["read"], summary["inserted"], summary["quarantined"]) == (3, 2, 1)
    status = baoke("db", "status", cwd=tmp_path)
    assert f"revision: {head_revision()}" in status.stdout
    log = json.loads(baoke("imports", "--json", cwd=tmp_path).stdout)
    assert [(r["kind"], r["status"], r["inserted"]) for r in log] == [("dealers", "done", 2)]


def _report(out: str) -> list[str]:
    """The report's headline lines (the ones that carry the period's numbers)."""
    keys = ("service visit rate", "win-back rate", "spend", "fatigue")
    return [line for line in out.splitlines() if any(k in line for k in keys)]


def test_demo_small_twice(tmp_path: Path) -> None:
    first = baoke("demo", "--customers", "400", "--days", "4", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    for part in ("quarantined", "4 simulated days", "director's report", "where things are"):
        assert part in first.stdout
    # The demo starts afresh every time: the same seed lives the same four days.
    second = baoke("demo", "--customers", "400", "--days", "4", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert _report(first.stdout) == _report(second.stdout) and len(_report(first.stdout)) == 4
    rule = tmp_path / "typo.yaml"
    rule.write_text(
        "name: typo\nlabel: t\ndescription: d\nrule:\n  count:\n    table: events\n"
        '    where: {event_type: model_veiw}\n  ">=": 1\n',
        encoding="utf-8",
    )
    tested = baoke("segments", "test", str(rule), cwd=tmp_path, env={"COLUMNS": "200"})
    assert tested.returncode == 0, tested.stderr
    assert "no customer matches typo" in tested.stdout and "model_view" in tested.stdout
    counted = json.loads(baoke("segments", "count", "tier_high", "--json", cwd=tmp_path).stdout)
    assert counted["members"] > 0
    # The refresh of the day after the demo's last rolls the profiles it left forward.
    day_after = baoke("profiles", "refresh", "--as-of", "2026-11-05", "--json", cwd=tmp_path)
    refreshed = json.loads(day_after.stdout)
    assert refreshed["profiles_rolled"] and not refreshed["facts"]["whole"]
    text = baoke("profiles", "refresh", "--as-of", "2026-11-06", cwd=tmp_path)
    assert "profiles rolled forward" in text.stdout, text.stdout
