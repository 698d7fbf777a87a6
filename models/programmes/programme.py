"""The programme file: one interest-subsidy programme (贴息), versioned, validated, YAML or JSON.

A county innovation centre funds part (or all) of the interest on small loans to the households a
programme is for. The file names the periods, a budget per county and period, who is eligible, how
much of the interest is paid, and a ceiling on the expected loss of the subsidised loans. Unknown
fields are refused (`extra="forbid"`), so a typo fails loudly with the field named.

```yaml
id: green-youth-2026
version: 1
name: {zh: 返乡青年绿色贷款贴息, en: Green loans for returning youth}
periods: [{id: 2026H1, start: 2026-01-01, end: 2026-07-01}]
budgets: [{county_id: county-01, period: 2026H1, amount_cny: 200000}]
subsidy: {share: 0.5, reference_annual_rate: 0.08}
loss_ceiling: {lgd: 0.6, max_expected_loss_cny: 150000}
eligibility: {all_of: [first_formal_loan], any_of: [returning_youth, left_behind_woman]}
```
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from features.contracts import ID_PATTERN


class ProgrammeFileError(ValueError):
    """A programme file that cannot be read or does not validate; the message names the file and field."""


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Text(_Spec):
    """A people-facing text in both languages."""

    zh: str = Field(min_length=1, max_length=500)
    en: str = Field(min_length=1, max_length=500)


# -- eligibility rules -----------------------------------------------------------------------------
# Each rule names what it reads (`eligibility.RULE_FIELDS`); the protected ones are targeting only.


class FirstFormalLoan(_Spec):
    """No earlier loan on record (`has_prior_loan` = 0): a first formal loan."""

    rule: Literal["first_formal_loan"] = "first_formal_loan"


class ReturningYouth(_Spec):
    """The member profile marks a returning youth (protected: targeting only)."""

    rule: Literal["returning_youth"] = "returning_youth"


class LeftBehindWoman(_Spec):
    """The member profile marks a left-behind woman (protected: targeting only)."""

    rule: Literal["left_behind_woman"] = "left_behind_woman"


class Gender(_Spec):
    """The member profile's gender is `is_` (protected: targeting only)."""

    rule: Literal["gender"] = "gender"
    is_: Literal["female", "male"] = Field(alias="is")


