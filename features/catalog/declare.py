"""Helpers the reason-group modules declare their features with (package-internal).

`_feature` fills in the dtype from the aggregation, `_derived` declares a feature computed from
earlier features of the same row, and the window helpers keep the zh/en descriptions uniform.
"""

from __future__ import annotations

from features.catalog.schema import Aggregation, Condition, Direction, Entity, Feature, Lever, _dtype_of


def _zh_window(days: int | None, offset: int = 0) -> str:
    if days is None:
        return "历史累计"
    if offset:
        return f"{offset + days}天前至{offset}天前"
    return f"近{days}天"


def _en_window(days: int | None, offset: int = 0) -> str:
    if days is None:
        return "ever"
    if offset:
        return f"between {offset + days} and {offset} days before"
    return f"in the last {days} days"


def _feature(
    name: str,
    *,
    sources: tuple[str, ...],
    aggregation: Aggregation,
    direction: Direction,
    group: str,
    zh: str,
    en: str,
    window: int | None = None,
    offset: int = 0,
    column: str | None = None,
    where: tuple[Condition, ...] = (),
    values: tuple[str, ...] = (),
    inputs: tuple[str, ...] = (),
    entity: Entity = "member",
    levers: tuple[Lever, ...] = (),
    immutable: bool = False,
) -> Feature:
    """Declare one feature; its dtype follows from the aggregation."""
    return Feature(
        name=name,
        entity=entity,
        sources=sources,
        aggregation=aggregation,
        column=column,
        where=where,
        values=values,
        inputs=inputs,
        window_days=window,
        window_offset_days=offset,
        dtype=_dtype_of(aggregation),
        direction=direction,
        reason_group=group,
        description_zh=zh,
        description_en=en,
        levers=levers,
        immutable=immutable,
    )


def _derived(
    name: str,
    aggregation: Aggregation,
    inputs: tuple[str, ...],
    *,
    direction: Direction,
    group: str,
    zh: str,
    en: str,
    window: int | None = None,
    immutable: bool = False,
) -> Feature:
    """Declare a feature computed from earlier features of the same row."""
    return _feature(
        name,
        sources=(),
        aggregation=aggregation,
        inputs=inputs,
        window=window,
        direction=direction,
        group=group,
        zh=zh,
        en=en,
        immutable=immutable,
    )


def _suffix(days: int | None) -> str:
    return "lifetime" if days is None else f"{days}d"


# Months of a monthly action that fall inside a window of this many days (re-scored right after it).
_MONTHS_IN_WINDOW = {30: 1.0, 90: 3.0, 180: 6.0, 365: 12.0}


def _in_window(days: int | None) -> float | None:
    """`max_units` of a one-event-a-month action for a window (None: every month counts)."""
    return None if days is None else _MONTHS_IN_WINDOW[days]
