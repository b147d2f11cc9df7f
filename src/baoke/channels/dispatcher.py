"""The dispatcher: claim due touches, send them through their providers, record every outcome.

One pass (:meth:`Dispatcher.step`) is:

1. **Recover** rows in doubt (a dead claim, a request that may have gone through): ask the
   provider they went to about their ``send_ref``; what it has is ``sent``, what it has not is
   queued again, and what it cannot tell waits for an operator (or is resent where the
   provider itself drops repeats).
2. **Claim** up to ``claim_size`` due rows of unpaused batches and channels.
3. **Prepare** them (:mod:`.messages`): render, address, shorten links, and check consent,
   reachability and the sending hours once more.
4. **Route** each group of one channel and template to the first provider of the channel's
   route whose circuit is closed, cut into the provider's batch size, and write provider and
   reference to the rows *before* any request goes out.
5. **Send** the requests, at most ``concurrency`` at a time, each provider paced by its token
   bucket. A request that fails before reaching the provider fails over to the next provider
   at once; a request that may have reached it leaves its rows ``in_doubt``.
6. **Settle**: sent, failed (for good), or due again after an exponential backoff.

Between passes the 1-3-5 monitor (:mod:`.emergency`) looks at each batch and pauses one that
misbehaves. Nothing here loops over the outbox in Python beyond the rows of one claim.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine, insert

from baoke.channels import emergency, receipts
from baoke.channels.messages import addressed, prepare
from baoke.channels.outbox import (
    Claimed,
    Settled,
    claim,
    expired_leases,
    refund,
    release,
    set_route,
    settle,
)
from baoke.channels.protocol import Adapter, Message, ProviderError, SendResult
from baoke.channels.registry import Providers
from baoke.config import Settings
from baoke.journeys.catalog import Catalog, load_catalog
from baoke.store import models as m
from baoke.store.db import STORE_FAILURES
from baoke.store.models import table

__all__ = ["CircuitBreaker", "DispatchResult", "Dispatcher", "TokenBucket"]

log = logging.getLogger("baoke.dispatch")

Clock = Callable[[], dt.datetime]


def _named(provider: str, error: str) -> str:
    """An adapter's error with its provider's name in front, once."""
    return error if error.startswith(f"{provider}:") else f"{provider}: {error}"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class DispatchResult:
    """What a dispatch run did, in counts."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    expired: int = 0
    cancelled: int = 0
    retried: int = 0
    waiting: int = 0  # outside the sending hours, due again at the next opening
    in_doubt: int = 0
    recovered_sent: int = 0
    recovered_queued: int = 0
    unknown: int = 0
    requests: int = 0
    failovers: int = 0
    paused: list[str] = field(default_factory=list)
    by_provider: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def merge(self, other: DispatchResult) -> None:
        """Add another result's counts to this one."""
        for name, value in vars(other).items():
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, getattr(self, name) + value)
        self.paused.extend(other.paused)
        self.by_provider.update(other.by_provider)

    def as_dict(self) -> dict[str, Any]:
        """Plain counts, for JSON."""
        data = {k: v for k, v in vars(self).items() if k not in ("by_provider", "seconds")}
        data["by_provider"] = dict(self.by_provider)
        data["seconds"] = round(self.seconds, 3)
        return data


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, bursts up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = max(rate, 0.001)
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        """Take one token, waiting for it if the bucket is empty."""
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
            time.sleep(wait)


class CircuitBreaker:
    """Opens after ``threshold`` failed requests in a row (an auth failure at once); after
    ``cooldown`` seconds it lets one probe through, and closes again on a success."""

    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.open_until = 0.0
        self.lock = threading.Lock()

    def allow(self) -> bool:
        """Whether a request may go now (a probe, when the cooldown is over)."""
        with self.lock:
            if self.failures < self.threshold:
                return True
            now = time.monotonic()
            if now >= self.open_until:
                self.open_until = now + self.cooldown  # one probe; the others wait
                return True
            return False

    @property
    def is_open(self) -> bool:
        """Whether requests are being refused now."""
        with self.lock:
            return self.failures >= self.threshold and time.monotonic() < self.open_until

    def success(self) -> None:
        """A request went through: close."""
        with self.lock:
            self.failures = 0

    def failure(self, *, at_once: bool = False) -> None:
        """A request failed; ``at_once`` (bad credentials) opens the circuit immediately."""
        with self.lock:
            self.failures = self.threshold if at_once else self.failures + 1
            if self.failures >= self.threshold:
                self.open_until = time.monotonic() + self.cooldown


