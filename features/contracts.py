"""Data contracts: the typed schema of every event type and reference table, as Arrow schemas.

Every event shares the common columns (`COMMON_FIELDS`); its payload columns are declared per type in
`EVENT_PAYLOADS`. Raw feeds may carry the union of all payload columns (a wide bookkeeping export);
the event log stores each type in its own partition with exactly that type's schema.
Protected attributes live only in `MEMBER_PROFILE_SCHEMA` (see `PROTECTED_ATTRIBUTES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import pyarrow as pa

SCHEMA_VERSION: Final = 1

TIMESTAMP: Final = pa.timestamp("us", tz="UTC")

# Every identifier (member, cooperative, event, application, loan, county): 1-64 ASCII letters, digits
# and `_ . : -`, starting with a letter or digit. The API's request models and ingest validation both use
# this one pattern, so an id the API would refuse can never enter the event log through a feed file
# (no NUL, no bidi overrides, no path tricks, no quotes, nothing huge).
ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"


@dataclass(frozen=True)
class FieldSpec:
    """One typed column: its Arrow type, whether it is required, and any allowed values or range."""

    name: str
    type: pa.DataType
    required: bool = True
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    # Upper bound is a settings value for money/quantity (see `ingest`); here a static bound only.
    maximum: float | None = None
    description: str = ""
    # A regular expression every value must match in full (identifiers: `ID_PATTERN`).
    pattern: str | None = None


@dataclass(frozen=True)
class TableContract:
    """A table's columns, in order; `arrow_schema()` is the one Arrow schema for that table."""

    name: str
    fields: tuple[FieldSpec, ...]
    key: tuple[str, ...] = field(default_factory=tuple)

    def arrow_schema(self) -> pa.Schema:
        """Arrow schema with the contract version in its metadata."""
        return pa.schema(
            [pa.field(f.name, f.type, nullable=not f.required) for f in self.fields],
            metadata={
                "coopscore.table": self.name,
                "coopscore.schema_version": str(SCHEMA_VERSION),
            },
        )

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [f.name for f in self.fields]


def _id(name: str, description: str = "") -> FieldSpec:
    """A required identifier column, held to `ID_PATTERN`."""
    return FieldSpec(name, pa.string(), pattern=ID_PATTERN, description=description)


COMMON_FIELDS: Final[tuple[FieldSpec, ...]] = (
    _id("event_id", "globally unique; the idempotency key"),
    _id("member_id"),
    _id("coop_id"),
    FieldSpec("event_type", pa.string()),
    FieldSpec("event_time", TIMESTAMP, description="when it happened (UTC)"),
    FieldSpec("recorded_at", TIMESTAMP, description="when the system learned it (UTC)"),
)

_AMOUNT = FieldSpec("amount_cny", pa.float64(), minimum=0.0, description="yuan")

PRODUCE_PRODUCTS: Final = (
    "玉米",  # maize
    "水稻",  # rice
    "小麦",  # wheat
    "茶叶",  # tea
    "猕猴桃",  # kiwifruit
    "柑橘",  # citrus
    "生猪",  # hogs
    "蔬菜",  # vegetables
    "中药材",  # medicinal herbs
)
QUALITY_GRADES: Final = ("A", "B", "C")
INPUT_CATEGORIES: Final = ("seed", "fertilizer", "pesticide", "feed", "equipment", "other")
MEMBERSHIP_ACTIONS: Final = ("join", "leave")
MEMBERSHIP_ROLES: Final = ("member", "leader", "board")
TRAINING_TOPICS: Final = (
    "agronomy",
    "bookkeeping",
    "e_commerce",
    "livestock",
    "financial_literacy",
    "green_production",
)
PAYMENT_DIRECTIONS: Final = ("in", "out")
GREEN_PRACTICES: Final = (
    "organic_fertilizer",
    "drip_irrigation",
    "straw_return",
    "integrated_pest_management",
)

# What a member can do to change their record (recourse). The feature catalogue declares how each one
# moves the features (`features.catalog.actions`) and the simulator how each one acts in the world
# (`simulator.interventions`); both are checked against this one list.
MEMBER_ACTIONS: Final = (
    "save_group_fund",
    "complete_training",
    "adopt_green_practice",
    "deliver_through_coop",
    "attend_meetings",
)

