"""The events baoke understands: their names, attributes and what the journeys do with them.

One table serves three readers: the event file reader (what a row must carry), the playbook
parser (what a trigger's ``where`` may test) and the journey engine (which events end a journey
with its goal met, which are outcomes of a touch or a task, which are about a car model rather
than a customer).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CALL_OUTCOMES",
    "EVENT_TYPES",
    "GOAL_OF_EVENT",
    "MODEL_EVENTS",
    "TOUCH_STATUSES",
    "UNSUBSCRIBE_KEYWORDS",
    "Attribute",
    "EventType",
]

SEVERITIES = ("severe", "medium", "light")
LOST_REASONS = ("price", "configuration", "delivery_time", "competitor", "unknown")
LEAD_STAGES = ("inquiry", "visit", "test_drive", "quote")
ORDER_TYPES = ("maintenance", "repair", "claim", "accessory", "insurance")
CALL_OUTCOMES = ("connected", "not_connected", "refused", "booked", "wrong_number")
"""What a staff member logs after a call task."""
TOUCH_STATUSES = ("sent", "delivered", "failed", "opened", "clicked", "replied")
"""Statuses a provider (or the dispatcher) reports for a touch."""
UNSUBSCRIBE_KEYWORDS = ("TD", "T", "退订", "N", "取消", "STOP", "UNSUBSCRIBE")
"""Replies that unsubscribe at once (compared after trimming, case-insensitive)."""
MESSAGE_CHANNELS = ("sms", "wecom", "push", "email")


@dataclass(frozen=True)
class Attribute:
    """One attribute of an event: its name, closed choices (None: free text) and kind."""

    name: str
    choices: tuple[str, ...] | None = None
    required: bool = False
    kind: str = "text"  # text / int


@dataclass(frozen=True)
class EventType:
    """An event name with its attributes; ``customer`` False for events about a car model."""

    name: str
    label: str
    attributes: tuple[Attribute, ...] = ()
    customer: bool = True
    trigger: bool = True  # a playbook may start on it

    def attribute(self, name: str) -> Attribute | None:
        """The attribute called ``name``, if the event has one."""
        return next((a for a in self.attributes if a.name == name), None)


def _t(
    name: str, label: str, *attrs: Attribute, customer: bool = True, trigger: bool = True
) -> EventType:
    return EventType(name, label, attrs, customer, trigger)


_MODEL = (Attribute("model"), Attribute("series"))

EVENT_TYPES: dict[str, EventType] = {
    e.name: e
    for e in (
        _t("vehicle_delivered", "交车", Attribute("series"), Attribute("model"), Attribute("vin")),
        _t(
            "service_visit", "进店维保", Attribute("order_type", ORDER_TYPES), Attribute("order_no")
        ),
        _t("first_maintenance_done", "首保完成"),
        _t(
            "complaint_opened",
            "投诉受理",
            Attribute("severity", SEVERITIES, required=True),
            Attribute("complaint_no"),
        ),
        _t(
            "complaint_resolved",
            "投诉解决",
            Attribute("severity", SEVERITIES),
            Attribute("complaint_no"),
        ),
        _t("wecom_friend_added", "添加企微好友", Attribute("channel_code"), Attribute("staff_no")),
        _t(
            "wecom_friend_deleted",
            "删除企微好友",
            Attribute("deleted_by", ("customer", "staff"), required=True),
            Attribute("staff_no"),
        ),
        _t(
            "reply_keyword",
            "客户回复",
            Attribute("keyword", required=True),
            Attribute("channel", MESSAGE_CHANNELS),
        ),
        _t(
            "call_outcome",
            "通话结果",
            Attribute("outcome", CALL_OUTCOMES, required=True),
            Attribute("task_id", kind="int"),
        ),
        _t(
            "lead_lost",
            "线索战败",
            Attribute("lost_reason", LOST_REASONS, required=True),
            Attribute("stage", LEAD_STAGES),
            Attribute("lead_no"),
        ),
        _t(
            "referral_stage",
            "推荐进展",
            Attribute("stage", ("registered", "test_drive", "purchase"), required=True),
            Attribute("referee_name"),
        ),
        _t("price_change", "车型降价/促销", *_MODEL, customer=False),
        _t("stock_arrival", "车型到货", *_MODEL, customer=False),
        _t("new_model_launch", "新车型上市", *_MODEL, customer=False),
        _t(
            "points_changed",
            "积分变动",
            Attribute(
                "reason",
                ("purchase", "service", "referral", "activity", "redemption"),
                required=True,
            ),
            Attribute("points", kind="int"),
        ),
        _t("booking", "预约到店", Attribute("booked_for"), trigger=False),
        _t("test_drive", "试驾", Attribute("model"), trigger=False),
        _t("purchase", "购车", Attribute("model"), trigger=False),
        _t(
            "touch_status",
            "触达状态回执",
            Attribute("touch", required=True),
            Attribute("status", TOUCH_STATUSES, required=True),
            trigger=False,
        ),
        _t("unsubscribe", "退订", Attribute("channel", MESSAGE_CHANNELS), trigger=False),
    )
}
"""Every event type, by name."""

MODEL_EVENTS = tuple(e.name for e in EVENT_TYPES.values() if not e.customer)
"""Events about a car model: they reach the customers interested in it (lost leads)."""

GOAL_OF_EVENT: dict[str, str] = {
    "service_visit": "visit",
    "first_maintenance_done": "visit",
    "booking": "booking",
    "purchase": "purchase",
    "vehicle_delivered": "purchase",
    "test_drive": "test_drive",
}
"""Which playbook goal (``goal.event``) an event meets."""
