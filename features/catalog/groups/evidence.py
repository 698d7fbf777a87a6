"""Depth of the record (`evidence`): events on file, months of history, recency of any activity."""

from __future__ import annotations

from features.catalog.declare import _en_window, _feature, _in_window, _zh_window
from features.catalog.schema import Feature, Lever
from features.contracts import EVENT_TYPES, MEMBER_ACTIONS

# Events each action records: three savings deposits, or one event a month (a training, a practice,
# a delivery, a meeting).
_SAVINGS_DEPOSITS = 3.0


def _records(days: int | None) -> tuple[Lever, ...]:
    """Every action adds its events to the record count of a window."""
    return tuple(
        Lever(action=a, fixed=_SAVINGS_DEPOSITS)
        if a == "save_group_fund"
        else Lever(action=a, per_unit=1.0, max_units=_in_window(days))
        for a in MEMBER_ACTIONS
    )


def declarations() -> list[Feature]:
    """The `evidence` module's features, in declaration order."""
    every = EVENT_TYPES
    return [
        *(
            _feature(
                f"event_count_{w}d",
                sources=every,
                aggregation="count",
                window=w,
                direction=0,
                group="evidence",
                zh=f"{_zh_window(w)}合作社记录的各类活动总数（记录厚度）",
                en=f"Activity records of any kind {_en_window(w)} (depth of file)",
                levers=_records(w),
            )
            for w in (90, 365)
        ),
        _feature(
            "history_months",
            sources=every,
            aggregation="months_since_first",
            direction=0,
            group="evidence",
            zh="有记录的月数：距最早一条活动记录的月数",
            en="Months of history: months since the earliest activity record",
            immutable=True,
        ),
        _feature(
            "months_since_last_activity",
            sources=every,
            aggregation="months_since_last",
            direction=1,
            group="evidence",
            zh="距最近一条活动记录的月数",
            en="Months since the latest activity record of any kind",
            levers=tuple(Lever(action=a, kind="set") for a in MEMBER_ACTIONS),
        ),
    ]
