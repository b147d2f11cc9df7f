"""What each import KIND contains: its canonical fields, their types, and common DMS headers.

A field's ``headers`` are the column names recognised for it out of the box; the first one is
the Chinese header the synthetic generator writes. Matching ignores case, spaces, underscores and
full-width brackets, so ``手机号码``, ``Mobile`` and ``mobile_no`` all land on ``mobile``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FieldType(StrEnum):
    """How a raw cell is parsed and validated."""

    TEXT = "text"
    CODE = "code"  # identifiers: trimmed, upper-cased, inner spaces removed
    MOBILE = "mobile"
    EMAIL = "email"
    VIN = "vin"
    DATE = "date"
    DATETIME = "datetime"
    TIME = "time"
    MONEY = "money"  # yuan in the file, integer fen in the store
    INT = "int"
    BOOL = "bool"
    ENUM = "enum"
    JSON = "json"
    TAGS = "tags"


@dataclass(frozen=True)
class FieldSpec:
    """One canonical field of a kind."""

    name: str
    type: FieldType
    headers: tuple[str, ...]
    label: str  # Chinese label used in quarantine reasons
    required: bool = False
    # ENUM: canonical value -> accepted spellings (canonical value itself always accepted)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    min_value: int | None = None
    max_value: int | None = None


@dataclass(frozen=True)
class KindSpec:
    """One import kind: its fields and the natural key that makes re-imports idempotent."""

    name: str
    table: str
    fields: tuple[FieldSpec, ...]
    key: tuple[str, ...]
    description: str

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def field_names(self) -> tuple[str, ...]:
        """Canonical field names in order."""
        return tuple(f.name for f in self.fields)


def _f(
    name: str,
    type_: FieldType,
    label: str,
    *headers: str,
    required: bool = False,
    choices: dict[str, tuple[str, ...]] | None = None,
    min_value: int | None = None,
    max_value: int | None = None,
) -> FieldSpec:
    return FieldSpec(
        name=name,
        type=type_,
        headers=(label, *headers, name),
        label=label,
        required=required,
        choices=choices or {},
        min_value=min_value,
        max_value=max_value,
    )


T = FieldType

DEALER_CODE = _f(
    "dealer_code",
    T.CODE,
    "经销商代码",
    "门店代码",
    "店代码",
    "经销商编码",
    "门店编码",
    "dealer",
    "dealer code",
    "store code",
    required=True,
)
CUSTOMER_NO = _f(
    "customer_no", T.CODE, "客户编号", "客户号", "客户代码", "customer number", "cust no"
)
MOBILE = _f(
    "mobile",
    T.MOBILE,
    "手机号",
    "手机",
    "手机号码",
    "联系电话",
    "移动电话",
    "电话",
    "客户手机",
    "mobile",
    "phone",
    "mobile no",
    "cell",
)
CUSTOMER_NAME = _f(
    "name", T.TEXT, "客户姓名", "姓名", "客户名称", "车主姓名", "name", "customer name"
)

ROLES = {
    "advisor": ("服务顾问", "SA"),
    "customer_manager": ("客户经理", "客服经理", "CRM专员"),
    "store_manager": ("店长", "服务经理", "售后经理"),
    "gm": ("总经理", "GM"),
    "sales": ("销售顾问", "销售"),
    "editor": ("编辑", "内容编辑"),
    "supervisor": ("主管", "审核主管"),
    "legal": ("法务",),
    "admin": ("管理员",),
}
CHANNELS = {
    "sms": ("短信", "SMS"),
    "wecom": ("企业微信", "企微", "WeCom"),
    "push": ("APP推送", "App推送", "推送", "app push"),
    "email": ("邮件", "电子邮件", "EDM", "e-mail"),
    "phone": ("电话", "外呼", "call"),
}

KINDS: dict[str, KindSpec] = {}


def _kind(spec: KindSpec) -> None:
    KINDS[spec.name] = spec


_kind(
    KindSpec(
        name="dealers",
        table="dealers",
        description="stores of the group",
        key=("dealer_code",),
        fields=(
            DEALER_CODE,
            _f("name", T.TEXT, "经销商名称", "门店名称", "店名", "dealer name", required=True),
            _f("brand", T.TEXT, "品牌", "brand"),
            _f("city", T.TEXT, "城市", "所在城市", "city"),
            _f("region", T.TEXT, "区域", "大区", "省份", "region", "province"),
            _f("address", T.TEXT, "地址", "门店地址", "address"),
            _f("phone", T.TEXT, "服务热线", "门店电话", "hotline"),
        ),
    )
)

_kind(
    KindSpec(
        name="staff",
        table="staff",
        description="employees with their role and WeCom account",
        key=("staff_no",),
        fields=(
            _f(
                "staff_no",
                T.CODE,
                "员工编号",
                "工号",
                "员工号",
                "staff number",
                "employee no",
                required=True,
            ),
            DEALER_CODE,
            _f("name", T.TEXT, "员工姓名", "姓名", "name", required=True),
            _f(
                "role",
                T.ENUM,
                "岗位",
                "职位",
                "角色",
                "role",
                "position",
                required=True,
                choices=ROLES,
            ),
            _f("mobile", T.MOBILE, "手机号", "手机", "联系电话", "mobile"),
            _f("email", T.EMAIL, "邮箱", "电子邮箱", "email"),
            _f(
                "wecom_userid",
                T.TEXT,
                "企业微信账号",
                "企微账号",
                "企业微信ID",
                "userid",
                "wecom userid",
            ),
            _f(
                "status",
                T.ENUM,
                "在职状态",
                "状态",
                "status",
                choices={"active": ("在职",), "departed": ("离职",)},
            ),
            _f("departed_on", T.DATE, "离职日期", "departed on"),
        ),
    )
)

_kind(
    KindSpec(
        name="customers",
        table="customers",
        description="owners and prospects; merged across dealers by mobile",
        key=("mobile",),
        fields=(
            DEALER_CODE,
            CUSTOMER_NO,
            CUSTOMER_NAME,
            _f(
                "title",
                T.ENUM,
                "称谓",
                "称呼",
                "title",
                choices={"先生": ("Mr", "Mr."), "女士": ("Ms", "Ms.", "Mrs", "小姐")},
            ),
            _f(
                "gender",
                T.ENUM,
                "性别",
                "gender",
                choices={"male": ("男", "M"), "female": ("女", "F")},
            ),
            MOBILE,
            _f("email", T.EMAIL, "邮箱", "电子邮箱", "email"),
            _f("city", T.TEXT, "城市", "所在城市", "city"),
            _f("region", T.TEXT, "省份", "区域", "province", "region"),
            _f("birthday", T.DATE, "生日", "出生日期", "birthday", "date of birth"),
            _f("family", T.TEXT, "家庭情况", "家庭", "family"),
            _f("contact_from", T.TIME, "接收时段开始", "可联系开始", "contact from"),
            _f("contact_to", T.TIME, "接收时段结束", "可联系结束", "contact to"),
            _f("tags", T.TAGS, "标签", "客户标签", "tags"),
        ),
    )
)

_kind(
    KindSpec(
        name="vehicles",
        table="vehicles",
        description="cars with owner, purchase, insurance and warranty dates",
        key=("vin",),
        fields=(
            _f("vin", T.VIN, "车架号", "VIN", "车辆识别代号", "底盘号", "VIN码", required=True),
            _f("dealer_code", T.CODE, "销售门店代码", "经销商代码", "门店代码", "dealer code"),
            CUSTOMER_NO,
            _f("mobile", T.MOBILE, "车主手机", "手机号", "手机", "联系电话", "owner mobile"),
            _f("brand", T.TEXT, "品牌", "brand"),
            _f("series", T.TEXT, "车系", "series"),
            _f("model", T.TEXT, "车型", "车款", "model"),
            _f("model_year", T.INT, "年款", "model year", min_value=1980, max_value=2100),
            _f("plate_no", T.CODE, "车牌号", "车牌", "plate", "plate no"),
            _f("purchase_date", T.DATE, "购车日期", "开票日期", "销售日期", "purchase date"),
            _f("delivery_date", T.DATE, "交车日期", "交付日期", "delivery date"),
            _f("price", T.MONEY, "购车价格", "成交价", "裸车价", "price", min_value=0),
            _f(
                "insurance_expiry",
                T.DATE,
                "保险到期日",
                "保险到期",
                "交强险到期日",
                "insurance expiry",
            ),
            _f("warranty_end", T.DATE, "质保到期日", "保修到期日", "warranty end"),
            _f(
                "mileage",
                T.INT,
                "当前里程",
                "里程",
                "行驶里程",
                "odometer",
                min_value=0,
                max_value=2_000_000,
            ),
            _f("mileage_date", T.DATE, "里程日期", "mileage date"),
        ),
    )
)

ORDER_TYPES = {
    "maintenance": ("保养", "常规保养", "首保", "定保"),
    "repair": ("维修", "一般维修", "机修", "钣喷", "钣金喷漆"),
    "claim": ("索赔", "保修", "三包"),
    "accessory": ("精品", "附件", "加装"),
    "insurance": ("事故", "事故车", "保险理赔"),
}

_kind(
    KindSpec(
        name="service-orders",
        table="service_orders",
        description="after-sales orders (maintenance, repair, claims, accessories)",
        key=("order_no",),
        fields=(
            _f(
                "order_no",
                T.CODE,
                "工单号",
                "维修工单号",
                "委托书号",
                "结算单号",
                "order no",
                "order number",
                "RO",
                required=True,
            ),
            DEALER_CODE,
            _f("vin", T.VIN, "车架号", "VIN", "车辆识别代号", "底盘号", required=True),
            _f(
                "settled_on",
                T.DATE,
                "结算日期",
                "结算时间",
                "出厂日期",
                "settled on",
                "settlement date",
                required=True,
            ),
            _f(
                "order_type",
                T.ENUM,
                "工单类型",
                "维修类型",
                "业务类型",
                "order type",
                "type",
                required=True,
                choices=ORDER_TYPES,
            ),
            _f(
                "amount",
                T.MONEY,
                "金额",
                "结算金额",
                "工单金额",
                "总金额",
                "amount",
                required=True,
                min_value=0,
            ),
            _f(
                "mileage",
                T.INT,
                "里程",
                "进厂里程",
                "行驶里程",
                "mileage",
                "odometer",
                min_value=0,
                max_value=2_000_000,
            ),
            _f("advisor_no", T.CODE, "服务顾问工号", "顾问工号", "advisor no"),
        ),
    )
)

_kind(
    KindSpec(
        name="leads",
        table="leads",
        description="sales prospects, including lost leads (战败) with their reason",
        key=("lead_no",),
        fields=(
            _f("lead_no", T.CODE, "线索编号", "线索ID", "lead no", "lead id", required=True),
            DEALER_CODE,
            CUSTOMER_NAME,
            MOBILE,
            _f("model_of_interest", T.TEXT, "意向车型", "意向车系", "model of interest"),
            _f(
                "stage",
                T.ENUM,
                "最远阶段",
                "跟进阶段",
                "阶段",
                "stage",
                required=True,
                choices={
                    "inquiry": ("咨询", "留资", "询价"),
                    "visit": ("到店", "进店"),
                    "test_drive": ("试驾", "test drive"),
                    "quote": ("报价", "谈判", "订单"),
                },
            ),
            _f(
                "status",
                T.ENUM,
                "线索状态",
                "状态",
                "status",
                choices={
                    "open": ("跟进中", "有效"),
                    "won": ("成交", "已成交"),
                    "lost": ("战败", "已战败", "流失"),
                },
            ),
            _f(
                "lost_reason",
                T.ENUM,
                "战败原因",
                "流失原因",
                "lost reason",
                choices={
                    "price": ("价格", "价格原因", "价格高"),
                    "configuration": ("配置", "配置原因", "无现车配置"),
                    "delivery_time": ("交期", "交车时间", "等车时间长"),
                    "competitor": ("竞品", "购买竞品", "选择竞品"),
                    "unknown": ("未知", "其他", "不明"),
                },
            ),
            _f("created_on", T.DATE, "创建日期", "留资日期", "created on", required=True),
            _f("lost_on", T.DATE, "战败日期", "lost on"),
        ),
    )
)

_kind(
    KindSpec(
        name="complaints",
        table="complaints",
        description="complaint tickets with severity and satisfaction",
        key=("complaint_no",),
        fields=(
            _f("complaint_no", T.CODE, "投诉编号", "工单编号", "complaint no", required=True),
            DEALER_CODE,
            CUSTOMER_NO,
            MOBILE,
            _f("opened_at", T.DATETIME, "投诉时间", "受理时间", "opened at", required=True),
            _f(
                "severity",
                T.ENUM,
                "严重程度",
                "投诉等级",
                "severity",
                required=True,
                choices={
                    "severe": ("严重", "重大", "高"),
                    "medium": ("一般", "中"),
                    "light": ("轻微", "低"),
                },
            ),
            _f(
                "satisfaction",
                T.INT,
                "满意度",
                "满意度评分",
                "satisfaction",
                min_value=0,
                max_value=10,
            ),
            _f(
                "status",
                T.ENUM,
                "处理状态",
                "状态",
                "status",
                choices={
                    "open": ("待处理", "新建"),
                    "in_progress": ("处理中",),
                    "resolved": ("已解决", "已处理"),
                    "closed": ("已关闭", "已结案"),
                },
            ),
            _f("owner_staff_no", T.CODE, "负责人工号", "处理人工号", "owner"),
            _f("category", T.TEXT, "投诉类别", "类别", "category"),
            _f("description", T.TEXT, "投诉内容", "描述", "description"),
            _f("resolved_at", T.DATETIME, "解决时间", "结案时间", "resolved at"),
        ),
    )
)

_kind(
    KindSpec(
        name="consents",
        table="consents",
        description="per-channel marketing consent with its legal basis",
        key=("mobile", "channel", "purpose"),  # the customer: by mobile or dealer number
        fields=(
            _f("dealer_code", T.CODE, "经销商代码", "门店代码", "dealer code"),
            CUSTOMER_NO,
            MOBILE,
            _f("channel", T.ENUM, "渠道", "授权渠道", "channel", required=True, choices=CHANNELS),
            _f(
                "purpose",
                T.ENUM,
                "用途",
                "授权用途",
                "purpose",
                choices={"marketing": ("营销", "营销推广"), "service": ("服务", "服务通知")},
            ),
            _f("granted", T.BOOL, "是否同意", "授权状态", "同意", "granted", required=True),
            _f(
                "basis",
                T.ENUM,
                "授权方式",
                "授权依据",
                "basis",
                choices={
                    "written_at_purchase": ("购车书面授权", "书面授权", "纸质授权"),
                    "online_agreement": ("线上勾选", "在线协议", "线上授权"),
                    "hotline_voice": ("400电话确认", "热线语音确认", "电话确认"),
                },
            ),
            _f("granted_at", T.DATETIME, "授权时间", "granted at"),
            _f("withdrawn_at", T.DATETIME, "撤回时间", "退订时间", "withdrawn at"),
            _f("source", T.TEXT, "来源", "source"),
        ),
    )
)

_kind(
    KindSpec(
        name="events",
        table="behaviour_events",
        description="app / web behaviour events (model views, clicks, community)",
        key=("event_key",),
        fields=(
            _f("event_key", T.TEXT, "事件ID", "event_id", "event id", "id", required=True),
            _f("dealer_code", T.CODE, "经销商代码", "dealer code"),
            CUSTOMER_NO,
            MOBILE,
            _f(
                "occurred_at",
                T.DATETIME,
                "发生时间",
                "时间",
                "occurred at",
                "timestamp",
                "ts",
                required=True,
            ),
            _f("event_type", T.TEXT, "事件类型", "event type", "event", "type", required=True),
            _f("source", T.TEXT, "来源", "平台", "source", "platform"),
            _f("target", T.TEXT, "对象", "车型", "target", "model"),
            _f("properties", T.JSON, "属性", "properties", "props"),
        ),
    )
)

_kind(
    KindSpec(
        name="wecom-relations",
        table="wecom_relations",
        description="WeCom friendships between customers and staff",
        key=("staff_no", "external_userid"),
        fields=(
            _f("staff_no", T.CODE, "员工编号", "工号", "staff no", required=True),
            _f(
                "external_userid",
                T.TEXT,
                "外部联系人ID",
                "external userid",
                "external_userid",
                required=True,
            ),
            _f("dealer_code", T.CODE, "经销商代码", "dealer code"),
            CUSTOMER_NO,
            MOBILE,
            _f("state", T.TEXT, "渠道码", "渠道活码", "state", "channel code"),
            _f("added_at", T.DATETIME, "添加时间", "added at", required=True),
            _f("deleted_at", T.DATETIME, "删除时间", "deleted at"),
            _f(
                "deleted_by",
                T.ENUM,
                "删除方",
                "deleted by",
                choices={"customer": ("客户", "客户删除"), "staff": ("员工", "员工删除")},
            ),
        ),
    )
)

# Import order that satisfies references (a service order needs its vehicle, …).
IMPORT_ORDER = (
    "dealers",
    "staff",
    "customers",
    "vehicles",
    "service-orders",
    "leads",
    "complaints",
    "consents",
    "events",
    "wecom-relations",
)
