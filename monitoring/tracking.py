"""MLflow logging of drift checks: one run per check in the `coopscore-monitoring` experiment.

Goes through `models.mlflow_io`, the project's one MLflow module (quiet: no progress bars or INFO
chatter on the CLI's output); the tracking URI is a parameter (settings in the CLI, a temporary
SQLite store in tests).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from models import mlflow_io

MONITORING_EXPERIMENT: Final = "coopscore-monitoring"
_STATUS_CODES: Final = {"stable": 0, "watch": 1, "drift": 2}
_METRIC_NAME: Final = re.compile(r"[^A-Za-z0-9_\-. /]")


def log_drift_run(
    summary: Mapping[str, Any],
    directory: Path,
    *,
    name: str | None = None,
    tracking_uri: str,
    artifact_root: Path | None = None,
    experiment: str = MONITORING_EXPERIMENT,
) -> str:
    """Log one drift check (status, PSI per feature, score PSI, the output folder); returns the run id.

    `name` is the check's folder name (default: `directory`'s), used in the run name.
    """
    location = None if artifact_root is None else mlflow_io.artifact_location(artifact_root / experiment)
    mlflow_io.prepare_store(tracking_uri)
    experiment_id = mlflow_io.ensure_experiment(tracking_uri, experiment, location)
    metrics: dict[str, float] = {
        "status_code": float(_STATUS_CODES.get(str(summary.get("status")), -1)),
        "n_current": float(summary.get("n_current", 0)),
        "n_reference": float(summary.get("n_reference", 0)),
        "features_drift": float(sum(f["alarm"] == "drift" for f in summary.get("features", {}).values())),
        "features_watch": float(sum(f["alarm"] == "watch" for f in summary.get("features", {}).values())),
    }
    for feature, item in {**summary.get("features", {}), **summary.get("scores", {})}.items():
        metrics[_METRIC_NAME.sub("_", f"psi.{feature}")] = float(item["psi"])
    params = {
        "window": str(summary.get("window", "")),
        "reference": str(summary.get("reference", "")),
        "model": str(summary.get("model", "")),
    }
    tags = {"coopscore.kind": "drift", "coopscore.status": str(summary.get("status"))}
    run_name = f"drift-{name or directory.name}"
    with mlflow_io.run(tracking_uri, experiment_id, run_name=run_name, tags=tags) as run_id:
        mlflow_io.log_params(tracking_uri, run_id, params)
        mlflow_io.log_metrics(tracking_uri, run_id, metrics)
        mlflow_io.log_artifacts(tracking_uri, run_id, directory, artifact_path="drift")
        return run_id
