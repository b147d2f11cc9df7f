"""The HTTP API (FastAPI). ``baoke serve`` runs it with uvicorn.

``POST /api/events`` takes the same events as ``baoke events ingest`` (a JSON array, or
``{"events": [...]}``) and reacts at once: a TD reply unsubscribes before the next decision, a
call logged as not connected produces the fallback SMS candidate now. Bad events are answered
with their index and reason and the good ones are processed; a request with no good event is
a 422 and changes nothing.

Every request needs ``Authorization: Bearer <BAOKE_API_TOKEN>``; without a configured token
the API refuses everything (a missing secret must not mean an open door). The token is
compared in constant time and never logged.

``GET /api/plan?date=D`` is the contact policy's stored plan of a day (as ``baoke plan
--json``); ``GET /api/customers/{id}/plan?date=D`` explains one customer's decisions (as
``baoke plan explain``, mobile masked, written to the audit log). ``GET /api/dispatch`` is
the outbox's state (as ``baoke dispatch status``); ``POST /api/tasks/{id}/outcome`` logs a
call (``{"outcome": "not_connected"}``) and the playbooks react at once.

The providers' callbacks and the customers' links are mounted from
:mod:`baoke.api.callbacks`.
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query
from sqlalchemy import Engine

from baoke.api.callbacks import mount_callbacks
from baoke.channels.commands import queue_status
from baoke.channels.inbound import log_call
from baoke.config import Settings
from baoke.errors import InputError
from baoke.journeys.event_files import read_event_rows
from baoke.journeys.run import react
from baoke.policy.explain import explain_customer, find_customer
from baoke.policy.plan import summarise
from baoke.store.db import ensure_schema, make_engine

__all__ = ["create_app"]

_MAX_EVENTS = 10_000  # one request; larger feeds go through files


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The API over ``settings``' store (``engine`` for tests that already hold one)."""
    store = engine or make_engine(settings.url)
    ensure_schema(store)
    app = FastAPI(title="baoke", version="1", docs_url="/api/docs", openapi_url="/api/openapi.json")

    def authorised(authorization: Annotated[str | None, Header()] = None) -> None:
        expected = settings.api_token.get_secret_value() if settings.api_token else None
        if not expected:
            raise HTTPException(503, "the API is off: set BAOKE_API_TOKEN to turn it on")
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(401, "missing or wrong bearer token")

    @app.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/events", dependencies=[Depends(authorised)])
    def post_events(body: Annotated[Any, Body()]) -> dict[str, Any]:
        rows = body.get("events") if isinstance(body, dict) else body
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise HTTPException(400, 'send a JSON array of event objects, or {"events": [...]}')
        if len(rows) > _MAX_EVENTS:
            raise HTTPException(413, f"at most {_MAX_EVENTS} events per request; use a file")
        with store.connect() as conn:
            try:
                events, rejected = read_event_rows(rows, conn, zone=settings.zone)
            except InputError as exc:
                raise HTTPException(422, str(exc)) from exc
        problems = [{"index": i, "reason": reason} for i, reason in rejected]
        if events.height == 0:
            raise HTTPException(422, {"message": "no valid event", "rejected": problems})
        stored, done, moved = react(settings, store, events)
        return {
            "received": len(rows),
            "stored": stored,
            "rejected": problems,
            "effects": done.effects,
            "enrolled": done.enrolment.enrolled,
            "touches": moved.touches,
            "tasks": moved.tasks,
        }

    @app.get("/api/plan", dependencies=[Depends(authorised)])
    def get_plan(date: Annotated[dt.date, Query()]) -> dict[str, Any]:
        with store.connect() as conn:
            return summarise(conn, date)

    @app.get("/api/customers/{customer}/plan", dependencies=[Depends(authorised)])
    def get_explanation(
        customer: int, date: Annotated[dt.date | None, Query()] = None
    ) -> dict[str, Any]:
        with store.begin() as conn:
            try:
                cid = find_customer(conn, str(customer))
            except InputError as exc:
                raise HTTPException(404, str(exc)) from exc
            return explain_customer(conn, settings, cid, date, actor="api")

    @app.get("/api/dispatch", dependencies=[Depends(authorised)])
    def get_dispatch() -> dict[str, Any]:
        with store.connect() as conn:
            data = queue_status(conn)
        data["routes"] = settings.channels.routes
        return data

    @app.post("/api/tasks/{task_id}/outcome", dependencies=[Depends(authorised)])
    def post_call_outcome(task_id: int, body: Annotated[Any, Body()]) -> dict[str, Any]:
        outcome = body.get("outcome") if isinstance(body, dict) else None
        if not isinstance(outcome, str):
            raise HTTPException(400, 'send {"outcome": "connected"} (or another call outcome)')
        try:
            done = log_call(settings, store, task_id, outcome)
        except InputError as exc:
            status = 404 if str(exc).startswith("no task") else 422
            raise HTTPException(status, str(exc)) from exc
        return done.as_dict()

    mount_callbacks(app, settings, store)
    return app
