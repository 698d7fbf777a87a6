"""The pricing policy: a versioned, validated file that turns a credit decision into an offer's terms.

A lender's pricing people own this file, not the model: product rules (amounts, terms, the largest
payment-to-income), the parts of the annual rate (funding cost, loss given default, operating cost,
margin, floor and cap), affordability (which recorded income and savings count, and how much), and the
green discount the programme pays for verified green practices. `extra="forbid"` everywhere, so a typo
fails loudly; every feature it names is checked against the feature catalogue. A bad file is refused
with one line naming the field (`PricingPolicyError`). `models.offers` applies a loaded policy.

Every decision records the policy's `version` (the label its authors give it) and `digest` (SHA-256 of
the validated content as canonical JSON: the same policy written as YAML or JSON, with or without
comments, has one digest; any change of a value changes it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.catalog.schema import Condition, Feature

# The policy shipped with coopscore, used unless `COOPSCORE_PRICING_POLICY` (or `coopscore serve
# --pricing-policy`) names another.
DEFAULT_PRICING_POLICY: Final = Path(__file__).with_name("pricing_policy.yaml")
# Days per month of a feature window: a window of D days counts as D / 365 × 12 months.
_DAYS_PER_YEAR: Final = 365.0
_VERIFIED: Final = Condition(column="verified", op="is_true")


class PricingPolicyError(ValueError):
    """A pricing policy file that cannot be used; the message is one line naming the file and field."""


class _Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _catalog_feature(name: str) -> Feature:
    """The catalogue's declaration of `name` (the registry is built on first use, then cached)."""
    from features.catalog.registry import default_registry

    feature = default_registry().by_name.get(name)
    if feature is None:
        raise ValueError(f"{name!r} is not a feature of the catalogue (coopscore features list)")
    if feature.is_application:
        raise ValueError(f"{name!r} is computed from the application, not from the member's record")
    return feature


class ProductRules(_Policy):
    """What the product allows, whatever the applicant's risk."""

    min_amount_cny: float = Field(gt=0, description="smallest loan offered (CNY)")
    max_amount_cny: float = Field(gt=0, le=5_000_000, description="largest loan offered (CNY)")
    min_term_months: int = Field(ge=1, le=120, description="shortest term offered (months)")
    max_term_months: int = Field(ge=1, le=120, description="longest term offered (months)")
    max_payment_to_income: float = Field(
        gt=0,
        le=1,
        description="the monthly payment may be at most this share of the monthly income on record",
    )
    round_down_to_cny: float = Field(100.0, gt=0, description="limits are rounded down to a multiple of this")

    @model_validator(mode="after")
    def _ranges(self) -> ProductRules:
        if self.min_amount_cny > self.max_amount_cny:
            raise ValueError(
                f"min_amount_cny {self.min_amount_cny:g} is above max_amount_cny {self.max_amount_cny:g}"
            )
        if self.min_term_months > self.max_term_months:
            raise ValueError(
                f"min_term_months {self.min_term_months} is above max_term_months {self.max_term_months}"
            )
        return self


class RateRules(_Policy):
    """The parts of the annual rate, in basis points (1 bp = 0.01%), and its floor and cap."""

    funding_cost_bps: float = Field(ge=0, le=5_000, description="the lender's cost of funds")
    operating_cost_bps: float = Field(ge=0, le=5_000, description="cost of originating and servicing")
    margin_bps: float = Field(ge=0, le=5_000, description="the lender's margin")
    lgd: float = Field(gt=0, le=1, description="loss given default: share of the loan lost when it defaults")
    pd_horizon_months: int = Field(
        12, ge=1, le=120, description="the PD is a default within this many months (the model's label window)"
    )
    floor_bps: float = Field(ge=0, le=10_000, description="lowest annual rate offered")
    cap_bps: float = Field(gt=0, le=10_000, description="highest annual rate offered")

    @model_validator(mode="after")
    def _bounds(self) -> RateRules:
        if self.floor_bps > self.cap_bps:
            raise ValueError(f"floor_bps {self.floor_bps:g} is above cap_bps {self.cap_bps:g}")
        return self


class IncomeSource(_Policy):
    """One recorded amount counted as income: a catalogue feature summing money over a window."""

    feature: str = Field(
        description="a catalogue feature: a sum of amount_cny over a window, e.g. delivery_amount_365d"
    )
    share: float = Field(gt=0, le=1, description="share of that amount counted as the household's income")

    @field_validator("feature")
    @classmethod
    def _an_amount_over_a_window(cls, name: str) -> str:
        feature = _catalog_feature(name)
        is_amount = (feature.aggregation == "sum" and feature.column == "amount_cny") or (
            feature.aggregation == "difference" and feature.window_days is not None
        )
        if not is_amount or feature.window_days is None or feature.window_offset_days:
            raise ValueError(
                f"{name!r} is not an amount over a recent window "
                "(a sum of amount_cny, e.g. delivery_amount_365d)"
            )
        return name


class PdBand(_Policy):
    """Applicants with a PD up to `up_to_pd` (and above the previous band's) get this share of the limit."""

    up_to_pd: float = Field(gt=0, le=1)
    limit_multiplier: float = Field(ge=0, le=1)