EVENT_PAYLOADS: Final[dict[str, tuple[FieldSpec, ...]]] = {
    "membership": (
        FieldSpec("action", pa.string(), enum=MEMBERSHIP_ACTIONS),
        FieldSpec("role", pa.string(), enum=MEMBERSHIP_ROLES),
        # A village label as the cooperative writes it (often in Chinese), not a key: no id pattern.
        FieldSpec("village_id", pa.string(), description="village of residence at joining"),
    ),
    "produce_delivery": (
        FieldSpec("product", pa.string(), enum=PRODUCE_PRODUCTS),
        FieldSpec("quantity_kg", pa.float64(), minimum=0.0),
        _AMOUNT,
        FieldSpec("quality_grade", pa.string(), enum=QUALITY_GRADES),
    ),
    "input_purchase": (
        FieldSpec("category", pa.string(), enum=INPUT_CATEGORIES),
        _AMOUNT,
        FieldSpec("on_credit", pa.bool_()),
    ),
    "savings_deposit": (_AMOUNT,),
    "savings_withdrawal": (_AMOUNT,),
    "loan_disbursement": (
        _id("loan_id"),
        _AMOUNT,
        FieldSpec("due_date", TIMESTAMP),
    ),
    "loan_repayment": (
        _id("loan_id"),
        _AMOUNT,
        FieldSpec("due_date", TIMESTAMP),
        FieldSpec("days_late", pa.int32(), minimum=0, maximum=3650),
    ),
    "meeting_attendance": (),
    "training_completed": (FieldSpec("topic", pa.string(), enum=TRAINING_TOPICS),),
    "mobile_payment": (
        FieldSpec("direction", pa.string(), enum=PAYMENT_DIRECTIONS),
        _AMOUNT,
    ),
    "green_practice": (
        FieldSpec("practice", pa.string(), enum=GREEN_PRACTICES),
        FieldSpec("verified", pa.bool_()),
    ),
}
EVENT_TYPES: Final[tuple[str, ...]] = tuple(EVENT_PAYLOADS)

EVENT_CONTRACTS: Final[dict[str, TableContract]] = {
    etype: TableContract(f"event.{etype}", COMMON_FIELDS + payload, key=("event_id",))
    for etype, payload in EVENT_PAYLOADS.items()
}


def _wide_payload() -> tuple[FieldSpec, ...]:
    """Union of every payload column, each optional: the layout of a mixed bookkeeping export (the
    rules per event type, required ones included, come from `EVENT_PAYLOADS`)."""
    seen: dict[str, FieldSpec] = {}
    for payload in EVENT_PAYLOADS.values():
        for spec in payload:
            seen.setdefault(spec.name, FieldSpec(spec.name, spec.type, required=False, pattern=spec.pattern))
    return tuple(seen.values())


WIDE_EVENT_CONTRACT: Final = TableContract("event.wide", COMMON_FIELDS + _wide_payload(), key=("event_id",))

LOAN_PURPOSES: Final = ("farm_inputs", "livestock", "equipment", "processing", "trade", "other")

APPLICATION_CONTRACT: Final = TableContract(
    "applications",
    (
        _id("application_id"),
        _id("member_id"),
        _id("coop_id"),
        FieldSpec("applied_at", TIMESTAMP),
        FieldSpec("amount_cny", pa.float64(), minimum=0.0),
        FieldSpec("term_months", pa.int32(), minimum=1, maximum=120),
        FieldSpec("purpose", pa.string(), enum=LOAN_PURPOSES),
    ),
    key=("application_id",),
)

OUTCOME_CONTRACT: Final = TableContract(
    "outcomes",
    (
        _id("application_id"),
        FieldSpec("defaulted", pa.bool_(), description="90+ days past due within 12 months"),
        FieldSpec("observed_at", TIMESTAMP),
    ),
    key=("application_id",),
)

GENDERS: Final = ("female", "male")
PROTECTED_ATTRIBUTES: Final = (
    "gender",
    "birth_year",
    "returning_youth",
    "left_behind_woman",
    "county_id",
)

MEMBER_PROFILE_CONTRACT: Final = TableContract(
    "member_profiles",
    (
        _id("member_id"),
        FieldSpec("gender", pa.string(), enum=GENDERS),
        FieldSpec("birth_year", pa.int32(), minimum=1920, maximum=2015),
        FieldSpec("returning_youth", pa.bool_()),
        FieldSpec("left_behind_woman", pa.bool_()),
        _id("county_id"),
    ),
    key=("member_id",),
)

COOPERATIVE_CONTRACT: Final = TableContract(
    "cooperatives",
    (
        _id("coop_id"),
        FieldSpec("name", pa.string()),
        _id("county_id"),
        FieldSpec("founded_at", TIMESTAMP),
    ),
    key=("coop_id",),
)

REFERENCE_CONTRACTS: Final[dict[str, TableContract]] = {
    c.name: c for c in (APPLICATION_CONTRACT, OUTCOME_CONTRACT, MEMBER_PROFILE_CONTRACT, COOPERATIVE_CONTRACT)
}
