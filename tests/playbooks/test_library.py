"""The library in force: parsed playbooks are shared between reads, edits are picked up."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from baoke.config import Settings
from baoke.errors import InputError
from baoke.playbooks.definitions import parse_playbook
from baoke.playbooks.library import load_library

_BODY = """\
name: custom_welcome
label: {label}
kind: care
triggers:
  - event: wecom_friend_added
steps:
  - id: hello
    send: {{channel: wecom, template: hello}}
templates:
  hello:
    wecom: "{{{{ greeting }}}}，您好，{text}"
"""


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def _write(settings: Settings, label: str, text: str) -> Path:
    folder = settings.data_dir / "playbooks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "welcome.yaml"
    path.write_text(_BODY.format(label=label, text=text), encoding="utf-8")
    return path


def test_a_changed_file_is_read_and_parsed_again(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _write(settings, "欢迎", "我是您的顾问。")
    first = load_library(settings)["custom_welcome"]
    again = load_library(settings)["custom_welcome"]
    # The same text: the very same (immutable) definition, not a second parse.
    assert again.book is first.book
    path = _write(settings, "新的欢迎", "我是您的专属顾问。")
    changed = load_library(settings)["custom_welcome"]
    assert changed.book.label == "新的欢迎"
    assert changed.book.version != first.book.version
    assert "专属顾问" in changed.book.templates[0].variants[0].text
    # A broken edit is reported, every time (errors are not remembered).
    path.write_text("name: custom_welcome\nsteps: 3\n", encoding="utf-8")
    for _ in range(2):
        with pytest.raises(InputError, match=r"welcome\.yaml"):
            load_library(settings)


def test_shared_definitions_cannot_be_changed_by_a_caller(tmp_path: Path) -> None:
    entry = load_library(_settings(tmp_path))["churn_winback"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.book.label = "changed"  # type: ignore[misc]
    # Frozen all the way down: every part is hashable, so no list or dict hides inside.
    assert hash(entry.book) == hash(parse_playbook(entry.text, entry.source))
