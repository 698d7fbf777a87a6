"""`coopscore monitor drift` on the real path: the reference sample stored with a registered MLflow
model version (read back through the registry) against feature rows read from a real decision log.

The drift tests beside this one build both frames themselves; these use what serving and training
actually write: the artifact's `_pd` / `_score` / `_applied_at` columns and the decision log's
`pd` / `score` / `features` JSON, so a mismatch between the two shows up here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coopscore.cli import app
from coopscore.settings import Settings, get_settings
from decisions.base import DecisionRecord
from decisions.factory import decision_log_writer
from models.artifacts import REFERENCE_APPLIED_AT, REFERENCE_PD, REFERENCE_SCORE
from models.credit_model import CreditModel
from models.registry import CHAMPION, MODEL_NAME, load_model
from monitoring.sources import reference_from_registry
from tests.utils.model_fixtures import SMALL_PROMOTABLE_SOURCE, fast_config, synthetic_frame
from training.job import ExitCode, retrain

# MLflow 3.17 on SQLAlchemy 2 warns about its own loader options; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

MODEL = MODEL_NAME


@dataclass(frozen=True)
class Store:
    """A registered champion in a temporary MLflow store, and the environment that points at it."""

    root: Path
    env: dict[str, str]
    model: CreditModel


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("drift-registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    summary = retrain(
        SMALL_PROMOTABLE_SOURCE,
        config=fast_config(),
        tracking_uri=uri,
        artifact_root=root / "artifacts",
        model_name=MODEL,
    )
    assert summary.exit_code == ExitCode.PROMOTED, summary.to_dict()
    env = {
        "COOPSCORE_DATA_DIR": str(root / "data"),
        "COOPSCORE_TRACKING_URI": uri,
        "COOPSCORE_ARTIFACT_ROOT": str(root / "artifacts"),
    }
    return Store(root, env, load_model(CHAMPION, uri, model_name=MODEL))


@pytest.fixture
def env(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The store's model, with a fresh data dir (decision log, monitoring outputs) per test."""
    data_dir = tmp_path / "data"
    for key, value in {**store.env, "COOPSCORE_DATA_DIR": str(data_dir)}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


def log_decisions(data_dir: Path, model: CreditModel, features: pd.DataFrame, *, start: int = 0) -> None:
    """Score `features` with the model and write each row to the decision log, as serving does."""
    pds = model.predict_pd(features)
    scores = model.scale.score_from_pd(pds)
    now = datetime.now(UTC)
    records = []
    for i, (row, pd_, score) in enumerate(
        zip(features.to_dict(orient="records"), pds, scores, strict=True), start=start
    ):
        vector = {k: (None if v is None or np.isnan(v) else float(v)) for k, v in row.items()}
        records.append(
            DecisionRecord(
                request_id=f"r{i:05d}",
                application_id=f"A{i:05d}",
                member_id=f"M{i:05d}",
                created_at=now + timedelta(milliseconds=i),
                model_name=MODEL,
                model_version="1",
                pd=float(pd_),
                score=float(score),
                grade="C",
                decision="review",
                application={"amount_cny": 8000, "term_months": 12},
                features=vector,
                reasons=[],
                response={},
                latency_ms=1.0,
            )
        )
    log = decision_log_writer(Settings(data_dir=data_dir))
    try:
        for future in log.submit_many(records):
            future.result(timeout=30)
    finally:
        log.close()


def applicants(model: CreditModel, n: int, seed: int) -> pd.DataFrame:
    """Feature rows from the distribution the synthetic model was trained on."""
    frame, _, _ = synthetic_frame(n=n, seed=seed)
    return frame[model.feature_names]


def drift(*args: str) -> tuple[int, dict, str]:
    result = CliRunner().invoke(app, ["monitor", "drift", *args, "--json", "--no-mlflow"])
    payload = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.exit_code, payload, result.stderr


def test_the_registered_reference_speaks_the_decision_logs_column_names(store: Store) -> None:
    reference = reference_from_registry(
        CHAMPION, model_name=MODEL, tracking_uri=store.env["COOPSCORE_TRACKING_URI"]
    )
    assert reference.features == tuple(store.model.feature_names)
    assert {"pd", "score", "applied_at"} <= set(reference.rows.columns)
    assert not {REFERENCE_PD, REFERENCE_SCORE, REFERENCE_APPLIED_AT} & set(reference.rows.columns)
    np.testing.assert_allclose(store.model.predict_pd(reference.rows), reference.rows["pd"], atol=1e-12)
    assert reference.model_version == "1" and reference.period() is not None


