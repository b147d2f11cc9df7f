"""Simulation arms: the TOML format, its loader, and the three shipped arms.

The shipped arms are what an operations director reads and what ``baoke simulate`` compares,
so they are checked through the real library (``load_library``) the journey engine reads:
what the SMS-only arm has in force sends on SMS only, the full-blast arm's really blasts.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from baoke.config import Settings
from baoke.errors import InputError
from baoke.playbooks.definitions import (
    SendStep,
    TaskStep,
    WaitStep,
    load_builtin_playbooks,
    parse_playbook,
)
from baoke.playbooks.library import LibraryEntry, load_library
from baoke.policy.settings import PolicySettings
from baoke.simulate.arms import (
    BUILTIN_ARMS,
    Arm,
    apply_arm,
    builtin_arm_names,
    load_arm,
    parse_arm_option,
)

MESSAGE_CHANNELS = {"wecom", "sms", "push", "email"}
BUILTINS = {book.name: book for book in load_builtin_playbooks()}
DEFAULT_POLICY = PolicySettings()


def _in_force(arm: Arm, tmp_path: Path) -> tuple[Settings, dict[str, LibraryEntry]]:
    settings = apply_arm(Settings(data_dir=tmp_path / "base"), arm, tmp_path / arm.name)
    return settings, load_library(settings)


def _sends(entry: LibraryEntry) -> list[SendStep]:
    return [s for s in entry.book.steps if isinstance(s, SendStep)]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# The shipped arms
# --------------------------------------------------------------------------------------------


def test_the_three_arms_ship() -> None:
    assert builtin_arm_names() == ["full_blast", "sms_only", "wecom_led"]
    assert (BUILTIN_ARMS / "wecom_led.toml").is_file()


@pytest.mark.parametrize("name", ["full_blast", "sms_only", "wecom_led"])
def test_each_builtin_arm_loads(name: str) -> None:
    arm = load_arm(name)
    assert arm.name == name
    assert arm.label and arm.description
    assert arm.source == BUILTIN_ARMS / f"{name}.toml"
    if name == "wecom_led":
        assert arm.playbooks is None
        assert arm.policy == {}
    else:
        assert arm.playbooks == (BUILTIN_ARMS / name).resolve()
        assert arm.playbooks.is_dir()


@pytest.mark.parametrize("name", ["full_blast", "sms_only", "wecom_led"])
def test_each_arms_playbooks_load_through_the_library(name: str, tmp_path: Path) -> None:
    arm = load_arm(name)
    settings, library = _in_force(arm, tmp_path)
    files = sorted(arm.playbooks.glob("*.yaml")) if arm.playbooks else []
    assert sorted(p.name for p in (settings.data_dir / "playbooks").iterdir()) == [
        p.name for p in files
    ]
    for path in files:
        book = parse_playbook(path.read_text(encoding="utf-8"), str(path))
        # No overlong SMS, no unused variant: a director reads these as the model to copy.
        assert book.warnings == (), [str(w) for w in book.warnings]
        assert library[book.name].source == f"playbooks/{path.name}"
    # The built-ins an arm does not replace stay in force.
    assert set(BUILTINS) <= set(library)


def test_wecom_led_is_baoke_as_shipped(tmp_path: Path) -> None:
    settings, library = _in_force(load_arm("wecom_led"), tmp_path)
    assert settings.policy == Settings(data_dir=tmp_path).policy
    assert {name: entry.source.split("/")[0] for name, entry in library.items()} == dict.fromkeys(
        BUILTINS, "builtin"
    )


def test_sms_only_sends_only_sms(tmp_path: Path) -> None:
    _, library = _in_force(load_arm("sms_only"), tmp_path)
    assert set(library) == set(BUILTINS)  # replacements only, nothing added
    for name, entry in library.items():
        sends = _sends(entry)
        assert sends or not _sends_of(BUILTINS[name]), name
        for step in sends:
            assert step.channels == ("sms",), f"{name}.{step.id} sends on {step.channels}"


def _sends_of(book: object) -> list[SendStep]:
    return [s for s in getattr(book, "steps", ()) if isinstance(s, SendStep)]


def test_sms_only_keeps_each_playbooks_entry_and_calls(tmp_path: Path) -> None:
    _, library = _in_force(load_arm("sms_only"), tmp_path)
    for name, builtin in BUILTINS.items():
        book = library[name].book
        assert book.kind == builtin.kind, name
        assert book.triggers == builtin.triggers, name
        assert book.audience == builtin.audience, name
        assert book.entry == builtin.entry, name
        assert book.goal == builtin.goal, name
        assert book.exit_on == builtin.exit_on, name
        assert book.pause_on == builtin.pause_on, name
        assert book.on_collision == builtin.on_collision, name
        assert len(book.steps) == len(builtin.steps), name
        roles = Counter(s.role for s in book.steps if isinstance(s, TaskStep))
        builtin_roles = Counter(s.role for s in builtin.steps if isinstance(s, TaskStep))
        if name == "new_owner_activation":
            # The "add the customer on WeCom" task becomes an SMS introducing the advisor.
            builtin_roles["advisor"] -= 1
        assert roles == builtin_roles, name


def test_sms_only_mix_targets_only_channels_it_uses(tmp_path: Path) -> None:
    settings, _ = _in_force(load_arm("sms_only"), tmp_path)
    mix = settings.policy.channel_mix
    assert set(mix) >= set(DEFAULT_POLICY.channel_mix)
    for tier, shares in mix.items():
        assert set(shares) <= {"sms", "phone"}, tier
        assert sum(shares.values()) == pytest.approx(1.0)
    assert mix["high"]["phone"] == DEFAULT_POLICY.channel_mix["high"]["phone"]
    # Nothing else about the policy changes.
    assert settings.policy.monthly_caps == DEFAULT_POLICY.monthly_caps
    assert settings.policy.channel_caps == DEFAULT_POLICY.channel_caps


def test_full_blast_lifts_the_caps(tmp_path: Path) -> None:
    policy = _in_force(load_arm("full_blast"), tmp_path)[0].policy
    for tier, cap in DEFAULT_POLICY.monthly_caps.items():
        assert policy.monthly_caps[tier] >= 3 * cap, tier
    assert policy.marketing_per_day == 4
    assert policy.holdout == 0
    assert policy.high_value_restraint is False
    caps = policy.channel_caps
    assert (caps["sms"].max, caps["sms"].per) == (7, "week")
    assert (caps["push"].max, caps["push"].per) == (7, "week")
    assert (caps["email"].max, caps["email"].per) == (8, "month")
    assert (caps["phone"].max, caps["phone"].per) == (4, "month")
    # WeCom's one a day is the platform's limit, and the hours are the law: both unchanged.
    assert caps["wecom"] == DEFAULT_POLICY.channel_caps["wecom"]
    assert policy.quiet_hours == DEFAULT_POLICY.quiet_hours == (dt.time(8), dt.time(21))
    assert policy.service_hours == DEFAULT_POLICY.service_hours


def test_full_blast_sends_every_message_on_every_channel(tmp_path: Path) -> None:
    arm = load_arm("full_blast")
    _, library = _in_force(arm, tmp_path)
    replaced = {
        "maintenance_cadence_high",
        "maintenance_cadence_mid",
        "maintenance_cadence_low",
        "care_moments",
        "lost_lead_reactivation",
        "upgrade_replacement",
        "blast_promotions",
    }
    assert {n for n, e in library.items() if e.source.startswith("playbooks/")} == replaced
    for name in replaced:
        entry = library[name]
        by_template: dict[str, set[str]] = {}
        for step in _sends(entry):
            assert len(step.channels) == 1, f"{name}.{step.id}: one channel per send step"
            by_template.setdefault(step.template, set()).update(step.channels)
        assert by_template, name
        for template, channels in by_template.items():
            assert channels == MESSAGE_CHANNELS, f"{name}: {template} only on {channels}"
        # No playbook of the arm holds anyone out.
        assert entry.book.entry.holdout == 0, name


def test_full_blast_cadences_are_faster(tmp_path: Path) -> None:
    _, library = _in_force(load_arm("full_blast"), tmp_path)
    for name in ("maintenance_cadence_high", "maintenance_cadence_mid", "maintenance_cadence_low"):
        waits = [s for s in library[name].book.steps if isinstance(s, WaitStep)]
        assert waits, name
        for wait in waits:
            assert wait.duration is not None and wait.duration.unit == "d", name
            assert wait.duration.amount <= 4, f"{name}.{wait.id} waits {wait.duration}"
        # Every cadence message the built-in sends is still sent (on every channel).
        builtin_templates = {s.template for s in _sends_of(BUILTINS[name])}
        templates = {s.template for s in _sends(library[name])}
        assert len(templates) >= len(builtin_templates), name


def test_blast_promotions_reaches_every_owner_weekly(tmp_path: Path) -> None:
    _, library = _in_force(load_arm("full_blast"), tmp_path)
    book = library["blast_promotions"].book
    assert book.kind == "marketing"
    assert "blast_promotions" not in BUILTINS
    assert {getattr(t, "segment", None) for t in book.triggers} == {
        "tier_high",
        "tier_mid",
        "tier_low",
    }
    assert book.entry.re_entry
    assert "left_segment" not in book.exit_on
    (wait,) = [s for s in book.steps if isinstance(s, WaitStep)]
    assert wait.duration is not None and (wait.duration.amount, wait.duration.unit) == (7, "d")
    assert wait.next == book.steps[0].id  # it loops


# --------------------------------------------------------------------------------------------
# apply_arm
# --------------------------------------------------------------------------------------------


def _arm_file(tmp_path: Path, body: str, name: str = "mine.toml") -> Path:
    return _write(tmp_path / "arms" / name, f'label = "Mine"\ndescription = "A test arm."\n{body}')


def test_apply_arm_overlays_one_entry_and_keeps_the_others(tmp_path: Path) -> None:
    path = _arm_file(
        tmp_path,
        "[policy]\nmonthly_caps = { high = 12 }\n"
        '[policy.channel_caps]\nsms = { max = 3, per = "week" }\n',
    )
    base = Settings(
        data_dir=tmp_path / "base",
        database_url="postgresql+psycopg://u@h/db",
        policy=PolicySettings(monthly_caps={"mid": 5}, marketing_per_day=2),
    )
    out = apply_arm(base, load_arm(str(path)), tmp_path / "arm")
    assert out.policy.monthly_caps == {"high": 12, "mid": 5, "low": 3, "none": 3}
    assert out.policy.marketing_per_day == 2  # the run's own policy is the base
    assert out.policy.channel_caps["sms"].max == 3
    assert out.policy.channel_caps["wecom"] == DEFAULT_POLICY.channel_caps["wecom"]
    assert out.data_dir == tmp_path / "arm"
    assert out.database_url is None
    assert out.url == f"sqlite:///{(tmp_path / 'arm' / 'baoke.db').as_posix()}"
    assert str(out.zone) == "Asia/Shanghai"
    assert out.messages == base.messages
    # The run's settings are not changed.
    assert base.data_dir == tmp_path / "base"
    assert base.policy.monthly_caps["high"] == 10
    assert base.database_url is not None


def test_apply_arm_keeps_a_timezone_computed_before(tmp_path: Path) -> None:
    base = Settings(data_dir=tmp_path, timezone="Asia/Urumqi")
    assert str(base.zone) == "Asia/Urumqi"  # cached on the original
    out = apply_arm(base, load_arm("wecom_led"), tmp_path / "arm")
    assert str(out.zone) == "Asia/Urumqi"


def test_apply_arm_replaces_the_playbooks_there(tmp_path: Path) -> None:
    target = tmp_path / "arm"
    stale = _write(target / "playbooks" / "old.yaml", "name: old\n")
    keep = _write(target / "playbooks" / "notes.txt", "not a playbook")
    settings = apply_arm(Settings(data_dir=tmp_path), load_arm("sms_only"), target)
    assert not stale.exists()
    assert keep.exists()
    assert len(list((target / "playbooks").glob("*.yaml"))) == 12
    # The same directory reused for the defaults: nothing of the previous arm stays in force.
    settings = apply_arm(settings, load_arm("wecom_led"), target)
    assert list((target / "playbooks").glob("*.yaml")) == []
    assert all(e.source.startswith("builtin/") for e in load_library(settings).values())


# --------------------------------------------------------------------------------------------
# Loading: names and errors
# --------------------------------------------------------------------------------------------


def test_parse_arm_option_names(tmp_path: Path) -> None:
    assert parse_arm_option("sms_only").name == "sms_only"
    assert parse_arm_option("sms=sms_only").name == "sms"
    assert parse_arm_option("sms=sms_only").label == "SMS only"
    path = _arm_file(tmp_path, "")
    assert parse_arm_option(str(path)).name == "mine"
    arm = parse_arm_option(f"B-2={path}")
    assert (arm.name, arm.source, arm.playbooks) == ("B-2", path, None)


def test_playbooks_dir_is_relative_to_the_arm_file(tmp_path: Path) -> None:
    src = BUILTIN_ARMS / "sms_only" / "04_maintenance_cadence_low.yaml"
    _write(tmp_path / "arms" / "books" / "low.yaml", src.read_text(encoding="utf-8"))
    arm = load_arm(str(_arm_file(tmp_path, 'playbooks = "books"\n')))
    assert arm.playbooks == (tmp_path / "arms" / "books").resolve()
    _, library = _in_force(arm, tmp_path)
    assert library["maintenance_cadence_low"].source == "playbooks/low.yaml"


BROKEN_PLAYBOOK = """\
name: broken
label: 坏的
kind: care
triggers: [{segment: tier_low}]
steps:
  - id: hello
    send: {channel: sms, template: hello}
