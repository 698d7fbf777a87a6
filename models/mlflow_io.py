"""The one module that talks to MLflow (tracking, registry, artifacts), so an upgrade touches one file.

Every function takes the tracking URI (the registry lives in the same store). MLflow is imported
inside the functions: importing coopscore stays cheap.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

_QUIET_ENV = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "GIT_PYTHON_REFRESH": "quiet",
}


@dataclass(frozen=True)
class VersionRecord:
    """One registered model version, as coopscore reads it."""

    name: str
    version: str
    run_id: str
    source: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    created_ms: int = 0
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "aliases": list(self.aliases),
            "created_ms": self.created_ms,
            "tags": dict(self.tags),
        }


def _quiet() -> None:
    """No progress bars, telemetry or INFO chatter (MLflow sets its log level when imported)."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    import mlflow  # noqa: F401  (configures its loggers first; we override them after)

    for name in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING if name != "mlflow" else logging.ERROR)


def store_uri(tracking_uri: str) -> str:
    """The URI MLflow is given: `postgresql://` and `postgres://` name the psycopg 3 driver
    (`postgresql+psycopg://`), the one installed; SQLAlchemy would otherwise look for psycopg2."""
    for scheme in ("postgresql://", "postgres://"):
        if tracking_uri.startswith(scheme):
            return "postgresql+psycopg://" + tracking_uri.removeprefix(scheme)
    return tracking_uri


def shown_uri(tracking_uri: str) -> str:
    """The tracking URI as messages show it: a database password replaced by `***`."""
    from coopscore.settings import BackendUrl, UnsupportedBackendError

    try:
        return BackendUrl.parse("COOPSCORE_TRACKING_URI", tracking_uri).redacted
    except UnsupportedBackendError:  # a bare path: nothing to hide
        return tracking_uri


def client(tracking_uri: str) -> MlflowClient:
    """A client on one store (tracking and registry alike)."""
    _quiet()
    from mlflow import MlflowClient

    uri = store_uri(tracking_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _use(tracking_uri: str) -> None:
    """Point MLflow's fluent API at this store (the fluent API is process-global)."""
    _quiet()
    import mlflow

    mlflow.set_tracking_uri(store_uri(tracking_uri))
    mlflow.set_registry_uri(store_uri(tracking_uri))


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None) -> str:
    """Id of the experiment `name`, created with `artifact_location` if it does not exist."""
    mlflow_client = client(tracking_uri)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(mlflow_client.create_experiment(name, artifact_location=artifact_location))


@contextmanager
def run(
    tracking_uri: str, experiment_id: str, *, run_name: str, tags: Mapping[str, str] | None = None
) -> Iterator[str]:
    """An active MLflow run (ended FAILED if the block raises); yields its id."""
    _use(tracking_uri)
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {})) as active:
        yield str(active.info.run_id)


def log_params(tracking_uri: str, run_id: str, params: Mapping[str, Any]) -> None:
    """Log parameters (values as strings, MLflow's limit of 6000 characters each)."""
    from mlflow.entities import Param

    items = [Param(str(k), str(v)[:6000]) for k, v in sorted(params.items())]
    for start in range(0, len(items), 100):
        client(tracking_uri).log_batch(run_id, params=items[start : start + 100])


def log_metrics(tracking_uri: str, run_id: str, metrics: Mapping[str, float]) -> None:
    """Log finite metrics in batches (non-finite values are skipped)."""
    import math
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, 0) for k, v in sorted(metrics.items()) if math.isfinite(float(v))]
    for start in range(0, len(items), 500):
        client(tracking_uri).log_batch(run_id, metrics=items[start : start + 500])


def set_run_tags(tracking_uri: str, run_id: str, tags: Mapping[str, str]) -> None:
    """Set tags on a run."""
    from mlflow.entities import RunTag

    items = [RunTag(k, str(v)) for k, v in sorted(tags.items())]
    if items:
        client(tracking_uri).log_batch(run_id, tags=items)


def log_artifacts(tracking_uri: str, run_id: str, local_dir: Path, artifact_path: str | None = None) -> None:
    """Upload a folder's files as run artifacts."""
    client(tracking_uri).log_artifacts(run_id, str(local_dir), artifact_path)


def log_code_model(
    tracking_uri: str,
    *,
    code_path: Path,
    artifacts: Mapping[str, Path],
    model_config: Mapping[str, Any],
    pip_requirements: list[str],
    signature_frames: tuple[Any, Any] | None = None,
) -> str:
    """Log a models-from-code pyfunc in the active run; returns its model URI.

    `signature_frames` = (input example frame, output example frame) for the signature; no model is
    executed to infer it.
    """
    _use(tracking_uri)
    import mlflow
    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        # MLflow nags about predict() type hints and input examples; the signature is explicit.
        warnings.simplefilter("ignore", UserWarning)
        signature = None
        if signature_frames is not None:
            signature = infer_signature(signature_frames[0], signature_frames[1])
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code_path),
            artifacts={k: str(v) for k, v in artifacts.items()},
            model_config=dict(model_config),
            pip_requirements=pip_requirements,
            signature=signature,
        )
    return str(info.model_uri)


def register_version(
    tracking_uri: str,
    model_name: str,
    model_uri: str,
    run_id: str,
    *,
    tags: Mapping[str, str],
    description: str = "",
) -> str:
    """Register `model_uri` as a new version of `model_name` (created if needed); returns the version."""
    mlflow_client = client(tracking_uri)
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.create_registered_model(model_name)
    except MlflowException as error:
        if "already exists" not in str(error).lower() and "RESOURCE_ALREADY_EXISTS" not in str(error):
            raise
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    version = mlflow_client.create_model_version(
        model_name,
        source=model_uri,
        run_id=run_id,
        tags={k: str(v) for k, v in tags.items()},
        description=description,
        model_id=model_id,
    )
    return str(version.version)


