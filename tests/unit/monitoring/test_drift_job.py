"""The drift job as library calls: which current window, which reference, the window's outcomes, and
the errors (with the exit code the command ends with) a person can fix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from coopscore.settings import Settings
from monitoring.drift_job import (
    EXIT_BAD_INPUT,
    EXIT_TOO_FEW_ROWS,
    DriftJobError,
    load_current,
    load_reference,
    performance_rows,
    run_drift_job,
)
from tests.utils.drift import feature_rows


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_one_current_source_and_a_decision_log_to_read(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(DriftJobError, match="give one of --window, --last, --current") as caught:
        load_current(settings, "30d", 10, None)
    assert caught.value.exit_code == EXIT_BAD_INPUT
    with pytest.raises(DriftJobError, match=r"no decision log at .*pass --current FILE"):
        load_current(settings, None, None, None)
    path = tmp_path / "rows.parquet"
    feature_rows(50, seed=1).to_parquet(path)
    rows, label, outcomes = load_current(settings, None, None, path)
    assert len(rows) == 50 and label == f"file {path}" and outcomes == {}


def test_reference_from_a_file_or_a_model_not_both(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = tmp_path / "reference.parquet"
    feature_rows(80, seed=2).to_parquet(path)
    with pytest.raises(DriftJobError, match="give --reference or --model, not both"):
        load_reference(settings, path, "champion")
    assert len(load_reference(settings, path, None).rows) == 80


def test_performance_rows_only_for_posted_outcomes() -> None:
    current = pd.DataFrame(
        {
            "application_id": ["a1", "a2", "a3"],
            "created_at": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True),
            "pd": [0.1, 0.2, 0.3],
        }
    )
    assert performance_rows(current, {}) is None
    assert performance_rows(current, {"other": 1}) is None
    rows = performance_rows(current, {"a2": 1, "a3": 0})
    assert rows is not None
    assert list(rows.columns) == ["applied_at", "pd", "defaulted"]
    assert rows["defaulted"].tolist() == [pd.NA, True, False]


def test_a_small_window_is_exit_5_before_any_reference_is_read(tmp_path: Path) -> None:
    current = tmp_path / "current.parquet"
    feature_rows(20, seed=3).to_parquet(current)
    with pytest.raises(DriftJobError) as caught:
        run_drift_job(
            _settings(tmp_path),
            window=None,
            last=None,
            current=current,
            reference=tmp_path / "never-read.parquet",
            model=None,
            min_rows=200,
            match_days=45,
            segment=None,
            outcomes=None,
            evidently=False,
            mlflow=False,
        )
    assert caught.value.exit_code == EXIT_TOO_FEW_ROWS
    assert caught.value.details == {"n_current": 20, "min_rows": 200}


def test_a_stable_window_runs_and_stores_the_check(tmp_path: Path) -> None:
    reference, current = tmp_path / "reference.parquet", tmp_path / "current.parquet"
    feature_rows(3_000, seed=1).to_parquet(reference)
    feature_rows(1_500, seed=2).to_parquet(current)
    settings = _settings(tmp_path)
    payload, code = run_drift_job(
        settings,
        window=None,
        last=None,
        current=current,
        reference=reference,
        model=None,
        min_rows=200,
        match_days=45,
        segment=None,
        outcomes=None,
        evidently=False,
        mlflow=False,
    )
    assert code == 0 and payload["status"] in ("stable", "watch")
    assert payload["window"] == f"file {current}" and payload["model"] is None
    assert Path(payload["outputs"]["report"]).is_file()
    with pytest.raises(DriftJobError, match="segment column 'nope' must be in both"):
        run_drift_job(
            settings,
            window=None,
            last=None,
            current=current,
            reference=reference,
            model=None,
            min_rows=200,
            match_days=45,
            segment="nope",
            outcomes=None,
            evidently=False,
            mlflow=False,
        )
