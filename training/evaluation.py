"""Out-of-time evaluation of the model against its baselines, overall and per segment.

Every contender (model, oracle, feature ceiling, WOE scorecard, bureau-only) is scored on the same
OOT applications. Segments: thin vs thick file, county, cooperative tenure band, and for a lender's
table its protected columns (audits only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.metrics import Metrics, binary_metrics, contender_intervals

FloatArray = npt.NDArray[np.float64]

CONTENDERS: Final = {
    "model": "model",
    "oracle": "oracle (true PD)",
    "feature_ceiling": "feature ceiling",
    "scorecard": "WOE scorecard",
    "bureau": "bureau-only",
}


@dataclass(frozen=True)
class SegmentResult:
    """Metrics of every contender inside one segment (e.g. county = county-02)."""

    segment: str
    value: str
    metrics: dict[str, Metrics]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "segment": self.segment,
            "value": self.value,
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
        }


@dataclass
class EvaluationReport:
    """OOT metrics per contender, overall, on thin and thick files, and per segment."""

    overall: dict[str, Metrics]
    thin: dict[str, Metrics] | None = None
    thick: dict[str, Metrics] | None = None
    segments: list[SegmentResult] = field(default_factory=list)
    target_bad_rate: float = 0.05
    # Overall 95% bootstrap intervals per contender: {"auc": (low, high), "approval_rate": (...)}.
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    resamples: int = 0

    def headline(self) -> list[dict[str, Any]]:
        """One row per contender: the side-by-side OOT table."""
        rows = []
        for name, metrics in self.overall.items():
            row: dict[str, Any] = {"contender": name, "label": CONTENDERS.get(name, name)}
            row["auc"] = metrics.auc
            row["thin_auc"] = self.thin[name].auc if self.thin and name in self.thin else math.nan
            row["thick_auc"] = self.thick[name].auc if self.thick and name in self.thick else math.nan
            for key in ("gini", "ks", "brier", "log_loss", "ece", "approval_rate"):
                row[key] = getattr(metrics, key)
            for key in ("auc", "approval_rate"):
                row[f"{key}_95"] = list(self.intervals[name][key]) if name in self.intervals else None
            rows.append(row)
        return rows

    def flat_metrics(self) -> dict[str, float]:
        """`<slice>.<contender>.<metric>` -> value, for MLflow (e.g. `oot.model.auc`)."""
        flat: dict[str, float] = {}
        parts: list[tuple[str, dict[str, Metrics] | None]] = [
            ("oot", self.overall),
            ("oot_thin", self.thin),
            ("oot_thick", self.thick),
        ]
        for prefix, table in parts:
            for name, metrics in (table or {}).items():
                for key, value in metrics.to_dict().items():
                    if value is not None:
                        flat[f"{prefix}.{name}.{key}"] = float(value)
        for result in self.segments:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in result.value)
            for name, metrics in result.metrics.items():
                if not math.isnan(metrics.auc):
                    flat[f"segment.{result.segment}.{safe}.{name}.auc"] = metrics.auc
                flat[f"segment.{result.segment}.{safe}.{name}.mean_pd"] = metrics.mean_pd
            first = next(iter(result.metrics.values()))
            flat[f"segment.{result.segment}.{safe}.n"] = float(first.n)
            flat[f"segment.{result.segment}.{safe}.default_rate"] = first.default_rate
        return flat

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""

        def table(metrics: Mapping[str, Metrics] | None) -> dict[str, Any] | None:
            return None if metrics is None else {k: v.to_dict() for k, v in metrics.items()}

        return {
            "target_bad_rate": self.target_bad_rate,
            "intervals": {name: {k: list(v) for k, v in i.items()} for name, i in self.intervals.items()},
            "resamples": self.resamples,
            "overall": table(self.overall),
            "thin": table(self.thin),
            "thick": table(self.thick),
            "segments": [s.to_dict() for s in self.segments],
        }


def _metrics_of(
    y: npt.NDArray[np.int64],
    pds: Mapping[str, FloatArray],
    mask: npt.NDArray[np.bool_],
    target: float,
    bins: int,
) -> dict[str, Metrics]:
    return {
        name: binary_metrics(y[mask], pd_[mask], target_bad_rate=target, bins=bins)
        for name, pd_ in pds.items()
    }


def evaluate(
    y: npt.NDArray[np.int64],
    pds: Mapping[str, FloatArray],
    segments: pd.DataFrame,
    *,
    thin_segment: str | None,
    target_bad_rate: float = 0.05,
    bins: int = 10,
    resamples: int = 0,
    seed: int = 0,
) -> EvaluationReport:
    """Metrics of each contender's PDs against the OOT labels `y`, overall and per segment, with
    bootstrap intervals of the overall AUC and approval rate when `resamples` > 0."""
    everything = np.ones(len(y), dtype=bool)
    report = EvaluationReport(
        overall=_metrics_of(y, pds, everything, target_bad_rate, bins),
        target_bad_rate=target_bad_rate,
        intervals=contender_intervals(y, pds, target_bad_rate=target_bad_rate, resamples=resamples, seed=seed)
        if resamples
        else {},
        resamples=resamples,
    )
    if thin_segment is not None and thin_segment in segments:
        thin = segments[thin_segment].to_numpy() == "thin"
        report.thin = _metrics_of(y, pds, thin, target_bad_rate, bins)
        report.thick = _metrics_of(y, pds, ~thin, target_bad_rate, bins)
    for column in segments.columns:
        values = segments[column].astype(str).to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            report.segments.append(
                SegmentResult(column, value, _metrics_of(y, pds, mask, target_bad_rate, bins))
            )
    return report
