"""Offers: the limit, annual rate, monthly payment and cost of credit a decision comes with.

For an approved or reviewed application the pricing policy (`models.pricing`) gives:

- **annual rate** = funding cost + expected loss + operating cost + margin − green discount, then held
  between the floor and the cap; that last step is itself a named component, so the components add
  up to the rate exactly. Rates are computed in millionths (0.01 bp), so the sum is exact in decimal.
  Expected loss is PD × LGD spread over the term: the PD is a default within the policy's horizon (12
  months), a longer loan is taken to face the same yearly risk, so per year it is
  PD × LGD × 12 / min(term, horizon).
- **green discount**: per verified green practice in the count feature's window, capped. The
  programme pays it: the lender still earns its risk price (the rate without the discount, within
  floor and cap), and the offer records the interest the programme pays (`programme_cost_cny`).
- **limit**: the principal whose equal instalments the household can afford at that rate
  (debt-service share of the monthly income seen in deliveries and mobile receipts, plus a share of
  the group savings spread over the term), times the PD band's multiplier; capped by the product's
  largest payment-to-income and largest amount, rounded down.
- **monthly payment** (equal instalments, 等额本息) and the total cost of credit (the interest: the
  product charges no fees) on the principal offered, the smaller of the amount asked and the limit.

A decline gets no offer, and so does an application the product cannot serve; `NoOffer` says why.
`quote_application` gives plain dicts in exactly the shape of `Offer` / `NoOffer` (the score API sends
them as they are, on its hot path); `price_application` gives the same as validated models.
Everything here is monotone by construction: a higher PD never lowers the rate or raises the limit,
and a verified green practice never raises the rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.pricing import LoadedPricingPolicy, window_months

MICRO: Final = 1_000_000  # annual rates in millionths: 1 unit = 0.01 bp
Unit = Literal["annual_rate", "cny", "cny_per_month", "ratio"]
LimitBinding = Literal["affordability", "payment_to_income", "product_max"]
NoOfferCode = Literal["declined", "term_outside_product", "no_income_on_record", "below_product_minimum"]


def monthly_payment_cny(principal_cny: float, annual_rate: float, term_months: int) -> float:
    """The equal monthly instalment (等额本息) repaying `principal_cny` at `annual_rate` (a fraction,
    compounded monthly) over `term_months`; unrounded."""
    if term_months < 1:
        raise ValueError(f"term_months must be at least 1 (got {term_months})")
    monthly = annual_rate / 12.0
    if monthly == 0.0:
        return principal_cny / term_months
    return principal_cny * monthly / (1.0 - (1.0 + monthly) ** -term_months)


def total_interest_cny(principal_cny: float, annual_rate: float, term_months: int) -> float:
    """Total interest paid over the loan's life in equal instalments, to the fen: what a subsidy of
    part or all of the interest is computed from (`principal_cny` at `annual_rate` over `term_months`)."""
    return round(
        monthly_payment_cny(principal_cny, annual_rate, term_months) * term_months - principal_cny, 2
    )


def _present_value(payment_cny: float, annual_rate: float, term_months: int) -> float:
    """The principal that `term_months` equal instalments of `payment_cny` repay at `annual_rate`."""
    monthly = annual_rate / 12.0
    if monthly == 0.0:
        return payment_cny * term_months
    return payment_cny * (1.0 - (1.0 + monthly) ** -term_months) / monthly


class OfferComponent(BaseModel):
    """One named part of an offer: a part of the rate, or a step from income to limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    label_zh: str
    label_en: str
    value: float
    unit: Unit


