"""Checking a lender's table before training on it: nothing is dropped or guessed silently.

A lender's export is awkward in predictable ways: day-first dates, a text label, a per-row id, a
column that never changes, a column written after the outcome was known. Each check here either
stops with one line a person can act on (`TableInputError`, exit 2 at the CLI) or excludes rows or
columns and records how many and why (`InputReport`), which the console, `--json`, the model card
and the MLflow run all show.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from training.metrics import roc_auc

if TYPE_CHECKING:
    from training.protected import Banding, ProxyWarning

ID_LIKE_SHARE: Final = 0.95  # text with more distinct values than this share of rows names rows
ID_SPAN_PER_ROW: Final = 1.5  # whole numbers spread no wider than this per distinct value: row numbers
LEAKAGE_AUC: Final = 0.99  # one column alone separating the label this well was written after it
EXAMPLES: Final = 3
# Day and month both written as one or two digits: the order cannot be told from the values.
_AMBIGUOUS_DATE: Final = re.compile(r"^\s*\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}(\s.*)?$")


class TableInputError(ValueError):
    """The table cannot be trained on as asked; the message says what to change (exit 2)."""


@dataclass(frozen=True)
class Exclusion:
    """Rows or a column left out, with why."""

    reason: str
    count: int  # rows left out; 1 for a column
    column: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"column": self.column, "reason": self.reason, "count": self.count, "detail": self.detail}


@dataclass
class InputReport:
    """What was read, what was left out and why, and how much of each input is missing."""

    rows_read: int
    rows_used: int = 0
    rows_excluded: list[Exclusion] = field(default_factory=list)
    columns_excluded: list[Exclusion] = field(default_factory=list)
    roles: dict[str, list[str]] = field(default_factory=dict)
    missing: dict[str, dict[str, float | int]] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    label_values: dict[str, list[str]] = field(default_factory=dict)
    time_format: str | None = None
    table_file: str = ""  # the table's file name (the model card names it)
    label_description: str | None = None  # what the label means, in the lender's words (--label-desc)
    # Protected columns: which are audit only, which are also model inputs, how numbers were banded,
    # and the inputs that alone predict a protected group (see `training.protected`).
    protected: list[str] = field(default_factory=list)
    protected_inputs: list[str] = field(default_factory=list)
    bands: dict[str, Banding] = field(default_factory=dict)
    proxy_warnings: list[ProxyWarning] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        totals: dict[str, int] = {}
        for e in [*self.rows_excluded, *self.columns_excluded]:
            key = f"{'columns' if e in self.columns_excluded else 'rows'}: {e.reason}"
            totals[key] = totals.get(key, 0) + e.count
        return {
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "rows_excluded": [e.to_dict() for e in self.rows_excluded],
            "columns_excluded": [e.to_dict() for e in self.columns_excluded],
            "roles": self.roles,
            "missing": self.missing,
            "kept": self.kept,
            "label_values": self.label_values,
            "time_format": self.time_format,
            "table_file": self.table_file,
            "label_description": self.label_description,
            "excluded_totals": totals,
            "protected": self.protected,
            "protected_inputs": self.protected_inputs,
            "bands": {name: band.to_dict() for name, band in self.bands.items()},
            "proxy_warnings": [w.to_dict() for w in self.proxy_warnings],
        }

    def lines(self) -> list[str]:
        """One line per exclusion and per input with missing values (console, model card)."""
        out = [f"rows: {self.rows_used:,} used of {self.rows_read:,} read"]
        out += [f"rows excluded: {e.count:,} ({e.reason})" for e in self.rows_excluded]
        out += [
            f"column excluded: {e.column} ({e.reason}{': ' + e.detail if e.detail else ''})"
            for e in self.columns_excluded
        ]
        out += [
            f"missing values: {name} {m['count']:,} ({m['share']:.1%})"
            for name, m in self.missing.items()
            if m["count"]
        ]
        return out

    def protected_lines(self) -> list[str]:
        """How protected attributes were handled in this run (console, model card): true to the run."""
        out = []
        audit_only = [c for c in self.protected if c not in self.protected_inputs]
        if audit_only:
            out.append(f"protected, audit only (not model inputs): {', '.join(audit_only)}")
        if self.protected_inputs:
            names = ", ".join(self.protected_inputs)
            out.append(
                f"WARNING protected AND model inputs (--protected-input): {names}; "
                "the model scores on them directly and every audit flags it"
            )
        if not self.protected:
            out.append(
                "no protected column named (--protected): inputs were not checked against any "
                "protected attribute and audits have no protected groups from this table"
            )
        out += [band.line() for band in self.bands.values()]
        out += [f"WARNING proxy: {w.line()}" for w in self.proxy_warnings]
        return out


def _preview(values: Iterable[str], limit: int) -> str:
    items = list(values)
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def require_columns(columns: Iterable[object], wanted: dict[str, Sequence[str]], source: str) -> None:
    """Every column named by an option exists; otherwise one line with the closest names."""
    present = [str(c) for c in columns]
    problems = []
    for option, names in wanted.items():
        for name in names:
            if name in present:
                continue
            close = difflib.get_close_matches(name, present, n=3, cutoff=0.5)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            problems.append(f"{option} {name!r}{hint}")
    if problems:
        raise TableInputError(
            f"{source}: no such column: {'; '.join(problems)}; columns are {_preview(present, 12)}"
        )


def _to_times(column: pd.Series, name: str, time_format: str | None) -> pd.Series:
    """UTC timestamps, NaT where a value does not parse: by the format, else as ISO 8601 (any
    precision), else by pandas' guess from the first value (whose failures are then reported)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return pd.to_datetime(column, utc=True)
    try:
        with warnings.catch_warnings():  # pandas warns when it guesses a format: we decide after
            warnings.simplefilter("ignore", UserWarning)
            if time_format is not None:
                return pd.to_datetime(column, utc=True, errors="coerce", format=time_format)
            iso = pd.to_datetime(column, utc=True, errors="coerce", format="ISO8601")
            if int(iso.notna().sum()) == int(column.notna().sum()):
                return iso
            return pd.to_datetime(column, utc=True, errors="coerce")
    except (ValueError, TypeError) as error:
        raise TableInputError(f"time column {name!r}: {error}") from error


