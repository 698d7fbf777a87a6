"""The training and retraining jobs, with exit codes a scheduler can act on.

`retrain`: fingerprint the data as of now -> skip if this exact data, feature set and config were
trained already -> build the training set -> train and evaluate -> register the challenger -> run the
gates -> promote or keep. With no champion yet, a challenger that passes the calibration and
direction gates becomes champion (the AUC gate has nothing to compare with and passes).

Exit codes (`ExitCode`):
    0   promoted: the new model is the champion
    10  kept: a challenger was registered but the champion stays (a gate failed)
    11  no new data: this data/feature set/config was already trained; nothing registered
    12  insufficient data: too few labelled applications or defaults to train honestly
    13  nothing to promote (promote only: no challenger)
    1   error (anything unexpected; see stderr)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pandas as pd

from models.registry import MODEL_NAME
from training.config import TrainingConfig
from training.datasets import (
    DataFingerprint,
    TableSource,
    TrainingSet,
    describe,
    event_log_training_set,
    files_checksum,
    ledger_checksum,
)
from training.fairness_gates import FairnessGate
from training.fairness_mitigation import (
    most_flagged_attribute,
    refit_without_proxies,
    threshold_optimizer_comparison,
)
from training.gates import Gate
from training.labels import data_as_of
from training.pipeline import TrainingResult, summary_metrics, train_and_evaluate
from training.promotion import PromotionResult, promote
from training.report_html import REPORT_FILE
from training.reports import AnalystReport, analyst_report
from training.tracking import REPORT_ARTIFACT, RegisteredRun, find_version_by_training_key, log_and_register

if TYPE_CHECKING:
    from features.offline_engines.base import OfflineEngine

Progress = Callable[[str], None]
Mitigation = Literal["none", "drop-proxies"]
__all__ = ["EventLogSource", "ExitCode", "JobSummary", "TableSource", "TrainingSource", "retrain", "train"]


class ExitCode(IntEnum):
    """Process exit codes of `coopscore train / retrain / promote`."""

    PROMOTED = 0
    OK = 0
    ERROR = 1
    KEPT = 10
    NO_NEW_DATA = 11
    INSUFFICIENT_DATA = 12
    NOTHING_TO_PROMOTE = 13


class TrainingSource(Protocol):
    """Where a training set comes from: cheap fingerprint first, the full set only if needed."""

    def fingerprint(self) -> DataFingerprint:
        """The data's fingerprint without building features."""
        ...

    def load(self) -> TrainingSet:
        """The full training set."""
        ...


@dataclass
class EventLogSource:
    """Training data from the event log and reference tables (features from the views)."""

    events_dir: Path
    tables_dir: Path
    ledger_path: Path
    as_of: pd.Timestamp | None = None
    window_days: int = 365
    truth_dir: Path | None = None
    engine: OfflineEngine | None = None

    def _as_of(self) -> pd.Timestamp:
        if self.as_of is not None:
            stamp = pd.Timestamp(self.as_of)
            return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        from features.offline import read_applications
        from training.datasets import read_outcomes

        return data_as_of(read_applications(self.tables_dir), read_outcomes(self.events_dir, self.tables_dir))

    def fingerprint(self) -> DataFingerprint:
        """Ledger checksum + as-of + feature-set version."""
        from features.catalog import default_registry

        checksum = ledger_checksum(self.ledger_path) or files_checksum(self.events_dir, self.tables_dir)
        return DataFingerprint("event_log", checksum, self._as_of().isoformat(), default_registry().version)

    def load(self) -> TrainingSet:
        """Labelled applications with point-in-time features."""
        return event_log_training_set(
            events_dir=self.events_dir,
            tables_dir=self.tables_dir,
            ledger_path=self.ledger_path,
            as_of=self._as_of(),
            window_days=self.window_days,
            engine=self.engine,
            truth_dir=self.truth_dir,
        )


@dataclass
class JobSummary:
    """The one JSON object `train` / `retrain` print."""

    status: str
    exit_code: int
    model_name: str
    message: str = ""
    version: str | None = None
    run_id: str | None = None
    training_key: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    comparison: list[dict[str, Any]] = field(default_factory=list)
    promotion: dict[str, Any] | None = None
    mitigation: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] | None = None  # the model report: where it is, and its tables

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "model_name": self.model_name,
            "message": self.message,
            "version": self.version,
            "run_id": self.run_id,
            "training_key": self.training_key,
            "data": self.data,
            "metrics": self.metrics,
            "comparison": self.comparison,
            "promotion": self.promotion,
            "mitigation": self.mitigation,
            "seconds": self.seconds,
            "report": self.report,
        }


def _stage(progress: Progress | None, name: str) -> None:
    if progress is not None:
        progress(name)


