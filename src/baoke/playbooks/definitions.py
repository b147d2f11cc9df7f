"""Playbook definitions: parse and validate playbook YAML into frozen dataclasses.

A playbook file holds one playbook: who enters (``triggers``, ``audience``, ``entry``), what
happens (``steps``), when it ends (``goal``, ``exit_on``, ``pause_on``) and the message
``templates`` its steps use. ``docs/playbooks.md`` is the operator's reference.

Design points:

* The parser extends the segment rule parser (:mod:`baoke.segments.rules`): it walks YAML
  *nodes*, so every error has a line and a column, and ``branch.if`` / ``audience`` conditions
  are parsed by the very same code as segment rules (same fields, operators and messages).
* Every error of a file is collected; :class:`PlaybookError` is the earliest, ``.errors``
  holds all of them in file order. Warnings (an SMS over one segment, an unused template)
  do not stop loading and are kept on :attr:`Playbook.warnings`.
* An unreachable step is an **error**, not a warning: it is almost always a mistyped
  ``then``/``next`` target, and a step that silently never runs is worse than a refused file.
* A loop is allowed (the maintenance cadences are loops) only if it passes a ``wait`` or a
  ``fallback`` with a positive ``within``; otherwise one evaluation would never end.
* ``version`` is a hash of the normalised definition (the YAML tree with keys sorted, without
  comments, layout or the ``enabled`` flag), so any change in meaning gives a new version
  while reformatting or disabling does not.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from baoke.errors import LocatedError
from baoke.journeys.vocabulary import EVENT_TYPES
from baoke.playbooks.festivals import FESTIVALS
from baoke.playbooks.templates import (
    CHANNELS,
    PRIORITY_CLASSES,
    TemplateError,
    validate_template,
)
from baoke.profiles.schema import PROFILE_COLUMNS, Kind

# The segment parser is private to its module; subclassing it is how the playbook language
# shares the node walking, the error marks and the condition grammar instead of copying them.
from baoke.segments.rules import (
    Condition,
    RuleError,
    SegmentDef,
    _Collected,
    _mapping_value,
    _Parser,
    _suggest,
    builtin_segments,
)

__all__ = [
    "COLLISION_RULES",
    "EVENTS",
    "EXIT_REASONS",
    "GOAL_EVENTS",
    "OUTCOMES",
    "ROLES",
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
    "TemplateVariant",
    "Trigger",
    "WaitStep",
    "builtin_texts",
    "load_builtin_playbooks",
    "load_playbook_file",
    "parse_playbook",
    "validate_all",
]

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

# Event name -> the keys its ``where`` may test, each with its closed choices (None: free text).
EVENTS: dict[str, dict[str, tuple[str, ...] | None]] = {
    event.name: {a.name: a.choices for a in event.attributes}
    for event in EVENT_TYPES.values()
    if event.trigger
}
"""Events a trigger may name, with the keys their ``where`` may test (None: any text)."""

GOAL_EVENTS = ("visit", "booking", "purchase", "test_drive")
EXIT_REASONS = ("unsubscribed", "complaint_opened", "lost", "left_segment", "wecom_deleted")
ROLES = (
    "advisor",
    "customer_manager",
    "service_manager",
    "store_manager",
    "gm",
    "sales_consultant",
)

_MESSAGE_OUTCOMES = ("delivered", "not_delivered", "answered", "not_answered", "no_response")
_CALL_OUTCOMES = ("connected", "not_connected", "answered", "not_answered", "no_response")
OUTCOMES = tuple(dict.fromkeys((*_MESSAGE_OUTCOMES, *_CALL_OUTCOMES)))
"""Outcomes of a send (delivered … no_response) or of a call / task (connected … no_response)."""

# Record dates a date trigger may follow: the profile's DATE columns, plus the two yearly ones.
_ANNUAL = ("birthday", "purchase_anniversary")
_DATE_FIELDS = (
    tuple(c.name for c in PROFILE_COLUMNS if c.kind is Kind.DATE and c.name != "as_of") + _ANNUAL
)

_TOP_KEYS = (
    "name",
    "label",
    "description",
    "kind",
    "enabled",
    "triggers",
    "audience",
    "entry",
    "steps",
    "goal",
    "exit_on",
    "pause_on",
    "on_collision",
    "templates",
)
COLLISION_RULES = ("defer", "drop")
"""What a playbook's touch does when it loses a same-day collision to a higher priority."""
_ENTRY_KEYS = ("re_entry", "cooldown", "holdout", "dealers")
_STEP_TYPES = ("send", "wait", "branch", "task", "fallback")
_END = "end"  # the reserved target that finishes the journey
_ID_RE = re.compile(r"[a-z][a-z0-9_]*")
_SPAN_RE = re.compile(r"([+-]?)(\d+)(min|h|d|w|m|y)")
_WINDOW_RE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_MAX_HOLDOUT = 0.5
_UNIT_WORDS = "min (minutes), h (hours), d (days), w (weeks), m (months) or y (years)"

# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Duration:
    """A span of ``amount`` (signed for offsets) ``unit``s; unit in min/h/d/w/m/y (m = months)."""

    amount: int
    unit: str

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


@dataclass(frozen=True)
class SegmentTrigger:
    """Enrol a customer when they enter the segment (by profile refresh)."""

    id: str  # what a branch's ``trigger`` test names; defaults to the segment name
    segment: str


@dataclass(frozen=True)
class EventTrigger:
    """Enrol on an event; ``where`` maps a key to the accepted values (all must match)."""

    id: str  # defaults to the event name
    event: str
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class DateTrigger:
    """Enrol on a record date plus ``offset``; ``annual`` for birthday / purchase anniversary."""

    id: str  # defaults to the date field
    field: str
    offset: Duration
    annual: bool


@dataclass(frozen=True)
class FestivalTrigger:
    """Enrol on a festival (see :mod:`baoke.playbooks.festivals`) plus ``offset``."""

    id: str  # defaults to the festival name
    festival: str
    offset: Duration


