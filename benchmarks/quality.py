"""Quality benchmark: what the model buys a lender, on several simulated worlds (issue 15, item 1).

Per seed, a world of `--members` members over `--months` months is simulated and ingested once (cached
under `--work-dir` by size, months and seed). Then `coopscore retrain --truth WORLD --json` runs in a
fresh process against a fresh temporary MLflow store, exactly as the scheduled job would. Its JSON
summary gives each contender's OOT AUC, thin/thick-file AUC and approval rate at the target bad rate
(model, WOE scorecard, feature ceiling, oracle, bureau-only); the run's stored OOT PDs
(`evaluation/oot_pds.parquet`) give bootstrap 95% intervals of the AUC and the approval rate, computed
with the evaluation's own `contender_intervals`. One table per world, then mean and min-max over worlds;
the seeds are the repeats.

Usage: `python benchmarks/quality.py [--members 200000 --seeds 21,22,23 --months 26 --boot 500
--work-dir /tmp/cs-quality --out results.json]`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CLI = "from coopscore.cli import app\napp()\n"
ORDER = ("model", "scorecard", "feature_ceiling", "oracle", "bureau")
METRICS = ("auc", "thin_auc", "thick_auc", "approval_rate")


def _keep_package_importable() -> None:
    """Scripts here are named like packages (training.py, features.py): keep this folder off the path."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    for name in ("training", "features"):
        if name in sys.modules and not hasattr(sys.modules[name], "__path__"):
            del sys.modules[name]
    root = str(here.parent)
    if root not in sys.path:
        sys.path.insert(0, root)


def _store_env(data: Path, store: Path) -> dict[str, str]:
    return {
        **os.environ,
        "COOPSCORE_DATA_DIR": str(data),
        "COOPSCORE_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "COOPSCORE_ARTIFACT_ROOT": str(store / "artifacts"),
    }


def run_retrain(world: Path, data: Path, store: Path) -> tuple[dict[str, Any], float]:
    """`coopscore retrain --truth WORLD --json` in a fresh process: its JSON summary and wall time."""
    began = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-c", CLI, "retrain", "--truth", str(world), "--json"],
        env=_store_env(data, store),
        capture_output=True,
        cwd=str(store),
        check=False,
    )
    wall = time.perf_counter() - began
    if process.returncode not in (0, 10):
        raise RuntimeError(f"retrain exited {process.returncode}:\n{process.stderr.decode()[-3000:]}")
    try:
        summary: dict[str, Any] = json.loads(process.stdout)
    except json.JSONDecodeError as error:
        raise RuntimeError(f"retrain printed more than one JSON object: {process.stdout[:500]!r}") from error
    return summary, wall


