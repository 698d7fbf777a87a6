"""Who a programme may subsidise, judged over a column table of approved applications.

The table (`Columns`: name -> one numpy array per column, same length) holds the application
(`applied_at` as UTC datetime64, `pd`, `amount_cny`, `term_months`), the evidence features the rules
read (`has_prior_loan`, `green_verified_count_lifetime`, `training_count_lifetime`) and the member
profile (`county_id`, `gender`, `birth_year`, `returning_youth`, `left_behind_woman`; booleans as
1.0 / 0.0 / NaN). The same function judges one online request (arrays of length 1) and a batch.

The profile fields are protected attributes. Reading them here is **targeting**, never scoring: the
model never sees them, and every read is counted by rule and field (`ProfileUse`) so the caller can
log it (the decision log online, the allocation report in batch). Checks run cheapest and
non-protected first, and a protected field is read only for applications still in contention, so the
counts are the reads that happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from features.contracts import PROTECTED_ATTRIBUTES
from models.programmes.programme import (
    Age,
    Budget,
    CompletedTraining,
    FirstFormalLoan,
    Gender,
    LeftBehindWoman,
    Period,
    Programme,
    ReturningYouth,
    Rule,
    VerifiedGreenPractice,
)

Columns = Mapping[str, npt.NDArray[Any]]
Mask = npt.NDArray[np.bool_]

# What each rule reads; `county_budget` is the budget lookup by the member's county.
RULE_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "first_formal_loan": ("has_prior_loan",),
    "returning_youth": ("returning_youth",),
    "left_behind_woman": ("left_behind_woman",),
    "gender": ("gender",),
    "age": ("birth_year", "applied_at"),
    "verified_green_practice": ("green_verified_count_lifetime",),
    "completed_training": ("training_count_lifetime",),
    "county_budget": ("county_id",),
}
PROTECTED: Final = frozenset(PROTECTED_ATTRIBUTES)
# The features rules read from a member's vector (as scored online; a file's columns in batch).
EVIDENCE_FEATURES: Final = ("has_prior_loan", "green_verified_count_lifetime", "training_count_lifetime")

# Why an application is not eligible (counted in reports; shown online without naming a protected rule).
OUTSIDE_PERIODS: Final = "applied outside the programme's periods"
NO_PROFILE: Final = "no member profile on file"
NO_BUDGET: Final = "the member's county has no budget in the period"
PD_ABOVE: Final = "PD above the programme's max_pd"
AMOUNT_OUTSIDE: Final = "amount outside the programme's limits"
TERM_ABOVE: Final = "term above the programme's max_term_months"
RULES_UNMET: Final = "eligibility rules not met"


_REASONS: Final = (OUTSIDE_PERIODS, NO_PROFILE, NO_BUDGET, PD_ABOVE, AMOUNT_OUTSIDE, TERM_ABOVE, RULES_UNMET)


@lru_cache(maxsize=256)
def _bounds(period: Period) -> tuple[np.datetime64, np.datetime64]:
    """A period's [start, end) as naive-UTC datetime64 (what `applied_at` holds)."""
    start, end = (np.datetime64(b.replace(tzinfo=None), "us") for b in period.bounds())
    return start, end


@lru_cache(maxsize=64)
def _budget_lines(budgets: tuple[Budget, ...]) -> frozenset[tuple[str, str]]:
    return frozenset((b.county_id, b.period) for b in budgets)


class EligibilityInputError(ValueError):
    """A rule needs a column the table does not have; the message names the rule and the column."""


@dataclass(frozen=True)
class ProfileUse:
    """How many applications a rule read a protected profile field for."""

    rule: str
    field: str
    count: int