class GreenIncentive(BaseModel):
    """The green discount: how many verified practices earned it, and what the programme pays."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verified_practices: int = Field(description="verified green practices in the window")
    window_months: float | None = Field(description="the window counted (null: ever)")
    discount_bps: float = Field(description="the discount the practices earn, capped (the rate component)")
    applied_bps: float = Field(description="what the rate actually drops by (less when the floor binds)")
    rate_without_discount: float = Field(
        description="the lender's risk price: the rate the programme tops up to"
    )
    programme_cost_cny: float = Field(description="interest the programme pays over the loan's life")
    funded_by_zh: str
    funded_by_en: str


class Offer(BaseModel):
    """The terms offered with an approve or review decision, each part named (zh/en).

    `principal_cny`, `annual_rate`, `term_months` and `total_interest_cny` are what an interest subsidy
    is computed from (`total_interest_cny()` gives the interest at any other rate)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy_version: str
    policy_digest: str
    principal_cny: float = Field(description="amount offered: the amount asked, up to the limit")
    requested_cny: float
    limit_cny: float = Field(description="the largest principal affordability, PD and product rules allow")
    limit_binding: LimitBinding = Field(description="which cap set the limit")
    term_months: int
    annual_rate: float = Field(
        description="the borrower's annual rate (fraction); the rate components add up to it"
    )
    rate_components: list[OfferComponent]
    monthly_payment_cny: float = Field(description="equal monthly instalment (等额本息)")
    total_interest_cny: float
    total_cost_of_credit_cny: float = Field(description="interest plus fees (the product charges no fees)")
    total_repayment_cny: float
    limit_components: list[OfferComponent]
    green: GreenIncentive


class NoOffer(BaseModel):
    """Why a decision comes without an offer (zh/en)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: NoOfferCode
    text_zh: str
    text_en: str
    policy_version: str


@dataclass(frozen=True)
class Quote:
    """An offer, or why there is none: dicts in exactly the shape of `Offer` and `NoOffer`."""

    offer: dict[str, Any] | None
    no_offer: dict[str, Any] | None


@dataclass(frozen=True)
class RateBreakdown:
    """The annual rate in millionths, part by part (`parts` add up to `rate`)."""

    parts: tuple[tuple[str, int], ...]
    rate: int
    without_discount: int
    discount: int


# Every component's zh/en label, by code: the rate's parts (in the order they add up), then the limit's steps.
_LABELS: Final = {
    "funding_cost": ("资金成本", "Funding cost"),
    "expected_loss": (
        "预期损失（违约概率 × 违约损失率，按期限分摊）",
        "Expected loss (PD × LGD, spread over the term)",
    ),
    "operating_cost": ("运营成本", "Operating cost"),
    "margin": ("利润", "Margin"),
    "green_discount": ("绿色生产优惠（项目承担）", "Green discount (paid by the programme)"),
    "floor_cap_adjustment": ("利率下限/上限调整", "Floor / cap adjustment"),
    # The limit's steps.
    "monthly_income": (
        "记录中的月收入（交售、移动收款，按政策比例）",
        "Monthly income on record (deliveries, mobile receipts; policy shares)",
    ),
    "savings_balance": ("互助储蓄余额", "Group savings balance"),
    "affordable_payment": (
        "可承受月还款（收入 × 还款比例 + 储蓄分摊）",
        "Affordable monthly payment (income × debt-service share + savings spread over the term)",
    ),
    "affordability": ("按可承受月还款可借本金", "Principal the affordable payment repays"),
    "pd_multiplier": ("违约概率档位系数", "PD band multiplier"),
    "risk_adjusted": ("按风险调整后的额度", "Risk-adjusted amount"),
    "payment_to_income_cap": ("月还款收入比上限对应本金", "Principal at the largest payment-to-income"),
    "product_max": ("产品最高额度", "Product maximum"),
}


def _micro(bps: float) -> int:
    return round(bps * 100)


def annual_rate(
    policy: LoadedPricingPolicy, *, pd: float, term_months: int, green_practices: int
) -> RateBreakdown:
    """The rate's parts for this PD, term and count of verified green practices (millionths)."""
    rules, green = policy.policy.rate, policy.policy.green
    pd = min(max(pd, 0.0), 1.0)
    expected_loss = round(pd * rules.lgd * 12.0 / min(term_months, rules.pd_horizon_months) * MICRO)
    risk = (
        _micro(rules.funding_cost_bps)
        + expected_loss
        + _micro(rules.operating_cost_bps)
        + _micro(rules.margin_bps)
    )
    discount = min(
        _micro(green.max_discount_bps), max(green_practices, 0) * _micro(green.discount_bps_per_practice)
    )
    floor, cap = _micro(rules.floor_bps), _micro(rules.cap_bps)
    rate = min(max(risk - discount, floor), cap)
    parts = (
        ("funding_cost", _micro(rules.funding_cost_bps)),
        ("expected_loss", expected_loss),
        ("operating_cost", _micro(rules.operating_cost_bps)),
        ("margin", _micro(rules.margin_bps)),
        ("green_discount", -discount),
        ("floor_cap_adjustment", rate - (risk - discount)),
    )
    return RateBreakdown(parts, rate, min(max(risk, floor), cap), discount)


