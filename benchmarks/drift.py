"""Drift check speed: our PSI + quality fast path vs Evidently's full data-drift report.

100,000 current rows x every model feature (~100 columns), reference 50,000 rows, synthesized in
the shape of the feature set (counts with many zeros, skewed amounts with zeros, ratios with NaN),
with a few features shifted. Prints seconds (median of a few runs) and the ratio Evidently / ours.
Targets on 2 cores: fast path <= 1 s, full report <= 30 s.

    .venv/bin/python benchmarks/drift.py [--rows 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

T = TypeVar("T")
HERE = Path(__file__).resolve().parent


def _import_path() -> None:
    """Run as a script, Python puts `benchmarks/` first on sys.path, where `features.py` would
    shadow the `features` package: use the repository root instead."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(HERE.parent))


def synthesize(rows: int, seed: int, *, shifted: bool) -> pd.DataFrame:
    """Rows shaped like the model's features: int64 counts, float64 amounts and ratios (NaN)."""
    from features.catalog import default_registry

    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    for i, feature in enumerate(default_registry().features):
        if feature.dtype == "int64":
            values: np.ndarray = rng.poisson(0.3 + (i % 7), rows).astype(np.int64)
            if shifted and i % 25 == 0:
                values = values + 2
        else:
            active = rng.random(rows) < 0.7
            values = np.where(active, rng.lognormal(7.0 + (i % 5) * 0.3, 1.0, rows), 0.0)
            values[rng.random(rows) < 0.05 * (i % 3)] = np.nan
            if shifted and i % 30 == 1:
                values = values * 1.6
        columns[feature.name] = values
    frame = pd.DataFrame(columns)
    frame["score"] = rng.normal(600 + (8 if shifted else 0), 45, rows)
    frame["pd"] = rng.beta(2, 25, rows)
    return frame


def timed(run: Callable[[], T], runs: int) -> tuple[float, T]:
    """Median seconds of `runs` calls, and the last result."""
    seconds = []
    for _ in range(runs):
        began = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="current rows")
    parser.add_argument("--reference-rows", type=int, default=50_000, help="reference rows")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    args = parser.parse_args()
    _import_path()
    from monitoring.drift import compute_drift
    from monitoring.evidently_report import evidently_drift_report

    reference = synthesize(args.reference_rows, 1, shifted=False)
    current = synthesize(args.rows, 2, shifted=True)
    features = [c for c in reference.columns if c not in ("score", "pd")]
    console = Console()
    console.print(f"{args.rows:,} current x {len(features)} features, {args.reference_rows:,} reference rows")

    fast_seconds, summary = timed(lambda: compute_drift(reference, current, features=features), args.runs)
    import evidently  # noqa: F401  (import time is not part of the report's run time)

    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "evidently.html"
        full_seconds, _ = timed(
            lambda: evidently_drift_report(
                reference, current, numeric=[*features, "score", "pd"], html_path=html
            ),
            args.runs,
        )
        html_mb = html.stat().st_size / 1e6
    table = Table(title=f"drift check, median of {args.runs} runs")
    table.add_column("path")
    table.add_column("seconds", justify="right")
    table.add_column("target", justify="right")
    table.add_row("fast path (PSI + quality + score PSI, bins fitted)", f"{fast_seconds:.3f}", "<= 1 s")
    table.add_row(
        f"Evidently ValueDrift(psi) x {len(features) + 2} columns + tests + HTML ({html_mb:.0f} MB)",
        f"{full_seconds:.2f}",
        "<= 30 s",
    )
    table.add_row("ratio Evidently / fast path", f"{full_seconds / fast_seconds:.0f}x", "")
    console.print(table)
    drifted = sum(f.alarm == "drift" for f in summary.features)
    console.print(f"fast path status: {summary.status}, drifted features: {drifted}")


if __name__ == "__main__":
    main()
