"""Outbox dispatch: SMS throughput to a loopback Aliyun gateway, on SQLite and PostgreSQL.

    python bench/dispatch_bench.py                          # 20,000 messages, every combination
    python bench/dispatch_bench.py --scale 100000 --backend postgresql --mode batch
    python bench/dispatch_bench.py --repeat 3 --concurrency 32 --claim-size 2000 --json
    python bench/dispatch_bench.py --phases                 # where the main thread's time goes
    python bench/dispatch_bench.py --mode single --gateway-latency 50 --concurrency 32
    python bench/dispatch_bench.py --mode single --profile dispatch-prof

Every run gets a fresh store: a new SQLite file, or a new schema in PostgreSQL's database
``test`` (``BAOKE_TEST_DATABASE_URL``, default ``postgres@127.0.0.1:5432``), dropped afterwards.
It holds ``--scale`` car owners (a valid ``+86138…`` mobile, a car, a profile, SMS consent
granted), each with one touch of a built-in playbook's SMS template (maintenance_cadence_mid /
maintenance_due, priority service) scheduled straight into the outbox, due at 09:30 on
2026-11-23 (Asia/Shanghai). Filling the store is set-based (polars frames and
``bulk_insert``), and untimed.

The gateway is :class:`~baoke.channels.loopback.aliyun.AliyunSmsServer` in a process of its own
(so it does not share the dispatcher's GIL), checking every request's ACS3 signature and every
message's template parameters; it reports what it accepted over a pipe. The dispatcher is the
real :class:`~baoke.channels.dispatcher.Dispatcher` with the Aliyun adapter: ``batch`` mode is
SendBatchSms of 100 numbers a request, ``single`` mode one SendSms per message (``batch =
false``). Its clock starts at 10:00 local time (inside the sending hours) and runs with the wall
clock (``--fixed-clock``: stays at 10:00). Only ``Dispatcher.run(until_empty=True)`` is timed;
the adapter is made beforehand.

The emergency monitor runs as in production, with the project's runaway limit
(``max_per_minute``, 600,000 for one batch); ``--max-per-minute N`` sets another (every message
here belongs to one batch: ``--max-per-minute 60000`` pauses it at full speed).

After each run the bench checks that the gateway accepted every touch's number exactly once
(none missing, none twice, nothing else), that every outbox row is ``sent``, every touch
``sent`` with a provider id and one ``sent`` history entry, and that the dispatcher's request
count is the gateway's; the exit status is 1 when a check fails. CPU seconds are the
dispatcher process's, the gateway process's, and the whole machine's (``/proc/stat``; the rest
is mostly the database server) during the run. Before each run the bench waits (up to
``--idle-wait`` seconds) until other work keeps fewer than ``--idle-below`` cores busy, and
prints what it found: on a shared machine, other work shows in the wall time.

``--phases`` times the dispatcher's main thread per phase (claim, prepare and its parts,
settle, the wait for the sending threads …; wall seconds summed over the passes).
``--gateway-latency MS`` makes the gateway wait before each answer, as a real provider's round
trip does: one-message requests then need many in flight (``--concurrency``, default 32) to go fast.

``--profile DIR`` profiles each run (use ``--repeat 1``; the figures are then no measurement, and
no verdict is printed): the dispatcher's
main thread in wall time (``<backend>-<mode>-main.prof``), its sending threads in CPU time
(``-senders.prof``) and the gateway's connection threads in CPU time (``-gateway.prof``); read
them with ``python -m pstats``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import pstats
import resource
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.exc import OperationalError

from baoke.channels import dispatcher as dispatcher_module
from baoke.channels import emergency, messages
from baoke.channels.dispatcher import Dispatcher, DispatchResult
from baoke.channels.loopback.aliyun import AliyunSmsServer
from baoke.channels.loopback.base import Request, Response
from baoke.channels.settings import ChannelSettings, DispatchSettings
from baoke.config import Settings
from baoke.ingest.store_io import bulk_insert
from baoke.journeys.catalog import load_catalog
from baoke.playbooks.templates import template_variables
from baoke.store import models as m
from baoke.store.db import ensure_schema, make_engine
from baoke.store.models import table

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DAY = dt.date(2026, 11, 23)  # a Monday
ZONE = ZoneInfo("Asia/Shanghai")
START = dt.datetime.combine(DAY, dt.time(10), ZONE).astimezone(dt.UTC)  # the clock's start
DUE = dt.datetime.combine(DAY, dt.time(9, 30), ZONE).astimezone(dt.UTC)  # every row's due_at
PLAYBOOK, STEP, TEMPLATE = "maintenance_cadence_mid", "due_sms_a", "maintenance_due"
TEMPLATE_CODE = "SMS_100001"
KEY_ID, KEY_SECRET = "LTAI5tBenchDispatchKey", "bench-dispatch-secret"
TARGETS = {"batch": 2_000.0, "single": 500.0}  # messages per second
BACKENDS = ("sqlite", "postgresql")
MODES = ("batch", "single")

SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "周", "吴", "欧阳", "孙"]
GIVEN = ["伟", "芳", "娜", "磊", "强", "敏", "静", "洋", "勇", "军", "雪梅", "志强"]
SERIES = ["远峰", "星途", "揽月", "瑶光", "追风"]


# --------------------------------------------------------------------------------------------
# The gateway: the loopback Aliyun server in its own process, driven over a pipe
# --------------------------------------------------------------------------------------------


class BenchGateway(AliyunSmsServer):
    """The loopback Dysmsapi, optionally profiling each connection thread in CPU time."""

    def __init__(
        self, *, templates: dict[str, list[str]], profile: bool, latency: float = 0.0
    ) -> None:
        super().__init__(KEY_ID, KEY_SECRET, templates=templates)
        self.profile = profile
        self.latency = latency
        self.profiles: list[cProfile.Profile] = []
        self.threads: list[threading.Thread] = []

    def start(self) -> BenchGateway:
        """Listen; with ``profile``, wrap each connection's thread in a profiler."""
        super().start()
        httpd = self._httpd
        assert httpd is not None
        if self.profile:
            serve = httpd.process_request_thread

            def profiled(request: Any, client_address: Any) -> None:
                profiler = cProfile.Profile(time.thread_time)
                with self.lock:
                    self.profiles.append(profiler)
                    self.threads.append(threading.current_thread())
                profiler.runcall(serve, request, client_address)

            httpd.process_request_thread = profiled  # type: ignore[method-assign]
        return self

    def answer(self, request: Request) -> Response:
        """The loopback's answer, after ``latency`` seconds (a provider's round trip)."""
        if self.latency:
            time.sleep(self.latency)
        return super().answer(request)

    def summary(self, profile_path: str | None) -> dict[str, Any]:
        """What was accepted (count per number), how, and how many requests came."""
        for thread in list(self.threads):
            thread.join(timeout=5)  # the client closed its connections: the threads end
        if profile_path and self.profiles:
            stats = pstats.Stats(self.profiles[0])
            for extra in self.profiles[1:]:
                stats.add(extra)
            stats.dump_stats(profile_path)
        with self.lock:
            phones = Counter(key.split("|", 1)[0] for key in self.accepted.elements())
            return {
                "requests": self.requests,
                "records": len(self.records),
                "phones": dict(phones),
                "actions": dict(Counter(r["action"] for r in self.records)),
                "out_ids": len({r["out_id"] for r in self.records}),
            }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _gateway_main(
    pipe: Pipe, templates: dict[str, list[str]], profile: bool, latency: float
) -> None:
    """The gateway process: serve until told to stop; answer ``mark`` and ``stats``."""
    server = BenchGateway(templates=templates, profile=profile, latency=latency).start()
    pipe.send(server.url)
    mark = _cpu_seconds()
    try:
        while True:
            command, argument = pipe.recv()
            if command == "mark":
                mark = _cpu_seconds()
                pipe.send(None)
            elif command == "stats":
                cpu = _cpu_seconds() - mark
                pipe.send({**server.summary(argument), "cpu_seconds": cpu})
            else:
                break
    finally:
        server.stop()


