"""Feature views: every model input declared once, with its meaning, window, direction and reason group.

A `Feature` is pure data: what to aggregate (source event types, column, filter, window) and what it
means (risk direction, reason-code group, zh/en description). The offline builder (`features.offline`)
compiles these declarations to engine-neutral SQL, the naive oracle (`features.reference`) interprets
them in plain Python, training turns `direction` into monotone constraints, and the reason codes use
`reason_group`. Application-time features (amount, term, amount relative to delivery income) are
computed by the one shared function `application_features`, offline and at request time alike.

Feature code never reads member profiles: declarations may only name event types and the
`applications` / `outcomes` tables, and validation rejects any protected column.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, model_validator

from features.contracts import EVENT_PAYLOADS, EVENT_TYPES, PROTECTED_ATTRIBUTES

# Bump when the meaning of an aggregation changes without its declaration changing (e.g. the compiler
# now treats a boundary differently): the feature-set version then changes with it.
# 2: months are elapsed time (30.4375 days), not calendar months (months_since_*, distinct_months).
FEATURE_SEMANTICS_VERSION: Final = 2

Entity = Literal["member", "cooperative", "village"]
Direction = Literal[-1, 0, 1]
DType = Literal["int64", "float64"]
Aggregation = Literal[
    # over the member's own events, inside the window
    "count",
    "sum",
    "mean",
    "max",
    "distinct_months",
    "distinct_values",
    "months_since_first",
    "months_since_last",
    "latest_in",
    # over other features of the same row
    "ratio",
    "trend",
    "difference",
    "is_positive",
    # peer signals: the member's cooperative / village, as known at the time
    "peer_default_rate",
    "peer_outcome_count",
    "member_count",
    # request-time: computed by `application_features`
    "application",
]
ConditionOp = Literal["eq", "ne", "gt", "ge", "lt", "le", "in", "is_true", "is_false"]

EVENT_AGGREGATIONS: Final = frozenset(
    {
        "count",
        "sum",
        "mean",
        "max",
        "distinct_months",
        "distinct_values",
        "months_since_first",
        "months_since_last",
        "latest_in",
    }
)
DERIVED_AGGREGATIONS: Final = frozenset({"ratio", "trend", "difference", "is_positive"})
PEER_AGGREGATIONS: Final = frozenset({"peer_default_rate", "peer_outcome_count", "member_count"})
# Aggregations that several event types can feed (their partial results combine exactly).
MULTI_SOURCE_AGGREGATIONS: Final = frozenset({"count", "months_since_first", "months_since_last"})
NUMERIC_COLUMN_AGGREGATIONS: Final = frozenset({"sum", "mean", "max"})

WINDOW_DAYS: Final = (30, 90, 180, 365)
REFERENCE_TABLE_SOURCES: Final = ("applications", "outcomes")
REQUEST_SOURCE: Final = "request"
# The village of a member comes from this membership column (the `join` event carries it).
VILLAGE_COLUMN: Final = "village_id"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_NUMERIC_TYPES: Final = ("double", "int32", "int64", "float")


class _Declaration(BaseModel):
    """Base for declarations: immutable, and a typo in a field name fails loudly."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ReasonGroup(_Declaration):
    """A reason-code group: related features that explain a decision together (zh/en labels)."""

    name: str
    label_zh: str
    label_en: str


class Condition(_Declaration):
    """One filter on an event's payload column; a feature's conditions are ANDed."""

    column: str
    op: ConditionOp
    value: str | int | float | tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        if self.op in ("is_true", "is_false"):
            if self.value is not None:
                raise ValueError(f"{self.op} takes no value")
        elif self.op == "in":
            if not isinstance(self.value, tuple) or not self.value:
                raise ValueError("'in' needs a non-empty tuple of values")
        elif self.value is None or isinstance(self.value, tuple):
            raise ValueError(f"{self.op} needs one scalar value")
        return self


class Feature(_Declaration):
    """One model input: what it aggregates, over which window, and what it means for risk.

    `window_days=None` means lifetime (every event known at the time). `window_offset_days` shifts the
    window back, e.g. days 90-180 before the application for a trend's "prior" period.
    `direction` is the expected effect of a larger value on default risk (+1 raises it, -1 lowers it,
    0 no constraint); training turns it into a monotone constraint.
    """

    name: str
    entity: Entity
    sources: tuple[str, ...]
    aggregation: Aggregation
    column: str | None = None
    where: tuple[Condition, ...] = ()
    values: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    window_days: int | None = None
    window_offset_days: int = 0
    dtype: DType
    direction: Direction
    reason_group: str
    description_zh: str
    description_en: str

    @property
    def is_event_aggregate(self) -> bool:
        """True when computed directly from the member's own events."""
        return self.aggregation in EVENT_AGGREGATIONS

    @property
    def is_application(self) -> bool:
        """True when computed at request time from the application's fields."""
        return self.aggregation == "application"

    @property
    def window_label(self) -> str:
        """Human-readable window: `30d`, `lifetime`, `90d, 90-180 days ago`, `at application`."""
        if self.is_application and self.window_days is None:
            return "at application"
        if self.window_days is None:
            return "lifetime"
        if self.window_offset_days:
            end = self.window_offset_days + self.window_days
            return f"{self.window_days}d, {self.window_offset_days}-{end} days ago"
        return f"{self.window_days}d"