def measure_world(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """One world: prepare, retrain with --truth, read the stored OOT PDs, bootstrap the intervals."""
    import numpy as np

    from benchmarks.worlds import prepare_world
    from simulator.world import SimulationConfig
    from training.config import TrainingConfig
    from training.metrics import approval_rate_at_bad_rate, contender_intervals
    from training.tracking import OOT_PDS_LABEL, OOT_PDS_THIN, read_oot_pds

    world, data, seconds = prepare_world(
        args.work_dir,
        SimulationConfig(members=args.members, months=args.months, seed=seed),
        label=f"seed {seed}: ",
    )
    store = Path(tempfile.mkdtemp(prefix=f"store-s{seed}-", dir=args.work_dir))
    try:
        summary, wall = run_retrain(world, data, store)
        seconds["retrain"] = round(wall, 1)
        print(f"seed {seed}: retrain {summary['status']} in {wall:.0f} s", file=sys.stderr)
        oot = read_oot_pds(f"sqlite:///{store / 'mlflow.db'}", str(summary["run_id"]))
    finally:
        shutil.rmtree(store, ignore_errors=True)
    # retrain runs with the default config; the point check below proves the target is the same
    target = TrainingConfig().target_bad_rate
    label = oot[OOT_PDS_LABEL].to_numpy()
    names = [c for c in oot.columns if c not in (OOT_PDS_LABEL, OOT_PDS_THIN)]
    pds = {name: oot[name].to_numpy() for name in names}
    intervals = contender_intervals(label, pds, target_bad_rate=target, resamples=args.boot, seed=seed)
    rows: dict[str, dict[str, Any]] = {}
    for row in summary["comparison"]:
        name = row["contender"]
        point = approval_rate_at_bad_rate(label, np.clip(pds[name], 1e-12, 1 - 1e-12), target)
        if not math.isclose(point, row["approval_rate"], abs_tol=1e-12):
            # the stored PDs must be the ones the retrain table was computed from
            raise RuntimeError(
                f"{name}: stored OOT PDs give approval {point}, retrain said {row['approval_rate']}"
            )
        rows[name] = {
            "label": row["label"],
            **{key: _number(row.get(key)) for key in METRICS},
            "auc_95": intervals[name]["auc"],
            "approval_rate_95": intervals[name]["approval_rate"],
        }
    metrics = summary["metrics"]
    return {
        "seed": seed,
        "members": args.members,
        "months": args.months,
        "applications": summary["data"].get("labels", {}).get("applications"),
        "oot_rows": metrics.get("oot_rows"),
        "oot_defaults": metrics.get("oot_defaults"),
        "target_bad_rate": target,
        "bootstrap": args.boot,
        "retrain_status": summary["status"],
        # why a first model on a fresh store can be "kept": the gates it failed (e.g. fairness)
        "failed_gates": [
            g["gate"] for g in (summary.get("promotion") or {}).get("gates", []) if not g["passed"]
        ],
        "seconds": seconds,
        "contenders": rows,
    }


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def summarise(worlds: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per contender and metric: mean, min and max over the worlds (NaNs skipped)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    names = [n for n in ORDER if any(n in w["contenders"] for w in worlds)]
    names += sorted({n for w in worlds for n in w["contenders"]} - set(names))
    for name in names:
        out[name] = {}
        for key in METRICS:
            values = [
                w["contenders"][name][key]
                for w in worlds
                if name in w["contenders"] and not math.isnan(w["contenders"][name][key])
            ]
            nan = float("nan")
            out[name][key] = {
                "mean": sum(values) / len(values) if values else nan,
                "min": min(values) if values else nan,
                "max": max(values) if values else nan,
                "worlds": float(len(values)),
            }
    return out


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def print_world(world: dict[str, Any]) -> None:
    """One world's table: contender x AUC [95%], thin AUC, thick AUC, approval at target [95%]."""
    from rich.console import Console
    from rich.table import Table

    title = (
        f"seed {world['seed']}: {world['members']:,} members, {world['months']} months; OOT "
        f"{world['oot_rows']:,} applications, {world['oot_defaults']:,} defaults; "
        f"{world['bootstrap']} bootstrap resamples"
    )
    timings = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in world["seconds"].items())
    failed = ", ".join(world["failed_gates"]) or "none"
    caption = f"retrain {world['retrain_status']} (failed gates: {failed}); {timings}"
    table = Table(title=title, caption=caption)
    table.add_column("contender")
    table.add_column("AUC [95%]", justify="right")
    table.add_column("thin AUC", justify="right")
    table.add_column("thick AUC", justify="right")
    table.add_column(f"approval at {world['target_bad_rate']:.0%} bad [95%]", justify="right")
    ordered = [n for n in ORDER if n in world["contenders"]] + sorted(set(world["contenders"]) - set(ORDER))
    for name in ordered:
        row = world["contenders"][name]
        auc_low, auc_high = row["auc_95"]
        app_low, app_high = row["approval_rate_95"]
        table.add_row(
            row["label"],
            f"{_fmt(row['auc'])} [{_fmt(auc_low)}, {_fmt(auc_high)}]",
            _fmt(row["thin_auc"]),
            _fmt(row["thick_auc"]),
            f"{_fmt(row['approval_rate'])} [{_fmt(app_low)}, {_fmt(app_high)}]",
        )
    Console(width=140).print(table)


def print_summary(worlds: list[dict[str, Any]], summary: dict[str, dict[str, dict[str, float]]]) -> None:
    """Mean and min-max over the worlds."""
    from rich.console import Console
    from rich.table import Table

    seeds = ", ".join(str(w["seed"]) for w in worlds)
    table = Table(title=f"over {len(worlds)} world(s) (seeds {seeds}): mean (min-max)")
    table.add_column("contender")
    for heading in ("AUC", "thin AUC", "thick AUC", "approval at target"):
        table.add_column(heading, justify="right")
    labels = {n: r["label"] for w in worlds for n, r in w["contenders"].items()}
    for name, metrics in summary.items():
        cells = [
            f"{_fmt(m['mean'])} ({_fmt(m['min'])}-{_fmt(m['max'])})"
            for m in (metrics[key] for key in METRICS)
        ]
        table.add_row(labels.get(name, name), *cells)
    Console(width=140).print(table)


def main() -> None:
    """Measure every seed's world, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--seeds", default="21,22,23", help="comma-separated world seeds, e.g. 21,22,23")
    parser.add_argument("--months", type=int, default=26)
    parser.add_argument("--boot", type=int, default=500, help="bootstrap resamples of the OOT applications")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "cs-quality")
    parser.add_argument("--out", type=Path, default=None, help="write all results as JSON here")
    args = parser.parse_args()
    _keep_package_importable()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.work_dir.mkdir(parents=True, exist_ok=True)

    worlds: list[dict[str, Any]] = []
    for seed in seeds:
        worlds.append(measure_world(args, seed))
        print_world(worlds[-1])
        if args.out is not None:  # written after every world: a long run keeps what it finished
            _write(args.out, worlds)
    print_summary(worlds, summarise(worlds))
    if args.out is not None:
        _write(args.out, worlds)


def _write(path: Path, worlds: list[dict[str, Any]]) -> None:
    payload = _strict({"worlds": worlds, "summary": summarise(worlds)})
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")


def _strict(value: Any) -> Any:
    """NaN (e.g. no thin-file AUC) as null: the results file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


if __name__ == "__main__":
    main()