def _value(features: Mapping[str, float | str | None], name: str | None) -> float:
    """A feature as a non-negative amount (missing, unknown or negative counts as none)."""
    value = features.get(name) if name is not None else None
    if not isinstance(value, int | float) or math.isnan(value):
        return 0.0
    return max(float(value), 0.0)


def _component(code: str, value: float, unit: Unit) -> dict[str, object]:
    """An `OfferComponent`'s fields."""
    zh, en = _LABELS[code]
    return {"code": code, "label_zh": zh, "label_en": en, "value": value, "unit": unit}


def _no_offer(policy: LoadedPricingPolicy, code: NoOfferCode, zh: str, en: str) -> Quote:
    return Quote(None, {"code": code, "text_zh": zh, "text_en": en, "policy_version": policy.version})


def _below_minimum(policy: LoadedPricingPolicy, amount_cny: float, limit: float) -> Quote:
    """No offer: the amount asked, or else the limit, is below the product's minimum."""
    least = policy.policy.product.min_amount_cny
    if amount_cny < least:
        zh = f"申请金额{amount_cny:,.0f}元低于本产品最低额度{least:,.0f}元。"
        en = f"The amount asked for, {amount_cny:,.0f} CNY, is below this product's minimum of {least:,.0f}."
    else:
        zh = f"按还款能力与风险测算的额度{limit:,.0f}元低于本产品最低额度{least:,.0f}元。"
        en = (
            f"The limit affordability and risk allow, {limit:,.0f} CNY, is below this product's "
            f"minimum of {least:,.0f} CNY."
        )
    return _no_offer(policy, "below_product_minimum", zh, en)


def monthly_income_cny(policy: LoadedPricingPolicy, features: Mapping[str, float | str | None]) -> float:
    """Monthly income on record: each income feature's amount × its share, over its window in months."""
    total = 0.0
    for source in policy.policy.affordability.income:
        months = window_months(source.feature) or 12.0  # validated: income features have a window
        total += _value(features, source.feature) * source.share / months
    return total


def price_application(
    policy: LoadedPricingPolicy,
    *,
    decision: str,
    pd: float,
    amount_cny: float,
    term_months: int,
    features: Mapping[str, float | str | None],
) -> Offer | NoOffer:
    """`quote_application` as typed, validated models."""
    quote = quote_application(
        policy, decision=decision, pd=pd, amount_cny=amount_cny, term_months=term_months, features=features
    )
    if quote.offer is not None:
        return Offer.model_validate(quote.offer)
    return NoOffer.model_validate(quote.no_offer)


