"""The dispatcher through the real store and real providers on loopback: every due touch is
sent once, checked again at send time, retried with backoff, failed over, reconciled when in
doubt, and shared safely between dispatchers."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from tests.channels.conftest import NINE, D, Outbox, sandbox_lines
from tests.journeys.world import local

from baoke.channels.dispatcher import CircuitBreaker, Dispatcher
from baoke.channels.loopback.aliyun import AliyunSmsServer
from baoke.channels.loopback.webhook import WebhookServer
from baoke.channels.loopback.wecom import CORP_ID as WECOM_CORP
from baoke.channels.loopback.wecom import SECRET as WECOM_SECRET
from baoke.channels.loopback.wecom import WecomLoopback
from baoke.channels.registry import Providers
from baoke.store import models as m

SECRETS = {
    "BAOKE_ALIYUN_ACCESS_KEY_ID": "LTAI5tLoopbackKeyId",
    "BAOKE_ALIYUN_ACCESS_KEY_SECRET": "loopback-aliyun-secret",
    "BAOKE_WEBHOOK_SECRET": "hook-secret",
    "BAOKE_JPUSH_APP_KEY": "test-app-key",
    "BAOKE_JPUSH_MASTER_SECRET": "test-secret",
}


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def aliyun() -> Iterator[AliyunSmsServer]:
    with AliyunSmsServer() as server:
        yield server  # type: ignore[misc]


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    with WebhookServer("hook-secret") as server:
        yield server  # type: ignore[misc]


def _aliyun(url: str, **options: object) -> dict[str, object]:
    return {
        "endpoint": url,
        "sign_name": "保客汽车服务",
        "templates": {
            "service_calendar/maintenance_booking": "SMS_100001",
            "service_calendar/insurance_renewal": "SMS_100002",
        },
        "timeout": 0.5,
        **options,
    }


def test_due_touches_go_once_through_the_sandbox_with_links_and_history(outbox: Outbox) -> None:
    cid = outbox.owner()
    sms = outbox.schedule(cid, "sms")
    wecom = outbox.schedule(cid, "wecom", template="usage_notes")
    email = outbox.schedule(cid, "email", template="usage_notes")
    later = outbox.schedule(cid, "sms", template="insurance_renewal", due=local(D, 10))

    done = outbox.dispatch()

    assert (done.claimed, done.sent) == (3, 3)
    for touch in (sms, wecom, email):
        row = outbox.row(touch)
        assert (row["status"], row["touch_status"], row["provider"]) == ("sent", "sent", "sandbox")
        assert row["provider_message_id"] == f"sandbox-{touch}"
        assert outbox.history(touch) == ["sent"]
    assert outbox.row(later)["status"] == "pending"  # due at 10:00, the clock says 09:00
    settings = outbox.world.settings
    (line,) = sandbox_lines(settings, "sms")
    # The booking link became this touch's short link; the mobile is masked in the file.
    (code,) = outbox.world.frame(
        "SELECT code FROM short_links WHERE touch_id = :t AND purpose = 'link'", t=sms
    )["code"]
    assert settings.channels.short_link_base + code in line["text"]
    assert settings.messages.booking_link not in line["text"]
    assert "****" in line["address"]
    (mail,) = sandbox_lines(settings, "email")
    assert mail["subject"] and "一个月用车须知" in mail["subject"]
    (wx,) = sandbox_lines(settings, "wecom")
    assert (wx["address"], wx["sender"]) == (f"wm{cid}", "wx_S1")
    unsubscribe = outbox.world.frame(
        "SELECT count(*) AS n FROM short_links WHERE touch_id = :t AND purpose = 'unsubscribe'",
        t=email,
    )
    assert unsubscribe["n"][0] == 1

    # Nothing is sent twice: a second run finds nothing due, the later one goes at 10:00.
    assert outbox.dispatch().claimed == 0
    assert outbox.dispatch(at=local(D, 10)).sent == 1
    assert len(sandbox_lines(settings, "sms")) == 2


def test_consent_and_reachability_are_checked_again_at_send_time(outbox: Outbox) -> None:
    td, deleted, fine = outbox.owner(), outbox.owner(), outbox.owner()
    marketing = {"priority": "marketing", "playbook": "service_calendar"}
    t_td = outbox.schedule(td, "sms", **marketing)
    t_deleted = outbox.schedule(deleted, "wecom", template="usage_notes", **marketing)
    t_fine = outbox.schedule(fine, "sms", **marketing)
    # After the plan: a TD reply withdrew SMS consent, a friend deleted the advisor.
    with outbox.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE consents SET withdrawn_at = :at, source = 'reply_keyword' "
                "WHERE customer_id = :c AND channel = 'sms'"
            ),
            {"at": local(D, 7), "c": td},
        )
        conn.execute(
            text(
                "UPDATE wecom_relations SET deleted_at = :at, deleted_by = 'customer' "
                "WHERE customer_id = :c"
            ),
            {"at": local(D, 7), "c": deleted},
        )

    done = outbox.dispatch()

    assert (done.sent, done.suppressed) == (1, 2)
    assert outbox.row(t_fine)["status"] == "sent"
    row = outbox.row(t_td)
    assert (row["status"], row["touch_status"]) == ("suppressed", "suppressed")
    assert row["last_error"] == "at send time: unsubscribed from sms on 2026-11-02"
    row = outbox.row(t_deleted)
    assert row["status"] == "suppressed"
    assert row["last_error"].startswith("at send time: not a WeCom friend (deleted on 2026-11-02")
    assert len(sandbox_lines(outbox.world.settings, "sms")) == 1


def test_a_service_sms_needs_no_marketing_consent_a_marketing_one_does(outbox: Outbox) -> None:
    cid = outbox.owner()
    with outbox.engine.begin() as conn:
        conn.execute(text("DELETE FROM consents WHERE customer_id = :c"), {"c": cid})
    service = outbox.schedule(cid, "sms", priority="service")
    marketing = outbox.schedule(cid, "sms", priority="marketing")
    outbox.dispatch()
    assert outbox.row(service)["status"] == "sent"
    assert outbox.row(marketing)["last_error"] == "at send time: no marketing consent on sms"


def test_after_hours_a_touch_waits_for_the_opening_and_a_stale_one_expires(outbox: Outbox) -> None:
    cid = outbox.owner()
    fresh = outbox.schedule(cid, "sms", priority="marketing")
    stale = outbox.schedule(
        cid, "sms", priority="marketing", proposed=local(D - dt.timedelta(days=8), 9)
    )
    done = outbox.dispatch(at=local(D, 22))  # the dispatcher was down all day

    assert (done.waiting, done.expired, done.sent) == (1, 1, 0)
    row = outbox.row(fresh)
    assert row["status"] == "pending" and row["touch_status"] == "scheduled"
    assert row["due_at"] == local(D + dt.timedelta(days=1), 8)
    assert row["last_error"] == "outside sending hours 08:00-21:00: waits"
    assert outbox.row(stale)["status"] == "expired"
    assert outbox.row(stale)["touch_status"] == "expired"
    # At the next opening it goes.
    assert outbox.dispatch(at=local(D + dt.timedelta(days=1), 8, 5)).sent == 1


def test_transient_failures_back_off_then_give_up(outbox: Outbox, hook: WebhookServer) -> None:
    settings = outbox.settings(
        channels={"sms": ["webhook"], "providers": {"webhook": {"url": hook.url, "timeout": 2}}},
        dispatch={"max_attempts": 2, "backoff_seconds": 60, "circuit_failures": 100},
    )
    touch = outbox.schedule(outbox.owner(), "sms")
    hook.mode = "error"

    first = outbox.dispatch(settings)
    row = outbox.row(touch)
    assert (first.retried, row["status"], row["attempts"]) == (1, "pending", 1)
    assert NINE + dt.timedelta(seconds=30) <= row["due_at"] <= NINE + dt.timedelta(seconds=60)
    assert row["provider"] is None and "webhook" in row["last_error"]

    second = outbox.dispatch(settings, at=NINE + dt.timedelta(minutes=2))
    row = outbox.row(touch)
    assert (second.failed, row["status"], row["touch_status"]) == (1, "failed", "failed")
    assert row["last_error"].startswith("gave up after 2 attempts: webhook:")
    assert hook.accepted == {}


def test_an_auth_failure_opens_the_circuit_and_fails_over(
    outbox: Outbox, aliyun: AliyunSmsServer, hook: WebhookServer
) -> None:
    settings = outbox.settings(
        channels={
            "sms": ["aliyun", "webhook"],
            "providers": {"aliyun": _aliyun(aliyun.url), "webhook": {"url": hook.url}},
        },
    )
    touches = [outbox.schedule(outbox.owner(), "sms") for _ in range(3)]
    aliyun.mode = "auth"

    done = outbox.dispatch(settings)

    assert (done.sent, done.failovers) == (3, 1)
    assert done.by_provider == {"webhook": 3}
    assert {outbox.row(t)["provider"] for t in touches} == {"webhook"}
    assert sum(hook.accepted.values()) == 3 and aliyun.accepted == {}


def test_when_every_circuit_is_open_nothing_is_tried_and_no_attempt_counts(
    outbox: Outbox, aliyun: AliyunSmsServer
) -> None:
    settings = outbox.settings(
        channels={"sms": ["aliyun"], "providers": {"aliyun": _aliyun(aliyun.url)}},
        dispatch={"circuit_failures": 1, "circuit_cooldown_seconds": 600, "concurrency": 1},
    )
    first, second = (
        outbox.schedule(outbox.owner(), "sms", template=t)
        for t in ("maintenance_booking", "insurance_renewal")
    )
    aliyun.mode = "auth"
    dispatcher = Dispatcher(settings, outbox.engine, clock=lambda: NINE)
    try:
        dispatcher.step()  # both groups: the first request opens the circuit
    finally:
        dispatcher.close()
    rows = [outbox.row(first), outbox.row(second)]
    assert aliyun.requests == 1
    assert {r["status"] for r in rows} == {"pending"}
    assert sorted(r["attempts"] for r in rows) == [0, 1]  # the untried one gets its attempt back
    assert any("circuit open" in r["last_error"] for r in rows)


def test_a_request_in_doubt_is_reconciled_and_never_sent_twice(
    outbox: Outbox, aliyun: AliyunSmsServer
) -> None:
    settings = outbox.settings(
        channels={"sms": ["aliyun"], "providers": {"aliyun": _aliyun(aliyun.url, timeout=0.3)}},
        dispatch={"lease_seconds": 5},
    )
    touches = [outbox.schedule(outbox.owner(), "sms") for _ in range(2)]
    aliyun.mode, aliyun.hang_seconds = "timeout", 1.0  # accepted, but the answer comes late

    first = outbox.dispatch(settings)
    assert (first.in_doubt, first.sent) == (2, 0)
    assert {outbox.row(t)["status"] for t in touches} == {"in_doubt"}
    assert sum(aliyun.accepted.values()) == 2

    aliyun.mode = "ok"
    second = outbox.dispatch(settings, at=NINE + dt.timedelta(minutes=1))
    assert second.recovered_sent == 2 and second.requests == 0
    for touch in touches:
        row = outbox.row(touch)
        assert (row["status"], row["touch_status"]) == ("sent", "sent")
        assert row["provider_message_id"]  # the BizId the provider kept
    assert sorted(aliyun.accepted.values()) == [1, 1]  # asked, not sent again


def test_a_claim_that_died_before_sending_is_sent_after_its_lease(
    outbox: Outbox, aliyun: AliyunSmsServer
) -> None:
    settings = outbox.settings(
        channels={"sms": ["aliyun"], "providers": {"aliyun": _aliyun(aliyun.url)}},
    )
    touch = outbox.schedule(outbox.owner(), "sms")
    # A dispatcher claimed the row, wrote its route, and died before the request went out.
    with outbox.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE outbox SET status = 'sending', attempts = 1, provider = 'aliyun', "
                "send_ref = 'dead-0-1', claimed_by = 'gone', lease_until = :until"
            ),
            {"until": NINE - dt.timedelta(minutes=1)},
        )
    done = outbox.dispatch(settings)
    assert done.recovered_queued == 1 and done.sent == 1
    assert outbox.row(touch)["status"] == "sent"
    assert sorted(aliyun.accepted.values()) == [1]


def test_a_provider_that_cannot_tell_leaves_the_doubt_to_an_operator(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAOKE_WECOM_SECRET", WECOM_SECRET)
    cid = outbox.owner()
    with WecomLoopback() as wecom:
        wecom.add_contact(f"wm{cid}", "wx_S1")
        settings = outbox.settings(
            channels={
                "wecom": ["wecom"],
                "providers": {
                    "wecom": {"corp_id": WECOM_CORP, "endpoint": wecom.url, "timeout": 0.3}
                },
            },
            dispatch={"lease_seconds": 5},
        )
        touch = outbox.schedule(cid, "wecom", template="usage_notes")
        wecom.mode, wecom.hang_seconds = "timeout", 1.0
        assert outbox.dispatch(settings).in_doubt == 1
        wecom.mode = "ok"
        done = outbox.dispatch(settings, at=NINE + dt.timedelta(minutes=1))
    row = outbox.row(touch)
    assert (done.unknown, row["status"], row["touch_status"]) == (1, "unknown", "scheduled")
    assert "cannot confirm" in row["last_error"]


def test_two_dispatchers_share_the_outbox_and_send_each_touch_once(
    outbox: Outbox, hook: WebhookServer
) -> None:
    settings = outbox.settings(
        channels={"sms": ["webhook"], "providers": {"webhook": {"url": hook.url, "max_batch": 7}}},
        dispatch={"claim_size": 20, "concurrency": 2},
    )
    people = [outbox.owner() for _ in range(12)]
    touches = [outbox.schedule(cid, "sms") for cid in people for _ in range(5)]
    results = []

    def work() -> None:
        dispatcher = Dispatcher(
            settings,
            outbox.engine,
            providers=Providers(settings, outbox.engine),
            clock=lambda: NINE,
        )
        try:
            results.append(dispatcher.run())
        finally:
            dispatcher.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.sent for r in results) == len(touches)
    assert len(hook.accepted) == len(touches) and set(hook.accepted.values()) == {1}
    assert hook.duplicates == []
    statuses = outbox.world.frame("SELECT DISTINCT status FROM outbox")["status"].to_list()
    assert statuses == ["sent"]


def test_the_circuit_opens_after_failures_in_a_row_and_probes_after_cooldown() -> None:
    circuit = CircuitBreaker(threshold=2, cooldown=0.0)
    circuit.failure()
    assert circuit.allow() and not circuit.is_open
    circuit.success()
    circuit.failure()
    assert circuit.allow()  # the count started again after the success
    circuit.failure()
    assert circuit.allow()  # cooldown 0: a probe goes at once
    slow = CircuitBreaker(threshold=3, cooldown=3600)
    slow.failure(at_once=True)
    assert slow.is_open and not slow.allow()


def test_a_complaint_opened_after_the_plan_stops_marketing_not_service(outbox: Outbox) -> None:
    cid = outbox.owner()
    marketing = outbox.schedule(cid, "sms", priority="marketing")
    service = outbox.schedule(cid, "sms", priority="service", template="insurance_renewal")
    outbox.world.insert(
        m.Complaint,
        complaint_no="C1",
        customer_id=cid,
        dealer_id=1,
        opened_at=local(D, 7),
        severity="medium",
        status="open",
    )
    outbox.dispatch()
    row = outbox.row(marketing)
    assert (row["status"], row["last_error"]) == (
        "suppressed",
        "at send time: complaint open since 2026-11-02",
    )
    assert outbox.row(service)["status"] == "sent"