@dataclass(frozen=True)
class FeatureRegistry:
    """The validated, ordered set of feature declarations and reason groups."""

    features: tuple[Feature, ...]
    reason_groups: tuple[ReasonGroup, ...]

    def __post_init__(self) -> None:
        _validate(self.features, self.reason_groups)

    @cached_property
    def by_name(self) -> dict[str, Feature]:
        """Features keyed by name."""
        return {f.name: f for f in self.features}

    @property
    def names(self) -> list[str]:
        """Every feature name, in declaration order (the column order of every feature frame)."""
        return [f.name for f in self.features]

    @property
    def member_features(self) -> tuple[Feature, ...]:
        """Features of the member vector (everything except request-time application features)."""
        return tuple(f for f in self.features if not f.is_application)

    @property
    def application_features(self) -> tuple[Feature, ...]:
        """Request-time features, computed by `application_features` on top of a member vector."""
        return tuple(f for f in self.features if f.is_application)

    @cached_property
    def version(self) -> str:
        """Feature-set version: a hash of the declarations' semantics (descriptions excluded)."""
        payload = {
            "semantics": FEATURE_SEMANTICS_VERSION,
            "features": [
                f.model_dump(mode="json", exclude={"description_zh", "description_en"}) for f in self.features
            ],
        }
        canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def monotone_constraints(self) -> dict[str, int]:
        """Feature name -> LightGBM monotone constraint (+1, -1 or 0)."""
        return {f.name: int(f.direction) for f in self.features}

    def group(self, name: str) -> ReasonGroup:
        """The reason group called `name`."""
        for group in self.reason_groups:
            if group.name == name:
                return group
        raise KeyError(name)


def _validate(features: tuple[Feature, ...], groups: tuple[ReasonGroup, ...]) -> None:
    """Reject declarations the builder could not compute, or that would reach protected data."""
    group_names = {g.name for g in groups}
    seen: dict[str, Feature] = {}
    protected = set(PROTECTED_ATTRIBUTES)
    for f in features:
        where = f"feature {f.name!r}"
        if not _NAME.match(f.name) or f.name in seen:
            raise ValueError(f"{where}: name must be unique snake_case")
        if f.reason_group not in group_names:
            raise ValueError(f"{where}: unknown reason group {f.reason_group!r}")
        referenced = {f.column, *(c.column for c in f.where), *f.inputs, *f.sources} - {None}
        if referenced & protected or "member_profiles" in f.sources:
            raise ValueError(f"{where}: feature views may not read protected attributes")
        if f.window_days is not None and f.window_days not in WINDOW_DAYS:
            raise ValueError(f"{where}: window must be one of {WINDOW_DAYS} days or lifetime")
        if f.window_offset_days < 0 or (f.window_offset_days and f.window_days is None):
            raise ValueError(f"{where}: an offset needs a bounded window")
        if f.is_event_aggregate:
            _validate_event_feature(f, where)
        elif f.aggregation in DERIVED_AGGREGATIONS or f.is_application:
            arity = {"is_positive": 1}.get(f.aggregation, 0 if f.is_application else 2)
            if arity and len(f.inputs) != arity:
                raise ValueError(f"{where}: {f.aggregation} takes {arity} input(s)")
            missing = [i for i in f.inputs if i not in seen or seen[i].is_application]
            if missing:
                raise ValueError(f"{where}: inputs must be earlier member features: {missing}")
            expected = (REQUEST_SOURCE,) if f.is_application else ()
            if f.sources != expected:
                raise ValueError(f"{where}: sources must be {expected}")
        elif f.aggregation in PEER_AGGREGATIONS:
            needed = ("membership",) if f.aggregation == "member_count" else REFERENCE_TABLE_SOURCES
            if f.sources != needed or f.entity == "member":
                raise ValueError(f"{where}: peer features read {needed} for a coop or village")
            if f.aggregation == "member_count" and f.entity != "cooperative":
                raise ValueError(f"{where}: member_count is a cooperative feature")
        expected_dtype = _dtype_of(f.aggregation)
        if f.dtype != expected_dtype:
            raise ValueError(f"{where}: {f.aggregation} yields {expected_dtype}")
        seen[f.name] = f


def _validate_event_feature(f: Feature, where: str) -> None:
    """Checks for a feature computed from the member's own events."""
    if not f.sources or any(s not in EVENT_TYPES for s in f.sources):
        raise ValueError(f"{where}: sources must be event types")
    if len(f.sources) > 1 and (f.aggregation not in MULTI_SOURCE_AGGREGATIONS or f.where):
        raise ValueError(f"{where}: only unfiltered count / months_since_* span event types")
    if f.entity != "member":
        raise ValueError(f"{where}: event aggregates describe the member")
    payload = {spec.name: spec for s in f.sources for spec in EVENT_PAYLOADS[s]}
    for cond in f.where:
        if cond.column not in payload:
            raise ValueError(f"{where}: filter column {cond.column!r} not in {f.sources}")
    if f.aggregation in NUMERIC_COLUMN_AGGREGATIONS | {"distinct_values", "latest_in"}:
        spec = payload.get(f.column or "")
        if spec is None:
            raise ValueError(f"{where}: column {f.column!r} not in {f.sources}")
        if f.aggregation in NUMERIC_COLUMN_AGGREGATIONS and str(spec.type) not in _NUMERIC_TYPES:
            raise ValueError(f"{where}: {f.aggregation} needs a numeric column")
        if f.aggregation == "distinct_values" and not spec.enum:
            raise ValueError(f"{where}: distinct_values needs an enumerated column")
    if f.aggregation == "latest_in" and (not f.values or f.window_days is not None):
        raise ValueError(f"{where}: latest_in needs values and a lifetime window")
    if f.aggregation == "distinct_months" and (
        f.window_days is None or f.window_days + f.window_offset_days > 365
    ):
        raise ValueError(f"{where}: distinct_months needs a window within the last 365 days")