def train(
    source: TrainingSource,
    *,
    config: TrainingConfig,
    tracking_uri: str,
    artifact_root: Path | None,
    model_name: str = MODEL_NAME,
    progress: Progress | None = None,
    skip_if_trained: bool = False,
    data_dir: Path | None = None,
) -> tuple[JobSummary, RegisteredRun | None]:
    """Train, evaluate, log and register a challenger (no promotion).

    With `skip_if_trained`, data already trained with this feature set and config registers
    nothing and returns status `no_new_data`. `InsufficientDataError` propagates. The model report
    is logged to MLflow and, with `data_dir`, copied under `data_dir/reports/`.
    """
    summary, registered, _ = _train(
        source,
        config=config,
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        model_name=model_name,
        progress=progress,
        skip_if_trained=skip_if_trained,
        data_dir=data_dir,
    )
    return summary, registered


def _train(
    source: TrainingSource,
    *,
    config: TrainingConfig,
    tracking_uri: str,
    artifact_root: Path | None,
    model_name: str,
    progress: Progress | None,
    skip_if_trained: bool,
    data_dir: Path | None = None,
) -> tuple[JobSummary, RegisteredRun | None, TrainingResult | None]:
    began = time.perf_counter()
    seconds: dict[str, float] = {}
    _stage(progress, "fingerprint")
    fingerprint = source.fingerprint()
    key = fingerprint.training_key(config.digest())
    seconds["fingerprint"] = round(time.perf_counter() - began, 3)
    if skip_if_trained:
        existing = find_version_by_training_key(tracking_uri, model_name, key)
        if existing is not None:
            stored = reports_dir(data_dir)
            page = None if stored is None else stored / model_name / f"v{existing}" / REPORT_FILE
            return (
                JobSummary(
                    status="no_new_data",
                    exit_code=ExitCode.NO_NEW_DATA,
                    model_name=model_name,
                    message=f"version {existing} was trained on this data, feature set and config",
                    version=existing,
                    training_key=key,
                    data=fingerprint.to_dict(),
                    seconds=seconds,
                    # The trained version's report, when this data folder holds it.
                    report=None
                    if page is None or not page.exists()
                    else {"path": str(page.resolve()), "mlflow_artifact": None, "tables": None},
                ),
                None,
                None,
            )
    _stage(progress, "build training set")
    started = time.perf_counter()
    training_set = source.load()
    seconds["training set"] = round(time.perf_counter() - started, 3)
    result = train_and_evaluate(training_set, config, progress=progress)
    seconds.update(result.seconds)
    _stage(progress, "analyst report")
    started = time.perf_counter()
    tables = analyst_report(result)
    seconds["analyst report"] = round(time.perf_counter() - started, 3)
    _stage(progress, "log to MLflow")
    started = time.perf_counter()
    registered = log_and_register(
        result,
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        model_name=model_name,
        training_key=key,
        report=tables,
        report_dir=reports_dir(data_dir),
    )
    seconds["log to MLflow"] = round(time.perf_counter() - started, 3)
    seconds["total"] = round(time.perf_counter() - began, 3)
    summary = JobSummary(
        status="registered",
        exit_code=ExitCode.OK,
        model_name=model_name,
        message=f"version {registered.version} registered as challenger",
        version=registered.version,
        run_id=registered.run_id,
        training_key=key,
        data={**fingerprint.to_dict(), **describe(training_set), "splits": result.split.describe()},
        metrics=summary_metrics(result),
        comparison=result.evaluation.headline(),
        seconds=seconds,
        report=report_summary(registered, tables),
    )
    return summary, registered, result


def retrain(
    source: TrainingSource,
    *,
    config: TrainingConfig,
    tracking_uri: str,
    artifact_root: Path | None,
    model_name: str = MODEL_NAME,
    gates: list[Gate] | None = None,
    progress: Progress | None = None,
    mitigation: Mitigation = "none",
    data_dir: Path | None = None,
) -> JobSummary:
    """The scheduled job: train if the data is new, then promote or keep (see module exit codes).

    With a fairness gate among `gates`, its audit of each challenger is stored (under `data_dir`/audits
    when given) and logged to the challenger's MLflow run under `fairness/`. With `mitigation`
    "drop-proxies", a challenger that fails the fairness gate is followed by one refitted
    without the proxy features behind the flagged gaps; that one is registered and judged too.
    """
    summary, registered, result = _train(
        source,
        config=config,
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        model_name=model_name,
        progress=progress,
        skip_if_trained=True,
        data_dir=data_dir,
    )
    if registered is None or result is None:
        return summary
    fairness = next((g for g in gates or [] if isinstance(g, FairnessGate)), None)
    outcome = _promote(summary, registered, tracking_uri, model_name, gates, config, progress)
    _store_fairness(fairness, registered, result, tracking_uri, data_dir)
    failed = {g.gate for g in outcome.gates if not g.passed}
    if outcome.promoted or mitigation == "none" or fairness is None or fairness.name not in failed:
        return summary
    judged = fairness.audits.get(registered.version)
    if judged is None:
        return summary
    _stage(progress, "mitigation: refit without proxy features")
    started = time.perf_counter()
    refit = refit_without_proxies(result, judged, fairness, config, progress=progress)
    report: dict[str, Any] = {"strategy": mitigation, "of_version": registered.version, **refit.to_dict()}
    attribute = most_flagged_attribute(judged)
    report["threshold_optimizer"] = threshold_optimizer_comparison(result, fairness, attribute, config)
    summary.mitigation = report
    if refit.result is None:
        summary.message += "; mitigation found no proxy feature to drop"
        return summary
    mitigated_tables = analyst_report(refit.result)
    mitigated = log_and_register(
        refit.result,
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        model_name=model_name,
        report=mitigated_tables,
        report_dir=reports_dir(data_dir),
        training_key=_mitigated_key(registered.training_key, refit.dropped),
        extra_tags={
            "coopscore.mitigation": mitigation,
            "coopscore.mitigation_of": registered.version,
            "coopscore.dropped_features": ",".join(refit.dropped)[:4000],
        },
    )
    summary.seconds["mitigation"] = round(time.perf_counter() - started, 3)
    first = summary.promotion
    outcome = _promote(summary, mitigated, tracking_uri, model_name, gates, config, progress)
    _store_fairness(fairness, mitigated, refit.result, tracking_uri, data_dir)
    report.update(version=mitigated.version, promotion=summary.promotion, first_promotion=first)
    summary.version, summary.run_id = mitigated.version, mitigated.run_id
    summary.metrics = {**summary.metrics, "mitigated": summary_metrics(refit.result)}
    summary.report = report_summary(mitigated, mitigated_tables)
    return summary


