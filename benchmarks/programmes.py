"""Subsidy allocation benchmark (issue 16, item 2): the integer program against the two greedy rules.

1. **A 200k-member world.** A world of `--members` members over `--months` months is simulated and
   ingested once (cached under `--work-dir`), and `coopscore retrain` trains its model in a fresh
   process and store (also cached). The applications of the model's out-of-time quarter are scored
   by that model as of their own application time (the point-in-time features of the stored OOT
   split), decided by its policy, and written as a file of applications with their PD. A programme
   for all three counties (budgets a quarter of what subsidising every approved application would
   cost, loss ceiling a quarter of their expected loss) is then allocated by the real CLI,
   `coopscore programme allocate --applications FILE --json`, and its comparison table printed.
2. **Solver time on `--size` (100k) applications.** The world's eligible applications are resampled
   (with replacement; each draw a household of its own) to `--size`, budgets and ceiling scaled by
   the same factor. The integer program (HiGHS) and both greedy rules (the named peers) each run
   `--repeats` times; the table gives the median seconds, the ratio to each peer and the households
   each reaches. The solver is warm-started with the better greedy answer, as the CLI does.

Usage: `python benchmarks/programmes.py [--members 200000 --months 26 --seed 21 --size 100000
--repeats 5 --work-dir /tmp/cs-programmes --out programmes-results.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CLI = "from coopscore.cli import app\napp()\n"
COUNTIES = ("county-01", "county-02", "county-03")


def trained_store(world: Path, data: Path, work_dir: Path, tag: str) -> tuple[Path, dict[str, Any]]:
    """The world's model: `coopscore retrain --truth WORLD` once, in a fresh process and store."""
    from benchmarks.quality import run_retrain

    store = work_dir / f"store-{tag}"
    summary_file = store / "retrain.json"
    if summary_file.exists():
        return store, json.loads(summary_file.read_text())
    store.mkdir(parents=True, exist_ok=True)
    summary, wall = run_retrain(world, data, store)
    print(f"retrain {summary['status']} (version {summary['version']}) in {wall:.0f} s", file=sys.stderr)
    summary_file.write_text(json.dumps(summary, default=str))
    return store, summary


