"""Properties of customer import over random files: every row counted once, merges by mobile,
and a second import of the same file changes nothing."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from baoke.ingest.pipeline import import_file
from baoke.store import models as m
from baoke.store.db import ensure_schema, make_engine

TZ = ZoneInfo("Asia/Shanghai")
MOBILES = ["13800138000", "13900139000", "13700137000", "15000150000"]
FORMATS = [lambda n: n, lambda n: f"+86 {n[:3]} {n[3:7]} {n[7:]}", lambda n: f"86-{n}"]

row = st.tuples(
    st.sampled_from(["D01", "D02", "D03"]),
    st.sampled_from(["", "C1", "C2", "C3"]),
    st.one_of(st.just(""), st.just("12345"), st.sampled_from(MOBILES)),
    st.integers(0, len(FORMATS) - 1),
    st.sampled_from(["", "张伟", "王芳"]),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row, min_size=1, max_size=25))
def test_customer_import_is_total_idempotent_and_merges_by_mobile(
    rows: list[tuple[str, str, str, int, str]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        engine = make_engine(f"sqlite:///{work / 'b.db'}")
        ensure_schema(engine)
        dealers = work / "dealers.csv"
        dealers.write_text("经销商代码,经销商名称\nD01,a\nD02,b\nD03,c\n", encoding="utf-8")
        import_file(engine, "dealers", dealers, tz=TZ)
        source = work / "customers.csv"
        with source.open("w", encoding="gbk", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["经销商代码", "客户编号", "手机号", "客户姓名"])
            for dealer, number, mobile, fmt, name in rows:
                shown = FORMATS[fmt](mobile) if mobile and mobile != "12345" else mobile
                writer.writerow([dealer, number, shown, name])

        first = import_file(engine, "customers", source, tz=TZ)
        total = first.inserted + first.updated + first.unchanged + first.merged
        assert total + first.quarantined == first.read == len(rows)

        bad = sum(
            1 for _, number, mobile, _, _ in rows if mobile == "12345" or not (mobile or number)
        )
        assert first.quarantined == bad

        with engine.connect() as conn:
            stored_mobiles = (
                conn.execute(select(m.Customer.mobile).where(m.Customer.mobile.is_not(None)))
                .scalars()
                .all()
            )
            identities = conn.execute(select(func.count()).select_from(m.CustomerIdentity))
            identity_count = identities.scalar_one()
        assert len(stored_mobiles) == len(set(stored_mobiles))  # one person per mobile
        valid_mobiles = {mob for _, _, mob, _, _ in rows if mob in MOBILES}
        assert {s[-11:] for s in stored_mobiles} >= valid_mobiles

        second = import_file(engine, "customers", source, tz=TZ)
        assert (second.inserted, second.updated, second.merged) == (0, 0, 0)
        assert second.unchanged == first.read - first.quarantined
        with engine.connect() as conn:
            assert (
                conn.execute(select(func.count()).select_from(m.CustomerIdentity)).scalar_one()
                == identity_count
            )
        engine.dispose()
