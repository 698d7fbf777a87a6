"""Group savings (`savings`): deposits, withdrawals, balance, net flow, regularity, recency."""

from __future__ import annotations

from features.catalog.declare import _derived, _en_window, _feature, _suffix, _zh_window
from features.catalog.schema import Feature, Lever

# `save_group_fund`: the amount, in three monthly deposits (all three inside a 90-day window).
_SAVE = "save_group_fund"
_DEPOSITS = 3.0


def declarations() -> list[Feature]:
    """The `savings` module's features, in declaration order."""
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
            levers=(Lever(action=_SAVE, per_unit=1.0),),
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
            levers=(Lever(action=_SAVE, fixed=_DEPOSITS),),
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
            levers=(Lever(action=_SAVE, kind="at_least", fixed=_DEPOSITS),),
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
            levers=(Lever(action=_SAVE, kind="set"),),
        ),
    ]
    return out
