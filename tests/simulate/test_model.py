"""The response model's parameter file: the shipped one loads, a wrong one is one clear error."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

from baoke.errors import InputError
from baoke.simulate.model import load_model
from baoke.touches import CHANNELS


def _shipped() -> str:
    return resources.files("baoke.simulate").joinpath("response.toml").read_text("utf-8")


def test_the_shipped_model_loads_with_every_channel() -> None:
    model = load_model()
    assert set(model.channels) == set(CHANNELS)
    # DOMAIN's matrix: WeCom interacts far more than SMS, at a fraction of the cost.
    assert model.channels["wecom"].interacted[0] > model.channels["sms"].interacted[1]
    assert model.relevance.relevant / model.relevance.irrelevant == pytest.approx(2.3, rel=0.01)


def test_a_copy_of_the_shipped_file_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "model.toml"
    path.write_text(_shipped(), encoding="utf-8")
    assert load_model(path) == load_model()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("channels.sms", "opened = [0.05, 0.15]", "opened = [0.5, 0.15]"), "channels.sms.opened"),
        (("visits", "natural_return = 0.55", "natural_return = 1.5"), "visits.natural_return"),
        (("fatigue", "irrelevant_weight = 2.0", "irrelevent_weight = 2.0"), "irrelevent_weight"),
        (("staff", "severe = 0.05", "severe = 0.5"), "severity_share"),
    ],
)
def test_a_wrong_value_names_its_place(
    tmp_path: Path, change: tuple[str, str, str], message: str
) -> None:
    _, old, new = change
    text = _shipped()
    assert old in text
    path = tmp_path / "model.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_model(path)


def test_broken_toml_and_a_missing_file_are_input_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[channels\n", encoding="utf-8")
    with pytest.raises(InputError, match="not valid TOML"):
        load_model(bad)
    with pytest.raises(InputError, match="no such model file"):
        load_model(tmp_path / "missing.toml")


def test_a_missing_channel_is_refused(tmp_path: Path) -> None:
    data = tomllib.loads(_shipped())
    assert "email" in data["channels"]
    text = _shipped()
    start = text.index("[channels.email]")
    end = text.index("[channels.phone]")
    path = tmp_path / "model.toml"
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    with pytest.raises(InputError, match="channels"):
        load_model(path)