def _record(version: ModelVersion) -> VersionRecord:
    return VersionRecord(
        name=str(version.name),
        version=str(version.version),
        run_id=str(version.run_id or ""),
        source=str(version.source or ""),
        aliases=tuple(str(a) for a in (version.aliases or ())),
        tags={str(k): str(v) for k, v in (version.tags or {}).items()},
        created_ms=int(version.creation_timestamp or 0),
        description=str(version.description or ""),
    )


def get_version(tracking_uri: str, model_name: str, alias_or_version: str | int) -> VersionRecord:
    """A version by number, or by alias (e.g. 'champion'); KeyError if there is none."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(tracking_uri)
    key = str(alias_or_version)
    try:
        if key.isdigit():
            return _record(mlflow_client.get_model_version(model_name, key))
        return _record(mlflow_client.get_model_version_by_alias(model_name, key))
    except MlflowException as error:
        raise KeyError(f"{model_name}: no version {key!r}") from error


def registered_model_names(tracking_uri: str) -> list[str]:
    """Names of every registered model in the store, sorted."""
    return sorted(str(m.name) for m in client(tracking_uri).search_registered_models())


def list_versions(tracking_uri: str, model_name: str) -> list[VersionRecord]:
    """Every version of `model_name`, newest first (empty if the model is not registered)."""
    mlflow_client = client(tracking_uri)
    versions = mlflow_client.search_model_versions(f"name='{model_name}'")
    # search results may omit aliases: read them from the registered model
    from mlflow.exceptions import MlflowException

    try:
        registered = mlflow_client.get_registered_model(model_name)
        aliases: dict[str, list[str]] = {}
        for alias, version in (registered.aliases or {}).items():
            aliases.setdefault(str(version), []).append(str(alias))
    except MlflowException:
        aliases = {}
    records = []
    for v in versions:
        record = _record(v)
        records.append(
            VersionRecord(
                name=record.name,
                version=record.version,
                run_id=record.run_id,
                source=record.source,
                aliases=tuple(sorted(aliases.get(record.version, []))),
                tags=record.tags,
                created_ms=record.created_ms,
                description=record.description,
            )
        )
    return sorted(records, key=lambda r: int(r.version), reverse=True)


def set_alias(tracking_uri: str, model_name: str, alias: str, version: str) -> None:
    """Point `alias` at `version`."""
    client(tracking_uri).set_registered_model_alias(model_name, alias, version)


def delete_alias(tracking_uri: str, model_name: str, alias: str) -> None:
    """Remove `alias` (no error if it does not exist)."""
    from mlflow.exceptions import MlflowException

    try:
        client(tracking_uri).delete_registered_model_alias(model_name, alias)
    except MlflowException:
        return


def set_version_tags(tracking_uri: str, model_name: str, version: str, tags: Mapping[str, str]) -> None:
    """Set tags on a model version."""
    mlflow_client = client(tracking_uri)
    for key, value in sorted(tags.items()):
        mlflow_client.set_model_version_tag(model_name, version, key, str(value))


def set_run_tag(tracking_uri: str, run_id: str, key: str, value: str) -> None:
    """Set one tag on a run."""
    client(tracking_uri).set_tag(run_id, key, value)


def download_version(tracking_uri: str, model_name: str, version: str, dst: Path) -> Path:
    """Download a version's logged model folder (MLmodel, code file, artifacts/) into `dst`.

    Resolves the version to its artifact location first, so no process-global registry URI is
    involved (serving may hold several stores).
    """
    import mlflow.artifacts

    location = version_artifact_location(tracking_uri, model_name, version)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=location, dst_path=str(dst), tracking_uri=store_uri(tracking_uri)
    )
    return Path(local)


def version_artifact_location(tracking_uri: str, model_name: str, version: str) -> str:
    """Artifact URI of a version's logged model folder."""
    mlflow_client = client(tracking_uri)
    model_version = mlflow_client.get_model_version(model_name, version)
    model_id = getattr(model_version, "model_id", None)
    if model_id:
        return str(mlflow_client.get_logged_model(model_id).artifact_location)
    return str(mlflow_client.get_model_version_download_uri(model_name, version))


def download_run_artifact(tracking_uri: str, run_id: str, path: str, dst: Path) -> Path:
    """Download one run artifact (file or folder) into `dst`."""
    return Path(client(tracking_uri).download_artifacts(run_id, path, str(dst)))


def run_metrics(tracking_uri: str, run_id: str) -> dict[str, float]:
    """Latest metrics of a run."""
    return {str(k): float(v) for k, v in client(tracking_uri).get_run(run_id).data.metrics.items()}


def run_params(tracking_uri: str, run_id: str) -> dict[str, str]:
    """Parameters of a run."""
    return {str(k): str(v) for k, v in client(tracking_uri).get_run(run_id).data.params.items()}


def temp_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder for downloads (removed on exit)."""
    return tempfile.TemporaryDirectory(prefix=prefix)


def artifact_location(root: Path) -> str:
    """A file URI for an artifact root folder."""
    return root.resolve().as_uri()


def prepare_store(tracking_uri: str) -> None:
    """Create the folder of a local SQLite store (`sqlite:///relative/or/absolute/path.db`)."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
