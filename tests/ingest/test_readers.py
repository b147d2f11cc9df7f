"""Readers: formats, encodings, delimiters, ragged rows, whole-file errors."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from baoke.errors import InputError
from baoke.ingest import readers
from baoke.ingest.readers import ERROR_COL, LINE_COL, inspect_source, iter_batches

HEADER = "工单号,经销商代码,车架号,结算日期,金额(元)"
ROWS = [
    "RO001,D001,LSVAU2180N2183294,2024-03-01,1234.50",
    "RO002,D002,LSVAU2180N2183295,2024/3/2,99",
]


def read_all(path: Path, batch_rows: int = 50_000) -> pl.DataFrame:
    frames = [b.frame for b in iter_batches(path, batch_rows=batch_rows)]
    return pl.concat(frames, how="diagonal") if frames else pl.DataFrame()


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# ---- CSV encodings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("gbk", "gb18030"), ("gb18030", "gb18030")],
)
def test_csv_encodings_with_chinese_headers(tmp_path: Path, encoding: str, expected: str) -> None:
    path = write(tmp_path, "orders.csv", "\r\n".join([HEADER, *ROWS]) + "\r\n", encoding)
    info = inspect_source(path)
    assert info.format == "csv"
    assert info.encoding == expected
    assert info.columns == ["工单号", "经销商代码", "车架号", "结算日期", "金额(元)"]
    df = read_all(path)
    assert df.columns == [*info.columns, LINE_COL, ERROR_COL]
    assert df.get_column("工单号").to_list() == ["RO001", "RO002"]
    assert df.get_column("金额(元)").to_list() == ["1234.50", "99"]
    assert df.get_column(LINE_COL).to_list() == [2, 3]
    assert df.get_column(ERROR_COL).null_count() == 2
    assert all(df.schema[c] == pl.String for c in info.columns)


def test_leading_zeros_and_long_numbers_stay_strings(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "客户编号,手机号\n000123,013800138000\n1,13800138000\n")
    df = read_all(path)
    assert df.get_column("客户编号").to_list() == ["000123", "1"]
    assert df.get_column("手机号").to_list() == ["013800138000", "13800138000"]


def test_gbk_char_cut_at_sniff_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The sniff window ends in the middle of a two-byte GBK character: must still be GB18030.
    head = "a,b\n" + "x" * 10 + ","
    data = head.encode() + "中文".encode("gbk") + b"\n"
    path = tmp_path / "g.csv"
    path.write_bytes(data)
    monkeypatch.setattr(readers, "_SNIFF_BYTES", len(head) + 1)  # cuts 中 after its first byte
    assert readers.detect_encoding(path) == "gb18030"
    assert read_all(path).get_column("b").to_list() == ["中文"]


def test_utf8_char_cut_at_sniff_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A three-byte UTF-8 character split by the sniff window is not mistaken for GB18030.
    head = "a,b\nxx,"
    data = head.encode() + "中".encode() + b"\n"
    path = tmp_path / "u.csv"
    path.write_bytes(data)
    for cut in (1, 2):
        monkeypatch.setattr(readers, "_SNIFF_BYTES", len(head) + cut)
        assert readers.detect_encoding(path) == "utf-8"


def test_non_ascii_only_late_in_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "_SNIFF_BYTES", 64)
    text = "a,b\n" + "".join(f"{i},x\n" for i in range(100)) + "1,中文\n"
    path = write(tmp_path, "late.csv", text, "gbk")
    assert readers.detect_encoding(path) == "gb18030"
    assert read_all(path).get_column("b").to_list()[-1] == "中文"


def test_small_blocks_keep_multibyte_chars_and_crlf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "_BLOCK_BYTES", 7)  # splits characters and \r\n pairs
    rows = [f"{i},张三{i},北京" for i in range(50)]
    path = write(tmp_path, "s.csv", "\r\n".join(["id,姓名,城市", *rows]) + "\r\n", "gb18030")
    df = read_all(path, batch_rows=8)
    assert df.height == 50
    assert df.get_column("姓名").to_list() == [f"张三{i}" for i in range(50)]
    assert df.get_column("城市").unique().to_list() == ["北京"]
    assert df.get_column(LINE_COL).to_list() == list(range(2, 52))


def test_undetectable_encoding(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"a,b\n\x80\x80\xff\xfe\x81,\xff\n")
    with pytest.raises(InputError, match="encoding"):
        inspect_source(path)


def test_utf16_rejected(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes("a,b\n1,2\n".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16"):
        inspect_source(path)


# ---- CSV structure ---------------------------------------------------------------------------


@pytest.mark.parametrize(("sep", "name"), [("\t", "t.csv"), (";", "s.csv"), ("\t", "t.tsv")])
def test_delimiter_detection(tmp_path: Path, sep: str, name: str) -> None:
    text = sep.join(["工单号", "金额", "备注"]) + "\n" + sep.join(["RO1", "1,5", "a b"]) + "\n"
    path = write(tmp_path, name, text)
    info = inspect_source(path)
    assert info.delimiter == sep
    df = read_all(path)
    assert df.get_column("金额").to_list() == ["1,5"]
    assert df.get_column("备注").to_list() == ["a b"]


def test_headers_trimmed_and_empty_trailing_columns_dropped(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", " 工单号 , 金额 ,,\nRO1,5,,\nRO2,6\n")
    info = inspect_source(path)
    assert info.columns == ["工单号", "金额"]
    df = read_all(path)
    assert df.columns == ["工单号", "金额", LINE_COL, ERROR_COL]
    assert df.get_column(ERROR_COL).to_list() == [None, None]


def test_duplicate_and_blank_inner_headers(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "备注,,备注\n1,2,3\n")
    assert inspect_source(path).columns == ["备注", "column_2", "备注_2"]


def test_ragged_rows_are_marked_not_fatal(tmp_path: Path) -> None:
    text = "a,b,c\n1,2,3\n4,5\n6,7,8,9\n\n10,11,12\n"
    path = write(tmp_path, "r.csv", text)
    df = read_all(path)
    assert df.get_column("a").to_list() == ["1", "4", "6", "10"]
    assert df.get_column(LINE_COL).to_list() == [2, 3, 4, 6]
    assert df.get_column(ERROR_COL).to_list() == [
        None,
        "列数不符: 期望 3 列, 实际 2 列",
        "列数不符: 期望 3 列, 实际 4 列",
        None,
    ]


def test_empty_cells_are_null_including_quoted_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", 'a,b,c\n"",x,\n')
    df = read_all(path)
    assert df.row(0)[:3] == (None, "x", None)


def test_quoted_fields_and_multiline_records(tmp_path: Path) -> None:
    text = (
        "id,note,amount\n"
        '1,"hello, world","1,234.50"\n'
        '2,"line one\nline two\n""quoted""",5\n'
        "3,plain,6\n"
        '4,"x",7,extra\n'
    )
    path = write(tmp_path, "q.csv", text)
    for batch_rows in (1, 2, 100):
        df = read_all(path, batch_rows=batch_rows)
        assert df.get_column("id").to_list() == ["1", "2", "3", "4"]
        assert df.get_column("note").to_list() == [
            "hello, world",
            'line one\nline two\n"quoted"',
            "plain",
            "x",
        ]
        assert df.get_column(LINE_COL).to_list() == [2, 3, 6, 7]
        assert df.get_column(ERROR_COL).to_list() == [
            None,
            None,
            None,
            "列数不符: 期望 3 列, 实际 4 列",
        ]


