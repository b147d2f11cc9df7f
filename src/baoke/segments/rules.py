"""The segment/tag rule language: parse YAML, validate against the catalogue, compile to SQL.

A rule file holds one segment (``name``, ``label``, ``description``, ``kind``, ``rule``) or several
under ``segments:``. The ``rule`` is a condition tree (``all``/``any``/``not``, ``field`` tests on
the profile, ``count``/``exists`` over record tables); ``docs/segments.md`` is the reference.

Design points:

* Parsing works on YAML *nodes* (``yaml.compose``), never on constructed Python objects, so every
  error carries the line and column of the offending key or value, and YAML 1.1 surprises (``=``
  as a special tag, ``yes`` as a boolean) are handled explicitly.
* All errors of a file are collected; :class:`RuleError` is the earliest, with ``.errors`` holding
  all of them in file order.
* SQL is built as sqlglot expressions: identifiers come only from the catalogue, user values only
  become literals, so a value can never change the shape of the query.
* NULL semantics: a test on a NULL field is false (SQL's three-valued logic, with NULL treated as
  "not a member"); ``not`` is compiled as ``NOT COALESCE(expr, FALSE)`` so a rule and its
  negation always partition the customers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from sqlglot import exp

from baoke.errors import LocatedError
from baoke.profiles.schema import PROFILE_COLUMNS, RECORD_TABLES, Column, Kind

__all__ = [
    "SUPPORTED_DIALECTS",
    "AllOf",
    "AnyOf",
    "Condition",
    "Count",
    "Field",
    "Not",
    "Offset",
    "RuleError",
    "SegmentDef",
    "builtin_segments",
    "compile_condition",
    "condition_expression",
    "load_rule_file",
    "parse_rules",
    "profile_fields",
    "segment_query",
]

SUPPORTED_DIALECTS = ("duckdb", "spark")
SEGMENT_KINDS = ("segment", "tag")

# --------------------------------------------------------------------------------------------
# AST
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Offset:
    """A calendar offset relative to as_of: ``amount`` (signed) ``unit``s; ``unit`` in d/w/m/y."""

    amount: int
    unit: str

    def __str__(self) -> str:
        if self.amount == 0:
            return "today"
        return f"{self.amount:+d}{self.unit}"


Scalar = int | float | str | bool | dt.date | Offset
Value = Scalar | tuple[Scalar, ...]


@dataclass(frozen=True)
class Field:
    """A test of one column: a profile field, or a record column inside ``count.where``.

    ``value`` is already typed: MONEY in integer fen, DATE as :class:`datetime.date` or
    :class:`Offset`, ``in``/``not_in``/``between`` as tuples, ``is_null`` as a bool, window
    operators (``within_last``/``within_next``) as a non-negative :class:`Offset`.
    """

    column: str
    kind: Kind
    op: str
    value: Value


@dataclass(frozen=True)
class Count:
    """The number of rows of a record table for the customer, compared with ``op`` ``value``."""

    table: str
    where: tuple[Field, ...]
    within: Offset | None  # (as_of - within, as_of] on the table's time column; None: <= as_of
    op: str
    value: int | tuple[int, int]


@dataclass(frozen=True)
class AllOf:
    """True when every item is true."""

    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    """True when at least one item is true."""

    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    """True when the item is false or unknown (NULL)."""

    item: Condition


Condition = AllOf | AnyOf | Not | Field | Count


def profile_fields(cond: Condition) -> frozenset[str]:
    """The profile fields a condition reads (not the record columns a ``count`` filters on)."""
    if isinstance(cond, Field):
        return frozenset((cond.column,))
    if isinstance(cond, AllOf | AnyOf):
        return frozenset().union(*(profile_fields(item) for item in cond.items))
    if isinstance(cond, Not):
        return profile_fields(cond.item)
    return frozenset()


@dataclass(frozen=True)
class SegmentDef:
    """One segment or auto-tag rule, parsed and validated."""

    name: str
    label: str
    description: str
    kind: str  # "segment" or "tag" (members get the tag ``label``)
    rule: Condition
    source: str  # the rule file's path, or "builtin:<name>"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class RuleError(LocatedError):
    """A rule file is wrong; ``str()`` is ``path:line:column: pointer: message``.

    ``pointer`` is the place in the rule (``rule.all[1].field``); see
    :class:`baoke.errors.LocatedError` for the other attributes.
    """

    errors: tuple[RuleError, ...]


# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

_OP_ALIASES: dict[str, str] = {
    "=": "=",
    "==": "=",
    "eq": "=",
    "!=": "!=",
    "<>": "!=",
    "ne": "!=",
    ">": ">",
    "gt": ">",
    ">=": ">=",
    "ge": ">=",
    "gte": ">=",
    "<": "<",
    "lt": "<",
    "<=": "<=",
    "le": "<=",
    "lte": "<=",
    "in": "in",
    "not_in": "not_in",
    "between": "between",
    "is_null": "is_null",
    "contains": "contains",
    "within_last": "within_last",
    "within_next": "within_next",
    "before": "before",
    "after": "after",
}
_CMP = ("=", "!=", ">", ">=", "<", "<=")
_DATE_OPS = (*_CMP, "between", "within_last", "within_next", "before", "after", "is_null")
_KIND_OPS: dict[Kind, tuple[str, ...]] = {
    Kind.INT: (*_CMP, "in", "not_in", "between", "is_null"),
    Kind.FLOAT: (*_CMP, "in", "not_in", "between", "is_null"),
    Kind.MONEY: (*_CMP, "in", "not_in", "between", "is_null"),
    Kind.DATE: _DATE_OPS,
    Kind.TIMESTAMP: _DATE_OPS,
    Kind.BOOL: ("=", "!=", "is_null"),
    Kind.TEXT: ("=", "!=", "in", "not_in", "contains", "is_null"),
    Kind.TAGS: ("contains", "is_null"),
}
_COUNT_OPS = (*_CMP, "between")
_COND_KEYS = ("all", "any", "not", "field", "count", "exists")
_SEGMENT_KEYS = ("name", "label", "description", "kind", "rule")
_COUNT_KEYS = ("table", "where", "within_last")

_PROFILE: dict[str, Column] = {c.name: c for c in PROFILE_COLUMNS}
_RECORDS: dict[str, dict[str, Column]] = {
    table: {c.name: c for c in cols} for table, (_, cols) in RECORD_TABLES.items()
}

_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
_BARE_OPERATOR_RE = re.compile(r"\s*(-\s+)?[>!]")
_DURATION_RE = re.compile(r"([+-]?)(\d+)([dwmy])")
_MONEY_RE = re.compile(r"[¥￥]?\s*(\d[\d,]*(?:\.\d+)?)\s*(万)?\s*(元)?")
# Keep offsets within about a century: enough for any business rule, far from date overflow.
_MAX_AMOUNT = {"d": 36_600, "w": 5_300, "m": 1_200, "y": 100}

_T_NULL = "tag:yaml.org,2002:null"
_T_BOOL = "tag:yaml.org,2002:bool"
_T_INT = "tag:yaml.org,2002:int"
_T_FLOAT = "tag:yaml.org,2002:float"
_T_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_CONSTRUCTED = (_T_NULL, _T_BOOL, _T_INT, _T_FLOAT, _T_TIMESTAMP)

_KIND_WORDS = {
    Kind.INT: "an integer",
    Kind.FLOAT: "a number",
    Kind.MONEY: "an amount in yuan",
    Kind.DATE: "a date",
    Kind.TIMESTAMP: "a date",
    Kind.BOOL: "true or false",
    Kind.TEXT: "text",
    Kind.TAGS: "a tag",
}


def _suggest(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _join(pointer: str, key: str) -> str:
    return f"{pointer}.{key}" if pointer else key


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------

_T = TypeVar("_T")
_Entry = tuple[str, yaml.Node, yaml.Node]


class _Parser:
    """Walks the composed YAML tree; one instance per file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[RuleError] = []
        self._constructor = yaml.constructor.SafeConstructor()

    # ---- plumbing ------------------------------------------------------------------------

    def error(self, node: yaml.Node, pointer: str, message: str) -> RuleError:
        mark = node.start_mark
        return RuleError(message, self.path, mark.line + 1, mark.column + 1, pointer)

    def collect(self, fn: Callable[[], _T]) -> _T | None:
        """Run one independent piece of parsing, keeping its error and going on with the rest."""
        try:
            return fn()
        except _Collected:
            return None
        except RuleError as err:
            self.errors.append(err)
            return None

    def check_tag(self, node: yaml.Node, pointer: str) -> None:
        # An unquoted "!=" is read by YAML as a local tag, silently changing the rule.
        if node.tag.startswith("!"):
            raise self.error(
                node,
                pointer,
                f"unexpected YAML tag '{node.tag}'; quote operators that start with '!' or '>' "
                '(write "!=": 3) or use the word form (ne, ge, gt)',
            )

    def entries(self, node: yaml.Node, pointer: str, what: str) -> list[_Entry]:
        self.check_tag(node, pointer)
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, pointer, f"expected a mapping (key: value) for {what}")
        out: list[_Entry] = []
        seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            self.check_tag(key_node, pointer)
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, pointer, "a key must be a plain word")
            key = str(key_node.value)
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise self.error(
                    key_node, _join(pointer, key), f"duplicate key '{key}' (first at line {first})"
                )
            seen[key] = key_node
            out.append((key, key_node, value_node))
        return out

    def scalar(self, node: yaml.Node, pointer: str) -> object:
        """The Python value of a scalar node (str for anything YAML would not type)."""
        self.check_tag(node, pointer)
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, pointer, "expected a single value, not a list or mapping")
        if node.tag in _CONSTRUCTED:
            try:
                return self._constructor.construct_object(node, deep=True)
            except (ValueError, yaml.YAMLError):
                # Looks like a date but is not one (2024-02-30): let the kind check report it.
                return self.unicode(node, pointer)
        return self.unicode(node, pointer)

    def unicode(self, node: yaml.ScalarNode, pointer: str) -> str:
        """The node's text, with JSON-style surrogate pairs ("\\ud83d\\ude00") joined."""
        text = str(node.value)
        if not any("\ud800" <= ch <= "\udfff" for ch in text):
            return text
        # PyYAML decodes each \u escape on its own, leaving the two halves of a pair apart.
        try:
            return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        except UnicodeDecodeError:
            raise self.error(node, pointer, "text contains an unpaired surrogate") from None

    def text(self, node: yaml.Node, pointer: str, what: str) -> str:
        """A text value: YAML 1.1 would read `yes`, `on`, `1.5` as non-text, so use the source."""
        value = self.scalar(node, pointer)
        if value is None:
            raise self.error(node, pointer, f"{what} must not be null")
        assert isinstance(node, yaml.ScalarNode)
        if isinstance(value, str):
            return value
        return self.unicode(node, pointer)

    # ---- documents -----------------------------------------------------------------------

    def document(self, text: str) -> list[SegmentDef]:
        segments = self.collect(lambda: self._document(text))
        if self.errors:
            self.errors.sort(key=lambda e: (e.line, e.column))
            first = self.errors[0]
            first.errors = tuple(self.errors)
            raise first
        assert segments is not None
        return segments

    def _document(self, text: str) -> list[SegmentDef]:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as err:
            raise self._yaml_error(err, text) from None
        except yaml.YAMLError as err:  # pragma: no cover - PyYAML marks all parser errors
            raise RuleError(f"YAML syntax error: {err}", self.path) from None
        if root is None:
            raise RuleError("empty rule file: expected a segment (name, label, rule)", self.path)
        segments: list[SegmentDef] = []
        if _mapping_value(root, "segments") is not None:
            entries = self.entries(root, "", "the rule file")
            for key, key_node, _ in entries:
                if key != "segments":
                    self.errors.append(
                        self.error(
                            key_node,
                            key,
                            f"unexpected key '{key}' next to 'segments' (put it inside a segment)",
                        )
                    )
            seq = next(v for k, _, v in entries if k == "segments")
            if not isinstance(seq, yaml.SequenceNode) or not seq.value:
                raise self.error(seq, "segments", "'segments' must be a non-empty list")
            for i, item in enumerate(seq.value):
                seg = self.collect(functools.partial(self.segment, item, f"segments[{i}]"))
                if seg is not None:
                    segments.append(seg)
        else:
            seg = self.collect(lambda: self.segment(root, ""))
            if seg is not None:
                segments.append(seg)
        self._check_unique(root)
        return segments

    def _yaml_error(self, err: yaml.MarkedYAMLError, text: str) -> RuleError:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or "invalid YAML"
        context = f" {err.context}" if err.context else ""
        hint = ""
        # Unquoted ">=" starts a block scalar and "!=" a tag: YAML's messages say neither.
        lines = text.splitlines()
        near = {m.line + d for m in (err.problem_mark, err.context_mark) if m for d in (-1, 0)}
        if any(0 <= n < len(lines) and _BARE_OPERATOR_RE.match(lines[n]) for n in near):
            hint = "; quote operators that start with '>' or '!' (\">=\": 3) or write ge/gt/ne"
        line = mark.line + 1 if mark else 1
        col = mark.column + 1 if mark else 1
        return RuleError(f"YAML syntax error: {problem}{context}{hint}", self.path, line, col)

    def _check_unique(self, root: yaml.Node) -> None:
        """Segment names are unique within a file (checked on nodes to point at the duplicate)."""
        seq = _mapping_value(root, "segments")
        if not isinstance(seq, yaml.SequenceNode):
            return
        first: dict[str, yaml.Node] = {}
        for i, item in enumerate(seq.value):
            node = _mapping_value(item, "name")
            if not isinstance(node, yaml.ScalarNode):
                continue
            name = str(node.value)
            if name in first:
                line = first[name].start_mark.line + 1
                message = f"duplicate segment name '{name}' (line {line})"
                self.errors.append(self.error(node, f"segments[{i}].name", message))
            else:
                first[name] = node

    def segment(self, node: yaml.Node, pointer: str) -> SegmentDef:
        entries = self.entries(node, pointer, "a segment")
        got = {k: (kn, v) for k, kn, v in entries}
        for key, key_node, _ in entries:
            if key not in _SEGMENT_KEYS:
                self.errors.append(
                    self.error(
                        key_node,
                        _join(pointer, key),
                        f"unknown key '{key}'{_suggest(key, _SEGMENT_KEYS)}; "
                        f"a segment has {', '.join(_SEGMENT_KEYS)}",
                    )
                )
        missing = [k for k in ("name", "label", "rule") if k not in got]
        if missing:
            # Keep going: the parts that are there may have errors of their own worth reporting.
            self.errors.append(
                self.error(node, pointer, f"missing {', '.join(repr(k) for k in missing)}")
            )

        def name() -> str:
            value_node = got["name"][1]
            p = _join(pointer, "name")
            value = self.text(value_node, p, "name")
            if not _NAME_RE.fullmatch(value):
                raise self.error(
                    value_node,
                    p,
                    f"invalid name '{value}': use lower-case letters, digits and _ , "
                    "starting with a letter",
                )
            return value

        def label() -> str:
            p = _join(pointer, "label")
            value = self.text(got["label"][1], p, "label").strip()
            if not value:
                raise self.error(got["label"][1], p, "label must not be empty")
            return value

        def description() -> str:
            if "description" not in got:
                return ""
            return self.text(got["description"][1], _join(pointer, "description"), "description")

        def kind() -> str:
            if "kind" not in got:
                return "segment"
            p = _join(pointer, "kind")
            value = self.text(got["kind"][1], p, "kind")
            if value not in SEGMENT_KINDS:
                raise self.error(
                    got["kind"][1],
                    p,
                    f"unknown kind '{value}'{_suggest(value, SEGMENT_KINDS)}; "
                    "expected 'segment' or 'tag'",
                )
            return value

        def rule() -> Condition:
            return self.condition(got["rule"][1], _join(pointer, "rule"))

        n = self.collect(name) if "name" in got else None
        lab = self.collect(label) if "label" in got else None
        desc, knd = self.collect(description), self.collect(kind)
        cond = self.collect(rule) if "rule" in got else None
        if n is None or lab is None or desc is None or knd is None or cond is None:
            # The errors are already collected; the caller reports them.
            raise _Collected
        return SegmentDef(n, lab, desc, knd, cond, self.path)

    # ---- conditions ----------------------------------------------------------------------

    def condition(self, node: yaml.Node, pointer: str) -> Condition:
        entries = self.entries(node, pointer, "a condition")
        if not entries:
            raise self.error(
                node, pointer, f"empty condition; expected one of: {', '.join(_COND_KEYS)}"
            )
        heads = [e for e in entries if e[0] in _COND_KEYS]
        if not heads:
            key, key_node, _ = entries[0]
            p = _join(pointer, key)
            if key in _OP_ALIASES:
                raise self.error(
                    key_node, p, f"operator '{key}' needs a 'field' or a 'count' beside it"
                )
            if key in _PROFILE:
                raise self.error(
                    key_node,
                    p,
                    f"unknown key '{key}'; to test that profile field write "
                    f"'field: {key}' and an operator",
                )
            raise self.error(
                key_node,
                p,
                f"unknown condition key '{key}'{_suggest(key, _COND_KEYS)}; "
                f"expected one of: {', '.join(_COND_KEYS)}",
            )
        head, head_key, head_value = heads[0]
        if len(heads) > 1:
            other, other_key, _ = heads[1]
            raise self.error(
                other_key,
                _join(pointer, other),
                f"'{other}' cannot share a condition with '{head}'; put them in 'all' or 'any'",
            )
        rest = [e for e in entries if e[0] != head]
        hp = _join(pointer, head)
        if head in ("all", "any", "not", "exists") and rest:
            key, key_node, _ = rest[0]
            hint = "; exists takes no operator, use count for that" if head == "exists" else ""
            raise self.error(
                key_node,
                _join(pointer, key),
                f"unexpected key '{key}' next to '{head}'{hint}",
            )
        if head in ("all", "any"):
            return self._list(head, head_value, hp)
        if head == "not":
            return Not(self.condition(head_value, hp))
        if head == "exists":
            table, where, within = self._records(head_value, hp)
            return Count(table, where, within, ">=", 1)
        if head == "field":
            return self._field(head_key, head_value, rest, pointer)
        return self._count(head_key, head_value, rest, pointer)

    def _list(self, head: str, node: yaml.Node, pointer: str) -> Condition:
        self.check_tag(node, pointer)
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.error(node, pointer, f"'{head}' needs a non-empty list of conditions")
        items: list[Condition] = []
        for i, child in enumerate(node.value):
            item = self.collect(functools.partial(self.condition, child, f"{pointer}[{i}]"))
            if item is not None:
                items.append(item)
        if len(items) != len(node.value):
            raise _Collected
        return AllOf(tuple(items)) if head == "all" else AnyOf(tuple(items))

    def _operator(
        self,
        subject_node: yaml.Node,
        subject: str,
        rest: list[_Entry],
        allowed: tuple[str, ...],
        pointer: str,
        kind_word: str,
    ) -> tuple[str, yaml.Node, str]:
        """The single operator beside a field or count: (canonical op, value node, pointer)."""
        found: list[tuple[str, str, yaml.Node, yaml.Node]] = []
        for key, key_node, value_node in rest:
            p = _join(pointer, key)
            op = _OP_ALIASES.get(key)
            if op is None:
                choices = [k for k, v in _OP_ALIASES.items() if v in allowed]
                raise self.error(
                    key_node,
                    p,
                    f"unknown operator '{key}' for {subject}{_suggest(key, choices)}; "
                    f"allowed: {', '.join(allowed)}",
                )
            if op not in allowed:
                raise self.error(
                    key_node,
                    p,
                    f"operator '{key}' does not apply to {kind_word}; "
                    f"allowed: {', '.join(allowed)}",
                )
            found.append((key, op, key_node, value_node))
        if not found:
            raise self.error(
                subject_node,
                pointer,
                f"{subject} needs one operator beside it; allowed: {', '.join(allowed)}",
            )
        if len(found) > 1:
            first, second = found[0][0], found[1][0]
            raise self.error(
                found[1][2],
                _join(pointer, second),
                f"one operator per condition, found '{first}' and '{second}'; "
                "use between, or combine conditions with all/any",
            )
        key, op, _, value_node = found[0]
        return op, value_node, _join(pointer, key)

    def _field(
        self, key_node: yaml.Node, value_node: yaml.Node, rest: list[_Entry], pointer: str
    ) -> Field:
        p = _join(pointer, "field")
        name = self.text(value_node, p, "field")
        column = _PROFILE.get(name)
        if column is None:
            raise self.error(
                value_node,
                p,
                f"unknown profile field '{name}'{_suggest(name, list(_PROFILE))}",
            )
        subject = f"field '{name}'"
        return self._test(column, subject, key_node, rest, pointer)

    def _test(
        self,
        column: Column,
        subject: str,
        subject_node: yaml.Node,
        rest: list[_Entry],
        pointer: str,
    ) -> Field:
        allowed = _allowed_ops(column)
        kind_word = f"{column.kind.value} {subject}"
        op, node, p = self._operator(subject_node, subject, rest, allowed, pointer, kind_word)
        return Field(column.name, column.kind, op, self.value(column, subject, op, node, p))

    def _count(
        self, key_node: yaml.Node, value_node: yaml.Node, rest: list[_Entry], pointer: str
    ) -> Count:
        table, where, within = self._records(value_node, _join(pointer, "count"))
        op, node, p = self._operator(
            key_node, "count", rest, _COUNT_OPS, pointer, "a count (a number of records)"
        )
        value: int | tuple[int, int]
        if op == "between":
            lo_node, hi_node = self._pair(node, p)
            lo, hi = self._count_value(lo_node, f"{p}[0]"), self._count_value(hi_node, f"{p}[1]")
            if lo > hi:
                raise self.error(node, p, f"between needs low <= high, got [{lo}, {hi}]")
            value = (lo, hi)
        else:
            value = self._count_value(node, p)
        return Count(table, where, within, op, value)

    def _count_value(self, node: yaml.Node, pointer: str) -> int:
        value = self.scalar(node, pointer)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(
                node, pointer, f"a count is compared with a whole number >= 0, got {_show(node)}"
            )
        return value

    def _records(
        self, node: yaml.Node, pointer: str
    ) -> tuple[str, tuple[Field, ...], Offset | None]:
        entries = self.entries(node, pointer, "count/exists (table, where, within_last)")
        got = {k: (kn, v) for k, kn, v in entries}
        for key, key_node, _ in entries:
            if key not in _COUNT_KEYS:
                raise self.error(
                    key_node,
                    _join(pointer, key),
                    f"unknown key '{key}'{_suggest(key, _COUNT_KEYS)}; "
                    f"expected {', '.join(_COUNT_KEYS)}",
                )
        if "table" not in got:
            raise self.error(
                node, pointer, f"missing 'table': one of {', '.join(sorted(RECORD_TABLES))}"
            )
        tp = _join(pointer, "table")
        table = self.text(got["table"][1], tp, "table")
        if table not in RECORD_TABLES:
            raise self.error(
                got["table"][1],
                tp,
                f"unknown record table '{table}'{_suggest(table, list(RECORD_TABLES))}; "
                f"expected one of {', '.join(sorted(RECORD_TABLES))}",
            )
        columns = _RECORDS[table]
        where: list[Field] = []
        if "where" in got:
            wp = _join(pointer, "where")
            for col_name, col_key, col_value in self.entries(got["where"][1], wp, "where"):
                cp = _join(wp, col_name)
                column = columns.get(col_name)
                if column is None:
                    raise self.error(
                        col_key,
                        cp,
                        f"unknown column '{col_name}' of {table}"
                        f"{_suggest(col_name, list(columns))}; "
                        f"filterable: {', '.join(columns)}",
                    )
                where.append(self._where(column, table, col_key, col_value, cp))
        within: Offset | None = None
        if "within_last" in got:
            within = self.duration(got["within_last"][1], _join(pointer, "within_last"))
        return table, tuple(where), within

    def _where(
        self, column: Column, table: str, key_node: yaml.Node, node: yaml.Node, pointer: str
    ) -> Field:
        subject = f"column '{column.name}' of {table}"
        self.check_tag(node, pointer)
        if isinstance(node, yaml.MappingNode):
            rest = self.entries(node, pointer, subject)
            if not rest:
                raise self.error(node, pointer, f"{subject} needs an operator")
            return self._test(column, subject, key_node, rest, pointer)
        # Shorthands: a plain value means equality, a list means "in".
        op = "in" if isinstance(node, yaml.SequenceNode) else "="
        if op not in _allowed_ops(column):
            raise self.error(
                node,
                pointer,
                f"{subject} is {column.kind.value}; write an operator, e.g. "
                f"{{{_allowed_ops(column)[0]}: ...}}",
            )
        return Field(column.name, column.kind, op, self.value(column, subject, op, node, pointer))

    # ---- values --------------------------------------------------------------------------

    def _pair(self, node: yaml.Node, pointer: str) -> tuple[yaml.Node, yaml.Node]:
        self.check_tag(node, pointer)
        if not isinstance(node, yaml.SequenceNode) or len(node.value) != 2:
            raise self.error(node, pointer, "between needs a list of two values: [low, high]")
        return node.value[0], node.value[1]

    def value(self, column: Column, subject: str, op: str, node: yaml.Node, pointer: str) -> Value:
        """The typed value of operator ``op`` on ``column``."""
        kind = column.kind
        if op == "is_null":
            flag = self.scalar(node, pointer)
            if not isinstance(flag, bool):
                raise self.error(node, pointer, "is_null takes true or false")
            return flag
        if op in ("in", "not_in"):
            self.check_tag(node, pointer)
            if not isinstance(node, yaml.SequenceNode) or not node.value:
                raise self.error(node, pointer, f"{op} needs a non-empty list of values")
            return tuple(
                self.typed(column, subject, item, f"{pointer}[{i}]")
                for i, item in enumerate(node.value)
            )
        if op == "between":
            lo_node, hi_node = self._pair(node, pointer)
            lo = self.typed(column, subject, lo_node, f"{pointer}[0]")
            hi = self.typed(column, subject, hi_node, f"{pointer}[1]")
            if _out_of_order(lo, hi):
                raise self.error(node, pointer, f"between needs low <= high, got [{lo}, {hi}]")
            return (lo, hi)
        if op in ("within_last", "within_next"):
            return self.duration(node, pointer)
        if op in ("before", "after"):
            return self.typed(column, subject, node, pointer)
        if op == "contains":
            what = "a tag" if kind is Kind.TAGS else "text"
            value = self.scalar(node, pointer)
            if value is None:
                raise self.error(node, pointer, f"contains needs {what}, not null")
            return self.text(node, pointer, what)
        return self.typed(column, subject, node, pointer)

    def typed(self, column: Column, subject: str, node: yaml.Node, pointer: str) -> Scalar:
        """One value checked against the column's kind (and choices)."""
        kind = column.kind
        raw = self.scalar(node, pointer)
        if raw is None:
            raise self.error(node, pointer, "null is not a value to compare; use is_null: true")
        if kind in (Kind.INT, Kind.FLOAT):
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
                raise self.error(node, pointer, f"{subject} is a number, got {_show(node)}")
            return raw
        if kind is Kind.MONEY:
            return self.money(raw, node, pointer, subject)
        if kind is Kind.BOOL:
            if not isinstance(raw, bool):
                raise self.error(node, pointer, f"{subject} is true or false, got {_show(node)}")
            return raw
        if kind in (Kind.DATE, Kind.TIMESTAMP):
            return self.date(raw, node, pointer, subject)
        value = self.text(node, pointer, subject)
        if column.choices and value not in column.choices:
            raise self.error(
                node,
                pointer,
                f"'{value}' is not a value of {subject}{_suggest(value, column.choices)}; "
                f"choices: {', '.join(column.choices)}",
            )
        return value

    def money(self, raw: object, node: yaml.Node, pointer: str, subject: str) -> int:
        """Yuan (number, "¥5,000", "5000元", "1.2万") to integer fen."""
        amount: Decimal | None = None
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            if isinstance(raw, float) and not math.isfinite(raw):
                amount = None
            else:
                amount = Decimal(str(raw))
        elif isinstance(raw, str):
            match = _MONEY_RE.fullmatch(raw.strip())
            if match:
                try:
                    amount = Decimal(match.group(1).replace(",", ""))
                except InvalidOperation:  # pragma: no cover - the regex admits only digits
                    amount = None
                if amount is not None and match.group(2):
                    amount *= 10_000
        if amount is None:
            raise self.error(
                node,
                pointer,
                f'{subject} is an amount in yuan (5000, "¥5,000", "5000元"), got {_show(node)}',
            )
        fen = amount * 100
        if fen != fen.to_integral_value():
            raise self.error(node, pointer, f"amount {raw} is finer than one fen (¥0.01)")
        return int(fen)

    def date(self, raw: object, node: yaml.Node, pointer: str, subject: str) -> dt.date | Offset:
        """An ISO date, ``today`` or a signed relative date (``-30d``, ``+2w``, ``-6m``)."""
        if isinstance(raw, dt.datetime):
            raise self.error(node, pointer, f"{subject} compares dates, not date-times")
        if isinstance(raw, dt.date):
            return raw
        if isinstance(raw, str):
            word = raw.strip()
            if word == "today":
                return Offset(0, "d")
            match = _DURATION_RE.fullmatch(word)
            if match:
                sign, number, unit = match.groups()
                if not sign:
                    raise self.error(
                        node,
                        pointer,
                        f"relative date '{word}' needs a sign: '-{word}' ({number}{unit} before "
                        f"as_of) or '+{word}' (after)",
                    )
                return self._offset(int(number) * (-1 if sign == "-" else 1), unit, node, pointer)
            try:
                return dt.date.fromisoformat(word)
            except ValueError as err:
                if re.fullmatch(r"\d{4}-\d{2}-\d{2}", word):
                    raise self.error(
                        node, pointer, f"'{word}' is not a valid date: {err}"
                    ) from None
        raise self.error(
            node,
            pointer,
            f"{subject} is a date: 2024-06-30, today, or relative like -30d / +2w / -6m / -1y; "
            f"got {_show(node)}",
        )

    def duration(self, node: yaml.Node, pointer: str) -> Offset:
        """A window length: ``30d``, ``2w``, ``6m``, ``1y`` (or ``today``: zero)."""
        raw = self.scalar(node, pointer)
        word = raw.strip() if isinstance(raw, str) else ""
        if word == "today":
            return Offset(0, "d")
        match = _DURATION_RE.fullmatch(word)
        if not match or match.group(1):
            raise self.error(
                node,
                pointer,
                f"malformed duration {_show(node)}: write a number and a unit, "
                "d (days), w (weeks), m (months) or y (years), e.g. 30d",
            )
        return self._offset(int(match.group(2)), match.group(3), node, pointer)

    def _offset(self, amount: int, unit: str, node: yaml.Node, pointer: str) -> Offset:
        if abs(amount) > _MAX_AMOUNT[unit]:
            raise self.error(node, pointer, f"{abs(amount)}{unit} is too long (at most 100 years)")
        return Offset(amount, unit)