def quote_application(
    policy: LoadedPricingPolicy,
    *,
    decision: str,
    pd: float,
    amount_cny: float,
    term_months: int,
    features: Mapping[str, float | str | None],
) -> Quote:
    """The offer for one decision, or why there is none, as JSON-ready dicts (the score API's hot path
    sends them as they are; `price_application` gives the same as validated models).

    Args:
        policy: the loaded pricing policy.
        decision: approve, review or decline (a decline gets no offer).
        pd: the calibrated probability of default the model gave.
        amount_cny: the amount asked for; the offer's principal is at most this.
        term_months: the term asked for (priced as asked, if the product offers it).
        features: the member's features as scored (income, savings and green-practice counts are
            read by the names the policy gives; missing ones count as none).
    """
    rules = policy.policy
    product = rules.product
    if decision == "decline":
        return _no_offer(
            policy,
            "declined",
            "申请未获批准，因此没有贷款报价。",
            "The application was declined, so there is no offer.",
        )
    if not product.min_term_months <= term_months <= product.max_term_months:
        return _no_offer(
            policy,
            "term_outside_product",
            f"申请期限{term_months}个月不在本产品{product.min_term_months}至{product.max_term_months}个月的范围内。",
            f"The term asked for, {term_months} months, is outside this product's "
            f"{product.min_term_months} to {product.max_term_months} months.",
        )
    practices = int(_value(features, rules.green.count_feature))
    rate = annual_rate(policy, pd=pd, term_months=term_months, green_practices=practices)
    customer_rate = rate.rate / MICRO

    # Affordability at the borrower's rate, trimmed by the PD band, then the product's caps.
    affordability = rules.affordability
    income = monthly_income_cny(policy, features)
    savings = _value(features, affordability.savings_feature)
    if income <= 0.0:
        return _no_offer(
            policy,
            "no_income_on_record",
            "合作社记录中没有可用于测算还款能力的收入（交售或移动收款）。",
            "There is no income on the cooperative record (deliveries or mobile receipts) to size a loan on.",
        )
    payment = affordability.debt_service_share * income + affordability.savings_share * savings / term_months
    affordable = _present_value(payment, customer_rate, term_months)
    multiplier = next(b.limit_multiplier for b in affordability.pd_bands if pd <= b.up_to_pd)
    risk_adjusted = affordable * multiplier
    pti_cap = _present_value(product.max_payment_to_income * income, customer_rate, term_months)
    caps: dict[LimitBinding, float] = {
        "affordability": risk_adjusted,
        "payment_to_income": pti_cap,
        "product_max": product.max_amount_cny,
    }
    binding = min(caps, key=lambda k: caps[k])
    step = product.round_down_to_cny
    limit = math.floor(caps[binding] / step) * step
    principal = min(amount_cny, limit)
    if principal < product.min_amount_cny:
        return _below_minimum(policy, amount_cny, limit)

    interest = total_interest_cny(principal, customer_rate, term_months)
    programme_cost = round(
        total_interest_cny(principal, rate.without_discount / MICRO, term_months) - interest, 2
    )
    limit_steps: list[tuple[str, float, Unit]] = [
        ("monthly_income", round(income, 2), "cny_per_month"),
        ("savings_balance", round(savings, 2), "cny"),
        ("affordable_payment", round(payment, 2), "cny_per_month"),
        ("affordability", round(affordable, 2), "cny"),
        ("pd_multiplier", multiplier, "ratio"),
        ("risk_adjusted", round(risk_adjusted, 2), "cny"),
        ("payment_to_income_cap", round(pti_cap, 2), "cny"),
        ("product_max", product.max_amount_cny, "cny"),
    ]
    return Quote(
        {
            "policy_version": policy.version,
            "policy_digest": policy.digest,
            "principal_cny": principal,
            "requested_cny": amount_cny,
            "limit_cny": limit,
            "limit_binding": binding,
            "term_months": term_months,
            "annual_rate": customer_rate,
            "rate_components": [_component(code, units / MICRO, "annual_rate") for code, units in rate.parts],
            "monthly_payment_cny": round(monthly_payment_cny(principal, customer_rate, term_months), 2),
            "total_interest_cny": interest,
            "total_cost_of_credit_cny": interest,
            "total_repayment_cny": round(principal + interest, 2),
            "limit_components": [_component(code, value, unit) for code, value, unit in limit_steps],
            "green": {
                "verified_practices": practices,
                "window_months": window_months(rules.green.count_feature),
                "discount_bps": rate.discount / 100,
                "applied_bps": (rate.without_discount - rate.rate) / 100,
                "rate_without_discount": rate.without_discount / MICRO,
                "programme_cost_cny": programme_cost,
                "funded_by_zh": rules.green.programme_zh,
                "funded_by_en": rules.green.programme_en,
            },
        },
        None,
    )