def _dtype_of(aggregation: str) -> DType:
    """Counts and flags are never missing (int64); everything else may be (float64, NaN)."""
    ints = {
        "count",
        "distinct_months",
        "distinct_values",
        "latest_in",
        "is_positive",
        "peer_outcome_count",
        "member_count",
    }
    return "int64" if aggregation in ints else "float64"


# --------------------------------------------------------------------------------------------------
# Declarations
# --------------------------------------------------------------------------------------------------

REASON_GROUPS: Final = (
    ("deliveries", "农产品交售", "Produce deliveries"),
    ("inputs", "农资采购", "Farm input purchases"),
    ("savings", "互助储蓄", "Group savings"),
    ("repayment", "既往借款与还款", "Earlier loans and repayments"),
    ("late_repayment", "逾期还款", "Late repayments"),
    ("engagement", "会议与培训参与", "Meetings and training"),
    ("membership", "社员资格", "Cooperative membership"),
    ("mobile_payments", "移动支付", "Mobile payments"),
    ("green_practices", "绿色生产", "Green production practices"),
    ("evidence", "记录厚度", "Depth of the record"),
    ("peer", "合作社与村庄情况", "Cooperative and village"),
    ("application", "申请条件", "Loan terms requested"),
)


def _zh_window(days: int | None, offset: int = 0) -> str:
    if days is None:
        return "历史累计"
    if offset:
        return f"{offset + days}天前至{offset}天前"
    return f"近{days}天"


def _en_window(days: int | None, offset: int = 0) -> str:
    if days is None:
        return "ever"
    if offset:
        return f"between {offset + days} and {offset} days before"
    return f"in the last {days} days"


def _feature(
    name: str,
    *,
    sources: tuple[str, ...],
    aggregation: Aggregation,
    direction: Direction,
    group: str,
    zh: str,
    en: str,
    window: int | None = None,
    offset: int = 0,
    column: str | None = None,
    where: tuple[Condition, ...] = (),
    values: tuple[str, ...] = (),
    inputs: tuple[str, ...] = (),
    entity: Entity = "member",
) -> Feature:
    """Declare one feature; its dtype follows from the aggregation."""
    return Feature(
        name=name,
        entity=entity,
        sources=sources,
        aggregation=aggregation,
        column=column,
        where=where,
        values=values,
        inputs=inputs,
        window_days=window,
        window_offset_days=offset,
        dtype=_dtype_of(aggregation),
        direction=direction,
        reason_group=group,
        description_zh=zh,
        description_en=en,
    )


def _derived(
    name: str,
    aggregation: Aggregation,
    inputs: tuple[str, ...],
    *,
    direction: Direction,
    group: str,
    zh: str,
    en: str,
    window: int | None = None,
) -> Feature:
    """Declare a feature computed from earlier features of the same row."""
    return _feature(
        name,
        sources=(),
        aggregation=aggregation,
        inputs=inputs,
        window=window,
        direction=direction,
        group=group,
        zh=zh,
        en=en,
    )


def _suffix(days: int | None) -> str:
    return "lifetime" if days is None else f"{days}d"


def _delivery_features() -> list[Feature]:
    src = ("produce_delivery",)
    out = [
        _feature(
            f"delivery_amount_{_suffix(w)}",
            sources=src,
            aggregation="sum",
            column="amount_cny",
            window=w,
            direction=-1,
            group="deliveries",
            zh=f"{_zh_window(w)}向合作社交售农产品的金额（元）",
            en=f"Value of produce delivered to the cooperative {_en_window(w)} (CNY)",
        )
        for w in (30, 90, 180, 365, None)
    ]
    out += [
        _feature(
            f"delivery_count_{w}d",
            sources=src,
            aggregation="count",
            window=w,
            direction=-1,
            group="deliveries",
            zh=f"{_zh_window(w)}交售次数",
            en=f"Number of produce deliveries {_en_window(w)}",
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            f"delivery_quantity_kg_{w}d",
            sources=src,
            aggregation="sum",
            column="quantity_kg",
            window=w,
            direction=-1,
            group="deliveries",
            zh=f"{_zh_window(w)}交售农产品重量（公斤）",
            en=f"Weight of produce delivered {_en_window(w)} (kg)",
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            f"delivery_months_{w}d",
            sources=src,
            aggregation="distinct_months",
            window=w,
            direction=-1,
            group="deliveries",
            zh=f"{_zh_window(w)}有交售记录的月数（按30.4天一月倒推；交售规律性）",
            en=f"Months (30.4-day spans) with at least one delivery {_en_window(w)} (regularity)",
        )
        for w in (180, 365)
    ]
    out += [
        _feature(
            "delivery_amount_prior_90d",
            sources=src,
            aggregation="sum",
            column="amount_cny",
            window=90,
            offset=90,
            direction=0,
            group="deliveries",
            zh=f"{_zh_window(90, 90)}交售农产品的金额（元）",
            en=f"Value of produce delivered {_en_window(90, 90)} (CNY)",
        ),
        _derived(
            "delivery_amount_trend_90d",
            "trend",
            ("delivery_amount_90d", "delivery_amount_prior_90d"),
            window=180,
            direction=-1,
            group="deliveries",
            zh="交售金额趋势：近90天与此前90天之差除以两者之和（-1至1）",
            en="Delivery trend: last 90 days minus the 90 before, over their sum (-1 to 1)",
        ),
        _feature(
            "delivery_mean_amount_365d",
            sources=src,
            aggregation="mean",
            column="amount_cny",
            window=365,
            direction=0,
            group="deliveries",
            zh="近365天平均每次交售金额（元）",
            en="Average value per delivery in the last 365 days (CNY)",
        ),
        _feature(
            "delivery_grade_a_count_365d",
            sources=src,
            aggregation="count",
            where=(Condition(column="quality_grade", op="eq", value="A"),),
            window=365,
            direction=-1,
            group="deliveries",
            zh="近365天A级品质交售次数",
            en="Deliveries graded A in the last 365 days",
        ),
        _derived(
            "delivery_grade_a_share_365d",
            "ratio",
            ("delivery_grade_a_count_365d", "delivery_count_365d"),
            window=365,
            direction=-1,
            group="deliveries",
            zh="近365天A级品质交售占比",
            en="Share of deliveries graded A in the last 365 days",
        ),
        _feature(
            "delivery_products_365d",
            sources=src,
            aggregation="distinct_values",
            column="product",
            window=365,
            direction=-1,
            group="deliveries",
            zh="近365天交售的农产品种类数（经营多样性）",
            en="Distinct products delivered in the last 365 days (diversification)",
        ),
        _feature(
            "delivery_months_since_last",
            sources=src,
            aggregation="months_since_last",
            direction=1,
            group="deliveries",
            zh="距最近一次交售的月数",
            en="Months since the last produce delivery",
        ),
    ]
    return out


