"""Profile features as set-based SQL over the snapshot tables.

Written in DuckDB's dialect and transpiled with sqlglot for Spark, so the same definitions run
on both engines. Every feature is a column of ``profiles``; see ``schema.PROFILE_COLUMNS``.
Scores are additive points with a readable reason per contribution, so an operator can see why
a customer scores what it does.

The query has two halves. The *facts* (``facts_sql``) aggregate each customer's records:
visits and spend, maintenance, mileage, events, complaints, consents, WeCom, leads. They change
only when a record does or when a record crosses the edge of a window (a visit leaving the
last 12 months); ``crossing_sql`` names the customers for whom that happens between two days.
The *projection* (``projection_sql``) turns facts into the profile of a day: days since the
last visit, car age, lifecycle stage, scores and reasons. A daily refresh recomputes the facts
of the customers that changed and projects everyone (see ``profiles.facts``); ``profile_sql``
is both halves in one query, for a whole recompute and for Spark.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import sqlglot

from baoke.config import ProfileSettings


def day_start_utc(day: dt.date, zone: ZoneInfo) -> str:
    """Midnight of a business day, as a naive UTC timestamp literal (events are stored in UTC)."""
    local = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    return local.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


# The filters that restrict the facts to the customers in ``facts_dirty`` (customer_id): on
# every input, so the aggregates read only those customers' rows. A vehicle's orders and
# readings are kept by vehicle as well, since its maintenance history stays with the car.
_ONLY_DIRTY = {
    "only_customers": "AND customer_id IN (SELECT customer_id FROM facts_dirty)",
    "only_orders": (
        "AND (customer_id IN (SELECT customer_id FROM facts_dirty) "
        "OR vehicle_id IN (SELECT vehicle_id FROM pv))"
    ),
    "only_vehicles": "AND vehicle_id IN (SELECT vehicle_id FROM pv)",
    "only_events": "AND e.customer_id IN (SELECT customer_id FROM facts_dirty)",
    "only_rows": "WHERE c.id IN (SELECT customer_id FROM facts_dirty)",
}
_EVERYONE = dict.fromkeys(_ONLY_DIRTY, "")


def _edges(as_of: dt.date, zone: ZoneInfo) -> dict[str, str]:
    """The day and the window edges of ``as_of`` as SQL literals (times in naive UTC)."""

    def at(days: int) -> str:
        return f"TIMESTAMP '{day_start_utc(as_of + dt.timedelta(days=days), zone)}'"

    return {
        "as_of": day_literal(as_of),
        "end": at(1),
        "d30": at(-29),
        "d90": at(-89),
        "d365": at(-364),
    }


def _thresholds(cfg: ProfileSettings) -> dict[str, object]:
    return {
        "high": cfg.tier_high_yuan * 100,
        "mid": cfg.tier_mid_yuan * 100,
        "km_day": cfg.default_km_per_year / 365.0,
        "ikm": cfg.maintenance_interval_km,
        "imon": cfg.maintenance_interval_months,
        "fkm": cfg.first_maintenance_km,
        "fmon": cfg.first_maintenance_months,
        "newm": cfg.new_owner_months,
        "onbm": cfg.onboarding_months,
        "risk": cfg.at_risk_days,
        "lost": cfg.lost_days,
    }


def profile_sql(as_of: dt.date, cfg: ProfileSettings, zone: ZoneInfo) -> str:
    """The query that computes every profile column for every customer, as of ``as_of``."""
    counters = {name: counter_sql(name, as_of) for name in COUNTERS}
    p = {**_edges(as_of, zone), **_thresholds(cfg), **_EVERYONE, "facts": "facts", **counters}
    return (
        f"WITH\n{_FACTS_CTES.format(**p)},\nfacts AS ({_FACTS_SELECT.format(**p)}),\n"
        f"{_PROJECTION.format(**p)}"
    )


def facts_sql(as_of: dt.date, cfg: ProfileSettings, zone: ZoneInfo, *, dirty: bool) -> str:
    """The facts of every customer as of ``as_of`` (``dirty``: only those in ``facts_dirty``)."""
    p = {**_edges(as_of, zone), **_thresholds(cfg), **(_ONLY_DIRTY if dirty else _EVERYONE)}
    return f"WITH\n{_FACTS_CTES.format(**p)}\n{_FACTS_SELECT.format(**p)}"


# The day counts, each from the profile's own columns and the day: the projection computes
# them so, and the daily roll (``profiles.daily``) moves every stored profile's on in place.
COUNTERS = {
    "days_since_last_visit": (
        "CASE WHEN is_owner THEN DATE_DIFF('day', COALESCE(last_visit_date, delivery_date), "
        "{as_of}) END"
    ),
    "days_to_maintenance": "DATE_DIFF('day', {as_of}, next_maintenance_due_date)",
    "days_to_insurance_expiry": "DATE_DIFF('day', {as_of}, insurance_expiry)",
}

# The profile columns that move with the day alone; every other column is a function of the
# customer's facts. The day counts move every day; the rest (``STEPPED``) only now and then,
# as a threshold is crossed: a stage, a score's step, a year of age. A test projects the same
# facts to days far apart and holds every column outside these still.
DAY_COLUMNS = (
    "as_of",
    *COUNTERS,
    "car_age_years",
    "months_since_delivery",
    "lifecycle_stage",
    "upgrade_intent",
    "upgrade_reasons",
    "churn_risk",
    "churn_reasons",
    "age",
)
STEPPED = tuple(c for c in DAY_COLUMNS if c != "as_of" and c not in COUNTERS)


def day_literal(as_of: dt.date) -> str:
    """A day as a DuckDB date literal."""
    return f"DATE '{as_of.isoformat()}'"


def counter_sql(name: str, as_of: dt.date) -> str:
    """The day count ``name`` (a key of ``COUNTERS``) as of ``as_of``, over a profile row."""
    return COUNTERS[name].format(as_of=day_literal(as_of))


def projection_sql(as_of: dt.date, cfg: ProfileSettings, facts: str) -> str:
    """Every profile column as of ``as_of``, from the facts in ``facts`` (a table's name, or a
    parenthesised query)."""
    counters = {name: counter_sql(name, as_of) for name in COUNTERS}
    p = {"as_of": day_literal(as_of), **_thresholds(cfg), "facts": facts, **counters}
    return f"WITH\n{_PROJECTION.format(**p)}"


def crossing_sql(since: dt.date, as_of: dt.date, zone: ZoneInfo) -> str:
    """The customers with a record that enters or leaves a window of the facts between the
    day ``since`` (excluded) and ``as_of``: their facts as of ``since`` are stale, though none
    of their records changed.

    Each condition mirrors one in ``_FACTS_CTES``, and names only the records that move a
    fact: a record dated after ``since`` and by ``as_of`` comes into view; a visit leaves the
    last 12 months 365 days after it (and the 12 months before those after 730); a model view
    leaves the 30 days; the last app event of the 90 days leaves them; a complaint or a
    customer's WeCom deletion leaves the 12 months, a marketing withdrawal the 90 days.
    """
    old, new = _edges(since, zone), _edges(as_of, zone)

    def between(column: str, edge: str) -> str:
        return f"({column} >= {old[edge]} AND {column} < {new[edge]})"

    def days(column: str, back: int = 0) -> str:
        return (
            f"({column} > {old['as_of']} - INTERVAL {back} DAY "
            f"AND {column} <= {new['as_of']} - INTERVAL {back} DAY)"
        )

    delivered = "COALESCE(delivery_date, purchase_date)"
    return f"""
        SELECT customer_id FROM vehicles WHERE {days(delivered)}
        UNION ALL
        SELECT customer_id FROM service_orders
        WHERE {days("settled_on")} OR {days("settled_on", 365)} OR {days("settled_on", 730)}
        UNION ALL
        SELECT v.customer_id FROM service_orders o JOIN vehicles v ON v.id = o.vehicle_id
        WHERE {days("o.settled_on")}
        UNION ALL
        SELECT v.customer_id FROM mileage_readings r JOIN vehicles v ON v.id = r.vehicle_id
        WHERE {days("r.read_on")}
        UNION ALL
        SELECT customer_id FROM events
        WHERE ({between("occurred_at", "end")} AND (event_type = 'model_view' OR source = 'app'))
           OR ({between("occurred_at", "d30")} AND event_type = 'model_view')
        UNION ALL
        SELECT customer_id FROM events
        WHERE source = 'app' AND occurred_at >= {old["d90"]} AND occurred_at < {new["end"]}
        GROUP BY customer_id HAVING max(occurred_at) < {new["d90"]}
        UNION ALL
        SELECT customer_id FROM complaints
        WHERE {between("opened_at", "end")} OR {between("opened_at", "d365")}
        UNION ALL
        SELECT customer_id FROM consents
        WHERE purpose = 'marketing'
          AND ({between("withdrawn_at", "end")} OR {between("withdrawn_at", "d90")})
        UNION ALL
        SELECT customer_id FROM wecom_relations
        WHERE {between("added_at", "end")} OR {between("deleted_at", "end")}
           OR ({between("deleted_at", "d365")} AND deleted_by = 'customer')
        UNION ALL
        SELECT customer_id FROM leads WHERE {days("created_on")}
    """


def spark_sql(sql: str) -> str:
    """The same query in Spark SQL."""
    return sqlglot.transpile(sql, read="duckdb", write="spark")[0]


_FACTS_CTES = """
veh AS (
    SELECT customer_id, id AS vehicle_id, series, model,
           COALESCE(delivery_date, purchase_date) AS delivery_date,
           insurance_expiry, warranty_end,
           COUNT(*) OVER (PARTITION BY customer_id) AS vehicle_count,
           ROW_NUMBER() OVER (
               PARTITION BY customer_id
               ORDER BY COALESCE(delivery_date, purchase_date) DESC, id DESC
           ) AS rn
    FROM vehicles
    WHERE customer_id IS NOT NULL AND COALESCE(delivery_date, purchase_date) <= {as_of}
          {only_customers}
),
pv AS (SELECT * FROM veh WHERE rn = 1),
so AS (SELECT * FROM service_orders WHERE settled_on <= {as_of} {only_orders}),
-- One row per customer and visit day first: counting visit days is then a plain count,
-- much cheaper than COUNT(DISTINCT) over every order.
so_days AS (
    SELECT customer_id, settled_on, SUM(amount_fen) AS amount_fen
    FROM so GROUP BY customer_id, settled_on
),
visits AS (
    SELECT customer_id,
           CAST(SUM(CASE WHEN settled_on > {as_of} - INTERVAL 365 DAY
                         THEN amount_fen ELSE 0 END) AS BIGINT) AS spend_12m,
           CAST(SUM(CASE WHEN settled_on > {as_of} - INTERVAL 365 DAY THEN 1 ELSE 0 END)
                AS BIGINT) AS visits_12m,
           CAST(SUM(CASE WHEN settled_on > {as_of} - INTERVAL 730 DAY
                          AND settled_on <= {as_of} - INTERVAL 365 DAY
                         THEN amount_fen ELSE 0 END) AS BIGINT) AS spend_prev_12m,
           MIN(settled_on) AS first_visit_date,
           MAX(settled_on) AS last_visit_date,
           COUNT(*) AS visit_days
    FROM so_days GROUP BY customer_id
),
maint AS (
    SELECT vehicle_id, MAX(settled_on) AS last_maintenance_date,
           MAX_BY(mileage_km, settled_on) AS last_maintenance_km
    FROM so WHERE order_type = 'maintenance' GROUP BY vehicle_id
),
odo AS (
    SELECT vehicle_id, MAX_BY(km, d) AS odometer_km, MAX(d) AS odometer_date
    FROM (
        SELECT vehicle_id, mileage_km AS km, settled_on AS d FROM so WHERE mileage_km IS NOT NULL
        UNION ALL
        SELECT vehicle_id, odometer_km AS km, read_on AS d FROM mileage_readings
        WHERE read_on <= {as_of} {only_vehicles}
    ) readings GROUP BY vehicle_id
),
ev AS (
    SELECT e.customer_id,
           CAST(SUM(CASE WHEN e.event_type = 'model_view' AND e.occurred_at >= {d30}
                         THEN 1 ELSE 0 END) AS BIGINT) AS model_views_30d,
           CAST(SUM(CASE WHEN e.event_type = 'model_view' AND e.occurred_at >= {d30}
                     AND e.target IS NOT NULL AND e.target <> COALESCE(pv.series, '')
                    THEN 1 ELSE 0 END) AS BIGINT) AS new_model_views_30d,
           MAX(CASE WHEN e.source = 'app' THEN 1 ELSE 0 END) AS app_active_90d
    FROM events e LEFT JOIN pv ON pv.customer_id = e.customer_id
    WHERE e.occurred_at >= {d90} AND e.occurred_at < {end} {only_events}
    GROUP BY e.customer_id
),
comp AS (
    SELECT customer_id,
           MAX(CASE WHEN status IN ('open', 'in_progress') THEN
                   CASE severity WHEN 'severe' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END
               END) AS open_level,
           CAST(SUM(CASE WHEN opened_at >= {d365} THEN 1 ELSE 0 END) AS BIGINT) AS complaints_12m
    FROM complaints WHERE opened_at < {end} {only_customers} GROUP BY customer_id
),
cons AS (
    SELECT customer_id,
           MAX(CASE WHEN channel = 'sms' AND granted AND (withdrawn_at IS NULL
                    OR withdrawn_at >= {end}) THEN 1 ELSE 0 END) AS sms_ok,
           MAX(CASE WHEN channel = 'wecom' AND NOT granted THEN 1 ELSE 0 END) AS wecom_refused,
           MAX(CASE WHEN channel = 'push' AND granted AND (withdrawn_at IS NULL
                    OR withdrawn_at >= {end}) THEN 1 ELSE 0 END) AS push_ok,
           MAX(CASE WHEN channel = 'email' AND granted AND (withdrawn_at IS NULL
                    OR withdrawn_at >= {end}) THEN 1 ELSE 0 END) AS email_ok,
           MAX(CASE WHEN channel = 'phone' AND granted AND (withdrawn_at IS NULL
                    OR withdrawn_at >= {end}) THEN 1 ELSE 0 END) AS phone_ok,
           MAX(CASE WHEN withdrawn_at >= {d90} AND withdrawn_at < {end} THEN 1 ELSE 0 END)
               AS unsubscribed_90d
    FROM consents WHERE purpose = 'marketing' {only_customers} GROUP BY customer_id
),
wc AS (
    SELECT customer_id,
           MAX(CASE WHEN added_at < {end} AND (deleted_at IS NULL OR deleted_at >= {end})
                    THEN 1 ELSE 0 END) AS wecom_friend,
           MAX(CASE WHEN deleted_by = 'customer' AND deleted_at >= {d365} AND deleted_at < {end}
                    THEN 1 ELSE 0 END) AS wecom_deleted
    FROM wecom_relations WHERE customer_id IS NOT NULL {only_customers} GROUP BY customer_id
),
ld AS (
    SELECT customer_id, status AS lead_status, stage AS lead_stage,
           lost_reason AS lead_lost_reason, model_of_interest AS lead_model_of_interest,
           lost_on AS lead_lost_on
    FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY created_on DESC, id DESC)
            AS rn
        FROM leads WHERE customer_id IS NOT NULL AND created_on <= {as_of} {only_customers}
    ) ranked WHERE rn = 1
)
"""

_FACTS_SELECT = """
-- One row per customer of what its profile is made of: nothing here moves with the day
-- itself, only with the records (and with records crossing a window's edge, which
-- ``crossing_sql`` finds), so a daily refresh recomputes it for the customers that changed.
SELECT c.id AS customer_id,
       c.home_dealer_id,
       pv.vehicle_id IS NOT NULL AS is_owner,
       COALESCE(pv.vehicle_count, 0) AS vehicle_count,
       pv.vehicle_id, pv.series, pv.model, pv.delivery_date,
       COALESCE(v.spend_12m, 0) AS spend_12m,
       COALESCE(v.visits_12m, 0) AS visits_12m,
       COALESCE(v.spend_prev_12m, 0) AS spend_prev_12m,
       v.first_visit_date, v.last_visit_date,
       CASE WHEN v.visit_days > 1 THEN CAST(ROUND(
           DATE_DIFF('day', v.first_visit_date, v.last_visit_date) / (v.visit_days - 1))
           AS BIGINT) END AS visit_interval_days,
       CASE WHEN pv.vehicle_id IS NOT NULL THEN m.last_maintenance_date IS NOT NULL END
           AS first_maintenance_done,
       m.last_maintenance_date,
       m.last_maintenance_km,
       o.odometer_km, o.odometer_date,
       CASE WHEN o.odometer_km > 0 AND DATE_DIFF('day', pv.delivery_date, o.odometer_date) >= 30
            THEN o.odometer_km / DATE_DIFF('day', pv.delivery_date, o.odometer_date)
            ELSE {km_day} END AS km_per_day,
       pv.insurance_expiry, pv.warranty_end,
       COALESCE(e.model_views_30d, 0) AS model_views_30d,
       COALESCE(e.new_model_views_30d, 0) AS new_model_views_30d,
       COALESCE(e.app_active_90d, 0) = 1 AS app_active_90d,
       cp.open_level,
       COALESCE(cp.complaints_12m, 0) AS complaints_12m,
       c.mobile IS NOT NULL AND c.mobile_status = 'valid' AS mobile_valid,
       COALESCE(cs.sms_ok, 0) = 1 AS sms_ok,
       COALESCE(cs.wecom_refused, 0) = 1 AS wecom_refused,
       COALESCE(cs.push_ok, 0) = 1 AS push_ok,
       COALESCE(cs.email_ok, 0) = 1 AS email_ok,
       COALESCE(cs.phone_ok, 0) = 1 AS phone_ok,
       COALESCE(cs.unsubscribed_90d, 0) = 1 AS unsubscribed_90d,
       COALESCE(w.wecom_friend, 0) = 1 AS wecom_friend,
       COALESCE(w.wecom_deleted, 0) = 1 AS wecom_deleted_by_customer,
       l.lead_status, l.lead_stage, l.lead_lost_reason, l.lead_model_of_interest,
       l.lead_lost_on,
       c.birthday, c.city, c.family, c.email, c.tags AS imported_tags
