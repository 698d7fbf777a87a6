"""Meetings and training (`engagement`): meetings attended, trainings completed and their topics."""

from __future__ import annotations

from features.catalog.declare import _en_window, _feature, _in_window, _suffix, _zh_window
from features.catalog.schema import Condition, Feature, Lever

_MEET, _TRAIN = "attend_meetings", "complete_training"
# `complete_training` takes financial literacy, then bookkeeping (the two finance topics), then agronomy.
_FINANCE_TRAININGS = 2.0


def declarations() -> list[Feature]:
    """The `engagement` module's features, in declaration order."""
    meet, train = ("meeting_attendance",), ("training_completed",)
    out = [
        _feature(
            f"meeting_count_{w}d",
            sources=meet,
            aggregation="count",
            window=w,
            direction=-1,
            group="engagement",
            zh=f"{_zh_window(w)}参加合作社会议次数",
            en=f"Cooperative meetings attended {_en_window(w)}",
            levers=(Lever(action=_MEET, per_unit=1.0, max_units=_in_window(w)),),
        )
        for w in (90, 365)
    ]
    out += [
        _feature(
            "meeting_months_365d",
            sources=meet,
            aggregation="distinct_months",
            window=365,
            direction=-1,
            group="engagement",
            zh="近365天有参会记录的月数（按30.4天一月倒推）",
            en="Months (30.4-day spans) with a meeting attended in the last 365 days",
            levers=(Lever(action=_MEET, kind="at_least", per_unit=1.0),),
        ),
        _feature(
            "meeting_months_since_last",
            sources=meet,
            aggregation="months_since_last",
            direction=1,
            group="engagement",
            zh="距最近一次参会的月数",
            en="Months since the last meeting attended",
            levers=(Lever(action=_MEET, kind="set"),),
        ),
    ]
    out += [
        _feature(
            f"training_count_{_suffix(w)}",
            sources=train,
            aggregation="count",
            window=w,
            direction=-1,
            group="engagement",
            zh=f"{_zh_window(w)}完成培训次数",
            en=f"Trainings completed {_en_window(w)}",
            levers=(Lever(action=_TRAIN, per_unit=1.0),),
        )
        for w in (365, None)
    ]
    out += [
        _feature(
            "training_topics_lifetime",
            sources=train,
            aggregation="distinct_values",
            column="topic",
            direction=-1,
            group="engagement",
            zh="历史完成培训的主题数",
            en="Distinct training topics completed, ever",
            levers=(Lever(action=_TRAIN, kind="at_least", per_unit=1.0),),
        ),
        _feature(
            "training_finance_count_lifetime",
            sources=train,
            aggregation="count",
            where=(Condition(column="topic", op="in", value=("financial_literacy", "bookkeeping")),),
            direction=-1,
            group="engagement",
            zh="历史完成金融知识或记账培训次数",
            en="Financial-literacy or bookkeeping trainings completed, ever",
            levers=(Lever(action=_TRAIN, per_unit=1.0, max_units=_FINANCE_TRAININGS),),
        ),
    ]
    return out
