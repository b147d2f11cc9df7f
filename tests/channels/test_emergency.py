"""The 1-3-5 emergency stop: a failure spike, a wave of unsubscribes or a duplicate pauses its
batch by itself while dispatching, with an alert; an operator pauses and resumes by hand;
every pause and resume is in the audit log."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from tests.channels.conftest import NINE, D, Outbox

from baoke.channels import emergency
from baoke.channels.loopback.base import LoopbackServer, Request, Response
from baoke.channels.loopback.webhook import WebhookServer
from baoke.channels.webhook import verify

BATCH = f"{D}/service_calendar"


class AlertReceiver(LoopbackServer):
    """Records the alert webhook's POSTs."""

    def __init__(self) -> None:
        super().__init__()
        self.alerts: list[tuple[dict[str, str], bytes]] = []

    def answer(self, request: Request) -> Response:
        with self.lock:
            self.alerts.append((request.headers, request.body))
        return Response(204)


@pytest.fixture
def alerts(monkeypatch: pytest.MonkeyPatch) -> Iterator[AlertReceiver]:
    monkeypatch.setenv("BAOKE_ALERT_SECRET", "alert-secret")
    with AlertReceiver() as server:
        yield server  # type: ignore[misc]


def _pauses(outbox: Outbox) -> list[dict[str, Any]]:
    with outbox.engine.connect() as conn:
        return emergency.list_pauses(conn)


def _audit(outbox: Outbox) -> list[dict[str, Any]]:
    frame = outbox.world.frame(
        "SELECT actor, action, entity_id FROM audit_log WHERE entity = 'dispatch' ORDER BY id"
    )
    return frame.to_dicts()