class _Collected(RuleError):
    """Raised by a parent whose children's errors are already collected; never surfaces."""

    def __init__(self) -> None:
        super().__init__("(collected)")


def _mapping_value(node: yaml.Node, key: str) -> yaml.Node | None:
    """The value node under ``key`` of a mapping node, if any."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                value: yaml.Node = v
                return value
    return None


def _show(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(str(node.value))
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _out_of_order(lo: Scalar, hi: Scalar) -> bool:
    """Whether ``between`` bounds are reversed (only checked when they are comparable)."""
    if isinstance(lo, bool) or isinstance(hi, bool):
        return False
    if isinstance(lo, int | float) and isinstance(hi, int | float):
        return lo > hi
    if isinstance(lo, dt.date) and isinstance(hi, dt.date):
        return lo > hi
    if isinstance(lo, Offset) and isinstance(hi, Offset) and lo.unit == hi.unit:
        return lo.amount > hi.amount
    return False


def _allowed_ops(column: Column) -> tuple[str, ...]:
    ops = _KIND_OPS[column.kind]
    if column.choices:
        # A closed vocabulary: substring tests would only hide typos the choices check catches.
        ops = tuple(op for op in ops if op != "contains")
    return ops


# --------------------------------------------------------------------------------------------
# Public parsing API
# --------------------------------------------------------------------------------------------


def parse_rules(text: str, path: str = "<string>") -> list[SegmentDef]:
    """Parse and validate a rule document; raise :class:`RuleError` (the first of ``.errors``)."""
    return _Parser(path).document(text)


def load_rule_file(path: Path) -> list[SegmentDef]:
    """Parse the rule file at ``path`` (UTF-8, with or without BOM)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise RuleError(f"cannot read rule file: {err}", str(path)) from None
    return parse_rules(text, str(path))


