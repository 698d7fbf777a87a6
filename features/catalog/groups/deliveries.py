"""Produce deliveries (`deliveries`): value, counts, weight, regularity, trend, quality, products, recency."""

from __future__ import annotations

from features.catalog.declare import _derived, _en_window, _feature, _in_window, _suffix, _zh_window
from features.catalog.schema import Condition, Feature, Lever

# `deliver_through_coop`: one delivery a month at the member's usual size and quality mix.
_DELIVER = "deliver_through_coop"
_USUAL_AMOUNT = ("delivery_mean_amount_365d",)
_USUAL_WEIGHT = ("delivery_quantity_kg_365d", "delivery_count_365d")
_USUAL_GRADE_A = ("delivery_grade_a_count_365d", "delivery_count_365d")


def _monthly(days: int | None, scale_by: tuple[str, ...] = ()) -> tuple[Lever, ...]:
    """One delivery a month: the months of the action inside the window count."""
    return (Lever(action=_DELIVER, per_unit=1.0, max_units=_in_window(days), scale_by=scale_by),)


def declarations() -> list[Feature]:
    """The `deliveries` module's features, in declaration order."""
    src = ("produce_delivery",)
    out = [
        _feature(
            f"delivery_amount_{_suffix(w)}",
            sources=src,
            aggregation="sum",
            column="amount_cny",
            window=w,
            direction=-1,
            group="deliveries",
            zh=f"{_zh_window(w)}向合作社交售农产品的金额（元）",
            en=f"Value of produce delivered to the cooperative {_en_window(w)} (CNY)",
            levers=_monthly(w, _USUAL_AMOUNT),
        )
        for w in (30, 90, 180, 365, None)
    ]
    out += [
        _feature(
            f"delivery_count_{w}d",
            sources=src,
            aggregation="count",
            window=w,
            direction=-1,
            group="deliveries",
            zh=f"{_zh_window(w)}交售次数",
            en=f"Number of produce deliveries {_en_window(w)}",
            levers=_monthly(w),
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            f"delivery_quantity_kg_{w}d",
            sources=src,
            aggregation="sum",
            column="quantity_kg",
            window=w,
            direction=-1,
            group="deliveries",
            zh=f"{_zh_window(w)}交售农产品重量（公斤）",
            en=f"Weight of produce delivered {_en_window(w)} (kg)",
            levers=_monthly(w, _USUAL_WEIGHT),
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            f"delivery_months_{w}d",
            sources=src,
            aggregation="distinct_months",
            window=w,
            direction=-1,
            group="deliveries",
            zh=f"{_zh_window(w)}有交售记录的月数（按30.4天一月倒推；交售规律性）",
            en=f"Months (30.4-day spans) with at least one delivery {_en_window(w)} (regularity)",
            levers=(Lever(action=_DELIVER, kind="at_least", per_unit=1.0, max_units=_in_window(w)),),
        )
        for w in (180, 365)
    ]
    out += [
        _feature(
            "delivery_amount_prior_90d",
            sources=src,
            aggregation="sum",
            column="amount_cny",
            window=90,
            offset=90,
            direction=0,
            group="deliveries",
            zh=f"{_zh_window(90, 90)}交售农产品的金额（元）",
            en=f"Value of produce delivered {_en_window(90, 90)} (CNY)",
        ),
        _derived(
            "delivery_amount_trend_90d",
            "trend",
            ("delivery_amount_90d", "delivery_amount_prior_90d"),
            window=180,
            direction=-1,
            group="deliveries",
            zh="交售金额趋势：近90天与此前90天之差除以两者之和（-1至1）",
            en="Delivery trend: last 90 days minus the 90 before, over their sum (-1 to 1)",
        ),
        _feature(
            "delivery_mean_amount_365d",
            sources=src,
            aggregation="mean",
            column="amount_cny",
            window=365,
            direction=0,
            group="deliveries",
            zh="近365天平均每次交售金额（元）",
            en="Average value per delivery in the last 365 days (CNY)",
        ),
        _feature(
            "delivery_grade_a_count_365d",
            sources=src,
            aggregation="count",
            where=(Condition(column="quality_grade", op="eq", value="A"),),
            window=365,
            direction=-1,
            group="deliveries",
            zh="近365天A级品质交售次数",
            en="Deliveries graded A in the last 365 days",
            levers=_monthly(365, _USUAL_GRADE_A),
        ),
        _derived(
            "delivery_grade_a_share_365d",
            "ratio",
            ("delivery_grade_a_count_365d", "delivery_count_365d"),
            window=365,
            direction=-1,
            group="deliveries",
            zh="近365天A级品质交售占比",
            en="Share of deliveries graded A in the last 365 days",
        ),
        _feature(
            "delivery_products_365d",
            sources=src,
            aggregation="distinct_values",
            column="product",
            window=365,
            direction=-1,
            group="deliveries",
            zh="近365天交售的农产品种类数（经营多样性）",
            en="Distinct products delivered in the last 365 days (diversification)",
        ),
        _feature(
            "delivery_months_since_last",
            sources=src,
            aggregation="months_since_last",
            direction=1,
            group="deliveries",
            zh="距最近一次交售的月数",
            en="Months since the last produce delivery",
            levers=(Lever(action=_DELIVER, kind="set"),),
        ),
    ]
    return out
