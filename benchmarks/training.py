"""Training benchmark: wall time and peak memory of `coopscore retrain` on ~200k applications, and the
per-applicant scoring latency of the resulting model.

Setup (not timed): simulate a world big enough (`--members`, with a raised `--application-rate`) and
ingest it, both cached under `--work-dir`. Then `coopscore retrain --json` runs in a fresh process
against a fresh temporary MLflow store; its wall time and peak RSS are measured from outside, its
stage times are read from its JSON summary. Finally the registered champion is loaded and one
applicant at a time is scored in process (what serving does per request), against a named peer:
LightGBM's predict on a one-row pandas DataFrame.

Usage: `python benchmarks/training.py [--members 115000 --application-rate 0.3 --work-dir /tmp/cs-bench]`.
Targets: retrain <= 180 s on 2 cores; predict + contributions for one applicant well under 1 ms.
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

TARGET_SECONDS = 180.0
TARGET_ROW_MS = 1.0
CLI = "from coopscore.cli import app\napp()\n"


def _keep_package_importable() -> None:
    """This script is named like the `training` package: keep its folder off the import path."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    if "training" in sys.modules and not hasattr(sys.modules["training"], "__path__"):
        del sys.modules["training"]
    root = str(here.parent)
    if root not in sys.path:
        sys.path.insert(0, root)


def run_retrain(data: Path, store: Path) -> dict[str, Any]:
    """`coopscore retrain --json` in a fresh process: wall time, peak RSS, and its JSON summary."""
    env = {
        **os.environ,
        "COOPSCORE_DATA_DIR": str(data),
        "COOPSCORE_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "COOPSCORE_ARTIFACT_ROOT": str(store / "artifacts"),
    }
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "retrain", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(store),
    )
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - began
    # the child's own peak RSS (this process never ran anything as large)
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if process.returncode not in (0, 10):
        raise RuntimeError(f"retrain exited {process.returncode}:\n{stderr.decode()[-3000:]}")
    try:
        summary: dict[str, Any] = json.loads(stdout)
    except json.JSONDecodeError as error:
        raise RuntimeError(f"retrain printed more than one JSON object: {stdout[:500]!r}") from error
    return {"wall": wall, "peak_mb": peak_mb, "exit_code": process.returncode, "summary": summary}


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]


def score_latency(store: Path, data: Path, rows: int = 2000) -> dict[str, tuple[float, float]]:
    """p50 / p99 milliseconds per applicant, in process, for the model and the pandas peer."""
    import numpy as np
    import pandas as pd

    from models.registry import CHALLENGER, CHAMPION, load_model
    from training.datasets import event_log_training_set

    uri = f"sqlite:///{store / 'mlflow.db'}"
    try:
        model = load_model(CHAMPION, uri)
    except KeyError:
        model = load_model(CHALLENGER, uri)
    sample = event_log_training_set(
        events_dir=data / "events", tables_dir=data / "tables", ledger_path=data / "ledger.sqlite"
    ).features.tail(rows)
    applicants: list[dict[str, float | None]] = [
        {str(k): (None if pd.isna(v) else float(v)) for k, v in r.items()} for r in sample.to_dict("records")
    ]
    timings: dict[str, list[float]] = {"predict_pd": [], "assess": [], "peer": []}
    for applicant in applicants[:50]:  # warm-up
        model.assess(applicant)
    for applicant in applicants:
        start = time.perf_counter()
        model.predict_pd(applicant)
        timings["predict_pd"].append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        model.assess(applicant)
        timings["assess"].append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        frame = pd.DataFrame([applicant], columns=model.feature_names).astype(np.float64)
        model.booster.predict(frame, pred_contrib=True)
        timings["peer"].append((time.perf_counter() - start) * 1000)
    return {name: _percentiles(values) for name, values in timings.items()}


def main() -> None:
    """Prepare the world, time the retrain, time single-applicant scoring, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=115_000)
    parser.add_argument("--application-rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "coopscore-bench-training"
    )
    args = parser.parse_args()
    _keep_package_importable()

    args.work_dir.mkdir(parents=True, exist_ok=True)
    from benchmarks.worlds import prepare_world
    from simulator.world import SimulationConfig

    config = SimulationConfig(members=args.members, application_rate=args.application_rate, seed=args.seed)
    _, data, _ = prepare_world(args.work_dir, config)
    store = Path(tempfile.mkdtemp(prefix="store-", dir=args.work_dir))
    try:
        run = run_retrain(data, store)
        latency = score_latency(store, data)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    summary = run["summary"]
    labels = summary["data"].get("labels", {})
    print(
        f"\ncoopscore retrain on {labels.get('applications', 0):,} applications "
        f"({labels.get('labelled', 0):,} labelled), {os.cpu_count()} cores\n"
    )
    print(f"{'stage':<22}{'seconds':>10}{'share':>8}")
    stages = {k: v for k, v in summary["seconds"].items() if k != "total"}
    for stage, seconds in stages.items():
        print(f"{stage:<22}{seconds:>10.1f}{seconds / run['wall']:>8.0%}")
    print(f"{'wall (process)':<22}{run['wall']:>10.1f}")
    print(f"{'peak RSS (MiB)':<22}{run['peak_mb']:>10.0f}")
    ratio = run["wall"] / TARGET_SECONDS
    print(f"{'vs target 180 s':<22}{ratio:>10.2f}x   exit {run['exit_code']} ({summary['status']})")
    oot = summary["metrics"]
    nan = float("nan")
    print(
        f"OOT AUC {oot.get('oot_auc') or nan:.4f}, thin-file {oot.get('oot_thin_auc') or nan:.4f}, "
        f"ECE {oot.get('oot_ece') or nan:.4f} on {oot.get('oot_rows', 0):,} OOT applications\n"
    )
    print(f"{'one applicant, in process':<34}{'p50 ms':>8}{'p99 ms':>8}{'p50 vs peer':>13}")
    peer_p50 = latency["peer"][0]
    for name, label in (
        ("predict_pd", "predict_pd (mapping)"),
        ("assess", "assess: PD+SHAP+reasons+decision"),
        ("peer", "peer: 1-row DataFrame pred_contrib"),
    ):
        p50, p99 = latency[name]
        print(f"{label:<34}{p50:>8.3f}{p99:>8.3f}{peer_p50 / p50:>12.1f}x")
    print(f"target: assess p50 well under {TARGET_ROW_MS} ms")


if __name__ == "__main__":
    main()
