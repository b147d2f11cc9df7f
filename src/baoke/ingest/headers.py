"""Map source column headers to a kind's canonical fields.

Matching is done on :func:`normalise_header` forms, so ``手机号码``, ``Mobile`` and ``mobile_no``
are compared without case, spaces, underscores, hyphens or bracketed units (``金额(元)`` matches
``金额``). A custom mapping (YAML, see :func:`load_mapping`) is applied first and wins over the
built-in headers of :mod:`baoke.ingest.kinds`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from baoke.errors import InputError
from baoke.ingest.kinds import KindSpec

_BRACKETED = re.compile(r"[(（\[【][^)）\]】]*[)）\]】]")
_DROP = re.compile(r"[\s_\-－—·.。:：/\\]+")


@dataclass(frozen=True)
class ColumnMap:
    """Which source column feeds each canonical field, and what is left over."""

    fields: dict[str, str]  # canonical field name -> source column name
    ignored: list[str]  # source columns not mapped to anything

    def source_for(self, field: str) -> str | None:
        """The source column mapped to ``field``, if any."""
        return self.fields.get(field)


def normalise_header(h: str) -> str:
    """Comparable form of a header: NFKC, casefolded, without separators or bracketed units.

    >>> normalise_header(" 金额（元） ")
    '金额'
    >>> normalise_header("Mobile_No")
    'mobileno'
    """
    text = unicodedata.normalize("NFKC", h).replace("\ufeff", "")
    stripped = _BRACKETED.sub("", text)
    # when the bracketed part is the whole header, keep its content
    text = stripped if _DROP.sub("", stripped) else re.sub(r"[()（）\[\]【】]", "", text)
    return _DROP.sub("", text).casefold()


def _builtin_index(kind: KindSpec) -> dict[str, str]:
    """normalised header -> canonical field; the first field that claims a header keeps it."""
    index: dict[str, str] = {}
    for spec in kind.fields:
        for header in (*spec.headers, spec.name):
            index.setdefault(normalise_header(header), spec.name)
    return index


def load_mapping(path: Path, kind: KindSpec) -> dict[str, str]:
    """Read a custom header mapping: ``{"kind": ..., "columns": {source header: field}}``.

    ``kind`` is optional; when given it must equal ``kind.name``. Field names may be canonical
    names (``order_no``) or any built-in header of that field (``工单号``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"mapping file not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"mapping file {path} is a directory") from None
    except PermissionError:
        raise InputError(f"permission denied: {path}") from None
    except UnicodeDecodeError:
        raise InputError(f"mapping file {path.name} is not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"cannot read mapping file {path}: {exc.strerror or exc}") from None
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise InputError(f"mapping file {path.name}: invalid YAML{where}: {problem}") from None
    if data is None:
        raise InputError(f"mapping file {path.name} is empty")
    if not isinstance(data, dict):
        raise InputError(f"mapping file {path.name}: expected a mapping with a 'columns' key")
    unknown_keys = sorted(str(k) for k in data if k not in ("kind", "columns"))
    if unknown_keys:
        raise InputError(
            f"mapping file {path.name}: unknown key(s) {', '.join(unknown_keys)}; "
            "expected 'kind' and 'columns'"
        )
    declared = data.get("kind")
    if declared is not None and str(declared).strip() != kind.name:
        raise InputError(
            f"mapping file {path.name} is for kind '{declared}', but importing '{kind.name}'"
        )
    columns = data.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise InputError(
            f"mapping file {path.name}: 'columns' must be a non-empty mapping of "
            "source header: field"
        )
    by_name = {spec.name: spec.name for spec in kind.fields}
    builtin = _builtin_index(kind)
    out: dict[str, str] = {}
    for source, target in columns.items():
        if source is None or target is None or isinstance(target, dict | list):
            raise InputError(
                f"mapping file {path.name}: bad entry {source!r}: {target!r}; "
                "expected 'source header: field'"
            )
        tgt = str(target).strip()
        field = by_name.get(tgt) or builtin.get(normalise_header(tgt))
        if field is None:
            raise InputError(
                f"mapping file {path.name}: unknown field '{tgt}' for {kind.name}; "
                f"valid fields: {', '.join(kind.field_names)}"
            )
        out[str(source).strip()] = field
    return out


def resolve_columns(
    kind: KindSpec, columns: Sequence[str], mapping: Mapping[str, str] | None = None
) -> ColumnMap:
    """Assign source ``columns`` to ``kind``'s fields; InputError if a required one is missing.

    Custom ``mapping`` entries (source header -> canonical field) are matched first, exactly and
    then by normalised form. Then built-in headers are matched by normalised form. When two
    source columns map to the same field, the first (in file order) wins and the other is
    listed in ``ignored``.
    """
    valid = set(kind.field_names)
    custom_exact: dict[str, str] = {}
    custom_norm: dict[str, str] = {}
    for source, field in (mapping or {}).items():
        if field not in valid:
            raise InputError(
                f"{kind.name}: mapping targets unknown field '{field}'; "
                f"valid fields: {', '.join(kind.field_names)}"
            )
        custom_exact.setdefault(source.strip(), field)
        custom_norm.setdefault(normalise_header(source), field)
    builtin = _builtin_index(kind)

    fields: dict[str, str] = {}
    claimed: set[int] = set()
    # pass 1: custom mapping (wins over built-ins), pass 2: built-in headers
    for pass_no in (1, 2):
        for i, col in enumerate(columns):
            if i in claimed:
                continue
            target: str | None
            if pass_no == 1:
                target = custom_exact.get(col.strip()) or custom_norm.get(normalise_header(col))
            else:
                target = builtin.get(normalise_header(col))
            if target is None or target in fields:
                continue
            fields[target] = col
            claimed.add(i)
    ignored = [col for i, col in enumerate(columns) if i not in claimed]

    missing = [spec for spec in kind.fields if spec.required and spec.name not in fields]
    if missing:
        wanted = ", ".join(f"{spec.label} ({spec.name})" for spec in missing)
        found = ", ".join(columns) if columns else "(none)"
        raise InputError(f"{kind.name}: required column missing: {wanted}; found columns: {found}")
    ordered = {name: fields[name] for name in kind.field_names if name in fields}
    return ColumnMap(fields=ordered, ignored=ignored)


__all__ = ["ColumnMap", "load_mapping", "normalise_header", "resolve_columns"]
