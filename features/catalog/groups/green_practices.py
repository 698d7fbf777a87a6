"""Green production practices (`green_practices`): practices recorded, verified, distinct."""

from __future__ import annotations

from features.catalog.declare import _feature
from features.catalog.schema import Condition, Feature, Lever

_ADOPT = "adopt_green_practice"


def declarations() -> list[Feature]:
    """The `green_practices` module's features, in declaration order."""
    src = ("green_practice",)
    return [
        _feature(
            "green_practice_count_365d",
            sources=src,
            aggregation="count",
            window=365,
            direction=-1,
            group="green_practices",
            zh="近365天记录的绿色生产实践次数",
            en="Green practices recorded in the last 365 days",
            levers=(Lever(action=_ADOPT, per_unit=1.0),),
        ),
        _feature(
            "green_verified_count_lifetime",
            sources=src,
            aggregation="count",
            where=(Condition(column="verified", op="is_true"),),
            direction=-1,
            group="green_practices",
            zh="历史经核验的绿色生产实践次数",
            en="Verified green practices, ever",
            levers=(Lever(action=_ADOPT, per_unit=1.0),),
        ),
        _feature(
            "green_practices_distinct_lifetime",
            sources=src,
            aggregation="distinct_values",
            column="practice",
            direction=-1,
            group="green_practices",
            zh="历史采用的绿色生产实践种类数",
            en="Distinct green practices adopted, ever",
            levers=(Lever(action=_ADOPT, kind="at_least", per_unit=1.0),),
        ),
        # Recent verified practices: what the pricing policy's green discount counts (models.pricing).
        _feature(
            "green_verified_count_365d",
            sources=src,
            aggregation="count",
            where=(Condition(column="verified", op="is_true"),),
            window=365,
            direction=-1,
            group="green_practices",
            zh="近365天经核验的绿色生产实践次数",
            en="Verified green practices in the last 365 days",
        ),
    ]