class Age(_Spec):
    """Age at application within [min, max] years, from the profile's birth year (protected)."""

    rule: Literal["age"] = "age"
    min: int | None = Field(default=None, ge=0, le=120)
    max: int | None = Field(default=None, ge=0, le=120)

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("age needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"age: min {self.min} is above max {self.max}")
        return self


class VerifiedGreenPractice(_Spec):
    """At least `min_count` verified green practices on record."""

    rule: Literal["verified_green_practice"] = "verified_green_practice"
    min_count: int = Field(default=1, ge=1)


class CompletedTraining(_Spec):
    """At least `min_count` cooperative trainings completed."""

    rule: Literal["completed_training"] = "completed_training"
    min_count: int = Field(default=1, ge=1)


def _shorthand(value: object) -> object:
    """`returning_youth` is short for `{rule: returning_youth}`."""
    return {"rule": value} if isinstance(value, str) else value


Rule = Annotated[
    FirstFormalLoan
    | ReturningYouth
    | LeftBehindWoman
    | Gender
    | Age
    | VerifiedGreenPractice
    | CompletedTraining,
    Field(discriminator="rule"),
    BeforeValidator(_shorthand),
]
RuleName = Literal[
    "first_formal_loan",
    "returning_youth",
    "left_behind_woman",
    "verified_green_practice",
    "completed_training",
]


class Eligibility(_Spec):
    """Who may be subsidised: an approved application in a period and a county with a budget, meeting
    every rule of `all_of` and at least one of `any_of` (when given), within the PD and amount limits."""

    all_of: tuple[Rule, ...] = ()
    any_of: tuple[Rule, ...] = ()
    max_pd: float | None = Field(default=None, gt=0, le=1, description="highest PD subsidised")
    min_amount_cny: float = Field(default=0.0, ge=0)
    max_amount_cny: float | None = Field(default=None, gt=0)
    max_term_months: int | None = Field(default=None, ge=1, le=120)


# -- money -----------------------------------------------------------------------------------------


class Period(_Spec):
    """A budget period: applications with `start <= applied_at < end` (dates, UTC)."""

    id: str = Field(pattern=ID_PATTERN)
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start >= self.end:
            raise ValueError(f"period {self.id}: start {self.start} is not before end {self.end}")
        return self

    def bounds(self) -> tuple[datetime, datetime]:
        """[start, end) as UTC midnights."""
        return _midnight(self.start), _midnight(self.end)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class Budget(_Spec):
    """The subsidy a county may pay out in one period (yuan)."""

    county_id: str = Field(pattern=ID_PATTERN)
    period: str = Field(pattern=ID_PATTERN)
    amount_cny: float = Field(ge=0)


class Subsidy(_Spec):
    """What the programme pays: `share` of the loan's total interest (1.0: all of it), at most
    `max_per_loan_cny`. Interest is at the offer's rate, or at `reference_annual_rate` without one."""

    share: float = Field(gt=0, le=1)
    max_per_loan_cny: float | None = Field(default=None, gt=0)
    reference_annual_rate: float = Field(gt=0, le=0.5, description="annual rate when the offer has none")
    interest_at: Literal["offer", "reference_rate"] = Field(
        "offer",
        description="online: the interest of the loan as offered (its principal and rate), or always "
        "the amount asked at reference_annual_rate (a programme that fixes its cost per loan)",
    )


class LossCeiling(_Spec):
    """A ceiling per period on Σ PD × LGD × principal over the subsidised loans."""

    lgd: float = Field(gt=0, le=1, description="loss given default assumed for the ceiling")
    max_expected_loss_cny: float = Field(ge=0)


class Objective(_Spec):
    """What the batch allocation maximises: households reached, or a declared weighted value per
    household (`base` plus the weight of each rule it meets)."""

    value: Literal["households", "weighted"] = "households"
    base: float = Field(default=1.0, gt=0)
    weights: dict[RuleName, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _weights_when_weighted(self) -> Self:
        if self.value == "weighted" and not self.weights:
            raise ValueError("objective value 'weighted' needs weights, e.g. {left_behind_woman: 1.0}")
        if self.value == "households" and self.weights:
            raise ValueError("weights are used only with objective value 'weighted'")
        if any(w <= 0 for w in self.weights.values()):
            raise ValueError("weights must be positive")
        return self


class Programme(_Spec):
    """One interest-subsidy programme, as its file declares it."""

    id: str = Field(pattern=ID_PATTERN)
    version: int = Field(ge=1, description="bumped on every change; stored with each reservation")
    name: Text
    description: Text | None = None
    periods: tuple[Period, ...] = Field(min_length=1)
    budgets: tuple[Budget, ...] = Field(min_length=1)
    subsidy: Subsidy
    loss_ceiling: LossCeiling
    eligibility: Eligibility = Eligibility()
    objective: Objective = Objective()
    reservation_days: int = Field(default=30, ge=1, le=365, description="an online offer's subsidy is held")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        ids = [p.id for p in self.periods]
        if len(set(ids)) != len(ids):
            raise ValueError(f"periods: an id is repeated ({', '.join(ids)})")
        ordered = sorted(self.periods, key=lambda p: p.start)
        for before, after in itertools.pairwise(ordered):
            if after.start < before.end:
                raise ValueError(f"periods {before.id} and {after.id} overlap")
        seen: set[tuple[str, str]] = set()
        for budget in self.budgets:
            if budget.period not in ids:
                raise ValueError(
                    f"budgets: period {budget.period!r} is not one of the periods ({', '.join(ids)})"
                )
            key = (budget.county_id, budget.period)
            if key in seen:
                raise ValueError(f"budgets: county {key[0]} has two budgets for period {key[1]}")
            seen.add(key)
        return self

    def period_at(self, moment: datetime) -> Period | None:
        """The period holding `moment` (UTC), if any."""
        for period in self.periods:
            start, end = period.bounds()
            if start <= moment < end:
                return period
        return None

    def budget(self, county_id: str, period: str) -> float | None:
        """The county's budget for the period (None: the county has none)."""
        for budget in self.budgets:
            if budget.county_id == county_id and budget.period == period:
                return budget.amount_cny
        return None


@dataclass(frozen=True)
class LoadedProgramme:
    """A validated programme with where it came from and the SHA-256 of its bytes."""

    programme: Programme
    path: Path
    sha256: str


def load_programme(path: Path) -> LoadedProgramme:
    """Read and validate a programme file (YAML for .yaml/.yml, else JSON).

    Raises:
        ProgrammeFileError: one line naming the file and, for a validation error, each bad field.
    """
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ProgrammeFileError(
            f"{path}: cannot read the programme file ({error.strerror or error})"
        ) from None
    try:
        data = _parse(path, raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ProgrammeFileError(f"{path}: not UTF-8 text") from None
    if not isinstance(data, dict):
        raise ProgrammeFileError(f"{path}: a programme file holds one mapping (id, version, name, ...)")
    try:
        programme = Programme.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'programme'}: {e['msg']}" for e in error.errors()
        )
        raise ProgrammeFileError(f"{path}: {problems}") from None
    return LoadedProgramme(programme, path, hashlib.sha256(raw).hexdigest())


def _parse(path: Path, text: str) -> Any:
    """The file's data: YAML for a .yaml/.yml name, else JSON."""
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ProgrammeFileError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise ProgrammeFileError(f"{path}: not valid JSON: {error}") from None
