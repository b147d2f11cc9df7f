"""Streaming readers: CSV (UTF-8 / UTF-8 BOM / GBK-GB18030), XLSX and JSON Lines.

Every reader yields :class:`Batch` objects whose frame holds one ``pl.String`` column per source
header (null for an empty cell) plus two bookkeeping columns:

``__line__``
    Int64. For CSV the physical line on which the record starts (the header is line 1, blank lines
    count); for XLSX the worksheet row number; for JSONL the 1-based line number.
``__error__``
    String. Null, or a readable structural reason (wrong field count, broken JSON, undecodable
    bytes). The pipeline quarantines such rows; their data columns may be partial or null.

Whole-file problems (missing file, empty file, no header, unknown encoding, corrupt workbook, …)
raise :class:`baoke.errors.InputError` with a single line of explanation.

CSV strategy
------------
The file is read in binary blocks and decoded incrementally (GB18030 is transcoded on the fly, so
no temporary file is needed and memory stays flat). Complete lines are collected into batches.
A batch without an unclosed quoted field (the normal case, including fully-quoted exports) is
parsed by polars' CSV parser; field counts are computed with vectorised string operations, so
ragged rows are flagged instead of aborting the file. When a quoted field spans lines, the
affected records are parsed with Python's :mod:`csv` module and the reader then returns to the
fast path.

JSONL columns
-------------
``inspect_source`` reports the keys of the first 1,000 objects, in first-seen order. Batches from
``iter_batches`` contain those columns first, followed by any keys first seen later, appended in
first-seen order; a later batch may therefore have more columns than an earlier one, but the
columns of an earlier batch are always a prefix of the later one's.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import json
import math
import re
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

from baoke.errors import InputError

LINE_COL = "__line__"
ERROR_COL = "__error__"

CSV_EXTENSIONS = {".csv", ".txt", ".tsv", ".tab"}
XLSX_EXTENSIONS = {".xlsx", ".xlsm"}
JSONL_EXTENSIONS = {".jsonl", ".ndjson", ".json-lines", ".jsonlines"}

_BLOCK_BYTES = 4 * 1024 * 1024
_SNIFF_BYTES = 1024 * 1024
_JSONL_SAMPLE_LINES = 1000


@dataclass(frozen=True)
class SourceInfo:
    """What a source file is: its format, text encoding, headers and size."""

    path: Path
    format: str  # "csv" | "xlsx" | "jsonl"
    encoding: str | None  # "utf-8", "utf-8-sig", "gb18030" for CSV; None otherwise
    columns: list[str]  # original headers, in file order (trimmed, de-duplicated)
    size_bytes: int
    delimiter: str | None = None  # CSV only


@dataclass(frozen=True)
class Batch:
    """A slice of source rows as raw strings, plus ``__line__`` and ``__error__``."""

    frame: pl.DataFrame
    bytes_done: int  # bytes consumed so far (rows consumed for xlsx)


# --------------------------------------------------------------------------------------------
# public API


def inspect_source(path: Path) -> SourceInfo:
    """Detect format, encoding, delimiter and headers of ``path`` without reading it all."""
    path = Path(path)
    size = _check_file(path)
    fmt = detect_format(path)
    if fmt == "csv":
        return _csv_inspect(path, size)
    if fmt == "xlsx":
        return _xlsx_inspect(path, size)
    return _jsonl_inspect(path, size)


def iter_batches(path: Path, batch_rows: int = 50_000) -> Iterator[Batch]:
    """Yield the rows of ``path`` in batches of at most ``batch_rows`` rows."""
    if batch_rows < 1:
        raise ValueError("batch_rows must be positive")
    info = inspect_source(path)
    if info.format == "csv":
        yield from _csv_batches(info, batch_rows)
    elif info.format == "xlsx":
        yield from _xlsx_batches(info, batch_rows)
    else:
        yield from _jsonl_batches(info, batch_rows)


def detect_format(path: Path) -> str:
    """``"csv"``, ``"xlsx"`` or ``"jsonl"`` from the extension, else by sniffing the content."""
    ext = path.suffix.lower()
    if ext == ".xls":
        raise InputError(
            f"{path.name}: old binary Excel (.xls) is not supported; "
            "open it in Excel and save it as .xlsx or CSV (UTF-8)"
        )
    if ext in CSV_EXTENSIONS:
        return "csv"
    if ext in XLSX_EXTENSIONS:
        return "xlsx"
    if ext in JSONL_EXTENSIONS:
        return "jsonl"
    head = _read_head(path, 4096)
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise InputError(
            f"{path.name}: looks like old binary Excel (.xls), which is not supported; "
            "save it as .xlsx or CSV (UTF-8)"
        )
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{"):
        return "jsonl"
    if stripped.startswith(b"["):
        raise InputError(
            f"{path.name}: a JSON array is not supported; export one JSON object per line "
            "(JSON Lines, .jsonl)"
        )
    return "csv"


# --------------------------------------------------------------------------------------------
# shared helpers


def _check_file(path: Path) -> int:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"file not found: {path}") from None
    except PermissionError:
        raise InputError(f"permission denied: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a file")
    if not path.is_file():
        raise InputError(f"{path} is not a regular file")
    try:
        with path.open("rb"):
            pass
    except PermissionError:
        raise InputError(f"permission denied: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot open {path}: {exc.strerror or exc}") from None
    if st.st_size == 0:
        raise InputError(f"file is empty: {path}")
    return st.st_size


def _read_head(path: Path, n: int) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _clean_headers(raw: Sequence[Any]) -> list[str]:
    """Trim headers, drop empty trailing ones, name empty inner ones, de-duplicate."""
    names = ["" if h is None else str(h).replace("\ufeff", "").strip() for h in raw]
    while names and not names[-1]:
        names.pop()
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        base = name or f"column_{i + 1}"
        cand = base
        k = 2
        while cand in seen or cand in (LINE_COL, ERROR_COL):
            cand = f"{base}_{k}"
            k += 1
        seen.add(cand)
        out.append(cand)
    return out


def _frame(
    columns: Sequence[str],
    data: Sequence[Sequence[str | None]],
    lines: Sequence[int],
    errors: Sequence[str | None],
) -> pl.DataFrame:
    series = [
        pl.Series(name, col, dtype=pl.String) for name, col in zip(columns, data, strict=True)
    ]
    series.append(pl.Series(LINE_COL, lines, dtype=pl.Int64))
    series.append(pl.Series(ERROR_COL, errors, dtype=pl.String))
    return pl.DataFrame(series)


def _ragged_reason(expected: int, actual: int) -> str:
    return f"列数不符: 期望 {expected} 列, 实际 {actual} 列"


# --------------------------------------------------------------------------------------------
# CSV


def detect_encoding(path: Path) -> str:
    """``utf-8-sig`` (BOM), ``utf-8`` or ``gb18030``; InputError when none fits.

    Leading pure-ASCII blocks are skipped cheaply; the decision is made on the first block that
    holds non-ASCII bytes plus the block after it, so a multi-byte character cut at a block
    boundary is never misjudged.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
            if head.startswith(codecs.BOM_UTF8):
                return "utf-8-sig"
            if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise InputError(
                    f"{path.name}: UTF-16 text is not supported; save the file as CSV UTF-8"
                )
            fh.seek(0)
            while True:
                block = fh.read(_SNIFF_BYTES)
                if not block:
                    return "utf-8"  # pure ASCII
                if block.isascii():
                    continue
                nxt = fh.read(_SNIFF_BYTES)
                sample = block + nxt
                final = len(nxt) < _SNIFF_BYTES and not fh.read(1)
                return _classify_sample(path, sample, final)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _classify_sample(path: Path, sample: bytes, final: bool) -> str:
    # Previous blocks were pure ASCII, so the sample starts on a character boundary.
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        codecs.getincrementaldecoder("gb18030")().decode(sample, final)
        return "gb18030"
    except UnicodeDecodeError:
        raise InputError(
            f"{path.name}: cannot detect the text encoding (not UTF-8 and not GBK/GB18030); "
            "save the file as CSV UTF-8"
        ) from None