def _input_features() -> list[Feature]:
    src = ("input_purchase",)
    credit = (Condition(column="on_credit", op="is_true"),)
    out = [
        _feature(
            f"input_amount_{w}d",
            sources=src,
            aggregation="sum",
            column="amount_cny",
            window=w,
            direction=0,
            group="inputs",
            zh=f"{_zh_window(w)}采购农资金额（元）",
            en=f"Farm inputs bought {_en_window(w)} (CNY)",
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            "input_count_365d",
            sources=src,
            aggregation="count",
            window=365,
            direction=0,
            group="inputs",
            zh="近365天采购农资次数",
            en="Farm input purchases in the last 365 days",
        )
    ]
    out += [
        _feature(
            f"input_credit_amount_{w}d",
            sources=src,
            aggregation="sum",
            column="amount_cny",
            where=credit,
            window=w,
            direction=1,
            group="inputs",
            zh=f"{_zh_window(w)}赊购农资金额（元）",
            en=f"Farm inputs bought on credit {_en_window(w)} (CNY)",
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            "input_credit_count_365d",
            sources=src,
            aggregation="count",
            where=credit,
            window=365,
            direction=1,
            group="inputs",
            zh="近365天赊购农资次数",
            en="Farm input purchases on credit in the last 365 days",
        ),
        _derived(
            "input_credit_share_365d",
            "ratio",
            ("input_credit_amount_365d", "input_amount_365d"),
            window=365,
            direction=1,
            group="inputs",
            zh="近365天农资采购中赊购金额占比",
            en="Share of farm-input spending bought on credit in the last 365 days",
        ),
        _feature(
            "input_categories_365d",
            sources=src,
            aggregation="distinct_values",
            column="category",
            window=365,
            direction=0,
            group="inputs",
            zh="近365天采购的农资类别数",
            en="Distinct farm-input categories bought in the last 365 days",
        ),
    ]
    return out


def _savings_features() -> list[Feature]:
    dep, wd = ("savings_deposit",), ("savings_withdrawal",)
    out = [
        _feature(
            f"savings_deposit_amount_{_suffix(w)}",
            sources=dep,
            aggregation="sum",
            column="amount_cny",
            window=w,
            direction=-1 if w else 0,
            group="savings",
            zh=f"{_zh_window(w)}存入互助储蓄金额（元）",
            en=f"Deposited into group savings {_en_window(w)} (CNY)",
        )
        for w in (90, 365, None)
    ]
    out += [
        _feature(
            f"savings_withdrawal_amount_{_suffix(w)}",
            sources=wd,
            aggregation="sum",
            column="amount_cny",
            window=w,
            direction=1 if w else 0,
            group="savings",
            zh=f"{_zh_window(w)}从互助储蓄支取金额（元）",
            en=f"Withdrawn from group savings {_en_window(w)} (CNY)",
        )
        for w in (90, 365, None)
    ]
    out += [
        _feature(
            "savings_deposit_count_365d",
            sources=dep,
            aggregation="count",
            window=365,
            direction=-1,
            group="savings",
            zh="近365天存款次数",
            en="Savings deposits in the last 365 days",
        ),
        _feature(
            "savings_withdrawal_count_365d",
            sources=wd,
            aggregation="count",
            window=365,
            direction=1,
            group="savings",
            zh="近365天支取次数",
            en="Savings withdrawals in the last 365 days",
        ),
        _feature(
            "savings_deposit_months_365d",
            sources=dep,
            aggregation="distinct_months",
            window=365,
            direction=-1,
            group="savings",
            zh="近365天有存款的月数（按30.4天一月倒推；储蓄规律性）",
            en="Months (30.4-day spans) with a savings deposit in the last 365 days (regularity)",
        ),
        _derived(
            "savings_balance",
            "difference",
            ("savings_deposit_amount_lifetime", "savings_withdrawal_amount_lifetime"),
            direction=-1,
            group="savings",
            zh="互助储蓄余额：累计存入减累计支取（元）",
            en="Group savings balance: all deposits minus all withdrawals (CNY)",
        ),
        _derived(
            "savings_net_flow_365d",
            "difference",
            ("savings_deposit_amount_365d", "savings_withdrawal_amount_365d"),
            window=365,
            direction=-1,
            group="savings",
            zh="近365天储蓄净存入（元）",
            en="Net savings inflow in the last 365 days (CNY)",
        ),
        _derived(
            "savings_withdrawal_to_deposit_365d",
            "ratio",
            ("savings_withdrawal_amount_365d", "savings_deposit_amount_365d"),
            window=365,
            direction=1,
            group="savings",
            zh="近365天支取金额与存入金额之比",
            en="Withdrawals relative to deposits in the last 365 days",
        ),
        _feature(
            "savings_months_since_last_deposit",
            sources=dep,
            aggregation="months_since_last",
            direction=1,
            group="savings",
            zh="距最近一次存款的月数",
            en="Months since the last savings deposit",
        ),
    ]
    return out