class Gateway:
    """The parent's handle on the gateway process."""

    def __init__(
        self, templates: dict[str, list[str]], profile: bool, latency: float = 0.0
    ) -> None:
        ctx = mp.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_gateway_main, args=(child, templates, profile, latency), daemon=True
        )
        self._process.start()
        child.close()
        self.url: str = self._pipe.recv()

    def mark(self) -> None:
        """Start counting the gateway's CPU time from now."""
        self._pipe.send(("mark", None))
        self._pipe.recv()

    def stats(self, profile_path: str | None = None) -> dict[str, Any]:
        """The gateway's summary (see :meth:`BenchGateway.summary`) and its CPU seconds."""
        self._pipe.send(("stats", profile_path))
        found: dict[str, Any] = self._pipe.recv()
        return found

    def close(self) -> None:
        """Stop the gateway process."""
        with suppress(BrokenPipeError, OSError):
            self._pipe.send(("stop", None))
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._pipe.close()


# --------------------------------------------------------------------------------------------
# The store: owners with one scheduled SMS touch each, straight into the outbox
# --------------------------------------------------------------------------------------------


def pg_url() -> str:
    """The PostgreSQL server the bench uses."""
    return os.environ.get("BAOKE_TEST_DATABASE_URL", PG_DEFAULT)


