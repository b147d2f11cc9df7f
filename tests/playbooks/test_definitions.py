"""Playbook definitions: the built-ins validate, every error class points at the right place,
versions follow meaning rather than layout, and the festival table is sane."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from baoke.playbooks import (
    BranchStep,
    DateTrigger,
    Duration,
    EventTrigger,
    FallbackStep,
    FestivalTrigger,
    PlaybookError,
    SendStep,
    TaskStep,
    WaitStep,
    festival_date,
    load_builtin_playbooks,
    load_playbook_file,
    parse_playbook,
    validate_all,
)
from baoke.playbooks.festivals import LUNAR_YEARS
from baoke.profiles.schema import Kind
from baoke.segments import AllOf, Field

# A small valid playbook; tests replace one line to make one mistake. Line numbers matter.
BASE = textwrap.dedent(
    """\
    name: winback_test
    label: 测试挽回
    kind: retention
    triggers:
      - segment: at_risk
    steps:
      - id: wecom_offer
        send: {channel: wecom, template: offer}
      - id: silent
        fallback: {on: no_response, within: 24h, goto: call}
        next: end
      - id: call
        task: {role: service_manager, sla: 1d, title: 回访, script: call_script}
      - id: check
        branch: {outcome: not_connected, then: sms, else: end}
      - id: sms
        send: {channel: sms, template: offer}
    templates:
      offer:
        wecom: "{{ greeting }}，好久不见，{{ offer_detail }}等您来"
        sms: "【{{ signature }}】{{ greeting }}，{{ offer_name }}{{ booking_link }} 回复TD退订"
      call_script:
        script: "{{ greeting }}您好，想了解您最近未到店的原因"
    """
)


def replace(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def error(text: str) -> PlaybookError:
    with pytest.raises(PlaybookError) as info:
        parse_playbook(text, "pb.yaml")
    return info.value


def where(err: PlaybookError) -> tuple[int, int, str]:
    return err.line, err.column, err.pointer


# --------------------------------------------------------------------------------------------
# Happy path
# --------------------------------------------------------------------------------------------


def test_base_parses_into_typed_steps() -> None:
    pb = parse_playbook(BASE, "pb.yaml")
    assert pb.name == "winback_test" and pb.kind == "retention" and pb.enabled
    assert pb.pause_on == ("complaint_opened",)  # retention pauses on complaints by default
    assert pb.exit_on == ("unsubscribed",)
    assert pb.steps[0] == SendStep("wecom_offer", ("wecom",), "offer", "retention")
    assert pb.steps[1] == FallbackStep(
        "silent", "wecom_offer", ("no_response",), Duration(24, "h"), "call", "end"
    )
    assert pb.steps[2] == TaskStep(
        "call", "service_manager", Duration(1, "d"), "回访", "call_script"
    )
    branch = pb.steps[3]
    assert isinstance(branch, BranchStep)
    assert branch.outcome == ("not_connected",) and branch.of == "call"
    assert pb.template("offer").variant("sms") is not None
    assert pb.warnings == ()
    assert len(pb.version) == 12


def test_all_trigger_kinds_and_entry_rules() -> None:
    text = replace(
        "  - segment: at_risk\n",
        "  - segment: at_risk\n"
        "  - {event: complaint_opened, where: {severity: [severe, medium]}}\n"
        "  - {date: next_maintenance_due_date, offset: -15d}\n"
        "  - {date: birthday}\n"
        "  - {festival: spring_festival, offset: -1d}\n",
    )
    text += "entry: {re_entry: true, cooldown: 90d, holdout: 10%, dealers: [3, 7]}\n"
    text += "goal: {event: [visit, booking], within: 30d}\n"
    pb = parse_playbook(text)
    assert pb.triggers[1] == EventTrigger(
        "complaint_opened", "complaint_opened", (("severity", ("severe", "medium")),)
    )
    assert pb.triggers[2] == DateTrigger(
        "next_maintenance_due_date", "next_maintenance_due_date", Duration(-15, "d"), False
    )
    assert pb.triggers[3] == DateTrigger("birthday", "birthday", Duration(0, "d"), True)
    assert pb.triggers[4] == FestivalTrigger(
        "spring_festival", "spring_festival", Duration(-1, "d")
    )
    assert pb.entry.holdout == pytest.approx(0.1)
    assert pb.entry.dealers == (3, 7) and pb.entry.cooldown == Duration(90, "d")
    assert pb.goal is not None and pb.goal.events == ("visit", "booking")


def test_branch_condition_reuses_the_rule_language() -> None:
    text = replace(
        "branch: {outcome: not_connected, then: sms, else: end}",
        'branch: {if: {all: [{field: value_tier, =: high}, {field: churn_risk, ">=": 70}]}, '
        "then: sms, else: end}",
    )
    branch = parse_playbook(text).step("check")
    assert isinstance(branch, BranchStep)
    assert branch.condition == AllOf(
        (Field("value_tier", Kind.TEXT, "=", "high"), Field("churn_risk", Kind.INT, ">=", 70))
    )


def test_wait_window() -> None:
    text = replace(
        "  - id: call\n",
        '  - id: quiet\n    wait: {until: "09:00-21:00"}\n  - id: call\n',
    )
    text = replace("goto: call}", "goto: quiet}", text)
    assert parse_playbook(text).step("quiet") == WaitStep("quiet", None, (dt.time(9), dt.time(21)))
    err = error(replace('"09:00-21:00"', '"21:00-09:00"', text))
    assert "must start before it ends" in err.detail
    assert err.pointer == "steps[2].wait.until"


# --------------------------------------------------------------------------------------------
# Built-ins
# --------------------------------------------------------------------------------------------

SCENARIOS = {
    "new_owner_activation",
    "maintenance_cadence_high",
    "maintenance_cadence_mid",
    "maintenance_cadence_low",
    "churn_winback",
    "complaint_recovery",
    "service_calendar",
    "lost_lead_reactivation",
    "upgrade_replacement",
    "referral_loop",
    "care_moments",
    "loyalty_points",
}


def test_every_builtin_validates_without_warnings() -> None:
    playbooks = load_builtin_playbooks()
    assert {p.name for p in playbooks} == SCENARIOS
    for pb in playbooks:
        assert pb.warnings == (), pb.name
        assert pb.source.startswith("builtin/")


def test_builtin_churn_winback_shape() -> None:
    pb = next(p for p in load_builtin_playbooks() if p.name == "churn_winback")
    kinds = [type(s).__name__ for s in pb.steps]
    assert kinds == ["SendStep", "FallbackStep", "TaskStep", "FallbackStep", "SendStep"]
    call = pb.step("manager_call")
    assert isinstance(call, TaskStep) and call.role == "service_manager"
    assert pb.goal is not None and "visit" in pb.goal.events
    assert 0 < pb.entry.holdout <= 0.5


def test_builtin_complaint_slas() -> None:
    pb = next(p for p in load_builtin_playbooks() if p.name == "complaint_recovery")
    slas = {s.role: s.sla for s in pb.steps if isinstance(s, TaskStep) and "投诉：" in s.title}
    assert slas["store_manager"] == Duration(1, "h")
    assert slas["customer_manager"] == Duration(4, "h")
    assert slas["advisor"] == Duration(24, "h")


def test_validate_all_reports_every_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(BASE, encoding="utf-8")
    twin = tmp_path / "twin.yaml"
    twin.write_text(BASE, encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(replace("kind: retention", "kind: retension"), encoding="utf-8")
    errors = validate_all([good, twin, bad])
    assert [(Path(e.path).name, e.pointer) for e in errors] == [
        ("twin.yaml", "name"),
        ("bad.yaml", "kind"),
    ]
    assert "did you mean 'retention'" in errors[1].detail
    assert validate_all([good]) == []
    assert load_playbook_file(good).name == "winback_test"


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match="cannot read playbook file"):
        load_playbook_file(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------------------------
# Errors: one per class, with exact line, column and pointer
# --------------------------------------------------------------------------------------------


def test_error_string_format() -> None:
    err = error(replace("kind: retention", "kind: loud"))
    assert str(err).startswith("pb.yaml:3:7: kind: unknown priority class 'loud'")


# Each case: the edit, then where the error must point: the line and the token at the column.
@pytest.mark.parametrize(
    ("old", "new", "line", "at", "pointer", "text"),
    [
        # vocabulary
        ("kind: retention", "kind: loud", 3, "loud", "kind", "unknown priority class 'loud'"),
        ("name: winback_test", "name: Winback", 1, "Winback", "name", "invalid name 'Winback'"),
        (
            "label: 测试挽回\n",
            "label: 测试挽回\ncolor: red\n",
            3,
            "color",
            "color",
            "unknown key 'color'",
        ),
        # triggers
        (
            "segment: at_risk",
            "segment: at_rsk",
            5,
            "at_rsk",
            "triggers[0].segment",
            "unknown segment 'at_rsk' (did you mean 'at_risk'?)",
        ),
        (
            "segment: at_risk",
            "event: complaint_open",
            5,
            "complaint_open",
            "triggers[0].event",
            "unknown event 'complaint_open'",
        ),
        (
            "segment: at_risk",
            "{event: complaint_opened, where: {level: severe}}",
            5,
            "level",
            "triggers[0].where.level",
            "event 'complaint_opened' has no 'level'",
        ),
        (
            "segment: at_risk",
            "{event: complaint_opened, where: {severity: severest}}",
            5,
            "severest",
            "triggers[0].where.severity",
            "unknown severity 'severest'",
        ),
        (
            "segment: at_risk",
            "{date: delivery_date, offset: 3d}",
            5,
            "3d",
            "triggers[0].offset",
            "offset '3d' needs a sign",
        ),
        (
            "segment: at_risk",
            "{date: delivery_day, offset: +3d}",
            5,
            "delivery_day",
            "triggers[0].date",
            "unknown date field 'delivery_day'",
        ),
        (
            "segment: at_risk",
            "{festival: lunar_new_year}",
            5,
            "lunar_new_year",
            "triggers[0].festival",
            "unknown festival 'lunar_new_year'",
        ),
        (
            "segment: at_risk",
            "{segment: at_risk, festival: mid_autumn}",
            5,
            "{segment",
            "triggers[0]",
            "exactly one of",
        ),
        # durations
        (
            "within: 24h",
            "within: 24hours",
            10,
            "24hours",
            "steps[1].fallback.within",
            "malformed duration '24hours'",
        ),
        ("sla: 1d", "sla: -1d", 13, "-1d", "steps[2].task.sla", "a duration has no sign"),
        # step structure and references
        (
            "  - id: call\n",
            "  - id: wecom_offer\n",
            12,
            "wecom_offer",
            "steps[2].id",
            "duplicate step id 'wecom_offer' (first at line 7)",
        ),
        (
            "goto: call}",
            "goto: cal}",
            10,
            "cal}",
            "steps[1].fallback.goto",
            "unknown step 'cal' (did you mean 'call'?)",
        ),
        (
            "then: sms, else: end}",
            "then: sms, else: fin}",
            15,
            "fin",
            "steps[3].branch.else",
            "unknown step 'fin'",
        ),
        (
            "send: {channel: sms, template: offer}",
            "send: {channel: fax, template: offer}",
            17,
            "fax",
            "steps[4].send.channel",
            "unknown channel 'fax'",
        ),
        (
            "role: service_manager",
            "role: janitor",
            13,
            "janitor",
            "steps[2].task.role",
            "unknown role 'janitor'",
        ),
        (
            "branch: {outcome: not_connected,",
            "branch: {outcome: delivered,",
            15,
            "delivered",
            "steps[3].branch.outcome",
            "step 'call' cannot have outcome 'delivered'",
        ),
        (
            "fallback: {on: no_response,",
            "fallback: {on: connected,",
            10,
            "connected",
            "steps[1].fallback.on",
            "step 'wecom_offer' cannot have outcome 'connected'",
        ),
        (
            "branch: {outcome: not_connected,",
            "branch: {if: {field: tier, =: high},",
            15,
            "tier",
            "steps[3].branch.if.field",
            "unknown profile field 'tier'",
        ),
        (
            "    send: {channel: sms, template: offer}\n",
            "    send: {channel: sms, template: offer}\n    wait: 1d\n",
            16,
            "id: sms",
            "steps[4]",
            "exactly one of",
        ),
        # templates
        (
            "template: offer}\n  - id: silent",
            "template: ofer}\n  - id: silent",
            8,
            "ofer",
            "steps[0].send.template",
            "unknown template 'ofer' (did you mean 'offer'?)",
        ),
        (
            '    wecom: "{{ greeting }}，好久不见',
            '    push: "{{ greeting }}，好久不见',
            8,
            "offer",
            "steps[0].send.template",
            "template 'offer' has no wecom variant",
        ),
        (
            "{{ offer_detail }}",
            "{{ offer_details }}",
            20,
            '"{{',
            "templates.offer.wecom",
            "unknown variable 'offer_details' (did you mean 'offer_detail'?)",
        ),
        (" 回复TD退订", "", 21, '"', "templates.offer.sms", "must contain '回复TD退订'"),
        (
            "【{{ signature }}】",
            "",
            21,
            '"',
            "templates.offer.sms",
            "must start with the 【signature】",
        ),
        ("等您来", "第一名等您来", 20, '"', "templates.offer.wecom", "sensitive word(s) '第一'"),
        (
            "{{ greeting }}，好久不见",
            "{{ greeting }，好久不见",
            20,
            '"',
            "templates.offer.wecom",
            "syntax error",
        ),
    ],
)
def test_error_positions(old: str, new: str, line: int, at: str, pointer: str, text: str) -> None:
    source = replace(old, new)
    found = [e for e in error(source).errors if text in e.detail]
    assert found, [e.message for e in error(source).errors]
    err = found[0]
    column = source.splitlines()[line - 1].index(at) + 1
    assert where(err) == (line, column, pointer), err.message


def test_yaml_syntax_error_position() -> None:
    err = error(replace("kind: retention", "kind: [retention"))
    assert err.line >= 3 and "YAML syntax error" in err.detail


def test_all_errors_are_collected_in_file_order() -> None:
    text = replace("kind: retention", "kind: loud")
    text = replace("goto: call}", "goto: cal}", text)
    text = replace("role: service_manager", "role: janitor", text)
    err = error(text)
    assert [e.line for e in err.errors] == [3, 10, 13]
    assert err.errors[0] is err


def test_unreachable_step_is_an_error() -> None:
    err = error(replace("goto: call}", "goto: end}"))
    assert "step 'call' is unreachable" in err.detail
    # check and sms after it are unreachable too, but the stretch is reported once.
    assert len(err.errors) == 1
    assert where(err) == (12, 9, "steps[2].id")


def test_loop_without_wait_is_an_error() -> None:
    err = error(replace("then: sms, else: end}", "then: sms, else: call}"))
    assert "loop without a wait: call -> check -> call" in err.detail
    assert where(err) == (12, 9, "steps[2].id")


def test_loop_with_wait_is_fine() -> None:
    text = replace("then: sms, else: end}", "then: sms, else: later}")
    text = replace(
        "    send: {channel: sms, template: offer}\n",
        "    send: {channel: sms, template: offer}\n    next: end\n"
        "  - id: later\n    wait: 7d\n    next: call\n",
        text,
    )
    pb = parse_playbook(text)
    assert pb.step("later") == WaitStep("later", Duration(7, "d"), None, "call")


def test_holdout_bounds() -> None:
    err = error(BASE + "entry: {holdout: 0.6}\n")
    assert where(err) == (24, 18, "entry.holdout") and "0 to 0.5" in err.detail


def test_extra_segments() -> None:
    text = replace("segment: at_risk", "segment: vip_club")
    assert "unknown segment" in error(text).detail
    assert parse_playbook(text, extra_segments=["vip_club"]).triggers[0].id == "vip_club"


def test_duplicate_trigger_ids_and_trigger_branch() -> None:
    text = replace("  - segment: at_risk\n", "  - segment: at_risk\n  - segment: at_risk\n")
    err = error(text)
    assert "trigger id 'at_risk' is used twice" in err.detail and err.pointer == "triggers[1]"
    ok = replace(
        "branch: {outcome: not_connected, then: sms, else: end}",
        "branch: {trigger: at_risk, then: sms, else: end}",
    )
    assert parse_playbook(ok).step("check") == BranchStep(
        "check", "sms", "end", trigger=("at_risk",)
    )
    bad = replace("branch: {outcome: not_connected,", "branch: {trigger: birthday,")
    assert "unknown trigger id 'birthday'" in error(bad).detail


def test_sms_length_is_a_warning() -> None:
    long = "很" * 60
    text = replace(" 回复TD退订", f"{long} 回复TD退订")
    pb = parse_playbook(text)
    assert len(pb.warnings) == 1
    assert "more than one segment (70)" in pb.warnings[0].message
    assert pb.warnings[0].pointer == "templates.offer.sms"


# --------------------------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------------------------


def test_version_ignores_comments_layout_and_enabled() -> None:
    v = parse_playbook(BASE).version
    relaid = "# a comment\n" + BASE.replace(
        "  - segment: at_risk\n", "  -   segment: at_risk   # who\n\n"
    )
    assert parse_playbook(relaid).version == v
    assert parse_playbook(BASE + "enabled: false\n").version == v
    assert parse_playbook(BASE + "enabled: false\n").enabled is False


def test_version_changes_with_a_step() -> None:
    v = parse_playbook(BASE).version
    assert parse_playbook(replace("within: 24h", "within: 48h")).version != v
    assert parse_playbook(replace("好久不见", "好久没见")).version != v


# --------------------------------------------------------------------------------------------
# Festivals
# --------------------------------------------------------------------------------------------


def test_festival_dates() -> None:
    assert festival_date("spring_festival", 2027) == dt.date(2027, 2, 6)
    assert festival_date("spring_festival", 2026) == dt.date(2026, 2, 17)
    assert festival_date("mid_autumn", 2024) == dt.date(2024, 9, 17)
    assert festival_date("national_day", 2031) == dt.date(2031, 10, 1)
    with pytest.raises(ValueError, match="2024-2030"):
        festival_date("spring_festival", 2031)


def test_lunar_table_is_consistent() -> None:
    # Lunar months are 29-30 days: Dragon Boat (5/5) is 4 or 5 months + 4 days after the
    # Spring Festival, Mid-Autumn (8/15) 3 or 4 months + 10 days after Dragon Boat.
    for year in LUNAR_YEARS:
        spring = festival_date("spring_festival", year)
        dragon = festival_date("dragon_boat", year)
        autumn = festival_date("mid_autumn", year)
        assert dt.date(year, 1, 21) <= spring <= dt.date(year, 2, 20)
        assert (dragon - spring).days in (*range(120, 125), *range(149, 155))
        assert (autumn - dragon).days in (*range(97, 101), *range(126, 131))


def test_a_step_error_does_not_cascade() -> None:
    # The task fails, so the branch's outcome source is unknown: no guess, no second error.
    err = error(replace("role: service_manager", "role: janitor"))
    assert [e.pointer for e in err.errors] == ["steps[2].task.role"]


def test_service_playbooks_do_not_pause_and_exits_can_be_empty() -> None:
    text = replace("kind: retention", "kind: service") + "exit_on: []\n"
    text = replace("{{ booking_link }} 回复TD退订", "{{ booking_link }}", text)
    pb = parse_playbook(text)
    assert pb.pause_on == () and pb.exit_on == ()


def test_email_variant_needs_subject_and_body() -> None:
    text = replace(
        "send: {channel: wecom, template: offer}", "send: {channel: email, template: offer}"
    )
    text = replace(
        '    wecom: "{{ greeting }}，好久不见，{{ offer_detail }}等您来"',
        '    email: {subject: "{{ greeting }}的专属礼遇", body: "{{ offer_detail }}等您来"}',
        text,
    )
    pb = parse_playbook(text)
    variant = pb.template("offer").variant("email")
    assert variant is not None and variant.subject == "{{ greeting }}的专属礼遇"
    bad = replace('{subject: "{{ greeting }}的专属礼遇", ', "{", text)
    assert "missing 'subject'" in error(bad).detail
    worst = replace("的专属礼遇", "的顶级礼遇", text)
    assert "'顶级'" in error(worst).detail


def test_missing_keys_and_empty_file() -> None:
    text = replace("name: winback_test\n", "")
    text = replace("  - segment: at_risk\n", "  - segment: at_rsk\n", text)
    err = error(text)
    assert [(e.line, e.pointer) for e in err.errors] == [(1, ""), (4, "triggers[0].segment")]
    assert err.errors[0].detail == "missing 'name'"
    assert "empty playbook file" in error("# nothing\n").detail
    assert "expected a mapping" in error("- a\n- b\n").detail
