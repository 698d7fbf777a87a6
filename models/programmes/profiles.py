"""The member profiles a programme targets by, held for lookups by member id.

The profile (gender, birth year, returning youth, left-behind woman, county) is restricted: these are
protected attributes. A `ProfileBook` hands them only to eligibility (`eligibility.assess`), which
counts every read, and to aggregate reach by group; nothing here feeds a model or a response.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

PROFILE_FIELDS: Final = ("county_id", "gender", "birth_year", "returning_youth", "left_behind_woman")
_FLAGS: Final = ("returning_youth", "left_behind_woman")


class ProfileBook:
    """Member profiles by member id: the latest row of each member (as the fairness audit reads them)."""

    def __init__(self, profiles: pd.DataFrame) -> None:
        import pandas as pd

        latest = profiles.drop_duplicates("member_id", keep="last")
        self._index = pd.Index(latest["member_id"].astype(str).to_numpy())
        self._position = {member: i for i, member in enumerate(self._index)}  # one-member lookups
        self._columns: dict[str, npt.NDArray[Any]] = {}
        for name in PROFILE_FIELDS:
            values: pd.Series[Any] = latest[name] if name in latest else pd.Series([None] * len(latest))
            present = values.notna().to_numpy()
            if name in _FLAGS or name == "birth_year":
                numbers = np.full(len(values), np.nan)
                numbers[present] = values[present].astype(np.float64).to_numpy()
                self._columns[name] = numbers
            else:
                texts = np.full(len(values), None, dtype=object)
                texts[present] = values[present].astype(str).to_numpy()
                self._columns[name] = texts

    def __len__(self) -> int:
        return len(self._index)

    def columns(self, member_ids: Sequence[str] | npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        """The profile fields for each member, aligned with `member_ids` (None / NaN without a profile)."""
        import pandas as pd

        where = self._index.get_indexer(pd.Index(np.asarray(member_ids, dtype=object)))
        found = where >= 0
        out: dict[str, npt.NDArray[Any]] = {}
        for name, values in self._columns.items():
            column = np.full(len(where), np.nan if values.dtype != object else None, dtype=values.dtype)
            column[found] = values[where[found]]
            out[name] = column
        return out

    def member(self, member_id: str) -> dict[str, npt.NDArray[Any]]:
        """One member's profile as length-1 columns (the online path: a dict lookup, no pandas)."""
        i = self._position.get(member_id)
        if i is None:
            return {
                name: np.array([None], dtype=object) if values.dtype == object else np.array([np.nan])
                for name, values in self._columns.items()
            }
        return {name: values[i : i + 1] for name, values in self._columns.items()}