def pg_problem() -> str | None:
    """Why PostgreSQL cannot be used; None when it can."""
    try:
        probe = create_engine(pg_url())
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
        probe.dispose()
    except OperationalError as exc:
        return str(exc.orig).strip().splitlines()[0]
    return None


@contextmanager
def fresh_store(backend: str, root: Path) -> Iterator[tuple[str, Engine]]:
    """A migrated, empty store: a new SQLite file or a new PostgreSQL schema, removed after."""
    if backend == "sqlite":
        data = Path(tempfile.mkdtemp(prefix="store-", dir=root))
        url = f"sqlite:///{(data / 'baoke.db').as_posix()}"
        engine = make_engine(url)
        try:
            ensure_schema(engine)
            yield url, engine
        finally:
            engine.dispose()
            shutil.rmtree(data, ignore_errors=True)
        return
    schema = f"bench_dispatch_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url())
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_url() else "?"
    url = f"{pg_url()}{sep}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    try:
        ensure_schema(engine)
        yield url, engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _cycle(values: list[str], index: pl.Expr) -> pl.Expr:
    """``values[index % len(values)]`` as an expression."""
    return (index % len(values)).replace_strict(
        list(range(len(values))), values, return_dtype=pl.String
    )


def _insert(engine: Engine, model: type[m.Base], frame: pl.DataFrame, chunk: int = 200_000) -> None:
    with engine.begin() as conn:
        for offset in range(0, frame.height, chunk):
            bulk_insert(conn, table(model), frame.slice(offset, chunk))


def playbook_facts(settings: Settings, engine: Engine) -> tuple[str, list[str]]:
    """The playbook's version as the catalog stores it, and its SMS template's variables."""
    with engine.begin() as conn:
        catalog = load_catalog(conn, settings)  # records the playbook versions
    book = catalog.current[PLAYBOOK]
    variant = book.template(TEMPLATE).variant("sms")
    if variant is None:
        raise SystemExit(f"{PLAYBOOK}/{TEMPLATE} has no sms variant")
    return book.version, list(template_variables(variant.text))


