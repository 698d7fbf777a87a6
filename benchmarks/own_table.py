"""Own-table benchmark: wall time of `coopscore train --table` and `coopscore audit fairness --data oot`
on a lender's generated table of 1,000 and 100,000 rows (issue 13's "run time of train + audit").

Each size: `coopscore simulate-table` writes the awkward table once (not timed); then, per run, a fresh
MLflow store, `train --table ... --json` and `audit fairness --data oot --model challenger --json`,
each in a fresh process timed from outside (so imports count, as they do for a user). The named peer
is the bare fit the engine wraps: `lightgbm.train` on the same usable rows and inputs with the same
booster parameters and round count, in process. The ratio says what everything around the fit
(checks, splits, baselines, calibration, reports, MLflow) costs. Medians of `--runs` runs.

Usage: `python benchmarks/own_table.py [--sizes 1000,100000 --runs 3 --work-dir /tmp/cs-own-table]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CLI = "from coopscore.cli import app\napp()\n"
TABLE_FLAGS = (
    "--label",
    "outcome",
    "--bad-value",
    "default",
    "--good-value",
    "repaid",
    "--time",
    "applied_on",
    "--time-format",
    "%d/%m/%Y",
    "--id",
    "application_id",
    "--protected",
    "gender",
    "--protected",
    "age",
)


def _cli(
    args: list[str], env: dict[str, str], cwd: Path, ok: tuple[int, ...]
) -> tuple[float, dict[str, Any]]:
    """One CLI command in a fresh process: wall seconds and its JSON object."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - began
    if done.returncode not in ok:
        raise RuntimeError(f"{args[0]} exited {done.returncode}:\n{done.stderr[-3000:]}")
    payload: dict[str, Any] = json.loads(done.stdout)
    return wall, payload


def _peer_seconds(table: Path, summary: dict[str, Any]) -> float:
    """`lightgbm.train` alone on the same usable rows and inputs, same parameters and rounds."""
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from training.config import BoosterConfig

    frame = pd.read_csv(table)
    frame = frame[frame["outcome"].isin(["default", "repaid"]) & frame["applied_on"].notna()]
    report = summary["data"]["inputs"]
    left_out = {c for names in report["roles"].values() for c in names}
    left_out |= {e["column"] for e in report["columns_excluded"]}
    x = frame[[c for c in frame.columns if c not in left_out]].copy()
    for name in x.columns:
        if not pd.api.types.is_numeric_dtype(x[name]):
            x[name] = x[name].astype("category")
    y = (frame["outcome"] == "default").to_numpy(dtype=np.int64)
    rounds = max(int(summary["metrics"].get("best_iteration") or 100), 1)
    began = time.perf_counter()
    lgb.train(BoosterConfig().lightgbm_params(), lgb.Dataset(x, y), num_boost_round=rounds)
    return time.perf_counter() - began


def bench_size(rows: int, runs: int, work_dir: Path) -> dict[str, Any]:
    """Median wall times of train and audit at one table size, and the peer's fit."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("COOPSCORE_")}
    table = work_dir / f"table-{rows}.csv"
    if not table.exists():
        _cli(["simulate-table", "--rows", str(rows), "--out", str(table), "--json"], base, work_dir, (0,))
    timings: dict[str, list[float]] = {"train": [], "audit": [], "peer": []}
    summary: dict[str, Any] = {}
    for run in range(runs):
        store = Path(tempfile.mkdtemp(prefix=f"store-{rows}-{run}-", dir=work_dir))
        env = {
            **base,
            "COOPSCORE_DATA_DIR": str(store / "data"),
            "COOPSCORE_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
            "COOPSCORE_ARTIFACT_ROOT": str(store / "artifacts"),
        }
        try:
            wall, summary = _cli(["train", "--table", str(table), *TABLE_FLAGS, "--json"], env, store, (0,))
            timings["train"].append(wall)
            wall, _ = _cli(
                ["audit", "fairness", "--data", "oot", "--model", "challenger", "--json"], env, store, (0, 3)
            )
            timings["audit"].append(wall)
            timings["peer"].append(_peer_seconds(table, summary))
        finally:
            shutil.rmtree(store, ignore_errors=True)
        print(f"  {rows:,} rows, run {run + 1}/{runs}: train {timings['train'][-1]:.1f} s", file=sys.stderr)
    return {
        "rows": rows,
        "rows_used": summary["data"]["rows"],
        "oot_rows": summary["metrics"]["oot_rows"],
        "stages": summary["seconds"],
        **{name: statistics.median(values) for name, values in timings.items()},
    }


def main() -> None:
    """Time train + audit per table size and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "cs-own-table")
    args = parser.parse_args()
    # benchmarks/training.py would shadow the `training` package: import from the project root.
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(here.parent), *(p for p in sys.path if Path(p or ".").resolve() != here)]
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results = [bench_size(int(size), args.runs, args.work_dir) for size in args.sizes.split(",")]
    print(f"\ncoopscore on a lender's own table: medians of {args.runs} runs, {os.cpu_count()} cores\n")
    header = ("rows", "used", "OOT", "train s", "audit s", "train+audit s", "peer fit s", "vs peer")
    print("".join(f"{h:>14}" for h in header))
    for r in results:
        total = r["train"] + r["audit"]
        print(
            f"{r['rows']:>14,}{r['rows_used']:>14,}{r['oot_rows']:>14,}{r['train']:>14.1f}"
            f"{r['audit']:>14.1f}{total:>14.1f}{r['peer']:>14.2f}{r['train'] / r['peer']:>13.0f}x"
        )
    print("\nstages of the last train run (seconds, from its --json):")
    for r in results:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items() if k != "total")
        print(f"  {r['rows']:,} rows: {stages}")


if __name__ == "__main__":
    main()