def test_batches_respect_batch_rows_and_progress(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i * 2}\n" for i in range(1000))
    path = write(tmp_path, "big.csv", "a,b\n" + rows)
    batches = list(iter_batches(path, batch_rows=300))
    assert [b.frame.height for b in batches] == [300, 300, 300, 100]
    assert batches[-1].bytes_done == path.stat().st_size
    done = [b.bytes_done for b in batches]
    assert done == sorted(done)


def test_leading_blank_lines_before_header(tmp_path: Path) -> None:
    path = write(tmp_path, "lb.csv", "\n\na,b\n1,2\n")
    df = read_all(path)
    assert inspect_source(path).columns == ["a", "b"]
    assert df.get_column(LINE_COL).to_list() == [4]


def test_invalid_utf8_late_in_file_marks_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "_SNIFF_BYTES", 16)  # the bad bytes lie beyond the sample
    path = tmp_path / "bad.csv"
    path.write_bytes("a,b\n1,中\n".encode() + b"1,x\n" * 20 + b"2,\xff\xfe\n")
    df = read_all(path)
    assert readers.detect_encoding(path) == "utf-8"
    assert df.get_column(ERROR_COL).to_list() == [None] * 21 + ["编码错误: 含无法解码的字符"]


# ---- XLSX ----------------------------------------------------------------------------------


