"""Logging a training run to MLflow and registering the model as the new challenger.

One run per training: parameters, the data fingerprint, metrics, plots, the model card, the OOT
rows (for the promotion gates) and the model as a models-from-code pyfunc whose artifacts are text,
JSON and Parquet only. The new version gets the `challenger` alias and a `sha256.<file>` tag per
artifact, which `models.registry.load_model` checks.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from coopscore.files import FILE_MODE
from models import mlflow_io
from models.artifacts import sha256_file, write_artifacts
from models.registry import CHALLENGER, CODE_FILE, checksum_tags
from training.model_card import render_model_card
from training.pipeline import TrainingResult, summary_metrics
from training.report_html import REPORT_FILE, TABLES_FILE, render_report
from training.reports import AnalystReport

EXPERIMENT: Final = "coopscore"
OOT_ARTIFACT: Final = "evaluation/oot.parquet"
# Every contender's OOT PD next to the label and the thin-file flag: what a benchmark resamples.
OOT_PDS_ARTIFACT: Final = "evaluation/oot_pds.parquet"
OOT_PDS_LABEL: Final = "label"
OOT_PDS_THIN: Final = "thin"
TRAINING_KEY_TAG: Final = "coopscore.training_key"
REPORT_ARTIFACT: Final = f"report/{REPORT_FILE}"


@dataclass(frozen=True)
class RegisteredRun:
    """Where a training run landed."""

    run_id: str
    model_name: str
    version: str
    model_uri: str
    training_key: str
    report_path: Path | None = None  # the model report's local copy, when a report folder was given

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "model_name": self.model_name,
            "version": self.version,
            "model_uri": self.model_uri,
            "training_key": self.training_key,
        }


def _code_file() -> Path:
    """Path of the models-from-code entry file (found without importing it)."""
    spec = importlib.util.find_spec("models.pyfunc_entry")
    if spec is None or spec.origin is None:
        raise RuntimeError("models.pyfunc_entry not found")
    return Path(spec.origin)


def _private_copy(source: Path, folder: Path) -> Path:
    """`source` copied into `folder` as a 0600 file: MLflow copies the code file with its mode, and the
    installed module is world-readable, while the store is private (see `coopscore.files`)."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / source.name
    shutil.copyfile(source, copy)
    copy.chmod(FILE_MODE)
    return copy


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "lightgbm", "numpy", "pandas", "pyarrow")]


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(_json_ready(payload), ensure_ascii=False, indent=1, default=str), encoding="utf-8"
    )


