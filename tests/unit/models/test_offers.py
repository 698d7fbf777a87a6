"""Offers, behaviourally: over many PDs, terms, incomes, savings and green practices, a higher PD never
gets a lower rate or a higher limit, a verified green practice never raises the rate, and the rate's
named components add up to it exactly (the floor/cap adjustment is one of them). Payments and total
interest are checked against the annuity formula and a worked example."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.offers import (
    NoOffer,
    Offer,
    annual_rate,
    monthly_income_cny,
    monthly_payment_cny,
    price_application,
    quote_application,
    total_interest_cny,
)
from models.pricing import LoadedPricingPolicy, PricingPolicy, load_pricing_policy, policy_digest
from tests.utils.api import RATE_COMPONENTS

DEFAULT = load_pricing_policy()
EXAMPLES = 300

pds = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
terms = st.integers(
    min_value=DEFAULT.policy.product.min_term_months, max_value=DEFAULT.policy.product.max_term_months
)
amounts = st.floats(min_value=100.0, max_value=400_000.0, allow_nan=False)
money = st.floats(min_value=0.0, max_value=600_000.0, allow_nan=False)
decisions = st.sampled_from(["approve", "review"])


@st.composite
def records(draw: st.DrawFn) -> dict[str, float | str | None]:
    """A member's features as scored: income, savings and green practices, some missing."""
    return {
        "delivery_amount_365d": draw(st.one_of(st.none(), money)),
        "mobile_in_amount_365d": draw(st.one_of(st.none(), money)),
        "savings_balance": draw(st.one_of(st.none(), st.floats(min_value=-20_000.0, max_value=600_000.0))),
        "green_verified_count_365d": float(draw(st.integers(min_value=0, max_value=6))),
    }


def _policy(**changes: object) -> LoadedPricingPolicy:
    """The default policy with some sections changed (e.g. rate={...})."""
    raw = DEFAULT.policy.model_dump(mode="json")
    for section, values in changes.items():
        raw[section] = {**raw[section], **values} if isinstance(values, dict) else values
    policy = PricingPolicy.model_validate(raw)
    return LoadedPricingPolicy(policy, policy_digest(policy), "test")


def _limit(result: Offer | NoOffer) -> float:
    return result.limit_cny if isinstance(result, Offer) else 0.0


def _price(
    pd: float,
    record: Mapping[str, float | str | None],
    *,
    policy: LoadedPricingPolicy = DEFAULT,
    **kwargs: object,
) -> Offer | NoOffer:
    args: dict[str, object] = {"decision": "approve", "amount_cny": 8000.0, "term_months": 12, **kwargs}
    return price_application(policy, pd=pd, features=record, **args)  # type: ignore[arg-type]


@settings(max_examples=EXAMPLES, deadline=None)
@given(low=pds, high=pds, term=terms, amount=amounts, record=records(), decision=decisions)
def test_a_higher_pd_never_gets_a_lower_rate_or_a_higher_limit(
    low: float, high: float, term: int, amount: float, record: dict[str, float | None], decision: str
) -> None:
    low, high = sorted((low, high))
    safer = _price(low, record, term_months=term, amount_cny=amount, decision=decision)
    riskier = _price(high, record, term_months=term, amount_cny=amount, decision=decision)
    assert _limit(riskier) <= _limit(safer)
    if isinstance(riskier, Offer):
        assert isinstance(safer, Offer)  # the safer applicant has at least the riskier one's limit
        assert riskier.annual_rate >= safer.annual_rate
        assert riskier.principal_cny <= safer.principal_cny
    rate_low = annual_rate(DEFAULT, pd=low, term_months=term, green_practices=0)
    rate_high = annual_rate(DEFAULT, pd=high, term_months=term, green_practices=0)
    assert rate_high.rate >= rate_low.rate


