"""MLflow on a temporary SQLite store: register, alias, load by alias, refuse tampering and pickles,
keep a worse challenger out, skip retraining on the same data, record forced promotions."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import pandas as pd
import pytest

from models import mlflow_io
from models.artifacts import REFERENCE_PD, REFERENCE_SCORE, ArtifactIntegrityError
from models.registry import CHALLENGER, CHAMPION, load_model, load_model_with_reference
from tests.utils.model_fixtures import SyntheticSource, fast_config
from training.job import ExitCode, retrain
from training.metrics import binary_metrics
from training.promotion import promote
from training.tracking import OOT_PDS_LABEL, OOT_PDS_THIN, read_oot_pds

# MLflow 3.17 on SQLAlchemy 2 warns about its own loader options; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

MODEL = "coopscore-pd-test"


def _store(root: Path) -> tuple[str, Path]:
    return f"sqlite:///{root / 'mlflow.db'}", root / "artifacts"


def _retrain(uri: str, artifacts: Path, source: SyntheticSource):
    return retrain(source, config=fast_config(), tracking_uri=uri, artifact_root=artifacts, model_name=MODEL)


def _model_dir(uri: str, version: str) -> Path:
    location = mlflow_io.version_artifact_location(uri, MODEL, version)
    return Path(url2pathname(urlparse(location).path))


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory):
    uri, artifacts = _store(tmp_path_factory.mktemp("mlflow"))
    source = SyntheticSource(n=12_000, seed=1)
    summary = _retrain(uri, artifacts, source)
    return uri, artifacts, source, summary


def test_first_model_is_registered_and_becomes_champion(registered) -> None:
    uri, _, _, summary = registered
    assert summary.exit_code == ExitCode.PROMOTED, summary.to_dict()
    assert summary.version == "1"
    record = mlflow_io.get_version(uri, MODEL, CHAMPION)
    assert record.version == "1"
    gates = {g["gate"]: g for g in summary.promotion["gates"]}
    assert gates["oot_auc"]["reason"] == "no champion yet"
    assert gates["calibration"]["passed"] and gates["directions"]["passed"]
    assert record.tags["promotion.status"] == "promoted"
    assert {f"sha256.{name}" for name in ("booster.txt", "calibration.json", "scale.json")} <= set(
        record.tags
    )
    assert "sha256.pyfunc_entry.py" in record.tags


def test_load_by_alias_and_by_version(registered) -> None:
    uri, _, source, _ = registered
    by_alias = load_model(CHAMPION, uri, model_name=MODEL)
    by_version = load_model("1", uri, model_name=MODEL)
    assert by_alias.identity is not None and by_alias.identity.version == "1"
    frame = source.load().features.head(200)
    np.testing.assert_array_equal(by_alias.score(frame), by_version.score(frame))
    model, reference = load_model_with_reference(CHAMPION, uri, model_name=MODEL)
    assert {REFERENCE_PD, REFERENCE_SCORE} <= set(reference.columns)
    assert set(model.feature_names) <= set(reference.columns)
    np.testing.assert_allclose(model.predict_pd(reference), reference[REFERENCE_PD], rtol=0, atol=1e-12)
    with pytest.raises(KeyError):
        load_model("no-such-alias", uri, model_name=MODEL)


def test_run_holds_fingerprint_metrics_plots_card_and_oot_rows(registered, tmp_path: Path) -> None:
    uri, _, source, summary = registered
    params = mlflow_io.run_params(uri, summary.run_id)
    fingerprint = source.load().fingerprint
    assert params["data.checksum"] == fingerprint.checksum
    assert params["data.as_of"] == fingerprint.as_of
    assert params["data.feature_set_version"] == fingerprint.feature_set_version
    metrics = mlflow_io.run_metrics(uri, summary.run_id)
    for name in ("model", "oracle", "scorecard", "bureau"):
        assert f"oot.{name}.auc" in metrics
    assert "oot_thin.model.auc" in metrics and "oot.model.ece" in metrics
    local = mlflow_io.download_run_artifact(uri, summary.run_id, "", tmp_path)
    plots = {p.name for p in (local / "plots").iterdir()}
    assert plots == {"roc.png", "calibration.png", "score_distribution.png", "ks.png", "shap_summary.png"}
    card = (local / "model_card.md").read_text(encoding="utf-8")
    assert "Intended use" in card and "Limitations" in card and "WOE scorecard" in card
    oot = pd.read_parquet(local / "evaluation" / "oot.parquet")
    assert len(oot) == summary.metrics["oot_rows"]


def test_run_stores_every_contenders_oot_pd_that_reproduces_the_comparison(registered) -> None:
    uri, _, _, summary = registered
    oot = read_oot_pds(uri, summary.run_id)
    assert len(oot) == summary.metrics["oot_rows"]
    assert int(oot[OOT_PDS_LABEL].sum()) == summary.metrics["oot_defaults"]
    rows = {row["contender"]: row for row in summary.comparison}
    assert set(oot.columns) == {OOT_PDS_LABEL, OOT_PDS_THIN, *rows}
    y, thin = oot[OOT_PDS_LABEL].to_numpy(), oot[OOT_PDS_THIN].to_numpy()
    assert 0 < thin.sum() < len(thin)
    for name, row in rows.items():
        stored = binary_metrics(y, oot[name].to_numpy())
        assert stored.auc == pytest.approx(row["auc"], abs=1e-12), name
        assert stored.approval_rate == pytest.approx(row["approval_rate"], abs=1e-12), name
        thin_auc = binary_metrics(y[thin], oot[name].to_numpy()[thin]).auc
        assert thin_auc == pytest.approx(row["thin_auc"], abs=1e-12), name


def test_pyfunc_from_code_loads_and_predicts(registered) -> None:
    import mlflow

    uri, _, source, _ = registered
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}@{CHAMPION}")
    frame = source.load().features.head(20)
    out = pyfunc.predict(frame)
    assert list(out.columns) == ["pd", "score", "grade", "decision"]
    np.testing.assert_allclose(out["pd"], load_model(CHAMPION, uri, model_name=MODEL).predict_pd(frame))


def test_a_tampered_artifact_is_refused(registered) -> None:
    uri, _, _, _ = registered
    booster = _model_dir(uri, "1") / "artifacts" / "booster.txt"
    original = booster.read_bytes()
    try:
        booster.write_bytes(original.replace(b"shrinkage=", b"shrinkage=1", 1))
        with pytest.raises(ArtifactIntegrityError, match=r"booster\.txt"):
            load_model(CHAMPION, uri, model_name=MODEL)
    finally:
        booster.write_bytes(original)
    load_model(CHAMPION, uri, model_name=MODEL)  # restored: loads again


def test_a_pickle_artifact_is_refused(registered) -> None:
    import pickle

    uri, _, _, _ = registered
    folder = _model_dir(uri, "1") / "artifacts"
    smuggled = folder / "python_model.pkl"
    smuggled.write_bytes(pickle.dumps({"x": 1}))
    try:
        with pytest.raises(ArtifactIntegrityError, match="pickle"):
            load_model("1", uri, model_name=MODEL)
    finally:
        smuggled.unlink()


def test_lifecycle_same_data_worse_challenger_and_forced_promotion(tmp_path: Path) -> None:
    uri, artifacts = _store(tmp_path)
    good = SyntheticSource(n=12_000, seed=1)
    first = _retrain(uri, artifacts, good)
    assert first.exit_code == ExitCode.PROMOTED

    again = _retrain(uri, artifacts, good)
    assert again.exit_code == ExitCode.NO_NEW_DATA and again.version == "1"
    assert [v.version for v in mlflow_io.list_versions(uri, MODEL)] == ["1"]

    worse = _retrain(uri, artifacts, SyntheticSource(n=12_000, seed=1, shuffle_training_labels=True))
    assert worse.exit_code == ExitCode.KEPT, worse.to_dict()
    assert worse.version == "2"
    assert mlflow_io.get_version(uri, MODEL, CHAMPION).version == "1"
    assert mlflow_io.get_version(uri, MODEL, CHALLENGER).version == "2"
    gates = {g["gate"]: g for g in worse.promotion["gates"]}
    assert not gates["oot_auc"]["passed"]
    assert gates["oot_auc"]["details"]["champion_auc"] > gates["oot_auc"]["details"]["challenger_auc"]
    tags = mlflow_io.get_version(uri, MODEL, "2").tags
    assert tags["promotion.status"] == "kept" and tags["gate.oot_auc.passed"] == "false"

    with pytest.raises(ValueError, match="forced_by"):
        promote(uri, model_name=MODEL, force=True)
    forced = promote(
        uri, model_name=MODEL, force=True, forced_by="li.wei", force_reason="drought recalibration"
    )
    assert forced.status == "forced" and forced.champion_after == "2"
    tags = mlflow_io.get_version(uri, MODEL, "2").tags
    assert tags["promotion.forced_by"] == "li.wei"
    assert tags["promotion.force_reason"] == "drought recalibration"
    assert mlflow_io.get_version(uri, MODEL, "1").tags["promotion.replaced_by"] == "2"
    with pytest.raises(LookupError):
        promote(uri, model_name=MODEL)  # no challenger left


def test_store_folder_is_created_for_a_relative_sqlite_uri(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    mlflow_io.prepare_store("sqlite:///mlruns/mlflow.db")
    assert (tmp_path / "mlruns").is_dir()
    shutil.rmtree(tmp_path / "mlruns")
