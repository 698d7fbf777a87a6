"""The one module that imports Evidently: its data-drift report (HTML) and per-column drift scores.

Evidently moves fast (0.7 rewrote the API), so everything it touches lives here. We ask it for PSI
per column too, so its numbers can be read beside our fast path; its own binning differs from ours
(see `monitoring.psi`), so the two agree in direction, not to the digit.

Why one `ValueDrift` per column rather than `DataDriftPreset`. The preset yields exactly these
metrics (a `ValueDrift` per column, plus `DriftedColumnsCount`), but on 100k rows x ~100 columns it
took ~50 s on 2 cores, for reasons that have nothing to do with the drift tests (PSI itself is
milliseconds per column):

- every column's drift is computed three times: by its `ValueDrift`, and again by the legacy
  `DatasetDriftMetric` (behind `DriftedColumnsCount`) and `DataDriftTable` that the preset renders;
- each of those per-column passes copies the *whole* current frame and drops its missing rows
  (Evidently's aggregated "mean over index" plot), so the cost grows with columns squared;
- each legacy pass, when any value is missing (our ratios often are), computes the pairwise
  correlation matrix of every numeric column over every row (pandas' NaN-aware `corr`, seconds each);
- the preset's render then discards the `ValueDrift` widgets it has already built.

So the report runs the per-column `ValueDrift` metrics alone, with Evidently's tests on: each column
gets its drift score, method, threshold, pass/fail and its plots (mean over index, distributions vs
the reference); the test summary on top counts the drifted columns - Evidently's own dataset-level
answer, without the second and third passes. Columns come in the caller's order (the monitor puts
score / PD and the most shifted features first). Every requested column is reported, except one
with no value on a side (Evidently raises on an empty column): those are listed in `skipped`, and
our fast path still judges them (a column absent from the window is a quality issue there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class EvidentlyDrift:
    """What the Evidently report found: its per-column drift scores and the drifted-column share."""

    method: str
    column_scores: dict[str, float]
    drifted_columns: int
    drifted_share: float
    skipped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "method": self.method,
            "drifted_columns": self.drifted_columns,
            "drifted_share": self.drifted_share,
            "column_scores": self.column_scores,
            "skipped": list(self.skipped),
        }


def evidently_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    html_path: Path | None = None,
    method: str = "psi",
    threshold: float = 0.1,
    max_reference_rows: int | None = None,
) -> EvidentlyDrift:
    """Run Evidently's per-column `ValueDrift` over the given columns; write its HTML report if asked.

    Args:
        reference: reference feature rows.
        current: current feature rows.
        numeric: numeric columns to compare (in report order).
        categorical: categorical columns to compare (after the numeric ones).
        html_path: where to write the standalone HTML report (None: no HTML).
        method: Evidently stat test for every column (default PSI, like our fast path).
        threshold: Evidently's per-column drift threshold for that test.
        max_reference_rows: Evidently's run time grows with rows; the HTML report compares the
            window with a fixed-seed random sample of this many reference rows (None: all). The
            fast path and the alarm always use the whole reference.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    requested = list(dict.fromkeys([*numeric, *categorical]))
    skipped = tuple(c for c in requested if _empty(reference, c) or _empty(current, c))
    columns = [c for c in requested if c not in skipped]
    if not columns:
        raise ValueError("no column has values in both the reference and the current rows")
    if max_reference_rows is not None and len(reference) > max_reference_rows:
        reference = reference.sample(n=max_reference_rows, random_state=0).reset_index(drop=True)
    definition = DataDefinition(
        numerical_columns=[c for c in numeric if c in columns],
        categorical_columns=[c for c in categorical if c not in numeric],
    )
    ref = Dataset.from_pandas(_columns(reference, columns), data_definition=definition)
    cur = Dataset.from_pandas(_columns(current, columns), data_definition=definition)
    report = Report(
        [ValueDrift(column=name, method=method, threshold=threshold) for name in columns],
        include_tests=True,
    )
    snapshot = report.run(current_data=cur, reference_data=ref)
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))  # 0.7 silently ignores a Path: pass a str
    return replace(_read_results(snapshot.dict(), method), skipped=skipped)


def _empty(frame: pd.DataFrame, column: str) -> bool:
    """True when the column is absent or holds no value."""
    return column not in frame or not frame[column].notna().any()


def _columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The requested columns (absent ones as all-missing), so both datasets share a layout."""
    present = [c for c in columns if c in frame]
    out = frame[present].copy()
    for name in columns:
        if name not in out:
            out[name] = float("nan")
    return out[list(columns)]


def _read_results(result: dict[str, Any], method: str) -> EvidentlyDrift:
    """Per-column scores from the `ValueDrift` metrics; drifted columns from their tests (FAIL)."""
    scores: dict[str, float] = {}
    ids: dict[str, str] = {}
    for metric in result.get("metrics", []):
        config = metric.get("config", {})
        value = metric.get("value")
        if str(config.get("type", "")).endswith("ValueDrift") and isinstance(value, int | float):
            scores[str(config.get("column"))] = float(value)
            ids[str(metric.get("id"))] = str(config.get("column"))
    drifted = {
        ids[str(test.get("metric_config", {}).get("metric_id"))]
        for test in result.get("tests", [])
        if str(test.get("metric_config", {}).get("metric_id")) in ids and test.get("status") == "FAIL"
    }
    count = len(drifted)
    share = count / len(scores) if scores else 0.0
    return EvidentlyDrift(method=method, column_scores=scores, drifted_columns=count, drifted_share=share)
