"""The one module that imports Evidently: its data-drift report (HTML) and per-column drift scores.

Evidently moves fast (0.7 rewrote the API), so everything it touches lives here. We ask its
`DataDriftPreset` for PSI per column too, so its numbers can be read beside our fast path; its own
binning differs from ours (see `monitoring.psi`), so the two agree in direction, not to the digit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "method": self.method,
            "drifted_columns": self.drifted_columns,
            "drifted_share": self.drifted_share,
            "column_scores": self.column_scores,
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
    """Run Evidently's `DataDriftPreset` over the given columns; write its HTML report if asked.

    Args:
        reference: reference feature rows.
        current: current feature rows.
        numeric: numeric columns to compare.
        categorical: categorical columns to compare.
        html_path: where to write the standalone HTML report (None: no HTML).
        method: Evidently stat test for every column (default PSI, like our fast path).
        threshold: Evidently's per-column drift threshold for that test.
        max_reference_rows: Evidently's run time grows with rows; the HTML report compares the
            window with a fixed-seed random sample of this many reference rows (None: all). The
            fast path and the alarm always use the whole reference.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = [*numeric, *categorical]
    if max_reference_rows is not None and len(reference) > max_reference_rows:
        reference = reference.sample(n=max_reference_rows, random_state=0).reset_index(drop=True)
    definition = DataDefinition(numerical_columns=list(numeric), categorical_columns=list(categorical))
    ref = Dataset.from_pandas(_columns(reference, columns), data_definition=definition)
    cur = Dataset.from_pandas(_columns(current, columns), data_definition=definition)
    report = Report([DataDriftPreset(columns=columns, method=method, threshold=threshold)])
    snapshot = report.run(current_data=cur, reference_data=ref)
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))  # 0.7 silently ignores a Path: pass a str
    return _read_results(snapshot.dict(), method)


def _columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The requested columns (absent ones as all-missing), so both datasets share a layout."""
    present = [c for c in columns if c in frame]
    out = frame[present].copy()
    for name in columns:
        if name not in out:
            out[name] = float("nan")
    return out[list(columns)]


def _read_results(result: dict[str, Any], method: str) -> EvidentlyDrift:
    scores: dict[str, float] = {}
    count, share = 0, 0.0
    for metric in result.get("metrics", []):
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        value = metric.get("value")
        if kind.endswith("ValueDrift") and isinstance(value, int | float):
            scores[str(config.get("column"))] = float(value)
        elif kind.endswith("DriftedColumnsCount") and isinstance(value, dict):
            count = int(value.get("count", 0))
            share = float(value.get("share", 0.0))
    return EvidentlyDrift(method=method, column_scores=scores, drifted_columns=count, drifted_share=share)
