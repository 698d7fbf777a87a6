"""Out-of-time splits by `applied_at`, never at random.

Counted back from the label horizon: the OOT test window is the latest labelled months, then the
calibration window, then the early-stopping validation window, and training takes what is earlier.
Windows are half-open `[start, end)`, so each application falls in exactly one slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.config import SplitConfig

SLICES: Final = ("train", "validation", "calibration", "oot")
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class TimeSplit:
    """Row masks of the four slices and the windows that define them."""

    masks: dict[str, BoolArray]
    windows: dict[str, tuple[pd.Timestamp | None, pd.Timestamp]]

    def counts(self) -> dict[str, int]:
        """Rows per slice."""
        return {name: int(mask.sum()) for name, mask in self.masks.items()}

    def describe(self) -> dict[str, Any]:
        """JSON-ready windows and counts."""
        return {
            name: {
                "start": None if start is None else start.isoformat(),
                "end": end.isoformat(),
                "rows": int(self.masks[name].sum()),
            }
            for name, (start, end) in self.windows.items()
        }


def time_split(applied_at: pd.Series, horizon: pd.Timestamp, config: SplitConfig) -> TimeSplit:
    """Assign each application to train / validation / calibration / OOT by when it was made."""
    times = pd.to_datetime(applied_at, utc=True)
    oot_start = horizon - pd.DateOffset(months=config.oot_months)
    calibration_start = oot_start - pd.DateOffset(months=config.calibration_months)
    validation_start = calibration_start - pd.DateOffset(months=config.validation_months)
    train_start = (
        validation_start - pd.DateOffset(months=config.train_months) if config.train_months else None
    )
    windows: dict[str, tuple[pd.Timestamp | None, pd.Timestamp]] = {
        "train": (train_start, validation_start),
        "validation": (validation_start, calibration_start),
        "calibration": (calibration_start, oot_start),
        "oot": (oot_start, horizon),
    }
    masks = {}
    for name, (start, end) in windows.items():
        inside = times < end
        if start is not None:
            inside &= times >= start
        masks[name] = inside.to_numpy(dtype=bool)
    return TimeSplit(masks=masks, windows=windows)