def fill_store(engine: Engine, settings: Settings, n: int) -> None:
    """``n`` owners, each with one SMS touch pending in the outbox (set-based)."""
    with engine.begin() as conn:
        conn.execute(
            insert(table(m.Dealer)).values(
                id=1, code="D001", name="杭州西湖店", brand="星途", phone="0571-88886666"
            )
        )
        conn.execute(
            insert(table(m.Staff)),
            [
                {"id": 1, "staff_no": "S1", "dealer_id": 1, "name": "王磊", "role": "advisor"},
                {"id": 2, "staff_no": "S2", "dealer_id": 1, "name": "李强", "role": "manager"},
            ],
        )
    version, _ = playbook_facts(settings, engine)
    ids = pl.DataFrame({"id": pl.int_range(1, n + 1, eager=True, dtype=pl.Int64)})
    cid = pl.col("id")
    due = pl.lit(DUE, dtype=pl.Datetime("us", "UTC"))
    delivered = (pl.lit(DAY) - pl.duration(days=200 + cid % 1500)).cast(pl.Date)
    customers = ids.select(
        "id",
        pl.format("+86138{}", cid.cast(pl.String).str.zfill(8)).alias("mobile"),
        (_cycle(SURNAMES, cid) + _cycle(GIVEN, cid // len(SURNAMES))).alias("name"),
        _cycle(["先生", "女士"], cid // 7).alias("title"),
        pl.lit("valid").alias("mobile_status"),
        pl.lit(1).alias("home_dealer_id"),
    )
    series = _cycle(SERIES, cid)
    vehicles = ids.select(
        "id",
        pl.format("LBK{}", cid.cast(pl.String).str.zfill(14)).alias("vin"),
        pl.lit(True).alias("vin_check_ok"),
        cid.alias("customer_id"),
        pl.lit(1).alias("dealer_id"),
        pl.lit("星途").alias("brand"),
        series.alias("series"),
        pl.format("{} 2.0T", series).alias("model"),
        delivered.alias("purchase_date"),
        delivered.alias("delivery_date"),
    )
    profiles = ids.select(
        cid.alias("customer_id"),
        pl.lit(DAY - dt.timedelta(days=1)).alias("as_of"),
        pl.lit(True).alias("is_owner"),
        pl.lit("mid").alias("value_tier"),
        pl.lit("active").alias("lifecycle_stage"),
        pl.lit(320_000).alias("spend_12m_fen"),
        pl.lit(2).alias("visits_12m"),
        (pl.lit(DAY) - pl.duration(days=150 + cid % 30)).cast(pl.Date).alias("last_visit_date"),
        (pl.lit(DAY) + pl.duration(days=15 + cid % 14))
        .cast(pl.Date)
        .alias("next_maintenance_due_date"),
        pl.lit(False).alias("open_complaint"),
        pl.lit(True).alias("sms_reachable"),
        pl.lit(False).alias("wecom_reachable"),
        pl.lit(False).alias("push_reachable"),
        pl.lit(False).alias("email_reachable"),
        pl.lit(True).alias("phone_reachable"),
    )
    consents = ids.select(
        cid.alias("customer_id"),
        pl.lit("sms").alias("channel"),
        pl.lit("marketing").alias("purpose"),
        pl.lit(True).alias("granted"),
        pl.lit("written").alias("basis"),
        (due - pl.duration(days=400)).alias("granted_at"),
    )
    touches = ids.select(
        "id",
        pl.format("bench:dispatch:{}", cid).alias("idempotency_key"),
        cid.alias("customer_id"),
        pl.lit(1).alias("dealer_id"),
        pl.lit("sms").alias("channel"),
        pl.lit("sms").alias("channels"),
        pl.lit(TEMPLATE).alias("template"),
        pl.lit(PLAYBOOK).alias("playbook"),
        pl.lit(STEP).alias("step"),
        pl.lit(version).alias("version"),
        pl.lit("service").alias("priority"),
        pl.lit(5).alias("cost_fen"),
        pl.lit("scheduled").alias("status"),
        due.alias("scheduled_at"),
        due.alias("proposed_at"),
    )
    outbox = ids.select(
        "id",
        cid.alias("touch_id"),
        pl.lit("sms").alias("channel"),
        due.alias("due_at"),
        pl.lit("pending").alias("status"),
        pl.lit(0).alias("attempts"),
        pl.lit(f"{DAY}/{PLAYBOOK}").alias("batch"),
    )
    filled = (
        (m.Customer, customers),
        (m.Vehicle, vehicles),
        (m.CustomerProfile, profiles),
        (m.Consent, consents),
        (m.Touch, touches),
        (m.OutboxEntry, outbox),
    )
    for model, frame in filled:
        _insert(engine, model, frame)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Only this schema's tables: a bare ANALYZE visits every schema of the database
            # and waits behind other sessions' locks there.
            names = ", ".join(model.__tablename__ for model, _ in filled)
            conn.exec_driver_sql(f"ANALYZE {names}")
        else:
            conn.exec_driver_sql("ANALYZE")


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed dispatch and its checks."""

    backend: str
    mode: str
    messages: int
    seconds: float
    requests: int
    gateway_requests: int
    passes: int
    dispatcher_cpu: float
    gateway_cpu: float
    machine_cpu: float
    fill_seconds: float
    busy_before: float  # the machine's load just before the run, in cores
    problems: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.seconds if self.seconds else 0.0


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def busy_cores(seconds: float = 0.5) -> float:
    """How many cores the machine kept busy over the next ``seconds``."""
    before = _machine_busy()
    time.sleep(seconds)
    return (_machine_busy() - before) / seconds


def wait_idle(limit: float, patience: float) -> float:
    """Wait (up to ``patience`` seconds) until other work keeps under ``limit`` cores busy;
    the last reading."""
    deadline = time.monotonic() + patience
    busy = busy_cores()
    while busy > limit and time.monotonic() < deadline:
        busy = busy_cores(1.0)
    return busy


def settings_for(
    data_dir: Path, url: str, endpoint: str, mode: str, args: argparse.Namespace
) -> Settings:
    """The dispatcher's settings: SMS through the Aliyun adapter to the loopback gateway."""
    return Settings(
        data_dir=data_dir,
        database_url=url,
        channels=ChannelSettings.model_validate(
            {
                "sms": ["aliyun"],
                "providers": {
                    "aliyun": {
                        "endpoint": endpoint,
                        "sign_name": "保客汽车服务",
                        "templates": {f"{PLAYBOOK}/{TEMPLATE}": TEMPLATE_CODE},
                        "batch": mode == "batch",
                        "rate": 10_000,
                    }
                },
            }
        ),
        dispatch=DispatchSettings.model_validate(
            {
                "concurrency": args.concurrency,
                "claim_size": args.claim_size,
                "emergency": {}
                if args.max_per_minute is None
                else {"max_per_minute": args.max_per_minute},
            }
        ),
    )


def _counts(conn: Any, sql: str) -> dict[str, int]:
    return {str(key): int(n) for key, n in conn.execute(text(sql))}


def verify(
    engine: Engine, n: int, mode: str, result: DispatchResult, gateway: dict[str, Any]
) -> list[str]:
    """What is wrong with the run's outcome; empty when every touch went out exactly once,
    through the mode's action (SendBatchSms, or SendSms of one number)."""
    problems: list[str] = []
    with engine.connect() as conn:
        outbox = _counts(conn, "SELECT status, count(*) FROM outbox GROUP BY status")
        touches = _counts(conn, "SELECT status, count(*) FROM touches GROUP BY status")
        no_id = conn.execute(
            text("SELECT count(*) FROM touches WHERE provider_message_id IS NULL")
        ).scalar_one()
        history, distinct = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT touch_id) FROM touch_status_history "
                "WHERE status = 'sent'"
            )
        ).one()
    if outbox != {"sent": n}:
        problems.append(f"outbox rows by status {outbox}, expected {{'sent': {n}}}")
    if touches != {"sent": n}:
        problems.append(f"touches by status {touches}, expected {{'sent': {n}}}")
    if no_id:
        problems.append(f"{no_id} touches without a provider message id")
    if (history, distinct) != (n, n):
        problems.append(f"{history} 'sent' history entries for {distinct} touches, expected {n}")
    phones: dict[str, int] = gateway["phones"]
    expected = {f"138{i:08d}" for i in range(1, n + 1)}
    missing = len(expected - phones.keys())
    unexpected = len(phones.keys() - expected)
    twice = sum(1 for count in phones.values() if count > 1)
    if missing or unexpected or twice:
        problems.append(
            f"gateway: {missing} numbers missing, {twice} accepted more than once, "
            f"{unexpected} unexpected"
        )
    if gateway["records"] != n:
        problems.append(f"gateway accepted {gateway['records']} messages, expected {n}")
    action = "SendBatchSms" if mode == "batch" else "SendSms"
    if gateway["actions"] != {action: n}:
        problems.append(f"gateway actions {gateway['actions']}, expected {{{action!r}: {n}}}")
    if mode == "single" and gateway["requests"] != n:
        problems.append(f"{gateway['requests']} requests for {n} one-number messages")
    if result.sent != n:
        problems.append(f"the dispatcher counted {result.sent} sent, expected {n}")
    if result.requests != gateway["requests"]:
        problems.append(
            f"the dispatcher counted {result.requests} requests, the gateway saw "
            f"{gateway['requests']}"
        )
    return problems