def parse_times(column: pd.Series, name: str, time_format: str | None) -> pd.Series:
    """The time column as UTC timestamps (NaT where empty); unparseable or ambiguous values stop.

    With a format, every non-empty value must match it exactly. Without one, values pandas cannot
    read stop with their count and examples, and day/month-ambiguous text such as 03/04/2024 is
    refused rather than guessed (pandas would read it month-first).
    """
    present = column.notna() & (column.astype("string").str.strip() != "")
    times = _to_times(column.where(present), name, time_format)
    failed = present & times.isna()
    if failed.any():
        examples = ", ".join(repr(str(v)) for v in column[failed].drop_duplicates().head(EXAMPLES))
        how = (
            f"do not match --time-format {time_format} (e.g. {examples}); fix the format"
            if time_format
            else f"could not be parsed (e.g. {examples}); pass --time-format, e.g. --time-format %d/%m/%Y"
        )
        raise TableInputError(
            f"time column {name!r}: {int(failed.sum()):,} of {int(present.sum()):,} values {how}"
        )
    if time_format is None and not pd.api.types.is_datetime64_any_dtype(column):
        ambiguous = column[present].astype("string").str.match(_AMBIGUOUS_DATE).fillna(False)
        if bool(ambiguous.any()):
            sample = column[present][ambiguous].drop_duplicates().head(EXAMPLES)
            examples = ", ".join(repr(str(v)) for v in sample)
            raise TableInputError(
                f"time column {name!r}: {int(ambiguous.sum()):,} of {int(present.sum()):,} values have "
                f"an ambiguous day/month order (e.g. {examples}); pass --time-format, e.g. "
                "--time-format %d/%m/%Y or %m/%d/%Y"
            )
    return times


def _label_text(column: pd.Series) -> pd.Series:
    """Label values as comparable text: numbers without a trailing .0, strings stripped."""
    if pd.api.types.is_bool_dtype(column):
        return column.map({True: "1", False: "0"}).astype("string")
    if pd.api.types.is_numeric_dtype(column):
        numbers = column.astype(np.float64)
        whole = numbers.dropna() == numbers.dropna().round()
        if bool(whole.all()):
            return numbers.map(lambda v: None if pd.isna(v) else str(int(v))).astype("string")
        return numbers.map(lambda v: None if pd.isna(v) else repr(float(v))).astype("string")
    return column.astype("string").str.strip()