@settings(max_examples=EXAMPLES, deadline=None)
@given(pd=pds, term=terms, amount=amounts, record=records(), more=st.integers(min_value=1, max_value=4))
def test_a_verified_green_practice_never_raises_the_rate_or_lowers_the_limit(
    pd: float, term: int, amount: float, record: dict[str, float | None], more: int
) -> None:
    greener = {**record, "green_verified_count_365d": float(record["green_verified_count_365d"] or 0) + more}
    plain = _price(pd, record, term_months=term, amount_cny=amount)
    green = _price(pd, greener, term_months=term, amount_cny=amount)
    assert _limit(green) >= _limit(plain)
    if isinstance(plain, Offer):
        assert isinstance(green, Offer)
        assert green.annual_rate <= plain.annual_rate
        # The programme pays the discount: the lender's risk price is the same with or without it.
        assert green.green.rate_without_discount == plain.green.rate_without_discount
        assert green.green.verified_practices == plain.green.verified_practices + more


def _decimal(value: float) -> Decimal:
    return Decimal(repr(value))


@settings(max_examples=EXAMPLES, deadline=None)
@given(pd=pds, term=terms, record=records(), floor=st.integers(0, 2_000), width=st.integers(0, 3_000))
def test_the_named_components_add_up_to_the_rate_exactly(
    pd: float, term: int, record: dict[str, float | None], floor: int, width: int
) -> None:
    policy = _policy(rate={"floor_bps": floor, "cap_bps": max(floor + width, 1)})
    offer = _price(pd, record, policy=policy, term_months=term, amount_cny=2_000.0)
    # The API's plain dicts are exactly the models' JSON.
    quote = quote_application(
        policy, decision="approve", pd=pd, amount_cny=2_000.0, term_months=term, features=record
    )
    assert (quote.offer or quote.no_offer) == offer.model_dump()
    if not isinstance(offer, Offer):
        return
    parts = {c.code: _decimal(c.value) for c in offer.rate_components}
    assert tuple(parts) == RATE_COMPONENTS
    assert all(c.unit == "annual_rate" and c.label_zh and c.label_en for c in offer.rate_components)
    assert sum(parts.values()) == _decimal(offer.annual_rate)  # exactly, in decimal
    before_bounds = sum(v for k, v in parts.items() if k != "floor_cap_adjustment")
    rules = policy.policy.rate
    floor_rate, cap_rate = Decimal(rules.floor_bps) / 10_000, Decimal(rules.cap_bps) / 10_000
    assert _decimal(offer.annual_rate) == min(max(before_bounds, floor_rate), cap_rate)
    if floor_rate <= before_bounds <= cap_rate:
        assert parts["floor_cap_adjustment"] == 0
    assert parts["green_discount"] == -Decimal(repr(offer.green.discount_bps)) / 10_000


def test_expected_loss_is_pd_times_lgd_spread_over_the_term() -> None:
    lgd = DEFAULT.policy.rate.lgd
    for term, per_year in ((6, 2.0), (12, 1.0), (24, 1.0), (36, 1.0)):  # a 12-month PD horizon
        parts = dict(annual_rate(DEFAULT, pd=0.05, term_months=term, green_practices=0).parts)
        assert parts["expected_loss"] == round(0.05 * lgd * per_year * 1_000_000)


def test_the_green_discount_is_capped_and_the_floor_can_take_it_back() -> None:
    rules = DEFAULT.policy.green
    many = annual_rate(DEFAULT, pd=0.02, term_months=12, green_practices=50)
    assert many.discount == round(rules.max_discount_bps * 100)
    # A policy whose floor sits above the discounted rate: the adjustment gives the discount back.
    policy = _policy(rate={"floor_bps": 1_500, "cap_bps": 1_800})
    offer = _price(0.001, {"delivery_amount_365d": 90_000.0, "green_verified_count_365d": 2.0}, policy=policy)
    assert isinstance(offer, Offer)
    assert offer.annual_rate == 0.15 and offer.green.discount_bps == 100.0 and offer.green.applied_bps == 0.0
    assert offer.green.programme_cost_cny == 0.0


