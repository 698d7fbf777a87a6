"""Pickle-free artifacts: SHA-256 recorded and checked, pickles refused by name or content."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from models.artifacts import (
    ArtifactIntegrityError,
    is_pickle,
    load_verified,
    refuse_pickles,
    sha256_file,
    write_artifacts,
)
from tests.utils.model_fixtures import SMALL_FEATURES, fast_config, synthetic_training_set
from training.fit import fit_credit_model
from training.splits import time_split


@pytest.fixture(scope="module")
def model():
    training_set = synthetic_training_set(n=1500, seed=5, features=SMALL_FEATURES)
    config = fast_config()
    split = time_split(training_set.applied_at, training_set.horizon, config.splits)
    fitted, _ = fit_credit_model(training_set, split, config)
    return fitted, training_set


def test_written_artifacts_verify_and_load(model, tmp_path: Path) -> None:
    fitted, training_set = model
    artifacts = write_artifacts(fitted, tmp_path / "artifacts", training_set.features.head(50))
    assert set(artifacts.files) == {
        "booster.txt",
        "calibration.json",
        "scale.json",
        "policy.json",
        "feature_spec.json",
        "reference_sample.parquet",
    }
    assert artifacts.sha256["booster.txt"] == sha256_file(tmp_path / "artifacts" / "booster.txt")
    loaded = load_verified(tmp_path, tmp_path / "artifacts", artifacts.sha256)
    assert loaded.feature_names == fitted.feature_names


def test_a_changed_artifact_is_refused(model, tmp_path: Path) -> None:
    fitted, _ = model
    artifacts = write_artifacts(fitted, tmp_path / "artifacts", None)
    calibration = tmp_path / "artifacts" / "calibration.json"
    calibration.write_text(calibration.read_text().replace('"slope": ', '"slope": 2'))
    with pytest.raises(ArtifactIntegrityError, match=r"calibration\.json"):
        load_verified(tmp_path, tmp_path / "artifacts", artifacts.sha256)


def test_a_missing_checksum_is_refused(model, tmp_path: Path) -> None:
    fitted, _ = model
    artifacts = write_artifacts(fitted, tmp_path / "artifacts", None)
    partial = {k: v for k, v in artifacts.sha256.items() if k != "booster.txt"}
    with pytest.raises(ArtifactIntegrityError, match="booster"):
        load_verified(tmp_path, tmp_path / "artifacts", partial)


def test_pickles_are_recognised_by_name_and_by_content(tmp_path: Path) -> None:
    named = tmp_path / "model.pkl"
    named.write_text("not really")
    disguised = tmp_path / "booster.bin"
    disguised.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    plain = tmp_path / "scale.json"
    plain.write_text("{}")
    assert is_pickle(named) and is_pickle(disguised) and not is_pickle(plain)
    assert is_pickle(tmp_path / "python_model.cloudpickle")
    with pytest.raises(ArtifactIntegrityError, match="pickle"):
        refuse_pickles(tmp_path)