@functools.cache
def _builtins() -> tuple[SegmentDef, ...]:
    folder = resources.files("baoke.segments").joinpath("builtin")
    out: list[SegmentDef] = []
    seen: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        for seg in parse_rules(entry.read_text(encoding="utf-8"), f"builtin/{entry.name}"):
            if seg.name in seen:
                raise RuleError(
                    f"duplicate built-in segment '{seg.name}' (also in {seen[seg.name]})",
                    f"builtin/{entry.name}",
                )
            seen[seg.name] = entry.name
            out.append(dataclasses.replace(seg, source=f"builtin:{seg.name}"))
    return tuple(out)


def builtin_segments() -> list[SegmentDef]:
    """The segments and auto-tags shipped in ``baoke/segments/builtin/*.yaml``, by file order."""
    return list(_builtins())


# --------------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------------

_PROFILE_ALIAS = "p"
_RECORD_ALIAS = "r"
_DATE = exp.DataType.build("DATE")


@dataclass(frozen=True)
class _Env:
    """What compilation needs besides the rule: the as_of expression and the business zone."""

    anchor: exp.Expr
    tz: str | None

    def day(self, timestamp: exp.Expr) -> exp.Expr:
        """The calendar date of a timestamp column (stored in UTC when a zone is given)."""
        if self.tz is not None:
            timestamp = exp.ConvertTimezone(
                source_tz=exp.Literal.string("UTC"),
                target_tz=exp.Literal.string(self.tz),
                timestamp=timestamp,
            )
        return exp.cast(timestamp, _DATE)

    def first_moment(self, day: exp.Expr) -> exp.Expr:
        """The first moment of a calendar date, as the timestamp columns store it (in UTC when
        a zone is given): ``day(t) >= d`` exactly when ``t >= first_moment(d)``."""
        moment: exp.Expr = exp.cast(day, exp.DataType.build("TIMESTAMP"))
        if self.tz is not None:
            moment = exp.ConvertTimezone(
                source_tz=exp.Literal.string(self.tz),
                target_tz=exp.Literal.string("UTC"),
                timestamp=moment,
            )
        return moment