def _detect_delimiter(line: str, path: Path) -> str:
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    counts = {d: line.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] > 0 else ","


class _LineSource:
    """Decoded lines of a text file, with push-back and counters.

    Lines are split on ``\\n`` only; a ``\\r`` of a CRLF line ending stays on the line (the
    fast path strips it vectorised, the csv module handles it itself).
    """

    def __init__(self, fh: BinaryIO, encoding: str) -> None:
        self._fh = fh
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._pending: list[str] = []
        self._pos = 0
        self._tail = ""
        self._eof = False
        self.lines_read = 0  # lines handed out so far
        self.bytes_read = 0

    def _fill(self) -> bool:
        if self._eof:
            return False
        block = self._fh.read(_BLOCK_BYTES)
        self.bytes_read += len(block)
        final = not block
        text = self._tail + self._decoder.decode(block, final)
        if final:
            self._eof = True
            self._tail = ""
            if not text:
                return False
            parts = text.split("\n")
            if parts and parts[-1] == "":
                parts.pop()
        else:
            parts = text.split("\n")
            self._tail = parts.pop()
        if self._pos:
            del self._pending[: self._pos]
            self._pos = 0
        self._pending.extend(parts)
        return True

    def take(self, n: int) -> list[str]:
        while len(self._pending) - self._pos < n and self._fill():
            pass
        out = self._pending[self._pos : self._pos + n]
        self._pos += len(out)
        self.lines_read += len(out)
        return out

    def push_back(self, lines: list[str]) -> None:
        if not lines:
            return
        self._pending[self._pos : self._pos] = lines
        self.lines_read -= len(lines)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        """One line *with* a newline terminator, as the csv module expects."""
        got = self.take(1)
        if not got:
            raise StopIteration
        return got[0] + "\n"


