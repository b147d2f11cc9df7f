"""QuarantineWriter: lazy creation, BOM, reasons, stale files."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl

from baoke.ingest.quarantine import QuarantineWriter, quarantine_path


def read_back(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


def test_writes_rows_with_reason_and_bom(tmp_path: Path) -> None:
    source = tmp_path / "订单.csv"
    rows = pl.DataFrame(
        {
            "工单号": ["RO1", "RO2"],
            "金额": ["1,5", None],
            "__line__": [2, 3],
            "__error__": [None, "x"],
        }
    )
    with QuarantineWriter(source, ["工单号", "金额"]) as writer:
        assert writer.path is None
        assert not quarantine_path(source).exists()
        writer.write(rows, pl.Series(["金额格式错误: 1,5", "工单号不能为空"]))
        writer.write(rows.head(1), pl.Series(["重复"]))
        assert writer.count == 3
        assert writer.path == tmp_path / "订单.quarantine.csv"
    assert read_back(tmp_path / "订单.quarantine.csv") == [
        ["工单号", "金额", "reason"],
        ["RO1", "1,5", "金额格式错误: 1,5"],
        ["RO2", "", "工单号不能为空"],
        ["RO1", "1,5", "重复"],
    ]


def test_no_bad_rows_creates_nothing_and_removes_stale_file(tmp_path: Path) -> None:
    source = tmp_path / "a.csv"
    stale = quarantine_path(source)
    stale.write_text("old", encoding="utf-8")
    writer = QuarantineWriter(source, ["x"])
    writer.write(pl.DataFrame({"x": []}, schema={"x": pl.String}), pl.Series([], dtype=pl.String))
    assert stale.exists()  # untouched until the run ends
    writer.close()
    assert not stale.exists()
    assert writer.path is None and writer.count == 0


def test_stale_file_replaced_by_new_run(tmp_path: Path) -> None:
    source = tmp_path / "a.xlsx"
    stale = quarantine_path(source)
    stale.write_text("old,stuff\n", encoding="utf-8")
    with QuarantineWriter(source, ["x"]) as writer:
        writer.write(pl.DataFrame({"x": ["1"]}), pl.Series(["bad"]))
    assert stale.name == "a.quarantine.csv"
    assert read_back(stale) == [["x", "reason"], ["1", "bad"]]


def test_missing_columns_and_non_string_values(tmp_path: Path) -> None:
    with QuarantineWriter(tmp_path / "e.jsonl", ["a", "b", "reason"]) as writer:
        writer.write(pl.DataFrame({"a": [1]}), pl.Series(["why"]))
    assert read_back(tmp_path / "e.quarantine.csv") == [
        ["a", "b", "reason", "quarantine_reason"],
        ["1", "", "", "why"],
    ]