def _repayment_features() -> list[Feature]:
    disb, rep = ("loan_disbursement",), ("loan_repayment",)
    on_time = (Condition(column="days_late", op="eq", value=0),)
    late = (Condition(column="days_late", op="gt", value=0),)
    late30 = (Condition(column="days_late", op="ge", value=30),)
    out = [
        _feature(
            "prior_loan_count",
            sources=disb,
            aggregation="count",
            direction=0,
            group="repayment",
            zh="历史上获得的小额借款笔数",
            en="Earlier small loans disbursed",
        ),
        _feature(
            "prior_loan_amount",
            sources=disb,
            aggregation="sum",
            column="amount_cny",
            direction=0,
            group="repayment",
            zh="历史上获得的小额借款总额（元）",
            en="Total of earlier small loans disbursed (CNY)",
        ),
        _derived(
            "has_prior_loan",
            "is_positive",
            ("prior_loan_count",),
            direction=0,
            group="evidence",
            zh="是否曾获得过小额借款（1=是）",
            en="Has had an earlier small loan (1 = yes)",
        ),
        _feature(
            "prior_loan_months_since_last",
            sources=disb,
            aggregation="months_since_last",
            direction=0,
            group="repayment",
            zh="距最近一笔借款发放的月数",
            en="Months since the last earlier loan was disbursed",
        ),
    ]
    for w in (365, None):
        sfx = _suffix(w)
        out += [
            _feature(
                f"repayment_count_{sfx}",
                sources=rep,
                aggregation="count",
                window=w,
                direction=0,
                group="repayment",
                zh=f"{_zh_window(w)}还款次数",
                en=f"Loan repayments {_en_window(w)}",
            ),
            _feature(
                f"repayment_on_time_count_{sfx}",
                sources=rep,
                aggregation="count",
                where=on_time,
                window=w,
                direction=-1,
                group="repayment",
                zh=f"{_zh_window(w)}按时还款次数",
                en=f"Repayments made on time {_en_window(w)}",
            ),
            _derived(
                f"repayment_on_time_share_{sfx}",
                "ratio",
                (f"repayment_on_time_count_{sfx}", f"repayment_count_{sfx}"),
                window=w,
                direction=-1,
                group="repayment",
                zh=f"{_zh_window(w)}按时还款占比",
                en=f"Share of repayments made on time {_en_window(w)}",
            ),
            _feature(
                f"repayment_late_count_{sfx}",
                sources=rep,
                aggregation="count",
                where=late,
                window=w,
                direction=1,
                group="late_repayment",
                zh=f"{_zh_window(w)}逾期还款次数",
                en=f"Late repayments {_en_window(w)}",
            ),
            _feature(
                f"repayment_max_days_late_{sfx}",
                sources=rep,
                aggregation="max",
                column="days_late",
                window=w,
                direction=1,
                group="late_repayment",
                zh=f"{_zh_window(w)}单次还款最长逾期天数",
                en=f"Longest delay of a repayment {_en_window(w)} (days)",
            ),
        ]
    out += [
        _feature(
            "repayment_late30_count_lifetime",
            sources=rep,
            aggregation="count",
            where=late30,
            direction=1,
            group="late_repayment",
            zh="历史上逾期30天及以上的还款次数",
            en="Repayments 30 or more days late, ever",
        ),
        _feature(
            "repayment_mean_days_late_lifetime",
            sources=rep,
            aggregation="mean",
            column="days_late",
            direction=1,
            group="late_repayment",
            zh="历史平均每次还款逾期天数",
            en="Average days late per repayment, ever",
        ),
        _feature(
            "months_since_last_late_payment",
            sources=rep,
            aggregation="months_since_last",
            where=late,
            direction=-1,
            group="late_repayment",
            zh="距最近一次逾期还款的月数（无逾期则为空）",
            en="Months since the last late repayment (empty if never late)",
        ),
        _feature(
            "repayment_amount_lifetime",
            sources=rep,
            aggregation="sum",
            column="amount_cny",
            direction=0,
            group="repayment",
            zh="历史累计还款金额（元）",
            en="Total repaid on earlier loans (CNY)",
        ),
        _derived(
            "repaid_to_disbursed_lifetime",
            "ratio",
            ("repayment_amount_lifetime", "prior_loan_amount"),
            direction=-1,
            group="repayment",
            zh="累计还款金额与累计借款金额之比",
            en="Amount repaid relative to amount borrowed, ever",
        ),
    ]
    return out