def _zone(tz: str | None) -> str | None:
    if tz is None:
        return None
    try:
        ZoneInfo(tz)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(
            f"unknown time zone {tz!r}; use an IANA name like 'Asia/Shanghai'"
        ) from None
    return tz


def _anchor(as_of: str | None) -> exp.Expr:
    if as_of is None:
        return exp.column("as_of", table=_PROFILE_ALIAS)
    try:
        day = dt.date.fromisoformat(as_of)
    except (TypeError, ValueError):
        raise ValueError(f"as_of must be an ISO date 'YYYY-MM-DD', got {as_of!r}") from None
    return exp.cast(exp.Literal.string(day.isoformat()), _DATE)


_DAY = Offset(1, "d")


def _shift(anchor: exp.Expr, offset: Offset) -> exp.Expr:
    """anchor + offset as a DATE; months and years as calendar months (end-of-month clamped)."""
    if offset.amount == 0:
        return anchor.copy()
    amount, unit = offset.amount, "DAY"
    if offset.unit == "w":
        amount *= 7
    elif offset.unit == "m":
        unit = "MONTH"
    elif offset.unit == "y":
        amount, unit = amount * 12, "MONTH"
    cls = exp.DateAdd if amount > 0 else exp.DateSub
    moved = cls(this=anchor.copy(), expression=exp.Literal.number(abs(amount)), unit=exp.var(unit))
    # DuckDB's DATE ± INTERVAL yields a TIMESTAMP; cast back so comparisons stay date-typed.
    return exp.cast(moved, _DATE)


