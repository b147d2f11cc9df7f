"""The profile: one row per customer as of a business date, and the record tables rules may read.

This catalogue is the contract between the feature engine (which fills ``profiles``), the rule
language (which validates field names and types against it) and everything downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from baoke.ingest.kinds import KINDS


class Kind(StrEnum):
    """Value kinds a rule can compare."""

    INT = "int"
    FLOAT = "float"
    MONEY = "money"  # integer fen in the table; rules may write yuan with a "¥" or "元"
    DATE = "date"
    TIMESTAMP = "timestamp"
    BOOL = "bool"
    TEXT = "text"
    TAGS = "tags"  # a list of text


@dataclass(frozen=True)
class Column:
    """One column of the profiles table or of a record table."""

    name: str
    kind: Kind
    label: str  # Chinese, for the UI and for explanations
    description: str = ""
    choices: tuple[str, ...] = ()


def _c(name: str, kind: Kind, label: str, description: str = "", *choices: str) -> Column:
    return Column(name, kind, label, description, tuple(choices))


K = Kind


def _enum(kind: str, field: str) -> tuple[str, ...]:
    """The canonical values of an import field's closed list: one source for both sides."""
    return tuple(KINDS[kind].field(field).choices)


ORDER_TYPES = _enum("service-orders", "order_type")
SEVERITIES = _enum("complaints", "severity")
COMPLAINT_STATUSES = _enum("complaints", "status")
LEAD_STAGES = _enum("leads", "stage")
LEAD_STATUSES = _enum("leads", "status")
LOST_REASONS = _enum("leads", "lost_reason")
DELETED_BY = _enum("wecom-relations", "deleted_by")

VALUE_TIERS = ("high", "mid", "low")
LIFECYCLE_STAGES = (
    "new_owner",  # 0-3 months after delivery
    "onboarding",  # 3-6 months after delivery
    "maintained",  # visited within the at-risk threshold
    "at_risk",  # 3-6 months without a visit (configurable)
    "lost",  # longer without a visit
    "prospect",  # not an owner, an open lead
    "lost_lead",  # not an owner, the latest lead was lost (战败)
    "contact",  # not an owner, no lead
)

PROFILE_COLUMNS: tuple[Column, ...] = (
    _c("customer_id", K.INT, "客户ID"),
    _c("as_of", K.DATE, "画像日期"),
    _c("home_dealer_id", K.INT, "归属门店"),
    _c("is_owner", K.BOOL, "是否车主"),
    _c("vehicle_count", K.INT, "车辆数"),
    _c("vehicle_id", K.INT, "主车辆ID", "the most recently delivered car"),
    _c("series", K.TEXT, "车系"),
    _c("model", K.TEXT, "车型"),
    _c("delivery_date", K.DATE, "交车日期"),
    _c("car_age_years", K.FLOAT, "车龄(年)"),
    _c("months_since_delivery", K.INT, "交车月数"),
    _c("spend_12m", K.MONEY, "近12个月售后消费"),
    _c("visits_12m", K.INT, "近12个月到店次数"),
    _c("spend_prev_12m", K.MONEY, "前12个月售后消费", "13-24 months before as_of"),
    _c("value_tier", K.TEXT, "价值等级", "by 12-month spend", *VALUE_TIERS),
    _c("lifecycle_stage", K.TEXT, "生命周期阶段", "", *LIFECYCLE_STAGES),
    _c("first_visit_date", K.DATE, "首次到店日期"),
    _c("last_visit_date", K.DATE, "最近到店日期"),
    _c("days_since_last_visit", K.INT, "距上次到店天数", "since delivery if never visited"),
    _c("visit_interval_days", K.INT, "平均到店间隔天数", "the owner's own rhythm"),
    _c("first_maintenance_done", K.BOOL, "是否已首保"),
    _c("last_maintenance_date", K.DATE, "最近保养日期"),
    _c("odometer_km", K.INT, "最新里程"),
    _c("odometer_date", K.DATE, "里程读数日期"),
    _c("km_per_day", K.FLOAT, "日均行驶里程"),
    _c("next_maintenance_due_date", K.DATE, "下次保养日期(预计)"),
    _c("next_maintenance_due_km", K.INT, "下次保养里程"),
    _c("days_to_maintenance", K.INT, "距下次保养天数"),
    _c("insurance_expiry", K.DATE, "保险到期日"),
    _c("days_to_insurance_expiry", K.INT, "距保险到期天数"),
    _c("warranty_end", K.DATE, "质保到期日"),
    _c("model_views_30d", K.INT, "近30天车型浏览次数"),
    _c("new_model_views_30d", K.INT, "近30天新车型浏览次数", "views of series other than own"),
    _c("app_active_90d", K.BOOL, "近90天App活跃"),
    _c("upgrade_intent", K.INT, "增换购意向分", "0-100"),
    _c("upgrade_reasons", K.TEXT, "增换购意向原因"),
    _c("churn_risk", K.INT, "流失风险分", "0-100"),
    _c("churn_reasons", K.TEXT, "流失风险原因"),
    _c("open_complaint", K.BOOL, "有未结投诉"),
    _c("open_complaint_severity", K.TEXT, "未结投诉等级", "", *SEVERITIES),
    _c("complaints_12m", K.INT, "近12个月投诉数"),
    _c("mobile_valid", K.BOOL, "手机号有效"),
    _c("sms_reachable", K.BOOL, "短信可触达"),
    _c("wecom_reachable", K.BOOL, "企微可触达"),
    _c("push_reachable", K.BOOL, "App推送可触达"),
    _c("email_reachable", K.BOOL, "邮件可触达"),
    _c("phone_reachable", K.BOOL, "电话可触达"),
    _c("unsubscribed_90d", K.BOOL, "近90天退订"),
    _c("wecom_deleted_by_customer", K.BOOL, "客户删除企微"),
    _c("lead_status", K.TEXT, "线索状态", "latest lead", *LEAD_STATUSES),
    _c("lead_stage", K.TEXT, "线索阶段", "", *LEAD_STAGES),
    _c(
        "lead_lost_reason",
        K.TEXT,
        "战败原因",
        "",
        *LOST_REASONS,
    ),
    _c("lead_model_of_interest", K.TEXT, "意向车型"),
    _c("lead_lost_on", K.DATE, "战败日期"),
    _c("age", K.INT, "年龄"),
    _c("city", K.TEXT, "城市"),
    _c("family", K.TEXT, "家庭情况"),
    _c("tags", K.TAGS, "标签", "imported tags plus auto-tags"),
)

