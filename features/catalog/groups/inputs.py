"""Farm input purchases (`inputs`): amounts, purchases on credit and their share, categories."""

from __future__ import annotations

from features.catalog.declare import _derived, _en_window, _feature, _zh_window
from features.catalog.schema import Condition, Feature


def declarations() -> list[Feature]:
    """The `inputs` module's features, in declaration order."""
    src = ("input_purchase",)
    credit = (Condition(column="on_credit", op="is_true"),)
    out = [
        _feature(
            f"input_amount_{w}d",
            sources=src,
            aggregation="sum",
            column="amount_cny",
            window=w,
            direction=0,
            group="inputs",
            zh=f"{_zh_window(w)}采购农资金额（元）",
            en=f"Farm inputs bought {_en_window(w)} (CNY)",
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            "input_count_365d",
            sources=src,
            aggregation="count",
            window=365,
            direction=0,
            group="inputs",
            zh="近365天采购农资次数",
            en="Farm input purchases in the last 365 days",
        )
    ]
    out += [
        _feature(
            f"input_credit_amount_{w}d",
            sources=src,
            aggregation="sum",
            column="amount_cny",
            where=credit,
            window=w,
            direction=1,
            group="inputs",
            zh=f"{_zh_window(w)}赊购农资金额（元）",
            en=f"Farm inputs bought on credit {_en_window(w)} (CNY)",
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            "input_credit_count_365d",
            sources=src,
            aggregation="count",
            where=credit,
            window=365,
            direction=1,
            group="inputs",
            zh="近365天赊购农资次数",
            en="Farm input purchases on credit in the last 365 days",
        ),
        _derived(
            "input_credit_share_365d",
            "ratio",
            ("input_credit_amount_365d", "input_amount_365d"),
            window=365,
            direction=1,
            group="inputs",
            zh="近365天农资采购中赊购金额占比",
            en="Share of farm-input spending bought on credit in the last 365 days",
        ),
        _feature(
            "input_categories_365d",
            sources=src,
            aggregation="distinct_values",
            column="category",
            window=365,
            direction=0,
            group="inputs",
            zh="近365天采购的农资类别数",
            en="Distinct farm-input categories bought in the last 365 days",
        ),
    ]
    return out