class _SenderProfiles:
    """Profile the dispatcher's sending threads in CPU time, one profiler per thread."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.profiles: list[cProfile.Profile] = []
        send = dispatcher._send_chunk

        def profiled(chunk: Any) -> Any:
            profiler = getattr(self.local, "profiler", None)
            if profiler is None:
                profiler = self.local.profiler = cProfile.Profile(time.thread_time)
                with self.lock:
                    self.profiles.append(profiler)
            return profiler.runcall(send, chunk)

        dispatcher._send_chunk = profiled  # type: ignore[method-assign]

    def dump(self, path: Path) -> None:
        if not self.profiles:
            return
        stats = pstats.Stats(self.profiles[0])
        for extra in self.profiles[1:]:
            stats.add(extra)
        stats.dump_stats(str(path))


# Where the dispatcher's main thread spends its wall time: (module, attribute, label). The
# labels with a "prepare:" prefix are parts of ``prepare``; "send" is the wait for the threads.
_PHASES = [
    (dispatcher_module, "expired_leases", "recover"),
    (dispatcher_module.Dispatcher, "_monitor", "monitor"),
    (emergency, "active_pauses", "pauses"),
    (dispatcher_module, "claim", "claim"),
    (dispatcher_module, "prepare", "prepare"),
    (messages, "_touches", "prepare:touches"),
    (messages, "_wecom_senders", "prepare:wecom"),
    (messages, "_access", "prepare:access"),
    (messages, "build_contexts", "prepare:contexts"),
    (messages, "_existing_links", "prepare:links_read"),
    (messages, "_stop_reason", "prepare:checks"),
    (messages, "_message", "prepare:render"),
    (messages, "_with_links", "prepare:shorten"),
    (dispatcher_module.Dispatcher, "_chunks", "chunks"),
    (dispatcher_module, "set_route", "set_route"),
    (dispatcher_module, "release", "release"),
    (dispatcher_module, "settle", "settle"),
    (dispatcher_module.Dispatcher, "_send_all", "send"),
]


class Phases:
    """Wall seconds per phase of the dispatcher's passes (``--phases``): wraps the functions
    :data:`_PHASES` names for the life of the object, on the main thread only."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._saved: list[tuple[Any, str, Any]] = []
        main = threading.main_thread()
        for owner, name, label in _PHASES:
            original = getattr(owner, name)
            self._saved.append((owner, name, original))
            setattr(owner, name, self._timed(original, label, main))

    def _timed(self, original: Any, label: str, main: threading.Thread) -> Any:
        seconds, calls = self.seconds, self.calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not main:
                return original(*args, **kwargs)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - started
                calls[label] += 1

        return timed

    def restore(self) -> None:
        """Put the original functions back."""
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()

    def report(self, total: float) -> dict[str, float]:
        """Seconds per phase; ``other`` is the rest of the run (the short-link insert, the
        transactions' begin and commit, the bookkeeping)."""
        out: dict[str, float] = {label: round(self.seconds[label], 3) for _, _, label in _PHASES}
        top = sum(v for k, v in self.seconds.items() if ":" not in k)
        out["other"] = round(total - top, 3)
        return out


