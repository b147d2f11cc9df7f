"""Segments and auto-tags: a declarative YAML rule language compiled to SQL.

Operators write rules like "car older than 5 years and viewed new SUVs 3 times in 30 days" as
YAML (``docs/segments.md`` is the reference). :mod:`baoke.segments.rules` parses them against the
profile catalogue (``baoke.profiles.schema``), reports mistakes with file, line, column and a
pointer into the rule, and compiles a rule to a SQL boolean expression with sqlglot, for DuckDB
or Spark. Rules are never evaluated as Python and user values only ever become SQL literals.
Built-in segments for the playbooks ship in ``builtin/*.yaml``.
"""

from __future__ import annotations

from baoke.segments.rules import (
    AllOf,
    AnyOf,
    Condition,
    Count,
    Field,
    Not,
    Offset,
    RuleError,
    SegmentDef,
    builtin_segments,
    compile_condition,
    load_rule_file,
    parse_rules,
    segment_query,
)

__all__ = [
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
    "load_rule_file",
    "parse_rules",
    "segment_query",
]