def reports_dir(data_dir: Path | None) -> Path | None:
    """Where model reports are kept locally: `<data_dir>/reports/<model name>/v<version>/`."""
    return None if data_dir is None else data_dir / "reports"


def report_summary(registered: RegisteredRun, tables: AnalystReport) -> dict[str, Any]:
    """The summary's `report`: the local HTML path (None without a data folder), the MLflow
    artifact, and the tables themselves."""
    path = registered.report_path
    return {
        "path": None if path is None else str(path.resolve()),
        "mlflow_artifact": f"runs:/{registered.run_id}/{REPORT_ARTIFACT}",
        "tables": tables.to_dict(),
    }


def _mitigated_key(training_key: str, dropped: list[str]) -> str:
    return hashlib.sha256(f"{training_key}\x1fdrop:{','.join(sorted(dropped))}".encode()).hexdigest()


def _promote(
    summary: JobSummary,
    registered: RegisteredRun,
    tracking_uri: str,
    model_name: str,
    gates: list[Gate] | None,
    config: TrainingConfig,
    progress: Progress | None,
) -> PromotionResult:
    """Run the gates on `registered` and record the outcome in `summary`."""
    _stage(progress, f"promotion gates (v{registered.version})")
    started = time.perf_counter()
    outcome = promote(
        tracking_uri,
        model_name=model_name,
        version=registered.version,
        gates=gates,
        gate_config=config.gates,
    )
    summary.seconds["promotion gates"] = round(
        summary.seconds.get("promotion gates", 0.0) + time.perf_counter() - started, 3
    )
    summary.promotion = outcome.to_dict()
    # A gate that judged nothing (the champion comparison across feature sets) says so in the message.
    skipped = "".join(f"; {r}" for r in outcome.reasons if ": skipped - " in r)
    if outcome.promoted:
        summary.status, summary.exit_code = "promoted", ExitCode.PROMOTED
        summary.message = f"version {registered.version} is the champion{skipped}"
    else:
        summary.status, summary.exit_code = "kept", ExitCode.KEPT
        kept = outcome.champion_before or "none"
        failed = "; ".join(r for r in outcome.reasons if ": FAIL" in r)
        summary.message = f"champion stays {kept}; version {registered.version} failed: {failed}{skipped}"
        stale = outcome.kept_champion_cannot_serve
        if stale is not None:
            summary.message += f"; but {stale}"
    return outcome


def _store_fairness(
    gate: FairnessGate | None,
    registered: RegisteredRun,
    result: TrainingResult,
    tracking_uri: str,
    data_dir: Path | None,
) -> None:
    """Write the gate's audit of `registered` (JSON, HTML, chart; flagged gaps explained by reason
    points and proxies) and log it to the version's MLflow run under `fairness/`."""
    judged = gate.audits.get(registered.version) if gate is not None else None
    if judged is None:
        return
    from models import mlflow_io
    from monitoring.fairness import explain_gaps
    from monitoring.fairness_report import write_fairness_audit

    if judged.audit.flags:
        explain_gaps(judged.audit, features=result.oot_frame, groups=judged.groups, model=result.model)

    context = {
        "source": "promotion gate (OOT)",
        "model_name": registered.model_name,
        "model_version": registered.version,
        "run_id": registered.run_id,
    }
    with mlflow_io.temp_dir("coopscore-fairness-") as tmp:
        stored = write_fairness_audit(judged.audit, data_dir or Path(tmp), context=context)
        mlflow_io.log_artifacts(tracking_uri, registered.run_id, stored.directory, "fairness")