def test_a_stable_window_of_logged_decisions_exits_0_and_compares_score_and_pd(
    store: Store, env: Path
) -> None:
    log_decisions(env, store.model, applicants(store.model, 300, seed=11))
    code, payload, stderr = drift("--last", "300")
    assert code == 0, payload.get("reasons") or stderr
    assert payload["status"] in {"stable", "watch"}
    assert set(payload["scores"]) == {"pd", "score"}  # compared, on the same scale
    assert all(item["psi"] < 0.25 for item in payload["scores"].values())
    assert set(payload["features"]) == set(store.model.feature_names)
    assert not [name for name in payload["features"] if name.startswith("_")]
    assert payload["model_version"] == "1" and payload["evidently"]["skipped"] == []
    assert Path(payload["outputs"]["evidently"]).is_file()
    assert "Downloading artifacts" not in stderr  # MLflow's progress bars stay off the CLI's output


def test_a_unit_break_in_the_logged_features_exits_3_and_names_them(store: Store, env: Path) -> None:
    rows = applicants(store.model, 300, seed=12)
    fen = np.random.default_rng(0).random(len(rows)) < 0.15
    rows.loc[fen, "savings_balance"] *= 100  # one cooperative's exports switched to fen
    log_decisions(env, store.model, rows)
    code, payload, stderr = drift("--last", "300")
    assert code == 3, stderr
    assert payload["top_features"][0]["name"] == "savings_balance"
    assert payload["features"]["savings_balance"]["quality"]["issues"] == ["out_of_range"]


def test_outcomes_posted_for_the_windows_decisions_give_cohort_performance(store: Store, env: Path) -> None:
    rows = applicants(store.model, 300, seed=13)
    log_decisions(env, store.model, rows)
    log = decision_log_writer(Settings(data_dir=env))
    try:
        observed = datetime.now(UTC)
        rng = np.random.default_rng(1)
        log.add_outcomes([(f"A{i:05d}", bool(rng.random() < 0.1), observed) for i in range(200)])
    finally:
        log.close()
    code, payload, _ = drift("--last", "300")
    assert code == 0
    (cohort,) = payload["performance"]
    assert cohort["applications"] == 300 and cohort["outcomes"] == 200


@pytest.mark.parametrize("logged", [0, 120])
def test_an_empty_or_small_window_exits_5_and_writes_nothing(store: Store, env: Path, logged: int) -> None:
    if logged:
        log_decisions(env, store.model, applicants(store.model, logged, seed=14))
    else:
        decision_log_writer(Settings(data_dir=env)).close()
    code, payload, stderr = drift("--last", "300")
    assert code == 5
    assert payload == {
        "status": "insufficient_data",
        "exit_code": 5,
        "message": payload["message"],
        "n_current": logged,
        "min_rows": 200,
    }
    assert f"{'no' if not logged else f'only {logged}'} decisions in the window" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (env / "monitoring").exists() or not any((env / "monitoring").iterdir())


def test_no_such_model_is_bad_input(store: Store, env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log_decisions(env, store.model, applicants(store.model, 250, seed=15))
    monkeypatch.setenv("COOPSCORE_MODEL_NAME", "no-such-model")
    get_settings.cache_clear()
    code, payload, stderr = drift("--last", "250")
    assert code == 2
    assert payload["status"] == "error"
    assert "no registered model named 'no-such-model'" in payload["message"]
    assert f"(registered: '{MODEL}')" in payload["message"]
    # --model-name picks the registered model whatever the settings name.
    code, payload, stderr = drift("--last", "250", "--model-name", MODEL)
    assert code in (0, 3), stderr
    assert payload["model_name"] == MODEL and payload["model_version"] == "1"
    assert "Traceback" not in stderr


def test_a_check_that_fails_midway_leaves_no_folder(store: Store, env: Path, tmp_path: Path) -> None:
    log_decisions(env, store.model, applicants(store.model, 250, seed=16))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the MLflow artifact root should be")
    result = CliRunner().invoke(
        app,
        ["monitor", "drift", "--last", "250", "--no-evidently", "--json"],
        env={"COOPSCORE_ARTIFACT_ROOT": str(blocker / "artifacts")},
    )
    assert result.exit_code == 1
    assert "drift check failed" in result.stderr and "--debug" in result.stderr
    assert "Traceback" not in result.stderr
    assert list((env / "monitoring").iterdir()) == []  # neither a check nor its .partial folder