def run_once(
    backend: str, mode: str, args: argparse.Namespace, root: Path, profile: Path | None
) -> Run:
    """Fill a fresh store, dispatch it to a fresh gateway (timed), and check the outcome."""
    n = args.scale
    os.environ["BAOKE_ALIYUN_ACCESS_KEY_ID"] = KEY_ID
    os.environ["BAOKE_ALIYUN_ACCESS_KEY_SECRET"] = KEY_SECRET
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=root))
    with fresh_store(backend, root) as (url, engine):
        lap = time.perf_counter()
        base = Settings(data_dir=data_dir, database_url=url)
        fill_store(engine, base, n)
        fill_seconds = time.perf_counter() - lap
        _, variables = playbook_facts(base, engine)
        gateway = Gateway(
            {TEMPLATE_CODE: variables}, profile is not None, args.gateway_latency / 1000
        )
        try:
            settings = settings_for(data_dir, url, gateway.url, mode, args)
            origin = [time.monotonic()]
            clock: Callable[[], dt.datetime]
            if args.fixed_clock:
                clock = lambda: START  # noqa: E731
            else:
                clock = lambda: START + dt.timedelta(seconds=time.monotonic() - origin[0])  # noqa: E731
            dispatcher = Dispatcher(settings, engine, clock=clock, worker="bench:1:0001")
            dispatcher.providers.check()  # the adapter and its connection pool, untimed
            senders = _SenderProfiles(dispatcher) if profile is not None else None
            main = cProfile.Profile() if profile is not None else None
            before = wait_idle(args.idle_below, args.idle_wait)
            gateway.mark()
            phases = Phases() if args.phases else None
            try:
                cpu, busy = _cpu_seconds(), _machine_busy()
                origin[0] = time.monotonic()
                if main is not None:
                    result = main.runcall(dispatcher.run, until_empty=True)
                else:
                    result = dispatcher.run(until_empty=True)
                cpu, busy = _cpu_seconds() - cpu, _machine_busy() - busy
            finally:
                if phases is not None:
                    phases.restore()
                dispatcher.close()
            stem = f"{backend}-{mode}"
            if profile is not None and main is not None and senders is not None:
                profile.mkdir(parents=True, exist_ok=True)
                main.dump_stats(str(profile / f"{stem}-main.prof"))
                senders.dump(profile / f"{stem}-senders.prof")
            found = gateway.stats(
                str(profile / f"{stem}-gateway.prof") if profile is not None else None
            )
        finally:
            gateway.close()
        problems = verify(engine, n, mode, result, found)
    shutil.rmtree(data_dir, ignore_errors=True)
    passes = -(-result.claimed // args.claim_size)  # claims of up to claim_size rows
    return Run(
        backend=backend,
        mode=mode,
        messages=n,
        seconds=result.seconds,
        requests=result.requests,
        gateway_requests=found["requests"],
        passes=passes,
        dispatcher_cpu=cpu,
        gateway_cpu=found["cpu_seconds"],
        machine_cpu=busy,
        fill_seconds=fill_seconds,
        busy_before=before,
        problems=problems,
        result=result.as_dict(),
        phases=phases.report(result.seconds) if phases is not None else {},
    )


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def _machine() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(x for x in info if x.startswith("model name")).split(":", 1)[1].strip()
    except (OSError, StopIteration):
        cpu = platform.processor() or "?"
    return (
        f"{platform.machine()} ({cpu}), {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}"
    )


def _pg_version() -> str:
    engine = create_engine(pg_url())
    with engine.connect() as conn:
        version = str(conn.execute(text("SHOW server_version")).scalar_one())
    engine.dispose()
    return f"PostgreSQL {version}"


def summarise(runs: list[Run]) -> dict[str, Any]:
    """Best and median of one backend and mode's runs."""
    best = min(runs, key=lambda r: r.seconds)
    median = statistics.median(r.seconds for r in runs)
    target = TARGETS[best.mode]
    return {
        "backend": best.backend,
        "mode": best.mode,
        "messages": best.messages,
        "runs": len(runs),
        "best_seconds": round(best.seconds, 3),
        "median_seconds": round(median, 3),
        "best_per_second": round(best.rate),
        "median_per_second": round(best.messages / median) if median else 0,
        "requests": best.requests,
        "passes": best.passes,
        "dispatcher_cpu_seconds": round(best.dispatcher_cpu, 2),
        "gateway_cpu_seconds": round(best.gateway_cpu, 2),
        "machine_cpu_seconds": round(best.machine_cpu, 2),
        "fill_seconds": round(statistics.median(r.fill_seconds for r in runs), 1),
        "busy_before_cores": round(best.busy_before, 2),
        "target_per_second": target,
        "target_met": best.rate >= target,
        "correct": all(not r.problems for r in runs),
        "problems": sorted({p for r in runs for p in r.problems}),
        "runs_detail": [asdict(r) | {"rate": round(r.rate)} for r in runs],
    }


def _phase_line(phases: dict[str, float]) -> str:
    return ", ".join(f"{label} {seconds:.2f}" for label, seconds in phases.items() if seconds)


def print_table(rows: list[dict[str, Any]], *, profiled: bool = False) -> None:
    """The results, one line per backend and mode (no verdict on profiled runs)."""
    header = (
        f"{'backend':<10} {'mode':<6} {'messages':>9} {'seconds':>8} {'median':>8} "
        f"{'msg/s':>7} {'med/s':>7} {'requests':>8} {'disp cpu':>8} {'gw cpu':>7} "
        f"{'machine':>7}  {'target':>12}  check"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        verdict = "profiled" if profiled else "met" if row["target_met"] else "NOT met"
        target = f">={row['target_per_second']:,.0f} {verdict}"
        check = "ok" if row["correct"] else "FAILED"
        print(
            f"{row['backend']:<10} {row['mode']:<6} {row['messages']:>9,} "
            f"{row['best_seconds']:>8.2f} {row['median_seconds']:>8.2f} "
            f"{row['best_per_second']:>7,} {row['median_per_second']:>7,} "
            f"{row['requests']:>8,} {row['dispatcher_cpu_seconds']:>8.1f} "
            f"{row['gateway_cpu_seconds']:>7.1f} {row['machine_cpu_seconds']:>7.1f}  "
            f"{target:>12}  {check}"
        )
    for row in rows:
        for problem in row["problems"]:
            print(f"  {row['backend']} {row['mode']}: {problem}")


def main() -> None:
    """Run the benchmark and print the table (or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=20_000, help="messages (default 20000)")
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument("--mode", choices=[*MODES, "both"], default="both")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (best and median)")
    parser.add_argument("--concurrency", type=int, default=32, help="[dispatch] concurrency")
    parser.add_argument("--claim-size", type=int, default=2_000, help="[dispatch] claim_size")
    parser.add_argument(
        "--max-per-minute",
        type=int,
        default=None,
        help="the monitor's runaway limit per batch (default: the project's, 600000)",
    )
    parser.add_argument(
        "--idle-below",
        type=float,
        default=0.25,
        help="before each run, wait until other work keeps fewer cores busy than this",
    )
    parser.add_argument(
        "--idle-wait", type=float, default=60.0, help="... for at most this many seconds"
    )
    parser.add_argument(
        "--gateway-latency",
        type=float,
        default=0.0,
        help="milliseconds the gateway waits before each answer (a provider's round trip)",
    )
    parser.add_argument("--fixed-clock", action="store_true", help="the clock stays at 10:00")
    parser.add_argument(
        "--phases", action="store_true", help="time the dispatcher's phases (wall seconds)"
    )
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats here")
    parser.add_argument("--workdir", type=Path, default=None, help="for the SQLite stores")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # A terminated bench still drops its PostgreSQL schema and stops its gateway.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.scale < 1 or args.repeat < 1:
        parser.error("--scale and --repeat must be at least 1")
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    modes = list(MODES) if args.mode == "both" else [args.mode]
    notes: list[str] = []
    if "postgresql" in backends:
        problem = pg_problem()
        if problem:
            backends.remove("postgresql")
            notes.append(f"PostgreSQL at {pg_url()} is not reachable ({problem}): skipped")
    machine = _machine()
    if "postgresql" in backends:
        machine += f", {_pg_version()}"
    if not args.json:
        print(machine)
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for note in notes:
            print(note)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="baoke-dispatch-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for backend in backends:
            for mode in modes:
                runs = []
                for _ in range(args.repeat):
                    run = run_once(backend, mode, args, root, args.profile)
                    runs.append(run)
                    if not args.json:
                        status = "ok" if not run.problems else "; ".join(run.problems)
                        print(
                            f"  {backend} {mode}: {run.messages:,} in {run.seconds:.2f}s "
                            f"({run.rate:,.0f}/s), {run.requests:,} requests, {run.passes} "
                            f"claims; cpu dispatcher {run.dispatcher_cpu:.1f}s, gateway "
                            f"{run.gateway_cpu:.1f}s, machine {run.machine_cpu:.1f}s (busy before "
                            f"{run.busy_before:.2f} cores); store "
                            f"filled in {run.fill_seconds:.1f}s; check: {status}",
                            flush=True,
                        )
                        if run.phases:
                            print("    phases (s): " + _phase_line(run.phases), flush=True)
                rows.append(summarise(runs))
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    settings_line = (
        f"concurrency {args.concurrency}, claim size {args.claim_size}, "
        f"clock {'fixed' if args.fixed_clock else 'running'} from {START.astimezone(ZONE):%H:%M} "
        f"local, max_per_minute {args.max_per_minute or 'default'}, gateway latency "
        f"{args.gateway_latency:g} ms"
    )
    if args.json:
        report = {
            "machine": machine,
            "settings": settings_line,
            "notes": notes,
            "scale": args.scale,
            "repeat": args.repeat,
            "profiled": args.profile is not None,
            "results": rows,
        }
        print(json.dumps(report, indent=2, default=str))
    else:
        print()
        print(f"{args.scale:,} messages, best of {args.repeat}; {settings_line}")
        print_table(rows, profiled=args.profile is not None)
    if any(not row["correct"] for row in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
