"""Loan terms requested (`application`): request-time features.

Only the declarations live here; the values are computed by `features.catalog.request`.
"""

from __future__ import annotations

from features.catalog.declare import _feature
from features.catalog.schema import REQUEST_SOURCE, Feature


def declarations() -> list[Feature]:
    """The `application` module's features, in declaration order."""
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
