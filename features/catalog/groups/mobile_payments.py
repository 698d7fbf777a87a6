"""Mobile payments (`mobile_payments`): money in and out, net flow, activity, regularity."""

from __future__ import annotations

from features.catalog.declare import _derived, _en_window, _feature, _zh_window
from features.catalog.schema import Condition, Feature


def declarations() -> list[Feature]:
    """The `mobile_payments` module's features, in declaration order."""
    src = ("mobile_payment",)
    inflow = (Condition(column="direction", op="eq", value="in"),)
    outflow = (Condition(column="direction", op="eq", value="out"),)
    out = [
        _feature(
            f"mobile_in_amount_{w}d",
            sources=src,
            aggregation="sum",
            column="amount_cny",
            where=inflow,
            window=w,
            direction=-1,
            group="mobile_payments",
            zh=f"{_zh_window(w)}移动支付收款金额（元）",
            en=f"Mobile payments received {_en_window(w)} (CNY)",
        )
        for w in (30, 90, 365)
    ]
    out += [
        _feature(
            f"mobile_out_amount_{w}d",
            sources=src,
            aggregation="sum",
            column="amount_cny",
            where=outflow,
            window=w,
            direction=0,
            group="mobile_payments",
            zh=f"{_zh_window(w)}移动支付付款金额（元）",
            en=f"Mobile payments sent {_en_window(w)} (CNY)",
        )
        for w in (90, 365)
    ]
    out += [
        _derived(
            f"mobile_net_flow_{w}d",
            "difference",
            (f"mobile_in_amount_{w}d", f"mobile_out_amount_{w}d"),
            window=w,
            direction=-1,
            group="mobile_payments",
            zh=f"{_zh_window(w)}移动支付净流入（元）",
            en=f"Net mobile-payment inflow {_en_window(w)} (CNY)",
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            f"mobile_count_{w}d",
            sources=src,
            aggregation="count",
            window=w,
            direction=-1,
            group="mobile_payments",
            zh=f"{_zh_window(w)}移动支付笔数",
            en=f"Mobile payments {_en_window(w)}",
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            "mobile_months_365d",
            sources=src,
            aggregation="distinct_months",
            window=365,
            direction=-1,
            group="mobile_payments",
            zh="近365天有移动支付记录的月数（按30.4天一月倒推）",
            en="Months (30.4-day spans) with mobile payments in the last 365 days",
        )
    ]
    return out