@dataclass(frozen=True)
class _CsvLayout:
    encoding: str
    delimiter: str
    columns: list[str]
    width: int  # fields in the raw header line (incl. empty trailing ones)
    header_lines: int


def _csv_layout(path: Path) -> _CsvLayout:
    encoding = detect_encoding(path)
    with path.open("rb") as fh:
        src = _LineSource(fh, encoding)
        skipped = 0
        while True:
            got = src.take(1)
            if not got:
                raise InputError(f"file has no header row: {path}")
            if got[0].strip():
                first = got[0]
                src.push_back(got)
                break
            skipped += 1
        delimiter = _detect_delimiter(first, path)
        reader = csv.reader(src, delimiter=delimiter)
        try:
            raw = next(reader)
        except (StopIteration, csv.Error):
            raise InputError(f"file has no readable header row: {path}") from None
        columns = _clean_headers(raw)
        if not columns:
            raise InputError(f"file has no header row (first line is empty): {path}")
        return _CsvLayout(
            encoding, delimiter, columns, max(len(raw), len(columns)), skipped + reader.line_num
        )


def _csv_inspect(path: Path, size: int) -> SourceInfo:
    layout = _csv_layout(path)
    return SourceInfo(path, "csv", layout.encoding, layout.columns, size, layout.delimiter)


def _csv_batches(info: SourceInfo, batch_rows: int) -> Iterator[Batch]:
    layout = _csv_layout(info.path)
    delim = layout.delimiter
    d = re.escape(delim)
    quoted_field = rf'(^|{d})"(?:[^"]|"")*"'
    open_quote = rf'(^|{d})"'
    schema = {f"c{i}": pl.String for i in range(layout.width)}
    try:
        fh = info.path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot open {info.path}: {exc.strerror or exc}") from None
    with fh:
        src = _LineSource(fh, layout.encoding)
        src.take(layout.header_lines)
        while True:
            start_line = src.lines_read + 1
            lines = src.take(batch_rows)
            if not lines:
                break
            s = pl.Series("l", lines, dtype=pl.String).str.strip_suffix("\r")
            dequoted = s.str.replace_all(quoted_field, "${1}")
            unclosed = dequoted.str.contains(open_quote)
            cut = len(lines)
            if unclosed.any():
                cut = int(unclosed.arg_true()[0])
            parts: list[pl.DataFrame] = []
            if cut:
                parts.append(
                    _fast_block(s.head(cut), dequoted.head(cut), start_line, layout, schema)
                )
            if cut < len(lines):
                # a quoted field spans lines: let the csv module handle the rest of this batch
                src.push_back(lines[cut:])
                parts.append(_slow_block(src, len(lines) - cut, layout))
            frame = pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]
            if frame.height:
                yield Batch(frame, min(src.bytes_read, info.size_bytes))