def test_a_strong_applicant_gets_the_amount_asked_with_a_payment_within_the_product_rules() -> None:
    record = {"delivery_amount_365d": 60_000.0, "mobile_in_amount_365d": 8_000.0, "savings_balance": 12_000.0}
    offer = _price(0.02, {**record, "green_verified_count_365d": 1.0})
    assert isinstance(offer, Offer)
    assert offer.principal_cny == offer.requested_cny == 8000.0 and offer.limit_cny >= 8000.0
    assert offer.limit_cny % DEFAULT.policy.product.round_down_to_cny == 0
    assert offer.monthly_payment_cny == round(monthly_payment_cny(8000.0, offer.annual_rate, 12), 2)
    assert offer.total_interest_cny == total_interest_cny(8000.0, offer.annual_rate, 12)
    assert offer.total_cost_of_credit_cny == offer.total_interest_cny
    assert offer.total_repayment_cny == round(8000.0 + offer.total_interest_cny, 2)
    # The product's largest payment-to-income holds at the limit.
    income = monthly_income_cny(DEFAULT, record)
    at_limit = monthly_payment_cny(offer.limit_cny, offer.annual_rate, 12)
    assert at_limit <= DEFAULT.policy.product.max_payment_to_income * income + 0.01
    # The programme pays the interest the discount saves the borrower.
    full = total_interest_cny(8000.0, offer.green.rate_without_discount, 12)
    assert offer.green.programme_cost_cny == round(full - offer.total_interest_cny, 2) > 0
    steps = {c.code: c for c in offer.limit_components}
    assert steps["monthly_income"].value == round(income, 2) and steps["pd_multiplier"].value == 1.0
    assert all(c.label_zh and c.label_en for c in offer.limit_components)


def test_a_limit_below_the_request_is_offered_instead_of_the_request() -> None:
    offer = _price(0.08, {"delivery_amount_365d": 12_000.0}, amount_cny=50_000.0)
    assert isinstance(offer, Offer)
    assert offer.principal_cny == offer.limit_cny < 50_000.0 and offer.limit_binding == "affordability"


@pytest.mark.parametrize(
    ("kwargs", "record", "code"),
    [
        ({"decision": "decline"}, {"delivery_amount_365d": 60_000.0}, "declined"),
        ({"term_months": 48}, {"delivery_amount_365d": 60_000.0}, "term_outside_product"),
        ({}, {"savings_balance": 50_000.0}, "no_income_on_record"),
        ({}, {}, "no_income_on_record"),
        ({"amount_cny": 500.0}, {"delivery_amount_365d": 60_000.0}, "below_product_minimum"),
        ({}, {"delivery_amount_365d": 800.0}, "below_product_minimum"),
    ],
)
def test_no_offer_says_why(kwargs: dict[str, object], record: dict[str, float], code: str) -> None:
    result = _price(0.05, record, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, NoOffer) and result.code == code
    assert result.text_zh and result.text_en and result.policy_version == DEFAULT.version


def test_total_interest_matches_the_annuity_formula_and_a_worked_example() -> None:
    # 10,000 CNY at 12% a year over 12 months: 888.49 a month, 661.85 interest in all.
    assert round(monthly_payment_cny(10_000.0, 0.12, 12), 2) == 888.49
    assert total_interest_cny(10_000.0, 0.12, 12) == 661.85
    assert total_interest_cny(10_000.0, 0.0, 12) == 0.0 and monthly_payment_cny(1_200.0, 0.0, 12) == 100.0
    # Less interest at a lower rate, more over a longer term: what a subsidy is computed from.
    assert total_interest_cny(10_000.0, 0.06, 12) < total_interest_cny(10_000.0, 0.12, 12)
    assert total_interest_cny(10_000.0, 0.12, 24) > total_interest_cny(10_000.0, 0.12, 12)
    with pytest.raises(ValueError, match="term_months"):
        monthly_payment_cny(1_000.0, 0.1, 0)
