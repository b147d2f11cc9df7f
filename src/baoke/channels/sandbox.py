"""The sandbox provider: every message goes to a JSON-lines file instead of a customer.

The default route of every message channel, so a new install (and the demo) sends nothing
real. One file per channel, ``<data_dir>/sandbox/<channel>.jsonl`` (option ``dir``), one line
per message with its touch, reference, (masked) address and text; the dispatcher's
reconciliation reads it back, so even the sandbox never records a message twice. Option
``mask`` (default true) masks mobiles and e-mail addresses in the file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from baoke.channels.protocol import AdapterContext, Message, SendResult
from baoke.privacy import mask_mobile

__all__ = ["SandboxAdapter", "make"]


def _mask(address: str) -> str:
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    if address.lstrip("+").isdigit():
        return mask_mobile(address) or address
    return address


class SandboxAdapter:
    """Writes messages to ``<dir>/<channel>.jsonl``; one adapter per channel it is routed for."""

    name = "sandbox"
    channel = "*"  # serves any message channel
    idempotent = False

    def __init__(self, directory: Path, *, mask: bool, max_batch: int, rate: float) -> None:
        self.directory = directory
        self.mask = mask
        self.max_batch = max_batch
        self.rate = rate
        self._lock = threading.Lock()

    def path(self, channel: str) -> Path:
        """The file of one channel."""
        return self.directory / f"{channel}.jsonl"

    def send(self, batch: Sequence[Message]) -> list[SendResult]:
        """Append one line per message, flushed to disk before the results are returned."""
        at = dt.datetime.now(dt.UTC).isoformat()
        lines: dict[str, list[str]] = {}
        for message in batch:
            record: dict[str, Any] = {
                "touch_id": message.touch_id,
                "key": message.key,
                "send_ref": message.send_ref,
                "channel": message.channel,
                "customer_id": message.customer_id,
                "address": _mask(message.address) if self.mask else message.address,
                "sender": message.sender,
                "subject": message.subject,
                "text": message.text,
                "marketing": message.marketing,
                "unsubscribe_url": message.unsubscribe_url,
                "at": at,
            }
            lines.setdefault(message.channel, []).append(json.dumps(record, ensure_ascii=False))
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            for channel, rows in lines.items():
                with self.path(channel).open("a", encoding="utf-8") as out:
                    out.write("\n".join(rows) + "\n")
                    out.flush()
                    os.fsync(out.fileno())
        return [SendResult(m.touch_id, "sent", f"sandbox-{m.touch_id}") for m in batch]

    def reconcile(self, batch: Sequence[Message]) -> dict[int, str]:
        """The messages of ``batch`` already in the file (matched on key and reference)."""
        wanted = {(m.key, m.send_ref): m.touch_id for m in batch}
        found: dict[int, str] = {}
        for channel in {m.channel for m in batch}:
            path = self.path(channel)
            if not path.exists():
                continue
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a crash was never acknowledged
                    touch = wanted.get((record.get("key"), record.get("send_ref")))
                    if touch is not None:
                        found[touch] = f"sandbox-{touch}"
        return found

    def close(self) -> None:
        """Nothing to release."""


def make(context: AdapterContext) -> SandboxAdapter:
    """The sandbox adapter of ``[channels.providers.sandbox]``."""
    base = Path(context.data_dir or ".") / "sandbox"
    directory = Path(context.option("dir", base))
    return SandboxAdapter(
        directory,
        mask=bool(context.option("mask", True)),
        max_batch=int(context.option("max_batch", 500)),
        rate=float(context.option("rate", 1_000.0)),
    )
