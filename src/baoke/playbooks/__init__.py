"""Playbooks: the retention scenarios as YAML an operator can read, copy, change and disable.

A playbook says who enters (triggers: segment entry, an event, a date relative to a record, a
festival; entry rules), what happens (steps: send, wait, branch, task, fallback) and when it
ends (goal, exits), with its message templates (Jinja2, sandboxed, checked against DOMAIN's
message rules when the playbook is validated). :mod:`baoke.playbooks.definitions` parses and
validates the files with precise errors; the built-in library is ``builtin/*.yaml``.
``docs/playbooks.md`` is the operator's guide. Running journeys is not in this package yet.
"""

from __future__ import annotations

from baoke.playbooks.definitions import (
    BranchStep,
    DateTrigger,
    Duration,
    EntryRules,
    EventTrigger,
    FallbackStep,
    FestivalTrigger,
    Goal,
    Playbook,
    PlaybookError,
    PlaybookWarning,
    SegmentTrigger,
    SendStep,
    Step,
    TaskStep,
    TemplateDef,
    TemplateVariant,
    Trigger,
    WaitStep,
    load_builtin_playbooks,
    load_playbook_file,
    parse_playbook,
    validate_all,
)
from baoke.playbooks.festivals import festival_date
from baoke.playbooks.templates import TemplateError, TemplateIssue, render, validate_template

__all__ = [
    "BranchStep",
    "DateTrigger",
    "Duration",
    "EntryRules",
    "EventTrigger",
    "FallbackStep",
    "FestivalTrigger",
    "Goal",
    "Playbook",
    "PlaybookError",
    "PlaybookWarning",
    "SegmentTrigger",
    "SendStep",
    "Step",
    "TaskStep",
    "TemplateDef",
    "TemplateError",
    "TemplateIssue",
    "TemplateVariant",
    "Trigger",
    "WaitStep",
    "festival_date",
    "load_builtin_playbooks",
    "load_playbook_file",
    "parse_playbook",
    "render",
    "validate_all",
    "validate_template",
]