def _engagement_features() -> list[Feature]:
    meet, train = ("meeting_attendance",), ("training_completed",)
    out = [
        _feature(
            f"meeting_count_{w}d",
            sources=meet,
            aggregation="count",
            window=w,
            direction=-1,
            group="engagement",
            zh=f"{_zh_window(w)}参加合作社会议次数",
            en=f"Cooperative meetings attended {_en_window(w)}",
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            "meeting_months_365d",
            sources=meet,
            aggregation="distinct_months",
            window=365,
            direction=-1,
            group="engagement",
            zh="近365天有参会记录的月数（按30.4天一月倒推）",
            en="Months (30.4-day spans) with a meeting attended in the last 365 days",
        ),
        _feature(
            "meeting_months_since_last",
            sources=meet,
            aggregation="months_since_last",
            direction=1,
            group="engagement",
            zh="距最近一次参会的月数",
            en="Months since the last meeting attended",
        ),
    ]
    out += [
        _feature(
            f"training_count_{_suffix(w)}",
            sources=train,
            aggregation="count",
            window=w,
            direction=-1,
            group="engagement",
            zh=f"{_zh_window(w)}完成培训次数",
            en=f"Trainings completed {_en_window(w)}",
        )
        for w in (365, None)
    ]
    out += [
        _feature(
            "training_topics_lifetime",
            sources=train,
            aggregation="distinct_values",
            column="topic",
            direction=-1,
            group="engagement",
            zh="历史完成培训的主题数",
            en="Distinct training topics completed, ever",
        ),
        _feature(
            "training_finance_count_lifetime",
            sources=train,
            aggregation="count",
            where=(Condition(column="topic", op="in", value=("financial_literacy", "bookkeeping")),),
            direction=-1,
            group="engagement",
            zh="历史完成金融知识或记账培训次数",
            en="Financial-literacy or bookkeeping trainings completed, ever",
        ),
    ]
    return out


def _membership_features() -> list[Feature]:
    src = ("membership",)
    return [
        _feature(
            "coop_tenure_months",
            sources=src,
            aggregation="months_since_first",
            where=(Condition(column="action", op="eq", value="join"),),
            direction=-1,
            group="membership",
            zh="入社月数（自首次入社起）",
            en="Months since first joining the cooperative",
        ),
        _feature(
            "membership_is_active",
            sources=src,
            aggregation="latest_in",
            column="action",
            values=("join",),
            direction=-1,
            group="membership",
            zh="当前是否为在册社员（最近一次社员记录为入社，1=是）",
            en="Currently a member: the latest membership record is a join (1 = yes)",
        ),
        _feature(
            "membership_is_leader",
            sources=src,
            aggregation="latest_in",
            column="role",
            values=("leader", "board"),
            direction=-1,
            group="membership",
            zh="是否担任合作社带头人或理事（1=是）",
            en="Holds a leader or board role in the cooperative (1 = yes)",
        ),
        _feature(
            "membership_leave_count",
            sources=src,
            aggregation="count",
            where=(Condition(column="action", op="eq", value="leave"),),
            direction=1,
            group="membership",
            zh="历史退社次数",
            en="Times the member has left a cooperative",
        ),
    ]


def _mobile_features() -> list[Feature]:
    src = ("mobile_payment",)
    inflow = (Condition(column="direction", op="eq", value="in"),)
    outflow = (Condition(column="direction", op="eq", value="out"),)
    out = [
        _feature(
            f"mobile_in_amount_{w}d",
            sources=src,
            aggregation="sum",
            column="amount_cny",
            where=inflow,
            window=w,
            direction=-1,
            group="mobile_payments",
            zh=f"{_zh_window(w)}移动支付收款金额（元）",
            en=f"Mobile payments received {_en_window(w)} (CNY)",
        )
        for w in (30, 90, 365)
    ]
    out += [
        _feature(
            f"mobile_out_amount_{w}d",
            sources=src,
            aggregation="sum",
            column="amount_cny",
            where=outflow,
            window=w,
            direction=0,
            group="mobile_payments",
            zh=f"{_zh_window(w)}移动支付付款金额（元）",
            en=f"Mobile payments sent {_en_window(w)} (CNY)",
        )
        for w in (90, 365)
    ]
    out += [
        _derived(
            f"mobile_net_flow_{w}d",
            "difference",
            (f"mobile_in_amount_{w}d", f"mobile_out_amount_{w}d"),
            window=w,
            direction=-1,
            group="mobile_payments",
            zh=f"{_zh_window(w)}移动支付净流入（元）",
            en=f"Net mobile-payment inflow {_en_window(w)} (CNY)",
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            f"mobile_count_{w}d",
            sources=src,
            aggregation="count",
            window=w,
            direction=-1,
            group="mobile_payments",
            zh=f"{_zh_window(w)}移动支付笔数",
            en=f"Mobile payments {_en_window(w)}",
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            "mobile_months_365d",
            sources=src,
            aggregation="distinct_months",
            window=365,
            direction=-1,
            group="mobile_payments",
            zh="近365天有移动支付记录的月数（按30.4天一月倒推）",
            en="Months (30.4-day spans) with mobile payments in the last 365 days",
        )
    ]
    return out


def _green_features() -> list[Feature]:
    src = ("green_practice",)
    return [
        _feature(
            "green_practice_count_365d",
            sources=src,
            aggregation="count",
            window=365,
            direction=-1,
            group="green_practices",
            zh="近365天记录的绿色生产实践次数",
            en="Green practices recorded in the last 365 days",
        ),
        _feature(
            "green_verified_count_lifetime",
            sources=src,
            aggregation="count",
            where=(Condition(column="verified", op="is_true"),),
            direction=-1,
            group="green_practices",
            zh="历史经核验的绿色生产实践次数",
            en="Verified green practices, ever",
        ),
        _feature(
            "green_practices_distinct_lifetime",
            sources=src,
            aggregation="distinct_values",
            column="practice",
            direction=-1,
            group="green_practices",
            zh="历史采用的绿色生产实践种类数",
            en="Distinct green practices adopted, ever",
        ),
    ]