def oot_applications(world: Path, store: Path, summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """The OOT quarter's applications, scored and decided by the model on their point-in-time
    features, as the file `programme allocate --applications` reads."""
    import pandas as pd

    from models.registry import load_model
    from training.tracking import read_oot_frame

    uri = f"sqlite:///{store / 'mlflow.db'}"
    model = load_model(str(summary["version"]), uri)
    oot = read_oot_frame(uri, str(summary["run_id"]))
    features = oot[list(model.feature_names)]
    pds = model.predict_pd(features)
    decisions = [d.outcome for d in model.decisions(features, pds=pds)]
    members = pd.read_csv(
        world / "applications" / "applications.csv", usecols=["application_id", "member_id"]
    )
    frame = pd.DataFrame(
        {
            "application_id": oot["_application_id"].astype(str),
            "applied_at": pd.to_datetime(oot["_applied_at"], utc=True),
            "amount_cny": oot["application_amount_cny"],
            "term_months": oot["application_term_months"].astype(int),
            "pd": pds,
            "decision": decisions,
            "has_prior_loan": oot["has_prior_loan"],
            "green_verified_count_lifetime": oot["green_verified_count_lifetime"],
            "training_count_lifetime": oot["training_count_lifetime"],
        }
    ).merge(members, on="application_id", how="left")
    frame.to_csv(out, index=False)
    return {
        "applications": len(frame),
        "approved": int((frame["decision"] == "approve").sum()),
        "from": frame["applied_at"].min(),
        "to": frame["applied_at"].max(),
        "model_version": str(summary["version"]),
        "oot_auc": (summary.get("metrics") or {}).get("oot_auc"),
    }


def write_programme(applications: Path, window: dict[str, Any], data: Path, out: Path, share: float) -> None:
    """A programme for every county over the OOT quarter: budgets `share` of what subsidising every
    approved application would cost there, the loss ceiling `share` of their expected loss."""
    import pandas as pd

    from models.programmes.cost import total_interest_cny
    from monitoring.audit_inputs import stored_profiles

    settings = _settings(data)
    frame = pd.read_csv(applications)
    frame = frame[frame["decision"] == "approve"]
    county = (
        stored_profiles(settings)
        .drop_duplicates("member_id", keep="last")
        .set_index("member_id")["county_id"]
    )
    frame = frame.assign(county_id=frame["member_id"].map(county))
    rate, subsidy_share, lgd = 0.08, 0.5, 0.6
    frame["cost"] = subsidy_share * total_interest_cny(frame["amount_cny"], rate, frame["term_months"])
    budgets = frame.groupby("county_id")["cost"].sum() * share
    ceiling = float((frame["pd"] * lgd * frame["amount_cny"]).sum() * share)
    start = pd.Timestamp(window["from"]).date()
    end = (pd.Timestamp(window["to"]) + pd.Timedelta(days=1)).date()
    programme = {
        "id": "bench-quarter",
        "version": 1,
        "name": {"zh": "季度贴息（基准测试）", "en": "Quarterly interest subsidy (benchmark)"},
        "periods": [{"id": "oot", "start": str(start), "end": str(end)}],
        "budgets": [
            {"county_id": c, "period": "oot", "amount_cny": round(float(budgets.get(c, 0.0)), 2)}
            for c in COUNTIES
        ],
        "subsidy": {"share": subsidy_share, "reference_annual_rate": rate},
        "loss_ceiling": {"lgd": lgd, "max_expected_loss_cny": round(ceiling, 2)},
        "eligibility": {
            "any_of": [
                "first_formal_loan",
                "returning_youth",
                "left_behind_woman",
                "completed_training",
                "verified_green_practice",
            ]
        },
    }
    out.write_text(json.dumps(programme, ensure_ascii=False, indent=2), encoding="utf-8")


def _settings(data: Path) -> Any:
    from coopscore.settings import Settings

    return Settings(_env_file=None, data_dir=data)  # type: ignore[call-arg]


def run_cli_allocation(programme: Path, applications: Path, data: Path, out: Path) -> dict[str, Any]:
    """`coopscore programme allocate --applications FILE --json` in a fresh process."""
    began = time.perf_counter()
    process = subprocess.run(
        [
            sys.executable, "-c", CLI, "programme", "allocate", "--programme", str(programme),
            "--applications", str(applications), "--out", str(out), "--json",
        ],
        env={**os.environ, "COOPSCORE_DATA_DIR": str(data)},
        capture_output=True,
        check=False,
    )  # fmt: skip
    if process.returncode != 0:
        raise RuntimeError(
            f"programme allocate exited {process.returncode}:\n{process.stderr.decode()[-3000:]}"
        )
    payload: dict[str, Any] = json.loads(process.stdout)
    payload["wall_seconds"] = round(time.perf_counter() - began, 1)
    return payload


def solver_timing(
    programme: Path, applications: Path, data: Path, size: int, repeats: int, seed: int
) -> dict[str, Any]:
    """The eligible applications resampled to `size`; each rule timed `repeats` times (medians)."""
    import numpy as np

    from models.programmes.allocation import (
        AllocationProblem,
        first_come_first_served,
        lowest_pd_first,
        solve,
    )
    from models.programmes.programme import load_programme
    from monitoring.programme_allocation import allocate, file_candidates, profile_book

    settings = _settings(data)
    loaded = load_programme(programme)
    run = allocate(loaded, file_candidates(applications, settings), profile_book(settings, None))
    base = run.problem
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(base), size)
    factor = size / len(base)
    problem = AllocationProblem(
        value=base.value[pick],
        cost=base.cost[pick],
        loss=base.loss[pick],
        pd=base.pd[pick],
        arrival=rng.permutation(size).astype(np.int64),
        county=base.county[pick],
        period=base.period[pick],
        member=np.array([f"h{i}" for i in range(size)], dtype=object),
        budgets={k: v * factor for k, v in base.budgets.items()},
        loss_ceilings={k: v * factor for k, v in base.loss_ceilings.items()},
    )
    times: dict[str, list[float]] = {"solver": [], "fcfs": [], "lowest_pd": []}
    reached: dict[str, float] = {}
    status = bound = None
    for _ in range(repeats):
        fcfs, lowest = first_come_first_served(problem), lowest_pd_first(problem)
        answer = solve(problem, start=max(fcfs, lowest, key=lambda a: a.objective))
        for name, allocation in (("solver", answer), ("fcfs", fcfs), ("lowest_pd", lowest)):
            times[name].append(allocation.seconds)
            reached[name] = allocation.objective
        status, bound = answer.status, answer.bound
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "size": size,
        "eligible_in_world": len(base),
        "repeats": repeats,
        "median_seconds": medians,
        "all_seconds": times,
        "households": reached,
        "solver_status": status,
        "solver_bound": bound,
        "ratio_solver_to_fcfs": medians["solver"] / medians["fcfs"],
        "ratio_solver_to_lowest_pd": medians["solver"] / medians["lowest_pd"],
    }