Trigger = SegmentTrigger | EventTrigger | DateTrigger | FestivalTrigger


@dataclass(frozen=True)
class EntryRules:
    """Who may (re-)enter: re-entry, cool-down after an exit, holdout share, dealer scope."""

    re_entry: bool = False
    cooldown: Duration | None = None
    holdout: float = 0.0
    dealers: tuple[int, ...] = ()  # empty: every dealer


@dataclass(frozen=True)
class SendStep:
    """Produce a candidate touch on the first usable channel of ``channels``."""

    id: str
    channels: tuple[str, ...]
    template: str
    priority: str
    next: str | None = None  # None: the following step (or the end after the last)


@dataclass(frozen=True)
class WaitStep:
    """Wait ``duration``, or until local time is within ``window`` (start, end)."""

    id: str
    duration: Duration | None
    window: tuple[dt.time, dt.time] | None
    next: str | None = None


@dataclass(frozen=True)
class BranchStep:
    """Go to ``then`` if the test holds, else to ``else_`` (None: the following step).

    Exactly one test is set: ``condition`` (a segment-rule condition on the profile),
    ``outcome`` of step ``of`` (one of several outcomes), or ``trigger`` (which trigger
    enrolled the customer: an event, segment or festival name, or a date field).
    """

    id: str
    then: str
    else_: str | None
    condition: Condition | None = None
    outcome: tuple[str, ...] = ()
    of: str | None = None
    trigger: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskStep:
    """Create human work for ``role`` due within ``sla``, with an optional call script."""

    id: str
    role: str
    sla: Duration
    title: str
    script: str | None = None
    next: str | None = None


@dataclass(frozen=True)
class FallbackStep:
    """If step ``of`` has one of ``on`` within ``within``, go to ``goto``; else continue."""

    id: str
    of: str
    on: tuple[str, ...]
    within: Duration
    goto: str
    next: str | None = None


Step = SendStep | WaitStep | BranchStep | TaskStep | FallbackStep


@dataclass(frozen=True)
class Goal:
    """The journey ends with its goal met when one of ``events`` happens (within ``within``)."""

    events: tuple[str, ...]
    within: Duration | None = None


@dataclass(frozen=True)
class TemplateVariant:
    """One channel's text of a template (``subject`` for email only)."""

    channel: str
    text: str
    subject: str | None = None


@dataclass(frozen=True)
class TemplateDef:
    """A message template: one variant per channel (``script`` for a task's call script)."""

    id: str
    variants: tuple[TemplateVariant, ...]

    def variant(self, channel: str) -> TemplateVariant | None:
        """The variant for ``channel``, if the template has one."""
        return next((v for v in self.variants if v.channel == channel), None)


@dataclass(frozen=True)
class PlaybookWarning:
    """Something to look at that does not stop the playbook; ``str()`` like an error."""

    message: str
    path: str
    line: int
    column: int
    pointer: str = ""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.column}: "
        return where + (f"{self.pointer}: {self.message}" if self.pointer else self.message)


@dataclass(frozen=True)
class Playbook:
    """One validated playbook."""

    name: str
    label: str
    description: str
    kind: str  # the default priority class of its send steps
    enabled: bool
    version: str  # 12 hex digits of the normalised definition's SHA-256
    triggers: tuple[Trigger, ...]
    audience: Condition | None
    entry: EntryRules
    steps: tuple[Step, ...]
    goal: Goal | None
    exit_on: tuple[str, ...]
    pause_on: tuple[str, ...]
    templates: tuple[TemplateDef, ...]
    source: str
    # A touch that loses a same-day collision: deferred to its next allowed slot, or dropped.
    on_collision: str = "defer"
    warnings: tuple[PlaybookWarning, ...] = field(default=(), compare=False)

    def step(self, step_id: str) -> Step:
        """The step with id ``step_id`` (KeyError if none)."""
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def template(self, template_id: str) -> TemplateDef:
        """The template with id ``template_id`` (KeyError if none)."""
        for t in self.templates:
            if t.id == template_id:
                return t
        raise KeyError(template_id)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class PlaybookError(LocatedError):
    """A playbook file is wrong; ``str()`` is ``path:line:column: pointer: message``.

    Same shape as :class:`baoke.segments.rules.RuleError` (both are
    :class:`baoke.errors.LocatedError`), with ``pointer`` into the playbook
    (``steps[2].branch.then``).
    """

    errors: tuple[PlaybookError, ...]

    @classmethod
    def from_rule_error(cls, err: RuleError) -> PlaybookError:
        """The same problem, as a playbook error."""
        return cls(err.detail, err.path, err.line, err.column, err.pointer)


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


def _join(pointer: str, key: str) -> str:
    return f"{pointer}.{key}" if pointer else key


@dataclass
class _Ref:
    """A reference to a step id, kept with its node for the error after all steps are known."""

    target: str
    node: yaml.Node
    pointer: str


