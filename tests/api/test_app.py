"""The HTTP API: bearer token, event checks, and events reacting at once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from tests.journeys.world import World, local

from baoke.api.app import create_app
from baoke.config import Settings
from baoke.store import models as m

TOKEN = "s3cret-token"
D = dt.date(2026, 11, 2)


@pytest.fixture
def setup(engine: Engine, tmp_path: Path) -> tuple[World, TestClient]:
    world = World(engine, tmp_path / "data")
    settings = Settings(
        data_dir=world.data_dir,
        database_url=engine.url.render_as_string(hide_password=False),
        api_token=TOKEN,
    )
    return world, TestClient(create_app(settings, engine))


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_is_required(setup: tuple[World, TestClient], engine: Engine) -> None:
    _, client = setup
    assert client.get("/api/health").json() == {"status": "ok"}
    assert client.post("/api/events", json=[]).status_code == 401
    assert client.post("/api/events", json=[], headers=_auth("wrong")).status_code == 401
    off = TestClient(create_app(Settings(database_url=engine.url.render_as_string(False)), engine))
    assert off.post("/api/events", json=[{"type": "x"}], headers=_auth()).status_code == 503


def test_bad_requests_are_4xx_and_change_nothing(setup: tuple[World, TestClient]) -> None:
    world, client = setup
    cid = world.owner()
    assert client.post("/api/events", json={"x": 1}, headers=_auth()).status_code == 400
    bad = [{"type": "complaint_opened", "customer_id": cid, "occurred_at": "2026-11-02T10:00"}]
    response = client.post("/api/events", json=bad, headers=_auth())
    assert response.status_code == 422
    assert "severity" in response.text
    with world.engine.connect() as conn:
        assert conn.execute(select(m.Event.id)).first() is None


def test_td_reply_unsubscribes_and_ends_marketing_now(setup: tuple[World, TestClient]) -> None:
    world, client = setup
    cid = world.owner(visits=((D - dt.timedelta(days=100), 900),))
    world.run(D)
    (journey,) = world.journeys(cid, "churn_winback")
    assert journey["status"] == "active"
    at = local(D, 11)
    events = [
        {
            "type": "reply_keyword",
            "customer_id": cid,
            "occurred_at": at.isoformat(),
            "keyword": " td ",
            "channel": "sms",
        },
        {
            "type": "reply_keyword",
            "customer_id": 999999,
            "occurred_at": at.isoformat(),
            "keyword": "TD",
        },
    ]
    response = client.post("/api/events", json={"events": events}, headers=_auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stored"] == 1 and [r["index"] for r in body["rejected"]] == [1]
    (journey,) = world.journeys(cid, "churn_winback")
    assert (journey["status"], journey["end_reason"]) == ("exited", "unsubscribed")
    with world.engine.connect() as conn:
        consent = conn.execute(
            select(m.Consent.granted, m.Consent.withdrawn_at).where(
                m.Consent.customer_id == cid, m.Consent.channel == "sms"
            )
        ).one()
        audit = conn.execute(
            select(m.AuditEntry.action).where(m.AuditEntry.entity_id == str(cid))
        ).all()
    assert consent.granted is False or consent.granted == 0
    assert ("consent.withdraw",) in [tuple(a) for a in audit]


def test_the_plan_and_one_customers_explanation(setup: tuple[World, TestClient]) -> None:
    world, client = setup
    cid = world.owner(visits=((D - dt.timedelta(days=100), 900),), customer_id=951)
    world.run(D)
    assert client.get(f"/api/plan?date={D}").status_code == 401
    plan = client.get(f"/api/plan?date={D}", headers=_auth()).json()
    assert plan["day"] == D.isoformat() and plan["candidates"] >= 1
    found = client.get(f"/api/customers/{cid}/plan?date={D}", headers=_auth()).json()
    assert found["customer_id"] == cid and found["decisions"]
    assert "****" in found["mobile"]
    assert client.get("/api/plan?date=2026-13-01", headers=_auth()).status_code == 422
    assert client.get("/api/customers/99999/plan", headers=_auth()).status_code == 404
    with world.engine.connect() as conn:
        actors = conn.execute(
            select(m.AuditEntry.actor).where(m.AuditEntry.action == "policy.explain")
        ).all()
    assert actors == [("api",)]