def _signature_frames(result: TrainingResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Input and output examples for the pyfunc signature (no model is run by MLflow)."""
    names = result.model.feature_names
    sample = result.oot_frame[names].head(5).copy()
    for feature in result.model.spec.features:
        if feature.kind == "numeric":
            sample[feature.name] = sample[feature.name].astype(np.float64)
        else:
            sample[feature.name] = sample[feature.name].astype(str)
    pds = result.model.predict_pd(sample)
    scores = result.model.scale.score_from_pd(pds)
    output = pd.DataFrame(
        {
            "pd": pds,
            "score": scores,
            "grade": result.model.scale.grades_of(scores),
            "decision": [d.outcome for d in result.model.decisions(sample, pds)],
        }
    )
    return sample, output


def run_parameters(result: TrainingResult) -> dict[str, Any]:
    """Parameters logged with the run: config, data fingerprint, slice sizes, fit."""
    fingerprint = result.training_set.fingerprint
    params: dict[str, Any] = dict(result.config.flat_params())
    params.update({f"data.{k}": v for k, v in fingerprint.to_dict().items()})
    params.update({f"rows.{k}": v for k, v in result.split.counts().items()})
    params.update({f"fit.{k}": v for k, v in result.fit.to_dict().items()})
    params["features"] = len(result.model.spec.features)
    params["features.constrained"] = len(result.model.spec.constrained)
    params["features.bureau"] = len(result.training_set.bureau_features)
    params["calibration.slope"] = result.model.calibration.slope
    params["calibration.intercept"] = result.model.calibration.intercept
    params["calibration.fitted_method"] = result.model.calibration.method
    params["policy.chosen_approve_max_pd"] = result.model.policy.approve_max_pd
    params["policy.chosen_decline_min_pd"] = result.model.policy.decline_min_pd
    inputs = result.training_set.inputs
    if inputs is not None:  # a lender's table: what was left out (details in data/inputs.json)
        params["inputs.rows_read"] = inputs.rows_read
        params["inputs.rows_excluded"] = sum(e.count for e in inputs.rows_excluded)
        params["inputs.columns_excluded"] = ",".join(str(e.column) for e in inputs.columns_excluded)[:500]
        params["inputs.protected"] = ",".join(inputs.protected)[:500]
        params["inputs.protected_inputs"] = ",".join(inputs.protected_inputs)[:500]
        params["inputs.proxy_warnings"] = ",".join(
            f"{w.input}->{w.attribute}={w.group}" for w in inputs.proxy_warnings
        )[:500]
    return params


def log_and_register(
    result: TrainingResult,
    *,
    tracking_uri: str,
    artifact_root: Path | None,
    model_name: str,
    training_key: str,
    extra_tags: dict[str, str] | None = None,
    report: AnalystReport | None = None,
    report_dir: Path | None = None,
) -> RegisteredRun:
    """Log the run, register the model version and point `challenger` at it.

    With `report`, the model report (HTML, its PNGs and the tables as JSON) is logged under
    `report/`, and copied to `report_dir/<model name>/v<version>/` when that is given.
    """
    experiment_id = ensure_experiment(tracking_uri, artifact_root)
    fingerprint = result.training_set.fingerprint
    tags = {
        TRAINING_KEY_TAG: training_key,
        "coopscore.data_source": fingerprint.source,
        "coopscore.data_checksum": fingerprint.checksum,
        "coopscore.as_of": fingerprint.as_of,
        "coopscore.feature_set_version": fingerprint.feature_set_version,
        **(extra_tags or {}),
    }
    run_name = f"train-{fingerprint.as_of[:10]}-{training_key[:8]}"
    with mlflow_io.run(tracking_uri, experiment_id, run_name=run_name, tags=tags) as run_id:
        mlflow_io.log_params(tracking_uri, run_id, run_parameters(result))
        metrics = dict(result.evaluation.flat_metrics())
        metrics.update({f"seconds.{k}": v for k, v in result.seconds.items()})
        mlflow_io.log_metrics(tracking_uri, run_id, metrics)
        with tempfile.TemporaryDirectory(prefix="coopscore-run-") as tmp:
            root = Path(tmp)
            _log_evaluation(result, root, tracking_uri, run_id)
            if result.training_set.inputs is not None:
                _write_json(root / "data" / "inputs.json", result.training_set.inputs.to_dict())
                mlflow_io.log_artifacts(tracking_uri, run_id, root / "data", "data")
            artifacts = write_artifacts(result.model, root / "model", result.reference_sample)
            code = _private_copy(_code_file(), root / "code")
            sha256 = {**artifacts.sha256, CODE_FILE: sha256_file(code)}
            model_uri = mlflow_io.log_code_model(
                tracking_uri,
                code_path=code,
                artifacts={Path(name).stem: path for name, path in artifacts.files.items()},
                model_config={"artifact_sha256": artifacts.sha256},
                pip_requirements=_pip_requirements(),
                signature_frames=_signature_frames(result),
            )
            headline = summary_metrics(result)
            version_tags = {
                **checksum_tags(sha256),
                **tags,
                "coopscore.run_id": run_id,
                **{
                    f"metric.{k}": str(v)
                    for k, v in headline.items()
                    if v is not None and not isinstance(v, dict)  # calibration/policy: artifacts
                },
            }
            version = mlflow_io.register_version(
                tracking_uri,
                model_name,
                model_uri,
                run_id,
                tags=version_tags,
                description=f"OOT AUC {headline['oot_auc']:.4f}, ECE {headline['oot_ece']:.4f}; "
                f"data as of {fingerprint.as_of}",
            )
            card = root / "card" / "model_card.md"
            card.parent.mkdir()
            card.write_text(
                render_model_card(result, model_name=model_name, version=version, run_id=run_id),
                encoding="utf-8",
            )
            mlflow_io.log_artifacts(tracking_uri, run_id, card.parent)
            report_path = None
            if report is not None:
                stored = _write_report(report, root, model_name=model_name, version=version, run_id=run_id)
                mlflow_io.log_artifacts(tracking_uri, run_id, stored, "report")
                if report_dir is not None:
                    target = report_dir / model_name / f"v{version}"
                    shutil.copytree(stored, target, dirs_exist_ok=True)
                    report_path = target / REPORT_FILE
        mlflow_io.set_alias(tracking_uri, model_name, CHALLENGER, version)
        mlflow_io.set_run_tags(tracking_uri, run_id, {"coopscore.model_version": version})
    return RegisteredRun(run_id, model_name, version, model_uri, training_key, report_path)


def _write_report(report: AnalystReport, root: Path, *, model_name: str, version: str, run_id: str) -> Path:
    """The model report and its tables in `root/report` (the run's plots, written before, inlined)."""
    directory = root / "report"
    plots = {
        name: root / "plots" / f"{name}.png" for name in ("roc", "ks", "calibration", "score_distribution")
    }
    context = {"model": model_name, "version": version, "MLflow run": run_id, "slice": "out-of-time"}
    render_report(report, directory, title=f"{model_name} v{version}", context=context, run_plots=plots)
    _write_json(directory / TABLES_FILE, {**context, **report.to_dict()})
    return directory


def _log_evaluation(result: TrainingResult, root: Path, tracking_uri: str, run_id: str) -> None:
    """Plots, the evaluation report, the split and the OOT rows."""
    from training.plots import write_plots

    oot_mask = result.split.masks["oot"]
    oot_features = result.training_set.features.loc[oot_mask]
    scores = result.model.scale.score_from_pd(result.oot_pds["model"])
    rows = min(result.config.shap_sample_rows, int(oot_mask.sum()))
    shap_rows = oot_features.sample(n=rows, random_state=result.config.booster.seed) if rows else oot_features
    plots = root / "plots"
    write_plots(
        plots,
        y=result.oot_label,
        pds=result.oot_pds,
        scores=scores,
        model=result.model,
        shap_rows=shap_rows,
        bins=result.config.ece_bins,
    )
    mlflow_io.log_artifacts(tracking_uri, run_id, plots, "plots")
    evaluation = root / "evaluation"
    evaluation.mkdir(parents=True, exist_ok=True)
    _write_json(evaluation / "report.json", result.evaluation.to_dict())
    _write_json(evaluation / "headline.json", result.evaluation.headline())
    _write_json(evaluation / "split.json", result.split.describe())
    _write_json(evaluation / "fit.json", result.fit.to_dict())
    if result.training_set.labels is not None:
        _write_json(evaluation / "labels.json", result.training_set.labels.to_dict())
    result.oot_frame.to_parquet(evaluation / Path(OOT_ARTIFACT).name, index=False)
    _oot_pds_frame(result).to_parquet(evaluation / Path(OOT_PDS_ARTIFACT).name, index=False)
    mlflow_io.log_artifacts(tracking_uri, run_id, evaluation, "evaluation")


def _oot_pds_frame(result: TrainingResult) -> pd.DataFrame:
    """Label, thin-file flag (when the source has one) and one PD column per contender, per OOT row."""
    frame = pd.DataFrame({OOT_PDS_LABEL: result.oot_label})
    thin = result.training_set.thin_segment
    segments = result.training_set.segments
    if thin is not None and thin in segments:
        frame[OOT_PDS_THIN] = segments.loc[result.split.masks["oot"], thin].to_numpy() == "thin"
    for name, pd_ in result.oot_pds.items():
        frame[name] = pd_
    return frame


def ensure_experiment(tracking_uri: str, artifact_root: Path | None) -> str:
    """The coopscore experiment, with its artifacts under `artifact_root` (if given)."""
    location = mlflow_io.artifact_location(artifact_root) if artifact_root is not None else None
    return mlflow_io.ensure_experiment(tracking_uri, EXPERIMENT, location)


def find_version_by_training_key(tracking_uri: str, model_name: str, training_key: str) -> str | None:
    """The version already trained on exactly this data, feature set and config, if any."""
    for record in mlflow_io.list_versions(tracking_uri, model_name):
        if record.tags.get(TRAINING_KEY_TAG) == training_key:
            return record.version
    return None


def read_oot_pds(tracking_uri: str, run_id: str) -> pd.DataFrame:
    """The OOT label, thin flag and every contender's PD a run stored (see `OOT_PDS_ARTIFACT`)."""
    with tempfile.TemporaryDirectory(prefix="coopscore-oot-") as tmp:
        path = mlflow_io.download_run_artifact(tracking_uri, run_id, OOT_PDS_ARTIFACT, Path(tmp))
        return pd.read_parquet(path)


def read_oot_frame(tracking_uri: str, run_id: str) -> pd.DataFrame:
    """The OOT rows a run stored for the promotion gates."""
    with tempfile.TemporaryDirectory(prefix="coopscore-oot-") as tmp:
        path = mlflow_io.download_run_artifact(tracking_uri, run_id, OOT_ARTIFACT, Path(tmp))
        return pd.read_parquet(path)
