"""One drift check end to end, and what serving reads back.

`run_drift_check` computes the fast path (`monitoring.drift`), the Evidently report, the chart and
the cohort performance, and stores them under `<data_dir>/monitoring/<UTC timestamp>/`:

    summary.json          the JSON summary (written last, by atomic rename: its presence marks a
                          complete check)
    report.html           our summary + performance by cohort, then Evidently's full drift report
    evidently.html        Evidently's report alone
    top_features.png      bar chart of the most shifted features
    reference_profile.json  the reference bins used (to re-score without the reference sample)

then logs the folder to the MLflow monitoring experiment when a tracking URI is given.
`latest_drift_summary` / `latest_drift_report_path` / `latest_drift_gauges` read the newest check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pandas as pd

from monitoring.drift import DriftPolicy, DriftSummary, compute_drift, drift_gauges, monitored_columns
from monitoring.psi import ReferenceProfile, is_numeric_column

MONITORING_DIR: Final = "monitoring"
SUMMARY_FILE: Final = "summary.json"
REPORT_FILE: Final = "report.html"
EVIDENTLY_FILE: Final = "evidently.html"
CHART_FILE: Final = "top_features.png"
PROFILE_FILE: Final = "reference_profile.json"
EXIT_DRIFT: Final = 3


@dataclass(frozen=True)
class DriftCheck:
    """A stored drift check: the summary and where its outputs are."""

    summary: DriftSummary
    payload: dict[str, Any]
    directory: Path
    report_path: Path
    chart_path: Path
    mlflow_run_id: str | None

    @property
    def exit_code(self) -> int:
        """0 when stable or watch, 3 when drift was found."""
        return EXIT_DRIFT if self.summary.status == "drift" else 0


def monitoring_root(data_dir: Path) -> Path:
    """Folder holding one sub-folder per drift check."""
    return data_dir / MONITORING_DIR


def _new_check_dir(data_dir: Path, now: datetime) -> Path:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    directory = monitoring_root(data_dir) / stamp
    directory.mkdir(parents=True, exist_ok=False)
    return directory


def _write_json_atomic(payload: Mapping[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def run_drift_check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    data_dir: Path,
    features: Sequence[str] | None = None,
    segment: str | None = None,
    policy: DriftPolicy | None = None,
    outcomes: pd.DataFrame | None = None,
    context: Mapping[str, Any] | None = None,
    evidently: bool = True,
    tracking_uri: str | None = None,
    artifact_root: Path | None = None,
    now: datetime | None = None,
) -> DriftCheck:
    """Compare `current` with `reference`, store every output, log to MLflow; see the module doc.

    Args:
        reference: the model version's reference sample (feature rows, `score` / `pd`).
        current: the window's feature rows.
        data_dir: the service's data dir (outputs go to `<data_dir>/monitoring/<timestamp>/`).
        features: monitored features (default: the reference's feature columns).
        segment: optional segment column (e.g. `county_id`).
        policy: alarm-rule thresholds.
        outcomes: decisions with `applied_at`, `pd`, nullable `defaulted` for the cohort table.
        context: extra JSON fields for the summary (window, reference source, model version).
        evidently: also run Evidently's full report (slow; the fast path never needs it).
        tracking_uri: MLflow tracking URI (None: do not log).
        artifact_root: MLflow artifact root for a new monitoring experiment.
        now: the check's time (default: now, UTC).
    """
    from monitoring.performance import cohort_performance
    from monitoring.render import render_top_features_png, write_report_html

    now = now or datetime.now(UTC)
    policy = policy or DriftPolicy()
    columns = list(features) if features is not None else monitored_columns(reference, segment)
    profile = ReferenceProfile.fit(reference, columns, bins=policy.bins)
    summary = compute_drift(
        reference, current, features=columns, segment=segment, policy=policy, profile=profile
    )
    directory = _new_check_dir(data_dir, now)
    payload = summary.to_dict()
    payload["created_at"] = now.isoformat()
    payload.update(dict(context or {}))
    if outcomes is not None and not outcomes.empty:
        payload["performance"] = cohort_performance(outcomes)
    evidently_path: Path | None = None
    if evidently:
        from monitoring.evidently_report import evidently_drift_report

        numeric = [c for c in columns if c in reference and is_numeric_column(reference[c])]
        categorical = [c for c in columns if c not in numeric]
        scored = [c for c in ("score", "pd") if c in reference and c in current]
        # Report order: score / PD, then the features our fast path ranks most shifted first.
        ranked = {f.name: i for i, f in enumerate(summary.top_features(len(summary.features)))}
        numeric.sort(key=lambda name: ranked.get(name, len(ranked)))
        evidently_path = directory / EVIDENTLY_FILE
        found = evidently_drift_report(
            reference,
            current,
            numeric=[*scored, *numeric],
            categorical=categorical,
            html_path=evidently_path,
        )
        payload["evidently"] = found.to_dict()
    chart = render_top_features_png(payload["top_features"], directory / CHART_FILE)
    report = write_report_html(
        payload, directory / REPORT_FILE, chart_png=chart, evidently_html=evidently_path
    )
    _write_json_atomic(profile.to_dict(), directory / PROFILE_FILE)
    payload["outputs"] = {
        "directory": str(directory),
        "report": str(report),
        "chart": str(chart),
        "evidently": None if evidently_path is None else str(evidently_path),
    }
    run_id: str | None = None
    if tracking_uri is not None:
        from monitoring.tracking import log_drift_run

        _write_json_atomic(payload, directory / SUMMARY_FILE)  # logged with the artifacts
        run_id = log_drift_run(payload, directory, tracking_uri=tracking_uri, artifact_root=artifact_root)
        payload["mlflow_run_id"] = run_id
    _write_json_atomic(payload, directory / SUMMARY_FILE)
    return DriftCheck(summary, payload, directory, report, chart, run_id)


def latest_complete_dir(root: Path, marker: str) -> Path | None:
    """The newest time-stamped run folder under `root` whose `marker` file (written last) exists."""
    if not root.is_dir():
        return None
    done = sorted(p for p in root.iterdir() if p.is_dir() and (p / marker).is_file())
    return done[-1] if done else None


def _latest_dir(data_dir: Path) -> Path | None:
    return latest_complete_dir(monitoring_root(data_dir), SUMMARY_FILE)


def latest_drift_summary(data_dir: Path) -> dict[str, Any] | None:
    """The newest complete drift check's JSON summary, or None before the first check."""
    directory = _latest_dir(data_dir)
    if directory is None:
        return None
    loaded: dict[str, Any] = json.loads((directory / SUMMARY_FILE).read_text(encoding="utf-8"))
    return loaded


def latest_drift_report_path(data_dir: Path) -> Path | None:
    """The newest check's HTML report (ours + Evidently's), or None."""
    directory = _latest_dir(data_dir)
    if directory is None or not (directory / REPORT_FILE).is_file():
        return None
    return directory / REPORT_FILE


def latest_drift_gauges(data_dir: Path) -> dict[str, float]:
    """Feature -> PSI of the newest check (empty before the first): Prometheus-gauge values."""
    summary = latest_drift_summary(data_dir)
    return {} if summary is None else drift_gauges(summary)