def _literal(value: Scalar, anchor: exp.Expr) -> exp.Expr:
    if isinstance(value, Offset):
        return _shift(anchor, value)
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    if isinstance(value, dt.date):
        return exp.cast(exp.Literal.string(value.isoformat()), _DATE)
    return exp.Literal.string(value)


_COMPARE: dict[str, type[exp.Binary]] = {
    "=": exp.EQ,
    "!=": exp.NEQ,
    ">": exp.GT,
    ">=": exp.GTE,
    "<": exp.LT,
    "<=": exp.LTE,
}


def _compare(op: str, left: exp.Expr, right: exp.Expr) -> exp.Expr:
    return _COMPARE[op](this=left, expression=right)


def _field_sql(cond: Field, alias: str, env: _Env) -> exp.Expr:
    anchor = env.anchor
    col: exp.Expr = exp.column(cond.column, table=alias)
    if cond.kind is Kind.TIMESTAMP:
        col = env.day(col)
    op, value = cond.op, cond.value
    if op == "is_null":
        is_null = exp.Is(this=col, expression=exp.Null())
        return is_null if value else exp.not_(is_null)
    if op in ("in", "not_in"):
        assert isinstance(value, tuple)
        member = exp.In(this=col, expressions=[_literal(v, anchor) for v in value])
        return member if op == "in" else exp.not_(member)
    if op == "between":
        assert isinstance(value, tuple)
        lo, hi = value
        return exp.Between(this=col, low=_literal(lo, anchor), high=_literal(hi, anchor))
    if op in ("within_last", "within_next"):
        assert isinstance(value, Offset)
        if op == "within_last":
            start, end = _shift(anchor, Offset(-value.amount, value.unit)), anchor.copy()
        else:
            start, end = anchor.copy(), _shift(anchor, value)
        return exp.Between(this=col, low=start, high=end)
    if op == "before":
        assert not isinstance(value, tuple)
        return exp.LT(this=col, expression=_literal(value, anchor))
    if op == "after":
        assert not isinstance(value, tuple)
        return exp.GT(this=col, expression=_literal(value, anchor))
    if op == "contains":
        assert isinstance(value, str)
        if cond.kind is Kind.TAGS:
            return exp.ArrayContains(this=col, expression=exp.Literal.string(value))
        # STRPOS/LOCATE rather than LIKE: no wildcard characters to escape in user text.
        position = exp.StrPosition(this=col, substr=exp.Literal.string(value))
        return exp.GT(this=position, expression=exp.Literal.number(0))
    assert not isinstance(value, tuple)
    return _compare(op, col, _literal(value, anchor))


