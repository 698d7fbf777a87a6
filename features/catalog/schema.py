"""The declaration types: `Feature`, `Condition`, `ReasonGroup`, `Action`, `Lever`, the validated
`FeatureRegistry`.

A `Feature` is pure data: what to aggregate (source event types, column, filter, window) and what it
means (risk direction, reason-code group, zh/en description), and for recourse whether a member can
move it (`levers`: which `Action` moves it and how) or never can (`immutable`). `FeatureRegistry`
validates a whole set at construction, so a declaration the builders could not compute, one that
would reach a protected attribute, or a lever that would move a feature against its declared
direction, fails at import time rather than in a training run.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from features.contracts import EVENT_PAYLOADS, EVENT_TYPES, MEMBER_ACTIONS, PROTECTED_ATTRIBUTES

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
LeverKind = Literal["add", "at_least", "set"]
ActionUnit = Literal["cny", "count", "months"]

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


class Action(_Declaration):
    """Something a member can do to change their record, with what it costs and how long it takes.

    Its size is `units` (CNY saved, trainings completed, months of an activity) on the grid
    `minimum, minimum + step, ..., maximum`. `cost_cny_per_unit` prices it in yuan (money spent or set
    aside, or the value of the working days it takes); it takes `months` months, or one month per
    unit when `months` is None. `causal` says whether doing it changes the member's risk (a training
    raises income) or only the record of it (attending meetings): recourse offers the non-causal ones
    last or not at all, and the simulator checks the claim (`mechanism_*` says why, in zh/en).
    `instruction_*` are format strings over `units` and `months`.
    """

    name: str
    label_zh: str
    label_en: str
    unit: ActionUnit
    unit_zh: str
    unit_en: str
    minimum: float
    step: float
    maximum: float
    cost_cny_per_unit: float
    months: int | None = None
    causal: bool
    mechanism_zh: str
    mechanism_en: str
    instruction_zh: str
    instruction_en: str

    @model_validator(mode="after")
    def _grid_is_sound(self) -> Action:
        if self.name not in MEMBER_ACTIONS:
            raise ValueError(f"unknown action {self.name!r}; actions are {MEMBER_ACTIONS}")
        if not (self.step > 0 and 0 < self.minimum <= self.maximum and self.cost_cny_per_unit >= 0):
            raise ValueError(f"action {self.name!r}: need 0 < step, 0 < minimum <= maximum, cost >= 0")
        if self.months is not None and self.months < 1:
            raise ValueError(f"action {self.name!r}: months must be >= 1")
        return self

    def duration_months(self, units: float) -> int:
        """Months it takes to do `units` of it (0 for none)."""
        if units <= 0:
            return 0
        return self.months if self.months is not None else max(1, math.ceil(units - 1e-9))

    def grid(self) -> tuple[float, ...]:
        """Every allowed size, smallest first (0, doing nothing, not included)."""
        return _grid(self.minimum, self.step, self.maximum)


@lru_cache(maxsize=64)
def _grid(minimum: float, step: float, maximum: float) -> tuple[float, ...]:
    count = math.floor((maximum - minimum) / step + 1e-9) + 1
    return tuple(round(minimum + i * step, 6) for i in range(count))


class Lever(_Declaration):
    """How one action moves one feature, all else equal, right after the action is done.

    With `u` units of the action (`u' = min(u, max_units)` when the feature's window only holds part of
    it) and `s` the applicant's own scale (1, or the value of `scale_by`: one feature, or the ratio of
    two, e.g. their average delivery value):

    - `add`: value + fixed + per_unit * s * u' (a missing value counts as 0): sums and counts;
    - `at_least`: max(value, fixed + per_unit * u'): distinct months or kinds, pessimistically assuming
      the action's months or kinds may be ones already on record;
    - `set`: `fixed`: a recency reset (months since the last event becomes 0).

    Nothing moves with `u = 0`.
    """

    action: str
    kind: LeverKind = "add"
    per_unit: float = 0.0
    fixed: float = 0.0
    max_units: float | None = None
    scale_by: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _shape(self) -> Lever:
        if self.action not in MEMBER_ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; actions are {MEMBER_ACTIONS}")
        if len(self.scale_by) > 2 or (self.scale_by and self.kind != "add"):
            raise ValueError("scale_by names one feature or a ratio of two, for an `add` lever")
        if self.kind == "set" and self.per_unit:
            raise ValueError("a `set` lever sets `fixed`; it has no per_unit")
        if self.max_units is not None and self.max_units <= 0:
            raise ValueError("max_units must be positive")
        return self


class Feature(_Declaration):
    """One model input: what it aggregates, over which window, and what it means for risk.

    `window_days=None` means lifetime (every event known at the time). `window_offset_days` shifts the
    window back, e.g. days 90-180 before the application for a trend's "prior" period.
    `direction` is the expected effect of a larger value on default risk (+1 raises it, -1 lowers it,
    0 no constraint); training turns it into a monotone constraint.

    For recourse, `levers` say which member actions move the feature and how (`Lever`); `immutable`
    marks what no action can change (length of history, past loans and lateness). A feature with
    neither is context the member does not control (peers, purchases); derived and request-time
    features follow their inputs. Neither field changes what the feature computes, so neither is
    part of the feature-set version.
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
    levers: tuple[Lever, ...] = ()
    immutable: bool = False

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
    actions: tuple[Action, ...] = ()

    def __post_init__(self) -> None:
        _validate(self.features, self.reason_groups)
        _validate_levers(self.features, self.actions)

    @cached_property
    def action_by_name(self) -> dict[str, Action]:
        """Declared member actions keyed by name."""
        return {a.name: a for a in self.actions}

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
            "features": [f.model_dump(mode="json", exclude=_NOT_SEMANTICS) for f in self.features],
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


# Declaration fields that do not change what a feature computes: left out of the feature-set version.
_NOT_SEMANTICS: Final = {"description_zh", "description_en", "levers", "immutable"}


def _validate_levers(features: tuple[Feature, ...], actions: tuple[Action, ...]) -> None:
    """Levers name declared actions, sit on the member's own event aggregates, and move a feature only
    the way its declared direction calls better (or a feature without a direction)."""
    declared = {a.name for a in actions}
    if len(declared) != len(actions):
        raise ValueError("action names must be unique")
    members = {f.name for f in features if not f.is_application}
    moved: set[str] = set()
    for f in features:
        where = f"feature {f.name!r}"
        if f.levers and (f.immutable or not f.is_event_aggregate):
            raise ValueError(f"{where}: only a mutable event aggregate has levers (others follow inputs)")
        if len({lever.kind for lever in f.levers}) > 1:
            raise ValueError(f"{where}: all levers of a feature are of one kind")
        for lever in f.levers:
            if lever.action not in declared:
                raise ValueError(f"{where}: lever of undeclared action {lever.action!r}")
            # The scale is read from the applicant's record before the action, so any member feature.
            missing = [n for n in lever.scale_by if n not in members]
            if missing:
                raise ValueError(f"{where}: scale_by must name member features: {missing}")
            raises = lever.kind != "set" and (lever.per_unit > 0 or lever.fixed > 0)
            if lever.kind != "set" and (lever.per_unit < 0 or lever.fixed < 0 or not raises):
                raise ValueError(f"{where}: an {lever.kind} lever must raise the value")
            if raises and f.direction > 0:
                raise ValueError(f"{where}: a lever may not raise a feature whose larger values raise risk")
            if lever.kind == "set" and (f.direction < 0 or lever.fixed != 0):
                raise ValueError(f"{where}: a set lever resets a recency (to 0) of a direction >= 0 feature")
            moved.add(lever.action)
    idle = declared - moved
    if idle:
        raise ValueError(f"actions that move no feature: {sorted(idle)}")


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