class AffordabilityRules(_Policy):
    """How much can be repaid, from the income and savings on the cooperative record, and how PD trims it."""

    income: tuple[IncomeSource, ...] = Field(
        min_length=1, max_length=10, description="amounts counted as income"
    )
    debt_service_share: float = Field(
        gt=0, le=1, description="share of the monthly income the lender counts on for repayments"
    )
    savings_feature: str | None = Field(
        "savings_balance", description="the group-savings balance feature (null: savings do not count)"
    )
    savings_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of the savings balance counted towards repayment, spread over the term",
    )
    pd_bands: tuple[PdBand, ...] = Field(
        min_length=1,
        max_length=20,
        description="limit multiplier by PD band; PDs rising to 1, multipliers never rising",
    )

    @field_validator("savings_feature")
    @classmethod
    def _a_member_feature(cls, name: str | None) -> str | None:
        if name is not None:
            _catalog_feature(name)
        return name

    @field_validator("pd_bands")
    @classmethod
    def _bands_cover_every_pd(cls, bands: tuple[PdBand, ...]) -> tuple[PdBand, ...]:
        for before, after in pairwise(bands):
            if after.up_to_pd <= before.up_to_pd:
                raise ValueError(
                    f"up_to_pd must rise band by band ({before.up_to_pd:g} then {after.up_to_pd:g})"
                )
            if after.limit_multiplier > before.limit_multiplier:
                raise ValueError(
                    f"limit_multiplier must never rise with PD ({before.limit_multiplier:g} then "
                    f"{after.limit_multiplier:g}): a riskier applicant never gets a larger limit"
                )
        if bands[-1].up_to_pd != 1.0:
            raise ValueError(f"the last band must reach up_to_pd 1 (it ends at {bands[-1].up_to_pd:g})")
        return bands


class GreenDiscount(_Policy):
    """A rate discount per recent verified green practice, paid by the programme (not a risk price)."""

    count_feature: str = Field(
        "green_verified_count_365d",
        description="a catalogue feature counting verified green practices over its window (the N months)",
    )
    discount_bps_per_practice: float = Field(ge=0, le=1_000)
    max_discount_bps: float = Field(ge=0, le=2_000)
    programme_zh: str = Field(min_length=1, max_length=200, description="who pays the discount, in Chinese")
    programme_en: str = Field(min_length=1, max_length=200, description="who pays the discount, in English")

    @field_validator("count_feature")
    @classmethod
    def _counts_verified_green_practices(cls, name: str) -> str:
        feature = _catalog_feature(name)
        if (
            feature.aggregation != "count"
            or feature.sources != ("green_practice",)
            or _VERIFIED not in feature.where
        ):
            raise ValueError(
                f"{name!r} does not count verified green practices (e.g. green_verified_count_365d)"
            )
        return name


class PricingPolicy(_Policy):
    """The whole pricing policy file."""

    version: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$",
        description="the policy's label, stored with every decision (change it with any value)",
    )
    description: str = Field("", max_length=2_000)
    product: ProductRules
    rate: RateRules
    affordability: AffordabilityRules
    green: GreenDiscount


@lru_cache(maxsize=64)
def window_months(feature: str) -> float | None:
    """Months a catalogue feature's window spans (D days count as D / 365 × 12); None for lifetime."""
    days = _catalog_feature(feature).window_days
    return None if days is None else days / _DAYS_PER_YEAR * 12.0


@dataclass(frozen=True)
class LoadedPricingPolicy:
    """A validated policy with what identifies it: the file it came from and its content digest."""

    policy: PricingPolicy
    digest: str
    source: str

    @property
    def version(self) -> str:
        """The policy's own label."""
        return self.policy.version


def policy_digest(policy: PricingPolicy) -> str:
    """SHA-256 of the policy's validated content as canonical JSON (keys sorted, compact, UTF-8)."""
    canonical = json.dumps(
        policy.model_dump(mode="json"), ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _problems(error: ValidationError) -> str:
    """pydantic's errors as `field: problem` on one line. A list whose items failed is not also
    reported as too short (pydantic counts only the valid items)."""
    errors = error.errors(include_url=False)
    failed_inside = {item["loc"][:i] for item in errors for i in range(1, len(item["loc"]))}
    parts = []
    for item in errors:
        if item["type"] == "too_short" and item["loc"] in failed_inside:
            continue
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (a typo?)"
        parts.append(f"{where}: {message}")
    return "; ".join(" ".join(p.split()) for p in parts)


def _parse(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml  # pyyaml is in the lock already (as training/job_setup.py reads YAML configs)

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or "not valid YAML"
            raise PricingPolicyError(f"pricing policy {path}: not valid YAML{at}: {problem}") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            at = f"line {error.lineno}, column {error.colno}"
            raise PricingPolicyError(f"pricing policy {path}: not valid JSON at {at}: {error.msg}") from None
    raise PricingPolicyError(f"pricing policy {path}: name a .yaml, .yml or .json file")


def load_pricing_policy(path: Path | None = None) -> LoadedPricingPolicy:
    """The validated policy in `path` (YAML or JSON; None: the default shipped with coopscore).

    Raises:
        PricingPolicyError: the file is missing, unreadable, not YAML/JSON, or a field is invalid
            (one line naming the file and every bad field).
    """
    path = path or DEFAULT_PRICING_POLICY
    try:
        raw = _parse(path)
    except FileNotFoundError:
        raise PricingPolicyError(f"pricing policy {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PricingPolicyError(f"pricing policy {path}: cannot read it ({error})") from None
    if not isinstance(raw, dict):
        raise PricingPolicyError(
            f"pricing policy {path}: expected a mapping of fields (version, product, ...)"
        )
    try:
        policy = PricingPolicy.model_validate(raw)
    except ValidationError as error:
        raise PricingPolicyError(f"pricing policy {path}: {_problems(error)}") from None
    return LoadedPricingPolicy(policy, policy_digest(policy), str(path))
