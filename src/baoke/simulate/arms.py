"""Simulation arms: one configuration of playbooks and contact policy to compare with others.

``baoke simulate --arm NAME=CONFIG …`` runs the same synthetic dealer group through the real
engine once per arm. An arm is a small TOML file an operations director can read::

    label = "SMS only"                 # required, shown in reports
    description = "…"                  # required, one or two sentences
    playbooks = "sms_only"             # optional: a directory (relative to this file) of
                                       # playbook YAML files replacing built-ins of the same
                                       # name or adding new ones, as <data dir>/playbooks/ does
    [policy]                           # optional: keys of baoke.toml's [policy], overlaid
    monthly_caps = { high = 10 }

Three arms ship with baoke (``src/baoke/simulate/arms/``): ``wecom_led`` (the defaults as
shipped), ``sms_only`` (DOMAIN scenario 2's A/B reference arm) and ``full_blast`` (seed 000's
"six channels at full blast" warning).

Everything is checked when the arm is loaded, before a simulation starts: a bad arm found an
hour into a run would waste the run. Any problem is one :class:`baoke.errors.InputError`
naming the file.
"""

from __future__ import annotations

import difflib
import re
import shutil
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from baoke.config import Settings
from baoke.errors import InputError
from baoke.playbooks.definitions import PlaybookError, parse_playbook
from baoke.policy.settings import PolicySettings

__all__ = [
    "BUILTIN_ARMS",
    "Arm",
    "apply_arm",
    "builtin_arm_names",
    "load_arm",
    "parse_arm_option",
]

BUILTIN_ARMS = Path(__file__).parent / "arms"
"""The directory of the shipped arms: ``<name>.toml``, each with its playbook directory."""

_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_KEYS = ("label", "description", "playbooks", "policy")
# The same files <data dir>/playbooks/ is read for (baoke.playbooks.library.load_library).
_PLAYBOOK_GLOB = "*.y*ml"


@dataclass(frozen=True)
class Arm:
    """One configuration to simulate.

    ``policy`` is the raw ``[policy]`` overlay as written (validated against the defaults
    when loaded; :func:`apply_arm` overlays it on a run's settings). ``playbooks`` is the
    resolved playbook directory, or None when the arm runs the built-in library unchanged.
    """

    name: str
    label: str
    description: str
    policy: dict[str, Any]
    playbooks: Path | None
    source: Path


def builtin_arm_names() -> list[str]:
    """The names of the shipped arms, sorted."""
    return sorted(path.stem for path in BUILTIN_ARMS.glob("*.toml"))


