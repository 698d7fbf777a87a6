"""Protected columns of a lender's table: audit groups that mean something, and proxies named early.

A protected column (`--protected`, audit only; `--protected-input`, also a model input) becomes an
audit segment. Numbers are banded (`--band COL:c1,c2,...`, left-closed: `<25`, `25-39`, `40-59`,
`60+`), because one group per distinct age is a group per row, too small to judge. Age-like columns
get `DEFAULT_AGE_CUTS` without a `--band` (a birth-year column by the age at application; a `--band`
always cuts the column's own values).
Any other numeric protected column with more than `MAX_UNBANDED_VALUES` values must be given its cuts.

At training time each model input is scanned against each protected group (one against the rest):
an input that alone separates a group with strength max(AUC, 1 - AUC) >= `PROXY_WARNING_STRENGTH`
encodes the attribute; it is a warning (console, `--json`, model card, MLflow), not an exclusion.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from monitoring.bands import (
    DEFAULT_AGE_CUTS,
    MAX_UNBANDED_VALUES,
    UNKNOWN,
    apply_bands,
    band_labels,
    fmt_number,
    is_age_like,
)
from monitoring.proxies import is_numeric, single_column_proxy
from training.table_inputs import TableInputError

PROXY_WARNING_STRENGTH: Final = 0.80  # an input alone naming a protected group this well encodes it
PROXY_MIN_GROUP: Final = 30  # groups (and their rest) smaller than this are too noisy to scan
_BIRTH: Final = re.compile(r"birth", re.IGNORECASE)


@dataclass(frozen=True)
class Banding:
    """How one numeric protected column was banded for audits."""

    column: str
    cuts: tuple[float, ...]
    labels: tuple[str, ...]
    source: str  # "--band", "default age bands", "default age bands (age at application from birth year)"
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "column": self.column,
            "cuts": [int(c) if float(c).is_integer() else c for c in self.cuts],
            "labels": list(self.labels),
            "source": self.source,
            "counts": dict(self.counts),
        }

    def line(self) -> str:
        """One line for the console and the model card."""
        counts = ", ".join(f"{label} {n:,}" for label, n in self.counts.items())
        return f"{self.column} banded for audits ({self.source}): {counts}"


def check_protected_roles(
    *,
    label: str,
    time: str,
    id_column: str | None,
    protected: Sequence[str],
    protected_inputs: Sequence[str],
    bands: Mapping[str, Sequence[float]],
    drop: Sequence[str] = (),
) -> None:
    """Each protected column has one role, and `--band` names protected columns with rising cuts."""
    both = sorted(set(protected) & set(protected_inputs))
    if both:
        raise TableInputError(
            f"{', '.join(both)}: given as both --protected and --protected-input; choose one "
            "(--protected keeps it out of the model, --protected-input makes it an input too)"
        )
    roles = {label: "--label", time: "--time", **({id_column: "--id"} if id_column else {})}
    roles.update({c: "drop" for c in drop})
    for name in [*protected, *protected_inputs]:
        if name in roles:
            raise TableInputError(f"{name}: a protected column cannot also be the {roles[name]} column")
    named = set(protected) | set(protected_inputs)
    for name, cuts in bands.items():
        if name not in named:
            raise TableInputError(
                f"--band {name}: not a protected column; add --protected {name} or "
                f"--protected-input {name}, or drop the --band"
            )
        values = [float(c) for c in cuts]
        if not values or any(not math.isfinite(c) for c in values) or values != sorted(set(values)):
            raise TableInputError(f"--band {name}: cuts must be rising numbers, e.g. --band {name}:25,40,60")


def _group_text(column: pd.Series) -> pd.Series:
    """A few-valued column as group labels: whole floats without '.0', missing as 'unknown'."""
    if is_numeric(column) and not pd.api.types.is_bool_dtype(column):
        numbers = pd.to_numeric(column, errors="coerce")
        text = numbers.map(lambda v: UNKNOWN if pd.isna(v) else fmt_number(float(v)))
        return text.astype(object)
    return column.astype("string").fillna(UNKNOWN).astype(object)


def _birth_ages(column: pd.Series, times: pd.Series) -> pd.Series | None:
    """Age at application from a birth-year column (None when the values do not look like years)."""
    years = pd.to_numeric(column, errors="coerce")
    present = years.dropna()
    if present.empty or not bool(present.between(1900, 2100).all()):
        return None
    return pd.Series(
        times.dt.year.to_numpy(dtype=np.float64) - years.to_numpy(dtype=np.float64), index=column.index
    )


def protected_segments(
    table: pd.DataFrame,
    columns: Sequence[str],
    bands: Mapping[str, Sequence[float]],
    times: pd.Series,
) -> tuple[pd.DataFrame, dict[str, Banding]]:
    """The protected columns as audit groups (bands for numbers), aligned with `table`'s rows.

    Raises `TableInputError` for a `--band` on a column that is not numeric, or a numeric column
    with more than `MAX_UNBANDED_VALUES` values that is neither age-like nor given a `--band`.
    """
    segments: dict[str, pd.Series] = {}
    banded: dict[str, Banding] = {}
    for name in columns:
        column = table[name]
        numeric = is_numeric(column) and not pd.api.types.is_bool_dtype(column)
        if name in bands and not numeric:
            raise TableInputError(
                f"--band {name}: the column is not numeric (e.g. {column.dropna().iloc[:3].tolist()}); "
                "drop the --band: its values are the groups"
            )
        source, values = "", column
        if name in bands:
            cuts, source = tuple(float(c) for c in bands[name]), "--band"
        elif numeric and is_age_like(name):
            cuts, source = DEFAULT_AGE_CUTS, "default age bands"
            ages = _birth_ages(column, times) if _BIRTH.search(name) else None
            if ages is not None:
                values, source = ages, "default age bands (age at application from birth year)"
        elif numeric and int(column.nunique()) > MAX_UNBANDED_VALUES:
            raise TableInputError(
                f"protected column {name!r} is numeric with {int(column.nunique()):,} distinct values: "
                f"one audit group per value is too small to judge; pass --band {name}:CUTS "
                f"(e.g. --band {name}:{','.join(fmt_number(c) for c in _example_cuts(column))})"
            )
        if source:
            labels = apply_bands(values, cuts)
            segments[name] = labels
            order = [*band_labels(cuts, _whole(values)), UNKNOWN]
            counts = labels.value_counts()
            banded[name] = Banding(
                name,
                cuts,
                tuple(band_labels(cuts, _whole(values))),
                source,
                {label: int(counts[label]) for label in order if label in counts.index},
            )
        else:
            segments[name] = _group_text(column)
    frame = pd.DataFrame({n: s.to_numpy() for n, s in segments.items()}, index=range(len(table)))
    return frame, banded


def _whole(values: pd.Series) -> bool:
    numbers = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=np.float64)
    return bool(np.all(numbers == np.round(numbers)))


def _example_cuts(column: pd.Series) -> list[float]:
    """Quartile cuts of a column, rounded to two significant digits: a starting point to edit."""
    quantiles = pd.to_numeric(column, errors="coerce").quantile([0.25, 0.5, 0.75]).dropna()
    cuts: list[float] = []
    for q in quantiles:
        rounded = float(f"{q:.2g}") if q else 0.0
        if not cuts or rounded > cuts[-1]:
            cuts.append(rounded)
    return cuts or [0.0]


@dataclass(frozen=True)
class ProxyWarning:
    """A model input that alone separates a protected group from the rest of its attribute."""

    input: str
    attribute: str
    group: str
    strength: float  # max(AUC, 1 - AUC)
    auc: float
    direction: str  # "higher" | "lower" | "category"
    describe: str  # e.g. "higher values → gender=female"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "input": self.input,
            "attribute": self.attribute,
            "group": self.group,
            "strength": round(self.strength, 4),
            "auc": round(self.auc, 4),
            "direction": self.direction,
            "describe": self.describe,
        }

    def line(self) -> str:
        """One line for the console and the model card."""
        return (
            f"{self.input} alone predicts {self.attribute}={self.group} "
            f"(strength {self.strength:.2f}: {self.describe}); it is a model input and encodes a "
            "protected attribute"
        )


def proxy_warnings(
    table: pd.DataFrame,
    inputs: Sequence[str],
    segments: pd.DataFrame,
    *,
    threshold: float = PROXY_WARNING_STRENGTH,
    min_group: int = PROXY_MIN_GROUP,
) -> list[ProxyWarning]:
    """For each (input, protected attribute), its strongest one-vs-rest group when the input alone
    separates it at `threshold` or better; strongest first. An input is not scanned against itself.

    `table` and `segments` hold the same rows in the same order.
    """
    found: list[ProxyWarning] = []
    for attribute in segments.columns:
        labels = segments[attribute].astype(str).to_numpy()
        known = labels != UNKNOWN
        levels = [
            g
            for g in sorted(set(labels[known].tolist()))
            if min_group <= int((labels == g).sum()) <= int(known.sum()) - min_group
        ]
        if len(levels) == 2:  # one scan is enough for two groups: name the smaller one
            levels = [min(levels, key=lambda g: int((labels == g).sum()))]
        for name in inputs:
            if name == attribute:
                continue
            column = table[name].reset_index(drop=True)[known]
            best: ProxyWarning | None = None
            for level in levels:
                y = (labels[known] == level).astype(np.int64)
                signal = single_column_proxy(column, y)
                if signal is None or math.isnan(signal.auc) or signal.strength < threshold:
                    continue
                if best is None or signal.strength > best.strength:
                    best = ProxyWarning(
                        name,
                        str(attribute),
                        level,
                        signal.strength,
                        signal.auc,
                        signal.direction,
                        signal.describe(f"{attribute}={level}"),
                    )
            if best is not None:
                found.append(best)
    return sorted(found, key=lambda w: w.strength, reverse=True)
