"""Numeric protected attributes as bands: one audit group per age is a group per row, too small to judge.

Left-closed bands with plain labels (`<25`, `25-39`, `40-59`, `60+`); age-like columns default to
`DEFAULT_AGE_CUTS`. Shared by the table path at training time (`training.protected`) and by audits.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd

DEFAULT_AGE_CUTS: Final = (25.0, 40.0, 60.0)
UNKNOWN: Final = "unknown"
MAX_UNBANDED_VALUES: Final = 12  # more distinct numbers than this: one group per value is too thin
_AGE_LIKE: Final = re.compile(r"age|birth", re.IGNORECASE)


def is_age_like(name: str) -> bool:
    """A column named like an age or a birth date/year (it gets default age bands)."""
    return bool(_AGE_LIKE.search(name))


def fmt_number(value: float) -> str:
    """25.0 -> '25', 2.5 -> '2.5'."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def band_labels(cuts: Sequence[float], whole: bool) -> list[str]:
    """Left-closed band labels: `<25`, `25-39`, `40-59`, `60+` for whole numbers and whole cuts,
    else `<2.5`, `2.5 to <5`, `5+`."""
    integer = whole and all(float(c).is_integer() for c in cuts)
    labels = [f"<{fmt_number(cuts[0])}"]
    for lo, hi in itertools.pairwise(cuts):
        if integer:
            top = int(hi) - 1
            labels.append(fmt_number(lo) if top == int(lo) else f"{fmt_number(lo)}-{top}")
        else:
            labels.append(f"{fmt_number(lo)} to <{fmt_number(hi)}")
    labels.append(f"{fmt_number(cuts[-1])}+")
    return labels


def apply_bands(values: pd.Series, cuts: Sequence[float]) -> pd.Series:
    """Each value's band label (left-closed), 'unknown' where missing."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    finite = numbers[np.isfinite(numbers)]
    labels = np.array(band_labels(cuts, bool(np.all(finite == np.round(finite)))), dtype=object)
    index = np.searchsorted(np.asarray(cuts, dtype=np.float64), numbers, side="right")
    out = np.where(np.isfinite(numbers), labels[np.clip(index, 0, len(cuts))], UNKNOWN)
    return pd.Series(out, index=values.index, dtype=object)


_BAND_START: Final = re.compile(r"^(<)?(-?\d+(?:\.\d+)?)")


def group_order(label: object) -> tuple[int, float, str]:
    """Sort key that puts band labels in numeric order (`<25`, `25-39`, `40-59`, `60+`) and any other
    group label after them, alphabetically (a plain sort puts `<25` last)."""
    text = str(label)
    match = _BAND_START.match(text)
    if match is None:
        return (1, 0.0, text)
    start = float(match.group(2))
    return (0, start - 0.5 if match.group(1) else start, text)