def load_arm(spec: str, name: str | None = None) -> Arm:
    """Load and check the arm ``spec``: a path to a TOML file or a built-in arm's name.

    ``name`` defaults to the file's stem. Raises one :class:`InputError` for any problem: the
    file is missing or not TOML, an unknown key, a missing label or description, a policy
    overlay the contact policy refuses, a playbook directory that does not exist, or a
    playbook file that does not parse.
    """
    path = _resolve(spec)
    arm_name = path.stem if name is None else name
    if not _NAME_RE.fullmatch(arm_name):
        raise InputError(
            f"{path}: arm name {arm_name!r} must be letters, digits, '_' or '-'; "
            "name it on the command line: --arm NAME=CONFIG"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the arm file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the arm file is not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from exc
    for key in data:
        if key not in _KEYS:
            raise InputError(
                f"{path}: unknown key {key!r}{_suggest(key, _KEYS)}; an arm has {', '.join(_KEYS)}"
            )
    label = _text(data, "label", path)
    description = _text(data, "description", path)
    policy = data.get("policy", {})
    if not isinstance(policy, dict):
        raise InputError(f"{path}: policy must be a table ([policy]), got {policy!r}")
    _check_policy(policy, path)
    playbooks = None
    if "playbooks" in data:
        raw = data["playbooks"]
        if not isinstance(raw, str) or not raw.strip():
            raise InputError(f"{path}: playbooks is a directory name (text), got {raw!r}")
        playbooks = (path.parent / raw).resolve()
        _check_playbooks(playbooks, path)
    return Arm(arm_name, label, description, policy, playbooks, path)


def parse_arm_option(text: str) -> Arm:
    """An ``--arm`` value: ``NAME=CONFIG`` or just ``CONFIG`` (named by the file's stem).

    CONFIG is a path to an arm file or a built-in arm's name; NAME is letters, digits, ``_``
    and ``-`` (it names the arm's directory and its column in the report).
    """
    value = text.strip()
    if not value:
        raise InputError("--arm needs NAME=CONFIG or CONFIG (a TOML file or a built-in arm)")
    if "=" not in value:
        return load_arm(value)
    name, config = (part.strip() for part in value.split("=", 1))
    if not _NAME_RE.fullmatch(name):
        raise InputError(
            f"--arm {text!r}: the name {name!r} must be letters, digits, '_' or '-' "
            "(NAME=CONFIG, e.g. sms=sms_only)"
        )
    if not config:
        raise InputError(f"--arm {text!r}: nothing after '='; give a TOML file or a built-in arm")
    return load_arm(config, name)


def apply_arm(settings: Settings, arm: Arm, data_dir: Path) -> Settings:
    """The settings ``arm`` runs with, in its own data directory ``data_dir``.

    A copy of ``settings`` with ``data_dir`` set, no ``database_url`` (the arm gets an
    embedded SQLite store of its own, so arms never share a database) and the policy of
    ``settings`` overlaid with the arm's: a table names only what it changes, as in
    baoke.toml (``monthly_caps = {high = 10}`` keeps the other tiers). The arm's playbook
    files are copied into ``data_dir/playbooks/`` (created; playbook files already there are
    removed, so a previous arm's playbooks never stay in force).
    """
    merged = _overlay(settings.policy.model_dump(), arm.policy)
    try:
        policy = PolicySettings.model_validate(merged)
    except ValidationError as exc:
        raise InputError(f"{arm.source}: {_problems(exc)}") from exc
    target = data_dir / "playbooks"
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob(_PLAYBOOK_GLOB):
        old.unlink()
    if arm.playbooks is not None:
        for path in sorted(arm.playbooks.glob(_PLAYBOOK_GLOB)):
            shutil.copyfile(path, target / path.name)
    # model_copy keeps cached properties (zone) computed from fields that do not change here;
    # reconstructing would re-read the environment and baoke.toml.
    return settings.model_copy(
        update={"data_dir": data_dir, "database_url": None, "policy": policy}
    )


# --------------------------------------------------------------------------------------------


def _resolve(spec: str) -> Path:
    if spec in builtin_arm_names():
        return BUILTIN_ARMS / f"{spec}.toml"
    path = Path(spec)
    if path.is_file():
        return path
    builtins = builtin_arm_names()
    hint = _suggest(spec, builtins)
    raise InputError(
        f"{spec}: no such arm file{hint}; built-in arms are {', '.join(builtins)}"
        if not path.exists()
        else f"{spec}: not a file (an arm is a TOML file)"
    )


def _text(data: Mapping[str, Any], key: str, path: Path) -> str:
    if key not in data:
        raise InputError(f"{path}: missing {key!r} (an arm needs a label and a description)")
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{path}: {key} must be non-empty text, got {value!r}")
    return value.strip()


def _overlay(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay``'s keys; a table merges one level deep, entry by entry.

    One level, as PolicySettings merges a partial table with its defaults: an entry itself
    (a channel's cap, a tier's channel mix) is replaced whole, since half of a tier's mix
    merged with the old other half would not add up to one.
    """
    out = dict(base)
    for key, value in overlay.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = {**old, **value}
        else:
            out[key] = value
    return out


def _check_policy(policy: Mapping[str, Any], path: Path) -> None:
    """Refuse what PolicySettings would refuse, and the keys it would silently ignore."""
    _unknown_keys(PolicySettings, policy, "policy", path)
    try:
        PolicySettings.model_validate(_overlay(PolicySettings().model_dump(), policy))
    except ValidationError as exc:
        raise InputError(f"{path}: {_problems(exc)}") from exc


def _unknown_keys(model: type[BaseModel], data: Mapping[str, Any], where: str, path: Path) -> None:
    # Pydantic ignores unknown keys by default: a misspelt "monthly_cap" would quietly run an
    # arm with the default caps, and the comparison would be wrong without anyone knowing.
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            raise InputError(
                f"{path}: unknown key '{where}.{key}'{_suggest(key, list(fields))}; "
                f"{where} has {', '.join(fields)}"
            )
        annotation = fields[key].annotation
        sub = _model_of(annotation)
        if sub is not None and isinstance(value, Mapping):
            _unknown_keys(sub, value, f"{where}.{key}", path)
            continue
        if typing.get_origin(annotation) is dict and isinstance(value, Mapping):
            entry = _model_of(typing.get_args(annotation)[1])
            for item_key, item in value.items():
                if entry is not None and isinstance(item, Mapping):
                    _unknown_keys(entry, item, f"{where}.{key}.{item_key}", path)


def _model_of(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and not isinstance(annotation, types.GenericAlias):
        return annotation if issubclass(annotation, BaseModel) else None
    return None


def _check_playbooks(folder: Path, path: Path) -> None:
    if not folder.is_dir():
        raise InputError(f"{path}: playbooks directory {folder} does not exist")
    files = sorted(folder.glob(_PLAYBOOK_GLOB))
    if not files:
        raise InputError(f"{path}: playbooks directory {folder} has no playbook (.yaml) files")
    names: dict[str, str] = {}
    for file in files:
        try:
            book = parse_playbook(file.read_text(encoding="utf-8-sig"), str(file))
        except PlaybookError as exc:
            more = len(exc.errors) - 1
            extra = f" (and {more} more: baoke playbooks validate {file})" if more else ""
            raise InputError(f"{path}: playbook {exc}{extra}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read playbook {file}: {exc}") from exc
        # In the library the later file would silently win; in an arm that is a mistake.
        if book.name in names:
            raise InputError(
                f"{path}: playbooks {names[book.name]} and {file.name} are both named {book.name!r}"
            )
        names[book.name] = file.name


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(['policy', *(str(p) for p in err['loc'])])}: {err['msg']}"
        for err in exc.errors()
    )


def _suggest(word: str, choices: typing.Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