def make_xlsx(path: Path, rows: list[list[object]], empty_first_sheet: bool = False) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    if empty_first_sheet:
        ws.title = "说明"
        ws = wb.create_sheet("数据")
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


def test_xlsx_cells_converted(tmp_path: Path) -> None:
    path = make_xlsx(
        tmp_path / "v.xlsx",
        [
            ["车架号", "手机号", "购车日期", "授权时间", "价格", "里程", "是否", "备注"],
            [
                "LSVAU2180N2183294",
                13800138000,
                dt.datetime(2024, 3, 1),
                dt.datetime(2024, 3, 1, 10),
                1234.5,
                12345.0,
                True,
                None,
            ],
            [None, None, None, None, None, None, None, None],
            [
                "LSVAU2180N2183295",
                13800138001.0,
                dt.date(2024, 3, 2),
                "2024-03-02 10:00",
                99,
                0,
                False,
                "x",
            ],
        ],
        empty_first_sheet=True,
    )
    info = inspect_source(path)
    assert info.format == "xlsx"
    assert info.encoding is None
    assert info.columns[:2] == ["车架号", "手机号"]
    df = read_all(path)
    assert df.get_column("手机号").to_list() == ["13800138000", "13800138001"]
    assert df.get_column("购车日期").to_list() == ["2024-03-01", "2024-03-02"]
    assert df.get_column("授权时间").to_list() == ["2024-03-01 10:00:00", "2024-03-02 10:00"]
    assert df.get_column("价格").to_list() == ["1234.5", "99"]
    assert df.get_column("里程").to_list() == ["12345", "0"]
    assert df.get_column("是否").to_list() == ["true", "false"]
    assert df.get_column("备注").to_list() == [None, "x"]
    assert df.get_column(LINE_COL).to_list() == [2, 4]


def test_xlsx_header_not_on_first_row_and_extra_cells(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "h.xlsx", [[None], [" 工单号 ", "金额"], ["RO1", 5, "stray"]])
    assert inspect_source(path).columns == ["工单号", "金额"]
    df = read_all(path)
    assert df.get_column(LINE_COL).to_list() == [3]
    assert df.get_column(ERROR_COL).to_list() == ["列数不符: 期望 2 列, 实际 3 列"]


def test_xlsx_batches(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "b.xlsx", [["a"], *[[i] for i in range(25)]])
    batches = list(iter_batches(path, batch_rows=10))
    assert [b.frame.height for b in batches] == [10, 10, 5]


def test_corrupt_and_empty_xlsx(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(InputError, match="xlsx"):
        inspect_source(bad)
    empty = make_xlsx(tmp_path / "empty.xlsx", [])
    with pytest.raises(InputError, match="no data"):
        inspect_source(empty)


def test_xls_rejected(tmp_path: Path) -> None:
    path = tmp_path / "old.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 100)
    with pytest.raises(InputError, match=r"\.xlsx or CSV"):
        inspect_source(path)
    sniffed = tmp_path / "old.dat"
    sniffed.write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 100)
    with pytest.raises(InputError, match="xls"):
        inspect_source(sniffed)


# ---- JSONL ---------------------------------------------------------------------------------


