"""Shared by the recourse benchmarks: a model trained on a simulated world as of a date, and the
applicants of that world who are not approved (declined or sent to review), scored as of a date.

Import after keeping the benchmarks folder off the import path (see `benchmarks/recourse.py`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.quality import CLI, _store_env, run_retrain

if TYPE_CHECKING:
    import pandas as pd

    from models.credit_model import CreditModel
    from simulator.world import SimulationConfig


def baseline_config(members: int, decide_month: int, horizon: int, seed: int) -> SimulationConfig:
    """The world both recourse benchmarks use: states recorded from the decision month on."""
    from simulator.world import SimulationConfig

    return SimulationConfig(
        members=members, months=decide_month + horizon, seed=seed, record_states_from=decide_month
    )


def decision_date(world: Path, decide_month: int) -> pd.Timestamp:
    """T0: the first instant of month `decide_month` of the world."""
    import pandas as pd

    start = json.loads((world / "manifest.json").read_text())["world"]["start"]
    return pd.Timestamp(start) + pd.DateOffset(months=decide_month)


def baseline(
    work_dir: Path, members: int, decide_month: int, horizon: int, seed: int
) -> tuple[Path, Path, pd.Timestamp, CreditModel]:
    """The baseline world (simulated and ingested once), its decision date T0, and the model trained
    on it as of T0 (once): what both recourse benchmarks start from."""
    from benchmarks.worlds import prepare_world

    config = baseline_config(members, decide_month, horizon, seed)
    world, data, _ = prepare_world(work_dir, config, label="baseline: ")
    t0 = decision_date(world, decide_month)
    store = work_dir / f"store-{members}-{config.months}-{seed}-t{decide_month}"
    return world, data, t0, train_model(world, data, store, as_of=t0.isoformat())


def spine_at(
    member_ids: list[str],
    as_of: list[Any],
    amounts: list[float],
    terms: list[float],
    *,
    request_ids: list[str] | None = None,
) -> pd.DataFrame:
    """A feature spine: each member as of their instant, applying for their amount and term."""
    import pandas as pd

    return pd.DataFrame(
        {
            "request_id": request_ids or list(member_ids),
            "member_id": list(member_ids),
            "as_of": pd.Series(pd.to_datetime(as_of, utc=True), dtype="datetime64[us, UTC]"),
            "amount_cny": np.asarray(amounts, dtype=float),
            "term_months": np.asarray(terms, dtype=float),
        }
    )


def train_model(world: Path, data: Path, store: Path, *, as_of: str | None = None) -> CreditModel:
    """`coopscore retrain --truth WORLD [--as-of T]` into a fresh MLflow store, the version forced
    through the gates when they keep it (a benchmark needs a model, not a sign-off), then loaded.
    The store is kept: a second run loads the model trained the first time."""
    from models.registry import load_version

    uri = f"sqlite:///{store / 'mlflow.db'}"
    done_file = store / "trained.json"
    if done_file.exists():
        return load_version(json.loads(done_file.read_text())["version"], uri).model
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    summary, seconds = run_retrain(world, data, store, as_of=as_of)
    version = str(summary["version"])
    print(f"trained version {version} in {seconds:.0f} s ({summary['status']})", file=sys.stderr)
    if summary["exit_code"] != 0:
        reason = f"benchmark model: {summary.get('message', '')}"[:500]
        command = ["promote", "--version", version, "--force", "--by", "benchmark", "--reason", reason]
        done = subprocess.run(
            [sys.executable, "-c", CLI, *command, "--json"],
            env=_store_env(data, store),
            capture_output=True,
            cwd=str(store),
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"promote exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    done_file.write_text(json.dumps({"version": version, "as_of": as_of}) + "\n")
    return load_version(version, uri).model


def not_approved(
    data: Path, model: CreditModel, as_of: datetime, *, months_back: int = 6
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Members who applied in the `months_back` months before `as_of` (their latest application),
    scored as if they applied again at `as_of` for the same amount and term; those the model does not
    approve. Returns the frame (spine columns, features, `pd`, `decision`) and the feature rows."""
    import pandas as pd

    from features.offline import read_applications

    applications = read_applications(data / "tables")
    applied = pd.to_datetime(applications["applied_at"], utc=True)
    start = pd.Timestamp(as_of) - pd.DateOffset(months=months_back)
    recent = applications[(applied >= start) & (applied < pd.Timestamp(as_of))]
    latest = recent.sort_values("applied_at").groupby("member_id", sort=True).tail(1)
    spine = spine_at(
        latest["member_id"].tolist(),
        [as_of] * len(latest),
        latest["amount_cny"].tolist(),
        latest["term_months"].tolist(),
    )
    frame = scored(model, data, spine)
    kept = frame[frame["decision"] != "approve"].reset_index(drop=True)
    names = model_feature_rows_names()
    rows = [{n: float(v) for n, v in zip(names, values, strict=True)} for values in kept[names].to_numpy()]
    return kept, rows


def scored(model: CreditModel, data: Path, spine: pd.DataFrame) -> pd.DataFrame:
    """Every feature of each spine row from this data folder's event log, then the row's amount,
    term, and the model's PD, score and decision."""
    import pandas as pd

    from features.offline import DuckDBEngine, EngineConfig, build_features

    frame = build_features(
        spine,
        events_dir=data / "events",
        tables_dir=data / "tables",
        engine=DuckDBEngine(EngineConfig(threads=2)),
    )
    pds = model.predict_pd(frame)
    extra = pd.DataFrame(
        {
            "amount_cny": spine["amount_cny"].to_numpy(),
            "term_months": spine["term_months"].to_numpy(),
            "pd": pds,
            "score": model.scale.score_from_pd(pds),
            "decision": [d.outcome for d in model.decisions(frame, pds)],
        }
    )
    return pd.concat([frame.reset_index(drop=True), extra], axis=1)


def model_feature_rows_names() -> list[str]:
    """Every catalogue feature (what a recourse row holds)."""
    from features.catalog import default_registry

    return default_registry().names


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))
