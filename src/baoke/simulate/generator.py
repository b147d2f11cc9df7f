"""``baoke generate``: a realistic synthetic dealer group, deterministic per seed.

Design notes (why the code looks the way it does):

* Everything is drawn from numpy generators seeded from ``SeedSequence(seed)``; each import
  kind gets its own child stream so that changing how one file is drawn does not reshuffle the
  others. Same seed + same config → byte-identical files (no wall-clock anywhere, the zip
  entries of the XLSX files carry a fixed timestamp, the manifest has no timings).
* Nothing loops per customer in Python: columns are numpy arrays and strings are assembled
  with polars expressions (gathers from small lookup tables, ``concat_str``, ``strftime``).
  The only Python loops run over dealers, staff-sized tables or the visit number of the
  maintenance simulation (a few dozen iterations over shrinking arrays).
* Files mimic what Chinese DMS/CRM exports look like: Chinese headers (``headers[0]`` of each
  field in :mod:`baoke.ingest.kinds`), Chinese enum spellings, GBK with CRLF for the classic
  DMS exports, UTF-8 (with BOM for the one Excel-edited sheet), XLSX for CRM exports and JSON
  Lines for the app tracking export.
* Dirty rows are exact: each carries one value that the import contract rejects in a required
  or key field, and no clean row depends on a dirty one (dirty customers and vehicles are extra
  rows nothing else references; dirty orders and consents are leaves).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from baoke.ingest.kinds import IMPORT_ORDER, KINDS
from baoke.simulate import catalog as cat

IArr = npt.NDArray[np.int64]
FArr = npt.NDArray[np.float64]
BArr = npt.NDArray[np.bool_]

EPOCH = dt.date(1970, 1, 1)
DEFAULT_AS_OF = dt.date(2026, 11, 1)
YEAR = 365.25
# The file each kind is written to and its encoding label (as recorded in the manifest).
KIND_FILES: dict[str, tuple[str, str]] = {
    "dealers": ("dealers.csv", "utf-8-sig"),
    "staff": ("staff.csv", "gbk"),
    "customers": ("customers.csv", "gbk"),
    "vehicles": ("vehicles.csv", "utf-8"),
    "service-orders": ("service_orders.csv", "gbk"),
    "leads": ("leads.xlsx", "xlsx"),
    "complaints": ("complaints.xlsx", "xlsx"),
    "consents": ("consents.csv", "utf-8"),
    "events": ("events.jsonl", "jsonl"),
    "wecom-relations": ("wecom_relations.csv", "utf-8"),
}
MANIFEST = "manifest.json"
# Fixed timestamp for XLSX zip entries: wall-clock time would break byte-identical output.
_ZIP_TIME = (2026, 1, 1, 0, 0, 0)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate. Only ``customers`` and ``seed`` usually need setting."""

    customers: int = 20_000
    seed: int = 42
    dealers: int | None = None  # default: max(3, customers // 2500), at most 400
    dirty_share: float = 0.01  # share of deliberately invalid rows in the DMS files
    as_of: dt.date | None = None  # "today" of the data; default DEFAULT_AS_OF

    @property
    def dealer_count(self) -> int:
        """The number of dealers (stores) actually generated."""
        if self.dealers is not None:
            return max(1, self.dealers)
        return max(3, min(400, self.customers // 2500))

    @property
    def today(self) -> dt.date:
        """The as-of date of the data (fixed, so a seed always gives the same files)."""
        return self.as_of or DEFAULT_AS_OF


@dataclass
class GeneratedFile:
    """One generated import file and what was planted in it."""

    kind: str  # import kind name from kinds.KINDS
    path: Path
    rows: int  # data rows, header excluded, dirty and duplicate rows included
    dirty_rows: int  # rows that must be quarantined on import
    encoding: str  # "gbk", "utf-8", "utf-8-sig", "xlsx" or "jsonl"
    duplicate_rows: int = 0  # exact copies of an earlier row (imported as "unchanged")
    vin_warnings: int = 0  # clean rows whose VIN has a wrong check digit (kept, with a warning)


@dataclass
class GenerateResult:
    """All files of one run, in :data:`baoke.ingest.kinds.IMPORT_ORDER`."""

    files: list[GeneratedFile]
    config: GenerateConfig
    seconds: float

    def file(self, kind: str) -> GeneratedFile:
        """The generated file of import kind ``kind``."""
        for f in self.files:
            if f.kind == kind:
                return f
        raise KeyError(kind)


def generate(
    config: GenerateConfig,
    out_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> GenerateResult:
    """Write one synthetic dealer group's import files plus ``manifest.json`` into ``out_dir``.

    Deterministic: the same config always produces byte-identical files.
    """
    if config.customers < 10:
        raise ValueError("customers must be at least 10")
    if not 0.0 <= config.dirty_share < 0.5:
        raise ValueError("dirty_share must be in [0, 0.5)")
    if not 2020 <= config.today.year <= 2030:
        # ten years of history must fall inside the catalogue's launches and VIN year codes
        raise ValueError("as_of must be a date in 2020–2030")
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    world = _World(config, out_dir, say)
    world.run()
    files = sorted(world.files, key=lambda f: IMPORT_ORDER.index(f.kind))
    _write_manifest(config, out_dir, files)
    seconds = time.perf_counter() - started
    say(f"done in {seconds:.1f}s")
    return GenerateResult(files=files, config=config, seconds=seconds)


def read_manifest(out_dir: Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a generated directory."""
    data: dict[str, Any] = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    return data


def vin_check_digit(vin: str) -> str:
    """The ISO 3779 check digit (position 9) that ``vin`` should carry."""
    total = sum(_VIN_VALUE[ord(c)] * w for c, w in zip(vin.upper(), _VIN_WEIGHTS, strict=True))
    rem = int(total % 11)
    return "X" if rem == 10 else str(rem)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

_VIN_WEIGHTS = np.array([8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2], dtype=np.int64)
_VIN_VALUE = np.zeros(256, dtype=np.int64)
for _i in range(10):
    _VIN_VALUE[ord("0") + _i] = _i
for _chars, _start in (("ABCDEFGH", 1), ("JKLMN", 1), ("P", 7), ("R", 9), ("STUVWXYZ", 2)):
    for _j, _c in enumerate(_chars):
        _VIN_VALUE[ord(_c)] = _start + _j


def _day(d: dt.date) -> int:
    return (d - EPOCH).days


def _lut(values: Sequence[str], index: pl.Expr | str) -> pl.Expr:
    """Gather strings from a small lookup table by an integer column (cheap at any scale)."""
    idx = pl.col(index) if isinstance(index, str) else index
    return pl.lit(pl.Series(values, dtype=pl.String)).gather(idx)


def _as_date(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Int32).cast(pl.Date)


def _as_datetime(col: str) -> pl.Expr:
    """Seconds since the epoch (business-local time) → naive Datetime."""
    return (pl.col(col).cast(pl.Int64) * 1000).cast(pl.Datetime("ms"))


def _ymd(days: IArr) -> tuple[IArr, IArr, IArr]:
    d = days.astype("datetime64[D]")
    y = d.astype("datetime64[Y]").astype(np.int64) + 1970
    m_start = d.astype("datetime64[M]")
    m = m_start.astype(np.int64) % 12 + 1
    dd = (d - m_start.astype("datetime64[D]")).astype(np.int64) + 1
    return y, m, dd


def _choice(rng: np.random.Generator, n: int, weights: Sequence[float]) -> IArr:
    p = np.asarray(weights, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum()).astype(np.int64)


def _seq_within(groups: IArr) -> IArr:
    """0, 1, 2 … within runs of equal values of an already sorted array."""
    n = groups.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.ones(n, dtype=bool)
    starts[1:] = groups[1:] != groups[:-1]
    start_pos = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    return np.arange(n, dtype=np.int64) - start_pos


def _hours(rng: np.random.Generator, n: int, lo: int, hi: int) -> IArr:
    """Random second-of-day between lo:00 and hi:00 (business hours)."""
    return rng.integers(lo * 3600, hi * 3600, n, dtype=np.int64)


def _unique_mobiles(rng: np.random.Generator, n: int) -> IArr:
    """n distinct valid mainland mobiles (1[3-9]x + 8 digits), order random but reproducible."""
    prefixes = np.array(cat.MOBILE_PREFIXES, dtype=np.int64)
    got = np.zeros(0, dtype=np.int64)
    while got.size < n:
        need = int((n - got.size) * 1.05) + 16
        draw = prefixes[rng.integers(0, prefixes.size, need)] * 100_000_000 + rng.integers(
            0, 100_000_000, need
        )
        both = np.concatenate([got, draw])
        _, first = np.unique(both, return_index=True)
        got = both[np.sort(first)]
    return got[:n]


def _mobile_text(col: str, fmt: str) -> pl.Expr:
    """A mobile written the way people type it: plain mostly, else spaced / +86 / dashed."""
    s = pl.col(col).cast(pl.String)
    f = pl.col(fmt)
    spaced = pl.concat_str([s.str.slice(0, 3), s.str.slice(3, 4), s.str.slice(7, 4)], separator=" ")
    dashed = pl.concat_str([s.str.slice(0, 3), s.str.slice(3, 4), s.str.slice(7, 4)], separator="-")
    return (
        pl.when(f == 1)
        .then(spaced)
        .when(f == 2)
        .then(pl.concat_str([pl.lit("+86 "), s]))
        .when(f == 3)
        .then(pl.concat_str([pl.lit("+86"), s]))
        .when(f == 4)
        .then(pl.concat_str([pl.lit("86"), s]))
        .when(f == 5)
        .then(dashed)
        .otherwise(s)
    )


def _mobile_formats(rng: np.random.Generator, n: int) -> IArr:
    # plain 88 %, "138 0013 8000" 5 %, "+86 1380…" 3 %, "+861380…" 2 %, "861380…" 1 %, dashed 1 %
    return _choice(rng, n, (0.88, 0.05, 0.03, 0.02, 0.01, 0.01))


def _fen_text(col: str) -> pl.Expr:
    """Integer fen → yuan text with exactly two decimals ("1234.50"), negative-safe."""
    c = pl.col(col)
    a = c.abs()
    sign = pl.when(c < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.concat_str(
        [sign, (a // 100).cast(pl.String), pl.lit("."), (a % 100).cast(pl.String).str.zfill(2)]
    )


def _labels(kind: str, df: pl.DataFrame) -> pl.DataFrame:
    """Order columns as the kind declares them and rename them to their Chinese headers."""
    spec = KINDS[kind]
    names = [n for n in spec.field_names if n in df.columns]
    return df.select(names).rename({n: spec.field(n).headers[0] for n in names})


def _enum_text(kind: str, field_name: str) -> dict[str, str]:
    """Canonical enum value → the Chinese spelling a DMS exports (first accepted spelling)."""
    spec = KINDS[kind].field(field_name)
    out = {}
    for key, spellings in spec.choices.items():
        chinese = [x for x in (key, *spellings) if not x.isascii()]
        out[key] = chinese[0] if chinese else spellings[0]
    return out


def _dup_positions(rng: np.random.Generator, candidates: IArr, k: int) -> IArr:
    if k <= 0 or candidates.size == 0:
        return np.zeros(0, dtype=np.int64)
    k = min(k, candidates.size)
    return np.sort(rng.choice(candidates, size=k, replace=False)).astype(np.int64)


def _with_duplicates(df: pl.DataFrame, positions: IArr) -> pl.DataFrame:
    """Insert an exact copy of each row in ``positions`` right after it (a double export)."""
    if positions.size == 0:
        return df
    order = np.sort(np.concatenate([np.arange(df.height, dtype=np.int64), positions]))
    return df[order]


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------

_CSV_OPTS: dict[str, Any] = {
    "date_format": "%Y-%m-%d",
    "datetime_format": "%Y-%m-%d %H:%M:%S",
    "time_format": "%H:%M",
}


_SLICE_ROWS = 1_000_000


class _CsvWriter:
    """Appends frames to one CSV file in the given encoding, header first.

    polars only writes UTF-8, so GBK output is transcoded slice by slice (memory stays flat at
    millions of rows); GBK files also get CRLF line ends, like the Windows DMS exports they
    mimic.
    """

    def __init__(self, path: Path, encoding: str) -> None:
        self.encoding = encoding
        self.fh = path.open("wb")
        self.header = True
        if encoding == "utf-8-sig":
            self.fh.write(b"\xef\xbb\xbf")

    def write(self, df: pl.DataFrame) -> None:
        if self.encoding in ("utf-8", "utf-8-sig"):
            df.write_csv(self.fh, include_header=self.header, **_CSV_OPTS)
            self.header = False
            return
        for part in df.iter_slices(n_rows=250_000) if df.height else [df]:
            buf = io.BytesIO()
            part.write_csv(buf, include_header=self.header, line_terminator="\r\n", **_CSV_OPTS)
            self.fh.write(buf.getvalue().decode("utf-8").encode(self.encoding))
            self.header = False

    def __enter__(self) -> _CsvWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


def _write_csv(df: pl.DataFrame, path: Path, encoding: str) -> None:
    """Write ``df`` as one CSV file in ``encoding`` ("utf-8", "utf-8-sig" or "gbk")."""
    with _CsvWriter(path, encoding) as sink:
        sink.write(df)


def _col_letter(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


def _xml_escape(e: pl.Expr) -> pl.Expr:
    return (
        e.str.replace_all("&", "&amp;", literal=True)
        .str.replace_all("<", "&lt;", literal=True)
        .str.replace_all(">", "&gt;", literal=True)
    )


_XLSX_STATIC = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/styles.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
        "</Types>"
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/worksheet" Target="worksheets/sheet1.xml"/>'
        '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/styles" Target="styles.xml"/></Relationships>'
    ),
    "xl/styles.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        '<fonts count="1"><font><sz val="11"/><name val="等线"/></font></fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
        "</cellStyleXfs>"
        '<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        "</cellXfs>"
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        "</styleSheet>"
    ),
}


def _write_xlsx(df: pl.DataFrame, path: Path, sheet: str) -> None:
    """A minimal, valid XLSX with inline strings, built column-wise with polars.

    openpyxl's write-only mode costs ~20 µs per cell and stamps the current time into the
    file; building the sheet XML with vectorised string concatenation is ~50× faster at a
    million rows and byte-identical between runs.
    """
    rn = pl.col("__r").cast(pl.String)
    cells: list[pl.Expr] = []
    for j, name in enumerate(df.columns):
        letter = _col_letter(j)
        dtype = df.schema[name]
        col = pl.col(name)
        if dtype.is_integer():
            value = col.cast(pl.String)
            cell = pl.concat_str(
                [pl.lit(f'<c r="{letter}'), rn, pl.lit('"><v>'), value, pl.lit("</v></c>")]
            )
        else:
            if dtype == pl.Date:
                text = col.dt.strftime("%Y-%m-%d")
            elif dtype == pl.Datetime:
                text = col.dt.strftime("%Y-%m-%d %H:%M:%S")
            else:
                text = _xml_escape(col.cast(pl.String))
            cell = pl.concat_str(
                [
                    pl.lit(f'<c r="{letter}'),
                    rn,
                    pl.lit('" t="inlineStr"><is><t>'),
                    text,
                    pl.lit("</t></is></c>"),
                ]
            )
        cells.append(cell)  # a null value gives a null cell, skipped below (an empty cell)
    header = "".join(
        f'<c r="{_col_letter(j)}1" t="inlineStr"><is><t>{name}</t></is></c>'
        for j, name in enumerate(df.columns)
    )
    line = pl.concat_str(
        [pl.lit('<row r="'), rn, pl.lit('">'), *cells, pl.lit("</row>")], ignore_nulls=True
    ).alias("x")
    last = f"{_col_letter(max(0, df.width - 1))}{df.height + 1}"
    head = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f'<dimension ref="A1:{last}"/><sheetData><row r="1">{header}</row>\n'
    )
    workbook = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        f'<sheets><sheet name="{sheet}" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:

        def put(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=1)

        put("[Content_Types].xml", _XLSX_STATIC["[Content_Types].xml"].encode())
        put("_rels/.rels", _XLSX_STATIC["_rels/.rels"].encode())
        put("xl/workbook.xml", workbook.encode())
        put("xl/_rels/workbook.xml.rels", _XLSX_STATIC["xl/_rels/workbook.xml.rels"].encode())
        put("xl/styles.xml", _XLSX_STATIC["xl/styles.xml"].encode())
        info = zipfile.ZipInfo("xl/worksheets/sheet1.xml", date_time=_ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        # streamed slice by slice: a million-row sheet never sits in memory as one string
        with zf.open(info, "w", force_zip64=df.height > 1_000_000) as fh:
            fh.write(head.encode())
            for part in df.with_row_index("__r", offset=2).iter_slices(n_rows=100_000):
                buf = io.BytesIO()
                part.select(line).write_csv(buf, include_header=False, quote_style="never")
                fh.write(buf.getvalue())
            fh.write(b"</sheetData></worksheet>")


def _write_manifest(config: GenerateConfig, out_dir: Path, files: list[GeneratedFile]) -> None:
    doc = {
        "generator": "baoke.simulate",
        "format": 1,
        "seed": config.seed,
        "customers": config.customers,
        "dealers": config.dealer_count,
        "dirty_share": config.dirty_share,
        "as_of": config.today.isoformat(),
        "brand": cat.BRAND_FULL,
        "files": [
            {
                "kind": f.kind,
                "file": f.path.name,
                "rows": f.rows,
                "dirty_rows": f.dirty_rows,
                "duplicate_rows": f.duplicate_rows,
                "vin_warnings": f.vin_warnings,
                "encoding": f.encoding,
            }
            for f in files
        ],
    }
    (out_dir / MANIFEST).write_text(
        json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )


# --------------------------------------------------------------------------------------------
# The simulation
# --------------------------------------------------------------------------------------------

# One independent random stream per concern (order matters only for reproducibility).
_STREAMS = (
    "dealers",
    "staff",
    "mobiles",
    "people",
    "vehicles",
    "orders",
    "customers_file",
    "vehicles_file",
    "orders_file",
    "leads",
    "complaints",
    "consents",
    "events",
    "wecom",
)
_ROLE_KEYS = ("gm", "store_manager", "customer_manager", "advisor", "sales")
_ORDER_KEYS = ("maintenance", "repair", "claim", "accessory", "insurance")
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # plates skip I and O
_AFFINE = 7_919  # a prime: coprime with every bijection space used below


class _World:
    """The state of one generation run: numpy columns for dealers, people, cars and orders."""

    def __init__(self, config: GenerateConfig, out_dir: Path, say: Callable[[str], None]):
        self.cfg = config
        self.out = out_dir
        self.say = say
        self.n = config.customers
        self.d = config.dealer_count
        self.today = _day(config.today)
        seeds = np.random.SeedSequence(config.seed).spawn(len(_STREAMS))
        self.rngs = {
            name: np.random.default_rng(s) for name, s in zip(_STREAMS, seeds, strict=True)
        }
        self.files: list[GeneratedFile] = []
        self.n_pure_prospects = max(1, round(self.n * 0.15))

    def rng(self, name: str) -> np.random.Generator:
        return self.rngs[name]

    def dirty_count(self, rows: int) -> int:
        return round(rows * self.cfg.dirty_share)

    def dup_count(self, rows: int) -> int:
        # exact re-exported duplicates: a fifth as common as invalid rows
        return round(rows * self.cfg.dirty_share * 0.2)

    def add(self, kind: str, rows: int, dirty: int = 0, dups: int = 0, vin_warn: int = 0) -> None:
        name, enc = KIND_FILES[kind]
        self.files.append(GeneratedFile(kind, self.out / name, rows, dirty, enc, dups, vin_warn))
        self.say(f"{kind}: {rows:,} rows → {name}")

    def write_frame(self, kind: str, frame: pl.DataFrame, columns: Sequence[pl.Expr]) -> None:
        """Render ``columns`` from the raw ``frame`` slice by slice and write the kind's file.

        Rendering text (when/then branches, concatenations) costs several times the raw
        columns' memory; doing it per slice keeps the peak flat at a million customers.
        """
        name, encoding = KIND_FILES[kind]
        with _CsvWriter(self.out / name, encoding) as sink:
            for part in frame.iter_slices(n_rows=250_000) if frame.height else [frame]:
                sink.write(_labels(kind, part.select(columns)))

    def run(self) -> None:
        self.make_dealers()
        self.make_staff()
        self.make_people()
        self.make_vehicles()
        self.make_orders()
        self.write_customers()
        self.write_vehicles()
        self.write_orders()
        self.write_leads()
        self.write_complaints()
        self.write_consents()
        self.write_wecom()
        self.write_events()

    # ---------------------------------------------------------------- dealers and staff

    def make_dealers(self) -> None:
        rng = self.rng("dealers")
        weights = np.array([c.weight for c in cat.CITIES])
        city = np.sort(rng.choice(len(cat.CITIES), size=self.d, p=weights / weights.sum()))
        self.dealer_city = city.astype(np.int64)
        self.dealer_codes = [f"D{i + 1:04d}" for i in range(self.d)]
        # store size: some stores are much busier than others
        self.dealer_weight = rng.lognormal(0.0, 0.35, self.d)
        seen: dict[int, int] = {}
        names, addresses, phones = [], [], []
        roads = rng.integers(0, len(cat.ROADS), self.d)
        numbers = rng.integers(1, 999, self.d)
        tails = rng.integers(0, 100_000_000, self.d)
        for i, ci in enumerate(city.tolist()):
            c = cat.CITIES[ci]
            k = seen.get(ci, 0)
            seen[ci] = k + 1
            district = c.districts[k % len(c.districts)]
            nth = k // len(c.districts)
            ordinal = cat.ORDINALS[nth] if nth < len(cat.ORDINALS) else f"第{nth + 1}"
            names.append(f"{c.name}{cat.BRAND}{district}{ordinal}4S店")
            prov = _PROVINCE_FULL.get(c.province, f"{c.province}省")
            city_full = "" if c.province == c.name else f"{c.name}市"
            addresses.append(f"{prov}{city_full}{district}{cat.ROADS[roads[i]]}{numbers[i]}号")
            phones.append(f"{c.area_code}-{tails[i]:08d}")
        df = pl.DataFrame(
            {
                "dealer_code": self.dealer_codes,
                "name": names,
                "brand": [cat.BRAND] * self.d,
                "city": [cat.CITIES[ci].name for ci in city.tolist()],
                "region": [cat.CITIES[ci].region for ci in city.tolist()],
                "address": addresses,
                "phone": phones,
            }
        )
        _write_csv(_labels("dealers", df), self.out / KIND_FILES["dealers"][0], "utf-8-sig")
        self.add("dealers", df.height)

    def make_staff(self) -> None:
        rng = self.rng("staff")
        share = self.dealer_weight / self.dealer_weight.sum()
        per_dealer = share * self.n
        n_adv = np.clip(np.round(per_dealer / 300), 3, 60).astype(np.int64)
        n_cm = np.clip(np.round(per_dealer / 1000), 1, 20).astype(np.int64)
        n_sales = np.clip(np.round(per_dealer / 350), 2, 60).astype(np.int64)
        dealer_l, role_l, seq_l = [], [], []
        for d in range(self.d):
            roles = [0, 1] + [2] * int(n_cm[d]) + [3] * int(n_adv[d]) + [4] * int(n_sales[d])
            dealer_l += [d] * len(roles)
            role_l += roles
            seq_l += list(range(1, len(roles) + 1))
        dealer = np.array(dealer_l, dtype=np.int64)
        role = np.array(role_l, dtype=np.int64)
        m = dealer.size
        # the first customer manager and first advisor of a store never leave: every store
        # keeps someone to own tickets, serve cars and hold WeCom friendships
        first_of_role = np.ones(m, dtype=bool)
        key = dealer * 10 + role
        first_of_role[1:] = key[1:] != key[:-1]
        eligible = np.flatnonzero((role >= 2) & ~first_of_role)
        departed = np.zeros(m, dtype=bool)
        n_gone = min(eligible.size, max(1, round(0.05 * m)))  # ~5 % have left (离职)
        departed[rng.choice(eligible, size=n_gone, replace=False)] = True
        departed_day = np.where(
            departed, self.today - rng.integers(20, 1100, m), np.iinfo(np.int64).max
        )
        has_wecom = ~departed | (rng.random(m) < 0.5)
        has_wecom &= ~((role == 4) & (rng.random(m) < 0.1))  # some sales never set it up
        self.staff_dealer = dealer
        self.staff_role = role
        self.staff_departed = departed_day
        self.staff_wecom = has_wecom
        self.staff_no = [f"E{d + 1:04d}{s:03d}" for d, s in zip(dealer_l, seq_l, strict=True)]
        # per-store pools, as (start, count) into sorted index arrays
        self.adv_all = self._pool(role == 3)
        self.adv_active = self._pool((role == 3) & ~departed)
        self.cm_active = self._pool((role == 2) & ~departed)
        self.sales_active = self._pool((role == 4) & ~departed & has_wecom)
        self.sm_of = np.flatnonzero(role == 1)
        self.gm_of = np.flatnonzero(role == 0)
        self.mobile_pool = _unique_mobiles(self.rng("mobiles"), self.n + self.n_pure_prospects + m)
        male = rng.random(m) < 0.7
        names = _name_series(rng, male)
        role_text = _enum_text("staff", "role")
        status_text = _enum_text("staff", "status")
        df = pl.DataFrame(
            {
                "staff_no": self.staff_no,
                "d": dealer,
                "name": names,
                "r": role,
                "mobile": self.mobile_pool[self.n + self.n_pure_prospects :],
                "email_ok": rng.random(m) < 0.7,
                "wecom": has_wecom,
                "departed": departed,
                "dday": np.where(departed, departed_day, 0),
            }
        ).select(
            "staff_no",
            _lut(self.dealer_codes, "d").alias("dealer_code"),
            "name",
            _lut([role_text[k] for k in _ROLE_KEYS], "r").alias("role"),
            pl.col("mobile").cast(pl.String),
            pl.when(pl.col("email_ok"))
            .then(pl.concat_str([pl.col("staff_no").str.to_lowercase(), pl.lit("@huayue.example")]))
            .alias("email"),
            pl.when(pl.col("wecom"))
            .then(pl.concat_str([pl.lit("hy"), pl.col("staff_no").str.to_lowercase()]))
            .alias("wecom_userid"),
            pl.when(pl.col("departed"))
            .then(pl.lit(status_text["departed"]))
            .otherwise(pl.lit(status_text["active"]))
            .alias("status"),
            pl.when(pl.col("departed")).then(_as_date("dday")).alias("departed_on"),
        )
        _write_csv(_labels("staff", df), self.out / KIND_FILES["staff"][0], "gbk")
        self.add("staff", df.height)

    def _pool(self, mask: BArr) -> tuple[IArr, IArr, IArr]:
        """Staff matching ``mask`` grouped by store: (members sorted by store, start, count)."""
        members = np.flatnonzero(mask).astype(np.int64)  # staff are already sorted by store
        count = np.bincount(self.staff_dealer[members], minlength=self.d).astype(np.int64)
        start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        return members, start, count

    @staticmethod
    def _pick(pool: tuple[IArr, IArr, IArr], dealer: IArr, u: FArr) -> IArr:
        """A uniformly chosen member of each store's pool (-1 where the pool is empty)."""
        members, start, count = pool
        c = count[dealer]
        pos = start[dealer] + np.minimum((u * c).astype(np.int64), np.maximum(c - 1, 0))
        out = np.where(c > 0, members[np.minimum(pos, max(members.size - 1, 0))], -1)
        return out.astype(np.int64)

    # ---------------------------------------------------------------- people

    def make_people(self) -> None:
        rng = self.rng("people")
        n = self.n
        share = self.dealer_weight / self.dealer_weight.sum()
        counts = rng.multinomial(n, share)
        self.cust_dealer = np.repeat(np.arange(self.d, dtype=np.int64), counts)
        self.male = rng.random(n) < 0.66
        self.cust_name = _name_series(rng, self.male)
        self.cust_mobile = self.mobile_pool[:n]
        home = self.dealer_city[self.cust_dealer]
        city_w = np.array([c.weight for c in cat.CITIES])
        elsewhere = _choice(rng, n, city_w.tolist())
        self.cust_city = np.where(rng.random(n) < 0.9, home, elsewhere).astype(np.int64)
        age = np.clip(rng.normal(41.0, 10.0, n), 20.0, 75.0)
        self.cust_age = age
        self.birthday = (self.today - np.round(age * YEAR) - rng.integers(0, 365, n)).astype(
            np.int64
        )
        self.owner = rng.random(n) < 0.85
        # a prospect's "since" is the date they first left their details (their lead)
        self.since = (self.today - 1 - np.floor(3 * YEAR * rng.random(n) ** 1.4)).astype(np.int64)
        # cross-dealer duplicates: the same person (same mobile) is also a customer elsewhere
        dup = (rng.random(n) < 0.02) if self.d > 1 else np.zeros(n, dtype=bool)
        self.dup_idx = np.flatnonzero(dup).astype(np.int64)
        self.dup_dealer = (
            self.cust_dealer[self.dup_idx] + rng.integers(1, max(self.d, 2), self.dup_idx.size)
        ) % self.d
        self.dealer2 = np.full(n, -1, dtype=np.int64)
        self.dealer2[self.dup_idx] = self.dup_dealer

    # ---------------------------------------------------------------- vehicles

    def make_vehicles(self) -> None:
        rng = self.rng("vehicles")
        today = self.today
        owners = np.flatnonzero(self.owner).astype(np.int64)
        # purchase dates: last ten years, recent years heavier (truncated exponential)
        u = rng.random(owners.size)
        years_ago = -5.0 * np.log(1.0 - u * (1.0 - math.exp(-2.0)))
        p1 = (today - 1 - np.floor(years_ago * YEAR)).astype(np.int64)
        self.since[owners] = p1
        room = today - 1 - p1
        second = (rng.random(owners.size) < 0.10) & (room > 400)
        p2 = p1[second] + 180 + np.floor(rng.random(int(second.sum())) * (room[second] - 180))
        owner = np.concatenate([owners, owners[second]])
        purchase = np.concatenate([p1, p2.astype(np.int64)])
        order = np.lexsort((purchase, owner))
        owner, purchase = owner[order], purchase[order]
        v = owner.size
        self.v_owner = owner
        self.v_purchase = purchase
        lag = np.where(rng.random(v) < 0.7, rng.integers(0, 4, v), rng.integers(4, 31, v))
        self.v_delivery = np.minimum(purchase + lag, today - 1).astype(np.int64)
        year, month, _ = _ymd(purchase)
        # series: only those launched by the purchase year; the EV share grows each year
        series = np.zeros(v, dtype=np.int64)
        for y in np.unique(year).tolist():
            w = np.array(
                [
                    s.share * (s.launch_year <= y) * ((1.0 + 0.45 * (y - 2021)) if s.ev else 1.0)
                    for s in cat.SERIES
                ]
            )
            if w.sum() <= 0:  # before the first launch: the oldest series stands in
                w[0] = 1.0
            sel = np.flatnonzero(year == y)
            series[sel] = rng.choice(len(cat.SERIES), size=sel.size, p=w / w.sum())
        self.v_series = series
        trim_w = np.zeros((len(cat.SERIES), 4))
        for i, s in enumerate(cat.SERIES):
            w = np.array([0.35, 0.35, 0.2, 0.1][: len(s.trims)])
            trim_w[i, : len(s.trims)] = np.cumsum(w / w.sum())
        trim_w[:, -1] = 1.0
        ut = rng.random(v)
        trim = (ut[:, None] > trim_w[series]).sum(axis=1).astype(np.int64)
        n_trims = np.array([len(s.trims) for s in cat.SERIES])
        trim = np.minimum(trim, n_trims[series] - 1)
        self.v_trim = trim
        guide = np.array(
            [[s.trims[min(t, len(s.trims) - 1)].price for t in range(4)] for s in cat.SERIES]
        )
        price = guide[series, trim] * rng.uniform(0.86, 1.0, v)
        self.v_price_fen = (np.round(price / 100.0) * 10_000).astype(np.int64)
        max_my = max(cat.MODEL_YEAR_CODES)
        my = year + ((month >= 10) & (rng.random(v) < 0.5))
        self.v_model_year = np.minimum(my, max_my).astype(np.int64)
        ev = np.array([s.ev for s in cat.SERIES])[series]
        self.v_ev = ev
        velocity = np.clip(rng.lognormal(math.log(13_000.0), 0.42, v), 2_000.0, 60_000.0)
        self.v_velocity = velocity * np.where(ev, 1.15, 1.0)
        self.v_km0 = rng.integers(5, 60, v).astype(np.int64)
        self.v_vin = self._vins(rng, series, trim)
        # a few VINs carry a wrong check digit: imported with a warning, not quarantined
        n_warn = max(1, round(v * 0.0005))
        self.v_vin_warn = np.zeros(v, dtype=bool)
        self.v_vin_warn[rng.choice(v, size=min(n_warn, v), replace=False)] = True
        warn = np.flatnonzero(self.v_vin_warn)
        chars = self.v_vin[warn].view(np.uint8).reshape(-1, 17).copy()
        good = np.where(chars[:, 8] == ord("X"), 10, chars[:, 8].astype(np.int64) - ord("0"))
        bad = (good + rng.integers(1, 11, warn.size)) % 11
        chars[:, 8] = np.where(bad == 10, ord("X"), ord("0") + bad)
        self.v_vin[warn] = chars.view("S17").ravel()
        self.v_city = self.cust_city[owner]
        # vehicles are sorted by (owner, purchase): first and latest car of each owner
        self.cust_first_veh = np.full(self.n, -1, dtype=np.int64)
        self.cust_latest_veh = np.full(self.n, -1, dtype=np.int64)
        uniq, first = np.unique(owner, return_index=True)
        self.cust_first_veh[uniq] = first
        uniq_r, first_r = np.unique(owner[::-1], return_index=True)
        self.cust_latest_veh[uniq_r] = v - 1 - first_r
        self.v_plate = self._plates(rng)
        wy = np.array([s.warranty_years for s in cat.SERIES])[series]
        frame = pl.DataFrame({"d": self.v_delivery, "wy": wy})
        self.v_warranty_end = (
            frame.select(_as_date("d").dt.offset_by(pl.format("{}y", pl.col("wy"))).cast(pl.Int32))
            .to_series()
            .to_numpy()
            .astype(np.int64)
        )

    def _vins(self, rng: np.random.Generator, series: IArr, trim: IArr) -> npt.NDArray[Any]:
        v = series.size
        chars = np.empty((v, 17), dtype=np.uint8)
        chars[:, 0:3] = np.frombuffer(cat.WMI.encode(), dtype=np.uint8)
        chars[:, 3] = np.frombuffer("".join(s.code for s in cat.SERIES).encode(), np.uint8)[series]
        chars[:, 4] = ord("1") + trim
        body = {"轿车": "S", "SUV": "U", "MPV": "M", "纯电SUV": "E"}
        chars[:, 5] = np.frombuffer("".join(body[s.body] for s in cat.SERIES).encode(), np.uint8)[
            series
        ]
        chars[:, 6] = np.frombuffer(b"KLMN", np.uint8)[trim]
        chars[:, 7] = np.frombuffer(b"AB", np.uint8)[rng.integers(0, 2, v)]
        years = sorted(cat.MODEL_YEAR_CODES)
        year_codes = np.frombuffer(
            "".join(cat.MODEL_YEAR_CODES[y] for y in years).encode(), np.uint8
        )
        chars[:, 9] = year_codes[self.v_model_year - years[0]]
        # serial numbers unique within a model year: rank → affine bijection of 3 plants × 10⁶
        order = np.argsort(self.v_model_year, kind="stable")
        rank = np.empty(v, dtype=np.int64)
        rank[order] = _seq_within(self.v_model_year[order])
        space = len(cat.PLANT_CODES) * 1_000_000
        if rank.size and rank.max() >= space:
            raise ValueError("too many vehicles per model year for unique VIN serials")
        offset = rng.integers(0, space, len(years))[self.v_model_year - years[0]]
        g = (rank * _AFFINE + offset) % space
        chars[:, 10] = np.frombuffer("".join(cat.PLANT_CODES).encode(), np.uint8)[g // 1_000_000]
        serial = g % 1_000_000
        for k in range(6):
            chars[:, 16 - k] = ord("0") + (serial // 10**k) % 10
        values = _VIN_VALUE[chars]
        rem = (values * _VIN_WEIGHTS).sum(axis=1) % 11
        chars[:, 8] = np.where(rem == 10, ord("X"), ord("0") + rem)
        return chars.view("S17").ravel().copy()

    def _plates(self, rng: np.random.Generator) -> pl.Series:
        """Unique plates per prefix: 浙A12345 / 浙AD12345 (new energy), some with a ·."""
        v = self.v_owner.size
        key = self.v_city * 2 + self.v_ev
        order = np.argsort(key, kind="stable")
        rank = np.empty(v, dtype=np.int64)
        rank[order] = _seq_within(key[order])
        space = np.where(self.v_ev, 100_000, 580_000)
        g = (rank * _AFFINE + rng.integers(0, 100_000, v)) % space
        plates = pl.DataFrame(
            {
                "c": self.v_city,
                "ev": self.v_ev,
                "g": g,
                "dot": rng.random(v) < 0.28,
                "none": rng.random(v) < 0.01,
            }
        ).select(
            pl.when(pl.col("none"))
            .then(None)
            .otherwise(
                pl.concat_str(
                    [
                        _lut([c.plate for c in cat.CITIES], "c"),
                        pl.when(pl.col("dot")).then(pl.lit("·")).otherwise(pl.lit("")),
                        pl.when(pl.col("ev"))
                        .then(pl.concat_str([pl.lit("D"), _z(pl.col("g"), 5)]))
                        .when(pl.col("g") < 100_000)
                        .then(_z(pl.col("g"), 5))
                        .when(pl.col("g") < 340_000)
                        .then(
                            pl.concat_str(
                                [
                                    _lut(
                                        list(_PLATE_LETTERS),
                                        ((pl.col("g") - 100_000) // 10_000).clip(0, 23),
                                    ),
                                    _z((pl.col("g") - 100_000) % 10_000, 4),
                                ]
                            )
                        )
                        .otherwise(
                            pl.concat_str(
                                [
                                    ((pl.col("g") - 340_000) % 10).cast(pl.String),
                                    _lut(
                                        list(_PLATE_LETTERS),
                                        ((pl.col("g") - 340_000) // 10_000).clip(0, 23),
                                    ),
                                    _z((pl.col("g") - 340_000) // 10 % 1_000, 3),
                                ]
                            )
                        ),
                    ]
                )
            )
            .alias("plate_no")
        )
        return plates.to_series()

    def odometer(self, veh: npt.NDArray[np.integer[Any]], day: IArr) -> IArr:
        """Odometer of vehicle ``veh`` on ``day``: smooth and increasing, so readings taken on
        later days are never lower (the car is driven a little less each year)."""
        y = np.maximum(day - self.v_delivery[veh], 0) / YEAR
        km: FArr = self.v_km0[veh] + self.v_velocity[veh] * (y - 0.015 * y * y)
        return np.round(km).astype(np.int64)

    # ---------------------------------------------------------------- service orders

    def make_orders(self) -> None:
        """Simulate each car's after-sales history at the group's stores.

        Maintenance follows the series' schedule (first at 5,000 km / 6 months, then every
        interval km or months, whichever comes first) with realistic lateness and lapses;
        before each due visit an owner may stop coming (churn to an independent garage),
        more often once the warranty is over and the car gets old. Repairs, warranty claims,
        accessories and accident repairs arrive as Poisson processes while the car still
        comes to the store.
        """
        rng = self.rng("orders")
        today = self.today
        v = self.v_owner.size
        series = [cat.SERIES[i] for i in range(len(cat.SERIES))]
        s_first_m = np.array([s.first_months for s in series], dtype=np.float64)[self.v_series]
        s_first_km = np.array([s.first_km for s in series], dtype=np.float64)[self.v_series]
        s_int_m = np.array([s.interval_months for s in series], dtype=np.float64)[self.v_series]
        s_int_km = np.array([s.interval_km for s in series], dtype=np.float64)[self.v_series]
        base = np.array([s.maintenance_yuan for s in series])[self.v_series]
        price_factor = np.sqrt(self.v_price_fen / 15_000_000.0)
        vel = self.v_velocity
        first_gap = np.minimum(s_first_m * 30.44, s_first_km / vel * YEAR)
        gap = np.minimum(s_int_m * 30.44, s_int_km / vel * YEAR)
        deliv = self.v_delivery
        warranty_end = self.v_warranty_end

        out_veh: list[IArr] = []
        out_day: list[IArr] = []
        out_fen: list[IArr] = []
        never = rng.random(v) < 0.04  # bought here, serviced elsewhere from day one
        last_visit = np.full(v, -1, dtype=np.int64)
        churned = never.copy()
        idx = np.flatnonzero(~never).astype(np.int64)
        due = deliv[idx] + first_gap[idx]
        prev = deliv[idx].astype(np.float64)
        k = 0
        while idx.size:
            age = (due - deliv[idx]) / YEAR
            in_warranty = due < warranty_end[idx]
            hazard = np.where(in_warranty, 0.015, np.where(age < 6.0, 0.07, 0.11))
            if k == 0:
                hazard = np.full(idx.size, 0.03)  # most new owners come for the free first one
            quit_now = rng.random(idx.size) < hazard
            delay = rng.gamma(2.0, 8.0, idx.size) - 6.0
            lapse = rng.random(idx.size) < 0.10
            delay = delay + np.where(lapse, rng.uniform(60.0, 300.0, idx.size), 0.0)
            visit = np.maximum(np.round(due + delay), prev + 30).astype(np.int64)
            come = ~quit_now & (visit < today)
            churned[idx[quit_now]] = True
            sel = idx[come]
            vis = visit[come]
            yrs = (vis - deliv[sel]) / YEAR
            # first one (首保) is mostly labour-free; every second one is a major service
            factor = 0.35 if k == 0 else (1.0 if k % 2 else 1.75)
            amount = base[sel] * factor * (1.0 + 0.05 * yrs) * rng.lognormal(0.0, 0.18, sel.size)
            out_veh.append(sel)
            out_day.append(vis)
            out_fen.append(np.round(amount * 100).astype(np.int64))
            last_visit[sel] = vis
            prev = vis.astype(np.float64)
            due = vis + gap[sel]
            idx = sel
            k += 1
        n_maint = sum(a.size for a in out_veh)
        o_type = [np.zeros(n_maint, dtype=np.int64)]

        # window in which the car still comes to the store for other work
        end = np.where(
            churned,
            np.where(last_visit >= 0, last_visit + 90, deliv + 45),
            today - 1,
        )
        end = np.minimum(end, today - 1)
        span = np.maximum(end - deliv, 0).astype(np.int64)
        years = span / YEAR
        mid_age = years / 2.0

        def poisson_orders(
            rate: FArr, lo: IArr, length: IArr, type_id: int, fen: Callable[[IArr, int], IArr]
        ) -> None:
            count = rng.poisson(np.maximum(rate, 0.0))
            veh = np.repeat(np.arange(v, dtype=np.int64), count)
            day = lo[veh] + np.floor(rng.random(veh.size) * np.maximum(length[veh], 1)).astype(
                np.int64
            )
            keep = day < today
            veh, day = veh[keep], day[keep]
            out_veh.append(veh)
            out_day.append(day)
            out_fen.append(fen(veh, veh.size))
            o_type.append(np.full(veh.size, type_id, dtype=np.int64))

        def lognormal_fen(
            median: float, sigma: float, scale: FArr | None = None
        ) -> Callable[[IArr, int], IArr]:
            def draw(veh: IArr, n: int) -> IArr:
                x = rng.lognormal(math.log(median), sigma, n)
                if scale is not None:
                    x = x * scale[veh]
                return np.round(np.clip(x, 30.0, 300_000.0) * 100).astype(np.int64)

            return draw

        # repairs: more frequent as the car ages, heavy-tailed bills
        poisson_orders(
            years * 0.30 * (1.0 + 0.15 * mid_age),
            deliv,
            span,
            1,
            lognormal_fen(850.0, 1.0, price_factor),
        )
        # warranty claims: only inside the warranty
        w_span = np.maximum(np.minimum(end, warranty_end) - deliv, 0).astype(np.int64)
        poisson_orders(w_span / YEAR * 0.25, deliv, w_span, 2, lognormal_fen(900.0, 0.8))
        # accessories: a burst right after delivery, then occasionally
        at_delivery = (rng.random(v) < 0.35).astype(np.float64)
        poisson_orders(
            at_delivery, deliv, np.full(v, 45, dtype=np.int64), 3, lognormal_fen(2_200.0, 0.7)
        )
        poisson_orders(years * 0.08, deliv, span, 3, lognormal_fen(700.0, 0.9))
        # accident repairs (insurance)
        poisson_orders(years * 0.10, deliv, span, 4, lognormal_fen(4_200.0, 0.9, price_factor))

        veh = np.concatenate(out_veh)
        day = np.concatenate(out_day)
        fen = np.concatenate(out_fen)
        otype = np.concatenate(o_type).astype(np.int8)
        for parts in (out_veh, out_day, out_fen, o_type):
            parts.clear()
        # which store: the selling one, or the second store for cross-dealer customers
        owner = self.v_owner[veh]
        d2 = self.dealer2[owner]
        switch = deliv[veh] + (self.v_purchase[veh] % 997)  # a stable per-car switch day
        at_second = (d2 >= 0) & (day >= switch) & (rng.random(veh.size) < 0.7)
        dealer = np.where(at_second, d2, self.cust_dealer[owner])
        del owner, d2, switch
        # advisor: the car's regular advisor mostly, someone active on that day otherwise
        regular = self._pick(self.adv_all, self.cust_dealer[self.v_owner], rng.random(v))
        self.v_advisor = regular
        adv = np.where(
            ~at_second & (rng.random(veh.size) < 0.8),
            regular[veh],
            self._pick(self.adv_all, dealer, rng.random(veh.size)),
        )
        gone = self.staff_departed[adv] < day
        adv[gone] = self._pick(self.adv_active, dealer[gone], rng.random(int(gone.sum())))
        del at_second, gone
        order = np.lexsort((rng.random(veh.size), day, dealer))
        self.o_veh = veh[order].astype(np.int32)
        del veh
        self.o_day = day[order]
        del day
        self.o_fen = fen[order]
        del fen
        self.o_type = otype[order]
        self.o_dealer = dealer[order].astype(np.int32)
        del dealer
        self.o_adv = adv[order].astype(np.int32)
        del adv, order
        self.o_seq = _seq_within(self.o_dealer.astype(np.int64) * 1_000_000 + self.o_day)
        self.o_km = self.odometer(self.o_veh, self.o_day)
        self.v_churned = churned
        self.say(f"simulated {self.o_veh.size:,} service orders for {v:,} vehicles")

    # ---------------------------------------------------------------- customers file

    def write_customers(self) -> None:
        rng = self.rng("customers_file")
        n = self.n
        nd = self.dup_idx.size
        n_junk = self.dirty_count(n + nd)
        person = np.concatenate([np.arange(n), self.dup_idx, np.full(n_junk, -1)]).astype(np.int64)
        kind = np.concatenate(
            [np.zeros(n, np.int64), np.ones(nd, np.int64), np.full(n_junk, 2, np.int64)]
        )
        rows = person.size
        dealer = np.concatenate(
            [self.cust_dealer, self.dup_dealer, rng.integers(0, self.d, n_junk)]
        ).astype(np.int64)
        pi = np.maximum(person, 0)
        since = np.where(
            kind == 0,
            self.since[pi],
            self.since[pi] + np.floor(rng.random(rows) * (self.today - self.since[pi])),
        ).astype(np.int64)
        since = np.where(kind == 2, self.today - rng.integers(1, 3000, rows), since)
        # dealer-local customer numbers, in the order people became customers of that store
        order = np.lexsort((rng.random(rows), since, dealer))
        person, kind, dealer, since = person[order], kind[order], dealer[order], since[order]
        pi = np.maximum(person, 0)
        local = _seq_within(dealer) + 1
        cust_no = (
            pl.DataFrame({"d": dealer, "l": local})
            .select(pl.concat_str([pl.lit("C"), _z(pl.col("l"), 7)]))
            .to_series()
        )
        # remember each primary customer's number: vehicles, leads, consents … refer to it
        prim_rows = np.flatnonzero(kind == 0)
        pos = np.empty(n, dtype=np.int64)
        pos[person[prim_rows]] = prim_rows
        self.cust_no = cust_no.gather(pos)
        dup_rows = np.flatnonzero(kind == 1)
        self.dup_cust_no = cust_no.gather(dup_rows)
        self.dup_person = person[dup_rows]

        junk_names = _name_series(rng, rng.random(rows) < 0.6)
        names = self.cust_name.gather(pi)
        male = np.where(kind == 2, rng.random(rows) < 0.6, self.male[pi])
        age = self.cust_age[pi]
        fam_u = rng.random(rows)
        young, mid = age < 28, age < 40
        family = np.where(
            young,
            np.searchsorted([0.6, 0.85], fam_u),
            np.where(mid, np.searchsorted([0.2, 0.5], fam_u), np.searchsorted([0.08, 0.3], fam_u)),
        )
        family = np.where(rng.random(rows) < 0.1, -1, family)
        window = np.where(
            rng.random(rows) < 0.2, rng.integers(0, len(cat.CONTACT_WINDOWS), rows), -1
        )
        combos = _tag_combos()
        tags = np.where(rng.random(rows) < 0.25, rng.integers(0, len(combos), rows), -1)
        email_kind = np.where(rng.random(rows) < 0.18, rng.integers(0, 2, rows), -1)
        self.cust_email = np.zeros(n, dtype=bool)
        self.cust_email[person[prim_rows]] = email_kind[prim_rows] >= 0
        mobile = self.cust_mobile[pi]
        # invalid mobiles for junk rows: 10 digits, a letter, a landline, an impossible 12…
        bad_kind = rng.integers(0, 4, rows)
        area = np.array([c.area_code for c in cat.CITIES])[self.dealer_city[dealer]]
        df = pl.DataFrame(
            {
                "d": dealer,
                "customer_no": cust_no,
                "kind": kind,
                "nm": names,
                "jn": junk_names,
                "male": male,
                "m": mobile,
                "mf": _mobile_formats(rng, rows),
                "bad": bad_kind,
                "area": area,
                "land": rng.integers(20_000_000, 89_999_999, rows),
                "email_kind": email_kind,
                "ew": rng.integers(0, len(cat.EMAIL_WORDS), rows),
                "en": rng.integers(10, 9999, rows),
                "ed": rng.integers(0, len(_EMAIL_DOMAINS), rows),
                "c": np.where(kind == 2, self.dealer_city[dealer], self.cust_city[pi]),
                "bday": self.birthday[pi],
                "no_bday": (rng.random(rows) < 0.08) | (kind == 2),
                "fam": family,
                "win": window,
                "tags": tags,
                "second_row": kind == 1,
            }
        )
        junk = pl.col("kind") == 2
        s = pl.col("m").cast(pl.String)
        bad_mobile = (
            pl.when(pl.col("bad") == 0)
            .then(s.str.slice(0, 10))
            .when(pl.col("bad") == 1)
            .then(pl.concat_str([s.str.slice(0, 9), pl.lit("o8")]))
            .when(pl.col("bad") == 2)
            .then(pl.concat_str([pl.col("area"), pl.lit("-"), pl.col("land").cast(pl.String)]))
            .otherwise(pl.concat_str([pl.lit("12"), s.str.slice(2), pl.lit("6")]))
        )
        title = _enum_text("customers", "title")
        gender = _enum_text("customers", "gender")
        columns: list[pl.Expr] = [
            pl.col("customer_no"),
            _lut(self.dealer_codes, "d").alias("dealer_code"),
            pl.when(junk).then(pl.col("jn")).otherwise(pl.col("nm")).alias("name"),
            pl.when(pl.col("male"))
            .then(pl.lit(title["先生"]))
            .otherwise(pl.lit(title["女士"]))
            .alias("title"),
            pl.when(pl.col("male"))
            .then(pl.lit(gender["male"]))
            .otherwise(pl.lit(gender["female"]))
            .alias("gender"),
            pl.when(junk).then(bad_mobile).otherwise(_mobile_text("m", "mf")).alias("mobile"),
            pl.when((pl.col("email_kind") == 0) & ~junk)
            .then(pl.concat_str([s, pl.lit("@example.com")]))
            .when((pl.col("email_kind") == 1) & ~junk)
            .then(
                pl.concat_str(
                    [
                        _lut(cat.EMAIL_WORDS, "ew"),
                        pl.col("en").cast(pl.String),
                        pl.lit("@"),
                        _lut(_EMAIL_DOMAINS, "ed"),
                    ]
                )
            )
            .alias("email"),
            _lut([c.name for c in cat.CITIES], "c").alias("city"),
            _lut([c.province for c in cat.CITIES], "c").alias("region"),
            pl.when(~pl.col("no_bday")).then(_as_date("bday")).alias("birthday"),
            pl.when((pl.col("fam") >= 0) & ~pl.col("second_row"))
            .then(_lut(cat.FAMILY, pl.col("fam").clip(0)))
            .alias("family"),
            pl.when(pl.col("win") >= 0)
            .then(_lut([w[0] for w in cat.CONTACT_WINDOWS], pl.col("win").clip(0)))
            .alias("contact_from"),
            pl.when(pl.col("win") >= 0)
            .then(_lut([w[1] for w in cat.CONTACT_WINDOWS], pl.col("win").clip(0)))
            .alias("contact_to"),
            pl.when((pl.col("tags") >= 0) & ~junk)
            .then(_lut(combos, pl.col("tags").clip(0)))
            .alias("tags"),
        ]
        clean = np.flatnonzero(kind != 2)
        dups = _dup_positions(rng, clean.astype(np.int64), self.dup_count(rows))
        df = _with_duplicates(df, dups)
        self.write_frame("customers", df, columns)
        self.add("customers", df.height, dirty=n_junk, dups=dups.size)

    # ---------------------------------------------------------------- vehicles file

    def write_vehicles(self) -> None:
        rng = self.rng("vehicles_file")
        v = self.v_owner.size
        today = self.today
        # current mileage: the last reading the DMS has (last visit), else the delivery odometer
        last_day = self.v_delivery.copy()
        np.maximum.at(last_day, self.o_veh, self.o_day)
        km = self.odometer(np.arange(v, dtype=np.int64), last_day)
        # insurance: annual from the delivery anniversary; churned owners often let it lapse
        # at the dealer (renewed elsewhere), so the record shows an expired date
        lapsed = (self.v_churned & (rng.random(v) < 0.6)) | (rng.random(v) < 0.05)
        k0 = np.floor((today - self.v_delivery) / YEAR).astype(np.int64)
        frame = pl.DataFrame({"d": self.v_delivery, "k": k0, "t": np.full(v, today)})
        nxt = (
            frame.select(
                pl.when(_as_date("d").dt.offset_by(pl.format("{}y", pl.col("k"))) >= _as_date("t"))
                .then(_as_date("d").dt.offset_by(pl.format("{}y", pl.col("k"))))
                .otherwise(_as_date("d").dt.offset_by(pl.format("{}y", pl.col("k") + 1)))
                .cast(pl.Int32)
            )
            .to_series()
            .to_numpy()
            .astype(np.int64)
        )
        prev = (
            pl.DataFrame({"d": nxt})
            .select(_as_date("d").dt.offset_by("-1y").cast(pl.Int32))
            .to_series()
            .to_numpy()
            .astype(np.int64)
        )
        insurance = np.where(lapsed & (prev > self.v_delivery), prev, nxt)

        owner = self.v_owner
        vin = pl.Series(self.v_vin).cast(pl.String)
        series_names = [s.name for s in cat.SERIES]
        trims = [f"{t.name}" for s in cat.SERIES for t in s.trims]
        trim_offset = np.cumsum([0] + [len(s.trims) for s in cat.SERIES])[:-1]
        df = pl.DataFrame(
            {
                "vin": vin,
                "d": self.cust_dealer[owner],
                "customer_no": self.cust_no.gather(owner),
                "m": self.cust_mobile[owner],
                "s": self.v_series,
                "t": trim_offset[self.v_series] + self.v_trim,
                "model_year": self.v_model_year,
                "plate_no": self.v_plate,
                "pd": self.v_purchase,
                "dd": self.v_delivery,
                "price_fen": self.v_price_fen,
                "ins": insurance,
                "we": self.v_warranty_end,
                "mileage": km,
                "md": last_day,
            }
        )
        columns: list[pl.Expr] = [
            pl.when(pl.col("how") >= 0)
            .then(_broken_vin(pl.col("vin"), pl.col("how")))
            .otherwise(pl.col("vin"))
            .alias("vin"),
            _lut(self.dealer_codes, "d").alias("dealer_code"),
            pl.col("customer_no"),
            pl.col("m").cast(pl.String).alias("mobile"),
            pl.lit(cat.BRAND).alias("brand"),
            _lut(series_names, "s").alias("series"),
            pl.concat_str(
                [pl.col("model_year").cast(pl.String), pl.lit("款 "), _lut(trims, "t")]
            ).alias("model"),
            pl.col("model_year"),
            pl.col("plate_no"),
            _as_date("pd").alias("purchase_date"),
            _as_date("dd").alias("delivery_date"),
            _fen_text("price_fen").alias("price"),
            _as_date("ins").alias("insurance_expiry"),
            _as_date("we").alias("warranty_end"),
            pl.col("mileage"),
            _as_date("md").alias("mileage_date"),
        ]
        # dirty rows: the same car keyed in again with a broken VIN (too short, I/O/Q);
        # each sits right after the row it was copied from, like a re-keyed record
        src = np.sort(rng.choice(v, size=min(self.dirty_count(v), v), replace=False))
        n_junk = src.size
        warn = np.flatnonzero(self.v_vin_warn).astype(np.int64)
        clean_ok = np.setdiff1d(np.arange(v, dtype=np.int64), warn)
        dups = _dup_positions(rng, clean_ok, self.dup_count(v))
        rows = np.concatenate([np.arange(v), dups, src]).astype(np.int64)
        how = np.concatenate([np.full(v + dups.size, -1), rng.integers(0, 4, n_junk)]).astype(
            np.int8
        )
        rank = np.concatenate([np.zeros(v), np.ones(dups.size), np.full(n_junk, 2)])
        order = np.lexsort((rank, rows))
        frame = df[rows[order]].with_columns(pl.Series("how", how[order]))
        self.write_frame("vehicles", frame, columns)
        self.add("vehicles", frame.height, dirty=n_junk, dups=dups.size, vin_warn=warn.size)

    # ---------------------------------------------------------------- service orders file

    def write_orders(self) -> None:
        rng = self.rng("orders_file")
        n = self.o_veh.size
        # dirty rows are leaves (nothing refers to an order): a bad date, a negative or
        # non-numeric amount, or an order type no DMS mapping knows
        dirty_pos = rng.choice(n, size=min(self.dirty_count(n), n), replace=False)
        k = dirty_pos.size
        how = np.full(n, -1, dtype=np.int8)  # 0 date, 1 negative, 2 text, 3 type
        how[dirty_pos] = rng.integers(0, 4, k)
        bad = np.zeros(n, dtype=np.int8)  # which bad value of its kind
        bad[dirty_pos] = rng.integers(0, 12, k)
        dirty = how >= 0
        warn_rows = self.v_vin_warn[self.o_veh]
        candidates = np.flatnonzero(~dirty & ~warn_rows).astype(np.int64)
        dups = _dup_positions(rng, candidates, self.dup_count(n))
        rows = np.sort(np.concatenate([np.arange(n, dtype=np.int64), dups]))
        type_text = _enum_text("service-orders", "order_type")
        y = pl.col("day").cast(pl.Int32).cast(pl.Date).dt.year()
        settled = (
            pl.when(pl.col("how") != 0)
            .then(_as_date("day").dt.strftime("%Y-%m-%d"))
            .when(pl.col("bad") % 3 == 0)
            .then(pl.format("{}-13-{}", y, _z(pl.col("bad") + 10, 2)))
            .when(pl.col("bad") % 3 == 1)
            .then(pl.format("{}-{}-45", y, _z(pl.col("bad") % 12 + 1, 2)))
            .otherwise(pl.format("{}-02-30", y))
        )
        amount = (
            pl.when(pl.col("how") == 1)
            .then(pl.concat_str([pl.lit("-"), _fen_text("fen")]))
            .when(pl.col("how") == 2)
            .then(_lut(_BAD_AMOUNTS, pl.col("bad") % len(_BAD_AMOUNTS)))
            .otherwise(_fen_text("fen"))
        )
        otype = (
            pl.when(pl.col("how") == 3)
            .then(_lut(_BAD_ORDER_TYPES, pl.col("bad") % len(_BAD_ORDER_TYPES)))
            .otherwise(_lut([type_text[k] for k in _ORDER_KEYS], "t"))
        )
        path = self.out / KIND_FILES["service-orders"][0]
        # built and written in slices: the string columns of five million orders would
        # otherwise need more than a gigabyte at once
        with _CsvWriter(path, "gbk") as sink:
            for lo in range(0, rows.size, _SLICE_ROWS):
                idx = rows[lo : lo + _SLICE_ROWS]
                day = self.o_day[idx]
                yy, mo, dd = _ymd(day)
                number = (self.o_dealer[idx].astype(np.int64) + 1) * 10**12 + (
                    yy * 10_000 + mo * 100 + dd
                ) * 10**4
                frame = pl.DataFrame(
                    {
                        "no": number + self.o_seq[idx] + 1,
                        "d": self.o_dealer[idx],
                        "vin": pl.Series(self.v_vin[self.o_veh[idx]]).cast(pl.String),
                        "day": day,
                        "t": self.o_type[idx],
                        "fen": self.o_fen[idx],
                        "mileage": self.o_km[idx],
                        "adv": self.o_adv[idx],
                        "how": how[idx],
                        "bad": bad[idx],
                    }
                ).select(
                    pl.concat_str(
                        [pl.lit("RO"), (pl.col("no") + 10**16).cast(pl.String).str.slice(1)]
                    ).alias("order_no"),
                    _lut(self.dealer_codes, "d").alias("dealer_code"),
                    "vin",
                    settled.alias("settled_on"),
                    otype.alias("order_type"),
                    amount.alias("amount"),
                    "mileage",
                    _lut(self.staff_no, "adv").alias("advisor_no"),
                )
                sink.write(_labels("service-orders", frame))
        self.add(
            "service-orders",
            rows.size,
            dirty=int(dirty.sum()),
            dups=dups.size,
            vin_warn=int((warn_rows & ~dirty).sum()),
        )

    # ---------------------------------------------------------------- leads

    def write_leads(self) -> None:
        rng = self.rng("leads")
        today = self.today
        n = self.n
        # (a) prospects in the DMS: the lead that brought them in
        pros = np.flatnonzero(~self.owner).astype(np.int64)
        # (b) won leads behind recent purchases
        recent = np.flatnonzero(
            (self.v_purchase > today - 3 * YEAR) & (rng.random(self.v_owner.size) < 0.5)
        ).astype(np.int64)
        # (c) owners of older cars shopping for an upgrade
        first_age = np.where(
            self.cust_latest_veh >= 0,
            (today - self.v_purchase[np.maximum(self.cust_latest_veh, 0)]) / YEAR,
            0.0,
        )
        upg = np.flatnonzero(self.owner & (first_age >= 4.0) & (rng.random(n) < 0.08)).astype(
            np.int64
        )
        n_pure = self.n_pure_prospects
        na, nb, nc = pros.size, recent.size, upg.size
        total = na + nb + nc + n_pure
        group = np.concatenate(
            [np.full(na, 0), np.full(nb, 1), np.full(nc, 2), np.full(n_pure, 3)]
        ).astype(np.int64)
        person = np.concatenate(
            [pros, self.v_owner[recent], upg, np.full(n_pure, -1, dtype=np.int64)]
        )
        pi = np.maximum(person, 0)
        share = self.dealer_weight / self.dealer_weight.sum()
        dealer = np.where(person >= 0, self.cust_dealer[pi], _choice(rng, total, share.tolist()))
        created = np.concatenate(
            [
                self.since[pros],
                self.v_purchase[recent] - rng.integers(7, 90, nb),
                today - rng.integers(1, 365, nc),
                today - 1 - np.floor(3 * YEAR * rng.random(n_pure) ** 1.3).astype(np.int64),
            ]
        ).astype(np.int64)
        stage = _choice(rng, total, (0.40, 0.25, 0.20, 0.15))
        stage = np.where(group == 1, 3, stage)
        lost_p = np.array([0.70, 0.0, 0.40, 0.60])[group]
        lost = rng.random(total) < lost_p
        lost_on = created + rng.integers(7, 120, total)
        lost &= lost_on < today
        status = np.where(group == 1, 1, np.where(lost, 2, 0))  # 0 open, 1 won, 2 lost
        reason_cdf = np.cumsum(
            np.array(
                [
                    [0.20, 0.10, 0.05, 0.20, 0.45],
                    [0.30, 0.15, 0.08, 0.25, 0.22],
                    [0.35, 0.20, 0.10, 0.25, 0.10],
                    [0.45, 0.15, 0.12, 0.23, 0.05],
                ]
            ),
            axis=1,
        )
        reason = np.minimum((rng.random(total)[:, None] > reason_cdf[stage]).sum(axis=1), 4)
        # model of interest: new SUVs weigh more for upgrade shoppers; never before launch
        base_w = np.array([s.share for s in cat.SERIES])
        upg_w = base_w * np.array([5.0 if s.new_suv else 1.0 for s in cat.SERIES])
        series = np.where(
            group == 2,
            _choice(rng, total, upg_w.tolist()),
            _choice(rng, total, base_w.tolist()),
        )
        launch = np.array([s.launch_year for s in cat.SERIES])
        cy, _, _ = _ymd(created)
        series = np.where(launch[series] > cy, 2, series)  # 远峰 has been on sale throughout
        won_veh = np.concatenate([np.zeros(na, np.int64), recent, np.zeros(nc + n_pure, np.int64)])
        series = np.where(group == 1, self.v_series[won_veh], series)
        trim = np.where(group == 1, self.v_trim[won_veh], rng.integers(0, 3, total))
        trims = [f"{s.name} {t.name}" for s in cat.SERIES for t in s.trims]
        trim_offset = np.cumsum([0] + [len(s.trims) for s in cat.SERIES])[:-1]
        order = np.lexsort((rng.random(total), created))
        mobiles = np.where(person >= 0, self.cust_mobile[pi], 0)
        mobiles[group == 3] = self.mobile_pool[n : n + n_pure]
        names = (
            pl.DataFrame(
                {
                    "g": group,
                    "c": self.cust_name.gather(pi),
                    "r": _name_series(rng, rng.random(total) < 0.6),
                }
            )
            .select(pl.when(pl.col("g") == 3).then(pl.col("r")).otherwise(pl.col("c")))
            .to_series()
        )
        stage_text = _enum_text("leads", "stage")
        status_text = _enum_text("leads", "status")
        reason_text = _enum_text("leads", "lost_reason")
        df = (
            pl.DataFrame(
                {
                    "d": dealer,
                    "name": names,
                    "m": mobiles,
                    "s": series,
                    "t": trim_offset[series] + np.minimum(trim, 2),
                    "full": rng.random(total) < 0.4,
                    "stage": stage,
                    "status": status,
                    "reason": reason,
                    "created": created,
                    "lost_on": lost_on,
                }
            )[order]
            .with_row_index("i", offset=1)
            .select(
                pl.concat_str([pl.lit("L"), _z(pl.col("i"), 9)]).alias("lead_no"),
                _lut(self.dealer_codes, "d").alias("dealer_code"),
                "name",
                pl.col("m").cast(pl.String).alias("mobile"),
                pl.when(pl.col("full"))
                .then(_lut(trims, "t"))
                .otherwise(_lut([s.name for s in cat.SERIES], "s"))
                .alias("model_of_interest"),
                _lut(
                    [stage_text[k] for k in ("inquiry", "visit", "test_drive", "quote")], "stage"
                ).alias("stage"),
                _lut([status_text[k] for k in ("open", "won", "lost")], "status").alias("status"),
                pl.when(pl.col("status") == 2)
                .then(
                    _lut(
                        [
                            reason_text[k]
                            for k in (
                                "price",
                                "configuration",
                                "delivery_time",
                                "competitor",
                                "unknown",
                            )
                        ],
                        "reason",
                    )
                )
                .alias("lost_reason"),
                _as_date("created").alias("created_on"),
                pl.when(pl.col("status") == 2).then(_as_date("lost_on")).alias("lost_on"),
            )
        )
        _write_xlsx(_labels("leads", df), self.out / KIND_FILES["leads"][0], "线索")
        self.add("leads", df.height)

    # ---------------------------------------------------------------- complaints

    def write_complaints(self) -> None:
        rng = self.rng("complaints")
        today = self.today
        k = max(1, round(self.n * 0.03))
        owners = np.flatnonzero(self.owner).astype(np.int64)
        pool = owners if owners.size else np.arange(self.n, dtype=np.int64)
        others = np.arange(self.n, dtype=np.int64)
        cust = np.where(rng.random(k) < 0.95, rng.choice(pool, k), rng.choice(others, k))
        start = self.since[cust]
        opened_day = start + np.floor(rng.random(k) * (today - start)).astype(np.int64)
        opened = opened_day * 86_400 + _hours(rng, k, 9, 21)
        sev = _choice(rng, k, (0.05, 0.35, 0.60))  # severe, medium, light
        lo = np.array([0, 3, 7])[sev]
        hi = np.array([4, 6, 8])[sev]
        satisfaction = rng.integers(lo, hi + 1)
        fresh = opened_day > today - 30
        st = np.where(
            fresh,
            _choice(rng, k, (0.4, 0.3, 0.3, 0.0)),
            _choice(rng, k, (0.0, 0.03, 0.40, 0.57)),
        )  # open, in_progress, resolved, closed
        max_h = np.array([240.0, 72.0, 48.0])[sev]
        resolved = opened + (rng.uniform(0.5, 1.0, k) * max_h * 3600).astype(np.int64)
        resolved = np.minimum(resolved, today * 86_400 - 60)
        dealer = self.cust_dealer[cust]
        veh = self.cust_latest_veh[cust]
        advisor = np.where(veh >= 0, self.v_advisor[np.maximum(veh, 0)], -1)
        advisor_ok = (advisor >= 0) & (self.staff_departed[np.maximum(advisor, 0)] > today)
        advisor = np.where(advisor_ok, advisor, self._pick(self.adv_active, dealer, rng.random(k)))
        manager = np.where(rng.random(k) < 0.7, self.sm_of[dealer], self.gm_of[dealer])
        owner = np.where(
            sev == 0,
            manager,
            np.where(sev == 1, self._pick(self.cm_active, dealer, rng.random(k)), advisor),
        )
        cats = list(cat.COMPLAINT_TEXTS)
        texts = [t for c in cats for t in cat.COMPLAINT_TEXTS[c]]
        per = np.array([len(cat.COMPLAINT_TEXTS[c]) for c in cats])
        ci = rng.integers(0, len(cats), k)
        ti = np.cumsum(np.concatenate([[0], per[:-1]]))[ci] + rng.integers(0, 3, k) % per[ci]
        y, mo, dd = _ymd(opened_day)
        order = np.lexsort((rng.random(k), opened))
        sev_text = _enum_text("complaints", "severity")
        st_text = _enum_text("complaints", "status")
        df = (
            pl.DataFrame(
                {
                    "ymd": y * 10_000 + mo * 100 + dd,
                    "d": dealer,
                    "customer_no": self.cust_no.gather(cust),
                    "m": self.cust_mobile[cust],
                    "opened": opened,
                    "sev": sev,
                    "sat": satisfaction,
                    "st": st,
                    "owner": owner,
                    "ci": ci,
                    "ti": ti,
                    "res": resolved,
                }
            )[order]
            .with_columns(pl.int_range(pl.len()).over("ymd").alias("seq"))
            .select(
                pl.concat_str(
                    [pl.lit("TS"), pl.col("ymd").cast(pl.String), _z(pl.col("seq") + 1, 4)]
                ).alias("complaint_no"),
                _lut(self.dealer_codes, "d").alias("dealer_code"),
                "customer_no",
                pl.col("m").cast(pl.String).alias("mobile"),
                _as_datetime("opened").alias("opened_at"),
                _lut([sev_text[x] for x in ("severe", "medium", "light")], "sev").alias("severity"),
                pl.when(pl.col("st") >= 2).then(pl.col("sat")).alias("satisfaction"),
                _lut(
                    [st_text[x] for x in ("open", "in_progress", "resolved", "closed")], "st"
                ).alias("status"),
                _lut(self.staff_no, "owner").alias("owner_staff_no"),
                _lut(cats, "ci").alias("category"),
                _lut(texts, "ti").alias("description"),
                pl.when(pl.col("st") >= 2).then(_as_datetime("res")).alias("resolved_at"),
            )
        )
        _write_xlsx(_labels("complaints", df), self.out / KIND_FILES["complaints"][0], "投诉")
        self.add("complaints", df.height)

    # ---------------------------------------------------------------- consents

    def write_consents(self) -> None:
        rng = self.rng("consents")
        today = self.today
        n = self.n
        # per channel: who has a consent record at all, and how often it was granted
        have_p = {
            "sms": np.full(n, 0.95),
            "wecom": np.full(n, 0.60),
            "push": np.full(n, 0.45),
            "email": np.where(self.cust_email, 1.0, 0.0),
            "phone": np.full(n, 0.70),
        }
        grant_p = {"sms": 0.90, "wecom": 0.95, "push": 0.85, "email": 0.85, "phone": 0.80}
        chan_keys = list(have_p)
        cust_l, chan_l = [], []
        for c, key in enumerate(chan_keys):
            who = np.flatnonzero(rng.random(n) < have_p[key]).astype(np.int64)
            cust_l.append(who)
            chan_l.append(np.full(who.size, c, dtype=np.int64))
        cust = np.concatenate(cust_l)
        chan = np.concatenate(chan_l)
        order = np.argsort(cust * 8 + chan, kind="stable")
        cust, chan = cust[order], chan[order]
        rows = cust.size
        granted_p = np.array([grant_p[k] for k in chan_keys])[chan]
        granted = rng.random(rows) < granted_p
        owner = self.owner[cust]
        basis = np.where(
            owner, _choice(rng, rows, (0.7, 0.2, 0.1)), _choice(rng, rows, (0.0, 0.6, 0.4))
        )  # written at purchase, online agreement, 400 hotline
        since = self.since[cust]
        later = since + np.floor(rng.random(rows) * (today - since)).astype(np.int64)
        g_day = np.where(basis == 0, since, later)
        g_at = g_day * 86_400 + _hours(rng, rows, 9, 20)
        withdrawn = granted & (rng.random(rows) < 0.04)
        w_at = g_at + (rng.random(rows) * (today * 86_400 - g_at)).astype(np.int64)
        withdrawn &= w_at > g_at + 86_400
        granted_now = granted & ~withdrawn
        # dirty rows (leaves: nothing refers to a consent): an unknown channel or a yes/no
        # answer that is neither
        n_dirty = self.dirty_count(rows)
        how = np.full(rows, -1, dtype=np.int64)
        how[rng.choice(rows, size=min(n_dirty, rows), replace=False)] = rng.integers(
            0, 2, min(n_dirty, rows)
        )
        chan_text = _enum_text("consents", "channel")
        basis_text = _enum_text("consents", "basis")
        purpose_text = _enum_text("consents", "purpose")
        source = np.where(basis == 0, 0, np.where(basis == 2, 4, rng.integers(1, 4, rows)))
        df = pl.DataFrame(
            {
                "d": self.cust_dealer[cust],
                "customer_no": self.cust_no.gather(cust),
                "m": self.cust_mobile[cust],
                "ch": chan,
                "g": granted_now,
                "asked": granted,
                "b": basis,
                "ga": g_at,
                "w": withdrawn,
                "wa": w_at,
                "src": source,
                "how": how,
                "bad": rng.integers(0, 3, rows),
            }
        )
        columns: list[pl.Expr] = [
            _lut(self.dealer_codes, "d").alias("dealer_code"),
            pl.col("customer_no"),
            pl.col("m").cast(pl.String).alias("mobile"),
            pl.when(pl.col("how") == 0)
            .then(_lut(_BAD_CHANNELS, "bad"))
            .otherwise(_lut([chan_text[k] for k in chan_keys], "ch"))
            .alias("channel"),
            pl.lit(purpose_text["marketing"]).alias("purpose"),
            pl.when(pl.col("how") == 1)
            .then(_lut(_BAD_BOOLS, "bad"))
            .when(pl.col("g"))
            .then(pl.lit("是"))
            .otherwise(pl.lit("否"))
            .alias("granted"),
            _lut(
                [
                    basis_text[k]
                    for k in ("written_at_purchase", "online_agreement", "hotline_voice")
                ],
                "b",
            ).alias("basis"),
            pl.when(pl.col("asked")).then(_as_datetime("ga")).alias("granted_at"),
            pl.when(pl.col("w")).then(_as_datetime("wa")).alias("withdrawn_at"),
            _lut(["DMS", "APP", "小程序", "官网", "400热线"], "src").alias("source"),
        ]
        candidates = np.flatnonzero(how < 0).astype(np.int64)
        dups = _dup_positions(rng, candidates, self.dup_count(rows))
        df = _with_duplicates(df, dups)
        self.write_frame("consents", df, columns)
        self.add("consents", df.height, dirty=int((how >= 0).sum()), dups=dups.size)

    # ---------------------------------------------------------------- WeCom relations

    def write_wecom(self) -> None:
        rng = self.rng("wecom")
        today = self.today
        n = self.n
        wecom_start = _day(dt.date(2019, 6, 1))  # dealers moved owners to WeCom from 2019
        latest = self.cust_latest_veh
        has_car = latest >= 0
        deliv = np.where(has_car, self.v_delivery[np.maximum(latest, 0)], self.since)
        age = (today - deliv) / YEAR
        p = np.where(
            has_car,
            np.where(age < 1, 0.90, np.where(age < 2, 0.85, np.where(age < 4, 0.72, 0.45))),
            0.25,
        )
        friend = rng.random(n) < p
        cust = np.flatnonzero(friend).astype(np.int64)
        k = cust.size
        owner = has_car[cust]
        dealer = self.cust_dealer[cust]
        adv = np.where(owner, self.v_advisor[np.maximum(latest[cust], 0)], -1)
        adv_ok = (adv >= 0) & (self.staff_departed[np.maximum(adv, 0)] > today)
        cm = self._pick(self.cm_active, dealer, rng.random(k))
        sales = self._pick(self.sales_active, dealer, rng.random(k))
        staff = np.where(owner, np.where(adv_ok, adv, cm), np.where(sales >= 0, sales, cm))
        d0 = deliv[cust]
        recent_enough = d0 >= wecom_start
        state = np.where(
            owner,
            np.where(
                recent_enough & (rng.random(k) < 0.75),
                0,
                np.where(rng.random(k) < 0.8, 1, 2),
            ),
            3,
        )  # delivery_qr, service_qr, event_qr, showroom_qr
        lo = np.maximum(d0, wecom_start)
        later = lo + np.floor(rng.random(k) * np.maximum(today - lo, 1)).astype(np.int64)
        add_day = np.where((state == 0) | (state == 3), d0 + rng.integers(0, 6, k), later)
        add_day = np.clip(add_day, wecom_start, today - 1)
        # a fifth of owner friendships also include a customer manager (same external id)
        extra = owner & (rng.random(k) < 0.2) & (cm != staff)
        rel_cust = np.concatenate([cust, cust[extra]])
        rel_staff = np.concatenate([staff, cm[extra]])
        rel_state = np.concatenate([state, np.full(int(extra.sum()), 1)])
        rel_day = np.concatenate(
            [
                add_day,
                np.minimum(add_day[extra] + rng.integers(0, 200, int(extra.sum())), today - 1),
            ]
        )
        ext = _external_ids(rng, k)
        rel_ext = np.concatenate([np.arange(k), np.flatnonzero(extra)]).astype(np.int64)
        r = rel_cust.size
        added = rel_day * 86_400 + _hours(rng, r, 9, 21)
        deleted = (rng.random(r) < 0.07) & (rel_day < today - 7)
        del_at = added + (
            (7 * 86_400) + rng.random(r) * np.maximum((today - rel_day - 7) * 86_400, 1)
        ).astype(np.int64)
        del_at = np.minimum(del_at, today * 86_400 - 60)
        by = rng.random(r) < 0.8
        order = np.lexsort((added, rel_staff))
        by_text = _enum_text("wecom-relations", "deleted_by")
        df = pl.DataFrame(
            {
                "st": rel_staff,
                "ext": ext.gather(rel_ext),
                "d": self.cust_dealer[rel_cust],
                "customer_no": self.cust_no.gather(rel_cust),
                "m": self.cust_mobile[rel_cust],
                "state": rel_state,
                "added": added,
                "del": deleted,
                "del_at": del_at,
                "by": by,
            }
        )[order].select(
            _lut(self.staff_no, "st").alias("staff_no"),
            pl.col("ext").alias("external_userid"),
            _lut(self.dealer_codes, "d").alias("dealer_code"),
            "customer_no",
            pl.col("m").cast(pl.String).alias("mobile"),
            _lut(["delivery_qr", "service_qr", "event_qr", "showroom_qr"], "state").alias("state"),
            _as_datetime("added").alias("added_at"),
            pl.when(pl.col("del")).then(_as_datetime("del_at")).alias("deleted_at"),
            pl.when(pl.col("del"))
            .then(
                pl.when(pl.col("by"))
                .then(pl.lit(by_text["customer"]))
                .otherwise(pl.lit(by_text["staff"]))
            )
            .alias("deleted_by"),
        )
        path = self.out / KIND_FILES["wecom-relations"][0]
        _write_csv(_labels("wecom-relations", df), path, "utf-8")
        self.add("wecom-relations", df.height)

    # ---------------------------------------------------------------- behaviour events

    def write_events(self) -> None:
        """App / mini-program / web tracking export as JSON Lines.

        Lines are assembled from pre-rendered JSON fragments (per customer, per type/source/
        target combination, per property value) and joined by polars' CSV writer with ","
        as the separator: no per-row json.dumps, ~1 µs per event.
        """
        rng = self.rng("events")
        today = self.today
        n = self.n
        latest = self.cust_latest_veh
        has_car = latest >= 0
        car_age = np.where(has_car, (today - self.v_purchase[np.maximum(latest, 0)]) / YEAR, 0.0)
        # upgrade intent: owners of older cars browse the new SUVs and the trade-in page
        upgrade = has_car & (car_age >= 5.0) & (rng.random(n) < 0.6)
        segment = np.where(upgrade, 2, np.where(has_car, 1, 0))  # prospect, owner, upgrader
        mean = np.array([11.5, 21.0, 26.0])[segment]
        shape = 0.45  # negative binomial: many silent customers, a few very active ones
        count = np.minimum(rng.negative_binomial(shape, shape / (shape + mean)), 400)
        ident = self._event_identities(rng)
        combos, combo_index = _event_combos()
        props, prop_offset, prop_size = _event_props()
        type_p = np.array(
            [
                [0.45, 0.30, 0.10, 0.10, 0.02, 0.03],  # prospect
                [0.18, 0.32, 0.30, 0.10, 0.06, 0.04],  # owner
                [0.30, 0.30, 0.22, 0.10, 0.05, 0.03],  # upgrader
            ]
        ).cumsum(axis=1)
        source_p = np.array([[0.2, 0.4, 0.4], [0.55, 0.30, 0.15], [0.55, 0.30, 0.15]]).cumsum(1)
        series_w = np.array([s.share for s in cat.SERIES])
        new_w = series_w * np.array([6.0 if s.new_suv else 1.0 for s in cat.SERIES])
        series_cdf = np.stack(
            [series_w / series_w.sum(), series_w / series_w.sum(), new_w / new_w.sum()]
        ).cumsum(axis=1)
        page_w = np.ones(len(cat.PAGES))
        upg_page_w = page_w.copy()
        upg_page_w[cat.PAGES.index("二手车置换")] = 5.0
        upg_page_w[cat.PAGES.index("新车资讯")] = 3.0
        page_cdf = np.stack(
            [page_w / page_w.sum(), page_w / page_w.sum(), upg_page_w / upg_page_w.sum()]
        ).cumsum(axis=1)
        # relative activity by hour of day: quiet nights, lunch bump, evening peak
        hour_w = np.array(
            [1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2, 3.5, 3.5, 3, 3,
             4, 3.5, 3, 3, 3, 3.5, 4, 5, 6, 6, 4.5, 2.5]
        )  # fmt: skip
        hour_w = hour_w / hour_w.sum()
        window_start = np.maximum(self.since, today - 730)
        base_sec = (today - 731) * 86_400
        path = self.out / KIND_FILES["events"][0]
        total = 0
        chunk = 50_000  # customers per slice (~1M events)
        with path.open("wb") as fh:
            for lo in range(0, n, chunk):
                hi = min(n, lo + chunk)
                c = count[lo:hi]
                local = np.repeat(np.arange(hi - lo, dtype=np.int64), c)
                cust = local + lo
                m = local.size
                span = today - window_start[cust]
                day = today - 1 - np.floor(span * rng.random(m) ** 1.6).astype(np.int64)
                sec = (
                    day * 86_400
                    + rng.choice(24, size=m, p=hour_w) * 3600
                    + rng.integers(0, 3600, m)
                )
                # sort each customer's events by time with one int64 sort (no lexsort)
                key = np.sort(local * (1 << 32) + (sec - base_sec))
                local = key >> 32
                cust = local + lo
                sec = (key & 0xFFFFFFFF) + base_sec
                seg = segment[cust]
                etype = (rng.random(m)[:, None] > type_p[seg]).sum(axis=1)
                src = (rng.random(m)[:, None] > source_p[seg]).sum(axis=1)
                u = rng.random(m)
                target = np.zeros(m, dtype=np.int64)
                is_model = etype == 0
                target[is_model] = (u[is_model, None] > series_cdf[seg[is_model]]).sum(axis=1)
                is_page = etype == 1
                target[is_page] = (u[is_page, None] > page_cdf[seg[is_page]]).sum(axis=1)
                n_targets = np.array([len(t) for t in _EVENT_TARGETS])
                other = ~is_model & ~is_page
                target[other] = (u[other] * n_targets[etype[other]]).astype(np.int64)
                target = np.minimum(target, n_targets[etype] - 1)
                combo = combo_index[etype, src] + target
                prop = prop_offset[etype] + np.minimum(
                    rng.geometric(1.0 / 40.0, m) - 1, prop_size[etype] - 1
                )
                frame = pl.DataFrame(
                    {
                        "id": np.arange(total, total + m, dtype=np.int64) + 1,
                        "c": cust,
                        "ts": sec,
                        "combo": combo,
                        "prop": prop,
                    }
                ).select(
                    pl.format('{{"事件ID":"EV{}"', _z(pl.col("id"), 10)).alias("a"),
                    pl.lit(ident).gather(pl.col("c")).alias("b"),
                    _as_datetime("ts")
                    .dt.strftime('"发生时间":"%Y-%m-%dT%H:%M:%S+08:00"')
                    .alias("c"),
                    pl.lit(combos).gather(pl.col("combo")).alias("d"),
                    pl.lit(props).gather(pl.col("prop")).alias("e"),
                )
                frame.write_csv(fh, include_header=False, quote_style="never", separator=",")
                total += m
        self.add("events", total)

    def _event_identities(self, rng: np.random.Generator) -> pl.Series:
        """Per customer, the JSON fragment identifying them: mostly the app login mobile,
        else the dealer code and customer number the mini program was bound to."""
        n = self.n
        by_mobile = rng.random(n) < 0.85
        keys = KINDS["events"]
        k_mobile = keys.field("mobile").headers[0]
        k_dealer = keys.field("dealer_code").headers[0]
        k_cust = keys.field("customer_no").headers[0]
        return (
            pl.DataFrame(
                {
                    "bm": by_mobile,
                    "m": self.cust_mobile,
                    "d": self.cust_dealer,
                    "cn": self.cust_no,
                }
            )
            .select(
                pl.when(pl.col("bm"))
                .then(pl.format(f'"{k_mobile}":"{{}}"', pl.col("m")))
                .otherwise(
                    pl.format(
                        f'"{k_dealer}":"{{}}","{k_cust}":"{{}}"',
                        _lut(self.dealer_codes, "d"),
                        pl.col("cn"),
                    )
                )
            )
            .to_series()
        )


# --------------------------------------------------------------------------------------------
# Module-level tables and helpers used by the simulation
# --------------------------------------------------------------------------------------------

_PROVINCE_FULL = {
    "北京": "北京市",
    "上海": "上海市",
    "天津": "天津市",
    "重庆": "重庆市",
    "广西": "广西壮族自治区",
    "新疆": "新疆维吾尔自治区",
}
# Values no import contract accepts (see kinds.ORDER_TYPES / CHANNELS / BOOL parsing).
_BAD_ORDER_TYPES = ("洗车", "内部", "返工单", "PDI")
_BAD_AMOUNTS = ("待定", "N/A", "12O.00", "--")
_BAD_CHANNELS = ("微博", "抖音", "QQ")
# Reserved example domains (RFC 2606): synthetic addresses must never reach a real mailbox.
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
_BAD_BOOLS = ("待定", "不确定", "??")

_EVENT_TYPES = (
    "model_view",
    "page_view",
    "app_open",
    "link_click",
    "community_post",
    "activity_signup",
)
_EVENT_SOURCES = ("app", "mini_program", "web")
_EVENT_TARGETS: tuple[tuple[str | None, ...], ...] = (
    tuple(s.name for s in cat.SERIES),
    cat.PAGES,
    (None,),
    cat.CAMPAIGNS,
    cat.COMMUNITY_TOPICS,
    cat.ACTIVITIES,
)


def _z(e: pl.Expr, width: int) -> pl.Expr:
    return e.cast(pl.String).str.zfill(width)


def _name_series(rng: np.random.Generator, male: BArr) -> pl.Series:
    """Chinese names: a surname by real frequency + one or two given-name characters."""
    n = male.size
    surnames = [s for s, _ in cat.SURNAMES]
    sur = _choice(rng, n, [w for _, w in cat.SURNAMES])
    pool = list(cat.GIVEN_MALE) + list(cat.GIVEN_FEMALE)
    nm, nf = len(cat.GIVEN_MALE), len(cat.GIVEN_FEMALE)
    g1 = np.where(male, rng.integers(0, nm, n), nm + rng.integers(0, nf, n))
    g2 = np.where(male, rng.integers(0, nm, n), nm + rng.integers(0, nf, n))
    two = rng.random(n) < 0.75
    return (
        pl.DataFrame({"s": sur, "a": g1, "b": g2, "two": two})
        .select(
            pl.concat_str(
                [
                    _lut(surnames, "s"),
                    _lut(pool, "a"),
                    pl.when(pl.col("two")).then(_lut(pool, "b")).otherwise(pl.lit("")),
                ]
            ).alias("name")
        )
        .to_series()
    )


def _tag_combos() -> list[str]:
    tags = cat.CUSTOMER_TAGS
    out = list(tags)
    out += [f"{a},{b}" for i, a in enumerate(tags) for b in tags[i + 1 :]]
    return out


def _broken_vin(vin: pl.Expr, how: pl.Expr) -> pl.Expr:
    """A VIN typed wrong: 16 characters, or an I / O / Q that VINs never contain."""
    return (
        pl.when(how == 0)
        .then(vin.str.slice(0, 16))
        .when(how == 1)
        .then(pl.concat_str([vin.str.slice(0, 11), pl.lit("O"), vin.str.slice(12)]))
        .when(how == 2)
        .then(pl.concat_str([vin.str.slice(0, 13), pl.lit("I"), vin.str.slice(14)]))
        .otherwise(pl.concat_str([vin.str.slice(0, 4), pl.lit("Q"), vin.str.slice(5)]))
    )


def _external_ids(rng: np.random.Generator, k: int) -> pl.Series:
    """WeCom external_userid look-alikes: "wm" + 30 base-62 characters."""
    alphabet = np.frombuffer(
        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8
    )
    chars = np.empty((k, 32), dtype=np.uint8)
    chars[:, 0] = ord("w")
    chars[:, 1] = ord("m")
    chars[:, 2:] = alphabet[rng.integers(0, alphabet.size, (k, 30))]
    return pl.Series("ext", chars.view("S32").ravel()).cast(pl.String)


def _event_combos() -> tuple[pl.Series, IArr]:
    """JSON fragments for every (type, source, target) and the index of each (type, source)."""
    keys = KINDS["events"]
    k_type = keys.field("event_type").headers[0]
    k_src = keys.field("source").headers[0]
    k_target = keys.field("target").headers[0]
    out: list[str] = []
    index = np.zeros((len(_EVENT_TYPES), len(_EVENT_SOURCES)), dtype=np.int64)
    for t, etype in enumerate(_EVENT_TYPES):
        for s, src in enumerate(_EVENT_SOURCES):
            index[t, s] = len(out)
            for target in _EVENT_TARGETS[t]:
                frag = f'"{k_type}":"{etype}","{k_src}":"{src}"'
                if target is not None:
                    frag += f',"{k_target}":"{target}"'
                out.append(frag)
    return pl.Series(out, dtype=pl.String), index


def _event_props() -> tuple[pl.Series, IArr, IArr]:
    """JSON fragments for the ``properties`` object (closing the line), per event type."""
    key = KINDS["events"].field("properties").headers[0]
    per_type: list[list[str]] = [
        [f'{{"duration_s":{d}}}' for d in range(3, 603)],
        [f'{{"duration_s":{d}}}' for d in range(1, 301)],
        [f'{{"app_version":"5.{a}.{b}"}}' for a in range(4, 9) for b in range(4)],
        [f'{{"channel":"{c}"}}' for c in ("sms", "wecom", "push", "email")],
        [f'{{"likes":{x}}}' for x in range(0, 200)],
        [f'{{"people":{x}}}' for x in range(1, 5)],
    ]
    out: list[str] = []
    offset = np.zeros(len(per_type), dtype=np.int64)
    size = np.zeros(len(per_type), dtype=np.int64)
    for t, values in enumerate(per_type):
        offset[t] = len(out)
        size[t] = len(values)
        out += [f'"{key}":{v}}}' for v in values]
    return pl.Series(out, dtype=pl.String), offset, size