templates:
  hello:
    sms: "{{ greeting }}，您好"
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('label = "x"\ndescription = \n', "not valid TOML"),
        ('labels = "x"\n', "unknown key 'labels' (did you mean 'label'?)"),
        ("[policy]\nmonthly_caps = { high = -1 }\n", "policy.monthly_caps"),
        ('[policy]\nquiet_hours = ["22:00", "08:00"]\n', "policy.quiet_hours"),
        ("[policy]\nmonthly_cap = { high = 5 }\n", "unknown key 'policy.monthly_cap'"),
        ('[policy.channel_caps]\nsms = { max = 3, per = "week", maxx = 1 }\n', "maxx"),
        ("[policy.choice]\nprior = 3\n", "unknown key 'policy.choice.prior'"),
        ('policy = "strict"\n', "policy must be a table"),
        ('playbooks = "nowhere"\n', "does not exist"),
        ('playbooks = "empty"\n', "has no playbook"),
        ('playbooks = "broken"\n', "must start with the 【signature】"),
    ],
)
def test_a_bad_arm_is_one_input_error_naming_the_file(
    tmp_path: Path, body: str, expected: str
) -> None:
    (tmp_path / "arms" / "empty").mkdir(parents=True)
    _write(tmp_path / "arms" / "broken" / "broken.yaml", BROKEN_PLAYBOOK)
    if body.startswith("label"):
        path = _write(tmp_path / "arms" / "mine.toml", body)
    else:
        path = _arm_file(tmp_path, body)
    with pytest.raises(InputError) as caught:
        load_arm(str(path))
    message = caught.value.message
    assert str(path) in message
    assert expected in message
    assert "\n" not in message