def print_tables(world: dict[str, Any], cli: dict[str, Any], timing: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from monitoring.programme_report import comparison_rows

    console = Console(width=150)
    apps = cli["applications"]
    console.print(
        f"world: {world['members']:,} members, {world['months']} months, seed {world['seed']}; model v"
        f"{world['model_version']}; OOT quarter {str(world['from'])[:10]} to {str(world['to'])[:10]}: "
        f"{world['applications']:,} applications, {world['approved']:,} approved, "
        f"{apps['eligible']:,} eligible"
    )
    names = [r["rule"] for r in cli["rules"]]
    table = Table(title="allocation compared on the world's OOT quarter (programme allocate --applications)")
    table.add_column("figure · 指标")
    for name in names:
        table.add_column(name, justify="right")
    for row in comparison_rows(cli):
        table.add_row(row["figure"], *(row[n] for n in names))
    console.print(table)
    console.print(
        f"solver: {cli['solver']['status']}, bound {cli['solver']['bound']}; CLI wall {cli['wall_seconds']} s"
    )
    med = timing["median_seconds"]
    table = Table(
        title=f"solver time on {timing['size']:,} applications (median of {timing['repeats']}; "
        f"resampled from {timing['eligible_in_world']:,} eligible)"
    )
    for heading in ("rule", "median s", "solver time ÷ rule time", "households reached"):
        table.add_column(heading, justify="right" if heading != "rule" else "left")
    for key, label in (
        ("solver", "integer program (HiGHS)"),
        ("fcfs", "first come first served"),
        ("lowest_pd", "lowest PD first"),
    ):
        ratio = med["solver"] / med[key]
        table.add_row(label, f"{med[key]:.3f}", f"{ratio:,.1f}x", f"{timing['households'][key]:,.0f}")
    console.print(table)
    console.print(f"solver: {timing['solver_status']}, bound {timing['solver_bound']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--months", type=int, default=26)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--size", type=int, default=100_000, help="applications in the timing instance")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each rule")
    parser.add_argument(
        "--budget-share", type=float, default=0.25, help="budgets as a share of the full cost"
    )
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "cs-programmes")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    # Run as a script, `benchmarks/` is first on sys.path, where features.py and training.py would
    # shadow the packages: put the repository root there instead.
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(here.parent), *(p for p in sys.path if Path(p or ".").resolve() != here)]
    from benchmarks.worlds import prepare_world
    from simulator.world import SimulationConfig

    args.work_dir.mkdir(parents=True, exist_ok=True)
    config = SimulationConfig(members=args.members, months=args.months, seed=args.seed)
    world_dir, data, seconds = prepare_world(args.work_dir, config)
    tag = f"m{args.members}-mo{args.months}-s{args.seed}"
    store, summary = trained_store(world_dir, data, args.work_dir, tag)
    applications = args.work_dir / f"applications-{tag}.csv"
    world = {"members": args.members, "months": args.months, "seed": args.seed, "build_seconds": seconds}
    world.update(oot_applications(world_dir, store, summary, applications))
    programme = args.work_dir / f"programme-{tag}.json"
    write_programme(applications, world, data, programme, args.budget_share)
    cli = run_cli_allocation(programme, applications, data, args.work_dir / f"report-{tag}")
    timing = solver_timing(programme, applications, data, args.size, args.repeats, args.seed)
    print_tables(world, cli, timing)
    if args.out is not None:
        result = {"world": world, "allocation": cli, "timing": timing}
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