def _count_sql(cond: Count, env: _Env) -> exp.Expr:
    r, p, anchor = _RECORD_ALIAS, _PROFILE_ALIAS, env.anchor
    preds: list[exp.Expr] = [
        exp.EQ(
            this=exp.column("customer_id", table=r), expression=exp.column("customer_id", table=p)
        )
    ]
    preds += [_field_sql(w, r, env) for w in cond.where]
    time_column = RECORD_TABLES[cond.table][0]
    t: exp.Expr = exp.column(time_column, table=r)
    start = None
    if cond.within is not None:
        start = _shift(anchor, Offset(-cond.within.amount, cond.within.unit))
    # The window is (as_of - within, as_of] on the records' calendar days; even "all history"
    # stops at as_of: a profile of a past date must not see later records.
    if _RECORDS[cond.table][time_column].kind is Kind.TIMESTAMP:
        # Timestamps are compared with the window's bounds as instants (the first moments of
        # the day after its start and of the day after as_of), each record's time as stored:
        # an index or a sorted column serves it, and no record is converted to its day.
        if start is not None:
            preds.append(exp.GTE(this=t, expression=env.first_moment(_shift(start, _DAY))))
        preds.append(exp.LT(this=t.copy(), expression=env.first_moment(_shift(anchor, _DAY))))
    else:
        if start is not None:
            preds.append(exp.GT(this=t, expression=start))
        preds.append(exp.LTE(this=t.copy(), expression=anchor.copy()))
    query = (
        exp.select(exp.Count(this=exp.Star()))
        .from_(exp.table_(cond.table, alias=r))
        .where(exp.and_(*preds))
    )
    count = exp.Subquery(this=query)
    if cond.op == "between":
        assert isinstance(cond.value, tuple)
        lo, hi = cond.value
        return exp.Between(this=count, low=exp.Literal.number(lo), high=exp.Literal.number(hi))
    assert isinstance(cond.value, int)
    return _compare(cond.op, count, exp.Literal.number(cond.value))