def _evidence_features() -> list[Feature]:
    every = EVENT_TYPES
    return [
        *(
            _feature(
                f"event_count_{w}d",
                sources=every,
                aggregation="count",
                window=w,
                direction=0,
                group="evidence",
                zh=f"{_zh_window(w)}合作社记录的各类活动总数（记录厚度）",
                en=f"Activity records of any kind {_en_window(w)} (depth of file)",
            )
            for w in (90, 365)
        ),
        _feature(
            "history_months",
            sources=every,
            aggregation="months_since_first",
            direction=0,
            group="evidence",
            zh="有记录的月数：距最早一条活动记录的月数",
            en="Months of history: months since the earliest activity record",
        ),
        _feature(
            "months_since_last_activity",
            sources=every,
            aggregation="months_since_last",
            direction=1,
            group="evidence",
            zh="距最近一条活动记录的月数",
            en="Months since the latest activity record of any kind",
        ),
    ]


def _peer_features() -> list[Feature]:
    tables = REFERENCE_TABLE_SOURCES
    return [
        _feature(
            "coop_past_default_rate",
            entity="cooperative",
            sources=tables,
            aggregation="peer_default_rate",
            direction=1,
            group="peer",
            zh="所在合作社此前贷款的违约率（截至当时已知的结果，不含本笔申请）",
            en="Default rate of earlier loans in the member's cooperative, as known at the time",
        ),
        _feature(
            "coop_past_outcome_count",
            entity="cooperative",
            sources=tables,
            aggregation="peer_outcome_count",
            direction=0,
            group="peer",
            zh="所在合作社截至当时已知结果的贷款笔数",
            en="Earlier loans in the member's cooperative with a known outcome at the time",
        ),
        _feature(
            "village_past_default_rate",
            entity="village",
            sources=tables,
            aggregation="peer_default_rate",
            direction=1,
            group="peer",
            zh="所在村此前贷款的违约率（截至当时已知的结果，不含本笔申请）",
            en="Default rate of earlier loans in the member's village, as known at the time",
        ),
        _feature(
            "village_past_outcome_count",
            entity="village",
            sources=tables,
            aggregation="peer_outcome_count",
            direction=0,
            group="peer",
            zh="所在村截至当时已知结果的贷款笔数",
            en="Earlier loans in the member's village with a known outcome at the time",
        ),
        _feature(
            "coop_member_count",
            entity="cooperative",
            sources=("membership",),
            aggregation="member_count",
            direction=0,
            group="peer",
            zh="合作社规模：截至当时已入社的社员人数",
            en="Cooperative size: members who had joined by the time",
        ),
    ]


def _application_declarations() -> list[Feature]:
    income = ("delivery_amount_365d",)
    return [
        _feature(
            "application_amount_cny",
            sources=(REQUEST_SOURCE,),
            aggregation="application",
            direction=1,
            group="application",
            zh="申请借款金额（元）",
            en="Loan amount requested (CNY)",
        ),
        _feature(
            "application_term_months",
            sources=(REQUEST_SOURCE,),
            aggregation="application",
            direction=0,
            group="application",
            zh="申请借款期限（月）",
            en="Loan term requested (months)",
        ),
        _feature(
            "application_amount_to_delivery_income_365d",
            sources=(REQUEST_SOURCE,),
            aggregation="application",
            inputs=income,
            window=365,
            direction=1,
            group="application",
            zh="申请金额与近365天交售收入之比（无交售收入则为空）",
            en="Amount requested relative to delivery income in the last 365 days",
        ),
        _feature(
            "application_installment_to_monthly_income",
            sources=(REQUEST_SOURCE,),
            aggregation="application",
            inputs=income,
            window=365,
            direction=1,
            group="application",
            zh="月均应还本金与近365天月均交售收入之比",
            en="Monthly principal due relative to average monthly delivery income (365 days)",
        ),
        _feature(
            "application_amount_to_savings_balance",
            sources=(REQUEST_SOURCE,),
            aggregation="application",
            inputs=("savings_balance",),
            direction=1,
            group="application",
            zh="申请金额与互助储蓄余额之比（无正余额则为空）",
            en="Amount requested relative to the group savings balance (empty if none)",
        ),
    ]


@lru_cache(maxsize=1)
def default_registry() -> FeatureRegistry:
    """The coopscore feature set (built on first use, then cached)."""
    features = (
        _delivery_features()
        + _input_features()
        + _savings_features()
        + _repayment_features()
        + _engagement_features()
        + _membership_features()
        + _mobile_features()
        + _green_features()
        + _evidence_features()
        + _peer_features()
        + _application_declarations()
    )
    groups = tuple(ReasonGroup(name=n, label_zh=zh, label_en=en) for n, zh, en in REASON_GROUPS)
    return FeatureRegistry(features=tuple(features), reason_groups=groups)


# --------------------------------------------------------------------------------------------------
# Application-time features: ONE function, offline and at request time
# --------------------------------------------------------------------------------------------------

FloatArray = npt.NDArray[np.float64]