# Record tables a rule may count over a window, with the columns a rule may filter on.
# Each has customer_id and the time column named here.
RECORD_TABLES: dict[str, tuple[str, tuple[Column, ...]]] = {
    "service_orders": (
        "settled_on",
        (
            _c(
                "order_type",
                K.TEXT,
                "工单类型",
                "",
                *ORDER_TYPES,
            ),
            _c("amount_fen", K.MONEY, "金额"),
            _c("mileage_km", K.INT, "里程"),
            _c("dealer_id", K.INT, "门店"),
            _c("settled_on", K.DATE, "结算日期"),
        ),
    ),
    "events": (
        "occurred_at",
        (
            _c("event_type", K.TEXT, "事件类型"),
            _c("source", K.TEXT, "来源"),
            _c("target", K.TEXT, "对象"),
            _c("occurred_at", K.TIMESTAMP, "发生时间"),
        ),
    ),
    "complaints": (
        "opened_at",
        (
            _c("severity", K.TEXT, "严重程度", "", *SEVERITIES),
            _c("status", K.TEXT, "状态", "", *COMPLAINT_STATUSES),
            _c("satisfaction", K.INT, "满意度"),
            _c("opened_at", K.TIMESTAMP, "投诉时间"),
        ),
    ),
    "leads": (
        "created_on",
        (
            _c("stage", K.TEXT, "阶段", "", *LEAD_STAGES),
            _c("status", K.TEXT, "状态", "", *LEAD_STATUSES),
            _c(
                "lost_reason",
                K.TEXT,
                "战败原因",
                "",
                *LOST_REASONS,
            ),
            _c("model_of_interest", K.TEXT, "意向车型"),
            _c("created_on", K.DATE, "创建日期"),
            _c("lost_on", K.DATE, "战败日期"),
        ),
    ),
    "wecom_relations": (
        "added_at",
        (
            _c("state", K.TEXT, "渠道码"),
            _c("deleted_by", K.TEXT, "删除方", "", *DELETED_BY),
            _c("added_at", K.TIMESTAMP, "添加时间"),
            _c("deleted_at", K.TIMESTAMP, "删除时间"),
        ),
    ),
}


def profile_column(name: str) -> Column:
    """The profile column called ``name`` (KeyError if none)."""
    for column in PROFILE_COLUMNS:
        if column.name == name:
            return column
    raise KeyError(name)