FROM customers c
LEFT JOIN pv ON pv.customer_id = c.id
LEFT JOIN visits v ON v.customer_id = c.id
LEFT JOIN maint m ON m.vehicle_id = pv.vehicle_id
LEFT JOIN odo o ON o.vehicle_id = pv.vehicle_id
LEFT JOIN ev e ON e.customer_id = c.id
LEFT JOIN comp cp ON cp.customer_id = c.id
LEFT JOIN cons cs ON cs.customer_id = c.id
LEFT JOIN wc w ON w.customer_id = c.id
LEFT JOIN ld l ON l.customer_id = c.id
{only_rows}
"""

_PROJECTION = """
dated AS (
    SELECT *,
           {as_of} AS as_of,
           ROUND(DATE_DIFF('day', delivery_date, {as_of}) / 365.25, 1) AS car_age_years,
           CAST(FLOOR(DATE_DIFF('day', delivery_date, {as_of}) / 30.4375) AS BIGINT)
               AS months_since_delivery,
           DATE_DIFF('day', COALESCE(last_visit_date, delivery_date), {as_of})
               AS days_since_last_visit,
           CAST(FLOOR(DATE_DIFF('day', birthday, {as_of}) / 365.25) AS BIGINT) AS age
    FROM {facts}
),
due AS (
    SELECT *,
           CASE WHEN NOT is_owner THEN NULL
                WHEN last_maintenance_date IS NULL THEN CAST(LEAST(
                    delivery_date + INTERVAL {fmon} MONTH,
                    delivery_date + CAST(CEIL({fkm} / km_per_day) AS INTEGER)) AS DATE)
                ELSE CAST(LEAST(
                    last_maintenance_date + INTERVAL {imon} MONTH,
                    last_maintenance_date + CAST(CEIL({ikm} / km_per_day) AS INTEGER)) AS DATE)
           END AS next_maintenance_due_date,
           CASE WHEN NOT is_owner THEN NULL
                WHEN last_maintenance_date IS NULL THEN {fkm}
                ELSE COALESCE(last_maintenance_km, odometer_km, 0) + {ikm}
           END AS next_maintenance_due_km,
           CASE WHEN NOT is_owner THEN NULL
                WHEN months_since_delivery < {newm} THEN 'new_owner'
                WHEN months_since_delivery < {onbm} THEN 'onboarding'
                WHEN days_since_last_visit < {risk} THEN 'maintained'
                WHEN days_since_last_visit < {lost} THEN 'at_risk'
                ELSE 'lost' END AS owner_stage,
           GREATEST(90, LEAST(365, COALESCE(visit_interval_days, 180))) AS rhythm
    FROM dated
),
scored AS (
    SELECT *,
        -- upgrade intent: points per signal (DOMAIN: car >= 5 years + new-model views …)
        CASE WHEN car_age_years >= 8 THEN 40 WHEN car_age_years >= 5 THEN 30 ELSE 0 END
            AS up_age,
        LEAST(30, 10 * new_model_views_30d) AS up_views,
        CASE WHEN odometer_km >= 100000 THEN 15 ELSE 0 END AS up_km,
        CASE WHEN lead_status = 'open' THEN 20 ELSE 0 END AS up_lead,
        CASE WHEN family LIKE '%孩%' OR family LIKE '%二胎%' THEN 10 ELSE 0 END AS up_family,
        -- churn risk: overdue against the owner's own rhythm, then aggravating signals.
        -- 50 × (days / rhythm − 0.8) in integers (decimal and double arithmetic in DuckDB
        -- and Spark would round differently at the boundaries), in steps of 5 so a score
        -- moves every few weeks, not every day, and stored profiles stay stable.
        CASE WHEN is_owner THEN CAST(LEAST(50, GREATEST(0,
            (days_since_last_visit * 50 - rhythm * 40) // rhythm // 5 * 5)) AS BIGINT) ELSE 0 END
            AS ch_late,
        CASE WHEN spend_prev_12m > 0 AND spend_12m < spend_prev_12m * 0.5 THEN 15 ELSE 0 END
            AS ch_spend,
        CASE WHEN open_level = 3 THEN 20 WHEN open_level IS NOT NULL THEN 15
             WHEN complaints_12m > 0 THEN 10 ELSE 0 END AS ch_complaint,
        CASE WHEN unsubscribed_90d THEN 10 ELSE 0 END AS ch_unsub,
        CASE WHEN wecom_deleted_by_customer THEN 15 ELSE 0 END AS ch_wecom,
        CASE WHEN is_owner AND NOT first_maintenance_done AND months_since_delivery >= 9
             THEN 10 ELSE 0 END AS ch_first
    FROM due
)
SELECT
    customer_id, as_of, home_dealer_id, is_owner, vehicle_count, vehicle_id, series, model,
    delivery_date, car_age_years, months_since_delivery,
    spend_12m, visits_12m, spend_prev_12m,
    CASE WHEN NOT is_owner THEN NULL WHEN spend_12m >= {high} THEN 'high'
         WHEN spend_12m >= {mid} THEN 'mid' ELSE 'low' END AS value_tier,
    COALESCE(owner_stage, CASE WHEN lead_status = 'open' THEN 'prospect'
                               WHEN lead_status = 'lost' THEN 'lost_lead'
                               ELSE 'contact' END) AS lifecycle_stage,
    first_visit_date, last_visit_date,
    {days_since_last_visit} AS days_since_last_visit,
    visit_interval_days, first_maintenance_done, last_maintenance_date,
    -- Rounded half up by hand: ROUND on a double breaks ties differently on DuckDB and Spark.
    odometer_km, odometer_date, FLOOR(km_per_day * 100 + 0.5) / 100 AS km_per_day,
    next_maintenance_due_date, next_maintenance_due_km,
    {days_to_maintenance} AS days_to_maintenance,
    insurance_expiry, {days_to_insurance_expiry} AS days_to_insurance_expiry,
    warranty_end, model_views_30d, new_model_views_30d, app_active_90d,
    CAST(CASE WHEN NOT is_owner THEN up_views + up_lead
         WHEN months_since_delivery < 12 THEN LEAST(10, up_views)
         ELSE LEAST(100, up_age + up_views + up_km + up_lead + up_family) END AS INTEGER)
        AS upgrade_intent,
    NULLIF(CONCAT_WS('；',
        CASE WHEN is_owner AND months_since_delivery < 12 THEN '新车车主，不推新车' END,
        CASE WHEN up_age > 0 AND months_since_delivery >= 12
             THEN '车龄' || CAST(car_age_years AS VARCHAR) || '年' END,
        CASE WHEN up_views > 0 THEN '近30天浏览其他车型' || CAST(new_model_views_30d AS VARCHAR)
             || '次' END,
        CASE WHEN up_km > 0 AND months_since_delivery >= 12 THEN '里程'
             || CAST(ROUND(odometer_km / 10000.0, 1) AS VARCHAR) || '万公里' END,
        CASE WHEN up_lead > 0 THEN '有在跟进的购车线索' END,
        CASE WHEN up_family > 0 AND months_since_delivery >= 12 THEN '家庭情况: ' || family END
    ), '') AS upgrade_reasons,
    CAST(CASE WHEN is_owner THEN LEAST(100,
        ch_late + ch_spend + ch_complaint + ch_unsub + ch_wecom + ch_first) END AS INTEGER)
        AS churn_risk,
    CASE WHEN is_owner THEN NULLIF(CONCAT_WS('；',
        -- The last visit's date, not a day count: the reason then changes only when the
        -- situation does.
        CASE WHEN ch_late > 0 THEN '上次到店' || CAST(COALESCE(last_visit_date, delivery_date)
             AS VARCHAR) || '，超出自身节奏(约' || CAST(rhythm AS VARCHAR) || '天一次)' END,
        CASE WHEN ch_spend > 0 THEN '消费下降: 近12个月¥' || CAST(spend_12m // 100 AS VARCHAR)
             || '，前12个月¥' || CAST(spend_prev_12m // 100 AS VARCHAR) END,
        CASE WHEN open_level IS NOT NULL THEN '有未结投诉'
             WHEN ch_complaint > 0 THEN '近12个月有投诉' END,
        CASE WHEN ch_unsub > 0 THEN '近90天退订' END,
        CASE WHEN ch_wecom > 0 THEN '客户删除了企微好友' END,
        CASE WHEN ch_first > 0 THEN '首保未做' END
    ), '') END AS churn_reasons,
    open_level IS NOT NULL AS open_complaint,
    CASE open_level WHEN 3 THEN 'severe' WHEN 2 THEN 'medium' WHEN 1 THEN 'light' END
        AS open_complaint_severity,
    complaints_12m, mobile_valid,
    mobile_valid AND sms_ok AS sms_reachable,
    wecom_friend AND NOT wecom_refused AS wecom_reachable,
    push_ok AND app_active_90d AS push_reachable,
    email IS NOT NULL AND email_ok AS email_reachable,
    mobile_valid AND phone_ok AS phone_reachable,
    unsubscribed_90d, wecom_deleted_by_customer,
    lead_status, lead_stage, lead_lost_reason, lead_model_of_interest, lead_lost_on,
    age, city, family, imported_tags
FROM scored
"""
