"""Phone touches become call tasks for the staff (provider ``tasks``).

A send step that lists ``phone`` puts a call in the outbox like any message; this adapter
turns it into a task for the customer's dealer and the configured role (option ``role``,
default ``customer_manager``), due within ``sla_hours`` (default 4), with the rendered text as
the call script. The task's key is the touch's, so a resend finds the task instead of making
another. Logging the call's outcome (``baoke tasks log`` or ``POST /api/tasks/{id}/outcome``)
records a ``call_outcome`` event and the touch's status, which the playbooks react to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Engine, insert, select

from baoke.channels.protocol import AdapterContext, Message, SendResult
from baoke.errors import ConfigError
from baoke.store import models as m
from baoke.store.models import table

__all__ = ["TaskAdapter", "make", "task_key"]


def task_key(touch_key: str) -> str:
    """The idempotency key of the call task made for a touch."""
    return f"touch:{touch_key}"


class TaskAdapter:
    """Creates one call task per phone touch, in the store."""

    name = "tasks"
    channel = "phone"
    idempotent = True  # the task key makes a repeat a no-op

    def __init__(self, engine: Engine, *, role: str, sla: dt.timedelta, title: str) -> None:
        self.engine = engine
        self.role = role
        self.sla = sla
        self.title = title
        self.max_batch = 500
        self.rate = 100.0

    def send(self, batch: Sequence[Message]) -> list[SendResult]:
        """Create the tasks that do not exist yet; every message's result names its task."""
        keys = {task_key(msg.key): msg for msg in batch}
        now = dt.datetime.now(dt.UTC)
        tasks = table(m.Task)
        with self.engine.begin() as conn:
            existing = dict(
                conn.execute(
                    select(tasks.c.idempotency_key, tasks.c.id).where(
                        tasks.c.idempotency_key.in_(list(keys))
                    )
                ).all()
            )
            fresh = [
                {
                    "idempotency_key": key,
                    "customer_id": msg.customer_id,
                    "dealer_id": msg.dealer_id,
                    "role": self.role,
                    "kind": "call",
                    "title": msg.subject or self.title,
                    "script": msg.text,
                    "due_at": now + self.sla,
                    "status": "open",
                    "playbook": msg.playbook,
                    "template": msg.template,
                    # Reviewed already (the touch went through the contact policy).
                    "planned_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for key, msg in keys.items()
                if key not in existing
            ]
            if fresh:
                conn.execute(insert(tasks), fresh)
                existing = dict(
                    conn.execute(
                        select(tasks.c.idempotency_key, tasks.c.id).where(
                            tasks.c.idempotency_key.in_(list(keys))
                        )
                    ).all()
                )
        return [
            SendResult(msg.touch_id, "sent", f"task-{existing[key]}") for key, msg in keys.items()
        ]

    def reconcile(self, batch: Sequence[Message]) -> dict[int, str]:
        """The touches whose task exists."""
        keys = {task_key(msg.key): msg.touch_id for msg in batch}
        tasks = table(m.Task)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(tasks.c.idempotency_key, tasks.c.id).where(
                    tasks.c.idempotency_key.in_(list(keys))
                )
            ).all()
        return {keys[key]: f"task-{task_id}" for key, task_id in rows}

    def close(self) -> None:
        """Nothing to release."""


def make(context: AdapterContext) -> TaskAdapter:
    """The call-task adapter of ``[channels.providers.tasks]``."""
    if context.engine is None:
        raise ConfigError("the 'tasks' provider needs the store")
    hours = float(context.option("sla_hours", 4))
    if hours <= 0:
        raise ConfigError("[channels.providers.tasks] sla_hours must be positive")
    return TaskAdapter(
        context.engine,
        role=str(context.option("role", "customer_manager")),
        sla=dt.timedelta(hours=hours),
        title=str(context.option("title", "致电客户")),
    )
