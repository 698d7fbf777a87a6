"""A batch of simulated events as parallel numpy columns (one row per event, codes not strings).

Events stay numeric until they are written: enum payloads are small integer codes (-1 = not
applicable), amounts are floats (NaN = not applicable), times are epoch seconds (`NULL_TIME` = not
applicable). Bookkeeping flags (late, duplicate, ...) travel with the rows but are never exported.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from features.contracts import EVENT_TYPES
from simulator.population import NULL_TIME

EVENT_TYPE_CODE: Final = {name: code for code, name in enumerate(EVENT_TYPES)}

# column -> (dtype, value meaning "not applicable")
COLUMNS: Final[dict[str, tuple[type[np.generic], float | int | bool]]] = {
    "seq": (np.int64, -1),  # global event number -> event_id
    "member": (np.int32, -1),  # member index the record is filed under
    "coop": (np.int32, -1),
    "etype": (np.int8, -1),
    "event_time": (np.int64, NULL_TIME),
    "recorded_at": (np.int64, NULL_TIME),
    "product": (np.int8, -1),
    "quantity": (np.float64, np.nan),
    "amount": (np.float64, np.nan),
    "quality": (np.int8, -1),
    "category": (np.int8, -1),
    "on_credit": (np.int8, -1),
    "loan": (np.int64, -1),
    "due": (np.int64, NULL_TIME),
    "days_late": (np.int32, -1),
    "action": (np.int8, -1),
    "role": (np.int8, -1),
    "village": (np.int32, -1),
    "topic": (np.int8, -1),
    "direction": (np.int8, -1),
    "practice": (np.int8, -1),
    "verified": (np.int8, -1),
    # bookkeeping, never exported
    "backfill": (np.bool_, False),  # digitised history: recorded_at is set by the generator
    "proxied": (np.bool_, False),  # filed under another member's id (left-behind woman)
    "late": (np.bool_, False),
    "dup": (np.bool_, False),  # a re-sent copy of an event already in the feed
    "has_dup": (np.bool_, False),  # an original that will be re-sent
    "export_month": (np.int64, -1),
}


class EventBatch:
    """Parallel columns of events; every column in `COLUMNS` is always present."""

    __slots__ = ("cols",)

    def __init__(self, cols: dict[str, npt.NDArray[Any]]) -> None:
        self.cols = cols

    @classmethod
    def build(cls, etype: str, **given: npt.NDArray[Any]) -> EventBatch:
        """A batch of one event type; columns not given are filled with 'not applicable'."""
        size = len(given["member"])
        cols: dict[str, npt.NDArray[Any]] = {}
        for name, (dtype, null) in COLUMNS.items():
            if name in given:
                cols[name] = np.asarray(given[name]).astype(dtype, copy=False)
            else:
                cols[name] = np.full(size, null, dtype=dtype)
        cols["etype"] = np.full(size, EVENT_TYPE_CODE[etype], dtype=np.int8)
        return cls(cols)

    @classmethod
    def empty(cls) -> EventBatch:
        """A batch with no rows."""
        return cls({name: np.empty(0, dtype=dtype) for name, (dtype, _) in COLUMNS.items()})

    @classmethod
    def concat(cls, batches: list[EventBatch]) -> EventBatch:
        """Rows of all batches, in order."""
        if not batches:
            return cls.empty()
        return cls({name: np.concatenate([b.cols[name] for b in batches]) for name in COLUMNS})

    def __len__(self) -> int:
        return len(self.cols["seq"])

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self.cols[name]

    def take(self, rows: npt.NDArray[Any]) -> EventBatch:
        """The given rows (an index array or a boolean mask)."""
        return EventBatch({name: values[rows] for name, values in self.cols.items()})

    def slice(self, start: int, stop: int) -> EventBatch:
        """Rows `start:stop` as views (no copy)."""
        return EventBatch({name: values[start:stop] for name, values in self.cols.items()})