def condition_expression(
    cond: Condition, as_of: str | None = None, *, tz: str | None = None
) -> exp.Expr:
    """The sqlglot expression of a condition over ``profiles p`` (see :func:`compile_condition`)."""
    return _expression(cond, _Env(_anchor(as_of), _zone(tz)))


def _expression(cond: Condition, env: _Env) -> exp.Expr:
    if isinstance(cond, AllOf):
        return exp.and_(*(_expression(c, env) for c in cond.items))
    if isinstance(cond, AnyOf):
        return exp.or_(*(_expression(c, env) for c in cond.items))
    if isinstance(cond, Not):
        # Two-valued negation: "unknown" (a NULL field) counts as false before negating.
        inner = exp.Coalesce(this=_expression(cond.item, env), expressions=[exp.false()])
        return exp.not_(inner)
    if isinstance(cond, Field):
        return _field_sql(cond, _PROFILE_ALIAS, env)
    return _count_sql(cond, env)


def _check_dialect(dialect: str) -> None:
    if dialect not in SUPPORTED_DIALECTS:
        raise ValueError(f"unsupported SQL dialect {dialect!r}; use one of {SUPPORTED_DIALECTS}")


def compile_condition(
    cond: Condition, dialect: str = "duckdb", as_of: str | None = None, *, tz: str | None = None
) -> str:
    """A SQL boolean expression for ``cond`` over ``profiles p``.

    Record counts are correlated subqueries on ``p.customer_id``. With ``as_of`` ('YYYY-MM-DD')
    relative dates are computed from that date; without it they refer to ``p.as_of``, so the
    same SQL works for profiles of any date. Timestamps count on their calendar date; with
    ``tz`` (an IANA zone such as 'Asia/Shanghai') they are taken as UTC and converted to that
    zone first, so a window follows the business day. The result may be NULL where a compared
    field is NULL: NULL means "not a member" (use it in WHERE, or wrap it in COALESCE(.., FALSE)).
    """
    _check_dialect(dialect)
    return condition_expression(cond, as_of, tz=tz).sql(dialect=dialect)


def segment_query(
    seg: SegmentDef, dialect: str = "duckdb", as_of: str | None = None, *, tz: str | None = None
) -> str:
    """``SELECT p.customer_id FROM profiles p WHERE <rule>`` (arguments as compile_condition)."""
    _check_dialect(dialect)
    query = (
        exp.select(exp.column("customer_id", table=_PROFILE_ALIAS))
        .from_(exp.table_("profiles", alias=_PROFILE_ALIAS))
        .where(condition_expression(seg.rule, as_of, tz=tz))
    )
    return query.sql(dialect=dialect)
