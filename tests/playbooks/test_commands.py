"""``baoke playbooks`` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def baoke(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAOKE_")}
    env["BAOKE_DATA_DIR"] = str(cwd / "data")
    return subprocess.run(
        [sys.executable, "-m", "baoke", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_list_and_show_the_built_ins(tmp_path: Path) -> None:
    listed = json.loads(baoke("playbooks", "list", "--json", cwd=tmp_path).stdout)
    names = {p["name"] for p in listed}
    assert {"new_owner_activation", "churn_winback", "complaint_recovery"} <= names
    shown = json.loads(baoke("playbooks", "show", "churn_winback", "--json", cwd=tmp_path).stdout)
    assert shown["name"] == "churn_winback"
    sms = [text for key, text in shown["samples"].items() if key.endswith("/sms")]
    assert sms and all(t.startswith("【") and "回复TD退订" in t for t in sms)


def test_validate_reports_each_problem_once_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nlabel: y\nsteps:\n  - id: a\n    send: {channel: fax}\n", encoding="utf-8"
    )
    result = baoke("playbooks", "validate", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(set(lines)) >= 2
    assert all(line.startswith(f"{bad}:") for line in lines)
    unknown = baoke("playbooks", "show", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown playbook" in unknown.stderr