@dataclass
class _Chunk:
    """One provider request's worth of messages."""

    channel: str
    chain: list[str]  # providers still to try, the current one first
    rows: list[Claimed]
    messages: list[Message]


@dataclass
class _Outcome:
    settled: list[Settled] = field(default_factory=list)
    later: list[tuple[int, str, dt.datetime | None, str | None]] = field(default_factory=list)
    untried: list[int] = field(default_factory=list)
    requests: int = 0
    failovers: int = 0
    by_provider: Counter[str] = field(default_factory=Counter)


class Dispatcher:
    """Sends what is due in the outbox; one instance per process (threads inside)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        providers: Providers | None = None,
        worker: str | None = None,
        clock: Clock = _utcnow,
        channels: Sequence[str] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.providers = providers or Providers(settings, engine)
        self.worker = (
            worker or f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**4):04x}"
        )
        self.clock = clock
        self.channels = list(channels) if channels else None
        options = settings.dispatch
        self.buckets: dict[str, TokenBucket] = {}
        self.circuits: dict[str, CircuitBreaker] = defaultdict(
            lambda: CircuitBreaker(options.circuit_failures, options.circuit_cooldown_seconds)
        )
        self._pool = ThreadPoolExecutor(max_workers=options.concurrency)
        self._catalog: Catalog | None = None
        self._catalog_read = 0.0
        self._receipts_at = 0.0
        self._claims = 0
        self._last_check = 0.0

    # -- running ---------------------------------------------------------------------------

    def run(
        self,
        *,
        until_empty: bool = True,
        max_seconds: float | None = None,
        stop: threading.Event | None = None,
    ) -> DispatchResult:
        """Pass after pass; until nothing is due (``until_empty``), ``max_seconds`` or ``stop``."""
        total = DispatchResult()
        started = time.monotonic()
        try:
            while stop is None or not stop.is_set():
                done = self.step()
                total.merge(done)
                if not until_empty:
                    # Before the time check: a pass that ends the run still fetches what is due.
                    self._poll_receipts()
                if max_seconds is not None and time.monotonic() - started >= max_seconds:
                    break
                if done.claimed == 0 and done.recovered_sent + done.recovered_queued == 0:
                    # Rows in doubt wait for their time to be asked about: a later run (or the
                    # --forever service) reconciles them; an until-empty run does not wait.
                    if until_empty:
                        break
                    self._sleep(stop)
        finally:
            total.seconds = time.monotonic() - started
        return total

    def step(self) -> DispatchResult:
        """One pass: recover, monitor, claim, prepare, send, settle."""
        result = DispatchResult()
        self._recover(result)
        self._monitor(result)
        now = self.clock()
        pauses = emergency.active_pauses(self.engine)
        if pauses.everything:
            return result
        options = self.settings.dispatch
        with self.engine.begin() as conn:
            claimed = claim(
                conn,
                worker=self.worker,
                now=now,
                lease=dt.timedelta(seconds=options.lease_seconds),
                limit=options.claim_size,
                channels=self.channels,
                paused_batches=pauses.batches,
                paused_channels=pauses.channels,
            )
        if not claimed:
            return result
        result.claimed = len(claimed)
        self._claims += 1
        with self.engine.connect() as conn:
            prepared = prepare(conn, self.settings, self._catalog_now(conn), claimed, now)
        chunks = self._chunks(prepared.ready)
        with self.engine.begin() as conn:
            if prepared.links:
                conn.execute(insert(table(m.ShortLink)), prepared.links)
            settle(conn, prepared.settled, now)
            release(conn, prepared.later)
            set_route(conn, self._routes(chunks))
        self._count(result, prepared.settled)
        result.waiting += len(prepared.later)
        outcome = self._send_all(chunks)
        with self.engine.begin() as conn:
            settle(conn, outcome.settled, self.clock())
            release(conn, outcome.later)
            refund(conn, outcome.untried)
        self._count(result, outcome.settled)
        for _, state, _, _ in outcome.later:
            if state == "pending":
                result.retried += 1
            elif state == "in_doubt":
                result.in_doubt += 1
        result.requests += outcome.requests
        result.failovers += outcome.failovers
        result.by_provider.update(outcome.by_provider)
        return result

    def close(self) -> None:
        """Stop the threads and close the providers."""
        self._pool.shutdown(wait=True)
        self.providers.close()

    # -- the pieces ------------------------------------------------------------------------

    def _catalog_now(self, conn: Any) -> Catalog:
        # Read again every minute: a long-running dispatcher must know a playbook version
        # stored after it started.
        if self._catalog is None or time.monotonic() - self._catalog_read > 60:
            self._catalog = load_catalog(conn, self.settings, record=False)
            self._catalog_read = time.monotonic()
        return self._catalog

    def _sleep(self, stop: threading.Event | None) -> None:
        wait = self.settings.dispatch.poll_seconds
        if stop is not None:
            stop.wait(wait)
        else:
            time.sleep(wait)

    def _bucket(self, adapter: Adapter) -> TokenBucket:
        if adapter.name not in self.buckets:
            self.buckets[adapter.name] = TokenBucket(adapter.rate)
        return self.buckets[adapter.name]

    def _chunks(self, ready: Sequence[tuple[Claimed, Message]]) -> list[_Chunk]:
        """Group by channel and template, route to the first healthy provider, cut to size."""
        groups: dict[tuple[str, str | None], list[tuple[Claimed, Message]]] = defaultdict(list)
        for row, message in ready:
            groups[(message.channel, message.template)].append((row, message))
        chunks: list[_Chunk] = []
        for (channel, _), members in groups.items():
            chain = self._healthy_first(self.providers.route(channel))
            size = max(1, self.providers.get(chain[0]).max_batch)
            for start in range(0, len(members), size):
                part = members[start : start + size]
                chunks.append(
                    _Chunk(channel, list(chain), [r for r, _ in part], [msg for _, msg in part])
                )
        for number, chunk in enumerate(chunks):
            ref = f"{self.worker.rsplit(':', 1)[-1]}{self._claims:x}-{number}-{chunk.rows[0].id}"
            chunk.messages = [replace(msg, send_ref=ref) for msg in chunk.messages]
        return chunks

    def _healthy_first(self, chain: list[str]) -> list[str]:
        healthy = [name for name in chain if not self.circuits[name].is_open]
        return healthy + [name for name in chain if name not in healthy]

    @staticmethod
    def _routes(chunks: Sequence[_Chunk]) -> list[tuple[int, str, str]]:
        routes = []
        for chunk in chunks:
            for row, message in zip(chunk.rows, chunk.messages, strict=True):
                routes.append((row.id, chunk.chain[0], message.send_ref or ""))
        return routes

    def _send_all(self, chunks: Sequence[_Chunk]) -> _Outcome:
        outcome = _Outcome()
        lock = threading.Lock()

        def work(chunk: _Chunk) -> None:
            part = self._send_chunk(chunk)
            with lock:
                outcome.settled.extend(part.settled)
                outcome.later.extend(part.later)
                outcome.untried.extend(part.untried)
                outcome.requests += part.requests
                outcome.failovers += part.failovers
                outcome.by_provider.update(part.by_provider)

        for future in [self._pool.submit(work, chunk) for chunk in chunks]:
            future.result()
        return outcome

    def _send_chunk(self, chunk: _Chunk) -> _Outcome:
        """One request, failing over along the chain while the provider surely did not get it."""
        out = _Outcome()
        last_error = "no provider could be tried"
        for position, name in enumerate(chunk.chain):
            circuit = self.circuits[name]
            if not circuit.allow():
                last_error = f"{name}: circuit open"
                continue
            adapter = self.providers.get(name)
            if position > 0 or chunk.rows[0].provider not in (None, name):
                self._reroute(chunk, name)
                out.failovers += position > 0
            self._bucket(adapter).acquire()
            out.requests += 1
            try:
                results = adapter.send(chunk.messages)
            except ProviderError as exc:
                last_error = f"{name}: {exc}"
                circuit.failure(at_once=exc.kind == "auth")
                log.warning("provider %s refused a request of %d: %s", name, len(chunk.rows), exc)
                if exc.maybe_sent:
                    self._in_doubt(chunk, out, last_error, name)
                    return out
                if exc.kind == "permanent":
                    self._fail_all(chunk, out, last_error)
                    return out
                continue
            circuit.success()
            self._record(chunk, results, name, out)
            return out
        self._retry_all(chunk, out, last_error)
        return out

    def _reroute(self, chunk: _Chunk, name: str) -> None:
        """Write the new provider down before sending to it (a crash must ask the right one)."""
        with self.engine.begin() as conn:
            set_route(
                conn,
                [
                    (r.id, name, msg.send_ref or "")
                    for r, msg in zip(chunk.rows, chunk.messages, strict=True)
                ],
            )

    def _record(
        self, chunk: _Chunk, results: Sequence[SendResult], provider: str, out: _Outcome
    ) -> None:
        by_touch = {r.touch_id: r for r in results}
        for row in chunk.rows:
            got = by_touch.get(row.touch_id)
            if got is None:  # the provider answered, but not about this one
                out.later.append(
                    (row.id, "in_doubt", self._doubt_until(provider), f"{provider}: no result")
                )
            elif got.outcome == "sent":
                out.settled.append(Settled(row.id, row.touch_id, "sent", got.provider_id, provider))
                out.by_provider[provider] += 1
            elif got.outcome == "doubt":
                why = "in doubt: " + _named(provider, got.error or "no clear answer")
                out.later.append((row.id, "in_doubt", self._doubt_until(provider), why))
            elif got.outcome == "failed":
                why = _named(provider, got.error or "refused")
                out.settled.append(Settled(row.id, row.touch_id, "failed", None, why))
            else:
                self._retry(row, out, _named(provider, got.error or "try later"))

    def _retry(self, row: Claimed, out: _Outcome, why: str) -> None:
        options = self.settings.dispatch
        if row.attempts >= options.max_attempts:
            why = f"gave up after {row.attempts} attempts: {why}"
            out.settled.append(Settled(row.id, row.touch_id, "failed", None, why))
            return
        delay = min(options.backoff_cap_seconds, options.backoff_seconds * 2 ** (row.attempts - 1))
        delay *= 0.5 + random.random() / 2  # jitter: retries of one outage do not bunch up
        out.later.append((row.id, "pending", self.clock() + dt.timedelta(seconds=delay), why))

    def _retry_all(self, chunk: _Chunk, out: _Outcome, why: str) -> None:
        if all(self.circuits[name].is_open for name in chunk.chain) and "circuit open" in why:
            # Nothing was tried: wait for the first circuit to close, and count no attempt.
            cooldown = self.settings.dispatch.circuit_cooldown_seconds
            due = self.clock() + dt.timedelta(seconds=cooldown)
            out.later.extend((row.id, "pending", due, why) for row in chunk.rows)
            out.untried.extend(row.id for row in chunk.rows)
            return
        for row in chunk.rows:
            self._retry(row, out, why)

    def _fail_all(self, chunk: _Chunk, out: _Outcome, why: str) -> None:
        out.settled.extend(Settled(r.id, r.touch_id, "failed", None, why) for r in chunk.rows)

    def _in_doubt(self, chunk: _Chunk, out: _Outcome, why: str, provider: str) -> None:
        until = self._doubt_until(provider)
        out.later.extend((row.id, "in_doubt", until, f"in doubt: {why}") for row in chunk.rows)

    def _doubt_until(self, provider: str | None = None) -> dt.datetime:
        """When to ask the provider about a request in doubt: once it has had time to finish
        it, and for a provider that only knows a message once its receipt came, after its
        ``reconcile_after`` seconds."""
        wait = min(30.0, float(self.settings.dispatch.lease_seconds))
        if provider is not None:
            wait = max(wait, float(getattr(self.providers.get(provider), "reconcile_after", 0)))
        return self.clock() + dt.timedelta(seconds=wait)

    # -- recovery --------------------------------------------------------------------------

    def _recover(self, result: DispatchResult) -> None:
        options = self.settings.dispatch
        now = self.clock()
        with self.engine.begin() as conn:
            doubt = expired_leases(
                conn,
                worker=self.worker,
                now=now,
                lease=dt.timedelta(seconds=options.lease_seconds),
                limit=options.claim_size,
            )
        if not doubt:
            return
        never_sent = [row for row in doubt if row.provider is None]
        with self.engine.connect() as conn:
            ready = addressed(conn, [row for row in doubt if row.provider is not None])
        settled: list[Settled] = []
        later: list[tuple[int, str, dt.datetime | None, str | None]] = [
            (row.id, "pending", now, "claim lost before sending; queued again")
            for row in never_sent
        ]
        by_provider: dict[str, list[tuple[Claimed, Message]]] = defaultdict(list)
        seen = {row.id for row, _ in ready}
        later.extend(
            (row.id, "pending", now, "in doubt, no longer addressable; queued again")
            for row in doubt
            if row.provider is not None and row.id not in seen
        )
        for row, message in ready:
            by_provider[row.provider or ""].append((row, message))
        for name, members in by_provider.items():
            self._reconcile(name, members, now, settled, later)
        with self.engine.begin() as conn:
            settle(conn, settled, now)
            release(conn, later)
        result.recovered_sent += sum(1 for s in settled if s.state == "sent")
        result.recovered_queued += sum(1 for _, state, _, _ in later if state == "pending")
        result.unknown += sum(1 for _, state, _, _ in later if state == "unknown")
        result.sent += sum(1 for s in settled if s.state == "sent")

    def _reconcile(
        self,
        name: str,
        members: list[tuple[Claimed, Message]],
        now: dt.datetime,
        settled: list[Settled],
        later: list[tuple[int, str, dt.datetime | None, str | None]],
    ) -> None:
        adapter = self.providers.get(name)
        try:
            found = adapter.reconcile([msg for _, msg in members])
        except ProviderError as exc:
            # Cannot ask now: stay in doubt and ask again later.
            until = self._doubt_until(name)
            later.extend((row.id, "in_doubt", until, f"reconcile: {exc}") for row, _ in members)
            return
        for row, _ in members:
            if found is not None and row.touch_id in found:
                settled.append(Settled(row.id, row.touch_id, "sent", found[row.touch_id], name))
            elif found is not None or adapter.idempotent:
                later.append((row.id, "pending", now, f"{name} has no record of it; sending again"))
            else:
                why = (
                    f"{name} cannot confirm whether it received this message; check the "
                    "provider's console, then `baoke dispatch resolve`"
                )
                later.append((row.id, "unknown", None, why))

    # -- bookkeeping -------------------------------------------------------------------------

    @staticmethod
    def _count(result: DispatchResult, settled: Sequence[Settled]) -> None:
        for row in settled:
            setattr(result, row.state, getattr(result, row.state) + 1)

    def _poll_receipts(self) -> None:
        """As a service: fetch the receipts WeCom and JPush do not push, every few minutes."""
        every = self.settings.dispatch.receipts_minutes * 60
        if not every or time.monotonic() - self._receipts_at < every:
            return
        self._receipts_at = time.monotonic()
        try:
            done = receipts.poll(self.settings, self.engine, now=self.clock())
        except STORE_FAILURES as exc:  # the next round tries again; sending goes on
            log.warning("receipts not fetched: %s", type(exc).__name__)
            return
        if done.stored:
            log.info("receipts: %d new", done.stored)

    def _monitor(self, result: DispatchResult) -> None:
        """The 1-3-5 monitor, at most every few seconds while dispatching."""
        if time.monotonic() - self._last_check < self.settings.dispatch.monitor_seconds:
            return
        self._last_check = time.monotonic()
        result.paused.extend(emergency.check(self.engine, self.settings, self.clock()))