def test_missing_label_or_description(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.toml", 'description = "no label"\n')
    with pytest.raises(InputError, match=r"a\.toml: missing 'label'"):
        load_arm(str(path))
    path = _write(tmp_path / "b.toml", 'label = "  "\ndescription = "empty label"\n')
    with pytest.raises(InputError, match=r"b\.toml: label must be non-empty"):
        load_arm(str(path))
    path = _write(tmp_path / "c.toml", 'label = "x"\n')
    with pytest.raises(InputError, match=r"c\.toml: missing 'description'"):
        load_arm(str(path))


def test_missing_file_or_unknown_builtin(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(InputError, match=r"nope\.toml: no such arm file") as caught:
        load_arm(str(missing))
    assert "sms_only" in caught.value.message  # the built-ins are listed
    with pytest.raises(InputError, match="did you mean 'sms_only'"):
        load_arm("sms_onyl")
    with pytest.raises(InputError, match="not a file"):
        load_arm(str(tmp_path))


def test_two_playbooks_of_one_name_in_an_arm(tmp_path: Path) -> None:
    text = (BUILTIN_ARMS / "sms_only" / "04_maintenance_cadence_low.yaml").read_text("utf-8")
    _write(tmp_path / "arms" / "books" / "a.yaml", text)
    _write(tmp_path / "arms" / "books" / "b.yaml", text)
    with pytest.raises(InputError, match=r"a\.yaml and b\.yaml are both named"):
        load_arm(str(_arm_file(tmp_path, 'playbooks = "books"\n')))


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("", "--arm needs NAME=CONFIG"),
        ("a b=sms_only", "the name 'a b' must be letters"),
        ("=sms_only", "the name '' must be letters"),
        ("sms=", "nothing after '='"),
        ("sms=no_such_arm", "no_such_arm: no such arm file"),
    ],
)
def test_bad_arm_option(option: str, expected: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_arm_option(option)
    assert expected in caught.value.message


def test_a_file_stem_that_cannot_be_a_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "my arm.toml", 'label = "x"\ndescription = "y"\n')
    with pytest.raises(InputError, match="NAME=CONFIG"):
        parse_arm_option(str(path))
    assert parse_arm_option(f"mine={path}").name == "mine"