def _fast_block(
    lines: pl.Series,
    dequoted: pl.Series,
    start_line: int,
    layout: _CsvLayout,
    schema: dict[str, type[pl.String]],
) -> pl.DataFrame:
    """Parse complete single-line records with polars; count fields for the ragged check."""
    ncols = len(layout.columns)
    meta = pl.DataFrame(
        {
            "l": lines,
            LINE_COL: pl.int_range(start_line, start_line + len(lines), dtype=pl.Int64, eager=True),
            "n": dequoted.str.count_matches(layout.delimiter, literal=True).cast(pl.Int64) + 1,
        }
    ).filter(pl.col("l").str.strip_chars().str.len_bytes() > 0)
    if meta.height == 0:
        return _empty_frame(layout.columns)
    text: str = meta.get_column("l").str.join("\n").item()
    values = pl.read_csv(
        text.encode("utf-8"),
        has_header=False,
        separator=layout.delimiter,
        schema=schema,
        infer_schema=False,
        truncate_ragged_lines=True,
        missing_columns="insert",
        extra_columns="ignore",
        quote_char='"',
        empty_string_is_null=True,
        raise_if_empty=False,
    )
    if values.height != meta.height:  # pragma: no cover - defensive: fall back to csv module
        return _csv_module_block(
            meta.get_column("l").to_list(), meta.get_column(LINE_COL).to_list(), layout
        )
    values = values.select(
        pl.when(pl.col(src).str.len_bytes() > 0).then(pl.col(src)).alias(dst)
        for src, dst in zip(values.columns[:ncols], layout.columns, strict=True)
    )
    n = pl.col("n")
    expected = ncols
    error = (
        pl.when((n < expected) | (n > layout.width))
        .then(pl.format("列数不符: 期望 {} 列, 实际 {} 列", pl.lit(expected), n))
        .when(pl.col("l").str.contains("\ufffd", literal=True))
        .then(pl.lit("编码错误: 含无法解码的字符"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    return pl.concat(
        [values, meta.select(pl.col(LINE_COL), error.alias(ERROR_COL))], how="horizontal"
    )


def _csv_module_block(lines: list[str], line_nos: list[int], layout: _CsvLayout) -> pl.DataFrame:
    """Parse single-line records one by one (defensive fallback)."""
    cols: list[list[str | None]] = [[] for _ in layout.columns]
    errors: list[str | None] = []
    for line in lines:
        fields = next(csv.reader([line], delimiter=layout.delimiter), [])
        _append_record(fields, line, cols, errors, layout)
    return _frame(layout.columns, cols, line_nos, errors)


def _append_record(
    fields: list[str],
    raw: str,
    cols: list[list[str | None]],
    errors: list[str | None],
    layout: _CsvLayout,
) -> None:
    ncols = len(layout.columns)
    for i in range(ncols):
        v = fields[i] if i < len(fields) else ""
        cols[i].append(v if v != "" else None)
    if not (ncols <= len(fields) <= layout.width):
        errors.append(_ragged_reason(ncols, len(fields)))
    elif "\ufffd" in raw:
        errors.append("编码错误: 含无法解码的字符")
    else:
        errors.append(None)


def _slow_block(src: _LineSource, min_lines: int, layout: _CsvLayout) -> pl.DataFrame:
    """Parse records (some spanning lines) with the csv module until ``min_lines`` are used."""
    cols: list[list[str | None]] = [[] for _ in layout.columns]
    errors: list[str | None] = []
    line_nos: list[int] = []
    base = src.lines_read
    reader = csv.reader(src, delimiter=layout.delimiter)
    consumed = 0
    while consumed < min_lines:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # pragma: no cover - strict=False makes this rare
            line_nos.append(base + consumed + 1)
            consumed = reader.line_num
            for c in cols:
                c.append(None)
            errors.append(f"CSV格式错误: {exc}")
            continue
        first = base + consumed + 1
        consumed = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        line_nos.append(first)
        _append_record(fields, layout.delimiter.join(fields), cols, errors, layout)
    return _frame(layout.columns, cols, line_nos, errors)


def _empty_frame(columns: Sequence[str]) -> pl.DataFrame:
    return _frame(columns, [[] for _ in columns], [], [])


# --------------------------------------------------------------------------------------------
# XLSX


def _cell_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e18:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        total = int(value.total_seconds())
        return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
    return str(value)


def _open_workbook(path: Path, fh: BinaryIO) -> Any:
    import openpyxl  # local import: only needed for xlsx

    try:
        # a file object, not the path: openpyxl refuses paths with unknown extensions
        return openpyxl.load_workbook(fh, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises assorted errors on corrupt files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path.name}: not a readable .xlsx workbook ({reason})") from None


def _xlsx_rows(path: Path) -> Generator[tuple[int, tuple[Any, ...]], None, None]:
    """(row number, cell values) of the first non-empty sheet, starting at its first row."""
    with _open_binary(path) as fh:
        wb = _open_workbook(path, fh)
        try:
            for ws in wb.worksheets:
                rows = enumerate(ws.iter_rows(values_only=True), start=1)
                try:
                    for rn, row in rows:
                        if any(_cell_text(v) is not None for v in row):
                            yield rn, row
                            yield from rows
                            return
                except Exception as exc:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise InputError(
                        f"{path.name}: corrupt worksheet '{ws.title}' ({reason})"
                    ) from None
        finally:
            wb.close()


def _xlsx_inspect(path: Path, size: int) -> SourceInfo:
    rows = _xlsx_rows(path)
    try:
        first = next(rows, None)
    finally:
        rows.close()
    if first is None:
        raise InputError(f"{path.name}: the workbook has no data (all sheets are empty)")
    columns = _clean_headers(first[1])
    if not columns:  # pragma: no cover - first non-empty row always has a non-empty cell
        raise InputError(f"{path.name}: no header row")
    return SourceInfo(path, "xlsx", None, columns, size)


def _xlsx_batches(info: SourceInfo, batch_rows: int) -> Iterator[Batch]:
    columns = info.columns
    ncols = len(columns)
    rows = _xlsx_rows(info.path)
    try:
        next(rows)  # header
        consumed = 1
        cols: list[list[str | None]] = [[] for _ in columns]
        lines: list[int] = []
        errors: list[str | None] = []
        for rn, row in rows:
            consumed += 1
            texts = [_cell_text(v) for v in row]
            if not any(t is not None for t in texts):
                continue
            width = len(texts)
            while width and texts[width - 1] is None:
                width -= 1
            for i in range(ncols):
                cols[i].append(texts[i] if i < len(texts) else None)
            lines.append(rn)
            errors.append(_ragged_reason(ncols, width) if width > ncols else None)
            if len(lines) >= batch_rows:
                yield Batch(_frame(columns, cols, lines, errors), consumed)
                cols = [[] for _ in columns]
                lines = []
                errors = []
        if lines:
            yield Batch(_frame(columns, cols, lines, errors), consumed)
    finally:
        rows.close()


# --------------------------------------------------------------------------------------------
# JSONL


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e18:
            return str(int(value))
        return repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _jsonl_lines(fh: BinaryIO) -> Iterator[tuple[int, dict[str, Any] | None, str | None, int]]:
    """(line number, object or None, error or None, bytes read) for each non-blank line."""
    done = 0
    for no, raw in enumerate(fh, start=1):
        done += len(raw)
        if no == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except UnicodeDecodeError:
            yield no, None, "编码错误: 该行不是UTF-8文本", done
            continue
        except ValueError as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            yield no, None, f"JSON格式错误: {msg}", done
            continue
        if not isinstance(obj, dict):
            yield no, None, f"JSON格式错误: 该行不是JSON对象 ({type(obj).__name__})", done
            continue
        yield no, obj, None, done


def _open_binary(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot open {path}: {exc.strerror or exc}") from None


def _jsonl_inspect(path: Path, size: int) -> SourceInfo:
    keys: dict[str, None] = {}
    objects = 0
    with _open_binary(path) as fh:
        for _, obj, _err, _ in _jsonl_lines(fh):
            if obj is None:
                continue
            objects += 1
            for k in obj:
                keys.setdefault(str(k).strip(), None)
            if objects >= _JSONL_SAMPLE_LINES:
                break
    if not keys:
        if objects:
            raise InputError(f"{path.name}: the JSON objects have no keys")
        raise InputError(f"{path.name}: no JSON object found (is this JSON Lines?)")
    return SourceInfo(path, "jsonl", None, _clean_headers(list(keys)), size)


def _jsonl_batches(info: SourceInfo, batch_rows: int) -> Iterator[Batch]:
    columns: list[str] = list(info.columns)
    index = {c: i for i, c in enumerate(columns)}
    with _open_binary(info.path) as fh:
        cols: list[list[str | None]] = [[] for _ in columns]
        lines: list[int] = []
        errors: list[str | None] = []
        done = 0
        for no, obj, err, done in _jsonl_lines(fh):
            n = len(lines)
            for c in cols:
                c.append(None)
            lines.append(no)
            errors.append(err)
            if obj is not None:
                for k, v in obj.items():
                    i = index.get(k)  # keys come stripped mostly: one lookup, no strip
                    if i is None:
                        name = str(k).strip()
                        i = index.get(name)
                        if i is None:
                            if not name or name in (LINE_COL, ERROR_COL):
                                continue
                            i = index[name] = len(columns)
                            columns.append(name)
                            cols.append([None] * (n + 1))
                        index[k] = i
                    # Text, the most common value, without a call (an empty text means none).
                    cols[i][n] = (v or None) if type(v) is str else _json_text(v)
            if len(lines) >= batch_rows:
                yield Batch(_frame(columns, cols, lines, errors), done)
                cols = [[] for _ in columns]
                lines = []
                errors = []
        if lines:
            yield Batch(_frame(columns, cols, lines, errors), done)


__all__ = [
    "ERROR_COL",
    "LINE_COL",
    "Batch",
    "SourceInfo",
    "detect_encoding",
    "detect_format",
    "inspect_source",
    "iter_batches",
]