@dataclass
class Assessment:
    """Per application: its period ('' outside all), whether it is eligible, why not, and its value to
    the objective (0 when not eligible); with every protected read counted."""

    period: npt.NDArray[np.object_]
    eligible: Mask
    reason: npt.NDArray[np.object_]
    value: npt.NDArray[np.float64]
    uses: list[ProfileUse] = field(default_factory=list)

    def exclusions(self) -> dict[str, int]:
        """Count of applications by the reason they are not eligible."""
        reasons, counts = np.unique(self.reason[~self.eligible].astype(str), return_counts=True)
        return {str(r): int(c) for r, c in zip(reasons, counts, strict=True)}


class _Reads:
    """Counts protected reads by (rule, field)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def note(self, rule: str, active: Mask, label: str | None = None) -> None:
        n = int(active.sum())
        if n == 0:
            return
        for name in RULE_FIELDS[rule]:
            if name in PROTECTED:
                key = (label or rule, name)
                self.counts[key] = self.counts.get(key, 0) + n

    def uses(self) -> list[ProfileUse]:
        return [ProfileUse(rule, name, count) for (rule, name), count in sorted(self.counts.items())]


def _column(columns: Columns, name: str, rule: str, n: int, strict: bool) -> np.ndarray:
    if name in columns:
        return np.asarray(columns[name])
    if strict:
        raise EligibilityInputError(
            f"rule {rule!r} reads column {name!r}, which the applications do not have"
        )
    return np.full(n, np.nan, dtype=np.float64)


def _numbers(values: np.ndarray) -> npt.NDArray[np.float64]:
    out = np.asarray(values, dtype=np.float64) if values.dtype != object else _float_objects(values)
    return out


def _float_objects(values: np.ndarray) -> npt.NDArray[np.float64]:
    out = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        if value is None or isinstance(value, str):
            continue
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _holds_where(rule: Rule, columns: Columns, active: Mask, *, strict: bool) -> Mask:
    """Where `rule` holds, read only on the `active` rows (the others are False)."""
    holds = np.zeros(len(active), dtype=bool)
    rows = np.flatnonzero(active)
    if len(rows):
        subset = {name: np.asarray(columns[name])[rows] for name in RULE_FIELDS[rule.rule] if name in columns}
        holds[rows] = rule_holds(rule, subset, len(rows), strict=strict)
    return holds


def rule_holds(rule: Rule, columns: Columns, n: int, *, strict: bool = True) -> Mask:
    """Where `rule` holds, for each of the `n` rows of `columns`."""

    def number(name: str) -> npt.NDArray[np.float64]:
        return _numbers(_column(columns, name, rule.rule, n, strict))

    if isinstance(rule, FirstFormalLoan):
        return np.equal(number("has_prior_loan"), 0.0)
    if isinstance(rule, ReturningYouth):
        return np.equal(number("returning_youth"), 1.0)
    if isinstance(rule, LeftBehindWoman):
        return np.equal(number("left_behind_woman"), 1.0)
    if isinstance(rule, Gender):
        return np.asarray(_column(columns, "gender", rule.rule, n, strict) == rule.is_, dtype=bool)
    if isinstance(rule, Age):
        applied = np.asarray(_column(columns, "applied_at", rule.rule, n, strict)).astype("datetime64[Y]")
        age = applied.astype(np.int64) + 1970 - number("birth_year")
        holds = ~np.isnan(age)
        if rule.min is not None:
            holds &= age >= rule.min
        if rule.max is not None:
            holds &= age <= rule.max
        return np.asarray(holds, dtype=bool)
    if isinstance(rule, VerifiedGreenPractice):
        return np.greater_equal(number("green_verified_count_lifetime"), rule.min_count)
    if isinstance(rule, CompletedTraining):
        return np.greater_equal(number("training_count_lifetime"), rule.min_count)
    raise AssertionError(f"unknown rule {rule!r}")  # the Rule union is closed


def assess(programme: Programme, columns: Columns, *, strict: bool = True) -> Assessment:
    """Judge every application of `columns` against the programme (approval is the caller's filter).

    `strict`: a column a rule needs and the table lacks is an `EligibilityInputError` (batch); without
    it the rule is simply not met (online, e.g. a table-trained model's vector).
    """
    if strict:
        _require_columns(programme, columns)
    applied = np.asarray(columns["applied_at"]).astype("datetime64[us]")
    n = len(applied)
    reads = _Reads()
    code = np.zeros(n, dtype=np.int8)  # 0: still eligible, else the index of the first reason + 1
    period = np.full(n, "", dtype=object)

    def exclude(where: Mask, why: str) -> None:
        code[where & (code == 0)] = _REASONS.index(why) + 1

    for spec in programme.periods:
        start, end = _bounds(spec)
        period[(applied >= start) & (applied < end)] = spec.id
    exclude(period == "", OUTSIDE_PERIODS)

    e = programme.eligibility
    pds = _numbers(np.asarray(columns["pd"]))
    amounts = _numbers(np.asarray(columns["amount_cny"]))
    terms = _numbers(np.asarray(columns["term_months"]))
    if e.max_pd is not None:
        exclude(~(pds <= e.max_pd), PD_ABOVE)
    exclude(~(amounts >= e.min_amount_cny) | (amounts > (e.max_amount_cny or np.inf)), AMOUNT_OUTSIDE)
    if e.max_term_months is not None:
        exclude(~(terms <= e.max_term_months), TERM_ABOVE)

    # The county decides the budget line: a protected read, for applications still in contention.
    counties = np.asarray(_column(columns, "county_id", "county_budget", n, strict), dtype=object)
    reads.note("county_budget", code == 0)
    budgets = _budget_lines(programme.budgets)
    has_profile = np.array([isinstance(c, str) and c != "" for c in counties], dtype=bool)
    exclude(~has_profile, NO_PROFILE)
    has_budget = np.array([(c, p) in budgets for c, p in zip(counties, period, strict=True)], dtype=bool)
    exclude(~has_budget, NO_BUDGET)

    for rule in e.all_of:
        active = code == 0
        reads.note(rule.rule, active)
        exclude(~_holds_where(rule, columns, active, strict=strict), RULES_UNMET)
    if e.any_of:
        active = code == 0
        met = np.zeros(n, dtype=bool)
        for rule in e.any_of:
            # Read only for applications no earlier alternative has admitted: an `any_of` stops at
            # the first rule met, so the counts are the reads a person would make going down the list.
            pending = active & ~met
            reads.note(rule.rule, pending)
            met |= _holds_where(rule, columns, pending, strict=strict)
        exclude(active & ~met, RULES_UNMET)

    eligible = code == 0
    reason = np.array(("", *_REASONS), dtype=object)[code]
    value = np.where(eligible, programme.objective.base, 0.0)
    if programme.objective.value == "weighted":
        for name, weight in programme.objective.weights.items():
            rule = _default_rule(name)
            reads.note(rule.rule, eligible, label=f"objective weight {name}")
            value = value + np.where(_holds_where(rule, columns, eligible, strict=strict), weight, 0.0)
    return Assessment(period, eligible, reason, np.asarray(value, dtype=np.float64), reads.uses())


def rules_of(programme: Programme) -> list[Rule]:
    """Every rule the programme evaluates: eligibility, then the objective's weights."""
    e = programme.eligibility
    return [*e.all_of, *e.any_of, *(_default_rule(name) for name in programme.objective.weights)]


def _require_columns(programme: Programme, columns: Columns) -> None:
    needed = {
        "applied_at": "the period",
        "pd": "the PD limit",
        "amount_cny": "the amount",
        "term_months": "the term",
    }
    needed |= {name: f"rule {rule.rule!r}" for rule in rules_of(programme) for name in RULE_FIELDS[rule.rule]}
    needed.setdefault("county_id", "the county budget")
    for name, what in needed.items():
        if name not in columns:
            raise EligibilityInputError(f"{what} reads column {name!r}, which the applications do not have")


@lru_cache(maxsize=16)
def _default_rule(name: str) -> Rule:
    """A rule by its name with default parameters (objective weights name rules this way)."""
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Rule] = TypeAdapter(Rule)
    return adapter.validate_python(name)