def _as_float(values: Any) -> FloatArray:
    """Float array with NaN for missing values (None converts to NaN); scalars become 0-d arrays."""
    return np.asarray(values, dtype=np.float64)


def application_features(
    member_features: Mapping[str, Any], *, amount_cny: Any, term_months: Any
) -> dict[str, FloatArray]:
    """Request-time features from the application's fields on top of a member vector.

    The offline builder calls this with whole columns; serving calls it with one member vector and
    scalars. Both paths run this very code, so training and serving cannot drift apart.

    Args:
        member_features: member features by name (a feature frame or one vector's mapping); needs
            `delivery_amount_365d` and `savings_balance`.
        amount_cny: amount requested (yuan), scalar or array.
        term_months: term requested (months), scalar or array.

    Returns:
        Feature name -> float64 array (0-d for scalar inputs); NaN where a ratio has no base.
    """
    amount = _as_float(amount_cny)
    term = _as_float(term_months)
    income = _as_float(member_features["delivery_amount_365d"])
    balance = _as_float(member_features["savings_balance"])
    shape = np.broadcast_shapes(amount.shape, term.shape, income.shape, balance.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        has_income = income > 0
        return {
            "application_amount_cny": np.broadcast_to(amount, shape).copy(),
            "application_term_months": np.broadcast_to(term, shape).copy(),
            "application_amount_to_delivery_income_365d": np.where(has_income, amount / income, np.nan),
            "application_installment_to_monthly_income": np.where(
                has_income & (term > 0), (amount / term) / (income / 12.0), np.nan
            ),
            "application_amount_to_savings_balance": np.where(balance > 0, amount / balance, np.nan),
        }


def application_features_for_request(
    member_features: Mapping[str, float], *, amount_cny: float, term_months: int
) -> dict[str, float]:
    """`application_features` for one request: plain floats (NaN when undefined)."""
    arrays = application_features(member_features, amount_cny=amount_cny, term_months=term_months)
    return {name: float(value) for name, value in arrays.items()}


# --------------------------------------------------------------------------------------------------
# Generated reference
# --------------------------------------------------------------------------------------------------


def _direction_label(direction: int) -> str:
    return {1: "+1 (raises risk)", -1: "−1 (lowers risk)", 0: "none"}[direction]


def _aggregation_label(feature: Feature) -> str:
    """Compact description of how a feature is computed, for the reference table."""
    parts: list[str] = [feature.aggregation]
    if feature.column:
        parts.append(f"({feature.column})")
    if feature.inputs:
        parts.append("(" + ", ".join(feature.inputs) + ")")
    if feature.values:
        parts.append(" in " + "/".join(feature.values))
    label = "".join(parts)
    for cond in feature.where:
        value = "/".join(cond.value) if isinstance(cond.value, tuple) else cond.value
        label += f" where {cond.column} {cond.op}" + ("" if value is None else f" {value}")
    return label


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_feature_reference(registry: FeatureRegistry) -> str:
    """Markdown reference of every feature, grouped by reason group (`docs/features.md`)."""
    lines = [
        "# Feature reference",
        "",
        "Generated from `features/views.py` by `features.views.render_feature_reference`",
        "(`coopscore features list --markdown > docs/features.md`); do not edit by hand.",
        "",
        f"Feature-set version `{registry.version}`: {len(registry.features)} features in "
        f"{len({f.reason_group for f in registry.features})} reason groups.",
        "",
        "Point-in-time rule: a feature as of `t` uses only events with `event_time < t` and "
        "`recorded_at <= t`, each `event_id` once (the earliest-recorded of its copies visible at "
        "`t`); an N-day window covers `[t - N days, t)`; a month is 30.4375 days of elapsed time "
        "(timestamps read to the second): `months since` an event counts the whole months elapsed "
        "until `t`, and a count of months in a window counts the month-long spans back from `t` "
        "that hold an event, so neither depends on the day of the month `t` falls on. The "
        "member's cooperative and village are those of their latest `join` event visible at `t`. "
        "Peer default rates use outcomes known by `t` (`max(observed_at, applied_at) <= t`), "
        "never the application being scored; an outcome counts for the village its applicant "
        "lived in when applying. Direction is the expected effect of a larger value on default "
        "risk (training turns it into a monotone constraint). Counts and flags are never missing; "
        "other features are empty (NaN) when undefined, e.g. a ratio over zero.",
        "",
    ]
    for group in registry.reason_groups:
        members = [f for f in registry.features if f.reason_group == group.name]
        if not members:
            continue
        lines += [
            f"## {group.label_en} · {group.label_zh} (`{group.name}`)",
            "",
            "| feature | entity | sources | computed as | window | dtype | direction "
            "| description (en) | 说明 (zh) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for f in members:
            sources = ", ".join(f.sources) if len(f.sources) < 4 else "all event types"
            cells = [
                f"`{f.name}`",
                f.entity,
                sources or "(features)",
                f"`{_aggregation_label(f)}`",
                f.window_label,
                f.dtype,
                _direction_label(f.direction),
                f.description_en,
                f.description_zh,
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def feature_table_rows(registry: FeatureRegistry) -> Iterable[dict[str, Any]]:
    """One plain dict per feature (the `coopscore features list --json` payload)."""
    for f in registry.features:
        yield {
            "name": f.name,
            "entity": f.entity,
            "sources": list(f.sources),
            "aggregation": f.aggregation,
            "window": f.window_label,
            "window_days": f.window_days,
            "dtype": f.dtype,
            "direction": f.direction,
            "reason_group": f.reason_group,
            "description_zh": f.description_zh,
            "description_en": f.description_en,
        }