def binary_label(
    column: pd.Series,
    name: str,
    *,
    bad_value: str | None,
    good_values: Sequence[str] = (),
) -> tuple[pd.Series, dict[str, list[str]], list[Exclusion]]:
    """The label as 1 (bad) / 0 (good) / NaN (row excluded), the values behind each class, and the
    rows left out with why.

    Without `bad_value` the label must be 0/1 (1 = default). With it, every other value is good when
    the label has two distinct values; with more, `good_values` must list the good ones and rows with
    any other value are left out (counted).
    """
    text = _label_text(column)
    missing = text.isna() | (text == "")
    seen = sorted(text[~missing].unique().tolist(), key=str)
    listing = _preview((repr(v) for v in seen), 10)
    exclusions = []
    if int(missing.sum()):
        exclusions.append(Exclusion("label missing", int(missing.sum()), name))
    if bad_value is None:
        if not set(seen) <= {"0", "1"}:
            raise TableInputError(
                f"label column {name!r} is not 0/1 (values seen: {listing}); "
                "pass --bad-value V to say which value means default"
            )
        values = text.map({"0": 0.0, "1": 1.0}).astype(np.float64)
        return values, {"bad": ["1"], "good": ["0"]}, exclusions
    fold = {v.casefold(): v for v in seen}
    bad = fold.get(bad_value.strip().casefold())
    if bad is None:
        raise TableInputError(
            f"label column {name!r} has no value {bad_value!r} (--bad-value); values seen: {listing}"
        )
    if good_values:
        unknown = [g for g in good_values if g.strip().casefold() not in fold]
        if unknown:
            raise TableInputError(
                f"label column {name!r} has no value {', '.join(repr(g) for g in unknown)} (--good-value); "
                f"values seen: {listing}"
            )
        good = [fold[g.strip().casefold()] for g in good_values]
    elif len(seen) > 2:
        raise TableInputError(
            f"label column {name!r} has {len(seen)} distinct values ({listing}); with --bad-value "
            f"{bad_value!r} list the good ones with --good-value (repeatable); rows with other values "
            "are then left out"
        )
    else:
        good = [v for v in seen if v != bad]
    if bad in good:
        raise TableInputError(f"label value {bad!r} is given as both --bad-value and --good-value")
    values = pd.Series(np.nan, index=column.index, dtype=np.float64)
    values[text == bad] = 1.0
    values[text.isin(good)] = 0.0
    other = ~missing & values.isna()
    if int(other.sum()):
        others = sorted(text[other].unique().tolist(), key=str)
        exclusions.append(
            Exclusion(
                "label value neither --bad-value nor --good-value",
                int(other.sum()),
                name,
                _preview((repr(v) for v in others), 10),
            )
        )
    return values, {"bad": [bad], "good": good}, exclusions


def _single_column_auc(column: pd.Series, label: np.ndarray) -> float:
    """How well this column alone ranks defaults: numbers as they are, text by its own default rate;
    missing is a value of its own (a column filled in only after default leaks through its gaps)."""
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        numbers = column.astype(np.float64)
        floor = float(numbers.min()) - 1.0 if numbers.notna().any() else 0.0
        return roc_auc(label, numbers.fillna(floor).to_numpy())
    text = column.astype("string").fillna("\x00missing")
    rates = pd.Series(label, index=column.index).groupby(text.to_numpy()).mean()
    return roc_auc(label, text.map(rates).to_numpy(dtype=np.float64))


def _row_numbers(present: pd.Series) -> bool:
    """Whole numbers, nearly one per row, packed into a range about as wide as the row count: a row
    number or a numeric application id (an income or an amount with as many distinct values spreads
    over a far wider range)."""
    if pd.api.types.is_bool_dtype(present) or len(present) < 20:
        return False
    values = present.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        return False
    distinct = len(np.unique(values))
    span = float(values.max() - values.min()) + 1.0
    return distinct > ID_LIKE_SHARE * len(values) and span <= ID_SPAN_PER_ROW * distinct


def screen_columns(
    table: pd.DataFrame, label: np.ndarray, candidates: Sequence[str], keep: Sequence[str] = ()
) -> tuple[list[str], list[Exclusion]]:
    """The candidate columns fit to be model inputs, and the others with why (`keep` overrides).

    Constant columns teach nothing; text naming each row (ids, free text) or a row number only
    memorises rows; a column that alone separates the label almost perfectly was most likely recorded
    after the outcome.
    """
    inputs: list[str] = []
    excluded: list[Exclusion] = []
    for name in candidates:
        if name in keep:
            inputs.append(name)
            continue
        column = table[name]
        present = column.dropna()
        distinct = int(present.nunique())
        if distinct <= 1:
            what = f"always {present.iloc[0]!r}" if distinct else "every value missing"
            excluded.append(Exclusion("constant", 1, name, what))
            continue
        numeric = pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column)
        if not numeric and distinct > ID_LIKE_SHARE * len(present):
            excluded.append(
                Exclusion("id-like text", 1, name, f"{distinct:,} distinct values in {len(present):,} rows")
            )
            continue
        if numeric and _row_numbers(present):
            low, high = present.min(), present.max()
            excluded.append(
                Exclusion(
                    "id-like number",
                    1,
                    name,
                    f"{distinct:,} distinct whole numbers in {len(present):,} rows, {low:g} to {high:g}; "
                    f"--keep {name} to use it",
                )
            )
            continue
        auc = _single_column_auc(column, label)
        if np.isfinite(auc) and (auc >= LEAKAGE_AUC or auc <= 1 - LEAKAGE_AUC):
            excluded.append(
                Exclusion(
                    "leakage suspect",
                    1,
                    name,
                    f"alone separates the label (AUC {auc:.3f}); --keep {name} to use it",
                )
            )
            continue
        inputs.append(name)
    return inputs, excluded


def missing_values(table: pd.DataFrame, columns: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """Count and share of missing values per input column."""
    rows = len(table)
    out: dict[str, dict[str, float | int]] = {}
    for name in columns:
        count = int(table[name].isna().sum())
        out[name] = {"count": count, "share": round(count / rows, 4) if rows else 0.0}
    return out
