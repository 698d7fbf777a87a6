"""MLflow logging of drift checks: one run per check in the `coopscore-monitoring` experiment.

The only module of `monitoring` that imports MLflow; the tracking URI is a parameter (settings in
the CLI, a temporary SQLite store in tests).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

MONITORING_EXPERIMENT: Final = "coopscore-monitoring"
_STATUS_CODES: Final = {"stable": 0, "watch": 1, "drift": 2}
_METRIC_NAME: Final = re.compile(r"[^A-Za-z0-9_\-. /]")


def log_drift_run(
    summary: Mapping[str, Any],
    directory: Path,
    *,
    tracking_uri: str,
    artifact_root: Path | None = None,
    experiment: str = MONITORING_EXPERIMENT,
) -> str:
    """Log one drift check (status, PSI per feature, score PSI, the output folder); returns the run id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        location = None if artifact_root is None else (artifact_root / experiment).resolve().as_uri()
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mlflow.set_tracking_uri(tracking_uri)
    metrics: dict[str, float] = {
        "status_code": float(_STATUS_CODES.get(str(summary.get("status")), -1)),
        "n_current": float(summary.get("n_current", 0)),
        "n_reference": float(summary.get("n_reference", 0)),
        "features_drift": float(sum(f["alarm"] == "drift" for f in summary.get("features", {}).values())),
        "features_watch": float(sum(f["alarm"] == "watch" for f in summary.get("features", {}).values())),
    }
    for name, item in {**summary.get("features", {}), **summary.get("scores", {})}.items():
        metrics[_METRIC_NAME.sub("_", f"psi.{name}")] = float(item["psi"])
    params = {
        "window": str(summary.get("window", "")),
        "reference": str(summary.get("reference", "")),
        "model": str(summary.get("model", "")),
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"drift-{directory.name}") as run:
        mlflow.set_tags({"coopscore.kind": "drift", "coopscore.status": str(summary.get("status"))})
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(directory), artifact_path="drift")
        return str(run.info.run_id)