def test_a_failure_spike_pauses_its_batch_and_alerts(
    outbox: Outbox, alerts: AlertReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAOKE_WEBHOOK_SECRET", "hook-secret")
    with WebhookServer("hook-secret") as gateway:
        settings = outbox.settings(
            channels={"sms": ["webhook"], "providers": {"webhook": {"url": gateway.url}}},
            dispatch={
                "claim_size": 10,
                "max_attempts": 1,
                "monitor_seconds": 0,  # judge after every claim
                "emergency": {"min_attempts": 20, "failure_rate": 0.2, "alert_webhook": alerts.url},
            },
        )
        people = [outbox.owner() for _ in range(30)]
        for cid in people:
            outbox.schedule(cid, "sms")
            outbox.schedule(cid, "sms", template="insurance_renewal")
        other = outbox.schedule(people[0], "sms", playbook="care_moments", template="birthday")
        gateway.mode = "partial"  # the gateway refuses every third message

        done = outbox.dispatch(settings)

    assert done.paused == [BATCH]
    counts = dict(
        outbox.world.frame("SELECT status, count(*) AS n FROM outbox GROUP BY status").iter_rows()
    )
    # Stopped after the claims that showed the spike: the rest of the batch waits.
    assert counts["pending"] >= 30 and counts["failed"] >= 4
    assert outbox.row(other)["status"] in ("sent", "failed")  # another batch is not paused
    (pause,) = _pauses(outbox)
    assert (pause["scope"], pause["target"], pause["paused_by"]) == ("batch", BATCH, "monitor")
    assert pause["reason"].startswith("failure rate ")
    assert [(a["actor"], a["action"]) for a in _audit(outbox)] == [("monitor", "dispatch_pause")]
    (headers, body) = alerts.alerts[0]
    assert json.loads(body)["target"] == BATCH
    signature = headers["x-baoke-signature"]
    now = dt.datetime.fromtimestamp(int(headers["x-baoke-timestamp"]), dt.UTC)
    assert verify(b"alert-secret", headers["x-baoke-timestamp"], body, signature, now=now)

    # A paused batch stays paused however often the dispatcher runs.
    assert outbox.dispatch(settings, at=NINE + dt.timedelta(minutes=1)).claimed == 0
    lifted = emergency.resume(
        outbox.engine, settings, scope="batch", target=BATCH, actor="ops@dealer"
    )
    assert lifted == 1
    assert [a["action"] for a in _audit(outbox)] == ["dispatch_pause", "dispatch_resume"]


def test_unsubscribes_after_a_batch_pause_it(outbox: Outbox) -> None:
    settings = outbox.settings(
        dispatch={"emergency": {"min_sent": 10, "unsubscribe_rate": 0.1}},
    )
    people = [outbox.owner() for _ in range(20)]
    for cid in people:
        outbox.schedule(cid, "sms")
    assert outbox.dispatch(settings).sent == 20
    assert emergency.check(outbox.engine, settings, NINE + dt.timedelta(minutes=1)) == []
    with outbox.engine.begin() as conn:  # two TD replies after the message
        conn.execute(
            text(
                "UPDATE consents SET withdrawn_at = :at WHERE channel = 'sms' "
                "AND customer_id IN (:a, :b)"
            ),
            {"at": NINE + dt.timedelta(minutes=2), "a": people[0], "b": people[1]},
        )
    later = NINE + dt.timedelta(minutes=3)
    assert emergency.check(outbox.engine, settings, later) == [BATCH]
    (pause,) = _pauses(outbox)
    assert pause["reason"].startswith("2 of 20 recipients unsubscribed (10.0%")
    # Judged again after a resume, it is not paused for what happened before it.
    emergency.resume(outbox.engine, settings, scope="batch", target=BATCH, actor="ops")
    assert emergency.check(outbox.engine, settings, later + dt.timedelta(minutes=1)) == []


def test_the_same_message_twice_to_one_customer_pauses_the_batch(outbox: Outbox) -> None:
    cid = outbox.owner()
    outbox.schedule(cid, "sms")
    outbox.schedule(cid, "sms")  # a duplicate a playbook bug might make
    outbox.dispatch(outbox.settings(dispatch={"monitor_seconds": 0}))
    (pause,) = _pauses(outbox)
    assert pause["reason"].startswith("1 customer(s) got the same message of this batch twice")


def test_a_reading_within_limits_pauses_nothing(outbox: Outbox) -> None:
    for _ in range(5):
        outbox.schedule(outbox.owner(), "sms")
    done = outbox.dispatch(outbox.settings(dispatch={"monitor_seconds": 0}))
    assert done.sent == 5 and done.paused == []
    assert emergency.active_pauses(outbox.engine).batches == []


def _baoke(outbox: Outbox, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAOKE_")}
    env["BAOKE_DATABASE_URL"] = outbox.engine.url.render_as_string(hide_password=False)
    env["BAOKE_DATA_DIR"] = str(home / "data")
    env["BAOKE_POLICY"] = json.dumps(
        {"quiet_hours": ["00:00", "23:59:59"], "service_hours": ["00:00", "23:59:59"]}
    )
    return subprocess.run(
        [sys.executable, "-m", "baoke", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_manual_kill_switch_stops_everything_until_resumed(
    outbox: Outbox, tmp_path: Path
) -> None:
    due = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    touch = outbox.schedule(outbox.owner(), "sms", due=due)

    missing = _baoke(outbox, tmp_path, "pause", "--all")
    assert missing.returncode == 2 and "--reason is required" in missing.stderr
    both = _baoke(outbox, tmp_path, "pause", "--all", "--batch", BATCH, "--reason", "x")
    assert both.returncode == 2 and "exactly one of" in both.stderr

    paused = _baoke(outbox, tmp_path, "pause", "--all", "--reason", "wrong price in the offer")
    assert paused.returncode == 0 and "paused everything" in paused.stdout
    sent = _baoke(outbox, tmp_path, "dispatch", "--json")
    assert json.loads(sent.stdout)["claimed"] == 0
    assert outbox.row(touch)["status"] == "pending"
    status = json.loads(_baoke(outbox, tmp_path, "dispatch", "status", "--json").stdout)
    assert [p["reason"] for p in status["pauses"]] == ["wrong price in the offer"]

    resumed = _baoke(outbox, tmp_path, "resume", "--all")
    assert "lifted 1 pause(s)" in resumed.stdout
    assert json.loads(_baoke(outbox, tmp_path, "dispatch", "--json").stdout)["sent"] == 1
    assert [(a["actor"], a["action"]) for a in _audit(outbox)] == [
        ("cli", "dispatch_pause"),
        ("cli", "dispatch_resume"),
    ]