class _PlaybookParser(_Parser):
    """One instance per file; errors are collected as RuleErrors and converted at the end."""

    def __init__(self, path: str, segments: set[str]) -> None:
        super().__init__(path)
        self.segments = segments
        self.warnings: list[PlaybookWarning] = []
        self.refs: list[_Ref] = []
        # template id -> channel -> the strictest priority of a send using it
        self.uses: dict[str, dict[str, str]] = {}
        self.use_nodes: dict[str, tuple[yaml.Node, str]] = {}
        self.template_nodes: dict[tuple[str, str], tuple[yaml.Node, str]] = {}
        self.step_nodes: dict[str, yaml.Node] = {}
        self.trigger_ids: tuple[str, ...] | None = None  # None until the triggers are valid
        self.step_failed = False
        self.failed_variants: set[tuple[str, str]] = set()

    def warn(self, node: yaml.Node, pointer: str, message: str) -> None:
        mark = node.start_mark
        self.warnings.append(
            PlaybookWarning(message, self.path, mark.line + 1, mark.column + 1, pointer)
        )

    # ---- small values --------------------------------------------------------------------

    def ident(self, node: yaml.Node, pointer: str, what: str) -> str:
        value = self.text(node, pointer, what)
        if not _ID_RE.fullmatch(value):
            raise self.error(
                node,
                pointer,
                f"invalid {what} '{value}': use lower-case letters, digits and _ , "
                "starting with a letter",
            )
        return value

    def choice(self, node: yaml.Node, pointer: str, what: str, choices: Sequence[str]) -> str:
        value = self.text(node, pointer, what)
        if value not in choices:
            raise self.error(
                node,
                pointer,
                f"unknown {what} '{value}'{_suggest(value, choices)}; "
                f"expected one of: {', '.join(choices)}",
            )
        return value

    def choices(
        self,
        node: yaml.Node,
        pointer: str,
        what: str,
        choices: Sequence[str],
        *,
        allow_empty: bool = False,
    ) -> tuple[str, ...]:
        """One choice or a list of them (non-empty unless ``allow_empty``)."""
        self.check_tag(node, pointer)
        if isinstance(node, yaml.SequenceNode):
            if not node.value and not allow_empty:
                raise self.error(node, pointer, f"{what} needs at least one value")
            return tuple(
                self.choice(item, f"{pointer}[{i}]", what, choices)
                for i, item in enumerate(node.value)
            )
        return (self.choice(node, pointer, what, choices),)

    def flag(self, node: yaml.Node, pointer: str, what: str) -> bool:
        value = self.scalar(node, pointer)
        if not isinstance(value, bool):
            raise self.error(node, pointer, f"{what} is true or false")
        return value

    def span(self, node: yaml.Node, pointer: str, *, signed: bool = False) -> Duration:
        """A span (``24h``, ``3d``, ``1m`` = a month, ``30min``); offsets: ``+3d``, ``-15d``."""
        raw = self.scalar(node, pointer)
        word = raw.strip() if isinstance(raw, str) else ""
        if isinstance(raw, int) and not isinstance(raw, bool) and raw == 0:
            word = "0d"
        match = _SPAN_RE.fullmatch(word)
        if not match:
            example = "+3d or -15d" if signed else "24h or 3d"
            raise self.error(
                node,
                pointer,
                f"malformed duration {_show(node)}: write a number and a unit, "
                f"{_UNIT_WORDS}, e.g. {example}",
            )
        sign, number, unit = match.groups()
        amount = int(number)
        if signed:
            if not sign and amount != 0:
                raise self.error(
                    node,
                    pointer,
                    f"offset '{word}' needs a sign: '-{word}' (before) or '+{word}' (after)",
                )
            return Duration(-amount if sign == "-" else amount, unit)
        if sign:
            raise self.error(node, pointer, f"a duration has no sign, got '{word}'")
        return Duration(amount, unit)

    def target(self, node: yaml.Node, pointer: str) -> str:
        """A step id (checked once every step is known) or ``end``."""
        value = self.text(node, pointer, "step id")
        self.refs.append(_Ref(value, node, pointer))
        return value

    def mapping(
        self, node: yaml.Node, pointer: str, what: str, keys: Sequence[str]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """A mapping with only ``keys`` (an unknown key is an error with a suggestion)."""
        got: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, key_node, value_node in self.entries(node, pointer, what):
            if key not in keys:
                raise self.error(
                    key_node,
                    _join(pointer, key),
                    f"unknown key '{key}'{_suggest(key, keys)}; {what} has {', '.join(keys)}",
                )
            got[key] = (key_node, value_node)
        return got

    def need(
        self,
        got: dict[str, tuple[yaml.Node, yaml.Node]],
        node: yaml.Node,
        pointer: str,
        *keys: str,
    ) -> None:
        missing = [k for k in keys if k not in got]
        if missing:
            raise self.error(node, pointer, f"missing {', '.join(repr(k) for k in missing)}")

    # ---- document ------------------------------------------------------------------------

    def playbook(self, text: str) -> Playbook:
        result = self.collect(lambda: self._playbook(text))
        if self.errors:
            errors = sorted(
                (PlaybookError.from_rule_error(e) for e in self.errors),
                key=lambda e: (e.line, e.column),
            )
            first = errors[0]
            first.errors = tuple(errors)
            raise first
        assert result is not None
        return result

    def _playbook(self, text: str) -> Playbook:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as err:
            raise self._yaml_error(err, text) from None
        if root is None:
            raise RuleError(
                "empty playbook file: expected name, label, kind, triggers, steps", self.path
            )
        got = self.mapping(root, "", "a playbook", _TOP_KEYS)
        missing = [k for k in ("name", "label", "kind", "triggers", "steps") if k not in got]
        if missing:
            self.errors.append(
                self.error(root, "", f"missing {', '.join(repr(k) for k in missing)}")
            )

        def value(key: str) -> yaml.Node:
            if key not in got:
                raise _Collected  # a required key: its absence is reported above
            return got[key][1]

        name = self.collect(lambda: self.ident(value("name"), "name", "name"))
        label = self.collect(lambda: self._label(value("label")))
        description = (
            self.collect(lambda: self.text(value("description"), "description", "description"))
            if "description" in got
            else ""
        )
        kind = self.collect(
            lambda: self.choice(value("kind"), "kind", "priority class", PRIORITY_CLASSES)
        )
        enabled = (
            self.collect(lambda: self.flag(value("enabled"), "enabled", "enabled"))
            if "enabled" in got
            else True
        )
        triggers = self.collect(lambda: self._triggers(value("triggers")))
        audience = (
            self.collect(lambda: self.condition(value("audience"), "audience"))
            if "audience" in got
            else None
        )
        entry = (
            self.collect(lambda: self._entry(value("entry"))) if "entry" in got else EntryRules()
        )
        templates = (
            self.collect(lambda: self._templates(value("templates"))) if "templates" in got else ()
        )
        steps = self.collect(lambda: self._steps(value("steps"), kind or "service"))
        goal = self.collect(lambda: self._goal(value("goal"))) if "goal" in got else None
        default_pause: tuple[str, ...] = (
            ("complaint_opened",) if kind in ("marketing", "retention") else ()
        )
        exit_on = (
            self.collect(
                lambda: self.choices(
                    value("exit_on"), "exit_on", "exit reason", EXIT_REASONS, allow_empty=True
                )
            )
            if "exit_on" in got
            else ("unsubscribed",)
        )
        pause_on = (
            self.collect(
                lambda: self.choices(
                    value("pause_on"), "pause_on", "pause reason", EXIT_REASONS, allow_empty=True
                )
            )
            if "pause_on" in got
            else default_pause
        )
        on_collision = (
            self.collect(
                lambda: self.choice(
                    value("on_collision"), "on_collision", "collision rule", COLLISION_RULES
                )
            )
            if "on_collision" in got
            else "defer"
        )
        # Targets are checked even when a step failed: the ids seen are known either way.
        refs_ok = self._check_refs()
        if steps is not None and refs_ok:
            self._check_flow(steps)
        if templates is not None:
            # The texts are checked even when a step failed; which channels each template
            # needs is only known when every step parsed.
            self._check_templates(templates, steps_ok=steps is not None)
        if (
            name is None
            or label is None
            or description is None
            or kind is None
            or enabled is None
            or triggers is None
            or entry is None
            or templates is None
            or steps is None
            or exit_on is None
            or pause_on is None
            or on_collision is None
            or self.errors
        ):
            raise _Collected
        return Playbook(
            name=name,
            label=label,
            description=description,
            kind=kind,
            enabled=enabled,
            version=_version(root),
            triggers=triggers,
            audience=audience,
            entry=entry,
            steps=steps,
            goal=goal,
            exit_on=exit_on,
            pause_on=pause_on,
            templates=templates,
            source=self.path,
            on_collision=on_collision,
            warnings=tuple(sorted(self.warnings, key=lambda w: (w.line, w.column))),
        )

    def _label(self, node: yaml.Node) -> str:
        value = self.text(node, "label", "label").strip()
        if not value:
            raise self.error(node, "label", "label must not be empty")
        return value

    # ---- triggers and entry --------------------------------------------------------------

    def _triggers(self, node: yaml.Node) -> tuple[Trigger, ...]:
        self.check_tag(node, "triggers")
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.error(node, "triggers", "'triggers' must be a non-empty list")
        out: list[Trigger] = []
        first: dict[str, int] = {}
        for i, item in enumerate(node.value):
            trig = self.collect(functools.partial(self._trigger, item, f"triggers[{i}]"))
            if trig is None:
                continue
            if trig.id in first:
                id_node = _mapping_value(item, "id") or item
                self.errors.append(
                    self.error(
                        id_node,
                        f"triggers[{i}]",
                        f"trigger id '{trig.id}' is used twice (also triggers[{first[trig.id]}]); "
                        "give one an 'id'",
                    )
                )
                continue
            first[trig.id] = i
            out.append(trig)
        if len(out) != len(node.value):
            raise _Collected
        self.trigger_ids = tuple(first)
        return tuple(out)

    def _trigger(self, node: yaml.Node, pointer: str) -> Trigger:
        heads = ("segment", "event", "date", "festival")
        got = self.mapping(node, pointer, "a trigger", (*heads, "id", "where", "offset"))
        present = [h for h in heads if h in got]
        if len(present) != 1:
            raise self.error(
                node,
                pointer,
                "a trigger has exactly one of: segment, event, date, festival"
                + (f" (found {', '.join(present)})" if present else ""),
            )
        head = present[0]
        hp = _join(pointer, head)
        allowed_extra = {"event": ("where",), "date": ("offset",), "festival": ("offset",)}
        for key, (key_node, _) in got.items():
            if key not in (head, "id") and key not in allowed_extra.get(head, ()):
                raise self.error(
                    key_node, _join(pointer, key), f"'{key}' does not apply to a {head} trigger"
                )
        value = got[head][1]
        tid = self.text(value, hp, head)
        if "id" in got:
            tid = self.ident(got["id"][1], _join(pointer, "id"), "trigger id")
        if head == "segment":
            name = self.text(value, hp, "segment")
            if name not in self.segments:
                raise self.error(
                    value,
                    hp,
                    f"unknown segment '{name}'{_suggest(name, sorted(self.segments))}",
                )
            return SegmentTrigger(tid, name)
        offset = Duration(0, "d")
        if "offset" in got:
            offset = self.span(got["offset"][1], _join(pointer, "offset"), signed=True)
        if head == "date":
            date_field = self.choice(value, hp, "date field", _DATE_FIELDS)
            return DateTrigger(tid, date_field, offset, date_field in _ANNUAL)
        if head == "festival":
            festival = self.choice(value, hp, "festival", list(FESTIVALS))
            return FestivalTrigger(tid, festival, offset)
        event = self.choice(value, hp, "event", list(EVENTS))
        where: list[tuple[str, tuple[str, ...]]] = []
        if "where" in got:
            wp = _join(pointer, "where")
            keys = EVENTS[event]
            for key, key_node, vnode in self.entries(got["where"][1], wp, "where"):
                kp = _join(wp, key)
                if key not in keys:
                    allowed = ", ".join(keys) if keys else "nothing"
                    raise self.error(
                        key_node,
                        kp,
                        f"event '{event}' has no '{key}'{_suggest(key, list(keys))}; "
                        f"where may test: {allowed}",
                    )
                closed = keys[key]
                if closed is None:
                    values = self._texts(vnode, kp, key)
                else:
                    values = self.choices(vnode, kp, key, closed)
                where.append((key, values))
        return EventTrigger(tid, event, tuple(where))

    def _texts(self, node: yaml.Node, pointer: str, what: str) -> tuple[str, ...]:
        self.check_tag(node, pointer)
        if isinstance(node, yaml.SequenceNode):
            if not node.value:
                raise self.error(node, pointer, f"{what} needs at least one value")
            return tuple(
                self.text(item, f"{pointer}[{i}]", what) for i, item in enumerate(node.value)
            )
        return (self.text(node, pointer, what),)

    def _entry(self, node: yaml.Node) -> EntryRules:
        got = self.mapping(node, "entry", "entry", _ENTRY_KEYS)
        re_entry = False
        cooldown: Duration | None = None
        holdout = 0.0
        dealers: tuple[int, ...] = ()
        if "re_entry" in got:
            re_entry = self.flag(got["re_entry"][1], "entry.re_entry", "re_entry")
        if "cooldown" in got:
            cooldown = self.span(got["cooldown"][1], "entry.cooldown")
            if not re_entry:
                self.warn(
                    got["cooldown"][0],
                    "entry.cooldown",
                    "cooldown has no effect without re_entry: true",
                )
        if "holdout" in got:
            vnode = got["holdout"][1]
            raw = self.scalar(vnode, "entry.holdout")
            if isinstance(raw, str) and raw.strip().endswith("%"):
                try:
                    raw = float(raw.strip()[:-1]) / 100
                except ValueError:
                    raw = None
            if (
                isinstance(raw, bool)
                or not isinstance(raw, int | float)
                or not 0 <= raw <= _MAX_HOLDOUT
            ):
                raise self.error(
                    vnode,
                    "entry.holdout",
                    f"holdout is a share from 0 to {_MAX_HOLDOUT} (e.g. 0.1 or 10%), "
                    f"got {_show(vnode)}",
                )
            holdout = float(raw)
        if "dealers" in got:
            vnode = got["dealers"][1]
            if not isinstance(vnode, yaml.SequenceNode):
                raise self.error(vnode, "entry.dealers", "dealers is a list of dealer ids")
            ids: list[int] = []
            for i, item in enumerate(vnode.value):
                raw = self.scalar(item, f"entry.dealers[{i}]")
                if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
                    raise self.error(
                        item,
                        f"entry.dealers[{i}]",
                        f"a dealer id is a positive integer, got {_show(item)}",
                    )
                ids.append(raw)
            dealers = tuple(ids)
        return EntryRules(re_entry, cooldown, holdout, dealers)

    def _goal(self, node: yaml.Node) -> Goal:
        got = self.mapping(node, "goal", "goal", ("event", "within"))
        self.need(got, node, "goal", "event")
        events = self.choices(got["event"][1], "goal.event", "goal event", GOAL_EVENTS)
        within = self.span(got["within"][1], "goal.within") if "within" in got else None
        return Goal(events, within)

    # ---- templates -----------------------------------------------------------------------

    def _templates(self, node: yaml.Node) -> tuple[TemplateDef, ...]:
        out: list[TemplateDef] = []
        for tid, key_node, value in self.entries(node, "templates", "templates"):
            tp = _join("templates", tid)
            if not _ID_RE.fullmatch(tid):
                self.errors.append(self.error(key_node, tp, f"invalid template id '{tid}'"))
                continue
            variants: list[TemplateVariant] = []
            channels = (*CHANNELS, "script")
            for channel, ch_key, ch_value in self.entries(value, tp, "a template"):
                cp = _join(tp, channel)
                if channel not in channels:
                    self.errors.append(
                        self.error(
                            ch_key,
                            cp,
                            f"unknown channel '{channel}'{_suggest(channel, channels)}; "
                            f"a template has variants for {', '.join(channels)}",
                        )
                    )
                    continue
                variant = self.collect(functools.partial(self._variant, channel, ch_value, cp))
                if variant is not None:
                    variants.append(variant)
                    self.template_nodes[(tid, channel)] = (ch_value, cp)
                else:
                    self.failed_variants.add((tid, channel))
            out.append(TemplateDef(tid, tuple(variants)))
        return tuple(out)

    def _variant(self, channel: str, node: yaml.Node, pointer: str) -> TemplateVariant:
        if channel == "email":
            got = self.mapping(node, pointer, "an email template", ("subject", "body"))
            self.need(got, node, pointer, "subject", "body")
            subject = self.text(got["subject"][1], _join(pointer, "subject"), "subject")
            body = self.text(got["body"][1], _join(pointer, "body"), "body")
            return TemplateVariant(channel, body, subject.strip())
        return TemplateVariant(channel, self.text(node, pointer, "template text"))

    def _check_templates(self, templates: tuple[TemplateDef, ...], *, steps_ok: bool) -> None:
        by_id = {t.id: t for t in templates}
        for tid, channels in self.uses.items() if steps_ok else ():
            ref_node, ref_pointer = self.use_nodes[tid]
            tdef = by_id.get(tid)
            if tdef is None:
                self.errors.append(
                    self.error(
                        ref_node,
                        ref_pointer,
                        f"unknown template '{tid}'{_suggest(tid, list(by_id))}; "
                        "define it under 'templates'",
                    )
                )
                continue
            for channel in channels:
                if tdef.variant(channel) is None and (tid, channel) not in self.failed_variants:
                    have = ", ".join(v.channel for v in tdef.variants) or "none"
                    self.errors.append(
                        self.error(
                            ref_node,
                            ref_pointer,
                            f"template '{tid}' has no {channel} variant (it has: {have})",
                        )
                    )
        for tdef in templates:
            for variant in tdef.variants:
                node, pointer = self.template_nodes[(tdef.id, variant.channel)]
                used = self.uses.get(tdef.id, {})
                if variant.channel not in used and steps_ok:
                    self.warn(node, pointer, "template variant not used by any step")
                priority = used.get(variant.channel, "service")
                texts = [variant.text] + ([variant.subject] if variant.subject else [])
                for text in texts:
                    try:
                        issues = validate_template(
                            variant.channel,
                            text,
                            name=f"{tdef.id}.{variant.channel}",
                            priority=priority,
                        )
                    except TemplateError as err:
                        for problem in err.problems:
                            self.errors.append(
                                self.error(node, pointer, f"template '{err.name}': {problem}")
                            )
                        continue
                    for issue in issues:
                        self.warn(node, pointer, str(issue))

    def _use(self, tid: str, channel: str, priority: str, node: yaml.Node, pointer: str) -> None:
        channels = self.uses.setdefault(tid, {})
        rank = PRIORITY_CLASSES.index
        # The strictest use decides the SMS rules (a marketing use needs the TD line).
        if channel not in channels or rank(priority) > rank(channels[channel]):
            channels[channel] = priority
        self.use_nodes.setdefault(tid, (node, pointer))

    # ---- steps ---------------------------------------------------------------------------

    def _steps(self, node: yaml.Node, kind: str) -> tuple[Step, ...]:
        self.check_tag(node, "steps")
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.error(node, "steps", "'steps' must be a non-empty list")
        out: list[Step] = []
        for i, item in enumerate(node.value):
            step = self.collect(functools.partial(self._step, item, f"steps[{i}]", kind, out))
            if step is not None:
                out.append(step)
            else:
                self.step_failed = True
        if len(out) != len(node.value):
            raise _Collected
        return tuple(out)

    def _step(self, node: yaml.Node, pointer: str, kind: str, before: list[Step]) -> Step:
        entries = self.entries(node, pointer, "a step")
        got = {k: (kn, v) for k, kn, v in entries}
        types = [k for k in got if k in _STEP_TYPES]
        for key, key_node, _ in entries:
            if key not in (*_STEP_TYPES, "id", "next"):
                raise self.error(
                    key_node,
                    _join(pointer, key),
                    f"unknown key '{key}'{_suggest(key, [*_STEP_TYPES, 'id', 'next'])}; "
                    f"a step has an id, one of {', '.join(_STEP_TYPES)}, and optionally next",
                )
        if "id" not in got:
            raise self.error(node, pointer, "missing 'id'")
        id_node = got["id"][1]
        sid = self.ident(id_node, _join(pointer, "id"), "step id")
        if sid == _END:
            raise self.error(
                id_node,
                _join(pointer, "id"),
                "'end' is reserved (it ends the journey); choose another step id",
            )
        if sid in self.step_nodes:
            first = self.step_nodes[sid].start_mark.line + 1
            raise self.error(
                id_node, _join(pointer, "id"), f"duplicate step id '{sid}' (first at line {first})"
            )
        self.step_nodes[sid] = id_node
        if len(types) != 1:
            raise self.error(
                node,
                pointer,
                f"a step has exactly one of: {', '.join(_STEP_TYPES)}"
                + (f" (found {', '.join(types)})" if types else ""),
            )
        stype = types[0]
        sp = _join(pointer, stype)
        value = got[stype][1]
        nxt: str | None = None
        if "next" in got:
            if stype == "branch":
                raise self.error(
                    got["next"][0],
                    _join(pointer, "next"),
                    "a branch goes on by then/else, not next",
                )
            nxt = self.target(got["next"][1], _join(pointer, "next"))
        if stype == "send":
            return self._send(sid, value, sp, kind, nxt)
        if stype == "wait":
            return self._wait(sid, value, sp, nxt)
        if stype == "task":
            return self._task(sid, value, sp, nxt)
        if stype == "fallback":
            return self._fallback(sid, value, sp, before, nxt)
        return self._branch(sid, value, sp, before)

    def _send(self, sid: str, node: yaml.Node, pointer: str, kind: str, nxt: str | None) -> Step:
        got = self.mapping(node, pointer, "send", ("channel", "template", "priority"))
        self.need(got, node, pointer, "channel", "template")
        channels = self.choices(got["channel"][1], _join(pointer, "channel"), "channel", CHANNELS)
        if len(set(channels)) != len(channels):
            raise self.error(
                got["channel"][1], _join(pointer, "channel"), "a channel is listed twice"
            )
        tp = _join(pointer, "template")
        tid = self.ident(got["template"][1], tp, "template id")
        priority = kind
        if "priority" in got:
            priority = self.choice(
                got["priority"][1], _join(pointer, "priority"), "priority class", PRIORITY_CLASSES
            )
        for channel in channels:
            self._use(tid, channel, priority, got["template"][1], tp)
        return SendStep(sid, channels, tid, priority, nxt)

    def _wait(self, sid: str, node: yaml.Node, pointer: str, nxt: str | None) -> Step:
        if isinstance(node, yaml.MappingNode):
            got = self.mapping(node, pointer, "wait", ("until",))
            self.need(got, node, pointer, "until")
            vnode = got["until"][1]
            up = _join(pointer, "until")
            raw = self.text(vnode, up, "until")
            match = _WINDOW_RE.fullmatch(raw.strip())
            window: tuple[dt.time, dt.time] | None = None
            if match:
                h1, m1, h2, m2 = (int(g) for g in match.groups())
                if h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60:
                    window = (dt.time(h1, m1), dt.time(h2, m2))
            if window is None:
                raise self.error(
                    vnode,
                    up,
                    f'until is a local time window like "09:00-21:00", got {_show(vnode)}',
                )
            if window[0] >= window[1]:
                raise self.error(
                    vnode,
                    up,
                    "the window must start before it ends (no overnight "
                    "windows: customers are not contacted at night)",
                )
            return WaitStep(sid, None, window, nxt)
        duration = self.span(node, pointer)
        if duration.amount == 0:
            raise self.error(node, pointer, "a wait of zero does nothing; remove the step")
        return WaitStep(sid, duration, None, nxt)

    def _task(self, sid: str, node: yaml.Node, pointer: str, nxt: str | None) -> Step:
        got = self.mapping(node, pointer, "task", ("role", "sla", "title", "script"))
        self.need(got, node, pointer, "role", "sla", "title")
        role = self.choice(got["role"][1], _join(pointer, "role"), "role", ROLES)
        sla = self.span(got["sla"][1], _join(pointer, "sla"))
        title = self.text(got["title"][1], _join(pointer, "title"), "title").strip()
        script = None
        if "script" in got:
            sp = _join(pointer, "script")
            script = self.ident(got["script"][1], sp, "template id")
            self._use(script, "script", "service", got["script"][1], sp)
        return TaskStep(sid, role, sla, title, script, nxt)

    def _source_step(
        self,
        got: dict[str, tuple[yaml.Node, yaml.Node]],
        node: yaml.Node,
        pointer: str,
        before: list[Step],
    ) -> tuple[str, tuple[str, ...]]:
        """The step whose outcome is tested (``of`` or the nearest send/task before) and the
        outcomes it can have."""
        if self.step_failed:
            # A failed step before this one may be the source: guessing would add a false error.
            raise _Collected
        if "of" in got:
            of_node = got["of"][1]
            of = self.text(of_node, _join(pointer, "of"), "step id")
            source = next((s for s in before if s.id == of), None)
            if source is None or not isinstance(source, SendStep | TaskStep):
                raise self.error(
                    of_node,
                    _join(pointer, "of"),
                    f"'{of}' is not a send or task step before this one",
                )
        else:
            source = next((s for s in reversed(before) if isinstance(s, SendStep | TaskStep)), None)
            if source is None:
                raise self.error(node, pointer, "no send or task step before this one to test")
        if isinstance(source, TaskStep):
            return source.id, _CALL_OUTCOMES
        allowed: list[str] = []
        for channel in source.channels:
            allowed += _CALL_OUTCOMES if channel == "phone" else _MESSAGE_OUTCOMES
        return source.id, tuple(dict.fromkeys(allowed))

    def _outcomes(
        self, node: yaml.Node, pointer: str, source: str, allowed: tuple[str, ...]
    ) -> tuple[str, ...]:
        values = self.choices(node, pointer, "outcome", OUTCOMES)
        for i, value in enumerate(values):
            if value not in allowed:
                item = node.value[i] if isinstance(node, yaml.SequenceNode) else node
                raise self.error(
                    item,
                    pointer,
                    f"step '{source}' cannot have outcome '{value}'; "
                    f"its outcomes: {', '.join(allowed)}",
                )
        return values

    def _fallback(
        self, sid: str, node: yaml.Node, pointer: str, before: list[Step], nxt: str | None
    ) -> Step:
        got = self.mapping(node, pointer, "fallback", ("of", "on", "within", "goto"))
        self.need(got, node, pointer, "on", "within", "goto")
        source, allowed = self._source_step(got, node, pointer, before)
        on = self._outcomes(got["on"][1], _join(pointer, "on"), source, allowed)
        within = self.span(got["within"][1], _join(pointer, "within"))
        goto = self.target(got["goto"][1], _join(pointer, "goto"))
        return FallbackStep(sid, source, on, within, goto, nxt)

    def _branch(self, sid: str, node: yaml.Node, pointer: str, before: list[Step]) -> Step:
        tests = ("if", "outcome", "trigger")
        got = self.mapping(node, pointer, "branch", (*tests, "of", "then", "else"))
        present = [t for t in tests if t in got]
        if len(present) != 1:
            raise self.error(
                node,
                pointer,
                "a branch tests exactly one of: if (a profile condition), outcome, trigger"
                + (f" (found {', '.join(present)})" if present else ""),
            )
        self.need(got, node, pointer, "then")
        if "of" in got and "outcome" not in got:
            raise self.error(got["of"][0], _join(pointer, "of"), "'of' goes with 'outcome'")
        then = self.target(got["then"][1], _join(pointer, "then"))
        else_ = self.target(got["else"][1], _join(pointer, "else")) if "else" in got else None
        test = present[0]
        tp = _join(pointer, test)
        if test == "if":
            return BranchStep(sid, then, else_, condition=self.condition(got["if"][1], tp))
        if test == "outcome":
            source, allowed = self._source_step(got, node, pointer, before)
            outcomes = self._outcomes(got["outcome"][1], tp, source, allowed)
            return BranchStep(sid, then, else_, outcome=outcomes, of=source)
        if self.trigger_ids is None:
            raise _Collected  # the triggers have errors already; a second report would mislead
        tested = self.choices(got["trigger"][1], tp, "trigger id", self.trigger_ids)
        return BranchStep(sid, then, else_, trigger=tested)

    # ---- flow ----------------------------------------------------------------------------

    def _check_refs(self) -> bool:
        """Report every target that is neither a step id nor ``end``; True when all are."""
        ids = list(self.step_nodes)
        bad = False
        for ref in self.refs:
            if ref.target != _END and ref.target not in self.step_nodes:
                bad = True
                self.errors.append(
                    self.error(
                        ref.node,
                        ref.pointer,
                        f"unknown step '{ref.target}'{_suggest(ref.target, ids)}; "
                        f"targets are step ids or 'end'",
                    )
                )
        return not bad

    def _check_flow(self, steps: tuple[Step, ...]) -> None:
        ids = [s.id for s in steps]
        edges = {s.id: _successors(s, steps) for s in steps}
        seen: set[str] = set()
        stack = [steps[0].id]
        while stack:
            sid = stack.pop()
            if sid in seen:
                continue
            seen.add(sid)
            stack.extend(t for t in edges[sid] if t != _END)
        unreachable = [s for s in steps if s.id not in seen]
        # Report where an unreachable stretch starts, not every step after it as well.
        led_to = {t for s in unreachable for t in edges[s.id]}
        starts = [s for s in unreachable if s.id not in led_to] or unreachable[:1]
        for s in starts:
            if s.id not in seen:
                self.errors.append(
                    self.error(
                        self.step_nodes[s.id],
                        f"steps[{ids.index(s.id)}].id",
                        f"step '{s.id}' is unreachable: no step leads to it "
                        "(check the then/else/next/goto targets before it)",
                    )
                )
        cycle = _waitless_cycle(steps, edges)
        if cycle:
            first = cycle[0]
            self.errors.append(
                self.error(
                    self.step_nodes[first],
                    f"steps[{ids.index(first)}].id",
                    "loop without a wait: "
                    + " -> ".join([*cycle, first])
                    + " would run forever in one evaluation; put a wait in it",
                )
            )


def _successors(step: Step, steps: tuple[Step, ...]) -> list[str]:
    index = steps.index(step)
    following = steps[index + 1].id if index + 1 < len(steps) else _END
    if isinstance(step, BranchStep):
        return [step.then, step.else_ or following]
    out = [step.next or following]
    if isinstance(step, FallbackStep):
        out.append(step.goto)
    return out


def _pauses(step: Step) -> bool:
    if isinstance(step, WaitStep):
        return True
    return isinstance(step, FallbackStep) and step.within.amount > 0


def _waitless_cycle(steps: tuple[Step, ...], edges: dict[str, list[str]]) -> list[str]:
    """A cycle through steps none of which waits (a path of step ids), or []."""
    instant = {s.id for s in steps if not _pauses(s)}
    color: dict[str, int] = {}
    path: list[str] = []

    def visit(sid: str) -> list[str]:
        color[sid] = 1
        path.append(sid)
        for t in edges[sid]:
            if t not in instant:
                continue
            if color.get(t) == 1:
                return path[path.index(t) :]
            if t not in color:
                found = visit(t)
                if found:
                    return found
        path.pop()
        color[sid] = 2
        return []

    # In step order, so the reported loop starts at its first step, the same on every run.
    for sid in (s.id for s in steps if s.id in instant):
        if sid not in color:
            found = visit(sid)
            if found:
                return found
    return []


def _show(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(str(node.value))
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _plain(node: yaml.Node) -> object:
    """The node tree as JSON-able data: scalars as their text, mappings with sorted keys."""
    if isinstance(node, yaml.MappingNode):
        return {str(k.value): _plain(v) for k, v in sorted(node.value, key=lambda kv: kv[0].value)}
    if isinstance(node, yaml.SequenceNode):
        return [_plain(v) for v in node.value]
    return str(node.value)


def _version(root: yaml.Node) -> str:
    data = _plain(root)
    assert isinstance(data, dict)
    # Disabling a playbook must not look like a new version of it: journeys keep their version.
    data.pop("enabled", None)
    canonical = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _segment_names(extra_segments: Iterable[str | SegmentDef]) -> set[str]:
    names = {s.name for s in builtin_segments()}
    names.update(s.name if isinstance(s, SegmentDef) else s for s in extra_segments)
    return names


def parse_playbook(
    text: str, path: str = "<string>", *, extra_segments: Iterable[str | SegmentDef] = ()
) -> Playbook:
    """Parse and validate one playbook document; raise :class:`PlaybookError` (first of all).

    Segment triggers may name a built-in segment or one of ``extra_segments`` (names or
    definitions, e.g. the data directory's own rules).
    """
    return _parse_cached(text, path, frozenset(_segment_names(extra_segments)))


# Parsing (YAML composition, template validation with a Jinja compile per template) costs tens
# of milliseconds a file, and the library is read several times a run (the daily run, the
# policy, the dispatcher every minute). A result depends on nothing but the text, the path it
# is reported under and the segment names, so it is cached on exactly those: a changed file is
# new text and is parsed afresh. Sharing the result is safe because a Playbook is a frozen
# dataclass of tuples and frozen values all the way down. Errors are not cached (raised).
@functools.lru_cache(maxsize=512)
def _parse_cached(text: str, path: str, segments: frozenset[str]) -> Playbook:
    return _PlaybookParser(path, set(segments)).playbook(text)


def load_playbook_file(
    path: Path | str, *, extra_segments: Iterable[str | SegmentDef] = ()
) -> Playbook:
    """Parse the playbook file at ``path`` (UTF-8, with or without BOM)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise PlaybookError(f"cannot read playbook file: {err}", str(path)) from None
    return parse_playbook(text, str(path), extra_segments=extra_segments)


def builtin_texts() -> list[tuple[str, str]]:
    """(source, YAML text) of the built-in playbooks, in file-name order."""
    folder = resources.files("baoke.playbooks").joinpath("builtin")
    return [
        (f"builtin/{entry.name}", entry.read_text(encoding="utf-8"))
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".yaml")
    ]


def load_builtin_playbooks() -> list[Playbook]:
    """The playbooks shipped in ``baoke/playbooks/builtin/*.yaml``, in file-name order."""
    out: list[Playbook] = []
    seen: dict[str, str] = {}
    for source, text in builtin_texts():
        playbook = parse_playbook(text, source)
        if playbook.name in seen:
            raise PlaybookError(
                f"duplicate built-in playbook '{playbook.name}' (also in {seen[playbook.name]})",
                source,
            )
        seen[playbook.name] = source
        out.append(playbook)
    return out


def validate_all(
    paths: Sequence[Path | str], *, extra_segments: Iterable[str | SegmentDef] = ()
) -> list[PlaybookError]:
    """Every error of every file (all of each file's errors, in file order), and duplicate names.

    An empty list means every file is valid. Warnings are not errors: load a file to see them.
    """
    segments = list(extra_segments)
    errors: list[PlaybookError] = []
    names: dict[str, str] = {}
    for path in paths:
        try:
            playbook = load_playbook_file(path, extra_segments=segments)
        except PlaybookError as err:
            errors.extend(err.errors)
            continue
        if playbook.name in names:
            errors.append(
                PlaybookError(
                    f"duplicate playbook name '{playbook.name}' (also in {names[playbook.name]})",
                    str(path),
                    pointer="name",
                )
            )
        else:
            names[playbook.name] = str(path)
    return errors