def test_jsonl_with_broken_line(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {"event_id": "e1", "ts": "2024-03-01 10:00", "props": {"a": 1}, "n": 13800138000.0}
        ),
        "",
        "{not json",
        "[1, 2]",
        json.dumps(
            {"event_id": "e2", "ts": None, "flag": True, "new_key": "x"}, ensure_ascii=False
        ),
    ]
    path = write(tmp_path, "ev.jsonl", "\n".join(lines) + "\n")
    info = inspect_source(path)
    assert info.format == "jsonl"
    assert info.columns == ["event_id", "ts", "props", "n", "flag", "new_key"]
    df = read_all(path)
    assert df.get_column(LINE_COL).to_list() == [1, 3, 4, 5]
    assert df.get_column("event_id").to_list() == ["e1", None, None, "e2"]
    assert df.get_column("props").to_list()[0] == '{"a":1}'
    assert df.get_column("n").to_list()[0] == "13800138000"
    assert df.get_column("flag").to_list()[3] == "true"
    errors = df.get_column(ERROR_COL).to_list()
    assert errors[0] is None and errors[3] is None
    assert errors[1] is not None and errors[1].startswith("JSON格式错误")
    assert errors[2] is not None and "不是JSON对象" in errors[2]


def test_jsonl_new_keys_appended_in_later_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "_JSONL_SAMPLE_LINES", 2)
    objs = [{"a": 1}, {"a": 2}, {"a": 3, "b": "late"}, {"c": 4}]
    path = write(tmp_path, "x.ndjson", "\n".join(json.dumps(o) for o in objs))
    assert inspect_source(path).columns == ["a"]
    batches = [b.frame for b in iter_batches(path, batch_rows=2)]
    assert batches[0].columns == ["a", LINE_COL, ERROR_COL]
    assert batches[1].columns == ["a", "b", "c", LINE_COL, ERROR_COL]
    assert batches[1].get_column("b").to_list() == ["late", None]
    assert batches[1].get_column("c").to_list() == [None, "4"]


def test_jsonl_keys_are_trimmed_and_empty_text_is_none(tmp_path: Path) -> None:
    lines = ['{" a ": "1", "b": ""}', '{"a": "2", " b": "x"}', '{"a ": "", "b": 3}']
    path = write(tmp_path, "k.jsonl", "\n".join(lines) + "\n")
    df = read_all(path)
    assert [c for c in df.columns if c not in (LINE_COL, ERROR_COL)] == ["a", "b"]
    assert df.get_column("a").to_list() == ["1", "2", None]
    assert df.get_column("b").to_list() == [None, "x", "3"]


def test_format_sniffed_for_unknown_extension(tmp_path: Path) -> None:
    assert inspect_source(write(tmp_path, "x.dat", '{"a": 1}\n')).format == "jsonl"
    assert inspect_source(write(tmp_path, "y.dat", "a,b\n1,2\n")).format == "csv"
    xlsx = make_xlsx(tmp_path / "z.xlsx", [["a"], [1]])
    renamed = xlsx.rename(tmp_path / "z.export")
    assert inspect_source(renamed).format == "xlsx"
    with pytest.raises(InputError, match="JSON Lines"):
        inspect_source(write(tmp_path, "arr.dat", "[{}]"))


# ---- whole-file errors ----------------------------------------------------------------------


def test_whole_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        inspect_source(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="directory"):
        inspect_source(tmp_path)
    with pytest.raises(InputError, match="empty"):
        inspect_source(write(tmp_path, "empty.csv", ""))
    with pytest.raises(InputError, match="no header"):
        inspect_source(write(tmp_path, "blank.csv", "\n\n  \n"))
    with pytest.raises(InputError, match="no JSON object"):
        inspect_source(write(tmp_path, "blank.jsonl", "\n\n"))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_permission_denied(tmp_path: Path) -> None:
    path = write(tmp_path, "locked.csv", "a\n1\n")
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="permission denied"):
            inspect_source(path)
    finally:
        path.chmod(0o644)


def test_input_errors_are_one_line(tmp_path: Path) -> None:
    for path in (tmp_path / "nope.csv", write(tmp_path, "e.csv", "")):
        with pytest.raises(InputError) as exc:
            list(iter_batches(path))
        assert "\n" not in exc.value.message


def test_permission_denied_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "locked.csv", "a\n1\n")
    real_open = Path.open

    def fake_open(self: Path, *args: object, **kwargs: object) -> object:
        if self.name == "locked.csv":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", fake_open)
    with pytest.raises(InputError, match="permission denied"):
        inspect_source(path)
