"""Earlier loans and repayments (`repayment`) and late repayments (`late_repayment`).

The two groups stay in one module because their declarations interleave (per window: counts, on-time
share, then late counts): declaration order is the model's column order and part of the feature-set
version, so splitting them would change both. `has_prior_loan` (group `evidence`) is declared here
too, between the loan counts it derives from. Every one of them is history: `immutable`, recourse never
suggests changing them.
"""

from __future__ import annotations

from features.catalog.declare import _derived, _en_window, _feature, _suffix, _zh_window
from features.catalog.schema import Condition, Feature


def declarations() -> list[Feature]:
    """The `repayment` module's features, in declaration order."""
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
            immutable=True,
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
            immutable=True,
            zh="历史上获得的小额借款总额（元）",
            en="Total of earlier small loans disbursed (CNY)",
        ),
        _derived(
            "has_prior_loan",
            "is_positive",
            ("prior_loan_count",),
            direction=0,
            group="evidence",
            immutable=True,
            zh="是否曾获得过小额借款（1=是）",
            en="Has had an earlier small loan (1 = yes)",
        ),
        _feature(
            "prior_loan_months_since_last",
            sources=disb,
            aggregation="months_since_last",
            direction=0,
            group="repayment",
            immutable=True,
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
                immutable=True,
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
                immutable=True,
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
                immutable=True,
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
                immutable=True,
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
                immutable=True,
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
            immutable=True,
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
            immutable=True,
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
            immutable=True,
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
            immutable=True,
            zh="历史累计还款金额（元）",
            en="Total repaid on earlier loans (CNY)",
        ),
        _derived(
            "repaid_to_disbursed_lifetime",
            "ratio",
            ("repayment_amount_lifetime", "prior_loan_amount"),
            direction=-1,
            group="repayment",
            immutable=True,
            zh="累计还款金额与累计借款金额之比",
            en="Amount repaid relative to amount borrowed, ever",
        ),
    ]
    return out
